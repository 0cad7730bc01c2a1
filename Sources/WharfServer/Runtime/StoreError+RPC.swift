import WharfRPC
import WharfStore

extension StoreError {
    /// The error a client sees for a store failure (the one place these meet the protocol).
    public var rpcError: RPCError {
        switch self {
        case .unavailable:
            return .unavailable("database unavailable")
        case .outcomeUnknown:
            // Not retryable by default: repeating a write that did commit would do it twice. The
            // dispatcher marks it retryable for calls that are safe to repeat.
            return .outcomeUnknown(
                "database connection lost before the outcome was known; the call may have taken effect")
        case .readOnly:
            return .storeReadOnly("database is read-only (a standby, or default_transaction_read_only is on)")
        case .busy:
            return .unavailable("database busy, retry", reason: "store_busy")
        case .internalError:
            return .internalError
        }
    }
}
