-- Locks: one row per lock name, never deleted, so the fencing token keeps growing forever and the
-- counters survive releases. A lock is held while holder is not null and expires_at is in the future;
-- PostgreSQL's clock decides.
create table wharf.locks (
    name text not null,
    holder text,
    token text,
    fencing_token bigint not null default 0,
    acquired_at timestamptz,
    expires_at timestamptz,
    request_id text,
    session_id text,
    -- After an expiry without release the lock stays ungrantable this long (lock-delay).
    lock_delay_ms bigint not null default 0,
    grants bigint not null default 0,
    waits bigint not null default 0,
    expiries bigint not null default 0,
    releases bigint not null default 0,
    constraint locks_pkey primary key (name),
    constraint locks_name_length_check check (char_length(name) between 1 and 400),
    constraint locks_held_check check ((holder is null) = (token is null) and (holder is null) = (expires_at is null)),
    constraint locks_fencing_check check (fencing_token >= 0)
);
