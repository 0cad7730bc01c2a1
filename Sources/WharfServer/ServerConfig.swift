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
    /// Reply bytes queued for a peer that does not read before the server stops reading from it.
    public var maxWriteBufferBytes = 8 << 20
    /// A connection with nothing in flight and no request for this long is closed.
    public var idleTimeoutMs = 300_000
    /// Connections beyond this are refused with an error line.
    public var maxConnections = 10_000

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
    /// How long SIGTERM waits for in-flight requests.
    public var shutdownGraceMs = 5_000
    /// Retry policy for jobs whose job and queue set none (Protocol/jobs.md says why these values).
    public var retry = RetryPolicy()
    public var webhooks = WebhookPolicy()
    /// The shortest period a cron schedule may have (`everyMs`, `@every`, or the closest two times a
    /// cron expression matches); see Protocol/cron.md.
    public var cronMinPeriodMs: Int64 = 1_000

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
        if tokens.isEmpty && !ServerConfig.isLoopback(host) {
            throw ConfigError(
                message:
                    "refusing to listen on \(host) without tokens: anyone who can reach it could run jobs. "
                    + "Add --token ROLE:SECRET (or --token-file), or listen on 127.0.0.1.")
        }
        if port < 0 || port > 65535 { throw ConfigError(message: "port \(port) is out of range") }
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
