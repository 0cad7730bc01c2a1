-- Cheaper steps (Protocol/workflows.md): a step's completion writes what a plain job's completion and a
-- plain enqueue write, and the run's row once.
--
-- Before, each step was a PL/pgSQL call per item that updated the next step's job after inserting it,
-- and the run's row twice (the trigger ended the run, then the call took it up again): six row versions
-- and about eight statements per step. `wharf.complete_steps` does the common case for all the items
-- of a batch in one set-based statement: the step's job completes (taking its run id on the first
-- step), the next step's job is inserted with its run and step, and the run's row is upserted once
-- (pointing at the next step before the trigger looks at it, so the trigger leaves it alone). Items that
-- are not the common case (a repeat of a completion that committed, a refusal, a step of a cancelled
-- run) go through `wharf.complete_step` one by one, after the set, and answer as before.

-- The job a step's completion enqueued as the run's next step (set by `wharf.complete_steps`).
alter table wharf.jobs add column next_job_id bigint;

-- The trigger acts only when a job becomes final or stops being final (see its body): it no longer
-- fires when a lease takes a step, a batch job or a job with dependents, nor when a step completes
-- with a next step (the run goes on; `wharf.complete_steps` moved it already).
drop trigger jobs_workflow_changed on wharf.jobs;
create trigger jobs_workflow_changed
    after update of state on wharf.jobs
    for each row
    when ((new.batch_id is not null or new.has_dependents or (new.run_id is not null and new.next_job_id is null))
          and new.state is distinct from old.state
          and (new.state in ('completed', 'dead', 'cancelled') or old.state in ('completed', 'dead', 'cancelled')))
    execute function wharf.workflow_job_changed();

-- A run's row is updated once per step: room on its page for the new version keeps it a HOT update.
alter table wharf.runs set (fillfactor = 70);

-- Completes running steps (`ids[i]` under `tokens[i]` with `results[i]`) and enqueues each one's next
-- step (`next_*[i]`, null: the completed step's value), as `wharf.complete_step` does item by item.
-- A row per item: its ordinal, then `wharf.complete_step`'s columns, then the step's queue and when
-- it was leased (for its event and metrics; null when there is no such job).
create function wharf.complete_steps(
    ids bigint[], tokens text[], results jsonb[], retention_ms bigint,
    next_queue text[], next_kind text[], next_payload jsonb[], next_run_at timestamptz[], next_priority integer[],
    next_max_attempts integer[], next_retry jsonb[], next_timeout_ms bigint[])
returns table (ord bigint, outcome text, job_state text, token_matches boolean, run_id bigint, step integer,
               next_job_id bigint, queue text, leased_at timestamptz)
language plpgsql as $$
#variable_conflict use_column
declare
    handled bigint[];
    run_ids bigint[];
    steps integer[];
    nexts bigint[];
    queues text[];
    leased timestamptz[];
    touched bigint;
begin
    -- The common case, set-based: a running job under its token that starts a run, or is the current
    -- step of a run that is running (or failed, when `jobs.retry` ran its dead step again).
    with input as materialized (
        select u.*, nextval('wharf.jobs_id_seq') as next_id
        from unnest(complete_steps.ids, complete_steps.tokens, complete_steps.results, complete_steps.next_queue,
                    complete_steps.next_kind, complete_steps.next_payload, complete_steps.next_run_at,
                    complete_steps.next_priority, complete_steps.next_max_attempts, complete_steps.next_retry,
                    complete_steps.next_timeout_ms)
            with ordinality as u(id, token, result, nqueue, nkind, npayload, nrun_at, npriority, nmax_attempts,
                                 nretry, ntimeout_ms, ord)
    ),
    done as (
        update wharf.jobs x
        set state = 'completed', result = i.result, finished_at = now(), lease_expires_at = null,
            prune_at = now() + coalesce((select q.completed_retention_ms from wharf.queues q where q.name = x.queue),
                                        complete_steps.retention_ms) * interval '1 millisecond',
            run_id = coalesce(x.run_id, x.id), run_step = coalesce(x.run_step, 0), next_job_id = i.next_id
        from input i
        where x.id = i.id and x.lease_token = i.token and x.state = 'running'
          -- (A scalar subquery: one primary-key probe per row, never a hash of every running run.)
          and (x.run_id is null
               or (select r.state from wharf.runs r where r.id = x.run_id and r.current_job_id = x.id)
                  in ('running', 'failed'))
        returning i.ord, i.next_id, x.leased_at as leased, x.run_id as rid, x.run_step as s, x.result as output, x.queue as q, x.kind as k,
                  coalesce(i.nqueue, x.queue) as nqueue, coalesce(i.nkind, x.kind) as nkind,
                  coalesce(i.npayload, 'null') as npayload, i.nrun_at, coalesce(i.npriority, x.priority) as npriority,
                  coalesce(i.nmax_attempts, x.max_attempts) as nmax_attempts, coalesce(i.nretry, x.retry) as nretry,
                  coalesce(i.ntimeout_ms, x.timeout_ms) as ntimeout_ms, x.tags as ntags, x.meta as nmeta
    ),
    made as (
        insert into wharf.jobs as j (id, queue, kind, payload, state, priority, run_at, max_attempts, retry,
                                     timeout_ms, tags, meta, run_id, run_step)
        select d.next_id, d.nqueue, d.nkind, d.npayload,
               case when d.nrun_at > now() then 'scheduled' else 'available' end,
               d.npriority, coalesce(d.nrun_at, now()), d.nmax_attempts, d.nretry, d.ntimeout_ms, d.ntags,
               d.nmeta || jsonb_build_object('run', jsonb_build_object('id', d.rid::text, 'step', d.s + 1)),
               d.rid, d.s + 1
        from done d
        where wharf.enqueue_valid(d.ord, d.nqueue, d.nkind, d.npriority, d.nmax_attempts, d.nretry, d.ntimeout_ms,
                                  null, null, to_jsonb(d.ntags), d.nmeta, null)
        returning j.queue, j.state
    ),
    moved as (
        -- The first step's completion makes the run (its id is the step's job's).
        insert into wharf.runs as r (id, state, step, current_job_id, queue, kind, outputs)
        select d.rid, 'running', d.s + 1, d.next_id, d.q, d.k, jsonb_build_array(d.output)
        from done d
        on conflict (id) do update
        set state = 'running', step = excluded.step, current_job_id = excluded.current_job_id,
            outputs = r.outputs || excluded.outputs, finished_at = null, updated_at = now()
        returning r.id
    ),
    woke as (
        select count(pg_notify('wharf_wake', 'jobs:' || w.queue)) as n
        from (select distinct m.queue from made m where m.state = 'available') w
    )
    -- (`moved` and `woke` are read once each, by uncorrelated subqueries.)
    select coalesce(array_agg(d.ord), '{}'), array_agg(d.rid), array_agg(d.s), array_agg(d.next_id), array_agg(d.q),
           array_agg(d.leased), (select count(*) from moved) + (select w.n from woke w)
    into handled, run_ids, steps, nexts, queues, leased, touched
    from done d;
    return query
    select h.ord, 'done'::text, 'completed'::text, true, h.rid, h.s, h.nid, h.q, h.leased
    from unnest(handled, run_ids, steps, nexts, queues, leased) as h(ord, rid, s, nid, q, leased);

    -- The rest, one by one (they see what the statement above did).
    for i in 1 .. coalesce(cardinality(complete_steps.ids), 0) loop
        continue when i = any(handled);
        return query
        select i::bigint, s.outcome, s.job_state, s.token_matches, s.run_id, s.step, s.next_job_id, j.queue,
               j.leased_at
        from wharf.complete_step(complete_steps.ids[i], complete_steps.tokens[i], complete_steps.results[i],
                                 complete_steps.retention_ms, complete_steps.next_queue[i], complete_steps.next_kind[i],
                                 complete_steps.next_payload[i], complete_steps.next_run_at[i],
                                 complete_steps.next_priority[i], complete_steps.next_max_attempts[i],
                                 complete_steps.next_retry[i], complete_steps.next_timeout_ms[i]) s
        join wharf.jobs j on j.id = complete_steps.ids[i];
        if not found then
            -- No such job.
            return query select i::bigint, null::text, null::text, null::boolean, null::bigint, null::integer,
                                null::bigint, null::text, null::timestamptz;
        end if;
    end loop;
end
$$;
