/// The jobs table's statements. Every one is a single statement, so each runs as its own
/// transaction; the batched ones take arrays (`unnest`) so that concurrent requests share one
/// statement and one commit, and report a per-row outcome.
enum JobSQL {
    static let hotStates = "('scheduled', 'available', 'running', 'retryable')"

    /// The columns `JobRow` reads, in order. Times are epoch milliseconds (`SQLTime.ms`).
    static let columns = """
        j.id, j.queue, j.kind, j.payload::text, j.state, j.priority, j.attempt, j.max_attempts,
        \(SQLTime.ms("j.run_at")), \(SQLTime.ms("j.created_at")), \(SQLTime.ms("j.leased_at")),
        \(SQLTime.ms("j.lease_expires_at")), \(SQLTime.ms("j.finished_at")), j.worker, j.lease_token, j.unique_key,
        j.lock_key, array_to_json(j.tags)::text,
        j.meta::text, j.progress::text, j.result::text, j.last_error::text, j.timeout_ms, j.schedule_name,
        \(SQLTime.ms("j.schedule_fire_at")), j.retry::text
        """

    /// About how many bytes job `a` takes in a reply: its JSON columns as text plus a fixed allowance
    /// for the scalar fields and names. Computing it detoasts the row, so statements compute it only for
    /// the rows they are about to return (and at most one more).
    static func replyBytes(_ a: String) -> String {
        """
        (512 + octet_length(\(a).payload::text) + octet_length(\(a).meta::text) + octet_length(\(a).kind)
         + octet_length(\(a).queue) + octet_length(array_to_json(\(a).tags)::text)
         + coalesce(octet_length(\(a).unique_key), 0) + coalesce(octet_length(\(a).lock_key), 0)
         + coalesce(octet_length(\(a).worker), 0) + coalesce(octet_length(\(a).schedule_name), 0)
         + coalesce(octet_length(\(a).progress::text), 0) + coalesce(octet_length(\(a).result::text), 0)
         + coalesce(octet_length(\(a).last_error::text), 0) + coalesce(octet_length(\(a).retry::text), 0))::bigint
        """
    }

    /// When a job of queue `j.queue` finishing now in `kind` ("completed" covers cancelled, or "dead")
    /// may be pruned: the queue's retention (`queues.configure`), else the server's `param`.
    static func pruneAt(_ kind: String, _ param: String) -> String {
        "now() + coalesce((select q.\(kind)_retention_ms from wharf.queues q where q.name = j.queue), \(param)::bigint)"
            + " * interval '1 millisecond'"
    }

    /// One ordered index scan per queue (a `queue = any(...)` condition would sort every runnable
    /// row), then the best `$2` across queues, cut where their reply would pass `$5` bytes. Keyed jobs
    /// take their lock in the same statement, or join its line (`waiting`).
    static let lease = """
        \(leaseActive),
        \(leasePlain(unless: "false")),
        keyed as (
            -- The best runnable job of each lockKey whose lock is free and has no live waiter ahead of
            -- its queue's place in the line (`LockSQL.jobsMayTake`). Keyed jobs that cannot take their
            -- lock join the line below (`waiting`), and take it in their turn.
            select distinct on (c.lock_key) c.id, c.priority, c.run_at, c.lock_key, c.timeout_ms, c.queue, c.bytes
            from active qn
            cross join lateral (
                select j.id, j.priority, j.run_at, j.lock_key, j.timeout_ms, j.queue, \(replyBytes("j")) as bytes
                from wharf.jobs j
                where \(leaseDue(keyed: true))
                  and not exists (
                      select 1 from wharf.locks l
                      where l.name = j.lock_key and not \(LockSQL.jobsMayTake("l", queue: "j.queue")))
                order by j.priority desc, j.run_at, j.id
                limit $2
                for update skip locked
            ) c
            order by c.lock_key, c.priority desc, c.run_at, c.id
        ),
        \(leaseRanked(from: "plain union all select * from keyed")),
        granted as (
            -- Each keyed job takes its lock as any client would, with the lease token as the lock's
            -- token and the lease's expiry as the lock's.
            \(LockSQL.grant("""
                select b.lock_key, 'job ' || b.id, b.token,
                       now() + least($3::bigint, coalesce(b.timeout_ms, $3::bigint)) * interval '1 millisecond',
                       null, null, 0
                from best b
                where b.lock_key is not null
                """,
                when: "\(LockSQL.jobsMayTake("l", queue: "(select b.queue from best b where b.lock_key = l.name)"))"))
        ),
        served as (
            -- A queue's keyed jobs that took their lock leave the line (the line is not probed for the
            -- others).
            delete from wharf.lock_waiters w
            using (select b.lock_key, b.queue from best b
                   where b.lock_key is not null and b.token in (select token from granted)) b
            where w.name = b.lock_key and w.queue = b.queue
        ),
        waiting as (
            -- Keyed jobs whose lock is held or has others in line queue for it, one place per (lock,
            -- queue), or keep their place counting (refreshed about once a second, so that a place
            -- lapses a few seconds after workers stop asking for its queue's jobs). Names this lease
            -- grants are left out: one statement writes a lock row once.
            select distinct c.lock_key, c.queue
            from active qn
            cross join lateral (
                select j.lock_key, j.queue from wharf.jobs j
                where \(leaseDue(keyed: true))
                  and exists (
                      select 1 from wharf.locks l
                      where l.name = j.lock_key and not \(LockSQL.jobsMayTake("l", queue: "j.queue")))
                order by j.priority desc, j.run_at, j.id
                limit $2
            ) c
            where c.lock_key not in (select b.lock_key from best b where b.lock_key is not null)
        ),
        queued as (\(LockSQL.queueJobs("waiting"))),
        raised as (
            -- As a client's wait does, raising the lock row's `waiters_until` (under its row lock) makes
            -- releases wake the line.
            update wharf.locks l
            set waiters_until = greatest(l.waiters_until, q.deadline)
            from (select name, max(deadline) as deadline from queued group by name) q
            where l.name = q.name
        ),
        picked as (
            -- With `$6` (durable leases, the default) the lease commits like any write: it waits for the
            -- WAL flush when the database does, because a lease lost in a database crash lets the job
            -- run again without the attempt counted. Without it, a plain lease does not wait. A lease
            -- that granted a lock always does: a fencing token must never be handed out twice.
            -- The setting is made once per statement and `granted` is read only for keyed jobs.
            select b.id, b.token,
                   case when b.lock_key is not null
                        then (select g.fencing_token from granted g where g.token = b.token) end as fencing_token
            from best b
            where (select set_config('synchronous_commit',
                                     case when $6::bool or exists (select 1 from granted)
                                          then current_setting('synchronous_commit') else 'off' end, true)) is not null
              and (b.lock_key is null or exists (select 1 from granted g where g.token = b.token))
        )
        \(leaseUpdate)
        returning \(columns), p.fencing_token
        """

    /// `lease` for queues none of which has a runnable keyed job, which is most leases: without the
    /// statements that grant locks and queue keyed jobs, whose setup alone cost about 0.1 ms of
    /// PostgreSQL's time per lease. When an asked queue has a runnable keyed job (in the statement's
    /// snapshot, so exactly when `lease` would have written a lock or a line place), it takes nothing
    /// and answers one row of nulls after its jobs; the caller then runs `lease`.
    static let leaseWithoutKeys = """
        \(leaseActive),
        keyed_due as materialized (
            select exists (
                select 1 from active qn
                where exists (
                    select 1 from wharf.jobs j
                    where \(leaseDue(keyed: true)))) as yes
        ),
        \(leasePlain(unless: "(select k.yes from keyed_due k)")),
        \(leaseRanked(from: "plain")),
        picked as (
            -- Durable as in `lease` (`$6`); no lock is granted here.
            select b.id, b.token, null::bigint as fencing_token
            from best b
            where (select set_config('synchronous_commit',
                                     case when $6::bool then current_setting('synchronous_commit') else 'off' end,
                                     true)) is not null
        ),
        leased as (
            \(leaseUpdate)
            returning \(columns), p.fencing_token
        )
        select * from leased
        union all
        select \(Array(repeating: "null", count: JobRow.columnCount + 1).joined(separator: ", "))
        from keyed_due where yes
        """

    /// The queues asked for that are not paused, looked up once per queue (not once per job).
    private static let leaseActive = """
        with active as materialized (
            select qn.name from unnest($1::text[]) as qn(name)
            where not exists (select 1 from wharf.queues q where q.name = qn.name and q.paused)
        )
        """

    /// Job `j` of the active queue `qn` runs now, with or without a lockKey: the condition of the claim
    /// index of its kind, and the one set of jobs both lease statements scan (so `keyed_due` sees every
    /// job `lease`'s keyed parts would).
    private static func leaseDue(keyed: Bool) -> String {
        """
        j.queue = qn.name and j.state in ('available', 'scheduled', 'retryable')
          and j.lock_key is \(keyed ? "not null" : "null") and j.run_at <= now()
        """
    }

    /// The best runnable jobs without a lockKey of each active queue, none when `unless` holds.
    private static func leasePlain(unless: String) -> String {
        """
        plain as (
            select c.id, c.priority, c.run_at, c.bytes
            from active qn
            cross join lateral (
                select j.id, j.priority, j.run_at, \(replyBytes("j")) as bytes from wharf.jobs j
                where \(leaseDue(keyed: false)) and not \(unless)
                order by j.priority desc, j.run_at, j.id
                limit $2
                for update skip locked
            ) c
        )
        """
    }

    /// The candidates (`plain`, and `keyed` rows with their lock_key, timeout and queue) in claim
    /// order, and the `best` of them: the kept ones are those whose running sum of reply bytes stays
    /// within the budget $5 (a prefix, as every job adds bytes), and always the first.
    private static func leaseRanked(from candidates: String) -> String {
        """
        ranked as (
            select u.*, row_number() over claim as rn, sum(u.bytes) over claim as total
            from (select id, priority, run_at, null::text as lock_key, null::bigint as timeout_ms, null::text as queue,
                         bytes
                  from \(candidates)) u
            window claim as (order by u.priority desc, u.run_at, u.id rows unbounded preceding)
            order by u.priority desc, u.run_at, u.id
            limit $2
        ),
        best as (
            select r.id, r.priority, r.run_at, r.lock_key, r.timeout_ms, r.queue,
                   md5(random()::text || clock_timestamp()::text) as token
            from ranked r
            where r.rn = 1 or r.total <= $5
        )
        """
    }

    /// The leased jobs' update, from `picked` (as `p`). Its rows come through arrays so that the planner
    /// counts on a few of them whatever `$2` is, and updates them by key: joined to `picked` itself, which
    /// a generic plan sizes at a third of the limit's thousand, it hashed the whole table (a plan cached
    /// while the table was small then read all of it for every lease: leases of 10 ms, BENCHMARKS.md,
    /// "Plans that read the whole table").
    private static let leaseUpdate = """
        update wharf.jobs j
        set state = 'running', attempt = j.attempt + 1, lease_token = p.token,
            leased_at = now(), worker = $4, progress = null,
            lease_expires_at = now() + least($3::bigint, coalesce(j.timeout_ms, $3::bigint)) * interval '1 millisecond'
        from (select array_agg(b.id) as ids, array_agg(b.token) as tokens, array_agg(b.fencing_token) as fencing
              from picked b) a
        cross join lateral unnest(a.ids, a.tokens, a.fencing) as p(id, token, fencing_token)
        where j.id = p.id
        """

    static let heartbeat = """
        update wharf.jobs j
        set lease_expires_at = least(now() + $3::bigint * interval '1 millisecond',
                                     coalesce(j.leased_at + j.timeout_ms * interval '1 millisecond', 'infinity')),
            progress = coalesce($4::jsonb, j.progress)
        where j.id = $1 and j.lease_token = $2 and j.state = 'running'
          -- A keyed job's lease lapsed and its lock went to someone else: the lease is lost.
          and (j.lock_key is null
               or exists (select 1 from wharf.locks l where l.name = j.lock_key and l.token = j.lease_token))
        returning \(SQLTime.ms("j.lease_expires_at"))
        """

    /// Why a token did not match: the job's state and whether the token is the one it holds.
    static let leaseCheck = "select state, lease_token = $2 from wharf.jobs where id = $1"

    /// Returns the ids it completed; the caller works out why the others were refused (rare), so the
    /// common path has no join back to the input (a nested loop over both lists otherwise). `$4` is the
    /// server's retention of completed jobs.
    static let complete = """
        with input as (
            select * from unnest($1::bigint[], $2::text[], $3::jsonb[]) as t(id, token, result)
        )
        update wharf.jobs j
        set state = 'completed', result = i.result, finished_at = now(), lease_expires_at = null,
            prune_at = \(pruneAt("completed", "$4"))
        from input i
        where j.id = i.id and j.lease_token = i.token and j.state = 'running'
        returning j.id, j.queue, \(runMs), i.token
        """

    /// How long the job `j` has run under its lease, `run_ms`: returned by the statements that finish
    /// a job, for the run time histogram.
    static let runMs = "\(SQLTime.durationMs("now() - j.leased_at")) as run_ms"

    /// State and token of jobs whose complete or fail was refused, to tell lease_lost from cancelled.
    static let leaseStates = "select id, state, lease_token from wharf.jobs where id = any($1::bigint[])"

    /// The retry delay in milliseconds for job `j` after attempt `j.attempt`, from the job's policy or
    /// the server defaults `$6..$9` (initialMs, maxMs, coefficient, jitter).
    ///
    /// No value can make it fail, so one job's policy never fails the other calls batched with it: each
    /// field is read only when it is a JSON number and clamped (as `numeric`, which holds any JSON
    /// number) to the range `queues.configure` and `jobs.enqueue` accept, and the growth is computed in
    /// log space, `exp(min(ln initialMs + (n - 1) ln coefficient, ln maxMs))`, so `coefficient^(n-1)`
    /// is never formed (100^155 overflows float8).
    static let backoff: String = {
        let queuePolicy = "(select q.retry from wharf.queues q where q.name = j.queue)"
        func number(_ json: String, _ name: String, _ low: String, _ high: String) -> String {
            "(case when jsonb_typeof(\(json)->'\(name)') = 'number' "
                + "then least(greatest((\(json)->'\(name)')::numeric, \(low)), \(high))::float8 end)"
        }
        func field(_ name: String, _ param: String, _ low: String, _ high: String) -> String {
            // The job's own value wins over the queue's, which wins over the server's.
            "coalesce(\(number("j.retry", name, low, high)), \(number(queuePolicy, name, low, high)), "
                + "least(greatest(\(param)::float8, \(low)), \(high)))"
        }
        let initial = field("initialMs", "$6", "0", "86400000")
        let maxMs = field("maxMs", "$7", "0", "2592000000")
        let coefficient = field("coefficient", "$8", "1", "100")
        let jitter = field("jitter", "$9", "0", "1")
        return """
            (case when \(initial) <= 0 or \(maxMs) <= 0 then 0::float8
                  else exp(least(ln(\(initial)) + greatest(j.attempt - 1, 0) * ln(\(coefficient)), ln(\(maxMs))))
             end * (1 + \(jitter) * (random() * 2 - 1)))
            """
    }()

    /// The error kept in an attempt's history entry: itself up to 1 KB of JSON text, else its first
    /// 1,000 characters, so that the history (and `jobs.get`) grows by a bounded amount per attempt.
    /// `lastError` keeps the whole error of the latest failure.
    static func historyError(_ e: String) -> String {
        """
        case when octet_length(\(e)::text) <= 1024 then \(e)
             else jsonb_build_object('message', left(coalesce(\(e)->>'message', \(e)::text), 1000), 'truncated', true,
                                     'bytes', octet_length(\(e)::text)) end
        """
    }

    static let fail = """
        with input as (
            select * from unnest($1::bigint[], $2::text[], $3::jsonb[], $4::bool[], $5::bigint[])
                as t(id, token, error, retryable, retry_in_ms)
        )
        update wharf.jobs j
        set state = case when not i.retryable or j.attempt >= j.max_attempts then 'dead' else 'retryable' end,
            finished_at = case when not i.retryable or j.attempt >= j.max_attempts then now() end,
            prune_at = case when not i.retryable or j.attempt >= j.max_attempts then \(pruneAt("dead", "$10")) end,
            run_at = case when not i.retryable or j.attempt >= j.max_attempts then j.run_at
                          else now() + coalesce(i.retry_in_ms::float8, \(backoff)) * interval '1 millisecond' end,
            last_error = i.error, lease_expires_at = null,
            attempts = j.attempts || jsonb_build_object('attempt', j.attempt, 'worker', j.worker,
                'leasedAt', j.leased_at, 'finishedAt', now(), 'outcome', 'failed', 'error', \(historyError("i.error")))
        from input i
        where j.id = i.id and j.lease_token = i.token and j.state = 'running'
        returning j.id, j.state, \(SQLTime.ms("j.run_at")), j.queue, \(runMs), i.token
        """

    /// Running jobs whose lease expired, oldest first (uses the lease-expiry index).
    static let expiredLeases = """
        select j.id from wharf.jobs j
        where j.state = 'running' and j.lease_expires_at < now()
        order by j.lease_expires_at
        limit 1000
        for update skip locked
        """

    /// The jobs a lost worker held: `$1` ids with their `$2` tokens, still running under them.
    static let lostLeases = """
        select j.id from wharf.jobs j
        join unnest($1::bigint[], $2::text[]) as t(id, token) on t.id = j.id and j.lease_token = t.token
        where j.state = 'running'
        for update of j skip locked
        """

    /// Returns the running jobs `gone` selects to the runnable set (`$3` is the reason recorded). A job
    /// with no attempts left becomes dead (`$4`: the server's retention of dead jobs).
    static func release(_ gone: String) -> String {
        """
        with gone as (\(gone)),
        moved as (
            update wharf.jobs j
            set state = case when j.attempt >= j.max_attempts then 'dead' else 'available' end,
                finished_at = case when j.attempt >= j.max_attempts then now() end,
                prune_at = case when j.attempt >= j.max_attempts then \(pruneAt("dead", "$4")) end,
                run_at = now(), lease_expires_at = null,
                last_error = jsonb_build_object('reason', $3::text),
                attempts = j.attempts || jsonb_build_object('attempt', j.attempt, 'worker', j.worker,
                    'leasedAt', j.leased_at, 'finishedAt', now(), 'outcome', $3::text)
            from gone
            where j.id = gone.id
            returning j.id, j.queue, j.state
        ),
        woke as (
            select count(\(WakeTopic.jobs.notify("q.queue"))) as n
            from (select distinct queue from moved where state = 'available') q
        )
        select moved.id, moved.queue, moved.state from moved cross join woke
        """
    }

    static let releaseExpired = release(expiredLeases).replacingOccurrences(of: "$3::text", with: "'lease_expired'")
        .replacingOccurrences(of: "$4::bigint", with: "$1::bigint")
    static let releaseLost = release(lostLeases)

    static let cancel = """
        update wharf.jobs j
        set state = 'cancelled', finished_at = now(), lease_expires_at = null,
            prune_at = \(pruneAt("completed", "$2"))
        where j.id = $1 and (j.state in \(hotStates) or j.state = 'waiting')
        returning state, queue
        """

    static let retry = """
        with moved as (
            update wharf.jobs
            set state = 'available', run_at = now(), finished_at = null, prune_at = null, lease_token = null,
                max_attempts = greatest(max_attempts, attempt + 1)
            where id = $1 and state in ('dead', 'cancelled')
            returning id, queue, state
        )
        select moved.id, moved.state, \(WakeTopic.jobs.notify("moved.queue")) from moved
        """

    static let stateOf = "select state from wharf.jobs where id = $1"

    static let get = "select \(columns), j.attempts::text from wharf.jobs j where j.id = $1"

    /// The filters of `jobs.list` on job `j` (`$1..$4`: queue, state, kind, tag; null means any).
    static let listFilter = """
        ($1::text is null or j.queue = $1) and ($2::text is null or j.state = $2)
          and ($3::text is null or j.kind = $3) and ($4::text is null or j.tags @> array[$4::text])
          and ($8::bigint is null or j.created_at >= \(SQLTime.at("$8::bigint")))
          and ($9::bigint is null or j.created_at < \(SQLTime.at("$9::bigint")))
        """

    /// The unfinished job holding uniqueKey `$1` (the unique index on it covers only unfinished jobs,
    /// waiting ones included).
    static let byUniqueKey = """
        select \(columns) from wharf.jobs j
        where j.unique_key = $1 and (j.state in \(hotStates) or j.state = 'waiting')
        """

    /// A page of `jobs.list`, newest first, after the keyset cursor `$5` (an id): at most `$6` jobs
    /// and, past the first, at most `$7` reply bytes. It walks the ids one index probe at a time with a
    /// running sum of the reply bytes and stops at the first job that does not fit, so it reads only
    /// the rows it returns and that one; the last column says whether it stopped there (the page was
    /// cut by bytes, so there are more).
    static let list = """
        with recursive page(n, id, total, fits) as (
            (select 1, j.id, \(replyBytes("j")), true from wharf.jobs j
             where \(listFilter) and ($5::bigint is null or j.id < $5)
             order by j.id desc limit 1)
            union all
            (select p.n + 1, nx.id, p.total + nx.bytes, p.total + nx.bytes <= $7
             from page p
             cross join lateral (
                 select j.id, \(replyBytes("j")) as bytes from wharf.jobs j
                 where \(listFilter) and j.id < p.id
                 order by j.id desc limit 1) nx
             where p.fits and p.n < $6)
        )
        select \(columns), (select bool_or(not q.fits) from page q)
        from page join wharf.jobs j on j.id = page.id
        where page.fits
        order by j.id desc
        """

    /// One batch of retention pruning: at most `$3` finished jobs past their `prune_at` (set when they
    /// finished, from their queue's retention or the server's), oldest first, skipping rows another
    /// replica is pruning. Jobs finished by a statement that set no `prune_at` (a completion with a
    /// schedule patch, or before retention was kept per job) are pruned by `finished_at` with the
    /// queue's or the server's retention (`$1` completed and cancelled, `$2` dead).
    static let prune = """
        with due as (
            select j.id from wharf.jobs j
            where j.prune_at < now()
            order by j.prune_at
            limit $3
            for update skip locked
        ),
        unpruned as (
            select j.id from wharf.jobs j
            where j.prune_at is null and j.finished_at is not null
              and j.finished_at < now() - least($1::bigint, $2::bigint,
                  (select min(least(q.completed_retention_ms, q.dead_retention_ms)) from wharf.queues q))
                  * interval '1 millisecond'
              and j.finished_at < now() - coalesce(
                  (select case when j.state = 'dead' then q.dead_retention_ms else q.completed_retention_ms end
                   from wharf.queues q where q.name = j.queue),
                  case when j.state = 'dead' then $2::bigint else $1::bigint end) * interval '1 millisecond'
            order by j.finished_at
            limit $3
            for update skip locked
        )
        delete from wharf.jobs j
        where j.id in (select v.id from (select id from due union all select id from unpruned) v limit $3)
          and j.finished_at is not null
        """
}
