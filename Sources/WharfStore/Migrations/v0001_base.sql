-- Replicas announce themselves so operators can see which servers share this database.
create table wharf.replicas (
    id text not null,
    hostname text not null,
    version text not null,
    started_at timestamptz not null default now(),
    seen_at timestamptz not null default now(),
    constraint replicas_pkey primary key (id)
);
