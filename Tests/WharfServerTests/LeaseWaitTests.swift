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
        // Makes the lease statement of queue 'slow' take 600 ms: it outlasts the 300 ms wait.
        try s.database.sql(
            """
            create function public.slow_lease() returns trigger language plpgsql as
              $$ begin perform pg_sleep(0.6); return new; end $$;
            create trigger slow_lease before update on wharf.jobs for each row
              when (new.queue = 'slow' and new.state = 'running') execute function public.slow_lease();
            """)
        let worker = try s.connect()
        let producer = try s.connect()
        let started = Date()
        try worker.sendLine(
            #"{"jsonrpc":"2.0","id":1,"method":"jobs.lease","params":{"queues":["slow"],"waitMs":300,"leaseMs":30000,"worker":"w"}}"#
        )
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
}
