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

    /// Items of the `ahead` lane go into the next batch before every item added earlier, in their order.
    @Test func theAheadLaneGoesFirstInItsOwnOrder() {
        let turns = ManualTurns()
        let runner = Runner<Int>()
        let b = Batcher<Int, String>(
            maxInFlight: 1, maxBatch: 3, ahead: { $0 >= 100 }, schedule: turns.schedule, run: runner.run)
        for i in [1, 2, 101, 3, 102, 103, 104] { b.add(i) { _ in } }
        turns.endTurn()
        #expect(runner.batches == [[101, 102, 103]])
        b.add(105) { _ in }
        runner.answers[0](.success(["", "", ""]))
        #expect(runner.batches == [[101, 102, 103], [104, 105, 1]], "the lane stays ahead of older items")
        runner.answers[1](.success(["", "", ""]))
        #expect(runner.batches.last == [2, 3])
    }

    /// An item that `dropping` refuses when its batch is cut is never run; its caller gets the error at
    /// once, and it takes no place in the batch.
    @Test func droppedItemsAreAnsweredAndNeverRun() {
        let turns = ManualTurns()
        let runner = Runner<Int>()
        var gone: Set<Int> = []
        let b = Batcher<Int, String>(
            maxBatch: 2, dropping: { gone.contains($0) ? .unavailable("left") : nil }, schedule: turns.schedule,
            run: runner.run)
        var got: [Int: Result<String, RPCError>] = [:]
        for i in 1...5 { b.add(i) { got[i] = $0 } }
        gone = [1, 2, 4]
        turns.endTurn()
        #expect(runner.batches == [[3, 5]])
        for i in [1, 2, 4] {
            guard case .failure(let e)? = got[i] else { Issue.record("\(i) should be dropped"); continue }
            #expect(e.code == RPCError.Code.unavailable)
        }
        #expect(got[3] == nil && got[5] == nil, "the others wait for their statement")
        runner.answers[0](.success(["c", "e"]))
        #expect((try? got[3]?.get()) == "c" && (try? got[5]?.get()) == "e")
    }

    /// A caller whose item was dropped may add again from its callback: the new item is batched.
    @Test func aDroppedCallerMayAddAgainFromItsCallback() {
        let turns = ManualTurns()
        let runner = Runner<Int>()
        let b = Batcher<Int, String>(
            dropping: { $0 < 0 ? .unavailable("left") : nil }, schedule: turns.schedule, run: runner.run)
        b.add(-1) { _ in b.add(7) { _ in } }
        b.add(2) { _ in }
        turns.endTurn()
        turns.endTurn()
        #expect(runner.batches.flatMap { $0 }.sorted() == [2, 7])
    }

    /// Each batch reaches `run` sorted by `orderedBy`, equal keys in the order added (the ahead lane
    /// first), and every caller still gets the outcome of its own item.
    @Test func batchesAreSortedStablyAndOutcomesFollowTheirItems() {
        let turns = ManualTurns()
        let runner = Runner<(key: String, n: Int)>()
        let b = Batcher<(key: String, n: Int), String>(
            ahead: { $0.n >= 100 }, orderedBy: { $0.key }, schedule: turns.schedule, run: runner.run)
        var got: [Int: String] = [:]
        for (k, n) in [("b", 1), ("a", 2), ("b", 3), ("a", 101), ("c", 4), ("b", 102)] {
            b.add((k, n)) { got[n] = try? $0.get() }
        }
        turns.endTurn()
        let sent = runner.batches[0]
        #expect(sent.map(\.n) == [101, 2, 102, 1, 3, 4])
        runner.answers[0](.success(sent.map { "\($0.key)\($0.n)" }))
        #expect(got == [1: "b1", 2: "a2", 3: "b3", 4: "c4", 101: "a101", 102: "b102"])
    }

    /// A staged batch answers each item when its stage decides it; its slot frees only when it finishes.
    @Test func aStagedBatchAnswersEarlyAndHoldsItsSlotUntilFinished() {
        let turns = ManualTurns()
        var stages: [(items: [Int], answer: (Int, Result<String, RPCError>) -> Void, finished: () -> Void)] = []
        let b = Batcher<Int, String>(maxInFlight: 1, schedule: turns.schedule) { items, answer, finished in
            stages.append((items, answer, finished))
        }
        var got: [Int: String] = [:]
        for i in 1...3 { b.add(i) { got[i] = try? $0.get() } }
        turns.endTurn()
        b.add(4) { got[4] = try? $0.get() }
        turns.endTurn()
        stages[0].answer(1, .success("two"))
        #expect(got == [2: "two"], "answered before the batch ends")
        #expect(stages.count == 1, "the next batch waits for this one's slot")
        stages[0].answer(0, .success("one"))
        stages[0].answer(2, .success("three"))
        stages[0].finished()
        #expect(got == [1: "one", 2: "two", 3: "three"])
        #expect(stages.count == 2 && stages[1].items == [4])
    }

    /// Distinct keys and the ahead lane together: a key taken from the lane holds back the same key
    /// among the others.
    @Test func distinctKeysApplyAcrossLanes() {
        let turns = ManualTurns()
        let runner = Runner<(key: String, n: Int)>()
        let b = Batcher<(key: String, n: Int), String>(
            maxInFlight: 1, distinctBy: { $0.key }, ahead: { $0.n >= 100 }, schedule: turns.schedule,
            run: runner.run)
        for (k, n) in [("a", 1), ("b", 2), ("a", 101)] { b.add((k, n)) { _ in } }
        turns.endTurn()
        #expect(runner.batches.map { $0.map(\.n) } == [[101, 2]])
        runner.answers[0](.success(["", ""]))
        #expect(runner.batches.map { $0.map(\.n) } == [[101, 2], [1]])
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
