import ArgumentParser
import Foundation
import Logging
import WharfHooks
import WharfServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server. Without --database it runs its own PostgreSQL under --data-dir.")

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen = "127.0.0.1:7411"

    @Option(help: "PostgreSQL connection string or URL. Omit to use the embedded PostgreSQL.")
    var database: String?

    @Option(help: "Directory for the embedded PostgreSQL and other local state.")
    var dataDir = "./.wharf"

    @Option(name: .customLong("token"), help: "ROLE:SECRET, repeatable. Roles: admin, producer, worker, reader.")
    var tokens: [String] = []

    @Option(help: "File with one ROLE:SECRET per line (# comments allowed).")
    var tokenFile: String?

    @Option(help: "PostgreSQL connections in the pool.")
    var poolSize = 4

    @Option(help: "Largest request line in bytes.")
    var maxFrameBytes = 1 << 20

    @Option(help: "Close connections idle for this many milliseconds.")
    var idleTimeoutMs = 300_000

    @Option(help: "Default first retry delay of a failed job, in milliseconds.")
    var retryInitialMs = 1_000.0

    @Option(help: "Default longest retry delay, in milliseconds.")
    var retryMaxMs = 3_600_000.0

    @Option(help: "Default growth of the retry delay per attempt.")
    var retryCoefficient = 2.0

    @Option(help: "Default random spread of retry delays (0.1 = ±10%).")
    var retryJitter = 0.1

    @Flag(help: "Let webhooks go to loopback, private and other non-public addresses (development and tests).")
    var allowPrivateWebhooks = false

    @Option(help: "A non-public network webhooks may go to anyway, e.g. 10.1.0.0/16 (repeatable).")
    var webhookAllowCidr: [String] = []

    @Option(help: "Delays before each webhook attempt, e.g. 0,5s,5m,30m,2h (default: the Standard Webhooks example).")
    var webhookRetrySchedule: String?

    @Option(help: "PEM file of CAs to trust for HTTPS webhook targets instead of the system's.")
    var webhookCaFile: String?

    @Option(help: "Webhook connect timeout, e.g. 5s.") var webhookConnectTimeout = "5s"
    @Option(help: "Webhook total timeout per attempt, e.g. 15s.") var webhookTimeout = "15s"
    @Option(help: "Disable an endpoint after failing for this long, e.g. 120h (five days).")
    var webhookDisableAfter = "120h"

    @Option(help: "Shortest period a cron schedule may have, in milliseconds (1 to 86400000).")
    var cronMinPeriodMs: Int64 = 1_000

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func run() throws {
        let logger = makeLogger(level: logLevel)
        let (host, port) = try parseHostPort(listen)
        var secrets = tokens
        if let tokenFile {
            let text = try String(contentsOfFile: tokenFile, encoding: .utf8)
            secrets += text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        var tokenMap: [String: Role] = [:]
        for t in secrets {
            let parts = t.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, let role = Role(rawValue: parts[0]), !parts[1].isEmpty else {
                throw ValidationError("token must be ROLE:SECRET with ROLE one of admin, producer, worker, reader")
            }
            tokenMap[parts[1]] = role
        }

        var embedded: EmbeddedPostgres?
        var config = ServerConfig(database: database ?? "")
        config.host = host
        config.port = port
        config.tokens = tokenMap
        config.poolSize = poolSize
        config.limits.maxFrameBytes = maxFrameBytes
        config.limits.idleTimeoutMs = idleTimeoutMs
        config.retry.initialMs = retryInitialMs
        config.retry.maxMs = retryMaxMs
        config.retry.coefficient = max(1, retryCoefficient)
        config.retry.jitter = min(max(0, retryJitter), 1)
        config.webhooks.allowPrivate = allowPrivateWebhooks
        config.webhooks.allowCIDRs = try webhookAllowCidr.map { text in
            guard let c = CIDR(text) else { throw ValidationError("not a CIDR block: \(text)") }
            return c
        }
        if let webhookRetrySchedule {
            config.webhooks.retryScheduleMs = try webhookRetrySchedule.split(separator: ",").map {
                Int64(try parseDurationMs(String($0).trimmingCharacters(in: .whitespaces)))
            }
            guard !config.webhooks.retryScheduleMs.isEmpty else { throw ValidationError("empty retry schedule") }
        }
        config.webhooks.caFile = webhookCaFile
        config.webhooks.connectTimeoutMs = try parseDurationMs(webhookConnectTimeout)
        config.webhooks.timeoutMs = try parseDurationMs(webhookTimeout)
        config.webhooks.disableAfterMs = Int64(try parseDurationMs(webhookDisableAfter))
        guard (1...86_400_000).contains(cronMinPeriodMs) else {
            throw ValidationError("--cron-min-period-ms must be between 1 and 86400000")
        }
        config.cronMinPeriodMs = cronMinPeriodMs
        do {
            try config.validate()
        } catch {
            throw ValidationError(error.description)
        }
        if database == nil {
            let pg = EmbeddedPostgres(dataDir: dataDir, logger: logger)
            try pg.start()
            embedded = pg
            config.database = pg.conninfo
        }
        defer { embedded?.stop() }

        let server = try Server(config: config, logger: logger)
        var failure: Error?
        runOnLoopThread {
            server.run { result in
                if case .failure(let e) = result { failure = e }
            }
        }
        if let failure { throw failure }
    }
}

/// Runs `body` on a new thread and waits for it: the event loop gets a thread of its own, outside any
/// actor isolation.
func runOnLoopThread(_ body: @escaping () -> Void) {
    let done = DispatchSemaphore(value: 0)
    let box = UncheckedBox(body)
    let t = Thread {
        box.value()
        done.signal()
    }
    t.stackSize = 8 << 20
    t.start()
    done.wait()
}

struct UncheckedBox<T>: @unchecked Sendable {  // handed to exactly one other thread, used only there
    let value: T
    init(_ value: T) { self.value = value }
}

func parseHostPort(_ text: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
        throw ValidationError("expected HOST:PORT, got \(text)")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host.isEmpty ? "127.0.0.1" : host, port)
}

func makeLogger(level: String) -> Logger {
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = Logger.Level(rawValue: level) ?? .info
        return h
    }
    return Logger(label: "wharf")
}
