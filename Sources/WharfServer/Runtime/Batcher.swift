import WharfRPC

/// Coalesces requests that arrive in the same loop iteration into one set-based statement.
///
/// Items added during an iteration are sent together when the loop's check phase runs. At most
/// `maxInFlight` batches run at once; while they do, new items accumulate, so batches grow with load
/// (group commit) and shrink to one item when the server is idle. Every item gets its own outcome;
/// a reply is sent only after its batch committed. Loop thread only.
final class Batcher<Item, Outcome> {
    typealias Run = ([Item], @escaping (Result<[Outcome], RPCError>) -> Void) -> Void

    private var pending: [(Item, (Result<Outcome, RPCError>) -> Void)] = []
    private var inFlight = 0
    private let maxInFlight: Int
    private let maxBatch: Int
    private let run: Run
    private var scheduled = false
    private let schedule: (@escaping () -> Void) -> Void
    /// When set, a batch holds at most one item per key (an upsert cannot touch one row twice); later
    /// items with a key already in the batch wait for the next one, in order.
    private let key: ((Item) -> String)?

    /// `schedule` arranges for a closure to run in this iteration's check phase.
    init(
        maxInFlight: Int = 4, maxBatch: Int = 1_000, distinctBy key: ((Item) -> String)? = nil,
        schedule: @escaping (@escaping () -> Void) -> Void, run: @escaping Run
    ) {
        self.maxInFlight = maxInFlight
        self.maxBatch = maxBatch
        self.key = key
        self.schedule = schedule
        self.run = run
    }

    func add(_ item: Item, _ done: @escaping (Result<Outcome, RPCError>) -> Void) {
        pending.append((item, done))
        if !scheduled {
            scheduled = true
            schedule { [weak self] in
                self?.scheduled = false
                self?.flush()
            }
        }
    }

    private func flush() {
        while !pending.isEmpty && inFlight < maxInFlight {
            var batch: [(Item, (Result<Outcome, RPCError>) -> Void)]
            if let key {
                var keys = Set<String>()
                var rest: [(Item, (Result<Outcome, RPCError>) -> Void)] = []
                batch = []
                for entry in pending {
                    if batch.count < maxBatch && keys.insert(key(entry.0)).inserted { batch.append(entry) } else { rest.append(entry) }
                }
                pending = rest
            } else {
                let take = min(pending.count, maxBatch)
                batch = Array(pending[0..<take])
                pending.removeFirst(take)
            }
            inFlight += 1
            run(batch.map(\.0)) { [weak self] result in
                switch result {
                case .success(let outcomes):
                    precondition(outcomes.count == batch.count, "batch outcome count mismatch")
                    for (entry, outcome) in zip(batch, outcomes) { entry.1(.success(outcome)) }
                case .failure(let error):
                    for entry in batch { entry.1(.failure(error)) }
                }
                guard let self else { return }
                self.inFlight -= 1
                if !self.pending.isEmpty { self.flush() }
            }
        }
    }
}
