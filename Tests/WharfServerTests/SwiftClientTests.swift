import Foundation
import Testing
import WharfClient
import WharfRPC

/// The async Swift client and its Worker runtime against a real server.
@Suite struct SwiftClientTests {
    @Test func pipelinedCallsFromManyTasks() async throws {
        let s = try TestServer()
        let client = s.client()
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<100 {
                group.addTask { try await client.enqueue(queue: "swift", kind: "k", payload: ["i": .from(i)]).id }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(ids).count == 100)
        do {
            _ = try await client.call("jobs.get", ["id": "424242"])
            Issue.record("expected not found")
        } catch let e as RPCError {
            #expect(e.code == -32004)
        }
        client.close()
    }

    @Test func enqueueWithAnIdempotencyKeyIsSafeToRepeat() async throws {
        let s = try TestServer()
        let client = s.client()
        let key = WharfClient.newIdempotencyKey()
        let first = try await client.enqueue(queue: "swk", kind: "k", idempotencyKey: key)
        let again = try await client.enqueue(queue: "swk", kind: "k", idempotencyKey: key)
        #expect(!first.replayed && again.replayed)
        #expect(again.id == first.id && !again.duplicate)
        let other = try await client.enqueue(queue: "swk", kind: "k", idempotencyKey: WharfClient.newIdempotencyKey())
        #expect(other.id != first.id)
        client.close()
    }

    @Test func workerRunsCompletesAndFailsJobs() async throws {
        let s = try TestServer()
        let client = s.client()
        let ok = try await client.enqueue(queue: "sw", kind: "double", payload: ["n": 21])
        let bad = try await client.enqueue(queue: "sw", kind: "reject", payload: .null)
        let worker = Worker(client: s.client(), queues: ["sw"], concurrency: 2, leaseMs: 3_000)
        worker.handle("double") { job in ["n": .int((job.payload["n"]?.intValue ?? 0) * 2)] }
        worker.handle("reject") { _ in throw JobControl.discard(reason: "not wanted") }
        let running = Task { await worker.run() }
        var states: (String?, String?) = (nil, nil)
        for _ in 0..<100 {
            let a = try await client.call("jobs.get", ["id": .string(ok.id)])
            let b = try await client.call("jobs.get", ["id": .string(bad.id)])
            states = (a["state"]?.stringValue, b["state"]?.stringValue)
            if states == ("completed", "dead") {
                #expect(a["result"]?["n"] == 42)
                #expect(b["lastError"]?["message"] == "not wanted")
                break
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(states.0 == "completed")
        #expect(states.1 == "dead")
        worker.stop()
        await running.value
    }

    @Test func aBatchOfCallsAnswersEachInOrder() async throws {
        let s = try TestServer()
        let client = s.client()
        let job = try await client.enqueue(queue: "swb", kind: "k")
        let outcomes = try await client.callBatch([
            ("server.ping", nil), ("jobs.get", ["id": "424242"]), ("jobs.get", ["id": .string(job.id)]),
        ])
        #expect(outcomes.count == 3)
        #expect((try? outcomes[0].get()) == "pong")
        if case .failure(let e as RPCError) = outcomes[1] {
            #expect(e.code == -32004)
        } else {
            Issue.record("expected not_found, got \(outcomes[1])")
        }
        #expect((try? outcomes[2].get())?["id"]?.stringValue == job.id)
        client.close()
    }

    @Test func aWorkerSendsOutcomesInBatches() async throws {
        let s = try TestServer()
        let client = s.client()
        let items = (0..<200).map { i -> JSON in ["queue": "swbatch", "kind": "noop", "payload": ["i": .from(i)]] }
        _ = try await client.call("jobs.enqueueBatch", ["jobs": .array(items)])
        let worker = Worker(client: s.client(), queues: ["swbatch"], concurrency: 20, leaseMs: 10_000)
        worker.handle("noop") { job in ["i": job.payload["i"] ?? .null] }
        let running = Task { await worker.run() }
        for _ in 0..<400 where worker.stats.completed < 200 { try await Task.sleep(nanoseconds: 25_000_000) }
        worker.stop()
        await running.value
        let stats = worker.stats
        #expect(stats.leased == 200 && stats.completed == 200)
        // Outcomes of jobs that finish together share a batch (one write and one reply each).
        #expect(stats.batches > 0 && stats.batches < 100, "\(stats)")
        let counts = try await client.call("queues.stats", ["queue": "swbatch"])["counts"]
        #expect(counts?["completed"]?.intValue == 200)
        let one = try await client.call("jobs.list", ["queue": "swbatch", "limit": 1])["jobs"]?.arrayValue?.first
        #expect(one?["result"]?["i"] != nil && one?["result"]?["i"] != .null)
        client.close()
    }

    @Test func aWorkerExtendsTheLeaseOfALongJob() async throws {
        let s = try TestServer()
        let client = s.client()
        let job = try await client.enqueue(queue: "swlong", kind: "slow")
        // Heartbeats every second; a loaded machine may delay one by a second or more, not by two.
        let worker = Worker(client: s.client(), queues: ["swlong"], concurrency: 2, leaseMs: 3_000)
        worker.handle("slow") { _ in
            try await Task.sleep(nanoseconds: 7_000_000_000)
            return "done"
        }
        let running = Task { await worker.run() }
        for _ in 0..<400 where worker.stats.completed + worker.stats.failed == 0 {
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        worker.stop()
        await running.value
        // More than twice as long as its lease, yet never lost: heartbeats kept it.
        let got = try await client.call("jobs.get", ["id": .string(job.id)])
        #expect(got["state"] == "completed" && got["attempt"] == 1 && got["result"] == "done", "\(got)")
        #expect(worker.stats.completed == 1 && worker.stats.leased == 1)
        client.close()
    }

    @Test func aWorkerMovesToTheNextReplicaWhenItsReplicaDrains() async throws {
        let a = try TestServer()
        let b = try TestServer(database: a.database)
        let client = b.client()
        let items = (0..<300).map { i -> JSON in ["queue": "swmove", "kind": "step", "payload": ["i": .from(i)]] }
        _ = try await client.call("jobs.enqueueBatch", ["jobs": .array(items)])
        let both = WharfClient(addresses: [
            .init(host: "127.0.0.1", port: a.port), .init(host: "127.0.0.1", port: b.port),
        ])
        let worker = Worker(client: both, queues: ["swmove"], concurrency: 10, leaseMs: 5_000)
        worker.handle("step") { _ in
            try await Task.sleep(nanoseconds: 10_000_000)
            return nil
        }
        let running = Task { await worker.run() }
        for _ in 0..<400 where worker.stats.completed < 60 { try await Task.sleep(nanoseconds: 25_000_000) }
        // Replica a drains with jobs in hand: their outcomes and the next leases go to b.
        a.server.requestStop()
        func left() throws -> String {
            try a.database.sql(
                "select count(*) from wharf.jobs where queue = 'swmove' and (state <> 'completed' or attempt <> 1)")
        }
        var waited = 0
        while try left() != "0", waited < 600 {
            try await Task.sleep(nanoseconds: 50_000_000)
            waited += 1
        }
        worker.stop()
        await running.value
        // Every job ran once: no outcome was left for its lease to run out.
        #expect(try left() == "0")
        let stats = worker.stats
        #expect(stats.moves >= 1 && stats.leased == 300, "\(stats)")
        #expect(both.address.port == b.port)
        client.close()
        both.close()
    }

    @Test func reconnectsAfterTheServerRestarts() async throws {
        let s = try TestServer()
        let client = s.client()
        #expect(try await client.call("server.ping") == "pong")
        let port = s.port
        s.stop()
        do {
            _ = try await client.call("server.ping")
            Issue.record("a call to a stopped server succeeded")
        } catch {}
        let again = try TestServer(database: s.database) { $0.port = port }
        #expect(try await client.call("server.ping") == "pong")
        _ = again
    }
}
