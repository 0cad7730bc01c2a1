-- Idempotency keys of enqueues. A call that carries `idempotencyKey` records here what it came to
-- (the job it made, or the unfinished job its uniqueKey found), in the same statement and commit as
-- the job itself; a later call with the same key makes nothing and answers with that job. This is
-- what makes an enqueue safe to retry after its outcome was lost (the database connection broke
-- after the statement was sent). Unlike uniqueKey, a key keeps working after its job finished. Keys
-- are kept for 24 hours (at least), then pruned.

create table wharf.job_idempotency_keys (
    key text not null,
    job_id bigint not null,
    -- Whether the first call made the job (false: it found an unfinished job with its uniqueKey).
    created boolean not null,
    created_at timestamptz not null default now(),
    constraint job_idempotency_keys_pkey primary key (key),
    constraint job_idempotency_keys_key_length_check check (octet_length(key) between 1 and 400)
);

-- Pruning by age. Rows arrive in created_at order, so a BRIN index serves the prune at a fraction of
-- a b-tree's cost on every enqueue.
create index job_idempotency_keys_created_at_idx on wharf.job_idempotency_keys using brin (created_at);

-- Aborts an enqueue statement whose key another transaction recorded after the statement's snapshot
-- was taken (two calls with one new key at the same time). The statement made a job it must not
-- keep; aborted as a serialization failure, it is run again and then finds the key.
create function wharf.idempotency_key_race(key text) returns boolean
language plpgsql as $$
begin
    raise exception 'idempotency key % was recorded by a concurrent enqueue', key
        using errcode = 'serialization_failure';
end
$$;
