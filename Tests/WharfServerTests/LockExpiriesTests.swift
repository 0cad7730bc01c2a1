import Testing

@testable import WharfServer

/// `LockExpiries`, the leases a replica watches until they lapse, without a loop or a database.
@Suite struct LockExpiriesTests {
    typealias Lease = LockExpiries.Lease

    @Test func leasesComeDueEarliestFirstAndOnlyOnce() {
        var e = LockExpiries()
        e.held("b", token: "t2", untilMs: 300)
        e.held("a", token: "t1", untilMs: 100)
        e.held("c", token: "t3", untilMs: 200)
        #expect(e.next() == 100)
        #expect(e.due(nowMs: 99).isEmpty)
        #expect(e.due(nowMs: 200) == [Lease(name: "a", token: "t1"), Lease(name: "c", token: "t3")])
        #expect(e.due(nowMs: 200).isEmpty, "taken out once")
        #expect(e.next() == 300 && e.count == 1)
        #expect(!e.watches("a") && e.watches("b"))
    }

    /// A renewal (or a new grant of the name) replaces what was watched: the old time is not due.
    @Test func aRenewalMovesTheLeaseLater() {
        var e = LockExpiries()
        e.held("a", token: "t1", untilMs: 100)
        e.held("a", token: "t1", untilMs: 500)
        #expect(e.next() == 500)
        #expect(e.due(nowMs: 499).isEmpty)
        e.held("a", token: "t2", untilMs: 50)
        #expect(e.due(nowMs: 1_000) == [Lease(name: "a", token: "t2")])
        #expect(e.count == 0 && e.next() == nil)
    }

    /// A release forgets the lease with its token only: a later grant of the name stays watched.
    @Test func aReleaseForgetsOnlyItsOwnLease() {
        var e = LockExpiries()
        e.held("a", token: "t1", untilMs: 100)
        e.released("a", token: "other")
        #expect(e.watches("a"))
        e.released("a", token: "t1")
        #expect(!e.watches("a") && e.next() == nil)
        e.held("a", token: "t2", untilMs: 100)
        e.released("a", token: "t1")
        #expect(e.due(nowMs: 100) == [Lease(name: "a", token: "t2")])
    }

    /// Grants and releases by the hundred thousand (a busy lock service) leave a heap within about
    /// twice the leases watched.
    @Test func theHeapStaysSmallUnderChurn() {
        var e = LockExpiries()
        for i in 0..<100_000 {
            let name = "n\(i % 50)"
            e.held(name, token: "t\(i)", untilMs: Int64(10_000 + i))
            if i % 3 != 0 { e.released(name, token: "t\(i)") }
            #expect(e.stored <= 2 * e.count + 65)
        }
        #expect(e.count <= 50)
    }

    /// Against a plain dictionary under random grants, renewals, releases and looks.
    @Test func matchesAModelUnderRandomOperations() {
        var rng = SplitMix(seed: 29)
        var e = LockExpiries()
        var model: [String: (token: String, at: Int64)] = [:]
        var now: Int64 = 0
        for step in 0..<20_000 {
            let name = "n\(rng.next() % 40)"
            switch rng.next() % 10 {
            case 0..<4:
                let token = rng.next() % 3 == 0 ? (model[name]?.token ?? "t\(step)") : "t\(step)"
                let at = now + Int64(rng.next() % 1_000)
                e.held(name, token: token, untilMs: at)
                model[name] = (token, at)
            case 4..<7:
                let token = rng.next() % 4 == 0 ? "stale" : (model[name]?.token ?? "none")
                e.released(name, token: token)
                if model[name]?.token == token { model[name] = nil }
            default:
                now += Int64(rng.next() % 200)
                let expected = model.filter { $0.value.at <= now }
                    .sorted { ($0.value.at, $0.key) < ($1.value.at, $1.key) }
                let got = e.due(nowMs: now)
                #expect(got.map(\.name).sorted() == expected.map(\.key).sorted())
                #expect(got.map { model[$0.name]!.at } == expected.map(\.value.at), "earliest first")
                #expect(got.allSatisfy { model[$0.name]?.token == $0.token })
                for lease in got { model[lease.name] = nil }
            }
            #expect(e.count == model.count)
            #expect(e.next() == model.values.map(\.at).min())
        }
    }
}
