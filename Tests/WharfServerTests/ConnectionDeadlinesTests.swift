import Testing

@testable import WharfServer

/// `ConnectionDeadlines`, `WriteBackpressure` and `SubscriberQueue`: the pure decisions behind a
/// connection's limits, without sockets or clocks.
@Suite struct ConnectionDeadlinesTests {
    let settings = ConnectionDeadlines.Settings(
        authTimeoutMs: 1_000, frameTimeoutMs: 2_000, writeTimeoutMs: 3_000, idleTimeoutMs: 10_000, closeLingerMs: 500)

    @Test func anUnauthenticatedConnectionExpiresAtTheAuthDeadline() {
        var d = ConnectionDeadlines(settings: settings, now: 100, authenticated: false)
        #expect(d.expired(now: 1_099, busy: false) == nil)
        #expect(d.expired(now: 1_100, busy: false) == .authentication)
        // Busy or not: talking without authenticating does not extend the deadline.
        d.inputReceived(completedFrame: true, partialFrame: false, now: 1_050)
        #expect(d.expired(now: 1_100, busy: true) == .authentication)
        d.sessionAuthenticated()
        #expect(d.expired(now: 1_100, busy: false) == nil)
    }

    @Test func aTLSHandshakeMustFinishInTime() {
        var tls = settings
        tls.handshakeTimeoutMs = 700
        var d = ConnectionDeadlines(settings: tls, now: 100, authenticated: true)
        d.handshakeStarted()
        // Bytes of a handshake that never ends do not extend it.
        d.inputReceived(completedFrame: false, partialFrame: false, now: 700)
        #expect(d.expired(now: 799, busy: false) == nil)
        #expect(d.expired(now: 800, busy: false) == .handshake)
        d.handshakeFinished()
        #expect(d.expired(now: 800, busy: false) == nil)
        // A plaintext connection has no handshake clock.
        #expect(ConnectionDeadlines(settings: tls, now: 0, authenticated: true).expired(now: 5_000, busy: true) == nil)
    }

    @Test func theAuthDeadlineIsOffAtZeroAndForSessionsBornAuthenticated() {
        var off = settings
        off.authTimeoutMs = 0
        #expect(ConnectionDeadlines(settings: off, now: 0, authenticated: false).expired(now: 5_000, busy: true) == nil)
        #expect(
            ConnectionDeadlines(settings: settings, now: 0, authenticated: true).expired(now: 5_000, busy: true) == nil)
    }

    @Test func aFrameTricklingInByteByByteExpiresFromItsFirstByte() {
        var d = ConnectionDeadlines(settings: settings, now: 0, authenticated: true)
        // One byte every 100 ms: the input is always fresh, but the frame never ends.
        for t in stride(from: UInt64(100), through: 1_900, by: 100) {
            d.inputReceived(completedFrame: false, partialFrame: true, now: t)
            #expect(d.expired(now: t, busy: false) == nil)
        }
        d.inputReceived(completedFrame: false, partialFrame: true, now: 2_100)
        #expect(d.expired(now: 2_100, busy: false) == .frame)
    }

    @Test func aPipelinerWhoseReadsEndMidFrameNeverExpires() {
        var d = ConnectionDeadlines(settings: settings, now: 0, authenticated: true)
        // Every read ends inside a frame, but each also finishes one: the clock restarts each time.
        for t in stride(from: UInt64(0), through: 20_000, by: 500) {
            d.inputReceived(completedFrame: true, partialFrame: true, now: t)
            #expect(d.expired(now: t + 400, busy: false) == nil)
        }
        d.inputReceived(completedFrame: true, partialFrame: false, now: 20_500)
        #expect(d.partialFrameSinceMs == nil)
    }

    @Test func pausedReadingStopsTheFrameClock() {
        var d = ConnectionDeadlines(settings: settings, now: 0, authenticated: true)
        d.inputReceived(completedFrame: false, partialFrame: true, now: 0)
        d.readingPaused()
        #expect(d.expired(now: 5_000, busy: true) == nil)
        d.readingResumed(partialFrame: true, now: 5_000)
        #expect(d.expired(now: 6_999, busy: true) == nil)
        #expect(d.expired(now: 7_000, busy: true) == .frame)
    }

    @Test func outputThePeerTakesNoneOfExpiresAtTheWriteTimeout() {
        var d = ConnectionDeadlines(settings: settings, now: 0, authenticated: true)
        d.outputSampled(pendingBytes: 0, writtenBytes: 0, now: 0)
        d.outputSampled(pendingBytes: 500, writtenBytes: 0, now: 1_000)
        #expect(d.writeStalledSinceMs == 1_000)
        // More output piles up; no byte is taken: the clock keeps running from the first stall.
        d.outputSampled(pendingBytes: 900, writtenBytes: 0, now: 2_000)
        #expect(d.expired(now: 3_999, busy: true) == nil)
        #expect(d.expired(now: 4_000, busy: true) == .write)
    }

    @Test func aSlowReaderThatTakesSomeBytesKeepsRestartingTheWriteClock() {
        var d = ConnectionDeadlines(settings: settings, now: 0, authenticated: true)
        var written: UInt64 = 0
        for t in stride(from: UInt64(0), through: 30_000, by: 2_000) {
            written += 10
            d.outputSampled(pendingBytes: 1 << 20, writtenBytes: written, now: t)
            #expect(d.expired(now: t + 1_999, busy: true) == nil)
        }
        d.outputSampled(pendingBytes: 0, writtenBytes: written, now: 31_000)
        #expect(d.writeStalledSinceMs == nil)
    }

    @Test func closingShortensTheWriteClockToTheLinger() {
        var d = ConnectionDeadlines(settings: settings, now: 0, authenticated: false)
        d.outputSampled(pendingBytes: 100, writtenBytes: 0, now: 0)
        d.closingStarted(now: 200)
        // While closing, only the write clock runs, and for at most closeLingerMs.
        #expect(d.expired(now: 499, busy: false) == nil)
        #expect(d.expired(now: 500, busy: false) == .write)
        var off = settings
        off.writeTimeoutMs = 0
        var e = ConnectionDeadlines(settings: off, now: 0, authenticated: true)
        e.outputSampled(pendingBytes: 100, writtenBytes: 0, now: 0)
        #expect(e.expired(now: 100_000, busy: true) == nil, "write timeout off")
        e.closingStarted(now: 100_000)
        #expect(e.expired(now: 100_000, busy: true) == .write, "the linger still bounds a close")
    }

    @Test func idleCountsOnlyWhenNothingIsInFlightAndNoSubscriptionIsLive() {
        var d = ConnectionDeadlines(settings: settings, now: 0, authenticated: true)
        #expect(d.expired(now: 10_000, busy: true) == nil)
        #expect(d.expired(now: 10_000, busy: false) == .idle)
        d.requestFinished(now: 9_000)
        #expect(d.expired(now: 18_999, busy: false) == nil)
        #expect(d.expired(now: 19_000, busy: false) == .idle)
    }

    @Test func theStuckClockIsTheOlderOfAStalledWriteAndAnUnfinishedFrame() {
        var d = ConnectionDeadlines(settings: settings, now: 0, authenticated: true)
        #expect(d.stuckSinceMs == nil)
        d.inputReceived(completedFrame: false, partialFrame: true, now: 300)
        d.outputSampled(pendingBytes: 10, writtenBytes: 0, now: 700)
        #expect(d.stuckSinceMs == 300)
        d.inputReceived(completedFrame: true, partialFrame: false, now: 800)
        #expect(d.stuckSinceMs == 700)
    }
}

@Suite struct WriteBackpressureTests {
    @Test func pausesAtTheHighWaterMarkAndResumesOnlyAtTheLowWaterMark() {
        var b = WriteBackpressure(highWater: 1_000)
        #expect(b.lowWater == 250)
        #expect(b.outputChanged(pendingBytes: 999) == nil)
        #expect(b.mayTakeRequest(pendingBytes: 999))
        #expect(!b.mayTakeRequest(pendingBytes: 1_000))
        #expect(b.outputChanged(pendingBytes: 1_000) == .pauseReading)
        #expect(b.outputChanged(pendingBytes: 5_000) == nil)
        #expect(!b.mayTakeRequest(pendingBytes: 0), "paused until the low-water mark is seen")
        #expect(b.outputChanged(pendingBytes: 251) == nil, "between the marks it stays paused")
        #expect(b.outputChanged(pendingBytes: 250) == .resumeReading)
        #expect(b.outputChanged(pendingBytes: 0) == nil)
        #expect(b.mayTakeRequest(pendingBytes: 0))
    }
}

@Suite struct SubscriberQueueTests {
    func line(_ n: Int) -> [UInt8] { Array("e\(n)\n".utf8) }

    @Test func keepsOrderAndCountsBytes() {
        var q = SubscriberQueue(capacity: 3)
        q.push(line(1))
        q.push(line(2))
        #expect(q.count == 2 && q.byteCount == 6)
        #expect(q.pop() == .event(line(1)))
        #expect(q.pop() == .event(line(2)))
        #expect(q.pop() == nil)
        #expect(q.isEmpty && q.byteCount == 0)
    }

    @Test func aFullQueueDropsTheOldestAndReportsTheGapFirst() {
        var q = SubscriberQueue(capacity: 3)
        for n in 1...7 { q.push(line(n)) }
        #expect(q.count == 3)
        #expect(q.byteCount == 9)
        #expect(q.pop() == .gap(count: 4))
        #expect(q.pop() == .event(line(5)))
        q.push(line(8))
        q.push(line(9))
        #expect(q.pop() == .gap(count: 1), "a second gap is counted on its own")
        #expect(q.pop() == .event(line(7)))
        #expect(q.pop() == .event(line(8)))
        #expect(q.pop() == .event(line(9)))
        #expect(q.pop() == nil)
        #expect(q.droppedTotal == 5)
    }

    @Test func memoryStaysBoundedOverAMillionEvents() {
        var q = SubscriberQueue(capacity: 100)
        var gaps = 0
        var events = 0
        var slots = 0
        for n in 0..<1_000_000 {
            q.push(line(n % 10))
            slots = max(slots, q.storedSlots)
            if n % 1000 == 0 {
                while let next = q.pop() {
                    if case .gap(let c) = next { gaps += c } else { events += 1 }
                }
            }
        }
        while let next = q.pop() { if case .gap(let c) = next { gaps += c } else { events += 1 } }
        #expect(gaps + events == 1_000_000, "every event is either delivered or counted as dropped")
        #expect(gaps == q.droppedTotal)
        #expect(slots <= 100 + 1024, "the storage is compacted as events are taken")
        #expect(q.byteCount == 0)
    }
}
