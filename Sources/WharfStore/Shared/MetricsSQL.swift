/// The one statement behind `GET /metrics`' database-derived gauges.
enum MetricsSQL {
    /// Rows of (name, label, label2, value), one pass per table and nothing that grows with finished
    /// work: jobs are counted only in their hot states (the runnable set, which the claim indexes keep
    /// small; finished jobs are left to the table's row estimate); locks report the counters each lock row
    /// keeps (grants, waits, expiries); deliveries only pending or in progress (their partial index).
    static let snapshot = """
        select 'jobs', queue, state, count(*)::float8
        from wharf.jobs where state in ('scheduled', 'available', 'running', 'retryable') group by queue, state
        union all
        select 'oldest_available', queue, '', extract(epoch from now() - min(run_at))::float8
        from wharf.jobs where state in ('available', 'scheduled', 'retryable') and run_at <= now() group by queue
        union all
        select 'jobs_rows_estimate', '', '', greatest(reltuples, 0)::float8 from pg_class
        where oid = 'wharf.jobs'::regclass
        union all
        select x.k, '', '', x.v from (
            select count(*) filter (where holder is not null and expires_at > now()) as held,
                   coalesce(sum(grants), 0) as grants, coalesce(sum(waits), 0) as waits,
                   coalesce(sum(expiries), 0) as expiries
            from wharf.locks
        ) l, lateral (values ('locks_held', l.held::float8), ('lock_grants', l.grants::float8),
                             ('lock_waits', l.waits::float8), ('lock_expiries', l.expiries::float8)) as x(k, v)
        union all
        select 'lock_waiters', '', '', count(*)::float8 from wharf.lock_waiters
        union all
        select 'endpoints', case when not enabled then 'disabled' when failing_since is not null then 'failing'
                                 else 'healthy' end, '', count(*)::float8
        from wharf.webhook_endpoints group by 2
        union all
        select 'deliveries', state, '', count(*)::float8
        from wharf.webhook_deliveries where state in ('pending', 'delivering') group by state
        union all
        select 'schedules', case when paused then 'paused' else 'active' end, '', count(*)::float8
        from wharf.schedules group by 2
        """
}
