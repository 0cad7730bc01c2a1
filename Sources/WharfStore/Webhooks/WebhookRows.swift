import WharfJSON
import WharfPQ

/// A webhook endpoint with its health figures. Times are epoch milliseconds.
public struct EndpointRow: Sendable {
    public var id: Int64
    public var url: String
    public var description: String?
    public var events: [String]?
    public var rateLimitPerS: Int64?
    public var enabled: Bool
    public var disabledAtMs: Int64?
    public var disabledReason: String?
    public var disableAfterMs: Int64?
    public var dormantAfterMs: Int64?
    public var lastSuccessMs: Int64?
    public var lastFailureMs: Int64?
    public var failingSinceMs: Int64?
    public var consecutiveFailures: Int64
    public var createdAtMs: Int64
    public var updatedAtMs: Int64
    public var previousSecretUntilMs: Int64?
    public var attempts1h: Int64
    public var successes1h: Int64
    public var attempts24h: Int64
    public var successes24h: Int64
    public var latencyP50Ms: Double?
    public var latencyP95Ms: Double?
    public var pending: Int64
    public var nowMs: Int64
    /// How long finished deliveries are kept (null: the server's default).
    public var retentionMs: Int64?

    /// The columns `WebhookSQL.endpointColumns` selects.
    static let columnCount = 26

    init(_ r: PQResult, _ i: Int) {
        id = r.int(i, 0) ?? 0
        url = r.string(i, 1) ?? ""
        description = r.string(i, 2)
        events = r.string(i, 3).flatMap { try? JSONParser.parse($0) }?.arrayValue?.compactMap(\.stringValue)
        rateLimitPerS = r.int(i, 4)
        enabled = r.bool(i, 5) ?? false
        disabledAtMs = r.int(i, 6)
        disabledReason = r.string(i, 7)
        disableAfterMs = r.int(i, 8)
        dormantAfterMs = r.int(i, 9)
        lastSuccessMs = r.int(i, 10)
        lastFailureMs = r.int(i, 11)
        failingSinceMs = r.int(i, 12)
        consecutiveFailures = r.int(i, 13) ?? 0
        createdAtMs = r.int(i, 14) ?? 0
        updatedAtMs = r.int(i, 15) ?? 0
        previousSecretUntilMs = r.int(i, 16)
        attempts1h = r.int(i, 17) ?? 0
        successes1h = r.int(i, 18) ?? 0
        attempts24h = r.int(i, 19) ?? 0
        successes24h = r.int(i, 20) ?? 0
        latencyP50Ms = r.string(i, 21).flatMap(Double.init)
        latencyP95Ms = r.string(i, 22).flatMap(Double.init)
        pending = r.int(i, 23) ?? 0
        nowMs = r.int(i, 24) ?? 0
        retentionMs = r.int(i, 25)
    }
}

/// A message that is not a delivery (an endpoint's `webhook.ping`): its `webhook-id` and body, made by
/// the database like every delivery's (`wharf.webhook_message_id`, `wharf.webhook_body`).
public struct WebhookMessage: Sendable {
    public var id: String
    public var body: String
}

/// An endpoint's URL, the secrets that sign now, and a `webhook.ping` message for it.
public struct EndpointTarget: Sendable {
    public var url: String
    public var secrets: [String]
    public var ping: WebhookMessage
}

/// One message to queue (`Store.send`): to one endpoint, or, when `endpointID` is nil, to every
/// enabled endpoint subscribed to `event`. The database makes its id and body.
public struct WebhookSend: Sendable {
    public var endpointID: Int64?
    public var event: String
    /// The body's `data`, as JSON text.
    public var data: String
    /// A message made by a schedule (`cron.trigger`): the body's `schedule: {name, fireAt}`.
    public var scheduleName: String?
    public var fireMs: Int64?
    /// A repeated send with the same key (per endpoint) queues nothing and gets the first delivery.
    public var idempotencyKey: String?
    /// The first attempt this long after now (nil: at once).
    public var delayMs: Int64?

    public init(
        endpointID: Int64?, event: String, data: String, scheduleName: String? = nil, fireMs: Int64? = nil,
        idempotencyKey: String? = nil, delayMs: Int64? = nil
    ) {
        self.endpointID = endpointID
        self.event = event
        self.data = data
        self.scheduleName = scheduleName
        self.fireMs = fireMs
        self.idempotencyKey = idempotencyKey
        self.delayMs = delayMs
    }
}

/// A delivery one send queued, or found queued by an earlier send with the same idempotency key.
public struct SentDelivery: Sendable, Equatable {
    public var deliveryID: Int64
    public var endpointID: Int64
    /// False when an earlier send with the same idempotency key queued it.
    public var new: Bool

    public init(deliveryID: Int64, endpointID: Int64, new: Bool) {
        self.deliveryID = deliveryID
        self.endpointID = endpointID
        self.new = new
    }
}

/// A delivery a replica claimed for one attempt.
public struct ClaimedDelivery: Sendable {
    public var id: Int64
    public var messageID: String
    public var endpointID: Int64
    public var attempt: Int
    public var body: String
    public var url: String
    public var secrets: [String]
    public var rateLimitPerS: Int64?

    public init(
        id: Int64, messageID: String, endpointID: Int64, attempt: Int, body: String, url: String, secrets: [String],
        rateLimitPerS: Int64? = nil
    ) {
        self.id = id
        self.messageID = messageID
        self.endpointID = endpointID
        self.attempt = attempt
        self.body = body
        self.url = url
        self.secrets = secrets
        self.rateLimitPerS = rateLimitPerS
    }
}

/// What becomes of a delivery after an attempt.
public enum DeliveryNext: Sendable, Equatable {
    case succeeded
    /// No attempt left, or the endpoint is gone.
    case failed
    /// Attempted again this many milliseconds from now.
    case retry(inMs: Int64)

    /// The delivery's state after the attempt.
    public var state: String {
        switch self {
        case .succeeded: "succeeded"
        case .failed: "failed"
        case .retry: "pending"
        }
    }
}

/// One attempt's outcome, to record.
public struct DeliveryOutcome: Sendable, Equatable {
    public var status: Int?
    public var latencyMs: Double
    public var errorKind: String?
    public var error: String?
    public var responseBody: String?
    public var next: DeliveryNext
    /// The endpoint answered 410 Gone: it is disabled at once.
    public var gone: Bool

    public init(
        status: Int?, latencyMs: Double, errorKind: String?, error: String?, responseBody: String?, next: DeliveryNext,
        gone: Bool
    ) {
        self.status = status
        self.latencyMs = latencyMs
        self.errorKind = errorKind
        self.error = error
        self.responseBody = responseBody
        self.next = next
        self.gone = gone
    }

    public var succeeded: Bool { (200..<300).contains(status ?? 0) }
}

/// One endpoint's attempts in a batch being recorded, summed up in order: what its health columns
/// need (`WebhookSQL.record`).
public struct EndpointAttempts: Sendable, Equatable {
    public var endpointID: Int64
    public var anySuccess = false
    public var lastSuccess = false
    /// Failures after the last success (all of them when none succeeded).
    public var tailFailures: Int64 = 0
    public var anyFailure = false
    /// One of them answered 410 Gone.
    public var gone = false

    public init(endpointID: Int64) { self.endpointID = endpointID }
}

/// What recording an attempt did to its endpoint.
public struct RecordedAttempt: Sendable, Equatable {
    /// The endpoint went from enabled to disabled in this batch (reported on its first attempt only).
    public var justDisabled: Bool
    /// Why (`gone`, `failing`).
    public var reason: String?
}

/// One attempt of a delivery, as `webhooks.deliveries` shows it.
public struct DeliveryAttemptRow: Sendable {
    public var attempt: Int64?
    /// Epoch milliseconds.
    public var atMs: Int64?
    public var status: Int64?
    public var latencyMs: Double?
    public var errorKind: String?
    public var error: String?
    public var responseBody: String?
}

/// A delivery with its attempts. Times are epoch milliseconds.
public struct DeliveryRow: Sendable {
    public var id: Int64
    public var messageID: String
    public var endpointID: Int64
    public var event: String
    public var state: String
    public var attempts: Int64
    public var nextAttemptAtMs: Int64?
    public var createdAtMs: Int64
    public var finishedAtMs: Int64?
    public var lastStatus: Int64?
    public var lastError: String?
    public var attemptLog: [DeliveryAttemptRow]

    init(_ r: PQResult, _ i: Int) {
        id = r.int(i, 0) ?? 0
        messageID = r.string(i, 1) ?? ""
        event = r.string(i, 2) ?? ""
        state = r.string(i, 3) ?? ""
        attempts = r.int(i, 4) ?? 0
        nextAttemptAtMs = r.int(i, 5)
        createdAtMs = r.int(i, 6) ?? 0
        finishedAtMs = r.int(i, 7)
        lastStatus = r.int(i, 8)
        lastError = r.string(i, 9)
        let log = r.string(i, 10).flatMap { try? JSONParser.parse($0) }?.arrayValue ?? []
        attemptLog = log.map { a in
            DeliveryAttemptRow(
                attempt: a["attempt"]?.intValue, atMs: a["atMs"]?.intValue, status: a["status"]?.intValue,
                latencyMs: a["latencyMs"]?.doubleValue, errorKind: a["errorKind"]?.stringValue,
                error: a["error"]?.stringValue, responseBody: a["responseBody"]?.stringValue)
        }
        endpointID = r.int(i, 11) ?? 0
    }
}

/// What `webhooks.redeliver` found.
public enum RedeliverOutcome: Sendable, Equatable {
    case requeued
    /// The delivery is not finished (pending or delivering): nothing to do.
    case unfinished(state: String)
    case notFound
}
