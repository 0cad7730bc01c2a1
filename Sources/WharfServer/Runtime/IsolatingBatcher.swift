import WharfRPC

/// A `Batcher` whose batches cannot fail for one another: when a batch's statement fails for any
/// reason but the database being unavailable, each of its items is run again on its own, so a bad
/// value fails only its own call and the rest of the batch goes through. That includes a deadlock or
/// serialization failure (`store_busy`): a batch locks more rows than any one of its items (two merged
/// completions that finish jobs of the same two batches in opposite orders deadlock; one completion
/// alone locks one batch row), so its items alone usually go through.
///
/// Same interface and thread rule as `Batcher` (loop thread only).
final class IsolatingBatcher<Item, Outcome> {
    typealias Run = ([Item], @escaping (Result<[Outcome], RPCError>) -> Void) -> Void

    private var inner: Batcher<Item, Result<Outcome, RPCError>>!

    init(schedule: @escaping (@escaping () -> Void) -> Void, run: @escaping Run) {
        inner = Batcher(schedule: schedule) { items, done in Self.isolating(items, run, done) }
    }

    func add(_ item: Item, _ done: @escaping (Result<Outcome, RPCError>) -> Void) {
        inner.add(item) { r in done(r.flatMap { $0 }) }
    }

    /// Runs `items` as one batch; on a failure that is not the database's unavailability, runs each
    /// item alone and reports each one's own result.
    static func isolating(
        _ items: [Item], _ run: @escaping Run, _ done: @escaping (Result<[Result<Outcome, RPCError>], RPCError>) -> Void
    ) {
        run(items) { r in
            switch r {
            case .success(let outcomes):
                done(.success(outcomes.map { .success($0) }))
            case .failure(let e)
            where items.count == 1 || (e.code == RPCError.Code.unavailable && e.reason != "store_busy"):
                done(.failure(e))
            case .failure:
                var results = [Result<Outcome, RPCError>?](repeating: nil, count: items.count)
                var left = items.count
                for (i, item) in items.enumerated() {
                    run([item]) { r in
                        results[i] = r.flatMap { outcomes in
                            outcomes.count == 1 ? .success(outcomes[0]) : .failure(RPCError.internalError)
                        }
                        left -= 1
                        if left == 0 { done(.success(results.map { $0! })) }
                    }
                }
            }
        }
    }
}
