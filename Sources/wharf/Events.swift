import ArgumentParser
import Foundation
import WharfClient
import WharfRPC

/// `wharf events watch`: events.subscribe, then every event as it arrives.
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Server events (job.dead, schedule.fired, lock.expired, endpoint.disabled, ...) as they happen, on any replica.",
        subcommands: [Watch.self])

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Subscribe to event types and print each event as it arrives, until interrupted (events.subscribe).",
            discussion: """
                Text prints one line per event: time, type and data; --json prints each notification's params \
                ({id, type, at, data}) on a line of its own. 'subscribed to ...' goes to standard error once the \
                subscription is in place. Events raised while no one watches are not kept. --queue, --schedule, \
                --lock and --endpoint limit the events about those (each repeatable).
                Example: wharf events watch --event 'job.*' --queue mail
                """)
        @OptionGroup var options: ClientOptions
        @Option(
            name: .customLong("event"),
            help: "An event type to receive: a type, a family such as job.*, or * (repeatable; default *).")
        var events: [String] = []
        @Option(name: .customLong("queue"), help: "Only job events of this queue (repeatable).")
        var queues: [String] = []
        @Option(name: .customLong("schedule"), help: "Only schedule events of this schedule (repeatable).")
        var schedules: [String] = []
        @Option(name: .customLong("lock"), help: "Only lock events of this lock (repeatable).")
        var locks: [String] = []
        @Option(name: .customLong("endpoint"), help: "Only endpoint and delivery events of this endpoint id (repeatable).")
        var endpoints: [String] = []
        @Option(help: "Exit after this many events.") var count: Int?

        func validate() throws {
            if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        }

        func run() throws {
            let c = try options.connect()
            let types = events.isEmpty ? ["*"] : events
            do {
                var params: JSONObject = ["events": .array(types.map(JSON.string))]
                for (name, list) in [("queues", queues), ("schedules", schedules), ("locks", locks), ("endpoints", endpoints)]
                where !list.isEmpty {
                    params[name] = .array(list.map(JSON.string))
                }
                let r = try c.call("events.subscribe", .object(params))
                let subscribed = (r["events"]?.arrayValue ?? []).compactMap(\.stringValue)
                FileHandle.standardError.write(Data("subscribed to \(subscribed.joined(separator: ", "))\n".utf8))
            } catch let e as RPCError {
                FileHandle.standardError.write(Data("error: \(e.message)\(e.data.map { " \($0.text)" } ?? "")\n".utf8))
                throw ExitCode(2)
            }
            var seen = 0
            var pending = c.notifications
            while count.map({ seen < $0 }) ?? true {
                if pending.isEmpty {
                    do {
                        pending = [try c.readMessage()]
                    } catch ClientError.timeout {
                        continue  // a quiet spell: keep waiting
                    }
                }
                let message = pending.removeFirst()
                guard message["method"] == "event", let event = message["params"] else { continue }
                output(options, event) { e in
                    "\(e["at"]?.stringValue ?? "")  \(e["type"]?.stringValue ?? "")  \((e["data"] ?? .null).text)"
                }
                fflush(nil)  // each event as it arrives, also into a pipe
                seen += 1
            }
        }
    }
}
