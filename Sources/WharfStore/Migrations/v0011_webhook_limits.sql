-- Retention of finished webhook deliveries: each endpoint may keep its finished deliveries (and,
-- through the cascade, their attempts) for its own period instead of the server's default.
alter table wharf.webhook_endpoints add column retention_ms bigint,
    add constraint webhook_endpoints_retention_check check (retention_ms is null or retention_ms >= 0);

-- The pruner's scan: an endpoint's finished deliveries, oldest first.
create index webhook_deliveries_finished_idx on wharf.webhook_deliveries (endpoint_id, finished_at)
    where state in ('succeeded', 'failed');
