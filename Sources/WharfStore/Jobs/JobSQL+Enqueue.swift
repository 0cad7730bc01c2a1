/// The one job-insert path: enqueues (single, batched, keyed), cron fires and webhook-target jobs.
extension JobSQL {
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
}
