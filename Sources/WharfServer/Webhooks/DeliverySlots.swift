/// How one replica shares its webhook attempts in flight among endpoints, so a slow or hanging
/// endpoint cannot starve the others. Pure bookkeeping; the dispatcher asks it before each claim
/// and tells it when an attempt starts, when its answer came (the endpoint's share is free again)
/// and when it was recorded (the replica's slot is free again, so unrecorded attempts stay bounded).
///
/// The rules (documented in Protocol/webhooks.md):
/// - at most `max` attempts in flight on the replica;
/// - at most `perEndpoint` at once to any one endpoint;
/// - an endpoint's first attempt in flight may take any free slot, but its second and later ones
///   only while fewer than `max / 2` are in use: the other half is kept for endpoints that have
///   nothing in flight, so up to `max / 2` endpoints that never answer cannot hold up a healthy one;
/// - a claim takes endpoints round-robin: every endpoint's next attempt before any endpoint's
///   attempt after it (`DeliverySlots.Claim` carries what the claim statement needs for that).
struct DeliverySlots {
    let max: Int
    let perEndpoint: Int
    /// Attempts started and not yet recorded.
    private(set) var total = 0
    /// Attempts started and not yet answered, per endpoint.
    private(set) var byEndpoint: [Int64: Int] = [:]
    /// Whether the last claim left out some endpoint for want of room: then an attempt ending may
    /// let it in again, and the dispatcher looks once more.
    private(set) var heldBack = false

    init(max: Int, perEndpoint: Int) {
        self.max = Swift.max(max, 1)
        self.perEndpoint = Swift.max(perEndpoint, 1)
    }

    /// What one claim may take.
    struct Claim: Equatable {
        /// Attempts in all.
        var limit: Int
        /// Of those, attempts to endpoints that already have one (in flight or earlier in this claim).
        var extra: Int
        /// Endpoints that may take nothing now.
        var blocked: [Int64]
        /// Endpoints that may take more, with their attempts in flight.
        var busy: [(endpoint: Int64, inFlight: Int)]

        static func == (a: Claim, b: Claim) -> Bool {
            a.limit == b.limit && a.extra == b.extra && a.blocked == b.blocked
                && a.busy.map(\.endpoint) == b.busy.map(\.endpoint) && a.busy.map(\.inFlight) == b.busy.map(\.inFlight)
        }
    }

    /// Extra attempts (beyond each endpoint's first) the replica may start now.
    var extraRoom: Int { Swift.max(0, max / 2 - total) }

    /// The next claim, at most `batch` attempts; nil when there is no room at all.
    mutating func claim(batch: Int) -> Claim? {
        let limit = Swift.min(batch, max - total)
        guard limit > 0 else {
            heldBack = true
            return nil
        }
        let extra = Swift.min(extraRoom, limit)
        var blocked: [Int64] = []
        var busy: [(Int64, Int)] = []
        for (e, n) in byEndpoint.sorted(by: { $0.key < $1.key }) {
            if n >= perEndpoint || extra == 0 { blocked.append(e) } else { busy.append((e, n)) }
        }
        heldBack = !blocked.isEmpty
        return Claim(limit: limit, extra: extra, blocked: blocked, busy: busy)
    }

    mutating func started(_ endpoint: Int64) {
        total += 1
        byEndpoint[endpoint, default: 0] += 1
    }

    /// An attempt's answer came (or it failed). Returns whether that may let a held-back endpoint in
    /// (look again).
    mutating func answered(_ endpoint: Int64) -> Bool {
        precondition((byEndpoint[endpoint] ?? 0) > 0, "an attempt was answered that never started")
        byEndpoint[endpoint]! -= 1
        if byEndpoint[endpoint] == 0 { byEndpoint[endpoint] = nil }
        return heldBack
    }

    /// An answered attempt was recorded. Returns whether to look again, as `answered`.
    mutating func recorded() -> Bool {
        precondition(total > byEndpoint.values.reduce(0, +), "an attempt was recorded that was not answered")
        total -= 1
        return heldBack
    }
}
