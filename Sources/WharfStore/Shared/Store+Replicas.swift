import WharfCore
import WharfPQ

/// A replica as `wharf.replicas` records it.
public struct ReplicaRow: Sendable, Equatable {
    public var id: String
    public var startedAtMs: Int64
    public var seenAtMs: Int64
    public var version: String
    public var listen: String
    public var httpListen: String?
    public var draining: Bool
    /// Seen within `ReplicaSQL.aliveWindow`.
    public var alive: Bool
    public var hostname: String
}

/// What a replica writes of itself.
public struct ReplicaSelf: Sendable {
    public var id: String
    public var startedAtMs: Int64
    public var hostname: String
    public var version: String
    public var listen: String
    public var httpListen: String?
    public init(id: String, startedAtMs: Int64, hostname: String, version: String, listen: String, httpListen: String?) {
        self.id = id
        self.startedAtMs = startedAtMs
        self.hostname = hostname
        self.version = version
        self.listen = listen
        self.httpListen = httpListen
    }
}

enum ReplicaSQL {
    static let aliveWindow = "interval '15 seconds'"

    /// Writes this replica's row (`$1` id, `$2` start, `$3` host name, `$4` version, `$5`/`$6` addresses,
    /// `$7` draining) and deletes rows not seen for an hour.
    static let seen = """
        with gone as (delete from wharf.replicas where seen_at < now() - interval '1 hour' and id <> $1)
        insert into wharf.replicas as r (id, started_at, seen_at, hostname, version, listen, http_listen, draining)
        values ($1, \(SQLTime.at("$2::bigint")), now(), $3, $4, $5, $6, $7::bool)
        on conflict on constraint replicas_pkey do update set seen_at = now(), draining = excluded.draining,
            listen = excluded.listen, http_listen = excluded.http_listen
        """

    static let gone = "delete from wharf.replicas where id = $1"

    static let list = """
        select id, \(SQLTime.ms("started_at")), \(SQLTime.ms("seen_at")), version, coalesce(listen, ''), http_listen,
               draining, seen_at > now() - \(aliveWindow), hostname
        from wharf.replicas order by id
        """
}

extension Store {
    /// Records that `replica` serves now (and whether it drains).
    public func replicaSeen(
        _ replica: ReplicaSelf, draining: Bool, _ completion: @escaping (Result<Void, StoreError>) -> Void
    ) {
        let params: [String?] = [
            replica.id, String(replica.startedAtMs), replica.hostname, replica.version, replica.listen,
            replica.httpListen, draining ? "true" : "false",
        ]
        rows(ReplicaSQL.seen, params, completion) { _ in () }
    }

    /// Deletes the row of `id` (a replica that stops).
    public func replicaGone(_ id: String, _ completion: @escaping (Result<Void, StoreError>) -> Void) {
        rows(ReplicaSQL.gone, [id], completion) { _ in () }
    }

    /// Every recorded replica, by id.
    public func replicas(_ completion: @escaping (Result<[ReplicaRow], StoreError>) -> Void) {
        rows(ReplicaSQL.list, [], completion) { rows in
            (0..<rows.rowCount).map { i in
                ReplicaRow(
                    id: rows.string(i, 0) ?? "", startedAtMs: rows.int(i, 1) ?? 0, seenAtMs: rows.int(i, 2) ?? 0,
                    version: rows.string(i, 3) ?? "", listen: rows.string(i, 4) ?? "", httpListen: rows.string(i, 5),
                    draining: rows.bool(i, 6) ?? false, alive: rows.bool(i, 7) ?? false, hostname: rows.string(i, 8) ?? "")
            }
        }
    }
}
