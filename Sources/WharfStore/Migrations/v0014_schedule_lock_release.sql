-- Two fixes to the locks that jobs hold, and keyed jobs in the line of lock waiters. Every statement
-- here may run again on a database that has it (create or replace, if not exists).
--
-- 1. A job of an overlap "skip" schedule releases `cron:<schedule>` when it ends dead. v0006 released
--    it on 'completed', 'cancelled' and 'discarded', a state jobs never take ('dead' is the one they
--    end in after their last failure), so a schedule whose job died kept its lock, with its century-long
--    expiry, until a later fire took it over (and for ever while the schedule was paused). The
--    function is replaced, and the locks that dead jobs still hold are released below.
--
-- 2. Keyed jobs wait for their lock in the same line as `locks.acquire` waiters. A lease that finds a
--    keyed job's lock held, or others in line for it, queues a row in `wharf.lock_waiters` for the keyed
--    jobs of that queue (`queue` set, `replica_id` 'queue:<queue>', holder 'jobs of queue <queue>'): one
--    row per (name, queue), whatever the number of jobs. The row takes its place by `seq` like any
--    waiter; a lease grants a keyed job only when no live waiter is ahead of its queue's row, and deletes
--    the row when it does. The row counts for 4 seconds after the lease that queued or refreshed it (a
--    lease refreshes it about once a second while workers poll the queue, and idle long-polls re-check
--    every 500 ms), so keyed jobs nobody polls for stop holding the name up a few seconds later.
--    Whatever frees a lock that such a row waits for (a release, a job leaving `running`, a waiter
--    leaving) notifies `jobs:<queue>` as well as `lock:<name>`, so idle long-polling workers on every
--    replica try the lease at once.

create or replace function wharf.jobs_sync_locks() returns trigger language plpgsql as $$
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
       and (tg_op = 'DELETE' or new.state in ('completed', 'dead', 'cancelled')) then
        perform wharf.release_lock('cron:' || old.schedule_name, old.hold_token);
    end if;
    return null;
end
$$;

alter table wharf.lock_waiters add column if not exists queue text;

-- One row per (lock name, queue) of waiting keyed jobs.
create unique index if not exists lock_waiters_jobs_idx on wharf.lock_waiters (name, queue) where queue is not null;

-- Wakes whoever waits for `lock_name`: clients (`lock:<name>`) and idle long-polling workers of the
-- queues whose keyed jobs wait for it (`jobs:<queue>`).
create or replace function wharf.wake_lock_line(lock_name text) returns void language plpgsql as $$
begin
    perform pg_notify('wharf_wake', 'lock:' || lock_name);
    perform pg_notify('wharf_wake', 'jobs:' || w.queue)
    from wharf.lock_waiters w
    where w.name = lock_name and w.queue is not null and w.deadline > now();
end
$$;

create or replace function wharf.release_lock(lock_name text, lock_token text) returns void language plpgsql as $$
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
        perform wharf.wake_lock_line(lock_name);
    end if;
end
$$;

-- The schedule locks that dead jobs still hold (the bug of 1.), released now.
select wharf.release_lock('cron:' || j.schedule_name, j.hold_token)
from wharf.jobs j
where j.state = 'dead' and j.hold_token is not null and j.schedule_name is not null
  and exists (select 1 from wharf.locks l where l.name = 'cron:' || j.schedule_name and l.token = j.hold_token);
