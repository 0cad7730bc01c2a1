import Testing
import WharfRPC

@testable import WharfServer

/// Which calls an `outcome_unknown` error marks retryable.
@Suite struct RetrySafetyTests {
    func safe(_ method: String, _ params: JSONObject = [:]) -> Bool {
        RetrySafety.isSafeToRepeat(method: method, params: Params(object: params))
    }

    @Test func keysMakeCreatingCallsSafe() {
        #expect(!safe("jobs.enqueue", ["queue": "q", "kind": "k"]))
        #expect(safe("jobs.enqueue", ["queue": "q", "kind": "k", "idempotencyKey": "a"]))
        #expect(!safe("jobs.enqueue", ["webhook": ["endpointId": "1"]]))
        #expect(safe("jobs.enqueue", ["webhook": ["endpointId": "1"], "uniqueKey": "u"]))
        #expect(safe("jobs.enqueueBatch", ["jobs": [["idempotencyKey": "a"], ["idempotencyKey": "b"]]]))
        #expect(!safe("jobs.enqueueBatch", ["jobs": [["idempotencyKey": "a"], ["queue": "q"]]]))
        #expect(!safe("locks.acquire", ["name": "n"]))
        #expect(safe("locks.acquire", ["name": "n", "requestId": "r"]))
        #expect(safe("jobs.complete") && safe("jobs.get") && !safe("cron.trigger") && !safe("webhooks.register"))
        #expect(!safe("some.futureMethod"), "unknown methods are treated as unsafe")
    }

    @Test func onlyOutcomeUnknownIsAdjusted() {
        let unknown = RPCError.outcomeUnknown("lost")
        let p = Params(object: ["queue": "q", "kind": "k", "idempotencyKey": "a"])
        #expect(RetrySafety.adjust(unknown, method: "jobs.enqueue", params: p).isRetryable)
        #expect(!RetrySafety.adjust(unknown, method: "jobs.enqueue", params: Params(object: [:])).isRetryable)
        let unavailable = RPCError.unavailable("down")
        #expect(RetrySafety.adjust(unavailable, method: "cron.trigger", params: p).isRetryable)
    }

    /// Every served method is placed in exactly one set, so a new method gets a decision.
    @Test func everyServedMethodIsClassified() throws {
        let s = try TestServer()
        let sets = [RetrySafety.safeMethods, RetrySafety.keyedMethods, RetrySafety.unsafeMethods]
        for method in s.server.methodNames {
            #expect(sets.filter { $0.contains(method) }.count == 1, "\(method) must be in exactly one RetrySafety set")
        }
        #expect(sets.reduce(Set<String>()) { $0.union($1) } == Set(s.server.methodNames))
    }
}
