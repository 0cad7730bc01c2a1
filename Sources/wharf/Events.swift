import ArgumentParser
import Foundation
import WharfClient
import WharfRPC

/// `wharf events watch`: events.subscribe, then every event as it arrives.
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Server events (endpoint.disabled, ...) as they happen, raised on any replica.",
        subcommands: [Watch.self])

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Subscribe to event types and print each event as it arrives, until interrupted (events.subscribe).",
            discussion: """
                Text prints one line per event: time, type and data; --json prints each notification's params \
                ({type, at, data}) on a line of its own. 'subscribed to ...' goes to standard error once the \
                subscription is in place. Events raised while no one watches are not kept.
                Example: wharf events watch --event endpoint.disabled
                """)
        @OptionGroup var options: ClientOptions
        @Option(
            name: .customLong("event"),
            help: "An event type to receive (repeatable; default * for all). Today: endpoint.disabled.")
        var events: [String] = []
        @Option(help: "Exit after this many events.") var count: Int?

        func validate() throws {
            if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        }

        func run() throws {
            let c = try options.connect()
            let types = events.isEmpty ? ["*"] : events
            do {
                let r = try c.call("events.subscribe", ["events": .array(types.map(JSON.string))])
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
