import Testing
import WharfRPC

@testable import WharfServer

/// `DeliverySlots`, how a replica shares webhook attempts in flight among endpoints: pure bookkeeping.
@Suite struct DeliverySlotsTests {
    @Test func anIdleReplicaClaimsABatchWithRoomForExtras() {
        var slots = DeliverySlots(max: 1_000, perEndpoint: 16)
        let c = slots.claim(batch: 100)
        #expect(c == DeliverySlots.Claim(limit: 100, extra: 100, blocked: [], busy: []))
    }

    @Test func endpointsAtTheirCapAreBlockedAndOthersBusy() {
        var slots = DeliverySlots(max: 1_000, perEndpoint: 2)
        slots.started(7)
        slots.started(7)
        slots.started(9)
        let c = slots.claim(batch: 100)
        #expect(c?.blocked == [7])
        #expect(c?.busy.map(\.endpoint) == [9] && c?.busy.map(\.inFlight) == [1])
        #expect(c?.extra == 100 && slots.extraRoom == 497)
    }

    /// Once half the slots are in use, an endpoint with anything in flight takes nothing more, while an
    /// endpoint with nothing in flight still gets a slot: hanging endpoints cannot starve a healthy one.
    @Test func pastHalfOnlyEndpointsWithNothingInFlightMayStart() {
        var slots = DeliverySlots(max: 10, perEndpoint: 16)
        for e in Int64(1)...5 { slots.started(e) }
        let c = slots.claim(batch: 100)
        #expect(c == DeliverySlots.Claim(limit: 5, extra: 0, blocked: [1, 2, 3, 4, 5], busy: []))
        for e in Int64(6)...10 { slots.started(e) }
        let none = slots.claim(batch: 100)
        #expect(none == nil, "every slot is taken")
    }

    @Test func anAttemptEndingReportsWhetherSomethingWasHeldBack() {
        var slots = DeliverySlots(max: 10, perEndpoint: 1)
        slots.started(1)
        _ = slots.claim(batch: 10)
        let look = slots.answered(1)
        #expect(look, "endpoint 1 was blocked at the last claim")
        _ = slots.claim(batch: 10)
        slots.started(2)
        let lookAgain = slots.answered(2)
        #expect(!lookAgain, "nothing was held back at the last claim")
        _ = slots.recorded()
        _ = slots.recorded()
        #expect(slots.total == 0 && slots.byEndpoint.isEmpty)
    }

    /// An answered attempt frees its endpoint's share at once, and the replica's slot only once it is
    /// recorded: attempts waiting to be recorded count against `max`.
    @Test func answeredAttemptsHoldTheirReplicaSlotUntilRecorded() {
        var slots = DeliverySlots(max: 2, perEndpoint: 1)
        slots.started(1)
        slots.started(2)
        _ = slots.answered(1)
        _ = slots.answered(2)
        #expect(slots.byEndpoint.isEmpty && slots.total == 2)
        let full = slots.claim(batch: 10)
        #expect(full == nil)
        _ = slots.recorded()
        let one = slots.claim(batch: 10)
        #expect(one?.limit == 1 && one?.blocked == [])
    }
}

/// `IsolatingBatcher`: a batch that fails is run again item by item, so a bad item fails alone.
@Suite struct IsolatingBatcherTests {
    @Test func aBadItemFailsOnlyItsOwnCall() {
        var scheduled: [() -> Void] = []
        var runs: [[String]] = []
        let batcher = IsolatingBatcher<String, String>(schedule: { scheduled.append($0) }) { items, done in
            runs.append(items)
            if items.contains("bad") { return done(.failure(.internalError)) }
            done(.success(items.map { $0.uppercased() }))
        }
        var results: [String: Result<String, RPCError>] = [:]
        for item in ["a", "bad", "c"] { batcher.add(item) { results[item] = $0 } }
        for s in scheduled { s() }
        #expect(runs == [["a", "bad", "c"], ["a"], ["bad"], ["c"]])
        #expect((try? results["a"]?.get()) == "A" && (try? results["c"]?.get()) == "C")
        guard case .failure? = results["bad"] else {
            Issue.record("the bad item succeeded")
            return
        }
    }

    @Test func anUnavailableDatabaseFailsTheBatchWithoutRetryingEachItem() {
        var scheduled: [() -> Void] = []
        var runs = 0
        let batcher = IsolatingBatcher<Int, Int>(schedule: { scheduled.append($0) }) { _, done in
            runs += 1
            done(.failure(.unavailable("database unavailable")))
        }
        var failures = 0
        for i in 0..<3 { batcher.add(i) { if case .failure = $0 { failures += 1 } } }
        for s in scheduled { s() }
        #expect(runs == 1 && failures == 3)
    }
}
