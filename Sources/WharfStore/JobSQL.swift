/// The jobs table's statements. Every one is a single statement, so each runs as its own
/// transaction; the batched ones take arrays (`unnest`) so that concurrent requests share one
/// statement and one commit, and report a per-row outcome.
enum JobSQL {
    /// Formats a timestamptz column as RFC 3339 UTC with milliseconds.
    static func ts(_ column: String) -> String {
        "to_char((\(column)) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    }

    static let hotStates = "('scheduled', 'available', 'running', 'retryable')"

    /// The columns `JobRow` reads, in order.
    static let columns = """
        j.id, j.queue, j.kind, j.payload::text, j.state, j.priority, j.attempt, j.max_attempts,
        \(ts("j.run_at")), \(ts("j.created_at")), \(ts("j.leased_at")), \(ts("j.lease_expires_at")),
        \(ts("j.finished_at")), j.worker, j.lease_token, j.unique_key, j.lock_key, array_to_json(j.tags)::text,
        j.meta::text, j.progress::text, j.result::text, j.last_error::text, j.timeout_ms, j.schedule_name,
        \(ts("j.schedule_fire_at")), j.retry::text
        """

    /// The job rows of an enqueue (`unnest` of `$1..$14`, and `$15` idempotency keys when `keyed`),
    /// numbered in call order (`ord`), each with its id drawn.
    static func enqueueInput(keyed: Bool) -> String {
        """
        select nextval('wharf.jobs_id_seq') as id, t.*
        from unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::bigint[], $6::int[], $7::jsonb[],
                    $8::bigint[], $9::text[], $10::text[], $11::jsonb[], $12::jsonb[], $13::text[], $14::bigint[]\(keyed ? ", $15::text[]" : ""))
            with ordinality as t(queue, kind, payload, priority, run_at_ms, max_attempts, retry, timeout_ms,
                                 unique_key, lock_key, tags, meta, schedule_name, schedule_fire_ms\(keyed ? ", idempotency_key" : ""), ord)
        """
    }

    /// Inserts the rows of `source` (an `enqueueInput`) in call order; a row whose uniqueKey an
    /// unfinished job holds is skipped. Then wakes the queues that got jobs.
    static func insertJobs(from source: String) -> String {
        """
        ins as (
            insert into wharf.jobs as j (id, queue, kind, payload, state, priority, run_at, max_attempts, retry,
                                         timeout_ms, unique_key, lock_key, tags, meta, schedule_name, schedule_fire_at)
            select i.id, i.queue, i.kind, i.payload,
                   case when i.run_at_ms is not null and to_timestamp(i.run_at_ms / 1000.0) > now()
                        then 'scheduled' else 'available' end,
                   i.priority, coalesce(to_timestamp(i.run_at_ms / 1000.0), now()), i.max_attempts, i.retry,
                   i.timeout_ms, i.unique_key, i.lock_key,
                   coalesce(array(select jsonb_array_elements_text(i.tags)), '{}'), coalesce(i.meta, '{}'),
                   i.schedule_name, to_timestamp(i.schedule_fire_ms / 1000.0)
            from \(source) i
            order by i.ord
            on conflict do nothing
            returning j.id, j.unique_key, j.state, j.queue
        ),
        woke as (
            select count(pg_notify('wharf_wake', 'jobs:' || q.queue)) as n from (select distinct queue from ins) q
        )
        """
    }

    /// What each inserted-or-skipped row of `source` came to: its own new job, or the unfinished job
    /// holding its uniqueKey (made earlier in the batch, or before). `id` is null when a concurrent
    /// enqueue took the key after this statement's snapshot.
    static func outcome(of source: String) -> String {
        """
        select i.*, coalesce(ins.id, dup.id, prior.id) as job_id, coalesce(ins.state, dup.state, prior.state) as job_state,
               ins.id is not null as created
        from \(source) i
        left join ins on ins.id = i.id
        left join ins dup on ins.id is null and dup.unique_key = i.unique_key
        left join wharf.jobs prior on ins.id is null and dup.id is null and prior.unique_key = i.unique_key
            and prior.state in \(hotStates)
        """
    }

    /// Inserts a batch of jobs without idempotency keys. Columns: ord, id, state, created, replayed.
    static let enqueue = """
        with input as materialized (\(enqueueInput(keyed: false))),
        \(insertJobs(from: "input")),
        made as (\(outcome(of: "input")))
        select m.ord, m.job_id, m.job_state, m.created, false
        from made m
        cross join woke
        order by m.ord
        """

    /// Inserts a batch of jobs of which some carry idempotency keys (`$15`). A row with a key already
    /// recorded (`known`), or used by an earlier row of the batch (a follower), makes nothing and
    /// answers like the first call with that key (`replayed`). The others are `fresh`: each makes a
    /// job unless an unfinished job holds its uniqueKey, and a keyed one records its key in the same
    /// commit. A key that a concurrent enqueue recorded after this statement's snapshot aborts the
    /// statement as a serialization failure (the caller runs it again), so a key never stands for two
    /// jobs. Columns: ord, id, state, created, replayed.
    static let enqueueKeyed = """
        with input as materialized (
            select k.*, k.idempotency_key is not null
                        and k.ord <> min(k.ord) over (partition by k.idempotency_key) as follower
            from (\(enqueueInput(keyed: true))) k
        ),
        known as materialized (
            -- One primary-key probe per key (a plan cached while the table was small must not turn
            -- into a scan of it).
            select u.key, k.job_id, k.created
            from (select distinct i.idempotency_key as key from input i where i.idempotency_key is not null) u
            cross join lateral (
                select k.job_id, k.created from wharf.job_idempotency_keys k where k.key = u.key
            ) k
        ),
        fresh as materialized (
            select i.* from input i
            where i.idempotency_key is null
               or (not i.follower and not exists (select 1 from known k where k.key = i.idempotency_key))
        ),
        \(insertJobs(from: "fresh")),
        made as (\(outcome(of: "fresh"))),
        claimed as (
            insert into wharf.job_idempotency_keys (key, job_id, created)
            select m.idempotency_key, m.job_id, m.created from made m
            where m.idempotency_key is not null and m.job_id is not null
            order by m.idempotency_key
            on conflict on constraint job_idempotency_keys_pkey do nothing
            returning key
        )
        select i.ord, coalesce(m.job_id, lead.job_id, k.job_id),
               coalesce(m.job_state, lead.job_state, kj.state, 'unknown'),
               coalesce(m.created, lead.created, k.created), m.ord is null,
               case when m.idempotency_key is not null and (m.job_id is null or c.key is null)
                    then wharf.idempotency_key_race(m.idempotency_key) end
        from input i
        cross join woke
        left join made m on m.ord = i.ord
        left join made lead on i.follower and lead.idempotency_key = i.idempotency_key
        left join known k on m.ord is null and lead.ord is null and k.key = i.idempotency_key
        left join wharf.jobs kj on kj.id = k.job_id
        left join claimed c on c.key = m.idempotency_key
        order by i.ord
        """

    /// Finds the unfinished job holding each unique key (after a concurrent enqueue won the race).
    static let byUniqueKeys = """
        select unique_key, id, state from wharf.jobs
        where unique_key = any($1::text[]) and state in \(hotStates)
        """

    /// One ordered index scan per queue (a `queue = any(...)` condition would sort every runnable
    /// row), then the best `$2` across queues.
    static let lease = """
        with plain as (
            select c.id, c.priority, c.run_at
            from unnest($1::text[]) as qn(name)
            cross join lateral (
                select j.id, j.priority, j.run_at from wharf.jobs j
                where j.queue = qn.name and j.state in ('available', 'scheduled', 'retryable')
                  and j.lock_key is null and j.run_at <= now()
                order by j.priority desc, j.run_at, j.id
                limit $2
                for update skip locked
            ) c
            where not exists (select 1 from wharf.queues q where q.name = qn.name and q.paused)
        ),
        keyed as (
            -- The best runnable job of each lockKey whose lock is free and has nobody in line. A lease
            -- is a try-lock: it never joins the line, and never jumps it.
            select distinct on (c.lock_key) c.id, c.priority, c.run_at, c.lock_key, c.timeout_ms
            from unnest($1::text[]) as qn(name)
            cross join lateral (
                select j.id, j.priority, j.run_at, j.lock_key, j.timeout_ms from wharf.jobs j
                where j.queue = qn.name and j.state in ('available', 'scheduled', 'retryable')
                  and j.lock_key is not null and j.run_at <= now()
                  and not exists (
                      select 1 from wharf.locks l
                      where l.name = j.lock_key
                        and (not \(LockSQL.isFree("l")) or \(LockSQL.someoneInLine("l"))))
                order by j.priority desc, j.run_at, j.id
                limit $2
                for update skip locked
            ) c
            where not exists (select 1 from wharf.queues q where q.name = qn.name and q.paused)
            order by c.lock_key, c.priority desc, c.run_at, c.id
        ),
        best as (
            select u.*, md5(random()::text || clock_timestamp()::text) as token
            from (select id, priority, run_at, null::text as lock_key, null::bigint as timeout_ms from plain
                  union all select * from keyed) u
            order by u.priority desc, u.run_at, u.id
            limit $2
        ),
        granted as (
            -- Each keyed job takes its lock as any client would, with the lease token as the lock's
            -- token and the lease's expiry as the lock's.
            \(LockSQL.grant("""
                select b.lock_key, 'job ' || b.id, b.token,
                       now() + least($3::bigint, coalesce(b.timeout_ms, $3::bigint)) * interval '1 millisecond',
                       null, null, 0
                from best b
                where b.lock_key is not null
                """, when: "\(LockSQL.isFree("l")) and not \(LockSQL.someoneInLine("l"))"))
        ),
        picked as (
            -- A plain lease is soft state (a lost one only means the job runs again, as after expiry),
            -- so its commit does not wait for the WAL flush; completions do. A lease that granted a
            -- lock does wait: a fencing token must never be handed out twice.
            select b.id, b.token, g.fencing_token
            from best b
            left join granted g on g.token = b.token,
                (select set_config('synchronous_commit',
                                   case when exists (select 1 from granted) then 'on' else 'off' end, true)) sc
            where b.lock_key is null or g.token is not null
        )
        update wharf.jobs j
        set state = 'running', attempt = j.attempt + 1, lease_token = picked.token,
            leased_at = now(), worker = $4, progress = null,
            lease_expires_at = now() + least($3::bigint, coalesce(j.timeout_ms, $3::bigint)) * interval '1 millisecond'
        from picked
        where j.id = picked.id
        returning \(columns), picked.fencing_token
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
        returning \(ts("j.lease_expires_at"))
        """

    /// Why a token did not match: the job's state and whether the token is the one it holds.
    static let leaseCheck = "select state, lease_token = $2 from wharf.jobs where id = $1"

    /// Returns the ids it completed; the caller works out why the others were refused (rare), so the
    /// common path has no join back to the input (a nested loop over both lists otherwise).
    static let complete = """
        with input as (
            select * from unnest($1::bigint[], $2::text[], $3::jsonb[]) as t(id, token, result)
        )
        update wharf.jobs j
        set state = 'completed', result = i.result, finished_at = now(), lease_expires_at = null
        from input i
        where j.id = i.id and j.lease_token = i.token and j.state = 'running'
        returning j.id, i.token
        """

    /// State and token of jobs whose complete or fail was refused, to tell lease_lost from cancelled.
    static let leaseStates = "select id, state, lease_token from wharf.jobs where id = any($1::bigint[])"

    /// The retry delay in milliseconds for job `j` after attempt `j.attempt`, from the job's policy or
    /// the server defaults `$6..$9` (initialMs, maxMs, coefficient, jitter).
    static let backoff: String = {
        let policy =
            "coalesce(j.retry, '{}') || coalesce((select q.retry from wharf.queues q where q.name = j.queue), '{}')"
        func field(_ name: String, _ param: String) -> String {
            // The job's own value wins over the queue's, which wins over the server's.
            "coalesce((j.retry->>'\(name)')::float8, ((\(policy))->>'\(name)')::float8, \(param)::float8)"
        }
        return """
            (least(\(field("initialMs", "$6")) * power(\(field("coefficient", "$8")), greatest(j.attempt - 1, 0)),
                   \(field("maxMs", "$7")))
             * (1 + \(field("jitter", "$9")) * (random() * 2 - 1)))
            """
    }()

    static let fail = """
        with input as (
            select * from unnest($1::bigint[], $2::text[], $3::jsonb[], $4::bool[], $5::bigint[])
                as t(id, token, error, retryable, retry_in_ms)
        )
        update wharf.jobs j
        set state = case when not i.retryable or j.attempt >= j.max_attempts then 'dead' else 'retryable' end,
            finished_at = case when not i.retryable or j.attempt >= j.max_attempts then now() end,
            run_at = case when not i.retryable or j.attempt >= j.max_attempts then j.run_at
                          else now() + coalesce(i.retry_in_ms::float8, \(backoff)) * interval '1 millisecond' end,
            last_error = i.error, lease_expires_at = null,
            attempts = j.attempts || jsonb_build_object('attempt', j.attempt, 'worker', j.worker,
                'leasedAt', j.leased_at, 'finishedAt', now(), 'outcome', 'failed', 'error', i.error)
        from input i
        where j.id = i.id and j.lease_token = i.token and j.state = 'running'
        returning j.id, j.state, \(ts("j.run_at")), i.token
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
    /// with no attempts left becomes dead.
    static func release(_ gone: String) -> String {
        """
        with gone as (\(gone)),
        moved as (
            update wharf.jobs j
            set state = case when j.attempt >= j.max_attempts then 'dead' else 'available' end,
                finished_at = case when j.attempt >= j.max_attempts then now() end,
                run_at = now(), lease_expires_at = null,
                last_error = jsonb_build_object('reason', $3::text),
                attempts = j.attempts || jsonb_build_object('attempt', j.attempt, 'worker', j.worker,
                    'leasedAt', j.leased_at, 'finishedAt', now(), 'outcome', $3::text)
            from gone
            where j.id = gone.id
            returning j.id, j.queue, j.state
        ),
        woke as (
            select count(pg_notify('wharf_wake', 'jobs:' || q.queue)) as n
            from (select distinct queue from moved where state = 'available') q
        )
        select moved.id, moved.queue, moved.state from moved cross join woke
        """
    }

    static let releaseExpired = release(expiredLeases).replacingOccurrences(of: "$3::text", with: "'lease_expired'")
    static let releaseLost = release(lostLeases)

    static let cancel = """
        update wharf.jobs
        set state = 'cancelled', finished_at = now(), lease_expires_at = null
        where id = $1 and state in \(hotStates)
        returning state
        """

    static let retry = """
        with moved as (
            update wharf.jobs
            set state = 'available', run_at = now(), finished_at = null, lease_token = null,
                max_attempts = greatest(max_attempts, attempt + 1)
            where id = $1 and state in ('dead', 'cancelled')
            returning id, queue, state
        )
        select moved.id, moved.state, pg_notify('wharf_wake', 'jobs:' || moved.queue) from moved
        """

    static let stateOf = "select state from wharf.jobs where id = $1"

    static let get = "select \(columns), j.attempts::text from wharf.jobs j where j.id = $1"

    static let list = """
        select \(columns) from wharf.jobs j
        where ($1::text is null or j.queue = $1) and ($2::text is null or j.state = $2)
          and ($3::text is null or j.kind = $3) and ($4::text is null or j.tags @> array[$4::text])
          and ($5::bigint is null or j.id < $5)
        order by j.id desc
        limit $6
        """

    /// Deletes finished jobs past retention: completed and cancelled after `$1` ms, dead after `$2` ms.
    static let prune = """
        delete from wharf.jobs where id in (
            select id from wharf.jobs
            where (state in ('completed', 'cancelled') and finished_at < now() - $1::bigint * interval '1 millisecond')
               or (state = 'dead' and finished_at < now() - $2::bigint * interval '1 millisecond')
            limit 10000)
        """
}

enum QueueSQL {
    static let list = """
        select coalesce(c.queue, q.name), coalesce(q.paused, false), coalesce(c.available, 0),
               coalesce(c.scheduled, 0), coalesce(c.running, 0), coalesce(c.retryable, 0)
        from (
            select queue, count(*) filter (where state = 'available') as available,
                   count(*) filter (where state = 'scheduled') as scheduled,
                   count(*) filter (where state = 'running') as running,
                   count(*) filter (where state = 'retryable') as retryable
            from wharf.jobs where state in \(JobSQL.hotStates) group by queue
        ) c
        full join wharf.queues q on q.name = c.queue
        order by 1
        """

    /// One pass over the queue's rows: counts per state, the oldest runnable job's age, recent
    /// completions and failures.
    static let stats = """
        select
            coalesce((select paused from wharf.queues where name = $1), false),
            count(*) filter (where state = 'scheduled'), count(*) filter (where state = 'available'),
            count(*) filter (where state = 'running'), count(*) filter (where state = 'retryable'),
            count(*) filter (where state = 'completed'), count(*) filter (where state = 'dead'),
            count(*) filter (where state = 'cancelled'),
            (extract(epoch from now() - min(run_at) filter (
                where state in ('available', 'scheduled', 'retryable') and run_at <= now())) * 1000)::bigint,
            count(*) filter (where state = 'completed' and finished_at > now() - interval '1 minute'),
            count(*) filter (where state = 'completed' and finished_at > now() - interval '5 minutes'),
            count(*) filter (where state = 'retryable' or (state = 'dead' and finished_at > now() - interval '5 minutes'))
        from wharf.jobs where queue = $1
        """

    static let setRetry = """
        insert into wharf.queues as q (name, retry, updated_at) values ($1, $2::jsonb, now())
        on conflict on constraint queues_pkey do update set retry = $2::jsonb, updated_at = now()
        returning q.name, q.paused, q.retry::text
        """

    static let setPaused = """
        with q as (
            insert into wharf.queues as q (name, paused, paused_at, updated_at)
            values ($1, $2, case when $2 then now() end, now())
            on conflict on constraint queues_pkey
            do update set paused = $2, paused_at = case when $2 then now() end, updated_at = now()
            returning q.name, q.paused
        )
        select q.name, q.paused, case when not q.paused then pg_notify('wharf_wake', 'jobs:' || q.name) end
        from q
        """
}
