-- The scheduler asks after every batch when to look again: the earliest unclaimed next fire (read
-- from schedules_due_idx) and the earliest claim expiry. The second had no index and scanned every
-- schedule (43 ms at 400,000 schedules), delaying every fire by that much. Claims are few at any
-- moment (the batches in flight), so this partial index stays small however many schedules exist.
create index schedules_claimed_idx on wharf.schedules (claimed_until)
    where claimed_until is not null;
