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

    @Option(
        name: [.customLong("database-url"), .customLong("database")],
        help: "PostgreSQL connection string or URL. Omit to use the embedded PostgreSQL.")
    var database: String?

    @Option(help: "Directory for the embedded PostgreSQL and other local state.")
    var dataDir = "./.wharf"

    @Option(
        name: .customLong("token"),
        help: ArgumentHelp(
            "ROLE:SECRET or ROLE:sha256:HEX, repeatable. Roles: admin, producer, worker, reader. Other users see it "
                + "in ps: prefer --token-file or WHARF_TOKENS (entries separated by commas or whitespace)."))
    var tokens: [String] = []

    @Option(help: "File with one ROLE:SECRET or ROLE:sha256:HEX (the token's SHA-256) per line (# comments allowed).")
    var tokenFile: String?

    @Option(help: "PostgreSQL connections in the pool.")
    var poolSize = 4

    @Option(help: "Largest request line in bytes.")
    var maxFrameBytes = 1 << 20

    @Option(help: "Close connections idle (nothing in flight, no subscription) for this many milliseconds.")
    var idleTimeoutMs = 300_000

    @Option(help: "Waiters this server queues for one lock name; locks.acquire with waitMs beyond it is refused.")
    var maxLockWaiters = 10_000
    @Option(help: "Most connections in all.")
    var maxConnections = 10_000

    @Option(help: "Most connections from one peer address (0: no limit).")
    var maxConnectionsPerPeer = 1_000

    @Option(help: "Unsent reply bytes per connection at which the server stops reading it.")
    var maxWriteBufferBytes = 8 << 20

    @Option(help: "Bytes all connections together may buffer before the most stuck one is closed.")
    var maxBufferedBytes = 256 << 20

    @Option(help: "Close a connection whose peer takes none of its pending output for this many ms (0: never).")
    var writeTimeoutMs = 30_000

    @Option(help: "With tokens, close a connection without session.hello this many ms after connecting (0: never).")
    var authTimeoutMs = 10_000

    @Option(help: "Close a connection whose started line is not finished within this many ms (0: never).")
    var frameTimeoutMs = 30_000

    @Option(help: "Events queued per subscriber before the oldest are dropped (counted in an events.dropped event).")
    var maxSubscriberQueue = 10_000

    @Option(help: "Recent events kept per replica for GET /events streams that resume with Last-Event-ID.")
    var eventWindow = 10_000

    @Option(help: "Default first retry delay of a failed job, in milliseconds.")
    var retryInitialMs = 1_000.0

    @Option(help: "Default longest retry delay, in milliseconds.")
    var retryMaxMs = 3_600_000.0

    @Option(help: "Default growth of the retry delay per attempt.")
    var retryCoefficient = 2.0

    @Option(help: "Default random spread of retry delays (0.1 = ±10%).")
    var retryJitter = 0.1

    @Option(help: "Most bytes of jobs in one reply (a jobs.list page, a jobs.lease batch); the first job always fits.")
    var maxReplyBytes = 1 << 20

    @Flag(
        help: """
            Commit leases without waiting for the WAL flush: faster, but a lease lost in a database crash \
            lets its job run again without the attempt counted.
            """)
    var fastLeases = false

    @Option(
        help: """
            Vacuum wharf.jobs when PostgreSQL counts this many dead row versions in it, so that leases do not \
            step over the entries of jobs leased earlier (0: leave it to autovacuum).
            """)
    var vacuumJobsAfter: Int64 = 100_000

    @Option(help: "Keep completed and cancelled jobs this long unless their queue says otherwise, e.g. 24h.")
    var jobRetention = "24h"

    @Option(help: "Keep dead jobs this long unless their queue says otherwise, e.g. 168h.")
    var deadJobRetention = "168h"

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
    @Option(help: "Webhook attempts in flight on this replica at most, shared fairly among endpoints.")
    var webhookMaxInFlight = 1_000
    @Option(help: "Webhook attempts in flight to one endpoint at most (per replica).")
    var webhookEndpointMaxInFlight = 16
    @Option(help: "Keep finished webhook deliveries and their attempts this long, e.g. 168h (seven days).")
    var webhookRetention = "168h"

    @Option(help: "Shortest period a cron schedule may have, in milliseconds (1 to 86400000).")
    var cronMinPeriodMs: Int64 = 1_000

    @OptionGroup(title: "TLS") var tls: ServeTLSOptions

    @Option(
        help: "On SIGTERM, how long in-flight requests, cron fires and webhook attempts may take to finish, e.g. 30s.")
    var drainTimeout = "5s"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: "Log format: text, or json (one object per line: time, level, message, replica, and fields).")
    var logFormat = "text"

    @Option(help: "JSON file of settings, keys named like these flags without the dashes (flags > WHARF_* > file).")
    var config: String?

    @Flag(help: "Print the effective settings, each with its source and secrets redacted, and exit.")
    var printConfig = false

    @Option(
        help:
            "HTTP address for /metrics, /healthz, /readyz, POST /rpc, HOST:PORT, or off (default 127.0.0.1:7412; when that default is taken, the server runs without HTTP)."
    )
    var httpListen: String?
    @Option(help: "Largest HTTP request line plus headers, in bytes (431 past it).") var httpMaxHeaderBytes = 16 << 10
    @Option(help: "Largest HTTP request body, in bytes (413 past it).") var httpMaxBodyBytes = 1 << 20
    @Option(help: "Most open HTTP connections (503 past it).") var httpMaxConnections = 1_024
    @Option(help: "An HTTP request must be complete this many ms after its first byte (408 past it).")
    var httpRequestTimeoutMs = 10_000
    @Option(help: "Close an HTTP keep-alive connection idle for this many ms.") var httpIdleTimeoutMs = 60_000

    func run() throws {
        let settings = try ServeSettings.resolve(Serve.rawArguments(), environment: ProcessInfo.processInfo.environment)
        if printConfig { return print(effectiveConfiguration(settings.sources), terminator: "") }
        let replicaID = ServerConfig.randomReplicaID()
        let logger = try makeLogger(level: logLevel, format: logFormat, replica: replicaID)
        let (host, port) = try parseHostPort(listen)
        if settings.sources["token"] == .flag {
            logger.warning(
                "--token puts its secret on the command line, where other users of this machine can read it (ps, /proc/<pid>/cmdline); use --token-file FILE or the WHARF_TOKENS environment variable instead"
            )
        }
        var secrets = tokens
        if let tokenFile {
            let text = try String(contentsOfFile: tokenFile, encoding: .utf8)
            secrets += text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        }
        let tokenMap = try Self.tokenMap(secrets)

        var embedded: EmbeddedPostgres?
        var config = ServerConfig(database: database ?? "", replicaID: replicaID)
        config.host = host
        config.port = port
        config.tokens = tokenMap
        config.poolSize = poolSize
        config.limits.maxFrameBytes = maxFrameBytes
        config.limits.idleTimeoutMs = idleTimeoutMs
        config.limits.maxLockWaiters = max(1, maxLockWaiters)
        config.limits.maxConnections = maxConnections
        config.limits.maxConnectionsPerPeer = maxConnectionsPerPeer
        config.limits.maxWriteBufferBytes = maxWriteBufferBytes
        config.limits.maxBufferedBytes = maxBufferedBytes
        config.limits.writeTimeoutMs = writeTimeoutMs
        config.limits.authTimeoutMs = authTimeoutMs
        config.limits.frameTimeoutMs = frameTimeoutMs
        config.limits.maxSubscriberQueue = maxSubscriberQueue
        config.limits.eventWindow = eventWindow
        config.retry.initialMs = retryInitialMs
        config.retry.maxMs = retryMaxMs
        config.retry.coefficient = max(1, retryCoefficient)
        config.retry.jitter = min(max(0, retryJitter), 1)
        guard maxReplyBytes >= 1024 else { throw ValidationError("--max-reply-bytes must be at least 1024") }
        config.limits.maxReplyBytes = maxReplyBytes
        config.durableLeases = !fastLeases
        guard vacuumJobsAfter >= 0 else { throw ValidationError("--vacuum-jobs-after must not be negative") }
        config.vacuumJobsAfterDeadRows = vacuumJobsAfter
        config.retention.completedMs = Int64(try parseDurationMs(jobRetention))
        config.retention.deadMs = Int64(try parseDurationMs(deadJobRetention))
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
        config.webhooks.maxInFlight = max(1, webhookMaxInFlight)
        config.webhooks.endpointMaxInFlight = max(1, webhookEndpointMaxInFlight)
        config.webhooks.retentionMs = Int64(try parseDurationMs(webhookRetention))
        guard (1...86_400_000).contains(cronMinPeriodMs) else {
            throw ValidationError("--cron-min-period-ms must be between 1 and 86400000")
        }
        config.cronMinPeriodMs = cronMinPeriodMs
        config.shutdownGraceMs = try parseDurationMs(drainTimeout)
        config.http = try httpSettings()
        config.tls = try tls.settings()
        config.insecurePlaintext = tls.insecurePlaintext
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

extension Serve {
    /// The HTTP listener's settings from `--http-listen` and the `--http-*` limits.
    func httpSettings() throws -> HTTPSettings {
        var http = HTTPSettings()
        guard httpListen != "off" else { return http }
        (http.host, http.port) = try parseHostPort(httpListen ?? "127.0.0.1:7412")
        // Only an address given explicitly must be had (see HTTPSettings.required).
        (http.enabled, http.required) = (true, httpListen != nil)
        (http.maxHeaderBytes, http.maxBodyBytes) = (httpMaxHeaderBytes, httpMaxBodyBytes)
        (http.maxConnections, http.requestTimeoutMs, http.idleTimeoutMs) =
            (httpMaxConnections, httpRequestTimeoutMs, httpIdleTimeoutMs)
        return http
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
