/// The queues table's statements (`wharf.queues` holds a row only for a paused or configured queue).
enum QueueSQL {
    /// A page of queues by name after the keyset cursor `$1` (null: from the start), at most `$2`: the
    /// queues that have unfinished jobs or a row in `wharf.queues` (paused or configured). One pass over
    /// the unfinished jobs of the queues after the cursor, as the unpaginated list made.
    static let list = """
        select coalesce(c.queue, q.name), coalesce(q.paused, false), coalesce(c.available, 0),
               coalesce(c.scheduled, 0), coalesce(c.running, 0), coalesce(c.retryable, 0)
        from (
            select queue, count(*) filter (where state = 'available') as available,
                   count(*) filter (where state = 'scheduled') as scheduled,
                   count(*) filter (where state = 'running') as running,
                   count(*) filter (where state = 'retryable') as retryable
            from wharf.jobs where state in \(JobSQL.hotStates) and ($1::text is null or queue > $1) group by queue
        ) c
        full join (select * from wharf.queues where $1::text is null or name > $1) q on q.name = c.queue
        order by 1
        limit $2
        """

    /// One pass over the queue's rows: counts per state, the oldest runnable job's age, recent
    /// completions and failures.
    static let stats = """
        select
            coalesce((select paused from wharf.queues where name = $1), false),
            count(*) filter (where state = 'scheduled'), count(*) filter (where state = 'available'),
            count(*) filter (where state = 'running'), count(*) filter (where state = 'retryable'),
            count(*) filter (where state = 'completed'), count(*) filter (where state = 'dead'),
            count(*) filter (where state = 'cancelled'),
            \(SQLTime.durationMs("""
                now() - min(run_at) filter (where state in ('available', 'scheduled', 'retryable') and run_at <= now())
                """)),
            count(*) filter (where state = 'completed' and finished_at > now() - interval '1 minute'),
            count(*) filter (where state = 'completed' and finished_at > now() - interval '5 minutes'),
            count(*) filter (where state = 'retryable' or (state = 'dead' and finished_at > now() - interval '5 minutes')),
            (select string_agg(coalesce(b.completed, 0) || ':' || coalesce(b.dead, 0), ',' order by m)
             from generate_series(0, 59) m
             left join (
                 select 59 - floor(extract(epoch from now() - finished_at) / 60)::int as m,
                        count(*) filter (where state = 'completed') as completed,
                        count(*) filter (where state = 'dead') as dead
                 from wharf.jobs where queue = $1 and finished_at > now() - interval '60 minutes' group by 1
             ) b using (m))
        from wharf.jobs where queue = $1
        """

    /// `queues.configure`: sets the given settings of queue `$1` and leaves the others. `$2`/`$3`/`$4`
    /// say which of retry (`$5`), completed retention (`$6`) and dead retention (`$7`) are given (null
    /// clears one). A row left with no setting and not paused is deleted rather than kept.
    static let configure = """
        with cur as (
            select q.paused, q.retry, q.completed_retention_ms, q.dead_retention_ms
            from wharf.queues q where q.name = $1
        ),
        want as (
            select coalesce((select paused from cur), false) as paused,
                   case when $2::bool then $5::jsonb else (select retry from cur) end as retry,
                   case when $3::bool then $6::bigint else (select completed_retention_ms from cur) end as completed,
                   case when $4::bool then $7::bigint else (select dead_retention_ms from cur) end as dead
        ),
        saved as (
            insert into wharf.queues as q (name, retry, completed_retention_ms, dead_retention_ms, updated_at)
            select $1, w.retry, w.completed, w.dead, now() from want w
            where w.paused or w.retry is not null or w.completed is not null or w.dead is not null
            on conflict on constraint queues_pkey do update
            set retry = excluded.retry, completed_retention_ms = excluded.completed_retention_ms,
                dead_retention_ms = excluded.dead_retention_ms, updated_at = now()
            returning q.name
        ),
        dropped as (
            delete from wharf.queues q using want w
            where q.name = $1 and not (w.paused or w.retry is not null or w.completed is not null or w.dead is not null)
            returning q.name
        )
        select w.paused, w.retry::text, w.completed, w.dead,
               (select count(*) from saved) + (select count(*) from dropped)
        from want w
        """

    /// Pauses (`$2` true) or resumes a queue. Resuming deletes the queue's row when it holds no setting,
    /// so pausing and resuming names leaves nothing behind.
    static let setPaused = """
        with saved as (
            insert into wharf.queues as q (name, paused, paused_at, updated_at)
            select $1, $2, case when $2 then now() end, now()
            where $2 or exists (
                select 1 from wharf.queues c where c.name = $1
                  and (c.retry is not null or c.completed_retention_ms is not null or c.dead_retention_ms is not null))
            on conflict on constraint queues_pkey
            do update set paused = $2, paused_at = case when $2 then now() end, updated_at = now()
            returning q.name, q.paused
        ),
        dropped as (
            delete from wharf.queues q
            where q.name = $1 and not $2 and q.retry is null and q.completed_retention_ms is null
              and q.dead_retention_ms is null
            returning q.name
        )
        select $1::text, $2::bool, case when not $2 then \(WakeTopic.jobs.notify("$1")) end,
               (select count(*) from saved) + (select count(*) from dropped)
        """
}
