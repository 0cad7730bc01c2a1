import Testing
import WharfClient
import WharfRPC

@testable import WharfStore

/// An enqueue passes a column that no job of the batch sets as one SQL null, not an array of nulls
/// (`JobSQL.enqueueArrays(_:nullWhenAbsent:)`); a column that one job sets is passed whole, so that job
/// gets its value and the others their defaults.
@Suite struct EnqueueColumnsTests {
    @Test func onlyTheColumnsSomeJobSetsArePassed() {
        var set = JobSpec(queue: "q", kind: "k")
        set.priority = 3
        set.tags = ["t"]
        let plain = JobSpec(queue: "q", kind: "k")
        let names = JobSQL.enqueueColumns.map(\.name)
        let bare = Dictionary(
            uniqueKeysWithValues: zip(names, JobSQL.enqueueArrays([plain, plain], nullWhenAbsent: true)))
        #expect(names.filter { bare[$0]! != nil } == ["queue", "kind", "payload"])
        let mixed = Dictionary(
            uniqueKeysWithValues: zip(names, JobSQL.enqueueArrays([plain, set], nullWhenAbsent: true)))
        #expect(names.filter { mixed[$0]! != nil } == ["queue", "kind", "payload", "priority", "tags"])
        #expect(mixed["priority"]! == "{0,3}")
        #expect(mixed["tags"]! == #"{"[]","[\"t\"]"}"#)
        // Without the option every column is an array (the other callers, whose SQL indexes them).
        #expect(JobSQL.enqueueArrays([plain], nullWhenAbsent: false).allSatisfy { $0 != nil })
    }

    @Test func eachJobGetsItsOwnValuesOrTheDefaults() throws {
        let s = try TestServer()
        let c = try s.connect()
        let set: JSON = [
            "queue": "cols", "kind": "set", "payload": ["n": 1], "priority": -7, "maxAttempts": 3,
            "timeoutMs": 5000, "tags": ["a", "b"], "meta": ["m": true],
            "retry": ["initialMs": 10, "maxMs": 20],
        ]
        let jobs: [JSON] = [["queue": "cols", "kind": "plain"], set, ["queue": "cols", "kind": "plain"]]
        let ids = try #require(try c.call("jobs.enqueueBatch", ["jobs": .array(jobs)])["jobs"]?.arrayValue)
            .compactMap { $0["id"]?.stringValue }
        #expect(ids.count == 3)
        #expect(
            try s.database.sql(
                """
                select string_agg(concat_ws('/', kind, priority, max_attempts, timeout_ms, tags::text, meta::text,
                                            retry is not null, payload::text), ' ' order by id)
                from wharf.jobs where queue = 'cols'
                """)
                == #"plain/0/20/{}/{}/f/null set/-7/3/5000/{a,b}/{"m": true}/t/{"n": 1} plain/0/20/{}/{}/f/null"#)
        // A batch in which no job sets anything but queue and kind gets every default.
        _ = try c.call(
            "jobs.enqueueBatch", ["jobs": [["queue": "bare", "kind": "k"], ["queue": "bare", "kind": "k"]]])
        #expect(
            try s.database.sql(
                """
                select string_agg(concat_ws('/', state, priority, max_attempts, tags::text, meta::text,
                                            run_at <= now(), payload::text), ' ' order by id)
                from wharf.jobs where queue = 'bare'
                """) == "available/0/20/{}/{}/t/null available/0/20/{}/{}/t/null")
    }
}
