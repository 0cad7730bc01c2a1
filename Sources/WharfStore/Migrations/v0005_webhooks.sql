-- Webhooks: endpoints with their health, deliveries (one per message per endpoint, durable until it
-- succeeds or gives up) and every attempt made.
create table wharf.webhook_endpoints (
    id bigint generated always as identity,
    url text not null,
    description text,
    -- The events this endpoint receives; null means all.
    events text[],
    rate_limit_per_s integer,
    secret text not null,
    -- During a rotation the previous secret also signs, until previous_secret_until.
    previous_secret text,
    previous_secret_until timestamptz,
    enabled boolean not null default true,
    disabled_at timestamptz,
    disabled_reason text,
    -- Overrides of the server's auto-disable policy (null: the server's).
    disable_after_ms bigint,
    dormant_after_ms bigint,
    last_success_at timestamptz,
    last_failure_at timestamptz,
    failing_since timestamptz,
    consecutive_failures integer not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint webhook_endpoints_pkey primary key (id),
    constraint webhook_endpoints_url_check check (char_length(url) between 1 and 2000),
    constraint webhook_endpoints_rate_check check (rate_limit_per_s is null or rate_limit_per_s > 0)
);

create table wharf.webhook_deliveries (
    id bigint generated always as identity,
    -- The webhook-id header: the same on every attempt, so receivers can deduplicate.
    message_id text not null,
    endpoint_id bigint not null,
    event text not null,
    -- The exact bytes signed and sent on every attempt.
    body text not null,
    state text not null default 'pending',
    attempt integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    -- Set while a replica delivers it; an attempt whose replica died is retried once this passes.
    lease_until timestamptz,
    idempotency_key text,
    last_status integer,
    last_error text,
    created_at timestamptz not null default now(),
    finished_at timestamptz,
    constraint webhook_deliveries_pkey primary key (id),
    constraint webhook_deliveries_endpoint_fkey foreign key (endpoint_id)
        references wharf.webhook_endpoints (id) on delete cascade,
    constraint webhook_deliveries_state_check check (state in ('pending', 'delivering', 'succeeded', 'failed'))
);

-- The dispatcher's scan: deliveries that may be attempted, by due time.
create index webhook_deliveries_due_idx on wharf.webhook_deliveries (next_attempt_at)
    where state in ('pending', 'delivering');
create index webhook_deliveries_endpoint_idx on wharf.webhook_deliveries (endpoint_id, id desc);
-- A message reaches an endpoint once: cron fires use a message id derived from (schedule, fire time).
create unique index webhook_deliveries_message_idx on wharf.webhook_deliveries (endpoint_id, message_id);
create unique index webhook_deliveries_idempotency_idx on wharf.webhook_deliveries (endpoint_id, idempotency_key)
    where idempotency_key is not null;

create table wharf.webhook_attempts (
    delivery_id bigint not null,
    attempt integer not null,
    endpoint_id bigint not null,
    attempted_at timestamptz not null default now(),
    status integer,
    latency_ms double precision,
    -- dns, connect, timeout, tls, network, http (a response that is not 2xx), private_address; null on success.
    error_kind text,
    error text,
    -- The first 4 KiB of the response body.
    response_body text,
    constraint webhook_attempts_pkey primary key (delivery_id, attempt),
    constraint webhook_attempts_delivery_fkey foreign key (delivery_id)
        references wharf.webhook_deliveries (id) on delete cascade
);

-- Health figures per endpoint over recent attempts.
create index webhook_attempts_endpoint_idx on wharf.webhook_attempts (endpoint_id, attempted_at);
