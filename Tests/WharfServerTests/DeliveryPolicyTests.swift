import Foundation
import Testing
import WharfHooks
import WharfStore

@testable import WharfServer

/// `DeliveryPolicy`, what an attempt's answer means for its delivery and its endpoint: pure, with the
/// clock and the jitter's randomness passed in.
@Suite struct DeliveryPolicyTests {
    /// The Standard Webhooks example schedule, the server's default.
    static let standard = DeliveryPolicy(retryScheduleMs: WebhookPolicy().retryScheduleMs)
    static let nowMs: Int64 = 1_700_000_000_000

    func response(_ status: Int?, kind: String? = nil, error: String? = nil, retryAfter: String? = nil) -> HTTPResponse
    {
        var r = HTTPResponse(status: status, errorKind: kind, error: error)
        r.retryAfter = retryAfter
        r.latencyMs = 12.5
        return r
    }

    func outcome(
        _ r: HTTPResponse, attempt: Int = 1, policy: DeliveryPolicy = standard, seed: UInt64 = 1
    ) -> DeliveryOutcome {
        var random = SplitMix(seed: seed)  // a fixed sequence, so a test can repeat a draw
        return policy.outcome(attempt: attempt, response: r, nowMs: Self.nowMs, using: &random)
    }

    /// The wait of a retry; nil when the outcome is not a retry.
    func retryMs(_ o: DeliveryOutcome) -> Int64? {
        if case .retry(let ms) = o.next { return ms }
        return nil
    }

    /// Whether `ms` is `scheduled` ±10 % (the jitter).
    func jittered(_ ms: Int64?, around scheduled: Int64) -> Bool {
        guard let ms else { return false }
        return Double(ms) >= Double(scheduled) * 0.9 - 1 && Double(ms) <= Double(scheduled) * 1.1
    }

    @Test(arguments: [200, 201, 204, 299])
    func a2xxSucceeds(status: Int) {
        var r = response(status)
        r.body = Array("ok\0".utf8)
        let o = outcome(r)
        #expect(o.next == .succeeded && o.next.state == "succeeded")
        #expect(!o.gone && o.status == status && o.latencyMs == 12.5 && o.errorKind == nil)
        #expect(o.responseBody == "ok\u{FFFD}", "a NUL from the receiver is stored as U+FFFD")
    }

    /// Redirects are not followed: a 3xx is a failure like any other, retried on the schedule.
    @Test(arguments: [301, 302, 307, 308])
    func aRedirectIsAFailureRetriedOnTheSchedule(status: Int) {
        let o = outcome(response(status, kind: "http"))
        #expect(o.next.state == "pending" && jittered(retryMs(o), around: 5_000))
        #expect(!o.gone && o.errorKind == "http")
    }

    @Test(arguments: [400, 401, 404, 409, 500, 502, 504])
    func otherAnswersAreRetriedOnTheSchedule(status: Int) {
        let o = outcome(response(status, kind: "http"), attempt: 3)
        #expect(jittered(retryMs(o), around: 1_800_000) && !o.gone)
    }

    /// 410 Gone fails the delivery at once, with attempts left, and marks its endpoint for disabling.
    @Test func goneFailsAtOnceAndDisablesTheEndpoint() {
        let o = outcome(response(410, kind: "http"), attempt: 1)
        #expect(o.next == .failed && o.next.state == "failed" && o.gone)
        let sums = DeliveryPolicy.endpointAttempts([(7, o)])
        #expect(sums.map(\.gone) == [true])
    }

    /// No answer (DNS, connect, TLS, network, timeout) and a target refused as non-public at attempt
    /// time are failures retried on the schedule; their kind and text are kept (the text storable).
    @Test(arguments: ["dns", "connect", "timeout", "tls", "network", "private_address"])
    func failuresWithoutAnAnswerAreRetried(kind: String) {
        let o = outcome(response(nil, kind: kind, error: "went\0wrong"), attempt: 2)
        #expect(jittered(retryMs(o), around: 300_000))
        #expect(o.status == nil && o.errorKind == kind && o.error == "went\u{FFFD}wrong" && !o.gone)
    }

    /// After attempt n fails the next waits `schedule[n]`; after the last, the delivery fails.
    @Test func theScheduleRunsOutIntoFailure() {
        let short = DeliveryPolicy(retryScheduleMs: [0, 100, 200])
        #expect(jittered(retryMs(outcome(response(500), attempt: 1, policy: short)), around: 100))
        #expect(jittered(retryMs(outcome(response(500), attempt: 2, policy: short)), around: 200))
        #expect(outcome(response(500), attempt: 3, policy: short).next == .failed)
        #expect(outcome(response(500), attempt: 4, policy: short).next == .failed)
        // The default schedule: ten attempts, the last one 24 h after the ninth.
        #expect(jittered(retryMs(outcome(response(500), attempt: 9)), around: 86_400_000))
        #expect(outcome(response(500), attempt: 10).next == .failed)
        // A schedule of one attempt: the first failure is final, and a success still succeeds.
        let once = DeliveryPolicy(retryScheduleMs: [0])
        #expect(outcome(response(nil, kind: "timeout"), attempt: 1, policy: once).next == .failed)
        #expect(outcome(response(200), attempt: 1, policy: once).next == .succeeded)
    }

    @Test func jitterStaysWithinTenPercentAndSpreads() {
        var random = SystemRandomNumberGenerator()
        let delays = (0..<2_000).map { _ -> Int64 in
            let o = Self.standard.outcome(attempt: 1, response: response(500), nowMs: Self.nowMs, using: &random)
            return retryMs(o) ?? -1
        }
        #expect(delays.allSatisfy { $0 >= 4_500 && $0 <= 5_500 })
        #expect(delays.min()! < 4_700 && delays.max()! > 5_300, "the waits spread over the band")
    }

    @Test func jitterComesFromTheGeneratorPassedIn() {
        let a = (1...5).map { retryMs(outcome(response(503), attempt: 2, seed: UInt64($0))) }
        let b = (1...5).map { retryMs(outcome(response(503), attempt: 2, seed: UInt64($0))) }
        #expect(a == b)
        #expect(Set(a).count > 1)
    }

    /// `Retry-After` on 429 and 503 can lengthen the wait, never shorten it, up to 24 h.
    @Test(arguments: [429, 503])
    func retryAfterOnlyLengthensTheWait(status: Int) {
        #expect(retryMs(outcome(response(status, retryAfter: "120"))) == 120_000)
        #expect(jittered(retryMs(outcome(response(status, retryAfter: "1"))), around: 5_000), "shorter: ignored")
        #expect(retryMs(outcome(response(status, retryAfter: "999999"))) == 86_400_000, "capped at 24 h")
        #expect(jittered(retryMs(outcome(response(status, retryAfter: "soon"))), around: 5_000), "unreadable: ignored")
        // An HTTP date, counted from the clock passed in.
        let date = Date(timeIntervalSince1970: Double(Self.nowMs) / 1000 + 90)
        #expect(retryMs(outcome(response(status, retryAfter: Self.httpDate(date)))) == 90_000)
    }

    @Test(arguments: [500, 502, 404, 410])
    func retryAfterIsIgnoredOnOtherAnswers(status: Int) {
        let o = outcome(response(status, retryAfter: "120"))
        #expect(status == 410 ? o.next == .failed : jittered(retryMs(o), around: 5_000))
    }

    @Test func retryAfterReadsSecondsAndHTTPDates() {
        #expect(DeliveryPolicy.retryAfterMs("30", nowMs: Self.nowMs) == 30_000)
        #expect(DeliveryPolicy.retryAfterMs(" 7 ", nowMs: Self.nowMs) == 7_000)
        #expect(DeliveryPolicy.retryAfterMs("-5", nowMs: Self.nowMs) == nil)
        #expect(DeliveryPolicy.retryAfterMs("tomorrow", nowMs: Self.nowMs) == nil)
        let later = Date(timeIntervalSince1970: Double(Self.nowMs) / 1000 + 3_600)
        #expect(DeliveryPolicy.retryAfterMs(Self.httpDate(later), nowMs: Self.nowMs) == 3_600_000)
        let earlier = Date(timeIntervalSince1970: Double(Self.nowMs) / 1000 - 3_600)
        #expect(DeliveryPolicy.retryAfterMs(Self.httpDate(earlier), nowMs: Self.nowMs) == 0, "a date past: at once")
    }

    /// Each endpoint's attempts in a batch, in order: what its health and the disable rules need. The
    /// endpoints come in id order, so that concurrent batches lock their rows in one order.
    @Test func endpointAttemptsSumUpEachEndpointInOrder() {
        let fail = outcome(response(500))
        let ok = outcome(response(200))
        let gone = outcome(response(410))
        let sums = DeliveryPolicy.endpointAttempts([
            (7, fail), (3, gone), (7, ok), (9, ok), (7, fail), (7, fail), (9, ok),
        ])
        #expect(sums.map(\.endpointID) == [3, 7, 9], "endpoints in id order, the order their rows are locked in")
        var seven = EndpointAttempts(endpointID: 7)
        seven.anySuccess = true
        seven.tailFailures = 2
        seven.anyFailure = true
        var three = EndpointAttempts(endpointID: 3)
        three.tailFailures = 1
        three.anyFailure = true
        three.gone = true
        var nine = EndpointAttempts(endpointID: 9)
        nine.anySuccess = true
        nine.lastSuccess = true
        #expect(sums == [three, seven, nine])
        // Failures only: they all count (the statement adds them to the endpoint's earlier ones).
        #expect(DeliveryPolicy.endpointAttempts([(5, fail), (5, fail)]).map(\.tailFailures) == [2])
        #expect(DeliveryPolicy.endpointAttempts([]).isEmpty)
    }

    static func httpDate(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return f.string(from: d)
    }
}
