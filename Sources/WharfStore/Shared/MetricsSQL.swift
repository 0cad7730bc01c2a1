/// The one statement behind `GET /metrics`' database-derived gauges.
enum MetricsSQL {
    /// Rows of (name, label, label2, value), and nothing that grows with finished work: jobs are counted
    /// only in their hot states, read through the partial indexes that hold exactly them (the two claim
    /// indexes, whose predicates the first two branches repeat so the planner can use them, and the lease
    /// expiry index for running jobs), never by a scan of the table; finished jobs are left to the
    /// table's row estimate. Locks report the counters each lock row keeps (grants, waits, expiries);
    /// deliveries are read only pending or in progress (their partial index). Schedules report the
    /// counters each schedule row keeps (fires, skips, misses), summed, the largest lag of their latest
    /// fires, and the 20 most overdue active schedules by name (bounded label cardinality).
    static let snapshot = """
        with hot as materialized (
            select queue, state, run_at from wharf.jobs
            where state in ('available', 'scheduled', 'retryable') and lock_key is null
            union all
            select queue, state, run_at from wharf.jobs
            where state in ('available', 'scheduled', 'retryable') and lock_key is not null
            union all
            select queue, state, null from wharf.jobs where lease_expires_at is not null and state = 'running'
        )
        select 'jobs', queue, state, count(*)::float8 from hot group by queue, state
        union all
        select 'oldest_available', queue, '', extract(epoch from now() - min(run_at))::float8
        from hot where state <> 'running' and run_at <= now() group by queue
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
        union all
        select x.k, '', '', x.v from (
            select coalesce(sum(runs), 0) as runs, coalesce(sum(skipped_overlap), 0) as skipped,
                   coalesce(sum(missed_count), 0) as missed,
                   coalesce(max(extract(epoch from last_fired_at - last_nominal_at)), 0) as lag
            from wharf.schedules
        ) c, lateral (values ('cron_fires', c.runs::float8), ('cron_skipped', c.skipped::float8),
                             ('cron_missed', c.missed::float8), ('cron_fire_lag_max', c.lag::float8)) as x(k, v)
        union all
        (select 'cron_overdue', name, '', extract(epoch from now() - next_fire_at)::float8
         from wharf.schedules where not paused and next_fire_at < now() - interval '5 seconds'
         order by next_fire_at limit 20)
        """
}
