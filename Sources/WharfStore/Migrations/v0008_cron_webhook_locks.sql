-- Overlap "skip" for schedules whose target is a webhook: each fire's delivery holds the schedule's
-- lock `cron:<schedule>` (`hold_lock`, `hold_token`) until it succeeds or fails for good, as a job
-- holds it until it finishes (v0007).
alter table wharf.webhook_deliveries add column hold_lock text, add column hold_token text;

create function wharf.webhook_deliveries_sync_locks() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' or new.state in ('succeeded', 'failed') then
        perform wharf.release_lock(old.hold_lock, old.hold_token);
    end if;
    return null;
end
$$;

create trigger webhook_deliveries_sync_locks after update or delete on wharf.webhook_deliveries
    for each row when (old.hold_token is not null and old.state in ('pending', 'delivering'))
    execute function wharf.webhook_deliveries_sync_locks();
