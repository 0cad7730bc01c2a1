-- Overlap "skip" rests on the locks of wharf.locks too: each fire of such a schedule takes the lock
-- `cron:<schedule>` for its job (`jobs.hold_token` is the lock's token) until the job finishes, and a
-- fire is skipped while that lock is held (by a job, or by a client with `locks.acquire`). The jobs
-- trigger of v0006 releases it.
--
-- Unfinished jobs of such schedules made before this migration take their schedule's lock now (the
-- newest one of each schedule), so no run overlaps across the upgrade.
with newest as (
    select distinct on (j.schedule_name) j.id, j.schedule_name
    from wharf.jobs j
    join wharf.schedules s on s.name = j.schedule_name and s.overlap = 'skip'
    where j.state in ('scheduled', 'available', 'running', 'retryable')
    order by j.schedule_name, j.id desc
),
held as (
    update wharf.jobs j set hold_token = md5(random()::text || clock_timestamp()::text)
    from newest n where j.id = n.id
    returning j.id, j.schedule_name, j.hold_token
)
insert into wharf.locks as l (name, holder, token, fencing_token, acquired_at, expires_at, grants)
select 'cron:' || h.schedule_name, 'job ' || h.id, h.hold_token, 1, clock_timestamp(),
       now() + interval '100 years', 1
from held h
on conflict on constraint locks_pkey do update set
    holder = excluded.holder, token = excluded.token, fencing_token = l.fencing_token + 1,
    acquired_at = excluded.acquired_at, expires_at = excluded.expires_at, request_id = null,
    session_id = null, lock_delay_ms = 0, grants = l.grants + 1
where l.holder is null or l.expires_at <= now();
