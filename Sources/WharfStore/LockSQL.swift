/// The locks table's statements. Acquire, renew and release are each one compare-and-set statement,
/// batched over arrays so that concurrent requests share a commit.
enum LockSQL {
    static func ts(_ column: String) -> String { JobSQL.ts(column) }

    /// A grant is possible when the lock is free (and past any lock-delay), or when the same holder
    /// retries the same `requestId` while its grant is still live (then the grant is returned as is).
    static let acquire = """
        with input as (
            select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[])
                with ordinality as t(name, holder, ttl_ms, request_id, session_id, lock_delay_ms, ord)
        ),
        granted as (
            insert into wharf.locks as l (name, holder, token, fencing_token, acquired_at, expires_at, request_id,
                                          session_id, lock_delay_ms, grants)
            select i.name, i.holder, md5(random()::text || clock_timestamp()::text), 1, now(),
                   now() + i.ttl_ms * interval '1 millisecond', i.request_id, i.session_id, i.lock_delay_ms, 1
            from input i
            on conflict on constraint locks_pkey do update set
                holder = excluded.holder,
                token = case when l.request_id = excluded.request_id and l.holder = excluded.holder
                              and l.expires_at > now() then l.token else excluded.token end,
                fencing_token = case when l.request_id = excluded.request_id and l.holder = excluded.holder
                                      and l.expires_at > now() then l.fencing_token else l.fencing_token + 1 end,
                acquired_at = case when l.request_id = excluded.request_id and l.holder = excluded.holder
                                    and l.expires_at > now() then l.acquired_at else now() end,
                expires_at = case when l.request_id = excluded.request_id and l.holder = excluded.holder
                                   and l.expires_at > now() then l.expires_at else excluded.expires_at end,
                request_id = excluded.request_id, session_id = excluded.session_id,
                lock_delay_ms = excluded.lock_delay_ms,
                grants = l.grants + case when l.request_id = excluded.request_id and l.holder = excluded.holder
                                          and l.expires_at > now() then 0 else 1 end,
                expiries = l.expiries + case when l.holder is not null and l.expires_at <= now() then 1 else 0 end
            where l.holder is null
               or (l.expires_at + l.lock_delay_ms * interval '1 millisecond' <= now())
               or (l.request_id = excluded.request_id and l.holder = excluded.holder and l.expires_at > now())
            returning l.name, l.token, l.fencing_token, \(ts("l.expires_at")) as expires_at, l.holder
        )
        select i.ord, g.token, g.fencing_token, g.expires_at, coalesce(g.holder, l.holder),
               \(ts("l.expires_at + l.lock_delay_ms * interval '1 millisecond'")),
               (extract(epoch from (l.expires_at + l.lock_delay_ms * interval '1 millisecond' - now())) * 1000)::bigint
        from input i
        left join granted g on g.name = i.name and g.holder = i.holder
        left join wharf.locks l on l.name = i.name
        order by i.ord
        """

    static let renew = """
        update wharf.locks
        set expires_at = now() + $3::bigint * interval '1 millisecond'
        where name = $1 and token = $2 and expires_at > now()
        returning \(ts("expires_at")), fencing_token
        """

    /// Releases by token; also accepts a holder whose lock expired but was not taken over.
    static let release = """
        with input as (
            select * from unnest($1::text[], $2::text[]) with ordinality as t(name, token, ord)
        ),
        freed as (
            update wharf.locks l
            set holder = null, token = null, expires_at = null, request_id = null, session_id = null,
                releases = l.releases + 1
            from input i
            where l.name = i.name and l.token = i.token
            returning l.name
        ),
        woke as (
            select count(pg_notify('wharf_wake', 'lock:' || f.name)) as n from freed f
        ),
        -- A release lost in a database crash leaves the lock to expire at its TTL: never two
        -- holders, so its commit does not wait for the WAL flush.
        async as (select set_config('synchronous_commit', 'off', true) as v)
        select i.ord, f.name is not null from input i left join freed f on f.name = i.name cross join woke cross join async
        order by i.ord
        """

    static let countWait = "update wharf.locks set waits = waits + 1 where name = $1"

    static let columns = """
        name, holder is not null and expires_at > now(), holder, \(ts("expires_at")), fencing_token,
        grants, waits, expiries, releases, \(ts("acquired_at"))
        """

    static let get = "select \(columns) from wharf.locks where name = $1"

    static let list = """
        select \(columns) from wharf.locks
        where ($1::text is null or starts_with(name, $1)) and ($2::text is null or name > $2)
        order by name
        limit $3
        """
}
