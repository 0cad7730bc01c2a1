-- Locks: one row per lock name, kept forever. The row is the name's fencing counter and its statistics,
-- and while the lock is held it also carries the lease (holder, token, expiry). Releasing clears the
-- lease columns; the row itself is never deleted, so the fencing token keeps growing across releases,
-- expiries, restarts and replicas. PostgreSQL's clock decides expiry.
create table wharf.locks (
    name text not null,
    holder text,
    token text,
    -- The fencing token of the latest grant; the next grant takes this plus one.
    fencing_token bigint not null default 0,
    acquired_at timestamptz,
    expires_at timestamptz,
    request_id text,
    session_id text,
    -- After an expiry without release the lock stays ungrantable this long (lock-delay).
    lock_delay_ms bigint not null default 0,
    -- Latest deadline of any waiter that queued for this name: a release wakes waiters (NOTIFY) only
    -- while it is in the future. Kept on this row so that an enqueue and a release serialize on it.
    waiters_until timestamptz,
    -- Statistics, updated by the same statements that grant, queue and release.
    grants bigint not null default 0,
    -- Acquires that found the lock unavailable (contention), counted once per acquire call.
    waits bigint not null default 0,
    -- Leases that ran out without a release, counted when the next grant takes the lock over.
    expiries bigint not null default 0,
    releases bigint not null default 0,
    constraint locks_pkey primary key (name),
    constraint locks_name_length_check check (char_length(name) between 1 and 400),
    constraint locks_held_check check (
        (holder is null) = (token is null) and (holder is null) = (expires_at is null)
        and (holder is null) = (acquired_at is null)),
    constraint locks_fencing_check check (fencing_token >= 0 and (holder is null or fencing_token > 0))
);

-- Deleting a row would restart its name's fencing tokens at 1, so the database refuses it.
create function wharf.locks_refuse_delete() returns trigger language plpgsql as $$
begin
    raise exception 'rows of wharf.locks are never deleted: each holds its name''s fencing counter'
        using errcode = 'restrict_violation';
end
$$;

create trigger locks_refuse_delete before delete on wharf.locks
    for each statement execute function wharf.locks_refuse_delete();
create trigger locks_refuse_truncate before truncate on wharf.locks
    for each statement execute function wharf.locks_refuse_delete();

-- Statistics per name, as a relation of their own for dashboards and ad-hoc SQL.
create view wharf.lock_stats as
    select name, grants, waits,
           expiries + case when holder is not null and expires_at <= now() then 1 else 0 end
               as expiries_without_release,
           releases, fencing_token
    from wharf.locks;

-- The durable line of waiters, first come first served across every replica. A waiter may take the
-- lock only when no older live waiter is queued for the name. Rows are deleted when their waiter is
-- granted, gives up (waitMs) or disconnects; a replica that dies stops refreshing alive_until, and its
-- waiters stop counting once it has passed.
create table wharf.lock_waiters (
    seq bigint generated always as identity,
    name text not null,
    holder text not null,
    replica_id text not null,
    session_id text,
    queued_at timestamptz not null default now(),
    deadline timestamptz not null,
    alive_until timestamptz not null,
    constraint lock_waiters_pkey primary key (seq),
    constraint lock_waiters_deadline_check check (deadline >= queued_at)
);

create index lock_waiters_name_seq_idx on wharf.lock_waiters (name, seq);
create index lock_waiters_replica_idx on wharf.lock_waiters (replica_id);
