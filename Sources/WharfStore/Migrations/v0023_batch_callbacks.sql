-- Batches, finished (Protocol/workflows.md): a callback may be a webhook delivery, and the jobs of a
-- workflow enqueue (a batch, or `dependsOn`) take uniqueKey and idempotencyKey as plain enqueues do.

-- A waiting job (its dependencies not all final) is unfinished, so it holds its uniqueKey like the other
-- unfinished states: the index that keeps one unfinished job per key takes `waiting` in, and the
-- enqueue functions find such a job as the key's holder. Until now a waiting job could carry no key
-- (refused at enqueue); a key set on one by hand that another unfinished job also holds is cleared
-- (the first holder, hot before waiting, then the lowest id, keeps it) so that the index can be built.
update wharf.jobs j set unique_key = null
where j.state = 'waiting' and j.unique_key is not null
  and exists (select 1 from wharf.jobs o
              where o.unique_key = j.unique_key and o.id <> j.id
                and (o.state in ('scheduled', 'available', 'running', 'retryable')
                     or (o.state = 'waiting' and o.id < j.id)));
drop index wharf.jobs_unique_key_idx;
create unique index jobs_unique_key_idx on wharf.jobs (unique_key)
    where unique_key is not null and state in ('scheduled', 'available', 'running', 'retryable', 'waiting');

-- As in v0015, except that a waiting job holding a row's unique_key is found as its holder.
create or replace function wharf.enqueue_batch(
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
            and prior.state in ('scheduled', 'available', 'running', 'retryable', 'waiting')
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
            and prior.state in ('scheduled', 'available', 'running', 'retryable', 'waiting')
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
-- As in v0015, except that a waiting job holding unique_key is found as its holder.
create or replace function wharf.enqueue(
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
        where j.unique_key = enqueue.unique_key and j.state in ('scheduled', 'available', 'running', 'retryable', 'waiting');
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
-- v0020's enqueue_workflow, replaced below by one that takes unique and idempotency keys (its arguments
-- and its rows change, so it is dropped rather than replaced).
drop function wharf.enqueue_workflow(
    text[], text[], jsonb[], integer[], timestamptz[], integer[], jsonb[], bigint[], text[], jsonb[], jsonb[],
    jsonb[], text[], jsonb);

-- Makes batch `b`'s callbacks (it has just finished, in this transaction); returns what each one made,
-- by callback name: a job callback's job id (a string), or for a webhook callback
-- `{endpointId, deliveryId}`, or `{endpointId, deliveryId: null, skipped: "endpoint_not_found"}` when
-- its endpoint was removed since the enqueue. Nothing here can fail the transaction that finished the
-- batch's last job: job templates were checked at enqueue, and a removed endpoint makes no delivery.
--
-- A webhook callback `{webhook: {endpointId, event?, payload?}}` queues one delivery through
-- `wharf.send_webhooks`, the one writer of deliveries (signed, retried, listed by `webhooks.deliveries`,
-- dispatched when this transaction commits: its NOTIFY wakes every replica's dispatcher). Its type is
-- `event`, by default `batch.succeeded`, `batch.failed` or `batch.finished`; its data is what a job
-- callback gets as its payload, `{batchId, callback, total, completed, dead, cancelled, failedIds,
-- payload}`; its message id is derived from `batch:<id>:<callback>`, so it is one message whatever happens.
create or replace function wharf.fire_batch_callbacks(b wharf.batches) returns jsonb
language plpgsql as $$
declare
    made jsonb := '{}';
    cb text;
    t jsonb;
    w jsonb;
    job_id bigint;
    endpoint bigint;
    delivery bigint;
    data text;
begin
    foreach cb in array array['onSuccess', 'onFailure', 'onFinish'] loop
        t := b.callbacks -> cb;
        continue when t is null or jsonb_typeof(t) <> 'object';
        continue when cb = 'onSuccess' and b.dead + b.cancelled > 0;
        continue when cb = 'onFailure' and b.dead + b.cancelled = 0;
        w := t -> 'webhook';
        if w is null then
            select e.job_id into job_id
            from wharf.enqueue_batch(
                array[t ->> 'queue'], array[t ->> 'kind'],
                array[jsonb_build_object(
                    'batchId', b.id::text, 'callback', cb, 'total', b.total, 'completed', b.completed,
                    'dead', b.dead, 'cancelled', b.cancelled,
                    'failedIds', (select coalesce(jsonb_agg(f::text order by f), '[]') from unnest(b.failed_ids) f),
                    'payload', coalesce(t -> 'payload', 'null'))],
                array[coalesce((t ->> 'priority')::integer, 0)], null,
                array[coalesce((t ->> 'maxAttempts')::integer, 20)]) e;
            made := made || jsonb_build_object(cb, job_id::text);
            continue;
        end if;
        endpoint := (w ->> 'endpointId')::bigint;
        -- The endpoint's row is locked (key share) until this transaction ends: a removal that committed
        -- first leaves no row here, and one that comes later waits, so the delivery's foreign key holds.
        perform 1 from wharf.webhook_endpoints e where e.id = endpoint for key share;
        if not found then
            made := made || jsonb_build_object(cb, jsonb_build_object(
                'endpointId', endpoint::text, 'deliveryId', null, 'skipped', 'endpoint_not_found'));
            continue;
        end if;
        -- Compact, in the order of a job callback's payload.
        data := '{"batchId":' || wharf.json_string(b.id::text) || ',"callback":' || wharf.json_string(cb)
            || ',"total":' || b.total || ',"completed":' || b.completed || ',"dead":' || b.dead
            || ',"cancelled":' || b.cancelled || ',"failedIds":['
            || coalesce((select string_agg(wharf.json_string(f::text), ',' order by f) from unnest(b.failed_ids) f), '')
            || '],"payload":' || coalesce((w -> 'payload')::text, 'null') || '}';
        select s.delivery_id into delivery
        from wharf.send_webhooks(
            array[endpoint],
            array[coalesce(w ->> 'event', case cb when 'onSuccess' then 'batch.succeeded'
                                                  when 'onFailure' then 'batch.failed' else 'batch.finished' end)],
            array[data], null, null, null, null, array['batch:' || b.id || ':' || cb], null, null) s;
        made := made || jsonb_build_object(cb, jsonb_build_object('endpointId', endpoint::text,
                                                                   'deliveryId', delivery::text));
    end loop;
    return made;
end
$$;

-- Enqueues jobs as `wharf.enqueue_batch` does (the same arrays, with unique_key and idempotency_key), and:
-- with `batch` (callbacks), makes a batch of the jobs it made; with `depends_on` (a JSON array of job id
-- strings per job, or null), makes each job it made with unfinished dependencies `waiting`. A dependency
-- already dead or cancelled applies `on_dependency_failure` at once ('cancel' makes the job cancelled;
-- 'run' counts it as done).
--
-- A row whose unique_key an unfinished job holds (waiting included) comes to that job, and a row whose
-- idempotency_key was recorded comes to the job the first call came to (replayed): neither makes a job,
-- nor changes the job it comes to (its dependencies and batch stay as they are), nor is a member of
-- this call's batch. The batch's total counts the jobs made; when the call made none, no batch is made,
-- and batch_id is the batch of the first replayed job that has one (a repeat of a whole call answers
-- the first call's batch), or null.
--
-- Returns a row per job (ord, job_id, job_state, created, replayed, batch_id). Or it makes nothing and
-- returns one refusal row: job_state 'missing_dependency' with the job's ord and the missing id (a
-- replayed row's dependencies are not looked at); or 'missing_endpoint' with the callback's ord
-- (1 onSuccess, 2 onFailure, 3 onFinish) and the endpoint id of its webhook, which does not exist.
create function wharf.enqueue_workflow(
    queue text[], kind text[], payload jsonb[], priority integer[], run_at timestamptz[], max_attempts integer[],
    retry jsonb[], timeout_ms bigint[], unique_key text[], lock_key text[], tags jsonb[], meta jsonb[],
    idempotency_key text[], depends_on jsonb[], on_dependency_failure text[], batch jsonb)
returns table (ord bigint, job_id bigint, job_state text, created boolean, replayed boolean, batch_id bigint)
language plpgsql as $$
#variable_conflict use_column
declare
    bid bigint;
    ids bigint[];
    states text[];
    created_flags boolean[];
    replay_flags boolean[];
    made_flags boolean[] := '{}';
    made bigint[];
    known text[];
    i integer;
    deps bigint[];
    missing bigint;
    left_count integer;
    failed_count integer;
    policy text;
    all_deps bigint[];
    missing_ord bigint;
    holder bigint;
    holder_state text;
begin
    -- A webhook callback's endpoint must exist (a removal later is recorded when the batch finishes).
    if enqueue_workflow.batch is not null then
        select c.n, (enqueue_workflow.batch #>> array[c.cb, 'webhook', 'endpointId'])::bigint
        into missing_ord, missing
        from unnest(array['onSuccess', 'onFailure', 'onFinish']) with ordinality c(cb, n)
        where enqueue_workflow.batch #> array[c.cb, 'webhook', 'endpointId'] is not null
          and not exists (select 1 from wharf.webhook_endpoints e
                          where e.id = (enqueue_workflow.batch #>> array[c.cb, 'webhook', 'endpointId'])::bigint)
        order by c.n
        limit 1;
        if missing_ord is not null then
            return query select missing_ord, missing, 'missing_endpoint'::text, false, false, null::bigint;
            return;
        end if;
    end if;
    -- Rows whose key was recorded are replays: they make nothing, so their dependencies do not matter.
    select coalesce(array_agg(k.key), '{}') into known
    from wharf.job_idempotency_keys k where k.key = any(enqueue_workflow.idempotency_key);
    -- Every dependency, locked in id order (a finishing dependency waits for this commit and then sees
    -- the jobs waiting for it); one that does not exist refuses the call before anything is made.
    select array_agg(distinct (v #>> '{}')::bigint) into all_deps
    from unnest(enqueue_workflow.depends_on, enqueue_workflow.idempotency_key) u(list, key),
         jsonb_array_elements(u.list) v
    where u.key is null or not u.key = any(known);
    if all_deps is not null then
        perform 1 from wharf.jobs d where d.id = any(all_deps) order by d.id for update;
        select u.n, (v #>> '{}')::bigint into missing_ord, missing
        from unnest(enqueue_workflow.depends_on, enqueue_workflow.idempotency_key) with ordinality u(list, key, n),
             jsonb_array_elements(u.list) v
        where (u.key is null or not u.key = any(known))
          and not exists (select 1 from wharf.jobs d where d.id = (v #>> '{}')::bigint)
        order by u.n
        limit 1;
        if missing_ord is not null then
            return query select missing_ord, missing, 'missing_dependency'::text, false, false, null::bigint;
            return;
        end if;
    end if;
    select array_agg(e.job_id order by e.ord), array_agg(e.job_state order by e.ord),
           array_agg(e.created order by e.ord), array_agg(e.replayed order by e.ord)
    into ids, states, created_flags, replay_flags
    from wharf.enqueue_batch(
        queue => enqueue_workflow.queue, kind => enqueue_workflow.kind, payload => enqueue_workflow.payload,
        priority => enqueue_workflow.priority, run_at => enqueue_workflow.run_at,
        max_attempts => enqueue_workflow.max_attempts, retry => enqueue_workflow.retry,
        timeout_ms => enqueue_workflow.timeout_ms, unique_key => enqueue_workflow.unique_key,
        lock_key => enqueue_workflow.lock_key, tags => enqueue_workflow.tags, meta => enqueue_workflow.meta,
        idempotency_key => enqueue_workflow.idempotency_key) e;
    for i in 1 .. cardinality(ids) loop
        continue when ids[i] is not null;
        -- The unfinished job holding the row's unique_key committed after the insert's snapshot was
        -- taken: this statement, with a new snapshot, sees it.
        select j.id, j.state into holder, holder_state from wharf.jobs j
        where j.unique_key = enqueue_workflow.unique_key[i]
          and j.state in ('scheduled', 'available', 'running', 'retryable', 'waiting');
        if not found then
            raise exception 'the job holding unique key % changed meanwhile', enqueue_workflow.unique_key[i]
                using errcode = 'serialization_failure';
        end if;
        ids[i] := holder;
        states[i] := holder_state;
    end loop;
    -- `created` of a replayed row is the first call's: this call made only the rows created and not replayed.
    for i in 1 .. cardinality(ids) loop
        made_flags[i] := created_flags[i] and not replay_flags[i];
    end loop;
    made := array(select ids[n] from generate_subscripts(ids, 1) n where made_flags[n] order by n);
    if enqueue_workflow.batch is not null then
        if cardinality(made) > 0 then
            insert into wharf.batches (total, callbacks) values (cardinality(made), enqueue_workflow.batch)
            returning id into bid;
            update wharf.jobs j set batch_id = bid where j.id = any(made);
        else
            select j.batch_id into bid
            from generate_subscripts(ids, 1) n join wharf.jobs j on j.id = ids[n]
            where replay_flags[n] and j.batch_id is not null
            order by n
            limit 1;
        end if;
    end if;
    for i in 1 .. cardinality(ids) loop
        continue when not made_flags[i] or enqueue_workflow.depends_on is null
            or enqueue_workflow.depends_on[i] is null or jsonb_array_length(enqueue_workflow.depends_on[i]) = 0;
        select array_agg(distinct (v #>> '{}')::bigint) into deps
        from jsonb_array_elements(enqueue_workflow.depends_on[i]) v;
        policy := coalesce(enqueue_workflow.on_dependency_failure[i], 'cancel');
        select count(*) filter (where d.state not in ('completed', 'dead', 'cancelled')),
               count(*) filter (where d.state in ('dead', 'cancelled'))
        into left_count, failed_count
        from wharf.jobs d where d.id = any(deps);
        if failed_count > 0 and policy = 'cancel' then
            update wharf.jobs j
            set state = 'cancelled', finished_at = now(), depends_on = deps, dependencies_left = 0,
                on_dependency_failure = policy,
                last_error = jsonb_build_object('reason', 'dependency_failed')
            where j.id = ids[i];
        elsif left_count > 0 then
            update wharf.jobs d set has_dependents = true
            where d.id = any(deps) and d.state not in ('completed', 'dead', 'cancelled')
              and d.has_dependents is not true;
            insert into wharf.job_dependencies (depends_on_id, job_id)
            select d.id, ids[i] from wharf.jobs d
            where d.id = any(deps) and d.state not in ('completed', 'dead', 'cancelled');
            update wharf.jobs j
            set state = 'waiting', depends_on = deps, dependencies_left = left_count, on_dependency_failure = policy
            where j.id = ids[i];
        else
            update wharf.jobs j set depends_on = deps, dependencies_left = 0, on_dependency_failure = policy
            where j.id = ids[i];
        end if;
    end loop;
    return query
    select n::bigint, ids[n], coalesce(j.state, states[n]), created_flags[n], replay_flags[n], bid
    from generate_subscripts(ids, 1) n left join wharf.jobs j on j.id = ids[n]
    order by n;
end
$$;
