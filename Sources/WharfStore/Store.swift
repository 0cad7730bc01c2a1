import Logging
import WharfPQ
import WharfRPC

/// Every SQL statement Wharf runs, grouped by table in `Store+*.swift` files.
///
/// The store turns database failures into protocol errors: an unreachable database becomes a
/// retryable `unavailable`; anything else unexpected becomes an internal error (logged, not leaked).
/// Lives on the loop thread.
public final class Store {
    public let pool: PQPool
    let logger: Logger

    public init(pool: PQPool, logger: Logger) {
        self.pool = pool
        self.logger = logger
    }

    /// Maps a database failure to the error a client sees.
    public func rpcError(_ e: PQError) -> RPCError {
        switch e.kind {
        case .unavailable:
            return .unavailable("database unavailable")
        case .aborted, .server:
            if e.sqlState == "40001" || e.sqlState == "40P01" || e.sqlState?.hasPrefix("08") == true
                || e.sqlState == "57P01"
            {
                return .unavailable("database busy, retry", reason: "store_busy")
            }
            logger.error("database error", metadata: ["error": "\(e)"])
            return .internalError
        }
    }

    /// Runs one statement and hands its rows to `body`, mapping failures to `RPCError`.
    func one<T>(
        _ sql: String, _ params: [String?], _ completion: @escaping (Result<T, RPCError>) -> Void,
        _ body: @escaping (PQResult) throws(RPCError) -> T
    ) {
        pool.query(sql, params) { [self] r in
            switch r {
            case .success(let rows):
                do throws(RPCError) { completion(.success(try body(rows))) } catch { completion(.failure(error)) }
            case .failure(let e):
                completion(.failure(rpcError(e)))
            }
        }
    }
}

/// A statement the store runs, listed so a test can PREPARE every one against a migrated database.
public struct StoreQuery: Sendable {
    public let name: String
    public let sql: String
}
