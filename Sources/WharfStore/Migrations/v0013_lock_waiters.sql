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

