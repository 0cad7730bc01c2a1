import WharfRPC

/// Coalesces requests that arrive in the same loop iteration into one set-based statement.
///
/// Items added during an iteration are sent together when the loop's check phase runs. At most
/// `maxInFlight` batches run at once; while they do, new items accumulate, so batches grow with load
/// (group commit) and shrink to one item when the server is idle. Every item gets its own outcome;
/// a reply is sent only after its batch committed. Loop thread only.
///
/// Options, each for what some statement needs:
/// - `distinctBy`: a batch holds at most one item per key (an upsert cannot touch one row twice); later
///   items with a key already in the batch wait for the next one, in order.
/// - `ahead`: items for which it holds go into batches before every other item, in their own order (a
///   priority lane: queued lock waiters' retries ahead of new requests).
/// - `orderedBy`: each batch reaches `run` sorted by this key, items with equal keys in the order they
///   were added (so that concurrent statements lock rows in one order, and a name's requests keep their
///   order within a statement).
/// - `dropping`: an item for which it returns an error when its batch is cut is not run; its caller gets
///   that error at once (a request whose caller left is not worth a statement).
/// - `runInStages` instead of `run`: a batch whose statements decide some items before others answers
///   each one as soon as it is decided.
final class Batcher<Item, Outcome> {
    typealias Done = (Result<Outcome, RPCError>) -> Void
    /// Runs one batch and reports every item's outcome, in the batch's order, at once.
    typealias Run = ([Item], @escaping (Result<[Outcome], RPCError>) -> Void) -> Void
    /// Runs one batch in stages: `answer(i, outcome)` answers the batch's item `i` as soon as a stage has
    /// decided it (each item exactly once); `finished()` ends the batch, every item answered, and frees
    /// its slot for the next batch.
    typealias StagedRun = (
        [Item], _ answer: @escaping (Int, Result<Outcome, RPCError>) -> Void, _ finished: @escaping () -> Void
    ) -> Void

    private struct Entry {
        let item: Item
        let done: Done
    }

    /// Items waiting for a batch: the `ahead` lane, then the rest.
    private var lanes: [[Entry]] = [[], []]
    private var inFlight = 0
    private let maxInFlight: Int
    private let maxBatch: Int
    private let run: StagedRun
    private var scheduled = false
    private let schedule: (@escaping () -> Void) -> Void
    private let key: ((Item) -> String)?
    private let ahead: ((Item) -> Bool)?
    private let order: ((Item) -> String)?
    private let drop: ((Item) -> RPCError?)?

    /// `schedule` arranges for a closure to run in this iteration's check phase.
    convenience init(
        maxInFlight: Int = 4, maxBatch: Int = 1_000, distinctBy key: ((Item) -> String)? = nil,
        ahead: ((Item) -> Bool)? = nil, orderedBy order: ((Item) -> String)? = nil,
        dropping drop: ((Item) -> RPCError?)? = nil,
        schedule: @escaping (@escaping () -> Void) -> Void, run: @escaping Run
    ) {
        self.init(
            maxInFlight: maxInFlight, maxBatch: maxBatch, distinctBy: key, ahead: ahead, orderedBy: order,
            dropping: drop, schedule: schedule,
            runInStages: { items, answer, finished in
                run(items) { result in
                    switch result {
                    case .success(let outcomes):
                        precondition(outcomes.count == items.count, "batch outcome count mismatch")
                        for (i, outcome) in outcomes.enumerated() { answer(i, .success(outcome)) }
                    case .failure(let error):
                        for i in items.indices { answer(i, .failure(error)) }
                    }
                    finished()
                }
            })
    }

    init(
        maxInFlight: Int = 4, maxBatch: Int = 1_000, distinctBy key: ((Item) -> String)? = nil,
        ahead: ((Item) -> Bool)? = nil, orderedBy order: ((Item) -> String)? = nil,
        dropping drop: ((Item) -> RPCError?)? = nil,
        schedule: @escaping (@escaping () -> Void) -> Void, runInStages run: @escaping StagedRun
    ) {
        self.maxInFlight = maxInFlight
        self.maxBatch = maxBatch
        self.key = key
        self.ahead = ahead
        self.order = order
        self.drop = drop
        self.schedule = schedule
        self.run = run
    }

    func add(_ item: Item, _ done: @escaping Done) {
        lanes[ahead?(item) == true ? 0 : 1].append(Entry(item: item, done: done))
        if !scheduled {
            scheduled = true
            // Strong captures here and below: a weak one gives the batcher a side table, which puts
            // every retain and release of it on the slow path.
            schedule { [self] in
                scheduled = false
                flush()
            }
        }
    }

    private var isIdle: Bool { lanes[0].isEmpty && lanes[1].isEmpty }

    private func flush() {
        while !isIdle && inFlight < maxInFlight {
            let (cut, dropped) = cutBatch()
            // Answered once the lanes are consistent: a caller may add again from its callback.
            for (entry, error) in dropped { entry.done(.failure(error)) }
            guard !cut.isEmpty else { continue }
            let batch: [Entry]
            if let order {
                let keys = cut.map { order($0.item) }
                batch = cut.indices.sorted { (keys[$0], $0) < (keys[$1], $1) }.map { cut[$0] }
            } else {
                batch = cut
            }
            inFlight += 1
            var answered = [Bool](repeating: false, count: batch.count)
            run(
                batch.map(\.item),
                { i, outcome in
                    precondition(!answered[i], "batch item answered twice")
                    answered[i] = true
                    batch[i].done(outcome)
                },
                { [self] in
                    precondition(!answered.contains(false), "batch finished with items unanswered")
                    inFlight -= 1
                    if !isIdle { flush() }
                })
        }
    }

    /// Takes the next batch out of the lanes (the `ahead` lane first), with the items dropped on the way.
    private func cutBatch() -> (batch: [Entry], dropped: [(Entry, RPCError)]) {
        var batch: [Entry] = []
        var dropped: [(Entry, RPCError)] = []
        var keys = Set<String>()
        for lane in lanes.indices {
            if let key {
                var rest: [Entry] = []
                for entry in lanes[lane] {
                    if let error = drop?(entry.item) {
                        dropped.append((entry, error))
                    } else if batch.count < maxBatch && keys.insert(key(entry.item)).inserted {
                        batch.append(entry)
                    } else {
                        rest.append(entry)
                    }
                }
                lanes[lane] = rest
            } else {
                var taken = 0
                while taken < lanes[lane].count && batch.count < maxBatch {
                    let entry = lanes[lane][taken]
                    taken += 1
                    if let error = drop?(entry.item) { dropped.append((entry, error)) } else { batch.append(entry) }
                }
                lanes[lane].removeFirst(taken)
            }
        }
        return (batch, dropped)
    }
}
