/// The statements on `wharf.schedules`, and the fire statement that also inserts the jobs.
///
/// Times cross as epoch milliseconds (`SQLTime`).
enum CronSQL {
    /// The columns `ScheduleRow` reads, in order (alias `s`).
    static let columns = """
        s.name, s.expression, s.every_ms, s.timezone, s.day_match, s.dst_gap, s.dst_fold, s.target::text, s.overlap,
        s.missed, s.missed_window_ms, s.jitter_ms, \(SQLTime.ms("s.start_at")), \(SQLTime.ms("s.end_at")), s.fire_limit, s.paused,
        s.paused_note, \(SQLTime.ms("s.paused_at")), \(SQLTime.ms("s.next_fire_at")), s.claim_seq, s.version,
        \(SQLTime.ms("s.last_nominal_at")), \(SQLTime.ms("s.last_fired_at")), s.runs, s.skipped_overlap, s.missed_count,
        \(SQLTime.ms("s.created_at")), \(SQLTime.ms("s.updated_at"))
        """

    /// The job made by the schedule's last fire, if it still exists (an index probe).
    static let lastJob = """
        (select j.id from wharf.jobs j where j.schedule_name = s.name and j.schedule_fire_at = s.last_nominal_at limit 1)
        """

    /// What a redefinition replaces, shared by both upserts: the definition, and the next fire unless
    /// one is already due (it fires under the new definition); `claim_seq` changes, so a fire computed
    /// from the old definition changes nothing.
    static let redefine = """
        expression = excluded.expression, every_ms = excluded.every_ms, timezone = excluded.timezone,
        day_match = excluded.day_match, dst_gap = excluded.dst_gap, dst_fold = excluded.dst_fold,
        target = excluded.target, overlap = excluded.overlap, missed = excluded.missed,
        missed_window_ms = excluded.missed_window_ms, jitter_ms = excluded.jitter_ms,
        start_at = excluded.start_at, end_at = excluded.end_at, fire_limit = excluded.fire_limit,
        next_fire_at = case when s.next_fire_at <= now() and not s.paused then s.next_fire_at
                            else excluded.next_fire_at end,
        claim_seq = s.claim_seq + 1, claimed_until = null, version = s.version + 1, updated_at = now()
        """

    /// Creates or replaces a schedule. A fire that is already due is kept (it fires under the new
    /// definition); otherwise the next fire is the one computed for the new definition (`$18`). A
    /// redefinition changes `claim_seq`, so a fire computed from the old definition changes nothing.
    static let upsert = """
        with up as (
            insert into wharf.schedules as s (name, expression, every_ms, timezone, day_match, dst_gap, dst_fold,
                target, overlap, missed, missed_window_ms, jitter_ms, start_at, end_at, fire_limit, paused,
                paused_note, paused_at, next_fire_at)
            values ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10, $11, $12, \(SQLTime.at("$13::bigint")), \(SQLTime.at("$14::bigint")),
                $15, coalesce($16::boolean, false), case when $16::boolean then $17 end,
                case when $16::boolean then now() end, \(SQLTime.at("$18::bigint")))
            on conflict (name) do update set
                paused = coalesce($16::boolean, s.paused),
                paused_note = case when coalesce($16::boolean, s.paused) then coalesce($17, s.paused_note) end,
                paused_at = case when coalesce($16::boolean, s.paused) then coalesce(s.paused_at, now()) end,
                \(redefine)
            returning \(columns), \(lastJob), (xmax = 0) as created, s.next_fire_at as wake_at
        )
        select up.*, \(WakeTopic.cron.notify("coalesce(\(SQLTime.ms("up.wake_at"))::text, '')")) is null from up
        """

    /// `upsert` for many schedules in one statement (one commit), for the upserts that leave `paused`
    /// as it is (a new schedule starts unpaused). Names are distinct within one call; returns a row per
    /// schedule (any order) and wakes every replica's scheduler once, for the earliest next fire.
    static let upsertMany = """
        with input as (
            select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                 $7::text[], $8::jsonb[], $9::text[], $10::text[], $11::bigint[], $12::bigint[],
                                 $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[])
                as t(name, expression, every_ms, timezone, day_match, dst_gap, dst_fold, target, overlap, missed,
                     missed_window_ms, jitter_ms, start_ms, end_ms, fire_limit, next_ms)
        ),
        up as (
            insert into wharf.schedules as s (name, expression, every_ms, timezone, day_match, dst_gap, dst_fold,
                target, overlap, missed, missed_window_ms, jitter_ms, start_at, end_at, fire_limit, paused,
                next_fire_at)
            select i.name, i.expression, i.every_ms, i.timezone, i.day_match, i.dst_gap, i.dst_fold, i.target,
                   i.overlap, i.missed, i.missed_window_ms, i.jitter_ms, \(SQLTime.at("i.start_ms")), \(SQLTime.at("i.end_ms")),
                   i.fire_limit, false, \(SQLTime.at("i.next_ms"))
            from input i
            order by i.name
            on conflict (name) do update set
                \(redefine)
            returning \(columns), \(lastJob), (xmax = 0) as created, s.next_fire_at as wake_at, s.paused as is_paused
        ),
        woke as (
            select \(WakeTopic.cron.notify("coalesce(\(SQLTime.ms("min(u.wake_at)"))::text, '')")) is null as n
            from up u where not u.is_paused
        )
        select up.* from up left join woke on true
        """

    static let get = "select \(columns), \(lastJob) from wharf.schedules s where s.name = $1"

    /// Schedules whose names start with `$1` (all when null), after the name `$2`, at most `$3`.
    static let list = """
        select \(columns), \(lastJob) from wharf.schedules s
        where ($1::text is null or starts_with(s.name, $1)) and ($2::text is null or s.name > $2)
        order by s.name
        limit $3
        """

    static let remove = "delete from wharf.schedules where name = $1 returning name"

    static let pause = """
        update wharf.schedules s
        set paused = true, paused_note = $2, paused_at = coalesce(s.paused_at, now()), claim_seq = s.claim_seq + 1,
            claimed_until = null, version = s.version + 1, updated_at = now()
        where s.name = $1
        returning \(columns), \(lastJob)
        """

    /// Resumes with the next fire `$2` computed after now, if the schedule is still at version `$3`
    /// (fires that fell in the pause are neither run nor counted as missed).
    static let resume = """
        with up as (
            update wharf.schedules s
            set paused = false, paused_note = null, paused_at = null, next_fire_at = \(SQLTime.at("$2::bigint")),
                claim_seq = s.claim_seq + 1, claimed_until = null, version = s.version + 1, updated_at = now()
            where s.name = $1 and s.version = $3
            returning \(columns), \(lastJob), s.next_fire_at as wake_at
        )
        select up.*, \(WakeTopic.cron.notify("coalesce(\(SQLTime.ms("up.wake_at"))::text, '')")) is null from up
        """

    /// Whether lock row `l` (a schedule's `cron:<name>`) holds the schedule's fires back: held and
    /// unexpired, or someone in line. A lease held by a job (holder `job <id>`) or a webhook delivery
    /// (`delivery <id>`) counts only while that job or delivery exists, unfinished, with the lock's
    /// token: a lock whose holder is gone (a fire whose job was not inserted, a truncated table) frees
    /// itself rather than holding the schedule back for ever.
    static func holdsFiresBack(_ l: String) -> String {
        """
        ((not \(LockSQL.isFree(l))
          and case when \(l).holder ~ '^job [0-9]{1,18}$'
                   then exists (select 1 from wharf.jobs j
                                where j.id = substr(\(l).holder, 5)::bigint
                                  and \(l).token in (j.hold_token, j.lease_token)
                                  and j.state in ('scheduled', 'available', 'running', 'retryable'))
                   when \(l).holder ~ '^delivery [0-9]{1,18}$'
                   then exists (select 1 from wharf.webhook_deliveries d
                                where d.id = substr(\(l).holder, 10)::bigint and d.hold_token = \(l).token
                                  and d.state in ('pending', 'delivering'))
                   else true end)
         or \(LockSQL.someoneInLine(l)))
        """
    }

    /// Claims up to `$1` due schedules for `$2` ms. Also says, for the overlap policies, whether the
    /// schedule's lock `cron:<name>` is held (by its last fire's unfinished job, or by a client) or has
    /// someone in line, and whether one of its jobs waits to start; and the database's clock.
    static let claim = """
        with due as (
            select s.name from wharf.schedules s
            where not s.paused and s.next_fire_at <= now() and (s.claimed_until is null or s.claimed_until < now())
            order by s.next_fire_at
            limit $1
            for update skip locked
        )
        update wharf.schedules s
        set claimed_until = now() + $2::bigint * interval '1 millisecond', claim_seq = s.claim_seq + 1
        from due
        where s.name = due.name
        returning \(columns),
            exists (select 1 from wharf.locks l where l.name = 'cron:' || s.name and \(holdsFiresBack("l"))),
            exists (select 1 from wharf.jobs j where j.schedule_name = s.name
                    and j.state in ('scheduled', 'available', 'retryable')),
            \(SQLTime.ms("now()"))
        """

    /// When the scheduler should look again: the earliest unclaimed next fire, the earliest claim
    /// expiry, and the database's clock.
    static let nextDue = """
        select (select \(SQLTime.ms("min(s.next_fire_at)")) from wharf.schedules s
                where not s.paused and s.next_fire_at is not null and s.claimed_until is null),
               (select \(SQLTime.ms("min(s.claimed_until)")) from wharf.schedules s where s.claimed_until is not null),
               \(SQLTime.ms("now()"))
        """

    /// One statement for a batch of claimed schedules: advances each schedule whose claim still holds
    /// (`claim_seq` unchanged) and inserts the jobs of exactly those schedules (`$8...$22`, packed as
    /// `JobSQL.enqueueArrays`) through `wharf.enqueue_batch`, with the payload read
    /// from the schedule row as it is now (so a `schedulePatch` committed before is always seen). A job
    /// for a (schedule, fire time) that already exists is not inserted again. The job of a fire of an
    /// overlap "skip" schedule takes the schedule's lock `cron:<name>` until it finishes (released by
    /// the jobs trigger); the lease runs out a century from now, so only the job ends it (or the job's
    /// absence, see `holdsFiresBack`). A fire that finds the lock taken since the claim (a client got
    /// it in between) makes nothing: it counts as skipped for overlap, not as a run.
    static let fire = """
        with claimed as (
            select s.name, s.target, s.overlap, a.next_ms, a.runs, a.skipped, a.missed, a.last_nominal_ms
            from wharf.schedules s
            join unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                        $7::bigint[]) as a(name, claim_seq, next_ms, runs, skipped, missed, last_nominal_ms)
                on s.name = a.name and s.claim_seq = a.claim_seq
            for update of s
        ),
        input as materialized (
            select nextval('wharf.jobs_id_seq') as id, t.*, adv.target #> '{job,payload}' as schedule_payload,
                   case when adv.overlap = 'skip' then md5(random()::text || clock_timestamp()::text) end
                       as hold_token
            from \(JobSQL.enqueueRows(fromParameter: 8))
            join claimed adv on adv.name = t.schedule_name
        ),
        hook_input as materialized (
            select nextval(pg_get_serial_sequence('wharf.webhook_deliveries', 'id')) as id, w.*, adv.target,
                   case when adv.overlap = 'skip' then md5(random()::text || clock_timestamp()::text) end
                       as hold_token
            from unnest($23::text[], $24::bigint[]) as w(schedule_name, fire_ms)
            join claimed adv on adv.name = w.schedule_name
        ),
        holds as (
            -- Taken before the job or delivery is inserted, and that only if taken: a client that got
            -- the lock since the claim holds this fire back too.
            \(LockSQL.grant("""
                select 'cron:' || h.schedule_name, h.holder, h.hold_token, now() + interval '100 years', null, null, 0
                from (select i.schedule_name, 'job ' || i.id as holder, i.hold_token from input i
                      union all
                      select k.schedule_name, 'delivery ' || k.id, k.hold_token from hook_input k) h
                where h.hold_token is not null
                """, when: "not \(holdsFiresBack("l"))"))
        ),
        ins as (
            -- Through the one job-insert path, which wakes the queues that got jobs.
            select e.* from \(JobSQL.enqueueBatch(
                over: "(select * from input i where i.hold_token is null or i.hold_token in (select token from holds))",
                overrides: ["payload": "k.schedule_payload", "idempotency_key": "null::text", "id": "k.id",
                            "hold_token": "k.hold_token"]))
        ),
        hooks as (
            -- Queued as every delivery is (`wharf.send_webhooks`), with a message id derived from (schedule,
            -- fire time), so a fire reaches an endpoint once.
            select s.created
            from (select array_agg((w.target #>> '{webhook,endpointId}')::bigint order by w.id) as endpoint_ids,
                         array_agg(coalesce(w.target #>> '{webhook,event}', 'cron.fire') order by w.id) as events,
                         array_agg(coalesce(w.target #> '{webhook,payload}', 'null')::text order by w.id) as datas,
                         array_agg(w.schedule_name order by w.id) as names, array_agg(w.fire_ms order by w.id) as fires,
                         array_agg(w.schedule_name || ':' || w.fire_ms order by w.id) as message_keys,
                         array_agg(w.id order by w.id) as ids, array_agg(w.hold_token order by w.id) as hold_tokens
                  from hook_input w
                  where w.hold_token is null or w.hold_token in (select token from holds)
                  having count(*) > 0) a
            cross join lateral wharf.send_webhooks(a.endpoint_ids, a.events, a.datas, null, null, a.names, a.fires,
                                                   a.message_keys, a.ids, a.hold_tokens) s
        ),
        adv as (
            -- Advanced once the fires are known: a fire whose lock was not taken (`holds`) is no run.
            update wharf.schedules s
            set next_fire_at = \(SQLTime.at("c.next_ms")), claimed_until = null,
                runs = s.runs + c.runs - coalesce(d.n, 0),
                skipped_overlap = s.skipped_overlap + c.skipped + coalesce(d.n, 0),
                missed_count = s.missed_count + c.missed,
                last_nominal_at = coalesce(\(SQLTime.at("c.last_nominal_ms")), s.last_nominal_at),
                last_fired_at = case when c.runs - coalesce(d.n, 0) > 0 then now() else s.last_fired_at end
            from claimed c
            left join (
                select x.schedule_name, count(*) as n
                from (select i.schedule_name, i.hold_token from input i
                      union all
                      select k.schedule_name, k.hold_token from hook_input k) x
                where x.hold_token is not null and x.hold_token not in (select token from holds)
                group by x.schedule_name
            ) d on d.schedule_name = c.name
            where s.name = c.name
            returning s.name
        )
        -- The job insert and the deliveries' insert send their own wake-ups.
        select (select count(*) from adv), (select count(*) from ins where ins.created) + (select count(*) from hooks where created)
        """

    /// `jobs.complete` with a `schedulePatch`: completes job `$1` under token `$2` with result `$3` and,
    /// in the same transaction and only if the completion happened, merges the object `$5` into the
    /// template payload of schedule `$4`. Rows as `JobSQL.complete`: id, whether a schedule was patched,
    /// the job's queue, token.
    static let completeWithPatch = """
        with done as (
            update wharf.jobs j
            set state = 'completed', result = $3::jsonb, finished_at = now(), lease_expires_at = null
            where j.id = $1 and j.lease_token = $2 and j.state = 'running'
            returning j.id, j.queue
        ),
        path as (
            select s.name, case when s.target ? 'job' then '{job,payload}' else '{webhook,payload}' end::text[] as p
            from wharf.schedules s where s.name = $4
        ),
        patched as (
            update wharf.schedules s
            set target = jsonb_set(s.target, path.p,
                    case when jsonb_typeof(s.target #> path.p) = 'object' then (s.target #> path.p) || $5::jsonb
                         else $5::jsonb end),
                version = s.version + 1, updated_at = now()
            from path
            where s.name = path.name and exists (select 1 from done)
            returning s.name
        )
        select d.id, (select count(*) from patched) > 0, d.queue, $2::text from done d
        """
}
