/// The statements on `wharf.locks` and `wharf.lock_waiters`.
///
/// Acquire and release are each one compare-and-set statement over arrays, so that the concurrent
/// requests of one loop iteration share one statement and one commit; each request's outcome is read
/// from its own result row. Times come back as epoch milliseconds of PostgreSQL's clock, which alone
/// decides expiry, rounded one way or the other by what they are for:
///
/// - instants that are reported (when a lease was acquired, when it ends, a refusal's "free at", the
///   times of `locks.get`) round down, like every instant of the store (`SQLTime.ms`): a holder never
///   reads its lease as lasting longer than it does, and a refusal shows the very instant its holder was
///   told;
/// - waits (how long until a lock can be taken, or the waiters ahead stop counting) round up
///   (`SQLTime.msUntil`): a waiter retried after them never comes before the lock frees, only to find it
///   still held and wait for another wake-up.
enum LockSQL {

    /// When an expired lease becomes grantable: its expiry plus its lock-delay.
    static func freeAt(_ l: String) -> String { "\(l).expires_at + \(l).lock_delay_ms * interval '1 millisecond'" }

    /// Whether waiter row `w` counts: its deadline has not passed, and its replica refreshed it lately.
    /// A row counts for `waiterLeaseSeconds` after it was queued on its own, and then while its replica's
    /// row in `wharf.lock_replicas` is fresh: a replica refreshes one row per second, however many
    /// waiters it has, where it used to rewrite every waiter's row.
    static func live(_ w: String) -> String {
        """
        (\(w).deadline > now() and (\(w).alive_until > now() or exists (
            select 1 from wharf.lock_replicas r where r.replica_id = \(w).replica_id and r.alive_until > now())))
        """
    }

    /// Whether a live waiter is queued for lock row `l`: `waiters_until` first (every waiter's deadline
    /// raised it, so a past value means nobody), then the line itself, probed from its oldest row
    /// (`wharf.lock_line_head`, which stops at the first live waiter).
    static func someoneInLine(_ l: String) -> String {
        "coalesce(\(l).waiters_until > now() and wharf.lock_line_head(\(l).name, null) is not null, false)"
    }

    /// Whether the keyed jobs of queue `queue` (an expression) may take lock row `l`: it is free, and no
    /// live waiter is queued ahead of that queue's place in the line (any live waiter, when the queue
    /// has no place). So a keyed job waits its turn behind clients queued before it, and clients queued
    /// after it wait for it.
    static func jobsMayTake(_ l: String, queue: String) -> String {
        """
        (\(isFree(l)) and not coalesce(\(l).waiters_until > now() and wharf.lock_line_head(\(l).name,
            (select w.seq from wharf.lock_waiters w where w.name = \(l).name and w.queue = \(queue))) is not null, false))
        """
    }

    /// Queues the keyed jobs that `rows` selects (`lock_key, queue`, distinct) for their locks: one row
    /// per (lock, queue) in `wharf.lock_waiters`, counting for `waiterLeaseSeconds` and refreshed once
    /// it has less than a second of that left. Returns the rows queued or refreshed (`name, deadline`).
    static func queueJobs(_ rows: String) -> String {
        """
        insert into wharf.lock_waiters as w (name, holder, replica_id, queue, deadline, alive_until)
        select x.lock_key, 'jobs of queue ' || x.queue, 'queue:' || x.queue, x.queue,
               now() + interval '\(waiterLeaseSeconds) seconds', now() + interval '\(waiterLeaseSeconds) seconds'
        from \(rows) x
        order by x.lock_key, x.queue
        on conflict (name, queue) where queue is not null do update
            set deadline = excluded.deadline, alive_until = excluded.alive_until
            where w.alive_until < now() + interval '\(waiterLeaseSeconds - 1) seconds'
        returning w.name, w.deadline
        """
    }

    /// How long a queued waiter's row counts without its replica refreshing it (every second).
    static let waiterLeaseSeconds = 4

    /// When the first live waiter queued ahead of request `i` stops counting (null when none is ahead):
    /// any waiter, for a new request; an older one, for a queued waiter's retry (`i.wait_seq`). One index
    /// probe in line order, whatever the length of the line.
    static let aheadUntil = "wharf.lock_line_head(i.name, i.wait_seq)"

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
        grant(rows, extra: [], when: condition)
    }

    /// `grant` with `extra` columns of `rows` after the seven, among `waits` (added to the counter),
    /// `waiters_until` (raised to it), `ttl_ms` and `session_bound` (what a `requestId` retry must repeat).
    /// A grant that leaves one of them out resets `ttl_ms` and `session_bound` to their defaults.
    static func grant(_ rows: String, extra: [String], when condition: String) -> String {
        let columns = (["name", "holder", "token", "expires_at", "request_id", "session_id", "lock_delay_ms"] + extra)
            .joined(separator: ", ")
        return """
            insert into wharf.locks as l (\(columns), fencing_token, acquired_at, grants)
            select g.*, 1, clock_timestamp(), 1
            from (\(rows)) g(\(columns))
            order by g.name
            on conflict on constraint locks_pkey do update set
                holder = excluded.holder, token = excluded.token, fencing_token = l.fencing_token + 1,
                acquired_at = clock_timestamp(), expires_at = excluded.expires_at, request_id = excluded.request_id,
                session_id = excluded.session_id, lock_delay_ms = excluded.lock_delay_ms, grants = l.grants + 1,
                expiries = l.expiries + case when l.holder is not null then 1 else 0 end,
                waits = l.waits + excluded.waits, waiters_until = greatest(l.waiters_until, excluded.waiters_until),
                ttl_ms = excluded.ttl_ms, session_bound = excluded.session_bound
            where \(condition)
            returning l.name, l.token, l.fencing_token, l.acquired_at, l.expires_at,
                      \(SQLTime.ms("l.acquired_at")) as acquired_ms, \(SQLTime.ms("l.expires_at")) as expires_ms,
                      l.holder, l.lock_delay_ms
            """
    }

    /// Array parameter `n` behind a scalar subquery. The planner then estimates every batch alike, and
    /// PostgreSQL keeps one generic plan per statement; with the arrays in view it would find a plan for
    /// one or two rows cheaper and re-plan these large statements on every execution.
    static func array(_ n: Int, _ type: String) -> String { "(select $\(n)::\(type)[])" }

    static let input = """
        select * from unnest(\(array(1, "text")), \(array(2, "text")), \(array(3, "bigint")), \(array(4, "text")),
                             \(array(5, "text")), \(array(6, "bigint")), \(array(7, "bigint")), \(array(8, "bigint")),
                             \(array(10, "boolean")))
            with ordinality as t(name, holder, ttl_ms, request_id, session_id, lock_delay_ms, wait_ms, wait_seq, bound,
                                 ord)
        """

    /// Grants each requested lock that is free and has nobody in line, in one plain upsert: the common
    /// case, kept to the fewest steps. A name is taken only when its lease is free (never held,
    /// released, or expired past its lock-delay) and `waiters_until` has passed: that column is raised
    /// to every queued waiter's deadline under the row's lock, so no live waiter can be queued behind a
    /// past value. A brand-new name has no row, hence no waiters. Returns a row per grant only; the
    /// requests it leaves out go through `acquire`, which decides them exactly (a retried request, the
    /// line, contention counts). Names are distinct within one call.
    static let acquireFree = grant(
        """
        select a.name, a.holder, gen_random_uuid()::text, now() + a.ttl_ms * interval '1 millisecond',
               a.request_id, a.session_id, a.lock_delay_ms, a.ttl_ms, a.bound
        from unnest(\(array(1, "text")), \(array(2, "text")), \(array(3, "bigint")), \(array(4, "text")),
                    \(array(5, "text")), \(array(6, "bigint")), \(array(7, "boolean")))
            as a(name, holder, ttl_ms, request_id, session_id, lock_delay_ms, bound)
        """, extra: ["ttl_ms", "session_bound"],
        when: "\(isFree("l")) and (l.waiters_until is null or l.waiters_until <= now())")

    /// In `acquire`'s answer: when the lock the request did not get can be taken, from the row the
    /// statement wrote (`contended` or `granted`) or, failing that, read (`snap`).
    static let freeAtOfAnswer = "coalesce(\(freeAt("c")), \(freeAt("g")), \(freeAt("s")))"

    /// Decides each request exactly. Runs for what `acquireFree` did not grant, and for queued waiters'
    /// retries; a name may come more than once (many clients queueing for one lock share a statement):
    ///
    /// - a retried request (`request_id` and holder equal to the live grant's) gets that grant back
    ///   unchanged, read from the statement's snapshot, if it repeats the grant's `ttl_ms`,
    ///   `lock_delay_ms` and `bound` (else it is refused: `mismatch`); a bound one moves the binding to
    ///   its own session;
    /// - of each name, the first request (by `ord`) with no live waiter ahead is the only one that may be
    ///   granted: a queued waiter's retry (`wait_seq`) qualifies only if no older live waiter is queued,
    ///   and leaves the durable line in the same statement;
    /// - a new request that is not granted counts as contention and, with `wait_ms > 0`, joins the line
    ///   in the same statement, in `ord` order. It also raises the row's `waiters_until`, which takes the
    ///   row lock, so an enqueue and a release of the same lock serialize: either the release sees
    ///   `waiters_until` and wakes the line, or the enqueue sees the lock free (and the caller retries at
    ///   once). A statement writes each lock row once: the grant carries the contention of the requests
    ///   queued behind it, `contended` that of the names not granted.
    static let acquire = """
        with input as (\(input)),
        snap as (
            select i.ord, l.holder, l.token, l.fencing_token, l.acquired_at, l.expires_at, l.lock_delay_ms,
                   l.ttl_ms, l.session_bound,
                   coalesce(l.request_id = i.request_id and l.holder = i.holder and l.expires_at > now(), false)
                       as same,
                   coalesce(l.ttl_ms <> i.ttl_ms or l.lock_delay_ms <> i.lock_delay_ms
                            or l.session_bound <> i.bound, false) as differs
            from input i join wharf.locks l on l.name = i.name
        ),
        attempt as (
            select i.*, \(aheadUntil) as ahead_until
            from input i
            where not exists (select 1 from snap s where s.ord = i.ord and s.same)
        ),
        pick as (
            select distinct on (a.name) a.ord, a.name from attempt a where a.ahead_until is null order by a.name, a.ord
        ),
        behind as (
            select a.name, count(*) as n,
                   max(now() + a.wait_ms * interval '1 millisecond') filter (where a.wait_ms > 0) as until
            from attempt a join pick p on p.name = a.name
            where a.wait_seq is null and a.ord <> p.ord
            group by a.name
        ),
        granted as (\(grant(
            """
            select a.name, a.holder, gen_random_uuid()::text, now() + a.ttl_ms * interval '1 millisecond',
                   a.request_id, a.session_id, a.lock_delay_ms, coalesce(b.n, 0), b.until, a.ttl_ms, a.bound
            from pick p join attempt a on a.ord = p.ord left join behind b on b.name = p.name
            """, extra: ["waits", "waiters_until", "ttl_ms", "session_bound"], when: isFree("l")))),
        won as (select p.ord, g.* from pick p join granted g on g.name = p.name),
        dequeued as (
            delete from wharf.lock_waiters w using attempt a
            where w.seq = a.wait_seq and a.ord in (select ord from won)
            returning w.seq
        ),
        denied as (
            select a.* from attempt a where a.wait_seq is null and a.ord not in (select ord from won)
        ),
        numbered as (
            select d.ord, d.name, d.holder, d.session_id, d.wait_ms,
                   nextval('wharf.lock_waiters_seq_seq'::regclass) as seq
            from (select * from denied where wait_ms > 0 order by ord) d
        ),
        queued as (
            insert into wharf.lock_waiters (seq, name, holder, replica_id, session_id, deadline, alive_until)
            overriding system value
            select n.seq, n.name, n.holder, $9, n.session_id, now() + n.wait_ms * interval '1 millisecond',
                   now() + interval '\(waiterLeaseSeconds) seconds'
            from numbered n
            order by n.seq
            returning seq
        ),
        touched as (
            select d.name, count(*) as n,
                   max(now() + d.wait_ms * interval '1 millisecond') filter (where d.wait_ms > 0) as until,
                   null::text as rebind_session, null::text as rebind_token
            from denied d
            group by d.name
            union all
            select i.name, 0, null, i.session_id, s.token
            from input i join snap s on s.ord = i.ord
            where s.same and not s.differs and i.bound
        ),
        contended as (
            update wharf.locks l
            set waits = l.waits + t.n, waiters_until = greatest(l.waiters_until, t.until),
                session_id = case when l.token = t.rebind_token then t.rebind_session else l.session_id end
            from (select name, sum(n) as n, max(until) as until, max(rebind_session) as rebind_session,
                         max(rebind_token) as rebind_token
                  from touched group by name) t
            where l.name = t.name and l.name not in (select name from granted)
            returning l.name, l.holder, l.expires_at, l.lock_delay_ms
        ),
        answer as (
            select i.ord,
                   coalesce(w.token, case when s.same and not s.differs then s.token end) as token,
                   coalesce(w.fencing_token, case when s.same and not s.differs then s.fencing_token end)
                       as fencing_token,
                   coalesce(w.acquired_at, case when s.same and not s.differs then s.acquired_at end) as acquired_at,
                   coalesce(w.expires_at, case when s.same and not s.differs then s.expires_at end) as expires_at
            from input i
            left join won w on w.ord = i.ord
            left join snap s on s.ord = i.ord
        )
        select i.ord, x.token, x.fencing_token, \(SQLTime.ms("x.acquired_at")), \(SQLTime.ms("x.expires_at")),
               coalesce(c.holder, g.holder, s.holder), \(SQLTime.ms(freeAtOfAnswer)),
               n.seq, \(SQLTime.msUntil("a.ahead_until")), \(SQLTime.msUntil(freeAtOfAnswer)),
               coalesce(s.same and s.differs, false), s.ttl_ms, s.lock_delay_ms, s.session_bound
        from input i
        join answer x on x.ord = i.ord
        left join snap s on s.ord = i.ord
        left join attempt a on a.ord = i.ord
        left join contended c on c.name = i.name
        left join granted g on g.name = i.name
        left join numbered n on n.ord = i.ord
        order by i.ord
        """

    /// Compare-and-set on the token; refuses an expired lease.
    static let renew = """
        update wharf.locks
        set expires_at = now() + $3::bigint * interval '1 millisecond'
        where name = $1 and token = $2 and expires_at > now()
        returning \(SQLTime.ms("expires_at")), fencing_token
        """

    /// Compare-and-delete of the lease on the token (the row stays: it carries the fencing counter).
    /// Also accepts a holder whose lease expired but was not taken over. Returns a row per lease
    /// released. Wakes waiters on every replica (`NOTIFY wharf_wake, 'lock:<name>'`, and
    /// `'jobs:<queue>'` for the queues whose keyed jobs wait for it: `wharf.wake_lock_line`) only when some
    /// waiter queued for the name recently. A release with a session (a bound lock's connection closed)
    /// releases only while the lease is still bound to that session: a `requestId` retry from another
    /// connection may have moved it.
    ///
    /// The commit does not wait for the WAL flush: a release lost in a crash leaves the lease to run
    /// out (as if the holder had died), and any later grant of the name flushes the WAL up to its own
    /// commit, this release included.
    static let release = """
        update wharf.locks l
        set holder = null, token = null, acquired_at = null, expires_at = null, request_id = null,
            session_id = null, session_bound = false, ttl_ms = null, releases = l.releases + 1
        from unnest(\(array(1, "text")), \(array(2, "text")), \(array(3, "text"))) as i(name, token, session_id),
            (select set_config('synchronous_commit', 'off', true)) sc
        where l.name = i.name and l.token = i.token and (i.session_id is null or l.session_id = i.session_id)
        returning l.name, i.token, l.fencing_token, \(SQLTime.ms("clock_timestamp()")),
                  case when l.waiters_until > now() then wharf.wake_lock_line(l.name) end
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
            select count(wharf.wake_lock_line(n.name)) as n
            from (select distinct name from gone) n
            join wharf.locks l on l.name = n.name
            where \(isFree("l"))
              and exists (select 1 from wharf.lock_waiters w
                          where w.name = n.name and w.seq not in (select seq from input) and \(live("w")))
        )
        select i.ord, l.holder, \(SQLTime.ms(freeAt("l")))
        from input i
        left join gone g on g.seq = i.seq
        left join wharf.locks l on l.name = g.name and l.holder is not null and \(freeAt("l")) > now()
        cross join woke
        order by i.ord
        """

    /// Wakes the lines of leases that lapsed: each (`name`, `token`) is a lease this replica granted or
    /// renewed and expected to have run out (plus its lock-delay) by now. One still held with that token
    /// and run out by the database's clock wakes its line on every replica (`wharf.wake_lock_line`: the
    /// clients queued for it and the queues whose keyed jobs wait for it) when anyone waits, as a release
    /// does. Returns per lease, in order, the milliseconds (rounded up) until it runs out when it is
    /// still held with that token (renewed meanwhile, or the replica's clock ran ahead), else null; then
    /// whether it ran out still held with that token (expired without release), its holder and fencing token.
    static let wakeLapsed = """
        with input as (
            select * from unnest(\(array(1, "text")), \(array(2, "text"))) with ordinality as t(name, token, ord)
        ),
        lapsed as (
            select count(wharf.wake_lock_line(l.name)) as n
            from input i join wharf.locks l on l.name = i.name and l.token = i.token
            where \(freeAt("l")) <= now() and l.waiters_until > now()
        )
        select i.ord, case when \(freeAt("l")) > now() then \(SQLTime.msUntil(freeAt("l"))) end,
               l.name is not null and \(freeAt("l")) <= now(), l.holder, l.fencing_token
        from input i
        left join wharf.locks l on l.name = i.name and l.token = i.token
        cross join lapsed
        order by i.ord
        """

    /// Keeps a replica's queued waiters counting: one row per replica, however many waiters it has.
    static let refreshWaiters = """
        insert into wharf.lock_replicas as r (replica_id, alive_until)
        values ($1, now() + interval '\(waiterLeaseSeconds) seconds')
        on conflict on constraint lock_replicas_pkey do update set alive_until = excluded.alive_until
        """

    /// Deletes waiters that stopped counting (their replica stopped refreshing them) or are long past
    /// their deadline, and wakes their lines; forgets replicas silent for an hour.
    static let sweepWaiters = """
        with dead as (
            delete from wharf.lock_waiters w
            where w.deadline <= now() - interval '5 seconds'
               or (w.alive_until <= now() and not exists (
                   select 1 from wharf.lock_replicas r where r.replica_id = w.replica_id and r.alive_until > now()))
            returning name
        ),
        forgotten as (
            delete from wharf.lock_replicas where alive_until <= now() - interval '1 hour'
        )
        select count(wharf.wake_lock_line(d.name)) from (select distinct name from dead) d
        """

    static let columns = """
        l.name, l.holder is not null and l.expires_at > now(), l.holder, \(SQLTime.ms("l.expires_at")),
        \(SQLTime.ms("l.acquired_at")), l.fencing_token, l.grants, l.waits,
        l.expiries + case when l.holder is not null and l.expires_at <= now() then 1 else 0 end, l.releases,
        case when l.holder is not null and l.expires_at <= now() and \(freeAt("l")) > now()
            then \(SQLTime.ms(freeAt("l"))) end,
        (select count(*) from wharf.lock_waiters w where w.name = l.name and \(live("w"))),
        \(heldByJob("l")), \(heldByDelivery("l")),
        exists (select 1 from wharf.jobs j where j.id = \(holderID("l", "job")) and j.hold_token = l.token)
        """

    /// The id in lock row `l`'s holder `<kind> <id>` (null when the holder is not of that form). A CASE,
    /// so that the cast never sees another holder.
    static func holderID(_ l: String, _ kind: String) -> String {
        "(case when \(l).holder ~ '^\(kind) [0-9]{1,18}$' then substr(\(l).holder, \(kind.count + 2))::bigint end)"
    }

    /// The job holding lock row `l`: its lease (a lockKey) or its schedule's overlap hold, with the lock's
    /// token. Null for a client's lock, or one whose job is gone.
    static func heldByJob(_ l: String) -> String {
        """
        (select j.id from wharf.jobs j where j.id = \(holderID(l, "job")) and \(l).token in (j.hold_token, j.lease_token))
        """
    }

    /// The webhook delivery holding lock row `l` (its schedule's overlap hold).
    static func heldByDelivery(_ l: String) -> String {
        """
        (select d.id from wharf.webhook_deliveries d where d.id = \(holderID(l, "delivery")) and d.hold_token = \(l).token)
        """
    }

    static let get = "select \(columns) from wharf.locks l where l.name = $1"

    static let list = """
        select \(columns) from wharf.locks l
        where ($1::text is null or starts_with(l.name, $1)) and ($2::text is null or l.name > $2)
        order by l.name
        limit $3
        """
}
