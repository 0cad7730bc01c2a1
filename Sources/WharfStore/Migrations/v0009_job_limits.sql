-- Retention kept per job and per queue, so pruning keeps up with any completion rate.
--
-- A job that finishes gets `prune_at` (its finish time plus its queue's retention, else the server's),
-- and pruning deletes in index order of `prune_at`: every batch starts at rows it can delete, whatever
-- mix of states, queues and retentions lies behind them. Jobs finished before this migration, or by a
-- statement that sets no `prune_at`, stay in a small index by `finished_at` and are pruned by their
-- queue's or the server's retention.

alter table wharf.jobs add column prune_at timestamptz;
alter table wharf.jobs add constraint jobs_prune_at_check check (prune_at is null or finished_at is not null);

drop index wharf.jobs_finished_idx;
create index jobs_prune_idx on wharf.jobs (prune_at) where prune_at is not null;
create index jobs_unpruned_idx on wharf.jobs (finished_at) where finished_at is not null and prune_at is null;

-- A queue's retention of completed and cancelled jobs, and of dead ones; null means the server's.
alter table wharf.queues add column completed_retention_ms bigint;
alter table wharf.queues add column dead_retention_ms bigint;
alter table wharf.queues add constraint queues_retention_check check (
    (completed_retention_ms is null or completed_retention_ms >= 0)
    and (dead_retention_ms is null or dead_retention_ms >= 0));
