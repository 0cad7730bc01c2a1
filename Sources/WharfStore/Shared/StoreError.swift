/// Why a statement produced no rows, in the store's terms. Refusals that belong to a feature (a lease
/// that was lost, a lock held by another) are not errors: they are cases of that feature's outcome types.
public enum StoreError: Error, Equatable, Sendable {
    /// The database could not be reached; nothing was sent, so the call may be retried.
    case unavailable
    /// The connection was lost after the statement was sent: it may have committed.
    case outcomeUnknown
    /// The database refuses writes (a standby, or `default_transaction_read_only`).
    case readOnly
    /// A serialization failure, a deadlock or an administrator's shutdown: retry.
    case busy
    /// A row the store expected is missing or malformed, or the database failed unexpectedly (logged).
    case internalError
}
