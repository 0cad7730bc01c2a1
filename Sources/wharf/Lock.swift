import ArgumentParser
import Foundation
import WharfClient
import WharfRPC

/// Parses durations such as `30s`, `1500ms`, `2m`, `1h`, `7d` (a bare number is seconds).
func parseDurationMs(_ text: String) throws -> Int {
    let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        if let v = Double(text.dropLast(suffix.count)), v >= 0 { return Int(v * factor) }
    }
    if let v = Double(text), v >= 0 { return Int(v * 1000) }
    throw ValidationError("not a duration: \(text) (use e.g. 30s, 500ms, 2m, 7d)")
}

/// Writes milliseconds in the largest unit that holds them whole: `30d`, `2h`, `5s`, `1500ms`.
func formatDurationMs(_ ms: Int64) -> String {
    for (suffix, factor): (String, Int64) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)]
    where ms != 0 && ms % factor == 0 {
        return "\(ms / factor)\(suffix)"
    }
    return "\(ms)ms"
}

struct Lock: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fenced locks: acquire, renew, release, inspect, or run a command while holding one.",
        subcommands: [Acquire.self, Renew.self, Release.self, Get.self, List.self, Run.self])

    struct Acquire: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Take a lock for a TTL; prints its token and fencing token, exits 75 when it is held (locks.acquire).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The lock's name.") var name: String
        @Option(help: "Lease length, e.g. 30s.") var ttl = "30s"
        @Option(help: "Wait this long for the lock, e.g. 10s.") var wait: String?
        @Option(help: "Who holds it, as locks get shows it (default: this host's name).") var holder = ProcessInfo
            .processInfo.hostName
        func run() throws {
            var p: JSONObject = [
                "name": .string(name), "holder": .string(holder), "ttlMs": .from(try parseDurationMs(ttl)),
            ]
            if let wait { p["waitMs"] = .from(try parseDurationMs(wait)) }
            let r = try callOrExit(options, "locks.acquire", .object(p))
            output(options, r) { r in
                r["granted"] == true
                    ? "granted \(name): token \(r["token"]?.stringValue ?? "") fencing \(r["fencingToken"]?.intValue ?? 0) until \(r["expiresAt"]?.stringValue ?? "")"
                    : "held by \(r["heldBy"]?.stringValue ?? "?") until \(r["expiresAt"]?.stringValue ?? "?")"
            }
            if r["granted"] != true { throw ExitCode(75) }
        }
    }

    struct Renew: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Extend a held lock by its token (locks.renew).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The lock's name.") var name: String
        @Argument(help: "The token locks acquire printed.") var token: String
        @Option(help: "New lease length from now, e.g. 30s.") var ttl = "30s"
        func run() throws {
            let r = try callOrExit(
                options, "locks.renew",
                ["name": .string(name), "token": .string(token), "ttlMs": .from(try parseDurationMs(ttl))])
            output(options, r) { "renewed \(name) until \($0["expiresAt"]?.stringValue ?? "")" }
        }
    }

    struct Release: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give a lock back by its token (locks.release).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The lock's name.") var name: String
        @Argument(help: "The token locks acquire printed.") var token: String
        func run() throws {
            let r = try callOrExit(options, "locks.release", ["name": .string(name), "token": .string(token)])
            output(options, r) { _ in "released \(name)" }
        }
    }

    struct Get: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a lock: holder, expiry, fencing token and counters (locks.get).")
        @OptionGroup var options: ClientOptions
        @Argument(help: "The lock's name.") var name: String
        func run() throws {
            let r = try callOrExit(options, "locks.get", ["name": .string(name)])
            output(options, r, Lock.describe)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List locks by name, optionally under a prefix, with holder and counters (locks.list).")
        @OptionGroup var options: ClientOptions
        @Option(help: "Only locks whose name starts with this.") var prefix: String?
        func run() throws {
            var p: JSONObject = [:]
            if let prefix { p["prefix"] = .string(prefix) }
            let r = try callOrExit(options, "locks.list", .object(p))
            output(options, r) { r in
                let rows = (r["locks"]?.arrayValue ?? []).map(Lock.describe)
                return rows.isEmpty ? "no locks" : rows.joined(separator: "\n")
            }
        }
    }

    static func describe(_ l: JSON) -> String {
        let name = l["name"]?.stringValue ?? ""
        let s = l["stats"]
        let counters =
            "grants \(s?["grants"]?.intValue ?? 0), waits \(s?["waits"]?.intValue ?? 0), expired \(s?["expiriesWithoutRelease"]?.intValue ?? 0)"
        if l["held"] == true {
            return
                "\(name)\theld by \(l["holder"]?.stringValue ?? "") until \(l["expiresAt"]?.stringValue ?? "")\tfencing \(l["fencingToken"]?.intValue ?? 0)\t\(counters)"
        }
        return "\(name)\tfree\tfencing \(l["fencingToken"]?.intValue ?? 0)\t\(counters)"
    }
}
