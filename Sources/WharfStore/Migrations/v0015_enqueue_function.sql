-- The one job-insert path, as functions an application can call in its own transaction.
--
-- `wharf.enqueue_batch` inserts a set of jobs in one statement: `jobs.enqueue` and `jobs.enqueueBatch`
-- (merged per loop turn), `cron.trigger`, cron fires and applications all go through it. A job it makes
-- exists only if the calling transaction commits, and its NOTIFY `wharf_wake` `jobs:<queue>` is delivered
-- at that commit, so idle long-polling workers on every replica pick the job up then.
-- `wharf.enqueue` is the one-job form for applications (Protocol/jobs.md documents both).
--
-- The batch is set-based: one INSERT ... SELECT over the arrays, never a statement per row. PL/pgSQL
-- only chooses between two statements (with or without idempotency keys, which cost a lookup and an
-- insert per row) and keeps their plans cached for the session. (A SQL-language function that
-- inserts is never inlined into its caller, and it is planned again on every call.)

-- Refuses row `ord` of an enqueue: `field` `detail`. Called only for a row that breaks a rule, so a
-- valid batch never gets here.
create function wharf.enqueue_refused(ord bigint, field text, detail text) returns boolean
language plpgsql as $$
begin
    raise exception 'job % of the batch: % %', ord, field, detail
        using errcode = 'invalid_parameter_value', hint = 'see Protocol/jobs.md, "Enqueueing from SQL"';
end
$$;

-- True when row `ord` of an enqueue keeps the rules `jobs.enqueue` checks; refuses it otherwise (the
-- rules of Protocol/jobs.md, by parameter name). A SQL function, so it is inlined into the insert.
create function wharf.enqueue_valid(
    ord bigint, queue text, kind text, priority integer, max_attempts integer, retry jsonb, timeout_ms bigint,
    unique_key text, lock_key text, tags jsonb, meta jsonb, idempotency_key text)
returns boolean
language sql as $$
    select case
        when queue is null or octet_length(queue) not between 1 and 200
            then wharf.enqueue_refused(ord, 'queue', 'must be a string of 1-200 bytes')
        when kind is null or octet_length(kind) not between 1 and 200
            then wharf.enqueue_refused(ord, 'kind', 'must be a string of 1-200 bytes')
        when priority not between -1000 and 1000
            then wharf.enqueue_refused(ord, 'priority', 'must be between -1000 and 1000')
        when max_attempts not between 1 and 1000
            then wharf.enqueue_refused(ord, 'max_attempts', 'must be between 1 and 1000')
        when timeout_ms not between 1 and 86400000
            then wharf.enqueue_refused(ord, 'timeout_ms', 'must be between 1 and 86400000')
        when jsonb_typeof(retry) <> 'object'
            then wharf.enqueue_refused(ord, 'retry', 'must be a JSON object {initialMs, maxMs, coefficient, jitter}')
        when octet_length(unique_key) not between 1 and 400
            then wharf.enqueue_refused(ord, 'unique_key', 'must be 1-400 bytes')
        when octet_length(lock_key) not between 1 and 400
            then wharf.enqueue_refused(ord, 'lock_key', 'must be 1-400 bytes')
        when octet_length(idempotency_key) not between 1 and 400
            then wharf.enqueue_refused(ord, 'idempotency_key', 'must be 1-400 bytes')
        when case when jsonb_typeof(tags) = 'array' then jsonb_array_length(tags) > 50 else tags is not null end
            then wharf.enqueue_refused(ord, 'tags', 'must be a JSON array of at most 50 strings')
        when jsonb_typeof(meta) <> 'object'
            then wharf.enqueue_refused(ord, 'meta', 'must be a JSON object')
        else true
    end
$$;

-- Inserts one job per array index (arrays shorter than `queue` are padded with nulls, and a null array
-- means all nulls): null priority is 0, null payload is JSON null, null run_at is now (a job whose run_at
-- is in the future is `scheduled`), null max_attempts is 20, null tags/meta are empty. A row whose
-- unique_key an unfinished job holds makes nothing and comes to that job (created false), as does a row
-- for a (schedule_name, schedule_fire_at) that already has its job (job_id null then). A row whose
-- idempotency_key was recorded before, or by an earlier row of the batch, makes nothing and answers
-- like the first call with that key (replayed true; job_state 'unknown' when the job has been pruned).
-- Two transactions recording one new key at once: the later one fails with serialization_failure
-- (40001) and may simply be run again. `id` and `hold_token` are for cron fires (a pre-drawn job id,
-- and the token of the `cron:<schedule>` lock the job holds until it finishes); leave them null.
--
-- Returns a row per input row, in input order: ord (1-based index), job_id, job_state, created,
-- replayed. job_id is null when the row lost a race for its unique_key to a transaction that committed
-- after this statement began and whose job is no longer unfinished (retry), or for a fire that exists.
create function wharf.enqueue_batch(
    queue text[],
    kind text[],
    payload jsonb[] default null,
    priority integer[] default null,
    run_at timestamptz[] default null,
    max_attempts integer[] default null,
    retry jsonb[] default null,
    timeout_ms bigint[] default null,
    unique_key text[] default null,
    lock_key text[] default null,
    tags jsonb[] default null,
    meta jsonb[] default null,
    idempotency_key text[] default null,
    schedule_name text[] default null,
    schedule_fire_at timestamptz[] default null,
    id bigint[] default null,
    hold_token text[] default null)
returns table (ord bigint, job_id bigint, job_state text, created boolean, replayed boolean)
language plpgsql as $$
#variable_conflict use_column
begin
    if enqueue_batch.idempotency_key is null
       or cardinality(array_remove(enqueue_batch.idempotency_key, null)) = 0 then
        return query
        with input as materialized (
            -- `valid` refuses a bad row (it is computed for every row of this materialized CTE); a
            -- column rather than a filter, so that the planner's row estimates stay those of the arrays.
            select coalesce(t.given_id, nextval('wharf.jobs_id_seq')) as id, t.*,
                   wharf.enqueue_valid(t.ord, t.queue, t.kind, t.priority, t.max_attempts, t.retry, t.timeout_ms,
                                       t.unique_key, t.lock_key, t.tags, t.meta, null) as valid
            from unnest(enqueue_batch.queue, enqueue_batch.kind, enqueue_batch.payload, enqueue_batch.priority,
                        enqueue_batch.run_at, enqueue_batch.max_attempts, enqueue_batch.retry,
                        enqueue_batch.timeout_ms, enqueue_batch.unique_key, enqueue_batch.lock_key,
                        enqueue_batch.tags, enqueue_batch.meta, enqueue_batch.schedule_name,
                        enqueue_batch.schedule_fire_at, enqueue_batch.hold_token, enqueue_batch.id)
                with ordinality as t(queue, kind, payload, priority, run_at, max_attempts, retry, timeout_ms,
                                     unique_key, lock_key, tags, meta, schedule_name, schedule_fire_at,
                                     hold_token, given_id, ord)
        ),
        ins as (
            insert into wharf.jobs as j (id, queue, kind, payload, state, priority, run_at, max_attempts, retry,
                                         timeout_ms, unique_key, lock_key, tags, meta, schedule_name,
                                         schedule_fire_at, hold_token)
            select i.id, i.queue, i.kind, coalesce(i.payload, 'null'),
                   case when i.run_at > now() then 'scheduled' else 'available' end,
                   coalesce(i.priority, 0), coalesce(i.run_at, now()), coalesce(i.max_attempts, 20), i.retry,
                   i.timeout_ms, i.unique_key, i.lock_key,
                   coalesce(array(select jsonb_array_elements_text(i.tags)), '{}'), coalesce(i.meta, '{}'),
                   i.schedule_name, i.schedule_fire_at, i.hold_token
            from input i
            order by i.ord
            on conflict do nothing
            returning j.id, j.unique_key, j.state, j.queue
        ),
        woke as (
            select count(pg_notify('wharf_wake', 'jobs:' || q.queue)) as n from (select distinct ins.queue from ins) q
        )
        select i.ord, coalesce(ins.id, dup.id, prior.id), coalesce(ins.state, dup.state, prior.state),
               ins.id is not null, false
        from input i
        cross join woke
        left join ins on ins.id = i.id
        left join ins dup on ins.id is null and dup.unique_key = i.unique_key
        left join wharf.jobs prior on ins.id is null and dup.id is null and prior.unique_key = i.unique_key
            and prior.state in ('scheduled', 'available', 'running', 'retryable')
        order by i.ord;
        return;
    end if;

    -- With keys: a row with a key already recorded (`known`), or used by an earlier row of the batch (a
    -- follower), makes nothing and answers like the first call with that key. The others are `fresh`:
    -- each makes a job unless an unfinished job holds its unique_key, and a keyed one records its key
    -- in the same commit. A key that a concurrent transaction recorded after this statement's snapshot
    -- aborts the statement as a serialization failure, so a key never stands for two jobs.
    return query
    with input as materialized (
        select k.*, k.idempotency_key is not null
                    and k.ord <> min(k.ord) over (partition by k.idempotency_key) as follower
        from (
            select coalesce(t.given_id, nextval('wharf.jobs_id_seq')) as id, t.*,
                   wharf.enqueue_valid(t.ord, t.queue, t.kind, t.priority, t.max_attempts, t.retry, t.timeout_ms,
                                       t.unique_key, t.lock_key, t.tags, t.meta, t.idempotency_key) as valid
            from unnest(enqueue_batch.queue, enqueue_batch.kind, enqueue_batch.payload, enqueue_batch.priority,
                        enqueue_batch.run_at, enqueue_batch.max_attempts, enqueue_batch.retry,
                        enqueue_batch.timeout_ms, enqueue_batch.unique_key, enqueue_batch.lock_key,
                        enqueue_batch.tags, enqueue_batch.meta, enqueue_batch.schedule_name,
                        enqueue_batch.schedule_fire_at, enqueue_batch.hold_token, enqueue_batch.id,
                        enqueue_batch.idempotency_key)
                with ordinality as t(queue, kind, payload, priority, run_at, max_attempts, retry, timeout_ms,
                                     unique_key, lock_key, tags, meta, schedule_name, schedule_fire_at,
                                     hold_token, given_id, idempotency_key, ord)
        ) k
    ),
    known as materialized (
        -- One primary-key probe per key (a plan cached while the table was small must not turn into a
        -- scan of it).
        select u.key, kk.job_id, kk.created
        from (select distinct i.idempotency_key as key from input i where i.idempotency_key is not null) u
        cross join lateral (
            select kk.job_id, kk.created from wharf.job_idempotency_keys kk where kk.key = u.key
        ) kk
    ),
    fresh as materialized (
        select i.* from input i
        where i.idempotency_key is null
           or (not i.follower and not exists (select 1 from known k where k.key = i.idempotency_key))
    ),
    ins as (
        insert into wharf.jobs as j (id, queue, kind, payload, state, priority, run_at, max_attempts, retry,
                                     timeout_ms, unique_key, lock_key, tags, meta, schedule_name,
                                     schedule_fire_at, hold_token)
        select i.id, i.queue, i.kind, coalesce(i.payload, 'null'),
               case when i.run_at > now() then 'scheduled' else 'available' end,
               coalesce(i.priority, 0), coalesce(i.run_at, now()), coalesce(i.max_attempts, 20), i.retry,
               i.timeout_ms, i.unique_key, i.lock_key,
               coalesce(array(select jsonb_array_elements_text(i.tags)), '{}'), coalesce(i.meta, '{}'),
               i.schedule_name, i.schedule_fire_at, i.hold_token
        from fresh i
        order by i.ord
        on conflict do nothing
        returning j.id, j.unique_key, j.state, j.queue
    ),
    woke as (
        select count(pg_notify('wharf_wake', 'jobs:' || q.queue)) as n from (select distinct ins.queue from ins) q
    ),
    made as (
        select i.*, coalesce(ins.id, dup.id, prior.id) as job_id,
               coalesce(ins.state, dup.state, prior.state) as job_state, ins.id is not null as created
        from fresh i
        left join ins on ins.id = i.id
        left join ins dup on ins.id is null and dup.unique_key = i.unique_key
        left join wharf.jobs prior on ins.id is null and dup.id is null and prior.unique_key = i.unique_key
            and prior.state in ('scheduled', 'available', 'running', 'retryable')
    ),
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
           coalesce(m.created, lead.created, k.created), m.ord is null
    from input i
    cross join woke
    left join made m on m.ord = i.ord
    left join made lead on i.follower and lead.idempotency_key = i.idempotency_key
    left join known k on m.ord is null and lead.ord is null and k.key = i.idempotency_key
    left join wharf.jobs kj on kj.id = k.job_id
    left join claimed c on c.key = m.idempotency_key
    where case when m.idempotency_key is not null and (m.job_id is null or c.key is null)
               then wharf.idempotency_key_race(m.idempotency_key) else true end
    order by i.ord;
end
$$;

-- One job, for an application's own transaction: the job exists only if that transaction commits, and
-- idle workers are woken at the commit. Returns the job's row: the job it made, or the unfinished job
-- holding its unique_key, or the job a repeated idempotency_key came to (only `id` and `state`
-- 'unknown' set when that job has been pruned). Parameters as `wharf.enqueue_batch`, one value each;
-- tags is a text array here.
create function wharf.enqueue(
    queue text,
    kind text,
    payload jsonb default 'null',
    priority integer default 0,
    run_at timestamptz default null,
    max_attempts integer default 20,
    retry jsonb default null,
    timeout_ms bigint default null,
    unique_key text default null,
    lock_key text default null,
    tags text[] default '{}',
    meta jsonb default '{}',
    idempotency_key text default null)
returns wharf.jobs
language plpgsql as $$
declare
    made record;
    job wharf.jobs;
begin
    select * into made
    from wharf.enqueue_batch(array[queue], array[kind], array[payload], array[priority], array[run_at],
                             array[max_attempts], array[retry], array[timeout_ms], array[unique_key],
                             array[lock_key], array[to_jsonb(tags)], array[meta], array[idempotency_key]);
    if made.job_id is null then
        -- The unfinished job holding unique_key committed after the insert's snapshot was taken: this
        -- statement, with a new snapshot, sees it.
        select * into job from wharf.jobs j
        where j.unique_key = enqueue.unique_key and j.state in ('scheduled', 'available', 'running', 'retryable');
        if not found then
            raise exception 'the job holding unique key % changed meanwhile', unique_key
                using errcode = 'serialization_failure';
        end if;
        return job;
    end if;
    select * into job from wharf.jobs j where j.id = made.job_id;
    if not found then
        job.id := made.job_id;
        job.state := made.job_state;
    end if;
    return job;
end
$$;
