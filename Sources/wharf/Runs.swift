import ArgumentParser
import Foundation
import WharfRPC

/// `wharf runs ...` and `wharf batches ...`: workflows (Protocol/workflows.md).
struct Runs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect and cancel multi-step runs.", subcommands: [Get.self, List.self, Cancel.self])

    /// One line of a run: id, state, step, queue/kind, current job.
    static func line(_ r: JSON) -> String {
        "run \(r["id"]?.stringValue ?? "?") \(r["state"]?.stringValue ?? "")  step \(r["step"]?.intValue ?? 0)  "
            + "\(r["queue"]?.stringValue ?? "")/\(r["kind"]?.stringValue ?? "")"
            + (r["currentJobId"]?.stringValue.map { "  job \($0)" } ?? "")
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a run: its state, its steps with their outputs and attempts (runs.get).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The run's id (its first step's job id).") var id: String
        func run() throws {
            let r = try callOrExit(options, "runs.get", ["id": .string(id)])
            output(options, r) { r in
                ([Runs.line(r)] + (r["steps"]?.arrayValue ?? []).map { "  step \($0.text)" }).joined(separator: "\n")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List runs, newest first (runs.list).")
        @OptionGroup var options: ClientOptions
        @Option(help: "Only runs in this state (running, completed, failed, cancelled).") var state: String?
        @Option(help: "Most runs to list.") var limit = 50
        @Option(help: "Go on from where the previous page ended (it prints the cursor).") var cursor: String?
        func run() throws {
            var p: JSONObject = ["limit": .from(limit)]
            if let state { p["state"] = .string(state) }
            if let cursor { p["cursor"] = .string(cursor) }
            let r = try callOrExit(options, "runs.list", .object(p))
            output(options, r) { r in
                var lines = (r["runs"]?.arrayValue ?? []).map(Runs.line)
                if let next = r["nextCursor"]?.stringValue { lines.append("more: --cursor \(next)") }
                return lines.isEmpty ? "no runs" : lines.joined(separator: "\n")
            }
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a run: its pending step never runs, a running step's completion is refused (runs.cancel).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The run's id.") var id: String
        func run() throws {
            let r = try callOrExit(options, "runs.cancel", ["id": .string(id)])
            output(options, r) { Runs.line($0) }
        }
    }
}

struct Batches: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect batches of jobs with callbacks.", subcommands: [Get.self])

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a batch: its counts, failed ids and what its callbacks made (batches.get).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The batch's id.") var id: String
        func run() throws {
            let r = try callOrExit(options, "batches.get", ["id": .string(id)])
            output(options, r) { r in
                "batch \(r["id"]?.stringValue ?? "?") \(r["state"]?.stringValue ?? "")  total \(r["total"]?.intValue ?? 0)  "
                    + "completed \(r["completed"]?.intValue ?? 0)  dead \(r["dead"]?.intValue ?? 0)  "
                    + "cancelled \(r["cancelled"]?.intValue ?? 0)  pending \(r["pending"]?.intValue ?? 0)"
                    + ((r["failedIds"]?.arrayValue).map { $0.isEmpty ? "" : "\n  failed \($0.map(\.text).joined(separator: " "))" } ?? "")
                    + Self.callbacksMade(r).map { "\n  " + $0 }.joined()
            }
        }

        /// A line per callback that fired: `onFailure: job 44`, `onFinish: delivery 12 to endpoint 3`, or
        /// `onFinish: skipped (endpoint_not_found), endpoint 3`.
        static func callbacksMade(_ r: JSON) -> [String] {
            let jobs = (r["callbackJobs"]?.objectValue?.pairs ?? []).map { p in
                "\(p.key): job \(p.value.stringValue ?? "?")"
            }
            let deliveries = (r["callbackDeliveries"]?.objectValue?.pairs ?? []).map { p -> String in
                let endpoint = p.value["endpointId"]?.stringValue ?? "?"
                if let id = p.value["deliveryId"]?.stringValue {
                    return "\(p.key): delivery \(id) to endpoint \(endpoint)"
                }
                return "\(p.key): skipped (\(p.value["skipped"]?.stringValue ?? "?")), endpoint \(endpoint)"
            }
            return jobs + deliveries
        }
    }
}
