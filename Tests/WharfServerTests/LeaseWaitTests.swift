import Foundation
import Testing
import WharfClient
import WharfRPC

/// A long-polling lease whose wait ends while the lease statement taken for it is still running.
@Suite struct LeaseWaitTests {
    /// The statement's jobs answer the call, a little after waitMs, instead of going back as
    /// worker_lost with an attempt spent (the reply used to be empty and the job's attempt counted).
    @Test func aLeaseInFlightWhenTheWaitEndsAnswersTheCall() throws {
        let s = try TestServer()
        // The lease statement takes 600 ms: it outlasts the 300 ms wait.
        try Self.slowLeases(s, queue: "slow", seconds: 0.6)
        let worker = try s.connect()
        let producer = try s.connect()
        let started = Date()
        try Self.waitingLease(worker, queue: "slow", waitMs: 300)
        Thread.sleep(forTimeInterval: 0.05)
        let id = try #require(producer.call("jobs.enqueue", ["queue": "slow", "kind": "k"])["id"]?.stringValue)
        let reply = try JSONParser.parse(worker.readLine())
        let elapsed = Date().timeIntervalSince(started)
        let jobs = try #require(reply["result"]?["jobs"]?.arrayValue)
        #expect(jobs.map { $0["id"] } == [.string(id)], "reply after \(elapsed) s: \(reply)")
        #expect(elapsed >= 0.3)
        let job = try producer.call("jobs.get", ["id": .string(id)])
        #expect(job["state"] == "running")
        #expect(job["attempt"] == 1)
        #expect(job["attempts"]?.arrayValue?.isEmpty ?? true, "\(job)")
    }

    /// A worker waiting on a queue takes its lease in the transaction of the enqueue that makes its
    /// job (one commit before the worker has it): the job is leased at the instant it was created,
    /// which a lease after the enqueue's commit cannot be.
    @Test func anEnqueueHandsItsJobsToAWaitingWorkerInItsOwnTransaction() throws {
        let s = try TestServer()
        let worker = try s.connect()
        let producer = try s.connect()
        func waitingLease(max: Int) throws {
            try Self.waitingLease(worker, queue: "handoff", waitMs: 5000, max: max)
            Thread.sleep(forTimeInterval: 0.1)
        }
        try waitingLease(max: 1)
        let id = try #require(producer.call("jobs.enqueue", ["queue": "handoff", "kind": "k"])["id"]?.stringValue)
        let one = try #require(JSONParser.parse(worker.readLine())["result"]?["jobs"]?.arrayValue)
        #expect(one.map { $0["id"] } == [.string(id)])
        #expect(one.first?["leasedAt"] != nil && one.first?["leasedAt"] == one.first?["createdAt"], "\(one)")

        try waitingLease(max: 10)
        let batch = try producer.call(
            "jobs.enqueueBatch", ["jobs": .array((0..<3).map { _ in ["queue": "handoff", "kind": "k"] })])
        let made = try #require(batch["jobs"]?.arrayValue).map { $0["id"] }
        let three = try #require(JSONParser.parse(worker.readLine())["result"]?["jobs"]?.arrayValue)
        #expect(three.map { $0["id"] } == made)
        for j in three { #expect(j["leasedAt"] == j["createdAt"], "\(j)") }
    }

    /// The lease an enqueue takes for a waiting worker fails: the enqueue still makes its job, once,
    /// and the job stays available.
    @Test func aHandoffLeaseThatFailsCostsTheEnqueueNothing() throws {
        let s = try TestServer()
        try s.database.sql(
            """
            create function public.refuse_lease() returns trigger language plpgsql as
              $$ begin raise exception 'no lease for this worker'; end $$;
            create trigger refuse_lease before update on wharf.jobs for each row
              when (new.worker = 'refused' and new.state = 'running') execute function public.refuse_lease();
            """)
        let worker = try s.connect()
        let producer = try s.connect()
        try Self.waitingLease(worker, queue: "refused", waitMs: 700, worker: "refused")
        Thread.sleep(forTimeInterval: 0.1)
        let id = try #require(producer.call("jobs.enqueue", ["queue": "refused", "kind": "k"])["id"]?.stringValue)
        let reply = try JSONParser.parse(worker.readLine())
        #expect(reply["error"] != nil || reply["result"]?["jobs"]?.arrayValue?.isEmpty == true, "\(reply)")
        let rows = try s.database.sql("select id::text || ' ' || state from wharf.jobs where queue = 'refused'")
        #expect(rows.trimmingCharacters(in: .whitespacesAndNewlines) == "\(id) available")
    }

    /// The worker leaves while the enqueue's transaction takes its lease: the job goes back at once
    /// (worker_lost), not when the lease expires a minute later.
    @Test func aJobHandedToAWorkerThatLeftGoesBackAtOnce() throws {
        let s = try TestServer()
        // The lease takes 500 ms, long enough for the worker to go.
        try Self.slowLeases(s, queue: "left", seconds: 0.5)
        let producer = try s.connect()
        do {
            let worker = try s.connect()
            try Self.waitingLease(worker, queue: "left", waitMs: 5000)
            Thread.sleep(forTimeInterval: 0.1)
            try producer.sendLine(
                #"{"jsonrpc":"2.0","id":7,"method":"jobs.enqueue","params":{"queue":"left","kind":"k"}}"#)
            withExtendedLifetime(worker) { Thread.sleep(forTimeInterval: 0.2) }
        }
        let reply = try producer.readMessage()
        let id = try #require(reply["result"]?["id"]?.stringValue, "\(reply)")
        var job = try producer.call("jobs.get", ["id": .string(id)])
        let deadline = Date().addingTimeInterval(5)
        while job["state"] != "available" && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            job = try producer.call("jobs.get", ["id": .string(id)])
        }
        #expect(job["state"] == "available", "\(job)")
        // It was leased in the enqueue's transaction (to the worker that had left), then given back.
        #expect(job["attempt"] == 1, "\(job)")
    }

    /// Makes every lease of `queue` take `seconds`: a trigger sleeps as each job becomes running.
    static func slowLeases(_ s: TestServer, queue: String, seconds: Double) throws {
        try s.database.sql(
            """
            create function public.slow_lease_\(queue)() returns trigger language plpgsql as
              $$ begin perform pg_sleep(\(seconds)); return new; end $$;
            create trigger slow_lease_\(queue) before update on wharf.jobs for each row
              when (new.queue = '\(queue)' and new.state = 'running') execute function public.slow_lease_\(queue)();
            """)
    }

    /// Sends a long-polling `jobs.lease` (id 1) on `worker` without waiting for its reply.
    static func waitingLease(
        _ connection: BlockingConnection, queue: String, waitMs: Int, max: Int = 1, worker: String = "w"
    ) throws {
        let params: JSON = [
            "queues": [.string(queue)], "max": .int(Int64(max)), "waitMs": .int(Int64(waitMs)), "leaseMs": 60_000,
            "worker": .string(worker),
        ]
        try connection.sendLine(
            JSON.object(["jsonrpc": "2.0", "id": 1, "method": "jobs.lease", "params": params]).text)
    }
}
