import ArgumentParser
import Foundation
import WharfRPC

struct Cron: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cron schedules: create or replace, inspect, pause, resume, run now, preview.",
        subcommands: [
            Upsert.self, List.self, Get.self, Remove.self, Pause.self, Resume.self, Trigger.self, Preview.self,
        ])

    /// Options that say when a schedule fires (shared by upsert and preview).
    struct Timing: ParsableArguments {
        @Option(help: "IANA time zone, e.g. Europe/Berlin (default UTC).") var timezone: String?
        @Option(help: "How day-of-month and day-of-week combine: or (default) or and.") var dayMatch: String?
        @Option(help: "Local times skipped by a DST change: runAtTransition or skip.") var dstGap: String?
        @Option(help: "Local times repeated by a DST change: once or twice.") var dstFold: String?

        func apply(to p: inout JSONObject, expression: String) throws {
            if expression.lowercased().hasPrefix("every ") {
                p["everyMs"] = .from(try parseDurationMs(String(expression.dropFirst(6))))
            } else {
                p["expression"] = .string(expression)
            }
            if let timezone { p["timezone"] = .string(timezone) }
            if let dayMatch { p["dayMatch"] = .string(dayMatch) }
            if let dstGap { p["dstGap"] = .string(dstGap) }
            if let dstFold { p["dstFold"] = .string(dstFold) }
        }
    }

    struct Upsert: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or replace a schedule that enqueues a job.",
            discussion: """
                EXPRESSION is a cron expression (5 fields, or 6 with seconds first), a macro such as @daily, \
                '@every 90s', or 'every 90s'.
                Example: wharf cron upsert nightly-report '0 3 * * *' --timezone Europe/Berlin --queue reports \
                --kind report '{"format":"pdf"}'
                """)
        @OptionGroup var options: ClientOptions
        @OptionGroup var timing: Timing
        @Argument(help: "The schedule's name.") var name: String
        @Argument(help: "When it fires.") var expression: String
        @Argument(help: "The job's payload as JSON.") var payload: String?
        @Option(help: "Queue of the jobs it makes.") var queue: String
        @Option(help: "Kind of the jobs it makes.") var kind: String
        @Option(help: "allow (default), skip (no fire while a run is unfinished) or bufferOne.") var overlap: String?
        @Option(help: "After downtime: skip, runOnce (default) or runAll.") var missed: String?
        @Option(help: "Random delay added to each run, e.g. 30s.") var jitter: String?
        @Option(help: "Stop after this many fires.") var limit: Int?
        @Option(help: "Job options as a JSON object (priority, maxAttempts, retry, timeoutMs, tags...).")
        var jobOptions: String?
        @Flag(help: "Create it paused.") var paused = false

        func run() throws {
            var job: JSONObject = ["queue": .string(queue), "kind": .string(kind)]
            if let jobOptions, case .object(let o) = try parseJSONArgument(jobOptions, name: "--job-options") {
                for (k, v) in o.pairs { job[k] = v }
            }
            if let payload { job["payload"] = try parseJSONArgument(payload, name: "payload") }
            var p: JSONObject = ["name": .string(name), "target": ["job": .object(job)]]
            try timing.apply(to: &p, expression: expression)
            if let overlap { p["overlap"] = .string(overlap) }
            if let missed { p["missed"] = .string(missed) }
            if let jitter { p["jitterMs"] = .from(try parseDurationMs(jitter)) }
            if let limit { p["limit"] = .from(limit) }
            if paused { p["paused"] = true }
            let r = try callOrExit(options, "cron.upsert", .object(p))
            output(options, r) { r in
                (r["created"] == true ? "created " : "replaced ") + Cron.describe(r)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List schedules with their timing, next fire and runs (cron.list).")
        @OptionGroup var options: ClientOptions
        @Option(help: "Only schedules whose name starts with this.") var prefix: String?
        @Option(help: "Most schedules to list (1 to 1000).") var limit = 100
        func run() throws {
            var p: JSONObject = ["limit": .from(limit)]
            if let prefix { p["prefix"] = .string(prefix) }
            let r = try callOrExit(options, "cron.list", .object(p))
            output(options, r) { r in
                let rows = r["schedules"]?.arrayValue ?? []
                if rows.isEmpty { return "no schedules" }
                return rows.map { s in
                    let state = s["paused"] == true ? "paused" : "next \(s["nextFireAt"]?.stringValue ?? "never")"
                    return
                        "\(s["name"]?.stringValue ?? "")  \(s["expression"]?.stringValue ?? "every \(s["everyMs"]?.intValue ?? 0) ms")  \(state)  runs \(s["stats"]?["runs"]?.intValue ?? 0)"
                }.joined(separator: "\n")
            }
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a schedule: timing, target, policies, next fires, last fire, stats (cron.get).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The schedule's name.") var name: String
        func run() throws {
            output(options, try callOrExit(options, "cron.get", ["name": .string(name)]), Cron.describe)
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a schedule; jobs it made stay (cron.remove).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The schedule's name.") var name: String
        func run() throws {
            output(options, try callOrExit(options, "cron.remove", ["name": .string(name)])) { _ in "removed \(name)" }
        }
    }

    struct Pause: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a schedule firing until it is resumed (cron.pause).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The schedule's name.") var name: String
        @Option(help: "Why, for whoever looks next.") var note: String?
        func run() throws {
            var p: JSONObject = ["name": .string(name)]
            if let note { p["note"] = .string(note) }
            output(options, try callOrExit(options, "cron.pause", .object(p)), Cron.describe)
        }
    }

    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Let a paused schedule fire again from its next time (cron.resume).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The schedule's name.") var name: String
        func run() throws {
            output(options, try callOrExit(options, "cron.resume", ["name": .string(name)]), Cron.describe)
        }
    }

    struct Trigger: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run a schedule's job once, now.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The schedule's name.") var name: String
        func run() throws {
            let r = try callOrExit(options, "cron.trigger", ["name": .string(name)])
            output(options, r) { "enqueued job \($0["jobId"]?.stringValue ?? "")" }
        }
    }

    struct Preview: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show when an expression fires, without saving anything.")
        @OptionGroup var options: ClientOptions
        @OptionGroup var timing: Timing
        @Argument(help: "A cron expression, a macro such as @daily, or 'every 90s'.") var expression: String
        @Option(help: "How many fire times to show (1 to 1000).") var count = 5
        @Option(help: "Start from this RFC 3339 time instead of now.") var from: String?
        func run() throws {
            var p: JSONObject = ["count": .from(count)]
            try timing.apply(to: &p, expression: expression)
            if let from { p["from"] = .string(from) }
            let r = try callOrExit(options, "cron.preview", .object(p))
            output(options, r) { r in
                ([r["description"]?.stringValue ?? ""] + (r["fires"]?.arrayValue ?? []).compactMap(\.stringValue))
                    .joined(separator: "\n")
            }
        }
    }

    static func describe(_ s: JSON) -> String {
        let timing = s["expression"]?.stringValue ?? "every \(s["everyMs"]?.intValue ?? 0) ms"
        var lines = [
            "\(s["name"]?.stringValue ?? "")  \(timing)  (\(s["description"]?.stringValue ?? ""))",
            "  timezone   \(s["timezone"]?.stringValue ?? "UTC")",
            "  target     \((s["target"] ?? .null).text)",
            "  policies   overlap \(s["overlap"]?.stringValue ?? "")  missed \(s["missed"]?.stringValue ?? "")",
        ]
        if s["paused"] == true {
            lines.append(
                "  paused     since \(s["pausedAt"]?.stringValue ?? "")  \(s["pausedNote"]?.stringValue ?? "")")
        }
        let next = (s["nextFires"]?.arrayValue ?? []).compactMap(\.stringValue)
        lines.append("  next       \(next.isEmpty ? "none" : next.joined(separator: ", "))")
        if let last = s["lastFire"], last != .null {
            lines.append(
                "  last       \(last["nominalAt"]?.stringValue ?? "") (fired \(last["lagMs"]?.intValue ?? 0) ms late, job \(last["jobId"]?.stringValue ?? "gone"))"
            )
        }
        let stats = s["stats"]
        lines.append(
            "  stats      runs \(stats?["runs"]?.intValue ?? 0)  skipped \(stats?["skippedOverlap"]?.intValue ?? 0)  missed \(stats?["missed"]?.intValue ?? 0)"
        )
        return lines.joined(separator: "\n")
    }
}
