-- Workflows (Protocol/workflows.md): multi-step runs, batches with callbacks, dependencies.
--
-- Plain jobs pay nothing at enqueue, lease, complete or fail: the new columns are nullable with no
-- default (no table rewrite), the lease and the hot complete/fail statements are unchanged, and the
-- one trigger fires only for rows that belong to a run or a batch or have dependents (its WHEN clause
-- is checked on the row alone).

-- A run: the chain of steps a job starts when a worker completes it with `next`. Its id is the id of
-- its first step's job.
create table wharf.runs (
    id bigint not null,
    state text not null,
    -- The index of the step now current (0-based) and its job.
    step integer not null,
    current_job_id bigint not null,
    queue text not null,
    kind text not null,
    -- Each completed step's output (its job's result), by step index.
    outputs jsonb not null default '[]',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    finished_at timestamptz,
    constraint runs_pkey primary key (id),
    constraint runs_state_check check (state in ('running', 'completed', 'failed', 'cancelled')),
    constraint runs_finished_check check ((state = 'running') = (finished_at is null))
);
create index runs_state_idx on wharf.runs (state, id);

create sequence wharf.batches_id_seq as bigint;

-- A batch: the jobs of one `jobs.enqueueBatch {batch}`; its callbacks are enqueued exactly once, by the
-- transaction that moves its last job to a final state.
create table wharf.batches (
    id bigint not null default nextval('wharf.batches_id_seq'),
    total integer not null,
    completed integer not null default 0,
    dead integer not null default 0,
    cancelled integer not null default 0,
    -- Ids of the jobs that ended dead or cancelled.
    failed_ids bigint[] not null default '{}',
    -- {onSuccess?, onFailure?, onFinish?}: job templates {queue, kind, payload?, priority?, maxAttempts?}.
    callbacks jsonb not null,
    -- {onSuccess: jobId, ...}: the callback jobs made when the batch finished.
    callback_jobs jsonb,
    created_at timestamptz not null default now(),
    finished_at timestamptz,
    constraint batches_pkey primary key (id),
    constraint batches_counts_check check (completed + dead + cancelled <= total)
);
alter sequence wharf.batches_id_seq owned by wharf.batches.id;

alter table wharf.jobs add column run_id bigint;
alter table wharf.jobs add column run_step integer;
alter table wharf.jobs add column batch_id bigint;
-- Dependencies: the job's `dependsOn` ids, how many are not final yet, and what a dependency that
-- ends dead or cancelled does to it ('cancel' or 'run').
alter table wharf.jobs add column depends_on bigint[];
alter table wharf.jobs add column dependencies_left integer;
alter table wharf.jobs add column on_dependency_failure text;
-- Set on a job that some waiting job depends on.
alter table wharf.jobs add column has_dependents boolean;

-- `waiting`: a job whose dependencies have not all finished. No lease takes it.
alter table wharf.jobs drop constraint jobs_state_check;
alter table wharf.jobs add constraint jobs_state_check check (
    state in ('scheduled', 'available', 'running', 'retryable', 'completed', 'dead', 'cancelled', 'waiting'));

create index jobs_run_idx on wharf.jobs (run_id, run_step) where run_id is not null;
create index jobs_batch_idx on wharf.jobs (batch_id) where batch_id is not null;

-- Which waiting job waits for which dependency; a row goes when its dependency finishes.
create table wharf.job_dependencies (
    depends_on_id bigint not null,
    job_id bigint not null,
    constraint job_dependencies_pkey primary key (depends_on_id, job_id)
);

-- Enqueues batch `b`'s callbacks (it has just finished); returns {onSuccess: jobId, ...}.
create function wharf.fire_batch_callbacks(b wharf.batches) returns jsonb
language plpgsql as $$
declare
    made jsonb := '{}';
    cb text;
    t jsonb;
    job_id bigint;
begin
    foreach cb in array array['onSuccess', 'onFailure', 'onFinish'] loop
        t := b.callbacks -> cb;
        continue when t is null or jsonb_typeof(t) <> 'object';
        continue when cb = 'onSuccess' and b.dead + b.cancelled > 0;
        continue when cb = 'onFailure' and b.dead + b.cancelled = 0;
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
    end loop;
    return made;
end
$$;

-- After a state change of a job in a run, in a batch, or with dependents.
create function wharf.workflow_job_changed() returns trigger
language plpgsql as $$
declare
    is_final boolean := new.state in ('completed', 'dead', 'cancelled');
    was_final boolean := old.state in ('completed', 'dead', 'cancelled');
    b wharf.batches;
    d record;
    waiting_ids bigint[];
    released_state text;
    released_queue text;
begin
    if new.run_id is not null and is_final then
        -- The run's current step finished: the run ends with it, unless `wharf.complete_step` goes on
        -- (in the same transaction) with a next step.
        update wharf.runs r
        set state = case new.state when 'completed' then 'completed' when 'dead' then 'failed' else 'cancelled' end,
            outputs = case when new.state = 'completed' then r.outputs || jsonb_build_array(new.result) else r.outputs end,
            finished_at = now(), updated_at = now()
        where r.id = new.run_id and r.current_job_id = new.id
          -- A failed run's dead step that `jobs.retry` ran again and that completed takes the run up.
          and (r.state = 'running' or (r.state = 'failed' and new.state = 'completed'));
    end if;

    if new.batch_id is not null and is_final and not was_final then
        update wharf.batches x
        set completed = x.completed + (new.state = 'completed')::int,
            dead = x.dead + (new.state = 'dead')::int,
            cancelled = x.cancelled + (new.state = 'cancelled')::int,
            failed_ids = case when new.state = 'completed' then x.failed_ids else x.failed_ids || new.id end
        where x.id = new.batch_id and x.finished_at is null
        returning x.* into b;
        -- The row lock on the batch orders its jobs' finishes: exactly one sees the last count.
        if found and b.completed + b.dead + b.cancelled = b.total then
            update wharf.batches x set finished_at = now(), callback_jobs = wharf.fire_batch_callbacks(b)
            where x.id = b.id;
        end if;
    elsif new.batch_id is not null and was_final and not is_final then
        -- `jobs.retry` of a dead or cancelled job of an unfinished batch: it is pending again.
        update wharf.batches x
        set dead = x.dead - (old.state = 'dead')::int, cancelled = x.cancelled - (old.state = 'cancelled')::int,
            failed_ids = array_remove(x.failed_ids, new.id)
        where x.id = new.batch_id and x.finished_at is null;
    end if;

    if new.has_dependents and is_final then
        with gone as (
            delete from wharf.job_dependencies g where g.depends_on_id = new.id returning g.job_id
        )
        select array_agg(gone.job_id) into waiting_ids from gone;
        for d in
            select j.id, j.on_dependency_failure, j.dependencies_left
            from wharf.jobs j
            where j.id = any(coalesce(waiting_ids, '{}')) and j.state = 'waiting'
            order by j.id
        loop
            if new.state <> 'completed' and d.on_dependency_failure = 'cancel' then
                update wharf.jobs j
                set state = 'cancelled', finished_at = now(), dependencies_left = 0,
                    last_error = jsonb_build_object('reason', 'dependency_failed', 'dependency', new.id::text,
                                                    'dependencyState', new.state)
                where j.id = d.id and j.state = 'waiting';
            else
                update wharf.jobs j
                set dependencies_left = j.dependencies_left - 1,
                    state = case when j.dependencies_left > 1 then 'waiting'
                                 when j.run_at > now() then 'scheduled' else 'available' end
                where j.id = d.id and j.state = 'waiting'
                returning j.state, j.queue into released_state, released_queue;
                if released_state = 'available' then
                    perform pg_notify('wharf_wake', 'jobs:' || released_queue);
                end if;
            end if;
        end loop;
    end if;
    return null;
end
$$;

create trigger jobs_workflow_changed
    after update of state on wharf.jobs
    for each row
    when ((new.run_id is not null or new.batch_id is not null or new.has_dependents)
          and new.state is distinct from old.state)
    execute function wharf.workflow_job_changed();

-- Completes running job `job_id` under `token` with `result` and, in the same transaction, enqueues
-- the run's next step (the job's queue, kind, priority, attempts, retry and timeout unless given).
-- The first step's completion makes the run (its id is the job's). Outcome 'done' with the run, the
-- completed step and the next step's job; a repeat of a completion that committed answers the same;
-- otherwise 'refused' with the job's state and whether the token is the one it held (no row: no job).
create function wharf.complete_step(
    job_id bigint, token text, result jsonb, retention_ms bigint,
    next_queue text, next_kind text, next_payload jsonb, next_run_at timestamptz, next_priority integer,
    next_max_attempts integer, next_retry jsonb, next_timeout_ms bigint)
returns table (outcome text, job_state text, token_matches boolean, run_id bigint, step integer, next_job_id bigint)
language plpgsql as $$
#variable_conflict use_variable
declare
    j wharf.jobs;
    rid bigint;
    s integer;
    nid bigint;
begin
    -- A step of a cancelled run (`jobs.retry` ran it again) does not take the run up: it is cancelled,
    -- and its completion refused as cancelled.
    select x.* into j from wharf.jobs x where x.id = job_id;
    if j.run_id is not null and exists (select 1 from wharf.runs r where r.id = j.run_id and r.state = 'cancelled') then
        update wharf.jobs x
        set state = 'cancelled', finished_at = now(), lease_expires_at = null,
            prune_at = now() + retention_ms * interval '1 millisecond'
        where x.id = job_id and x.lease_token = token and x.state = 'running';
        return query select 'refused', 'cancelled', coalesce(j.lease_token = token, false), null::bigint,
                            null::integer, null::bigint;
        return;
    end if;
    update wharf.jobs x
    set state = 'completed', result = complete_step.result, finished_at = now(), lease_expires_at = null,
        prune_at = now() + coalesce((select q.completed_retention_ms from wharf.queues q where q.name = x.queue),
                                    retention_ms) * interval '1 millisecond'
    where x.id = job_id and x.lease_token = token and x.state = 'running'
    returning x.* into j;
    if not found then
        select x.* into j from wharf.jobs x where x.id = job_id;
        if not found then return; end if;
        if j.state = 'completed' and j.lease_token = token and j.run_id is not null then
            -- A repeat: the completion and its next step committed before.
            return query
            select 'done', 'completed', true, j.run_id, j.run_step, n.id
            from wharf.jobs n where n.run_id = j.run_id and n.run_step = j.run_step + 1;
            if found then return; end if;
        end if;
        return query select 'refused', j.state, coalesce(j.lease_token = token, false), null::bigint, null::integer,
                            null::bigint;
        return;
    end if;
    if j.run_id is null then
        rid := j.id;
        s := 0;
        insert into wharf.runs (id, state, step, current_job_id, queue, kind, outputs)
        values (rid, 'running', 0, j.id, j.queue, j.kind, jsonb_build_array(result));
        update wharf.jobs x set run_id = rid, run_step = 0 where x.id = j.id;
    else
        rid := j.run_id;
        s := j.run_step;
    end if;
    select e.job_id into nid
    from wharf.enqueue_batch(
        array[coalesce(next_queue, j.queue)], array[coalesce(next_kind, j.kind)], array[next_payload],
        array[coalesce(next_priority, j.priority)], array[next_run_at],
        array[coalesce(next_max_attempts, j.max_attempts)], array[coalesce(next_retry, j.retry)],
        array[coalesce(next_timeout_ms, j.timeout_ms)], null, null, array[to_jsonb(j.tags)],
        array[j.meta || jsonb_build_object('run', jsonb_build_object('id', rid::text, 'step', s + 1))]) e;
    update wharf.jobs x set run_id = rid, run_step = s + 1 where x.id = nid;
    update wharf.runs r
    set state = 'running', step = s + 1, current_job_id = nid, finished_at = null, updated_at = now()
    where r.id = rid;
    return query select 'done', 'completed', true, rid, s, nid;
end
$$;

-- Enqueues jobs as `wharf.enqueue_batch` does (the same arrays), and: with `batch` (callbacks), makes a
-- batch of them; with `depends_on` (a JSON array of job id strings per job, or null), makes each job
-- with unfinished dependencies `waiting`. A dependency already dead or cancelled applies
-- `on_dependency_failure` at once ('cancel' makes the job cancelled; 'run' counts it as done). Returns
-- a row per job (ord, job_id, job_state) and the batch id; or, when a dependency does not exist, makes
-- nothing and returns one row: the job's ord, the missing id, and job_state 'missing_dependency'.
create function wharf.enqueue_workflow(
    queue text[], kind text[], payload jsonb[], priority integer[], run_at timestamptz[], max_attempts integer[],
    retry jsonb[], timeout_ms bigint[], lock_key text[], tags jsonb[], meta jsonb[],
    depends_on jsonb[], on_dependency_failure text[], batch jsonb)
returns table (ord bigint, job_id bigint, job_state text, batch_id bigint)
language plpgsql as $$
#variable_conflict use_column
declare
    bid bigint;
    made bigint[];
    i integer;
    deps bigint[];
    missing bigint;
    left_count integer;
    failed_count integer;
    policy text;
    all_deps bigint[];
    missing_ord bigint;
begin
    -- Every dependency, locked in id order (a finishing dependency waits for this commit and then sees
    -- the jobs waiting for it); one that does not exist refuses the call before anything is made.
    select array_agg(distinct (v #>> '{}')::bigint) into all_deps
    from unnest(enqueue_workflow.depends_on) u(list), jsonb_array_elements(u.list) v;
    if all_deps is not null then
        perform 1 from wharf.jobs d where d.id = any(all_deps) order by d.id for update;
        select u.n, (v #>> '{}')::bigint into missing_ord, missing
        from unnest(enqueue_workflow.depends_on) with ordinality u(list, n), jsonb_array_elements(u.list) v
        where not exists (select 1 from wharf.jobs d where d.id = (v #>> '{}')::bigint)
        order by u.n
        limit 1;
        if missing_ord is not null then
            return query select missing_ord, missing, 'missing_dependency'::text, null::bigint;
            return;
        end if;
    end if;
    select array_agg(e.job_id order by e.ord) into made
    from wharf.enqueue_batch(
        queue => enqueue_workflow.queue, kind => enqueue_workflow.kind, payload => enqueue_workflow.payload,
        priority => enqueue_workflow.priority, run_at => enqueue_workflow.run_at,
        max_attempts => enqueue_workflow.max_attempts, retry => enqueue_workflow.retry,
        timeout_ms => enqueue_workflow.timeout_ms, lock_key => enqueue_workflow.lock_key,
        tags => enqueue_workflow.tags, meta => enqueue_workflow.meta) e;
    if enqueue_workflow.batch is not null then
        insert into wharf.batches (total, callbacks) values (cardinality(made), enqueue_workflow.batch)
        returning id into bid;
        update wharf.jobs j set batch_id = bid where j.id = any(made);
    end if;
    for i in 1 .. cardinality(made) loop
        continue when enqueue_workflow.depends_on is null or enqueue_workflow.depends_on[i] is null
            or jsonb_array_length(enqueue_workflow.depends_on[i]) = 0;
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
            where j.id = made[i];
        elsif left_count > 0 then
            update wharf.jobs d set has_dependents = true
            where d.id = any(deps) and d.state not in ('completed', 'dead', 'cancelled')
              and d.has_dependents is not true;
            insert into wharf.job_dependencies (depends_on_id, job_id)
            select d.id, made[i] from wharf.jobs d
            where d.id = any(deps) and d.state not in ('completed', 'dead', 'cancelled');
            update wharf.jobs j
            set state = 'waiting', depends_on = deps, dependencies_left = left_count, on_dependency_failure = policy
            where j.id = made[i];
        else
            update wharf.jobs j set depends_on = deps, dependencies_left = 0, on_dependency_failure = policy
            where j.id = made[i];
        end if;
    end loop;
    return query
    select t.n, t.id, j.state, bid
    from unnest(made) with ordinality as t(id, n) join wharf.jobs j on j.id = t.id
    order by t.n;
end
$$;

-- Cancels run `run_id`: its current step's job if it is not finished (a running one's completion is
-- then refused), and the run. Returns the run's state before, and the job cancelled (or null).
create function wharf.cancel_run(run_id bigint, retention_ms bigint)
returns table (previous_state text, cancelled_job_id bigint)
language plpgsql as $$
#variable_conflict use_variable
declare
    r wharf.runs;
    jid bigint;
begin
    select x.* into r from wharf.runs x where x.id = run_id for update;
    if not found then return; end if;
    if r.state <> 'running' then
        return query select r.state, null::bigint;
        return;
    end if;
    update wharf.jobs j
    set state = 'cancelled', finished_at = now(), lease_expires_at = null,
        prune_at = now() + coalesce((select q.completed_retention_ms from wharf.queues q where q.name = j.queue),
                                    retention_ms) * interval '1 millisecond'
    where j.id = r.current_job_id and j.state in ('scheduled', 'available', 'running', 'retryable', 'waiting')
    returning j.id into jid;
    update wharf.runs x set state = 'cancelled', finished_at = now(), updated_at = now()
    where x.id = run_id and x.state = 'running';
    return query select 'running'::text, jid;
end
$$;
