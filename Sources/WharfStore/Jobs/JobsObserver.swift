/// What the jobs statements changed, reported by the store as each statement's result arrives (on the
/// loop thread): the server counts it for `GET /metrics`. The instants come back in the statements' own
/// rows (a lease row's `run_at` and `leased_at`; a complete or fail returns how long the job ran), so
/// observing adds no statement.
///
/// Jobs an application inserts with `wharf.enqueue` in its own transaction pass no statement of the
/// server's and are not reported here.
public protocol JobsObserver: AnyObject {
    /// One queue name per job an enqueue or cron fire statement made (duplicates and replays excluded).
    func jobsEnqueued(queues: [String])
    /// Jobs one lease statement handed out; `pickupMs`: from the moment the job was due to its lease.
    func jobsLeased(_ jobs: [(queue: String, pickupMs: Int64)])
    /// Jobs a complete or fail statement finished: their state now (`completed`, `retryable`, `dead`)
    /// and how long their lease ran, leased to finished.
    func jobsFinished(_ jobs: [(queue: String, state: String, runMs: Int64)])
    /// Running jobs whose lease was lost (`reason`: `lease_expired` or `worker_lost`), in their state
    /// now (`available`, or `dead` when no attempt was left).
    func jobsReleased(_ jobs: [ReleasedJob], reason: String)
}
