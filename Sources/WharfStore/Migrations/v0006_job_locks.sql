-- Jobs hold locks of wharf.locks, the same rows `locks.acquire` grants, so there is one lock
-- implementation with one fencing counter per name:
--
-- * A job with a lockKey takes the lock named by its key when it is leased (in the lease statement),
--   with the lease token as the lock's token and the lease's expiry as the lock's. A client holding
--   that name with `locks.acquire` keeps such jobs waiting, and a running job keeps the client out.
-- * A fire of a schedule with overlap "skip" takes the lock `cron:<schedule>` for its job until the job
--   finishes (`hold_token` is the lock's token); the next fire is skipped while it is held.
--
-- The trigger below keeps the locks in step with every statement that moves a job: heartbeats extend
-- the lease's lock, and leaving `running` (completion, failure, cancellation, lease expiry) or
-- finishing releases it, waking anyone queued for the name.

-- Jobs running with a lockKey when this migration runs take their lock now, so that none runs beside
-- them once the unique index that guarded them is gone. (Lock names and lockKeys share one namespace
-- from here on: a name a client holds keeps jobs with that key waiting.)
insert into wharf.locks as l (name, holder, token, fencing_token, acquired_at, expires_at, grants)
select j.lock_key, 'job ' || j.id, j.lease_token, 1, coalesce(j.leased_at, now()), j.lease_expires_at, 1
from wharf.jobs j
where j.state = 'running' and j.lock_key is not null and j.lease_token is not null
  and j.lease_expires_at is not null
order by j.lock_key
on conflict on constraint locks_pkey do update set
    holder = excluded.holder, token = excluded.token, fencing_token = l.fencing_token + 1,
    acquired_at = excluded.acquired_at, expires_at = excluded.expires_at, request_id = null,
    session_id = null, lock_delay_ms = 0, grants = l.grants + 1
where l.holder is null or l.expires_at <= now();

drop index wharf.jobs_running_lock_key_idx;

alter table wharf.jobs add column hold_token text;

create function wharf.release_lock(lock_name text, lock_token text) returns void language plpgsql as $$
declare
    woken timestamptz;
begin
    update wharf.locks l
    set holder = null, token = null, acquired_at = null, expires_at = null, request_id = null,
        session_id = null,
        releases = l.releases + case when l.expires_at > now() then 1 else 0 end,
        expiries = l.expiries + case when l.expires_at > now() then 0 else 1 end
    where l.name = lock_name and l.token = lock_token
    returning l.waiters_until into woken;
    if woken > now() then
        perform pg_notify('wharf_wake', 'lock:' || lock_name);
    end if;
end
$$;

create function wharf.jobs_sync_locks() returns trigger language plpgsql as $$
begin
    if old.lock_key is not null and old.state = 'running' then
        if tg_op = 'UPDATE' and new.state = 'running' and new.lease_token = old.lease_token then
            if new.lease_expires_at is distinct from old.lease_expires_at then
                update wharf.locks set expires_at = new.lease_expires_at
                where name = old.lock_key and token = old.lease_token;
            end if;
        else
            perform wharf.release_lock(old.lock_key, old.lease_token);
        end if;
    end if;
    if old.hold_token is not null
       and (tg_op = 'DELETE' or new.state in ('completed', 'discarded', 'cancelled')) then
        perform wharf.release_lock('cron:' || old.schedule_name, old.hold_token);
    end if;
    return null;
end
$$;

create trigger jobs_sync_locks after update or delete on wharf.jobs
    for each row when ((old.lock_key is not null and old.state = 'running') or old.hold_token is not null)
    execute function wharf.jobs_sync_locks();
