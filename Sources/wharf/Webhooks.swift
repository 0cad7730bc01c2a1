import ArgumentParser
import Foundation
import WharfRPC

struct Webhooks: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Webhook endpoints: register, inspect, change, enable, remove; deliveries, redeliver, recover; rotate the secret, test, send.",
        subcommands: [
            Register.self, List.self, Get.self, Health.self, Update.self, Enable.self, Remove.self, Deliveries.self,
            Redeliver.self, Recover.self, RotateSecret.self, Test.self, Send.self,
        ])

    struct Register: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Add an endpoint; prints its signing secret (only now) and whether a ping reached it (webhooks.register)."
        )
        @OptionGroup var options: ClientOptions
        @Argument(
            help:
                "Where deliveries go: an http or https URL (private addresses need --allow-private-webhooks on the server)."
        ) var url: String
        @Option(help: "Events it receives (repeatable; all when omitted).") var event: [String] = []
        @Option(help: "A note for people reading the endpoint list.") var description: String?
        func run() throws {
            var p: JSONObject = ["url": .string(url)]
            if !event.isEmpty { p["events"] = .array(event.map(JSON.string)) }
            if let description { p["description"] = .string(description) }
            let r = try callOrExit(options, "webhooks.register", .object(p))
            output(options, r) { r in
                let ping = r["ping"] ?? .null
                return """
                    endpoint \(r["id"]?.stringValue ?? "")  \(url)
                      secret     \(r["secret"]?.stringValue ?? "")   (shown only now)
                      ping       \(r["verified"] == true ? "verified" : "not verified"): status \(ping["status"]?.intValue.map(String.init) ?? "none") \(ping["error"]?.stringValue ?? "")
                    """
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List endpoints with their health, one line each (webhooks.list).")
        @OptionGroup var options: ClientOptions
        func run() throws {
            let r = try callOrExit(options, "webhooks.list", ["limit": 1000])
            output(options, r) { r in
                let rows = r["endpoints"]?.arrayValue ?? []
                if rows.isEmpty { return "no endpoints" }
                return rows.map(Webhooks.row).joined(separator: "\n")
            }
        }
    }

    struct Deliveries: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "List an endpoint's deliveries with every attempt: time, status or error, latency (webhooks.deliveries)."
        )
        @OptionGroup var options: ClientOptions
        @Argument(help: "The endpoint's id.") var endpoint: String
        @Option(help: "pending, delivering, succeeded or failed.") var state: String?
        @Option(help: "Most deliveries to list, newest first.") var limit = 20
        func run() throws {
            var p: JSONObject = ["endpointId": .string(endpoint), "limit": .from(limit)]
            if let state { p["state"] = .string(state) }
            let r = try callOrExit(options, "webhooks.deliveries", .object(p))
            output(options, r) { r in
                (r["deliveries"]?.arrayValue ?? []).map { d in
                    var lines = [
                        "\(d["id"]?.stringValue ?? "")  \(d["state"]?.stringValue ?? "")  \(d["event"]?.stringValue ?? "")  \(d["messageId"]?.stringValue ?? "")"
                    ]
                    for a in d["attemptLog"]?.arrayValue ?? [] {
                        lines.append(
                            "    #\(a["attempt"]?.intValue ?? 0) \(a["at"]?.stringValue ?? "")  \(a["status"]?.intValue.map(String.init) ?? a["errorKind"]?.stringValue ?? "")  \(a["latencyMs"]?.doubleValue.map { String(format: "%.1f ms", $0) } ?? "")"
                        )
                    }
                    return lines.joined(separator: "\n")
                }.joined(separator: "\n")
            }
        }
    }

    struct Redeliver: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue a finished delivery again, with the same webhook-id (webhooks.redeliver).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The delivery's id (webhooks deliveries lists them).") var delivery: String
        func run() throws {
            let r = try callOrExit(options, "webhooks.redeliver", ["deliveryId": .string(delivery)])
            output(options, r) { "delivery \(delivery): \($0["state"]?.stringValue ?? "")" }
        }
    }

    struct RotateSecret: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Replace an endpoint's signing secret; the old one keeps signing for the grace period (webhooks.rotateSecret)."
        )
        @OptionGroup var options: ClientOptions
        @Argument(help: "The endpoint's id.") var endpoint: String
        @Option(help: "How long the old secret keeps signing, e.g. 24h.") var grace = "24h"
        func run() throws {
            let r = try callOrExit(
                options, "webhooks.rotateSecret",
                ["id": .string(endpoint), "graceMs": .from(try parseDurationMs(grace))])
            output(options, r) {
                "new secret \($0["secret"]?.stringValue ?? "") (the old one signs too until \($0["previousSecretValidUntil"]?.stringValue ?? ""))"
            }
        }
    }

    struct Test: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a ping to an endpoint now; exits 1 when it fails (webhooks.test).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The endpoint's id.") var endpoint: String
        func run() throws {
            let r = try callOrExit(options, "webhooks.test", ["id": .string(endpoint)])
            output(options, r) { r in
                r["verified"] == true
                    ? "ping delivered: status \(r["status"]?.intValue ?? 0) in \(r["latencyMs"]?.doubleValue ?? 0) ms"
                    : "ping failed: \(r["errorKind"]?.stringValue ?? "") \(r["error"]?.stringValue ?? "")"
            }
            if r["verified"] != true { throw ExitCode(1) }
        }
    }

    struct Send: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send an event to one endpoint or to every subscribed one (webhooks.send).")
        @OptionGroup var options: ClientOptions
        @Option(help: "Send to this endpoint.") var endpoint: String?
        @Option(help: "The event type; without --endpoint, every subscribed endpoint gets it.") var event: String?
        @Argument(help: "The payload as JSON.") var payload: String
        func run() throws {
            var p: JSONObject = ["payload": try parseJSONArgument(payload, name: "payload")]
            if let endpoint { p["endpointId"] = .string(endpoint) }
            if let event { p["event"] = .string(event) }
            let r = try callOrExit(options, "webhooks.send", .object(p))
            output(options, r) { r in
                "queued \((r["deliveryIds"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "))"
            }
        }
    }

    /// One line per endpoint: id, state, URL and the health figures `webhooks list` shows.
    static func row(_ e: JSON) -> String {
        let h = e["health"] ?? .null
        let rate = h["successRate24h"]?.doubleValue.map { String(format: "%.0f%%", $0 * 100) } ?? "-"
        return
            "\(e["id"]?.stringValue ?? "")  \(h["state"]?.stringValue ?? "")\(h["dormant"] == true ? " dormant" : "")  \(e["url"]?.stringValue ?? "")  last success \(h["lastSuccessAt"]?.stringValue ?? "never")  24h \(rate)  failures in a row \(h["consecutiveFailures"]?.intValue ?? 0)  pending \(h["pendingDeliveries"]?.intValue ?? 0)"
    }
}
