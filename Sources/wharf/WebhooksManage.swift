import ArgumentParser
import Foundation
import WharfRPC

/// `wharf webhooks get|health|update|enable|remove|recover`: an endpoint's settings and state.
extension Webhooks {
    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show an endpoint: its URL, events, policies and health (webhooks.get).")
        @OptionGroup var endpoint: EndpointCall
        func run() throws { try endpoint.call("webhooks.get", Webhooks.describe) }
    }

    struct Health: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Show an endpoint's health: state, last success and failure, failures in a row, success rates, latency (webhooks.health)."
        )
        @OptionGroup var endpoint: EndpointCall
        func run() throws { try endpoint.call("webhooks.health", Webhooks.describeHealth) }
    }

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Change an endpoint's URL, description, events or policies; what is not given stays (webhooks.update).",
            discussion:
                "Example: wharf webhooks update 3 --url https://hooks.example.com/v2 --rate-limit 20 --retention 30d")
        @OptionGroup var endpoint: EndpointCall
        @Option(help: "The new URL (checked as webhooks.register checks it).") var url: String?
        @Option(help: "A note for people reading the endpoint list.") var description: String?
        @Option(help: "Events it receives from now on (repeatable; replaces the list).") var event: [String] = []
        @Option(help: "At most this many attempts per second to this endpoint (per replica).") var rateLimit: Int?
        @Option(help: "Disable it after failing for this long, e.g. 5d (the server's default: 5 days).")
        var disableAfter: String?
        @Option(help: "Report it dormant after this long without a success, e.g. 30d (default 365 days).")
        var dormantAfter: String?
        @Option(help: "Keep finished deliveries this long, e.g. 30d; 'server' goes back to the server's (7 days).")
        var retention: String?
        func validate() throws {
            let given = [
                url, description, event.first, rateLimit.map(String.init), disableAfter, dormantAfter, retention,
            ]
            if given.allSatisfy({ $0 == nil }) {
                throw ValidationError(
                    "nothing to change: give --url, --description, --event, --rate-limit, --disable-after, --dormant-after or --retention"
                )
            }
        }

        func run() throws {
            var p: JSONObject = [:]
            if let url { p["url"] = .string(url) }
            if let description { p["description"] = .string(description) }
            if !event.isEmpty { p["events"] = .array(event.map(JSON.string)) }
            if let rateLimit { p["rateLimitPerS"] = .from(rateLimit) }
            if let disableAfter { p["disableAfterMs"] = .from(try parseDurationMs(disableAfter)) }
            if let dormantAfter { p["dormantAfterMs"] = .from(try parseDurationMs(dormantAfter)) }
            if let retention {
                p["retentionMs"] = retention == "server" ? .null : .from(try parseDurationMs(retention))
            }
            try endpoint.call("webhooks.update", params: p) { "updated " + Webhooks.describe($0) }
        }
    }

    struct Enable: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Enable a disabled endpoint; its waiting deliveries go out again (webhooks.enable).")
        @OptionGroup var endpoint: EndpointCall
        func run() throws { try endpoint.call("webhooks.enable") { "enabled " + Webhooks.row($0) } }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete an endpoint and all its deliveries (webhooks.remove).")
        @OptionGroup var endpoint: EndpointCall
        func run() throws { try endpoint.call("webhooks.remove") { "removed endpoint \($0["id"]?.stringValue ?? "")" } }
    }

    struct Recover: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue again every failed delivery of an endpoint created since a time (webhooks.recover).",
            discussion: "Example, after fixing a receiver that failed overnight: wharf webhooks recover 3 --since 12h")
        @OptionGroup var endpoint: EndpointCall
        @Option(help: "An RFC 3339 time, or a duration meaning that long ago (e.g. 6h, 2d).") var since: String
        func run() throws {
            try endpoint.call("webhooks.recover", params: ["since": .string(try sinceTime(since))], idKey: "endpointId")
            {
                "requeued \($0["requeued"]?.intValue ?? 0) failed deliveries of endpoint \(endpoint.endpoint)"
            }
        }
    }

    /// The server and the endpoint a command names; `call` sends the id (under `idKey`) with `params`
    /// and prints the result.
    struct EndpointCall: ParsableArguments {
        @OptionGroup var options: ClientOptions
        @Argument(help: "The endpoint's id.") var endpoint: String

        func call(_ method: String, params: JSONObject = [:], idKey: String = "id", _ text: (JSON) -> String) throws {
            var p = params
            p[idKey] = .string(endpoint)
            output(options, try callOrExit(options, method, .object(p)), text)
        }
    }

    /// An endpoint with its settings and health, for `get` and `update`.
    static func describe(_ e: JSON) -> String {
        var lines = ["\(e["id"]?.stringValue ?? "")  \(e["url"]?.stringValue ?? "")"]
        if let d = e["description"]?.stringValue { lines.append("  description  \(d)") }
        let events = (e["events"]?.arrayValue ?? []).compactMap(\.stringValue)
        lines.append("  events       \(events.isEmpty ? "all" : events.joined(separator: ", "))")
        func ms(_ key: String, _ fallback: String) -> String { e[key]?.intValue.map(formatDurationMs) ?? fallback }
        lines.append(
            "  policies     rate limit \(e["rateLimitPerS"]?.intValue.map { "\($0)/s" } ?? "none")  disable after \(ms("disableAfterMs", "server's"))  dormant after \(ms("dormantAfterMs", "server's"))  retention \(ms("retentionMs", "server's"))"
        )
        lines.append(
            describeHealth(e["health"] ?? .null).split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        return lines.joined(separator: "\n")
    }

    /// Health as `webhooks.health` reports it.
    static func describeHealth(_ h: JSON) -> String {
        func rate(_ key: String) -> String { h[key]?.doubleValue.map { String(format: "%.0f%%", $0 * 100) } ?? "-" }
        func latency(_ key: String) -> String { h[key]?.doubleValue.map { String(format: "%.1f ms", $0) } ?? "-" }
        var lines = ["state        \(h["state"]?.stringValue ?? "")\(h["dormant"] == true ? " (dormant)" : "")"]
        if let at = h["disabledAt"]?.stringValue {
            lines.append("disabled     since \(at) (\(h["disabledReason"]?.stringValue ?? ""))")
        }
        lines += [
            "last success \(h["lastSuccessAt"]?.stringValue ?? "never")  last failure \(h["lastFailureAt"]?.stringValue ?? "never")",
            "failures     \(h["consecutiveFailures"]?.intValue ?? 0) in a row\(h["failingSince"]?.stringValue.map { " since \($0)" } ?? "")",
            "success      1h \(rate("successRate1h"))  24h \(rate("successRate24h"))",
            "latency      p50 \(latency("latencyP50Ms"))  p95 \(latency("latencyP95Ms"))",
            "pending      \(h["pendingDeliveries"]?.intValue ?? 0) deliveries",
        ]
        return lines.joined(separator: "\n")
    }
}

/// `--since`: an RFC 3339 time as given, or a duration (`6h`) counted back from now.
func sinceTime(_ text: String, now: Date = Date()) throws -> String {
    if text.contains("T") || text.contains("-") { return text }
    let ms = try parseDurationMs(text)
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: now.addingTimeInterval(-Double(ms) / 1000))
}
