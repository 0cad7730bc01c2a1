-- Cron schedules: one row per schedule. The row is the schedule's definition, its job template, the
-- next nominal fire time and its statistics. A fire is one statement that advances next_fire_at by
-- compare-and-set on claim_seq and inserts the job; the unique (schedule_name, schedule_fire_at)
-- index on wharf.jobs makes a second job for one fire time impossible whatever happens.
create table wharf.schedules (
    name text not null,
    -- Exactly one of expression and every_ms is set.
    expression text,
    every_ms bigint,
    timezone text not null default 'UTC',
    day_match text not null default 'or',
    -- Null means the default the expression implies (see Protocol/cron.md).
    dst_gap text,
    dst_fold text,
    -- {"job": {queue, kind, payload, ...options}} or {"webhook": {endpointId, payload}}.
    target jsonb not null,
    overlap text not null default 'allow',
    missed text not null default 'runOnce',
    missed_window_ms bigint not null default 60000,
    jitter_ms bigint not null default 0,
    start_at timestamptz,
    end_at timestamptz,
    fire_limit bigint,
    paused boolean not null default false,
    paused_note text,
    paused_at timestamptz,
    -- The next nominal fire time; null when the schedule has no fire left (endAt or limit reached).
    next_fire_at timestamptz,
    -- A replica that read a due schedule owns it until claimed_until; claim_seq changes with every
    -- claim and every redefinition, so a fire computed from a stale read changes nothing.
    claimed_until timestamptz,
    claim_seq bigint not null default 0,
    version bigint not null default 1,
    last_nominal_at timestamptz,
    last_fired_at timestamptz,
    runs bigint not null default 0,
    skipped_overlap bigint not null default 0,
    missed_count bigint not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint schedules_pkey primary key (name),
    constraint schedules_name_length_check check (char_length(name) between 1 and 200),
    constraint schedules_timing_check check ((expression is null) <> (every_ms is null)),
    constraint schedules_every_check check (every_ms is null or every_ms > 0),
    constraint schedules_day_match_check check (day_match in ('or', 'and')),
    constraint schedules_dst_gap_check check (dst_gap in ('runAtTransition', 'skip')),
    constraint schedules_dst_fold_check check (dst_fold in ('once', 'twice')),
    constraint schedules_overlap_check check (overlap in ('allow', 'skip', 'bufferOne')),
    constraint schedules_missed_check check (missed in ('skip', 'runOnce', 'runAll')),
    constraint schedules_target_check check (target ? 'job' or target ? 'webhook')
);

-- The scheduler's due scan: schedules that can fire, by next fire time.
create index schedules_due_idx on wharf.schedules (next_fire_at)
    where not paused and next_fire_at is not null;

-- A schedule's unfinished jobs (overlap policies), without scanning its finished ones.
create index jobs_schedule_hot_idx on wharf.jobs (schedule_name, state)
    where schedule_name is not null and state in ('scheduled', 'available', 'running', 'retryable');
