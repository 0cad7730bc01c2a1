import ArgumentParser
import Foundation
import WharfRPC

/// `wharf server ping|info|health`: the server.* methods.
struct ServerCommands: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Ask a running server whether it is alive, what it is, and whether its database answers.",
        subcommands: [Ping.self, Info.self, Health.self, Replicas.self])

    struct Ping: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check that the server answers, without touching the database (server.ping).")
        @OptionGroup var options: ClientOptions
        func run() throws {
            let r = try callOrExit(options, "server.ping", [:])
            output(options, r) { $0.stringValue ?? $0.text }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the server's version, replica id, uptime, resource usage and limits (server.info).")
        @OptionGroup var options: ClientOptions
        func run() throws {
            let r = try callOrExit(options, "server.info", [:])
            output(options, r) { r in
                let u = r["usage"] ?? .null
                var lines = [
                    "\(r["name"]?.stringValue ?? "wharf") \(r["version"]?.stringValue ?? "")  protocol \(r["protocolVersion"]?.stringValue ?? "")",
                    "  replica    \(r["replicaId"]?.stringValue ?? "")  started \(r["startedAt"]?.stringValue ?? "")  up \(r["uptimeMs"]?.intValue.map { "\($0 / 1000) s" } ?? "")",
                    "  postgres   \(r["postgresVersion"]?.stringValue ?? "unknown")",
                    "  usage      cpu \((u["cpuUserUs"]?.intValue ?? 0) / 1000) ms user, \((u["cpuSystemUs"]?.intValue ?? 0) / 1000) ms system  max rss \((u["maxRssBytes"]?.intValue ?? 0) >> 20) MiB  db round trips \(u["dbSegments"]?.intValue ?? 0)",
                ]
                let limits = (r["limits"]?.objectValue?.pairs ?? []).map { "\($0.key) \($0.value.text)" }
                if !limits.isEmpty { lines.append("  limits     " + limits.joined(separator: ", ")) }
                return lines.joined(separator: "\n")
            }
        }
    }

    struct Replicas: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the replicas serving this database, alive or lately gone (server.replicas).")
        @OptionGroup var options: ClientOptions
        func run() throws {
            let r = try callOrExit(options, "server.replicas", [:])
            output(options, r) { r in
                (r["replicas"]?.arrayValue ?? []).map { x in
                    let state = x["alive"] != true ? "gone" : x["draining"] == true ? "draining" : "alive"
                    return "\(x["replicaId"]?.stringValue ?? "")\t\(state)\t\(x["hostname"]?.stringValue ?? "")\t"
                        + "\(x["listen"]?.stringValue ?? "")\tv\(x["version"]?.stringValue ?? "")\tseen \(x["lastSeenAt"]?.stringValue ?? "")"
                        + (x["self"] == true ? "\t(this one)" : "")
                }.joined(separator: "\n")
            }
        }
    }

    struct Health: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a round trip to PostgreSQL through the server and report it (server.health).",
            discussion:
                "Exits 0 when the status is ok, 1 otherwise (read_only or unavailable): usable as a readiness probe.")
        @OptionGroup var options: ClientOptions
        func run() throws {
            let r = try callOrExit(options, "server.health", [:])
            output(options, r) { r in
                let d = r["database"] ?? .null
                var line =
                    "\(r["status"]?.stringValue ?? "")  replica \(r["replicaId"]?.stringValue ?? "")  connections \(r["connections"]?.intValue ?? 0)  database "
                if d["reachable"] == true {
                    line +=
                        "reachable in \(d["roundTripMs"]?.doubleValue.map { String(format: "%.1f ms", $0) } ?? "?")\(d["readOnly"] == true ? ", read-only" : "")\(d["standby"] == true ? ", standby" : "")  pool \(d["poolReady"]?.intValue ?? 0)/\(d["poolSize"]?.intValue ?? 0)"
                } else {
                    line += "unreachable: \(d["error"]?.stringValue ?? "")"
                }
                return line
            }
            if r["status"]?.stringValue != "ok" { throw ExitCode(1) }
        }
    }
}
