-- One writer for webhook deliveries. `webhooks.send` (to an endpoint or by event), a job with a webhook
-- target, `cron.trigger` and cron fires all queue their deliveries through wharf.send_webhooks, which
-- makes each message's id (wharf.webhook_message_id) and body (wharf.webhook_body).

-- A JSON string literal exactly as the server writes one: PostgreSQL's to_json, except that backspace
-- and form feed are written \u0008 and \u000c (to_json writes \b and \f), so a message built here has
-- the same bytes as one the server would build.
create function wharf.json_string(s text) returns text language plpgsql immutable strict parallel safe as $$
begin
    if strpos(s, chr(8)) = 0 and strpos(s, chr(12)) = 0 then
        return to_json(s)::text;
    end if;
    return (select '"' || string_agg(case c when chr(8) then '\u0008' when chr(12) then '\u000c'
                                           else substr(to_json(c)::text, 2, length(to_json(c)::text) - 2) end,
                                      '' order by n) || '"'
            from regexp_split_to_table(s, '') with ordinality as t(c, n));
end
$$;

-- The webhook-id of a message: `msg_` and 32 lowercase hex digits, of a random UUID, or of the MD5 of
-- `key` for a message that must be the same whoever makes it (a cron fire: `<schedule>:<fire ms>`).
create function wharf.webhook_message_id(key text) returns text language sql volatile parallel safe as $$
    select 'msg_' || case when key is null then replace(gen_random_uuid()::text, '-', '') else md5(key) end
$$;

-- The bytes of a message, as the Standard Webhooks examples: {"type","timestamp","data"}, compact, with
-- `data` (JSON text) as given; a message made by a schedule also carries "schedule": {"name","fireAt"}.
create function wharf.webhook_body(event text, data text, at timestamptz, schedule_name text, fire_at timestamptz)
returns text language sql stable parallel safe as $$
    select '{"type":' || wharf.json_string(event)
        || ',"timestamp":"' || to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
        || '","data":' || coalesce(data, 'null')
        || case when schedule_name is null then ''
                else ',"schedule":{"name":' || wharf.json_string(schedule_name) || ',"fireAt":"'
                     || to_char(fire_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"}' end
        || '}'
$$;

-- Queues a batch of sends, one element of each array per send, in one statement:
--   endpoint_ids       the endpoint (it must exist; enabled or not), or null: every enabled endpoint
--                      subscribed to the event (a send no endpoint takes queues nothing);
--   events, datas      the message's type and its data (JSON text; null is JSON null);
--   idempotency_keys   a send whose key an earlier send used for that endpoint (before, or earlier in
--                      the batch) queues nothing and gets that delivery;
--   delays_ms          the first attempt this long after now (null: at once);
--   schedule_names, fires_ms   a message made by a schedule: the body's "schedule" (null: none);
--   message_keys       the message id is derived from this key (null: random), so the same message
--                      reaches an endpoint once;
--   ids                the delivery's id, taken earlier from its sequence (null: a new one);
--   hold_tokens        the delivery holds lock `cron:<schedule>` with this token until it finishes.
-- All sends of an event send share one message id and body. Rows: the send's ordinal (from 1), a
-- delivery and its endpoint, and whether the delivery is new; a send whose endpoint does not exist has
-- none. Wakes every replica's dispatcher when something was queued.
create function wharf.send_webhooks(
    endpoint_ids bigint[], events text[], datas text[], idempotency_keys text[], delays_ms bigint[],
    schedule_names text[], fires_ms bigint[], message_keys text[], ids bigint[], hold_tokens text[]
) returns table (ord bigint, delivery_id bigint, endpoint_id bigint, created boolean)
language plpgsql volatile as $$
#variable_conflict use_column
begin
    return query
    with input as materialized (
        select t.*, wharf.webhook_message_id(t.message_key) as message_id,
               wharf.webhook_body(t.event, t.data, now(), t.schedule_name,
                                  timestamptz 'epoch' + t.fire_ms * interval '1 millisecond') as body
        from unnest(endpoint_ids, events, datas, idempotency_keys, delays_ms, schedule_names, fires_ms, message_keys,
                    ids, hold_tokens)
            with ordinality as t(endpoint_id, event, data, idempotency_key, delay_ms, schedule_name, fire_ms,
                                 message_key, id, hold_token, ord)
    ),
    -- One row per delivery to make, with its id (the one given, or the next of the sequence; nextval
    -- runs after the sort).
    targets as materialized (
        select t.*, coalesce(t.id, nextval(pg_get_serial_sequence('wharf.webhook_deliveries', 'id'))) as delivery_id
        from (select i.*, e.id as target_id from input i join wharf.webhook_endpoints e on e.id = i.endpoint_id
              union all
              select i.*, e.id from input i
              join wharf.webhook_endpoints e on e.enabled and (e.events is null or i.event = any(e.events))
              where i.endpoint_id is null) t
        order by t.ord, t.target_id  -- ids in send order: a batch's deliveries are attempted in that order
    ),
    ins as (
        insert into wharf.webhook_deliveries as d (id, message_id, endpoint_id, event, body, idempotency_key,
                                                   next_attempt_at, hold_lock, hold_token)
        overriding system value
        select t.delivery_id, t.message_id,
               t.target_id, t.event, t.body, t.idempotency_key,
               now() + coalesce(t.delay_ms, 0) * interval '1 millisecond',
               case when t.hold_token is not null then 'cron:' || t.schedule_name end, t.hold_token
        from targets t
        order by t.ord, t.target_id
        on conflict do nothing
        returning d.id, d.endpoint_id, d.idempotency_key
    ),
    woke as (select count(pg_notify('wharf_wake', 'hooks:')) as n from (select 1 from ins limit 1) x)
    select t.ord, coalesce(ins.id, dup.id, prior.id), t.target_id, ins.id is not null
    from targets t
    cross join woke
    left join ins on ins.id = t.delivery_id
    left join ins dup on ins.id is null and t.idempotency_key is not null
        and dup.endpoint_id = t.target_id and dup.idempotency_key = t.idempotency_key
    left join wharf.webhook_deliveries prior on ins.id is null and dup.id is null and t.idempotency_key is not null
        and prior.endpoint_id = t.target_id and prior.idempotency_key = t.idempotency_key
    where coalesce(ins.id, dup.id, prior.id) is not null
    order by t.ord, t.target_id;
end
$$;
