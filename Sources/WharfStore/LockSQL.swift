/// The statements on `wharf.locks` and `wharf.lock_waiters`.
///
/// Acquire and release are each one compare-and-set statement over arrays, so that the concurrent
/// requests of one loop iteration share one statement and one commit; each request's outcome is read
/// from its own result row. Times come back as epoch microseconds of PostgreSQL's clock, which alone
/// decides expiry.
enum LockSQL {
    /// Epoch microseconds of a timestamptz expression (exact: timestamptz has microsecond resolution).
    static func us(_ expression: String) -> String { "(extract(epoch from \(expression)) * 1000000)::bigint" }

    /// When an expired lease becomes grantable: its expiry plus its lock-delay.
    static func freeAt(_ l: String) -> String { "\(l).expires_at + \(l).lock_delay_ms * interval '1 millisecond'" }

    /// Whether a live waiter is queued for lock row `l`: `waiters_until` first (every waiter's deadline
    /// raised it, so a past value means nobody), then the line itself.
    static func someoneInLine(_ l: String) -> String {
        """
        coalesce(\(l).waiters_until > now() and exists (
            select 1 from wharf.lock_waiters w
            where w.name = \(l).name and w.deadline > now() and w.alive_until > now()), false)
        """
    }

    /// How long a queued waiter's row counts without its replica refreshing it (every second).
    static let waiterLeaseSeconds = 4

    /// When the live waiters queued ahead of request `i` stop counting (null when none is ahead): any
    /// waiter, for a new request; an older one, for a queued waiter's retry (`i.wait_seq`). A scalar
    /// subquery, so that it is always an index probe per request, whatever the planner thinks of the
    /// table's size.
    static let aheadUntil = """
        (select min(least(w.deadline, w.alive_until)) from wharf.lock_waiters w
         where w.name = i.name and (i.wait_seq is null or w.seq < i.wait_seq)
           and w.deadline > now() and w.alive_until > now())
        """

    /// Whether lock row `l` is free: never held, released, or expired past its lock-delay.
    static func isFree(_ l: String) -> String { "(\(l).holder is null or \(freeAt(l)) <= now())" }

    /// The one grant of the lock family, for clients (`locks.acquire`), leases of jobs with a lockKey and
    /// fires of overlap "skip" schedules alike. `rows` selects, per lock to take (names distinct), the
    /// columns `name, holder, token, expires_at, request_id, session_id, lock_delay_ms`; a name is taken
    /// when its row satisfies `condition` (on the row aliased `l`; at least `isFree`), or has no row
    /// yet. The grant takes the next fencing token on the name's row under that row's lock, so two
    /// grants can never share or reorder tokens; `acquired_at` is read from `clock_timestamp()` once the
    /// lock is held, so a grant's recorded start is never before the end of the lease it follows.
    /// Taking over an expired lease counts an expiry without release. Returns a row per grant.
    static func grant(_ rows: String, when condition: String) -> String {
        """
        insert into wharf.locks as l (name, holder, token, expires_at, request_id, session_id, lock_delay_ms,
                                      fencing_token, acquired_at, grants)
        select g.*, 1, clock_timestamp(), 1
        from (\(rows)) g(name, holder, token, expires_at, request_id, session_id, lock_delay_ms)
        order by g.name
        on conflict on constraint locks_pkey do update set
            holder = excluded.holder, token = excluded.token, fencing_token = l.fencing_token + 1,
            acquired_at = clock_timestamp(), expires_at = excluded.expires_at, request_id = excluded.request_id,
            session_id = excluded.session_id, lock_delay_ms = excluded.lock_delay_ms, grants = l.grants + 1,
            expiries = l.expiries + case when l.holder is not null then 1 else 0 end
        where \(condition)
        returning l.name, l.token, l.fencing_token, l.acquired_at, l.expires_at,
                  \(us("l.acquired_at")) as acquired_us, \(us("l.expires_at")) as expires_us
        """
    }

    /// `grant` for `locks.acquire` requests: the rows of `source` (aliased `a`, with `ttl_ms`).
    static func grantRequests(from source: String, when condition: String) -> String {
        grant(
            """
            select a.name, a.holder, gen_random_uuid()::text, now() + a.ttl_ms * interval '1 millisecond',
                   a.request_id, a.session_id, a.lock_delay_ms
            from \(source)
            """, when: condition)
    }

    /// Array parameter `n` behind a scalar subquery. The planner then estimates every batch alike, and
    /// PostgreSQL keeps one generic plan per statement; with the arrays in view it would find a plan for
    /// one or two rows cheaper and re-plan these large statements on every execution.
    static func array(_ n: Int, _ type: String) -> String { "(select $\(n)::\(type)[])" }

    static let input = """
        select * from unnest(\(array(1, "text")), \(array(2, "text")), \(array(3, "bigint")), \(array(4, "text")),
                             \(array(5, "text")), \(array(6, "bigint")), \(array(7, "bigint")), \(array(8, "bigint")))
            with ordinality as t(name, holder, ttl_ms, request_id, session_id, lock_delay_ms, wait_ms, wait_seq, ord)
        """

    /// One row per request, in request order: ord, token, fencing token, acquired and expiry times (when
    /// granted); holder, time the lock becomes free, place in the line, time the waiters ahead stop
    /// counting (when not); the database's clock. Times are epoch microseconds.
    static func outcome(granted g: String, holder: String, freeAt free: String, seq: String, ahead: String) -> String {
        """
        select i.ord, \(g).token, \(g).fencing_token, \(us(g + ".acquired_at")), \(us(g + ".expires_at")),
               \(holder), \(us(free)), \(seq), \(us(ahead)), \(us("now()"))
        """
    }

    /// Grants each requested lock that is free and has nobody in line, in one plain upsert: the common
    /// case, kept to the fewest steps. A name is taken only when its lease is free (never held,
    /// released, or expired past its lock-delay) and `waiters_until` has passed: that column is raised
    /// to every queued waiter's deadline under the row's lock, so no live waiter can be queued behind a
    /// past value. A brand-new name has no row, hence no waiters. Returns a row per grant only; the
    /// requests it leaves out go through `acquire`, which decides them exactly (a retried request, the
    /// line, contention counts). Names are distinct within one call.
    static let acquireFree = """
        \(grantRequests(from: """
            unnest(\(array(1, "text")), \(array(2, "text")), \(array(3, "bigint")), \(array(4, "text")),
                   \(array(5, "text")), \(array(6, "bigint")))
                as a(name, holder, ttl_ms, request_id, session_id, lock_delay_ms)
            """, when: "\(isFree("l")) and (l.waiters_until is null or l.waiters_until <= now())"))
        """

    /// Decides each requested lock exactly; names are distinct within one call. Runs for what
    /// `acquireFree` did not grant, and for queued waiters' retries:
    ///
    /// - a retried request (`request_id` and holder equal to the live grant's) gets that grant back
    ///   unchanged, read from the statement's snapshot;
    /// - a queued waiter's retry (`wait_seq`) is granted only if no older live waiter is queued, and
    ///   leaves the durable line in the same statement;
    /// - a new request that is not granted counts as contention and, with `wait_ms > 0`, joins the line
    ///   in the same statement. It also raises the row's `waiters_until`, which takes the row lock, so an
    ///   enqueue and a release of the same lock serialize: either the release sees `waiters_until` and
    ///   wakes the line, or the enqueue sees the lock free (and the caller retries at once).
    static let acquire = """
        with input as (\(input)),
        snap as (
            select i.ord, l.holder, l.token, l.fencing_token, l.acquired_at, l.expires_at, l.lock_delay_ms,
                   coalesce(l.request_id = i.request_id and l.holder = i.holder and l.expires_at > now(), false)
                       as same
            from input i join wharf.locks l on l.name = i.name
        ),
        attempt as (
            select i.*, \(aheadUntil) as ahead_until
            from input i
            where not exists (select 1 from snap s where s.ord = i.ord and s.same)
        ),
        granted as (\(grantRequests(from: "attempt a where a.ahead_until is null", when: isFree("l")))),
        dequeued as (
            delete from wharf.lock_waiters w using input i
            where w.seq = i.wait_seq and i.name in (select name from granted)
            returning w.seq
        ),
        denied as (
            select a.* from attempt a where a.wait_seq is null and a.name not in (select name from granted)
        ),
        queued as (
            insert into wharf.lock_waiters (name, holder, replica_id, session_id, deadline, alive_until)
            select d.name, d.holder, $9, d.session_id, now() + d.wait_ms * interval '1 millisecond',
                   now() + interval '\(waiterLeaseSeconds) seconds'
            from denied d
            where d.wait_ms > 0
            returning seq, name
        ),
        contended as (
            update wharf.locks l
            set waits = l.waits + 1,
                waiters_until = case when d.wait_ms > 0
                    then greatest(l.waiters_until, now() + d.wait_ms * interval '1 millisecond')
                    else l.waiters_until end
            from denied d
            where l.name = d.name
            returning l.name, l.holder, l.expires_at, l.lock_delay_ms
        ),
        answer as (
            select i.ord, coalesce(g.name, case when s.same then i.name end) as name,
                   coalesce(g.token, case when s.same then s.token end) as token,
                   coalesce(g.fencing_token, case when s.same then s.fencing_token end) as fencing_token,
                   coalesce(g.acquired_at, case when s.same then s.acquired_at end) as acquired_at,
                   coalesce(g.expires_at, case when s.same then s.expires_at end) as expires_at
            from input i
            left join granted g on g.name = i.name
            left join snap s on s.ord = i.ord
        )
        \(outcome(granted: "x", holder: "coalesce(c.holder, s.holder)",
                  freeAt: "coalesce(" + freeAt("c") + ", " + freeAt("s") + ")", seq: "q.seq", ahead: "a.ahead_until"))
        from input i
        join answer x on x.ord = i.ord
        left join snap s on s.ord = i.ord
        left join attempt a on a.ord = i.ord
        left join contended c on c.name = i.name
        left join queued q on q.name = i.name
        order by i.ord
        """

    /// Compare-and-set on the token; refuses an expired lease.
    static let renew = """
        update wharf.locks
        set expires_at = now() + $3::bigint * interval '1 millisecond'
        where name = $1 and token = $2 and expires_at > now()
        returning \(us("expires_at")), fencing_token
        """

    /// Compare-and-delete of the lease on the token (the row stays: it carries the fencing counter).
    /// Also accepts a holder whose lease expired but was not taken over. Returns a row per lease
    /// released. Wakes waiters on every replica (`NOTIFY wharf_wake, 'lock:<name>'`) only when some
    /// waiter queued for the name recently.
    ///
    /// The commit does not wait for the WAL flush: a release lost in a crash leaves the lease to run
    /// out (as if the holder had died), and any later grant of the name flushes the WAL up to its own
    /// commit, this release included.
    static let release = """
        update wharf.locks l
        set holder = null, token = null, acquired_at = null, expires_at = null, request_id = null,
            session_id = null, releases = l.releases + 1
        from unnest(\(array(1, "text")), \(array(2, "text"))) as i(name, token),
            (select set_config('synchronous_commit', 'off', true)) sc
        where l.name = i.name and l.token = i.token
        returning l.name, i.token, l.fencing_token, \(us("clock_timestamp()")),
                  case when l.waiters_until > now() then pg_notify('wharf_wake', 'lock:' || l.name) end
        """

    /// Removes waiters that gave up or disconnected, and wakes the line of a free lock that has other
    /// waiters (one of those removed may have been first). Returns the lock's holder and free time per
    /// waiter, for the reply of one that gave up.
    static let removeWaiters = """
        with input as (
            select * from unnest(\(array(1, "bigint"))) with ordinality as t(seq, ord)
        ),
        gone as (
            delete from wharf.lock_waiters w using input i where w.seq = i.seq returning w.seq, w.name
        ),
        woke as (
            select count(pg_notify('wharf_wake', 'lock:' || n.name)) as n
            from (select distinct name from gone) n
            join wharf.locks l on l.name = n.name
            where \(isFree("l"))
              and exists (select 1 from wharf.lock_waiters w
                          where w.name = n.name and w.seq not in (select seq from input)
                            and w.deadline > now() and w.alive_until > now())
        )
        select i.ord, l.holder, \(us(freeAt("l")))
        from input i
        left join gone g on g.seq = i.seq
        left join wharf.locks l on l.name = g.name and l.holder is not null and \(freeAt("l")) > now()
        cross join woke
        order by i.ord
        """

    /// Keeps a replica's queued waiters counting.
    static let refreshWaiters = """
        update wharf.lock_waiters set alive_until = now() + interval '\(waiterLeaseSeconds) seconds'
        where replica_id = $1
        """

    /// Deletes waiters of replicas that stopped refreshing them, or long past their deadline, and wakes
    /// their lines.
    static let sweepWaiters = """
        with dead as (
            delete from wharf.lock_waiters
            where alive_until <= now() or deadline <= now() - interval '5 seconds'
            returning name
        )
        select count(pg_notify('wharf_wake', 'lock:' || d.name)) from (select distinct name from dead) d
        """

    static let columns = """
        l.name, l.holder is not null and l.expires_at > now(), l.holder, \(us("l.expires_at")),
        \(us("l.acquired_at")), l.fencing_token, l.grants, l.waits,
        l.expiries + case when l.holder is not null and l.expires_at <= now() then 1 else 0 end, l.releases,
        case when l.holder is not null and l.expires_at <= now() and \(freeAt("l")) > now()
            then \(us(freeAt("l"))) end,
        (select count(*) from wharf.lock_waiters w
         where w.name = l.name and w.deadline > now() and w.alive_until > now())
        """

    static let get = "select \(columns) from wharf.locks l where l.name = $1"

    static let list = """
        select \(columns) from wharf.locks l
        where ($1::text is null or starts_with(l.name, $1)) and ($2::text is null or l.name > $2)
        order by l.name
        limit $3
        """
}
