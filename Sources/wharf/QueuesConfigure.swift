import ArgumentParser
import Foundation
import WharfRPC

extension Queues {
    struct Configure: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a queue's retry policy and how long its finished jobs are kept (queues.configure).",
            discussion: """
                A job's own retry fields win, then the queue's, then the server's (wharf serve --retry-*). \
                The --retry-* options given form the queue's whole retry policy (fields left out take the \
                server's); without any, the policy stays as it is. A retention option left out stays as it is; \
                'server' goes back to the server's (--job-retention, --dead-job-retention). Retention applies \
                to jobs that finish after the change.
                Example: wharf queues configure mail --retry-initial 5s --retry-max 10m --keep-dead 30d
                """)
        @OptionGroup var options: ClientOptions
        @Argument(help: "The queue.") var queue: String
        @Option(help: "Delay before the first retry, e.g. 5s.") var retryInitial: String?
        @Option(help: "Longest delay between retries, e.g. 10m.") var retryMax: String?
        @Option(help: "Each delay is the one before times this (at least 1).") var retryCoefficient: Double?
        @Option(help: "Random share of each delay, 0 to 1 (0.1 spreads it by up to 10%).") var retryJitter: Double?
        @Flag(help: "Drop the queue's retry policy: its jobs use the server's.") var clearRetry = false
        @Option(
            help: "Keep completed and cancelled jobs this long, e.g. 2h (0 prunes at once; 'server': the server's).")
        var keepCompleted: String?
        @Option(help: "Keep dead jobs this long, e.g. 30d ('server': the server's).") var keepDead: String?

        func validate() throws {
            let retry = [retryInitial, retryMax, retryCoefficient.map { "\($0)" }, retryJitter.map { "\($0)" }]
            if clearRetry && retry.contains(where: { $0 != nil }) {
                throw ValidationError("--clear-retry cannot be combined with --retry-*")
            }
            if !clearRetry && retry.allSatisfy({ $0 == nil }) && keepCompleted == nil && keepDead == nil {
                throw ValidationError("nothing to set: give --retry-*, --clear-retry, --keep-completed or --keep-dead")
            }
        }

        func run() throws {
            var p: JSONObject = ["queue": .string(queue)]
            var retry: JSONObject = [:]
            if let retryInitial { retry["initialMs"] = .from(try parseDurationMs(retryInitial)) }
            if let retryMax { retry["maxMs"] = .from(try parseDurationMs(retryMax)) }
            if let retryCoefficient { retry["coefficient"] = .double(retryCoefficient) }
            if let retryJitter { retry["jitter"] = .double(retryJitter) }
            if clearRetry { p["retry"] = .null } else if !retry.isEmpty { p["retry"] = .object(retry) }
            var retention: JSONObject = [:]
            func keep(_ text: String) throws -> JSON { text == "server" ? .null : .from(try parseDurationMs(text)) }
            if let keepCompleted { retention["completedMs"] = try keep(keepCompleted) }
            if let keepDead { retention["deadMs"] = try keep(keepDead) }
            if !retention.isEmpty { p["retention"] = .object(retention) }
            let r = try callOrExit(options, "queues.configure", .object(p))
            output(options, r, Queues.describeSettings)
        }
    }

    /// A queue's own settings as `queues.configure` returns them.
    static func describeSettings(_ r: JSON) -> String {
        func ms(_ v: JSON?) -> String { v?.intValue.map(formatDurationMs) ?? "server's" }
        let retry = r["retry"] ?? .null
        let policy =
            retry == .null
            ? "server's"
            : "initial \(ms(retry["initialMs"]))  max \(ms(retry["maxMs"]))  coefficient \(retry["coefficient"]?.doubleValue.map { "\($0)" } ?? "server's")  jitter \(retry["jitter"]?.doubleValue.map { "\($0)" } ?? "server's")"
        return """
            \(r["queue"]?.stringValue ?? "") (\(r["paused"] == true ? "paused" : "active"))
              retry      \(policy)
              retention  completed \(ms(r["retention"]?["completedMs"]))  dead \(ms(r["retention"]?["deadMs"]))
            """
    }
}

extension Jobs {
    struct EnqueueBatch: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "enqueue-batch",
            abstract: "Enqueue many jobs in one statement, all or nothing (jobs.enqueueBatch).",
            discussion: """
                FILE holds the jobs as a JSON array, or one JSON object per line; '-' reads standard input. \
                Each job takes the fields of jobs.enqueue: queue, kind, payload, priority, runAt or delayMs, \
                maxAttempts, retry, timeoutMs, uniqueKey, lockKey, tags...
                Example: printf '%s\\n' '{"queue":"mail","kind":"welcome","payload":{"to":"a@b"}}' | wharf jobs enqueue-batch -
                """)
        @OptionGroup var options: ClientOptions
        @Argument(help: "A file of jobs, or '-' for standard input.") var file: String

        func run() throws {
            let data =
                file == "-"
                ? FileHandle.standardInput.readDataToEndOfFile()
                : try Data(contentsOf: URL(fileURLWithPath: file))
            let text = String(decoding: data, as: UTF8.self)
            let jobs: [JSON]
            if text.drop(while: \.isWhitespace).first == "[" {
                guard let a = try parseJSONArgument(text, name: file).arrayValue else {
                    throw ValidationError("\(file) is not a JSON array")
                }
                jobs = a
            } else {
                jobs = try text.split(separator: "\n").filter { !$0.allSatisfy(\.isWhitespace) }.enumerated().map {
                    try parseJSONArgument(String($0.element), name: "line \($0.offset + 1) of \(file)")
                }
            }
            if jobs.isEmpty { throw ValidationError("\(file) holds no jobs") }
            let r = try callOrExit(options, "jobs.enqueueBatch", ["jobs": .array(jobs)])
            output(options, r) { r in
                (r["jobs"]?.arrayValue ?? []).map { j in
                    "job \(j["id"]?.stringValue ?? "?") \(j["state"]?.stringValue ?? "")"
                        + (j["replayed"] == true ? " (replayed)" : j["duplicate"] == true ? " (duplicate)" : "")
                }.joined(separator: "\n")
            }
        }
    }
}
