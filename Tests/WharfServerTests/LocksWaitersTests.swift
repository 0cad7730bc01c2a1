import Testing

@testable import WharfServer

/// `LockWaiters`, the per-replica line of waiters: pure bookkeeping, no server.
@Suite struct LocksWaitersTests {
    final class W {
        let id: String
        init(_ id: String) { self.id = id }
    }

    @Test func onlyTheFirstWaiterIsRetriedAndOnlyOnceAtATime() {
        var line = LockWaiters<W>()
        let (a, b) = (W("a"), W("b"))
        for (seq, w) in [(Int64(1), a), (2, b)] {
            line.joinStarted("n")
            #expect(line.joinFinished("n", queued: (seq, w)) == nil)
        }
        #expect(line.woke("n") === a)
        #expect(line.woke("n") == nil, "a retry is in flight")
        #expect(line.woke("other") == nil)
        // The wake-up during the retry is not lost: the retry may have read the lock before it was freed.
        #expect(line.retryFinished("n", granted: false) === a)
        line.remove("n", seq: 1)
        #expect(line.retryFinished("n", granted: true) == nil)
        #expect(line.woke("n") === b)
        line.remove("n", seq: 2)
        #expect(line.retryFinished("n", granted: true) == nil)
        #expect(line.names.isEmpty)
        #expect(line.count == 0)
    }

    @Test func theLocalOrderFollowsTheDurableLineNotArrival() {
        var line = LockWaiters<W>()
        let (late, early) = (W("late"), W("early"))
        line.joinStarted("n")
        line.joinStarted("n")
        // Two statements in flight at once: the second to come back took the earlier place.
        #expect(line.joinFinished("n", queued: (7, late)) == nil)
        #expect(line.joinFinished("n", queued: (5, early)) == nil)
        #expect(line.woke("n") === early)
    }

    @Test func aWakeUpWhileJoiningIsReplayedOnceJoined() {
        var line = LockWaiters<W>()
        let a = W("a")
        line.joinStarted("n")
        // The release's NOTIFY overtook the reply of the statement that queued `a`.
        #expect(line.woke("n") == nil)
        #expect(line.joinFinished("n", queued: (1, a)) === a)
        #expect(line.retryFinished("n", granted: false) == nil)
    }

    @Test func aJoinThatWasGrantedLeavesNothingBehind() {
        var line = LockWaiters<W>()
        line.joinStarted("n")
        #expect(line.woke("n") == nil)
        #expect(line.joinFinished("n", queued: nil) == nil)
        #expect(line.names.isEmpty)
        #expect(!line.hasWaiters("n"))
    }

    @Test func aWaiterThatLeavesDuringItsRetryIsNotRetriedAgain() {
        var line = LockWaiters<W>()
        let (a, b) = (W("a"), W("b"))
        line.joinStarted("n")
        _ = line.joinFinished("n", queued: (1, a))
        line.joinStarted("n")
        _ = line.joinFinished("n", queued: (2, b))
        #expect(line.woke("n") === a)
        line.remove("n", seq: 1)
        #expect(line.woke("n") == nil)
        #expect(line.retryFinished("n", granted: false) === b)
    }
}

/// `LockWaiters` with long lines: the order, the count and the first waiter stay right through joins out
/// of order, departures from anywhere and the compaction of departed places.
@Suite struct LocksWaitersLongLineTests {
    final class W {
        let seq: Int64
        init(_ seq: Int64) { self.seq = seq }
    }

    @Test func tenThousandWaitersJoinAndLeaveFromAnywhere() {
        var line = LockWaiters<W>()
        let all = (1...10_000).map { W(Int64($0)) }
        for w in all {
            line.joinStarted("hot")
            #expect(line.joinFinished("hot", queued: (w.seq, w)) == nil)
        }
        #expect(line.count == 10_000)
        #expect(line.load("hot") == 10_000)
        // Every odd waiter leaves (connections closing), back to front.
        for w in all.reversed() where w.seq % 2 == 1 { line.remove("hot", seq: w.seq) }
        #expect(line.count == 5_000)
        // Each retry goes to the oldest waiter still there; a granted one leaves.
        for expected in stride(from: Int64(2), through: 10_000, by: 2) {
            let first = line.woke("hot")
            #expect(first?.seq == expected)
            guard let first else { return }
            line.remove("hot", seq: first.seq)
            #expect(line.retryFinished("hot", granted: true) == nil)
        }
        #expect(line.count == 0)
        #expect(line.names.isEmpty)
        #expect(line.woke("hot") == nil)
    }

    @Test func matchesASortedModelUnderRandomOperations() {
        var rng = SplitMix(seed: 13)
        var line = LockWaiters<W>()
        var model: [Int64: W] = [:]
        var nextSeq: Int64 = 1
        for _ in 0..<20_000 {
            switch rng.next() % 10 {
            case 0..<5:
                // Mostly in order; sometimes a statement that overlapped another comes back late.
                let seq = rng.next() % 8 == 0 ? max(1, nextSeq - Int64(rng.next() % 50)) : nextSeq
                nextSeq += 1
                guard model[seq] == nil else { continue }
                let w = W(seq)
                model[seq] = w
                line.joinStarted("n")
                _ = line.joinFinished("n", queued: (seq, w))
            case 5..<9:
                guard let seq = model.keys.randomElement(using: &rng) else { continue }
                model[seq] = nil
                line.remove("n", seq: seq)
            default:
                let first = line.woke("n")
                #expect(first === model.keys.min().flatMap { model[$0] })
                if first != nil { _ = line.retryFinished("n", granted: false) }
            }
            #expect(line.count == model.count)
            #expect(line.hasWaiters("n") == !model.isEmpty)
        }
    }

    @Test func theLimitCountsAcquiresStillDecidingWhetherToJoin() {
        var line = LockWaiters<W>()
        line.joinStarted("n")
        line.joinStarted("n")
        #expect(line.load("n") == 2)
        _ = line.joinFinished("n", queued: (1, W(1)))
        #expect(line.load("n") == 2)
        _ = line.joinFinished("n", queued: nil)
        #expect(line.load("n") == 1)
        line.remove("n", seq: 1)
        #expect(line.load("n") == 0)
    }
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
