-- Jobs: one row per job for its whole life. The runnable set is kept small and fast to claim by
-- partial indexes on the hot states; finished rows are pruned after their retention period.

create table wharf.queues (
    name text not null,
    paused boolean not null default false,
    paused_at timestamptz,
    -- The queue's retry policy {initialMs, maxMs, coefficient, jitter}; null means the server's.
    retry jsonb,
    updated_at timestamptz not null default now(),
    constraint queues_pkey primary key (name)
);

create sequence wharf.jobs_id_seq as bigint;

create table wharf.jobs (
    id bigint not null default nextval('wharf.jobs_id_seq'),
    queue text not null,
    kind text not null,
    payload jsonb not null default 'null',
    state text not null,
    priority integer not null default 0,
    run_at timestamptz not null default now(),
    attempt integer not null default 0,
    max_attempts integer not null default 20,
    -- Per-job retry policy {initialMs, maxMs, coefficient, jitter}; null means the server default.
    retry jsonb,
    timeout_ms bigint,
    unique_key text,
    lock_key text,
    tags text[] not null default '{}',
    meta jsonb not null default '{}',
    lease_token text,
    lease_expires_at timestamptz,
    leased_at timestamptz,
    worker text,
    progress jsonb,
    result jsonb,
    last_error jsonb,
    -- One object per finished attempt: {attempt, worker, leasedAt, finishedAt, outcome, error}.
    attempts jsonb not null default '[]',
    schedule_name text,
    schedule_fire_at timestamptz,
    created_at timestamptz not null default now(),
    finished_at timestamptz,
    constraint jobs_pkey primary key (id),
    constraint jobs_state_check check (
        state in ('scheduled', 'available', 'running', 'retryable', 'completed', 'dead', 'cancelled')),
    constraint jobs_attempt_check check (attempt >= 0 and max_attempts >= 1),
    constraint jobs_priority_check check (priority between -1000 and 1000),
    constraint jobs_running_lease_check check (
        state <> 'running' or (lease_token is not null and lease_expires_at is not null)),
    constraint jobs_finished_check check (
        (state in ('completed', 'dead', 'cancelled')) = (finished_at is not null)),
    constraint jobs_queue_length_check check (char_length(queue) between 1 and 200),
    constraint jobs_kind_length_check check (char_length(kind) between 1 and 200)
);

alter sequence wharf.jobs_id_seq owned by wharf.jobs.id;

-- Claiming: the runnable states only, in claim order; jobs with a lockKey are claimed separately
-- (at most one per lease statement), so they get their own index.
create index jobs_claim_idx on wharf.jobs (queue, priority desc, run_at, id)
    where state in ('available', 'scheduled', 'retryable') and lock_key is null;
create index jobs_claim_keyed_idx on wharf.jobs (queue, priority desc, run_at, id)
    where state in ('available', 'scheduled', 'retryable') and lock_key is not null;

-- The lease reaper: running jobs by lease expiry (only running jobs have one). The predicate is on
-- the column itself, not on state = 'running', so that statements addressing running jobs by id
-- are never planned through this index, whose dead entries pile up between vacuums.
create index jobs_lease_expiry_idx on wharf.jobs (lease_expires_at) where lease_expires_at is not null;

-- uniqueKey: at most one unfinished job per key, race-free.
create unique index jobs_unique_key_idx on wharf.jobs (unique_key)
    where unique_key is not null and state in ('scheduled', 'available', 'running', 'retryable');

-- lockKey: at most one running job per key, across replicas.
create unique index jobs_running_lock_key_idx on wharf.jobs (lock_key)
    where lock_key is not null and state = 'running';

-- Retention pruning.
create index jobs_finished_idx on wharf.jobs (finished_at) where finished_at is not null;

-- Each (schedule, nominal fire time) makes exactly one job.
create unique index jobs_schedule_fire_idx on wharf.jobs (schedule_name, schedule_fire_at)
    where schedule_name is not null;
