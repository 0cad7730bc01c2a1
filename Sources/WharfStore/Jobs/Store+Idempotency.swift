import WharfPQ

/// Idempotency keys of enqueues (`wharf.job_idempotency_keys`, migration v0010):
///
/// ```sql
/// create table wharf.job_idempotency_keys (
///     key text not null,          -- the caller's idempotencyKey (1-400 bytes)
///     job_id bigint not null,     -- the job the first call with this key made or found
///     created boolean not null,   -- whether that call made it (false: its uniqueKey found it)
///     created_at timestamptz not null default now(),
///     constraint job_idempotency_keys_pkey primary key (key));
/// ```
///
/// Keys are written by `wharf.enqueue_batch` (migration v0015) in the same statement as their job; this file holds what
/// else touches the table.
enum IdempotencySQL {
    /// Deletes keys older than `$1` ms, at most 10,000 per run (the chore runs every minute).
    static let prune = """
        delete from wharf.job_idempotency_keys where key in (
            select key from wharf.job_idempotency_keys
            where created_at < now() - $1::bigint * interval '1 millisecond'
            limit 10000)
        """
}

extension Store {
    /// Deletes idempotency keys older than `olderThanMs`; returns how many.
    public func pruneIdempotencyKeys(olderThanMs: Int64, _ completion: @escaping (Result<Int, StoreError>) -> Void) {
        rows(IdempotencySQL.prune, [String(olderThanMs)], completion) { $0.affectedRows }
    }
}
