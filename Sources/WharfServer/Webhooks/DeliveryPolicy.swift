import Foundation
import WharfHooks
import WharfStore

/// What an attempt's answer means for its delivery and its endpoint: success, retry later (and when),
/// or give up. Pure: no clock (`nowMs` is passed in) and no randomness of its own (the jitter comes
/// from the generator passed in).
///
/// The rules (documented in Protocol/webhooks.md, "Delivery and retries"):
/// - a 2xx answer succeeds; anything else (3xx, which is never followed, 4xx, 5xx, no answer: a DNS,
///   connect, TLS or network error, a timeout, a target refused as non-public) is a failure;
/// - 410 Gone fails the delivery at once and disables its endpoint;
/// - after attempt `n` fails, the next comes `retryScheduleMs[n]` later, ±10 %; once the schedule is
///   used up the delivery fails;
/// - on 429 and 503 a `Retry-After` (seconds or an HTTP date) can lengthen that wait, never shorten
///   it, up to 24 hours.
/// An endpoint is also disabled when it has had nothing but failures for its disable-after period;
/// that rule needs the endpoint's `failing_since`, so the statement that records the attempts applies
/// it (`WebhookSQL.record`), from what `endpointAttempts` sums up here.
struct DeliveryPolicy {
    /// The wait before each attempt, from the first (`[0]`, at once).
    let retryScheduleMs: [Int64]

    /// The spread around each scheduled wait.
    static let jitter: ClosedRange<Double> = 0.9...1.1
    /// The longest wait a `Retry-After` may ask for.
    static let maxRetryAfterMs: Int64 = 86_400_000

    /// The outcome of attempt number `attempt` (from 1) that got `response`.
    func outcome(
        attempt: Int, response: HTTPResponse, nowMs: Int64, using random: inout some RandomNumberGenerator
    ) -> DeliveryOutcome {
        var o = DeliveryOutcome(
            status: response.status, latencyMs: response.latencyMs, errorKind: response.errorKind,
            error: response.error.map { ReceiverText.sanitized($0) },
            responseBody: response.body.isEmpty ? nil : ReceiverText.sanitized(response.body), next: .succeeded,
            gone: response.status == 410)
        if response.succeeded { return o }
        if o.gone || attempt >= retryScheduleMs.count {
            o.next = .failed
            return o
        }
        var delay = Double(retryScheduleMs[max(attempt, 0)]) * Double.random(in: Self.jitter, using: &random)
        if response.status == 429 || response.status == 503,
            let after = response.retryAfter.flatMap({ Self.retryAfterMs($0, nowMs: nowMs) })
        {
            delay = max(delay, Double(min(after, Self.maxRetryAfterMs)))  // only ever delays
        }
        o.next = .retry(inMs: Int64(delay))
        return o
    }

    /// `Retry-After` as seconds or an HTTP date, in milliseconds from `nowMs` (0 for a date past).
    static func retryAfterMs(_ value: String, nowMs: Int64) -> Int64? {
        if let s = Int64(value.trimmingCharacters(in: .whitespaces)), s >= 0 { return s * 1000 }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = f.date(from: value) else { return nil }
        return max(0, Int64(date.timeIntervalSince1970 * 1000) - nowMs)
    }

    /// Each endpoint's attempts in a batch, summed up in order: what the statement that records them
    /// needs for the endpoints' health. Endpoints come in id order, the order the statement updates
    /// their rows in: two batches that updated the same endpoints in different orders deadlocked, and
    /// PostgreSQL broke each deadlock after a second (`deadlock_timeout`), stalling deliveries.
    static func endpointAttempts(_ attempts: [(endpointID: Int64, outcome: DeliveryOutcome)]) -> [EndpointAttempts] {
        var sums: [Int64: EndpointAttempts] = [:]
        for (endpoint, o) in attempts {
            var a = sums[endpoint] ?? EndpointAttempts(endpointID: endpoint)
            if o.succeeded {
                a.anySuccess = true
                a.tailFailures = 0
            } else {
                a.tailFailures += 1
                a.anyFailure = true
            }
            a.lastSuccess = o.succeeded
            a.gone = a.gone || o.gone
            sums[endpoint] = a
        }
        return sums.keys.sorted().map { sums[$0]! }
    }
}
