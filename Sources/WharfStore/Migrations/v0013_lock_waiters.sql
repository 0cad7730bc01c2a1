-- Waiting for a lock costs O(1) per waiter.
--
-- * Replicas keep their queued waiters counting by refreshing one row each here (every second), where
--   they used to rewrite every waiter's row: a waiter row counts while its own alive_until (set when it
--   is queued) or its replica's has not passed.
-- * A lease remembers what its `requestId` was granted with (ttl_ms; lock_delay_ms is already there) and
--   whether it is bound to a session (session_bound, the session in session_id), so that a retry with
--   other values is refused and a bound retry from another connection moves the binding.
create table wharf.lock_replicas (
    replica_id text not null,
    alive_until timestamptz not null,
    constraint lock_replicas_pkey primary key (replica_id)
);

alter table wharf.locks
    add column ttl_ms bigint,
    add column session_bound boolean not null default false;


-- When the first live waiter for `lock_name` queued before `before` (any, when null) stops counting;
-- null when there is none. One probe of lock_waiters_name_seq_idx in line order that stops at the first
-- live row, whatever the length of the line. The settings and the row comparison (which only that index
-- can serve) pin that plan: estimated on a small or unanalyzed table, the planner would rather fetch the
-- whole line with a bitmap scan and sort it, or walk the primary key through every other name's waiters,
-- costs per probe that grow with the table.
create function wharf.lock_line_head(lock_name text, before bigint) returns timestamptz
language sql stable
set enable_bitmapscan = off
set enable_seqscan = off
set enable_sort = off
as $$
    select least(w.deadline, greatest(w.alive_until,
                 (select r.alive_until from wharf.lock_replicas r where r.replica_id = w.replica_id)))
    from wharf.lock_waiters w
    where w.name = lock_name and (w.name, w.seq) < (lock_name, coalesce(before, 9223372036854775807))
      and w.deadline > now()
      and (w.alive_until > now()
           or exists (select 1 from wharf.lock_replicas r where r.replica_id = w.replica_id and r.alive_until > now()))
    order by w.name, w.seq
    limit 1
$$;
