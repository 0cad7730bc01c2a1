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
        line.remove("n", a)
        #expect(line.retryFinished("n", granted: true) == nil)
        #expect(line.woke("n") === b)
        line.remove("n", b)
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
        line.remove("n", a)
        #expect(line.woke("n") == nil)
        #expect(line.retryFinished("n", granted: false) === b)
    }
}
