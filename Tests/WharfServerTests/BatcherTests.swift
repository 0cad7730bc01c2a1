import Testing
import WharfRPC

@testable import WharfServer

/// `Batcher` and `IsolatingBatcher`: how calls of one loop turn share statements, without a database.
@Suite struct BatcherTests {
    /// Batches handed to `run`, answered when the test says.
    final class Runner<Item> {
        var batches: [[Item]] = []
        var answers: [(Result<[String], RPCError>) -> Void] = []

        func run(_ items: [Item], _ done: @escaping (Result<[String], RPCError>) -> Void) {
            batches.append(items)
            answers.append(done)
        }
    }

    @Test func callsOfOneTurnShareOneBatchAndEachGetsItsOwnOutcome() {
        let turns = ManualTurns()
        let runner = Runner<Int>()
        let b = Batcher<Int, String>(schedule: turns.schedule, run: runner.run)
        var got: [Int: String] = [:]
        for i in 1...3 { b.add(i) { got[i] = try? $0.get() } }
        #expect(runner.batches.isEmpty, "nothing runs before the turn's check phase")
        turns.endTurn()
        #expect(runner.batches == [[1, 2, 3]])
        runner.answers[0](.success(["a", "b", "c"]))
        #expect(got == [1: "a", 2: "b", 3: "c"])
    }

    @Test func aFailedBatchFailsEveryCallInIt() {
        let turns = ManualTurns()
        let runner = Runner<Int>()
        let b = Batcher<Int, String>(schedule: turns.schedule, run: runner.run)
        var errors = 0
        for i in 1...2 { b.add(i) { if case .failure = $0 { errors += 1 } } }
        turns.endTurn()
        runner.answers[0](.failure(.internalError))
        #expect(errors == 2)
    }

    /// While `maxInFlight` batches run, new calls accumulate into the next batch (group commit).
    @Test func callsWaitingForARunningBatchGoTogetherInTheNext() {
        let turns = ManualTurns()
        let runner = Runner<Int>()
        let b = Batcher<Int, String>(maxInFlight: 1, schedule: turns.schedule, run: runner.run)
        b.add(1) { _ in }
        turns.endTurn()
        for i in 2...4 { b.add(i) { _ in } }
        turns.endTurn()
        #expect(runner.batches == [[1]], "the second batch waits for the first")
        runner.answers[0](.success(["x"]))
        #expect(runner.batches == [[1], [2, 3, 4]])
    }

    @Test func batchesAreCutAtMaxBatch() {
        let turns = ManualTurns()
        let runner = Runner<Int>()
        let b = Batcher<Int, String>(maxInFlight: 4, maxBatch: 2, schedule: turns.schedule, run: runner.run)
        for i in 1...5 { b.add(i) { _ in } }
        turns.endTurn()
        #expect(runner.batches == [[1, 2], [3, 4], [5]])
    }

    /// An upsert cannot touch one row twice: a second call for a key waits for the next batch, in order.
    @Test func distinctKeysKeepRepeatsForTheNextBatchInOrder() {
        let turns = ManualTurns()
        let runner = Runner<(key: String, n: Int)>()
        let b = Batcher<(key: String, n: Int), String>(
            maxInFlight: 1, distinctBy: { $0.key }, schedule: turns.schedule, run: runner.run)
        for (k, n) in [("a", 1), ("b", 2), ("a", 3), ("a", 4)] { b.add((k, n)) { _ in } }
        turns.endTurn()
        #expect(runner.batches.map { $0.map(\.n) } == [[1, 2]])
        runner.answers[0](.success(["", ""]))
        #expect(runner.batches.map { $0.map(\.n) } == [[1, 2], [3]])
        runner.answers[1](.success([""]))
        #expect(runner.batches.map { $0.map(\.n) } == [[1, 2], [3], [4]])
    }

    /// A batch refused for one bad value is run again call by call: only the bad call fails.
    @Test func isolatingRunsARefusedBatchCallByCall() {
        let turns = ManualTurns()
        var statements: [[Int]] = []
        let b = IsolatingBatcher<Int, String>(schedule: turns.schedule) { items, done in
            statements.append(items)
            if items.contains(13) { return done(.failure(.invalidParams(field: "n", "unlucky"))) }
            done(.success(items.map { "ok\($0)" }))
        }
        var got: [Int: Result<String, RPCError>] = [:]
        for i in [12, 13, 14] { b.add(i) { got[i] = $0 } }
        turns.endTurn()
        #expect(statements == [[12, 13, 14], [12], [13], [14]])
        #expect((try? got[12]?.get()) == "ok12" && (try? got[14]?.get()) == "ok14")
        guard case .failure(let e)? = got[13] else { Issue.record("13 should fail"); return }
        #expect(e.code == RPCError.Code.invalidParams)
    }

    /// An unreachable database fails the whole batch at once: running it call by call would not help.
    @Test func isolatingDoesNotRetryWhenTheDatabaseIsUnavailable() {
        let turns = ManualTurns()
        var statements = 0
        let b = IsolatingBatcher<Int, String>(schedule: turns.schedule) { _, done in
            statements += 1
            done(.failure(.unavailable("down")))
        }
        var failures = 0
        for i in 1...3 { b.add(i) { if case .failure = $0 { failures += 1 } } }
        turns.endTurn()
        #expect(statements == 1 && failures == 3)
    }
}
