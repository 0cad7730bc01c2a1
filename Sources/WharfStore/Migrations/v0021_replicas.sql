-- Each replica keeps its row fresh (seen_at every few seconds), says where it listens and whether it
-- drains, and deletes its row when it stops; rows not seen for an hour are deleted by the next replica
-- that writes. server.replicas lists them (alive: seen in the last 15 seconds).
alter table wharf.replicas
    add column listen text,
    add column http_listen text,
    add column draining boolean not null default false;
