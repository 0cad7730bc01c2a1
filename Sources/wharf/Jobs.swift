import ArgumentParser
import Foundation
import WharfClient
import WharfRPC

/// Prints a method's result: JSON with --json, otherwise `text`.
func output(_ options: ClientOptions, _ result: JSON, _ text: (JSON) -> String) {
    print(options.json ? result.text : text(result))
}

/// Runs a client call, turning a server error into a message and exit status 2.
func callOrExit(_ options: ClientOptions, _ method: String, _ params: JSON) throws -> JSON {
    let c = try options.connect()
    do {
        return try c.call(method, params)
    } catch let e as RPCError {
        FileHandle.standardError.write(Data("error: \(e.message)\(e.data.map { " \($0.text)" } ?? "")\n".utf8))
        throw ExitCode(2)
    }
}

func parseJSONArgument(_ text: String, name: String) throws -> JSON {
    do { return try JSONParser.parse(text) } catch { throw ValidationError("\(name) is not JSON: \(error)") }
}

struct Enqueue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enqueue a job: wharf enqueue QUEUE KIND '{\"to\":\"a@b\"}'.")

    @OptionGroup var options: ClientOptions
    @Argument(help: "The queue it goes to.") var queue: String
    @Argument(help: "What the worker should do: the worker picks its handler by kind.") var kind: String
    @Argument(help: "Payload as JSON.") var payload: String?
    @Option(help: "-1000 to 1000 (default 0); higher is leased first.") var priority: Int?
    @Option(help: "Run after this many milliseconds.") var delayMs: Int?
    @Option(help: "Run at this RFC 3339 time.") var runAt: String?
    @Option(help: "Attempts before the job is dead (default 20).") var maxAttempts: Int?
    @Option(help: "While a job with this key is unfinished, enqueueing it again returns that job.") var uniqueKey:
        String?
    @Option(help: "A lock the job holds while it runs: at most one job per key runs at a time.") var lockKey: String?
    @Option(help: "Makes repeating this command safe: a repeat with the same key returns the first job (kept 24 h).")
    var idempotencyKey: String?
    @Option(help: "How long one attempt may run, in ms, handed to the worker with the job.") var timeoutMs: Int?
    @Option(name: .customLong("tag"), help: "A tag to find it by (repeatable; jobs list --tag).") var tags: [String] =
        []

    func run() throws {
        var p: JSONObject = ["queue": .string(queue), "kind": .string(kind)]
        if let payload { p["payload"] = try parseJSONArgument(payload, name: "payload") }
        if let priority { p["priority"] = .from(priority) }
        if let delayMs { p["delayMs"] = .from(delayMs) }
        if let runAt { p["runAt"] = .string(runAt) }
        if let maxAttempts { p["maxAttempts"] = .from(maxAttempts) }
        if let uniqueKey { p["uniqueKey"] = .string(uniqueKey) }
        if let lockKey { p["lockKey"] = .string(lockKey) }
        if let idempotencyKey { p["idempotencyKey"] = .string(idempotencyKey) }
        if let timeoutMs { p["timeoutMs"] = .from(timeoutMs) }
        if !tags.isEmpty { p["tags"] = .array(tags.map(JSON.string)) }
        let r = try callOrExit(options, "jobs.enqueue", .object(p))
        output(options, r) { r in
            "job \(r["id"]?.stringValue ?? "?") \(r["state"]?.stringValue ?? "")"
                + (r["replayed"] == true
                    ? " (made earlier by a call with this idempotency key)"
                    : r["duplicate"] == true ? " (duplicate of an unfinished job with that uniqueKey)" : "")
        }
    }
}

struct Jobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect and steer jobs.",
        subcommands: [Get.self, Wait.self, List.self, Cancel.self, Retry.self, EnqueueBatch.self])

    struct Wait: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait until jobs are completed, dead or cancelled, and show their results (jobs.wait).",
            discussion: "Exits 0 when all completed, 1 when one died or was cancelled, 3 when the wait timed out.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The jobs' ids.") var ids: [String]
        @Option(help: "How long to wait, e.g. 30s or 5m.") var timeout = "30s"

        func run() throws {
            var left = try parseDurationMs(timeout)
            let ids = JSON.array(self.ids.map(JSON.string))
            var r: JSON
            // In slices under the connection's 30 s read timeout.
            repeat {
                let slice = min(left, 20_000)
                r = try callOrExit(options, "jobs.wait", ["ids": ids, "timeoutMs": .int(Int64(slice))])
                left -= slice
            } while r["done"] != true && left > 0
            output(options, r) { r in
                (r["jobs"]?.arrayValue ?? []).map { j in
                    "job \(j["id"]?.stringValue ?? "?") \(j["state"]?.stringValue ?? "")"
                        + (j["result"].map { "  result \($0.text)" } ?? "")
                        + (j["state"]?.stringValue == "dead" ? (j["lastError"].map { "  lastError \($0.text)" } ?? "") : "")
                }.joined(separator: "\n")
            }
            if r["done"] != true { throw ExitCode(3) }
            if r["jobs"]?.arrayValue?.contains(where: { $0["state"]?.stringValue != "completed" }) == true {
                throw ExitCode(1)
            }
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a job: state, attempts and their errors, payload (jobs.get).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The job's id.") var id: String
        func run() throws {
            let r = try callOrExit(options, "jobs.get", ["id": .string(id)])
            output(options, r) { j in
                var lines = [
                    "job \(j["id"]?.stringValue ?? "") \(j["queue"]?.stringValue ?? "")/\(j["kind"]?.stringValue ?? "")",
                    "  state      \(j["state"]?.stringValue ?? "")  attempt \(j["attempt"]?.intValue ?? 0)/\(j["maxAttempts"]?.intValue ?? 0)",
                    "  runAt      \(j["runAt"]?.stringValue ?? "")",
                    "  payload    \((j["payload"] ?? .null).text)",
                ]
                if let e = j["lastError"] { lines.append("  lastError  \(e.text)") }
                for a in j["attempts"]?.arrayValue ?? [] {
                    lines.append(
                        "  attempt \(a["attempt"]?.intValue ?? 0): \(a["outcome"]?.stringValue ?? "") by \(a["worker"]?.stringValue ?? "?")"
                            + (a["error"].map { " \($0.text)" } ?? ""))
                }
                return lines.joined(separator: "\n")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List jobs, newest first, filtered by queue, state, kind or tag (jobs.list).")
        @OptionGroup var options: ClientOptions
        @Option(help: "Only jobs of this queue.") var queue: String?
        @Option(
            help: "Only jobs in this state: scheduled, available, running, retryable, completed, dead or cancelled.")
        var state: String?
        @Option(help: "Only jobs of this kind.") var kind: String?
        @Option(help: "Only jobs with this tag.") var tag: String?
        @Option(help: "Only jobs created at or after this RFC 3339 time.") var createdFrom: String?
        @Option(help: "Only jobs created before this RFC 3339 time.") var createdBefore: String?
        @Option(help: "The unfinished job holding this uniqueKey (alone, without other filters).") var uniqueKey: String?
        @Option(help: "Most jobs to list (1 to 1000).") var limit = 50
        @Option(help: "Go on from where the previous page ended (it prints the cursor).") var cursor: String?
        func run() throws {
            var p: JSONObject = uniqueKey.map { ["uniqueKey": .string($0)] } ?? ["limit": .from(limit)]
            if let createdFrom { p["createdFrom"] = .string(createdFrom) }
            if let createdBefore { p["createdBefore"] = .string(createdBefore) }
            if let queue { p["queue"] = .string(queue) }
            if let state { p["state"] = .string(state) }
            if let kind { p["kind"] = .string(kind) }
            if let tag { p["tag"] = .string(tag) }
            if let cursor { p["cursor"] = .string(cursor) }
            let r = try callOrExit(options, "jobs.list", .object(p))
            output(options, r) { r in
                var lines = (r["jobs"]?.arrayValue ?? []).map { j in
                    "\(j["id"]?.stringValue ?? "")\t\(j["state"]?.stringValue ?? "")\t\(j["queue"]?.stringValue ?? "")\t\(j["kind"]?.stringValue ?? "")\t\(j["runAt"]?.stringValue ?? "")"
                }
                if let next = r["nextCursor"]?.stringValue { lines.append("more: --cursor \(next)") }
                return lines.isEmpty ? "no jobs" : lines.joined(separator: "\n")
            }
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Cancel an unfinished job; a running job's worker learns it at its next heartbeat or complete (jobs.cancel)."
        )
        @OptionGroup var options: ClientOptions
        @Argument(help: "The job's id.") var id: String
        func run() throws {
            let r = try callOrExit(options, "jobs.cancel", ["id": .string(id)])
            output(options, r) { "job \(id) \($0["state"]?.stringValue ?? "")" }
        }
    }

    struct Retry: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a dead or cancelled job available again (jobs.retry).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The job's id.") var id: String
        func run() throws {
            let r = try callOrExit(options, "jobs.retry", ["id": .string(id)])
            output(options, r) { "job \(id) \($0["state"]?.stringValue ?? "")" }
        }
    }
}

struct Queues: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect, configure, pause and resume queues.",
        subcommands: [List.self, Stats.self, Configure.self, Pause.self, Resume.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List queues with their job counts and whether they are paused (queues.list).")
        @OptionGroup var options: ClientOptions
        func run() throws {
            let r = try callOrExit(options, "queues.list", [:])
            output(options, r) { r in
                let rows = (r["queues"]?.arrayValue ?? []).map { q in
                    "\(q["name"]?.stringValue ?? "")\t\(q["paused"] == true ? "paused" : "active")\tavailable \(q["available"]?.intValue ?? 0)\trunning \(q["running"]?.intValue ?? 0)\tscheduled \(q["scheduled"]?.intValue ?? 0)\tretryable \(q["retryable"]?.intValue ?? 0)"
                }
                return rows.isEmpty ? "no queues" : rows.joined(separator: "\n")
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a queue's counts per state, oldest waiting job and recent throughput (queues.stats).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The queue.") var queue: String
        func run() throws {
            let r = try callOrExit(options, "queues.stats", ["queue": .string(queue)])
            output(options, r) { r in
                let counts = (r["counts"]?.objectValue?.pairs ?? []).map { "\($0.key) \($0.value.intValue ?? 0)" }
                return "\(queue) (\(r["paused"] == true ? "paused" : "active")): " + counts.joined(separator: ", ")
                    + "\noldest available: \(r["oldestAvailableAgeMs"]?.intValue.map { "\($0) ms" } ?? "none")"
                    + ", completed last minute: \(r["completedLastMinute"]?.intValue ?? 0)"
            }
        }
    }

    struct Pause: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop leasing jobs from a queue; enqueueing goes on (queues.pause).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The queue.") var queue: String
        func run() throws {
            let r = try callOrExit(options, "queues.pause", ["queue": .string(queue)])
            output(options, r) { _ in "\(queue) paused" }
        }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lease jobs from a paused queue again (queues.resume).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The queue.") var queue: String
        func run() throws {
            let r = try callOrExit(options, "queues.resume", ["queue": .string(queue)])
            output(options, r) { _ in "\(queue) resumed" }
        }
    }
}
