import WharfHooks
import WharfRPC
import WharfStore

/// A client's role, granted by the token it presents in `session.hello`.
public enum Role: String, Sendable, CaseIterable {
    case admin, producer, worker, reader
}

/// Limits that protect the server from a misbehaving peer. Each has a clear error when hit.
public struct Limits: Sendable {
    /// Longest accepted line; past it the server answers with an error and closes the connection.
    public var maxFrameBytes = 1 << 20
    /// Most requests in one batch array.
    public var maxBatch = 1_000
    /// Requests a connection may have in flight before the server stops reading from it.
    public var maxInFlight = 1_024
    /// Reply bytes queued for a peer that does not read before the server stops reading from it;
    /// reading resumes once they fall to a quarter of it.
    public var maxWriteBufferBytes = 8 << 20
    /// A connection with nothing in flight, no subscription and no request for this long is closed.
    public var idleTimeoutMs = 300_000
    /// Connections beyond this are refused with an error line.
    public var maxConnections = 10_000
    /// Bytes of jobs one reply may carry (`jobs.list` pages, `jobs.lease` batches); past the first job a
    /// list ends early with a cursor and a lease takes fewer jobs (Protocol/README.md, "Memory bounds").
    public var maxReplyBytes = 1 << 20
    /// Waiters one replica queues for one lock name; `locks.acquire` with `waitMs` beyond it is refused.
    public var maxLockWaiters = 10_000
    /// Connections from one peer address beyond this are refused with an error line; 0: no limit.
    public var maxConnectionsPerPeer = 1_000
    /// Bytes all connections together may hold (unsent replies and events, unfinished input); past
    /// it, the connection that has held its bytes longest without progress is closed.
    public var maxBufferedBytes = 256 << 20
    /// A connection whose peer takes none of its pending output for this long is closed; 0: never.
    public var writeTimeoutMs = 30_000
    /// With tokens, a connection that has not authenticated this long after connecting is closed.
    public var authTimeoutMs = 10_000
    /// A frame (line) must be complete this long after its first byte arrived, or the connection is
    /// closed (slowloris).
    public var frameTimeoutMs = 30_000
    /// Events waiting for one subscriber; beyond it the oldest are dropped and counted.
    public var maxSubscriberQueue = 10_000
    /// Recent events each replica keeps for `GET /events` streams that resume with `Last-Event-ID`.
    public var eventWindow = 10_000

    /// Refuses limits that cannot work (a zero buffer would stop every connection at its first reply).
    func validate() throws(ConfigError) {
        let positive: [(String, Int)] = [
            ("max-frame-bytes", maxFrameBytes), ("max-connections", maxConnections),
            ("max-write-buffer-bytes", maxWriteBufferBytes), ("max-buffered-bytes", maxBufferedBytes),
            ("max-subscriber-queue", maxSubscriberQueue), ("event-window", eventWindow),
        ]
        for (name, value) in positive where value < 1 { throw ConfigError(message: "--\(name) must be at least 1") }
        let nonNegative: [(String, Int)] = [
            ("max-connections-per-peer", maxConnectionsPerPeer), ("write-timeout-ms", writeTimeoutMs),
            ("auth-timeout-ms", authTimeoutMs), ("frame-timeout-ms", frameTimeoutMs),
            ("idle-timeout-ms", idleTimeoutMs),
        ]
        for (name, value) in nonNegative where value < 0 {
            throw ConfigError(message: "--\(name) must not be negative")
        }
    }

    /// The clocks of one connection.
    var deadlines: ConnectionDeadlines.Settings {
        ConnectionDeadlines.Settings(
            authTimeoutMs: authTimeoutMs, frameTimeoutMs: frameTimeoutMs, writeTimeoutMs: writeTimeoutMs,
            idleTimeoutMs: idleTimeoutMs)
    }

    public init() {}
}

/// Everything `wharf serve` needs to run.
public struct ServerConfig: Sendable {
    public var host = "127.0.0.1"
    public var port = 7411
    /// libpq connection string or URL.
    public var database: String
    /// Secret -> role. Empty means no authentication, which is only allowed on loopback.
    public var tokens: [String: Role] = [:]
    /// Pipelined PostgreSQL connections.
    public var poolSize = 4
    public var limits = Limits()
    public var replicaID: String
    /// How long the drain on SIGTERM waits for in-flight requests, cron fires and webhook attempts
    /// (`--drain-timeout`; Protocol/README.md, "Draining").
    public var shutdownGraceMs = 5_000
    /// Retry policy for jobs whose job and queue set none (Protocol/jobs.md says why these values).
    public var retry = RetryPolicy()
    /// How long finished jobs are kept when their queue sets no retention.
    public var retention = RetentionPolicy()
    /// Leases commit like any write (false: without waiting for the WAL flush; see Protocol/jobs.md).
    public var durableLeases = true
    /// Dead row versions in `wharf.jobs` at which a replica vacuums it (`JobsVacuum`); 0: never (left to
    /// autovacuum).
    public var vacuumJobsAfterDeadRows: Int64 = 100_000
    public var webhooks = WebhookPolicy()
    /// The shortest period a cron schedule may have (`everyMs`, `@every`, or the closest two times a
    /// cron expression matches); see Protocol/cron.md.
    public var cronMinPeriodMs: Int64 = 1_000
    /// The HTTP listener: metrics, probes, JSON-RPC over HTTP (Protocol/http.md).
    public var http = HTTPSettings()
    /// TLS on the JSON-RPC port; nil: plaintext.
    public var tls: TLSSettings?
    /// Lets a non-loopback listener run without TLS (`--insecure-plaintext`).
    public var insecurePlaintext = false

    /// Whether a connection starts without a role and needs a token (or a mapped client certificate).
    public var requiresAuthentication: Bool { !tokens.isEmpty || !(tls?.clientRoles.isEmpty ?? true) }

    public init(database: String, replicaID: String = ServerConfig.randomReplicaID()) {
        self.database = database
        self.replicaID = replicaID
    }

    public static func randomReplicaID() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return "r-" + String((0..<10).map { _ in alphabet.randomElement()! })
    }

    /// True for addresses only this machine can reach.
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// Refuses configurations that would expose an unauthenticated server.
    public func validate() throws(ConfigError) {
        if !requiresAuthentication && !ServerConfig.isLoopback(host) {
            throw ConfigError(
                message:
                    "refusing to listen on \(host) without tokens: anyone who can reach it could run jobs. "
                    + "Add --token ROLE:SECRET (or --token-file, or --tls-client-role), or listen on 127.0.0.1.")
        }
        if tls == nil && !insecurePlaintext && !ServerConfig.isLoopback(host) {
            throw ConfigError(
                message:
                    "refusing to listen on \(host) without TLS: tokens, payloads and webhook secrets would cross the "
                    + "network in plain text. Add --tls-cert PEM --tls-key PEM, or pass --insecure-plaintext if "
                    + "the network is trusted (or TLS ends in front of the server), or listen on 127.0.0.1.")
        }
        try tls?.validate()
        if port < 0 || port > 65535 { throw ConfigError(message: "port \(port) is out of range") }
        try limits.validate()
        try http.validate(tokensConfigured: !tokens.isEmpty, encrypted: tls != nil, plaintextAllowed: insecurePlaintext)
    }
}

/// How webhooks are delivered (see Protocol/webhooks.md).
public struct WebhookPolicy: Sendable {
    /// Deliver to loopback, private and other non-public addresses too (development and tests only).
    public var allowPrivate = false
    /// Non-public networks that may be targets anyway.
    public var allowCIDRs: [WharfHooks.CIDR] = []
    /// The delay before each attempt, the first counted from the send: the Standard Webhooks example.
    public var retryScheduleMs: [Int64] = [
        0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 50_400_000, 72_000_000, 86_400_000,
    ]
    public var connectTimeoutMs = 5_000
    public var timeoutMs = 15_000
    /// A PEM bundle of CAs trusted for HTTPS targets instead of the system's (internal CAs, tests).
    public var caFile: String?
    /// An endpoint with nothing but failures for this long is disabled.
    public var disableAfterMs: Int64 = 5 * 86_400_000
    /// An endpoint without a success for this long is reported dormant.
    public var dormantAfterMs: Int64 = 365 * 86_400_000
    /// Attempts in flight on one replica at most (see `DeliverySlots` for how endpoints share them).
    public var maxInFlight = 1_000
    /// Attempts in flight to one endpoint at most, per replica.
    public var endpointMaxInFlight = 16
    /// Finished deliveries and their attempts are deleted this long after they finished (an
    /// endpoint's `retentionMs` overrides it).
    public var retentionMs: Int64 = 7 * 86_400_000
    public init() {}
}

public struct ConfigError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

/// Wharf's version and the protocol version it speaks.
public enum WharfVersion {
    public static let server = "0.1.0"
    public static let `protocol` = "1"
}
