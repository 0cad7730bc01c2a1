import Foundation
import Logging
import WharfCore
import WharfHooks
import WharfRPC
import WharfStore
import WharfUV

/// Webhook delivery on one replica.
///
/// Deliveries live in PostgreSQL. The dispatcher sleeps on one loop timer until the earliest due
/// attempt (woken early by `NOTIFY wharf_wake 'hooks:'` when something is sent or re-enabled), claims
/// due deliveries with `FOR UPDATE SKIP LOCKED` and a lease (so replicas share them and an attempt
/// whose replica died is retried when its lease runs out), checks the target's addresses again,
/// signs and POSTs with libcurl on the loop, and records the attempt, the retry and the endpoint's
/// health in one statement. Loop thread only.
final class WebhooksService {
    let context: ServiceContext
    var store: Store { context.store }
    var policy: WebhookPolicy { context.config.webhooks }
    private(set) var http: HTTPClient?

    var batchSize = 100
    /// Attempts in flight on this replica, shared fairly among endpoints.
    private(set) lazy var slots = DeliverySlots(max: policy.maxInFlight, perEndpoint: policy.endpointMaxInFlight)
    private var claiming = false
    private var drained = true
    /// Something may have become claimable while a claim was running: claim again after it, even if
    /// it came back short.
    private var lookAgain = false
    /// Sleeps until the earliest due attempt.
    private lazy var timer = DueTimer(context) { [unowned self] in self.wake() }
    private var stopped: Bool { timer.stopped }
    private var parsedURLs: [String: ParsedURL] = [:]
    /// Claimed deliveries not started yet: a claim's attempts are started a few per loop turn, so
    /// other work (clients, the database) is served between them.
    private var toStart: [ClaimedDelivery] = []
    private var startTimer: LoopTimer?
    var startsPerTurn = 20
    /// Token buckets of rate-limited endpoints: tokens left and when they were counted (loop ms).
    private var buckets: [Int64: (tokens: Double, atMs: UInt64)] = [:]

    /// How long a claimed attempt is ours: the whole request can take this long, with room to record it.
    var leaseMs: Int64 { Int64(policy.connectTimeoutMs + policy.timeoutMs) + 10_000 }

    /// What an attempt's answer means (success, retry and when, give up).
    var deliveryPolicy: DeliveryPolicy { DeliveryPolicy(retryScheduleMs: policy.retryScheduleMs) }

    /// Attempts finished in one loop turn are recorded by one statement (one commit).
    /// A batch whose statement fails is recorded again one attempt at a time, so one attempt's bad
    /// value never leaves the others unrecorded.
    private var records: IsolatingBatcher<(delivery: ClaimedDelivery, outcome: DeliveryOutcome), RecordedAttempt>!

    /// Sends made in one loop turn (to endpoints and by event) are queued by one statement (one commit).
    /// Every feature sends through `send`.
    private var sends: IsolatingBatcher<WebhookSend, [SentDelivery]>!

    init(_ context: ServiceContext) {
        self.context = context
        sends = IsolatingBatcher(schedule: context.batchSchedule) {
            [unowned self] items, done in
            self.store.send(items) { [unowned self] r in
                self.poke()
                done(r.mapError(\.rpcError))
            }
        }
        records = IsolatingBatcher(schedule: context.batchSchedule) {
            [unowned self] items, done in
            let endpoints = DeliveryPolicy.endpointAttempts(items.map { ($0.delivery.endpointID, $0.outcome) })
            self.store.recordAttempts(items, endpoints: endpoints, disableAfterMs: self.policy.disableAfterMs) { r in
                done(r.mapError(\.rpcError))
            }
        }
    }

    /// Queues one message: to `endpointID`, or, when it is nil, to every enabled endpoint subscribed to
    /// `event`. Its id and body (`{type, timestamp, data}`, and `schedule: {name, fireAt}` for a message
    /// made by a schedule) are made by the database, as every message's are. Completes with the
    /// deliveries (none for a send to an endpoint that does not exist); with `idempotencyKey`, a repeated
    /// send gets the first send's deliveries, not new.
    func send(
        endpointID: Int64?, event: String, data: JSON, schedule: (name: String, fireMs: Int64)? = nil,
        idempotencyKey: String? = nil, delayMs: Int64? = nil,
        _ completion: @escaping (Result<[SentDelivery], RPCError>) -> Void
    ) {
        let item = WebhookSend(
            endpointID: endpointID, event: event, data: data.text, scheduleName: schedule?.name,
            fireMs: schedule?.fireMs, idempotencyKey: idempotencyKey, delayMs: delayMs)
        sends.add(item, completion)
    }

    func start() {
        http = try? HTTPClient(loop: context.loop)
        context.onWake(.hooks) { [unowned self] _ in self.poke() }
        context.addChore(everyMs: 5_000) { [unowned self] in self.poke() }
        context.addChore(everyMs: 30_000) { [unowned self] in self.prune() }
    }

    func serving() {
        poke()
        prune()
    }

    /// The server began draining: no more claims here, and the claimed attempts not started yet go
    /// back untried (their attempt not counted), so another replica sends them now. Attempts under way
    /// finish and are recorded while the drain lasts (`busy`).
    func drain() {
        timer.stop()
        let unstarted = toStart
        toStart.removeAll()
        for d in unstarted {
            store.deferDelivery(d, byMs: 0) { [unowned self] _ in
                self.answered(d)
                self.finished()
            }
        }
    }

    /// Attempts claimed here and not yet recorded (claims, requests and their records in flight).
    var busy: Bool { claiming || slots.total > 0 }

    func stop() {
        timer.stop()
        startTimer?.close()
        startTimer = nil
        http?.close()
    }

    // MARK: Retention

    /// Finished deliveries deleted per statement (their attempts go with them).
    var pruneBatch = 5_000
    private var pruning = false

    /// Deletes finished deliveries past their retention, one batch per statement (each its own short
    /// transaction), batch after batch until one comes back short: it keeps up with any rate of
    /// finished deliveries the database can delete, and never holds the loop or a long lock.
    func prune() {
        guard !pruning, !stopped, context.pool.isAvailable else { return }
        pruning = true
        var total = 0
        func next() {
            store.pruneDeliveries(defaultRetentionMs: policy.retentionMs, limit: pruneBatch) { [unowned self] r in
                switch r {
                case .success(let n) where n >= self.pruneBatch && !self.stopped:
                    total += n
                    next()
                case .success(let n):
                    total += n
                    self.pruning = false
                    if total > 0 {
                        self.context.logger.info("pruned finished webhook deliveries", metadata: ["count": "\(total)"])
                    }
                case .failure(let e):
                    self.pruning = false
                    self.context.logger.warning("pruning webhook deliveries failed", metadata: ["error": "\(e)"])
                }
            }
        }
        next()
    }

    // MARK: Targets

    /// A URL that passed the address check, with the addresses a request may connect to.
    struct Target {
        let url: String
        let host: String
        let port: Int
        /// Empty when the host is an address literal (nothing to pin).
        let addresses: [IPAddress]
    }

    func allowed(_ a: IPAddress) -> Bool {
        a.isPublic || policy.allowPrivate || policy.allowCIDRs.contains { $0.contains(a) }
    }

    /// Parses `url` and checks where it leads: every non-public address is refused (unless allowed),
    /// and a target none of whose addresses is allowed is an error with `data.reason`
    /// `private_address` (or `dns` when the name does not resolve).
    func check(_ url: String, _ completion: @escaping (Result<Target, RPCError>) -> Void) {
        guard let (host, port) = parse(url) else {
            return completion(.failure(WebhookReplies.invalidURL))
        }
        if let literal = IPAddress(host) {
            guard allowed(literal) else { return completion(.failure(WebhookReplies.privateAddress(url, [literal]))) }
            return completion(.success(Target(url: url, host: host, port: port, addresses: [])))
        }
        let lower = host.lowercased()
        if (lower == "localhost" || lower.hasSuffix(".localhost")) && !policy.allowPrivate {
            return completion(.failure(WebhookReplies.privateAddress(url, [])))
        }
        Resolver.resolve(loop: context.loop, host: host) { [unowned self] r in
            switch r {
            case .failure(let e):
                completion(.failure(WebhookReplies.unresolvable(host, detail: e.description)))
            case .success(let found):
                let addresses = found.compactMap { a -> IPAddress? in
                    a.family == AF_INET ? .v4(a.bytes) : a.bytes.count == 16 ? .v6(a.bytes) : nil
                }
                let ok = addresses.filter(self.allowed)
                guard !ok.isEmpty else { return completion(.failure(WebhookReplies.privateAddress(url, addresses))) }
                completion(.success(Target(url: url, host: host, port: port, addresses: ok)))
            }
        }
    }

    /// A URL's host (without IPv6 brackets) and port; nil unless it is http or https without credentials.
    /// Remembered, so an attempt does not parse its endpoint's URL again (Foundation's parser is slow
    /// for the loop); the memory is bounded and starts over when full.
    private func parse(_ url: String) -> (host: String, port: Int)? {
        if let known = parsedURLs[url] { return known.target }
        var target: (host: String, port: Int)?
        if let c = URLComponents(string: url), let scheme = c.scheme?.lowercased(), scheme == "http" || scheme == "https",
            var host = c.host, !host.isEmpty, c.user == nil, c.password == nil
        {
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            target = (host, c.port ?? (scheme == "https" ? 443 : 80))
        }
        if parsedURLs.count >= 10_000 { parsedURLs.removeAll(keepingCapacity: true) }
        parsedURLs[url] = ParsedURL(target: target)
        return target
    }

    private struct ParsedURL {
        let target: (host: String, port: Int)?
    }

    // MARK: Sending

    /// Signs and POSTs `body` as message `messageID` to a checked target.
    func post(_ target: Target, messageID: String, body: [UInt8], secrets: [String], _ done: @escaping (HTTPResponse) -> Void)
    {
        guard let http else { return done(HTTPResponse(errorKind: "network", error: "no HTTP client")) }
        let timestamp = Timestamp.nowMs() / 1000
        var request = HTTPRequest(url: target.url)
        request.body = body
        request.headers = [
            "Content-Type: application/json",
            "User-Agent: wharf-webhooks/\(WharfVersion.server)",
            "webhook-id: \(messageID)",
            "webhook-timestamp: \(timestamp)",
            "webhook-signature: \(Signer.signature(id: messageID, timestamp: timestamp, body: body, secrets: secrets))",
        ]
        if !target.addresses.isEmpty { request.pinned = (target.host, target.port, target.addresses) }
        request.connectTimeoutMs = policy.connectTimeoutMs
        request.timeoutMs = policy.timeoutMs
        request.caFile = policy.caFile
        http.send(request, done)
    }

    /// Sends `message` (an endpoint's `webhook.ping`) to `url` now, outside the delivery queue: the
    /// receiver's answer, or why the target was refused.
    func ping(
        url: String, secrets: [String], message: WebhookMessage,
        _ done: @escaping (Result<HTTPResponse, RPCError>) -> Void
    ) {
        check(url) { [unowned self] r in
            switch r {
            case .failure(let e): done(.failure(e))
            case .success(let target):
                post(target, messageID: message.id, body: Array(message.body.utf8), secrets: secrets) {
                    done(.success($0))
                }
            }
        }
    }

    // MARK: Dispatching

    func poke() { timer.poke() }

    private func wake() {
        drained = false
        if claiming { lookAgain = true }
        pump()
    }

    private func pump() {
        guard !stopped, !claiming, !drained else { return }
        guard context.pool.isAvailable else { return arm(afterMs: 1_000) }
        guard let claim = slots.claim(batch: batchSize) else { return }
        claiming = true
        let request = Store.DeliveryClaim(
            limit: claim.limit, extra: claim.extra, blockedEndpoints: claim.blocked,
            busyEndpoints: claim.busy.map { ($0.endpoint, $0.inFlight) }, perEndpoint: slots.perEndpoint,
            window: max(claim.limit * 8, 200), leaseMs: leaseMs)
        store.claimDeliveries(request) { [unowned self] r in
            self.claiming = false
            switch r {
            case .failure(let e):
                self.context.logger.warning("claiming webhook deliveries failed", metadata: ["error": "\(e)"])
                self.drained = true
                self.arm(afterMs: 1_000)
            case .success(let claimed):
                if claimed.deliveries.count < claim.limit && !self.lookAgain { self.drained = true }
                self.lookAgain = false
                for d in claimed.deliveries { self.slots.started(d.endpointID) }
                let idle = self.toStart.isEmpty
                self.toStart += claimed.deliveries
                if idle { self.startSome() }
                if self.drained { self.scheduleNext(skipping: claim.blocked) } else { self.pump() }
            }
        }
    }

    /// Arms the timer for the next due attempt, not counting endpoints that may take nothing now
    /// (an attempt of theirs ending looks again at once).
    private func scheduleNext(skipping blocked: [Int64]) {
        store.nextDeliveryDue(skipping: blocked) { [unowned self] r in
            guard case .success(let next) = r else { return self.arm(afterMs: 1_000) }
            let due = [next.nextMs, next.leaseExpiryMs.map { $0 + 1 }].compactMap { $0 }.min()
            guard let due else { return self.timer.disarm() }
            self.arm(afterMs: max(due - next.nowMs, 5))
        }
    }

    private func arm(afterMs delay: Int64) { timer.arm(afterMs: delay, nowMs: Int64(context.loop.nowMs)) }

    /// Takes a token from a rate-limited endpoint's bucket; false when it must wait.
    private func takeToken(_ endpoint: Int64, perSecond rate: Int64) -> Bool {
        let now = context.loop.nowMs
        var b = buckets[endpoint] ?? (Double(rate), now)
        b.tokens = min(Double(rate), b.tokens + Double(now - b.atMs) * Double(rate) / 1000)
        b.atMs = now
        guard b.tokens >= 1 else {
            buckets[endpoint] = b
            return false
        }
        b.tokens -= 1
        buckets[endpoint] = b
        return true
    }

    /// Starts up to `startsPerTurn` claimed attempts, and the rest in later loop turns.
    private func startSome() {
        guard !stopped else { return }
        let n = min(startsPerTurn, toStart.count)
        let now = toStart.prefix(n)
        toStart.removeFirst(n)
        for d in now { deliver(d) }
        guard !toStart.isEmpty else { return }
        if startTimer == nil {
            startTimer = try? LoopTimer(loop: context.loop)
            startTimer?.unref()
        }
        guard let startTimer else { return toStart.removeAll() }
        startTimer.start(timeoutMs: 0) { [unowned self] in self.startSome() }
    }

    /// Makes one claimed attempt; its slot is already counted.
    private func deliver(_ d: ClaimedDelivery) {
        if let rate = d.rateLimitPerS, !takeToken(d.endpointID, perSecond: rate) {
            let waitMs = max(1000 / rate, 1)
            return store.deferDelivery(d, byMs: waitMs) { [unowned self] _ in
                self.answered(d)
                self.finished()
            }
        }
        check(d.url) { [unowned self] r in
            switch r {
            case .failure(let e):
                let kind = e.data?["reason"]?.stringValue ?? "network"
                self.record(d, HTTPResponse(errorKind: kind, error: e.message))
            case .success(let target):
                self.post(target, messageID: d.messageID, body: Array(d.body.utf8), secrets: d.secrets) { resp in
                    self.record(d, resp)
                }
            }
        }
    }

    /// The attempt's HTTP part is over: its endpoint may take another.
    private func answered(_ d: ClaimedDelivery) {
        // The last claim held an endpoint back for want of room; now there may be some.
        if slots.answered(d.endpointID) { poke() }
    }

    /// The attempt is recorded: its slot on the replica is free.
    private func finished() {
        if slots.recorded() { poke() } else { pump() }
    }

    private func record(_ d: ClaimedDelivery, _ resp: HTTPResponse) {
        answered(d)
        var random = SystemRandomNumberGenerator()
        let o = deliveryPolicy.outcome(attempt: d.attempt, response: resp, nowMs: Timestamp.nowMs(), using: &random)
        context.metrics.webhooks.attempted(o)
        records.add((d, o)) { [unowned self] r in
            if case .success = r { self.context.raiseDeliveryFailed(d, o) }
            switch r {
            case .success(let e) where e.justDisabled:
                self.context.logger.warning(
                    "webhook endpoint disabled",
                    metadata: ["endpoint": "\(d.endpointID)", "reason": "\(e.reason ?? "")", "url": "\(d.url)"])
                let data: JSON = [
                    "endpointId": .string(String(d.endpointID)), "url": .string(d.url), "reason": .from(e.reason),
                ]
                self.context.raise(.endpointDisabled, subject: String(d.endpointID), data)
                self.send(endpointID: nil, event: "endpoint.disabled", data: data) { _ in }
            case .failure(let e):
                // The lease runs out and another attempt follows: at least once, never lost.
                self.context.logger.warning("recording a webhook attempt failed", metadata: ["error": "\(e.message)"])
            default:
                break
            }
            if case .retry = o.next { self.poke() }
            self.finished()
        }
    }
}
