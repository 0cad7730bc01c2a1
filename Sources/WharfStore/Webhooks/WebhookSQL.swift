/// The statements on `wharf.webhook_endpoints`, `webhook_deliveries` and `webhook_attempts`.
enum WebhookSQL {
    /// An endpoint with its health over the last 24 hours (alias `e`, lateral `h`).
    static let endpointColumns = """
        e.id, e.url, e.description, array_to_json(e.events)::text, e.rate_limit_per_s, e.enabled,
        \(SQLTime.ms("e.disabled_at")), e.disabled_reason, e.disable_after_ms, e.dormant_after_ms,
        \(SQLTime.ms("e.last_success_at")), \(SQLTime.ms("e.last_failure_at")), \(SQLTime.ms("e.failing_since")), e.consecutive_failures,
        \(SQLTime.ms("e.created_at")), \(SQLTime.ms("e.updated_at")), \(SQLTime.ms("e.previous_secret_until")),
        h.attempts_1h, h.successes_1h, h.attempts_24h, h.successes_24h, h.p50, h.p95,
        (select count(*) from wharf.webhook_deliveries d where d.endpoint_id = e.id and d.state in ('pending', 'delivering')),
        \(SQLTime.ms("now()")), e.retention_ms
        """

    static let health = """
        left join lateral (
            select count(*) filter (where a.attempted_at > now() - interval '1 hour') as attempts_1h,
                   count(*) filter (where a.attempted_at > now() - interval '1 hour' and a.status between 200 and 299)
                       as successes_1h,
                   count(*) as attempts_24h,
                   count(*) filter (where a.status between 200 and 299) as successes_24h,
                   percentile_cont(0.5) within group (order by a.latency_ms) as p50,
                   percentile_cont(0.95) within group (order by a.latency_ms) as p95
            from wharf.webhook_attempts a
            where a.endpoint_id = e.id and a.attempted_at > now() - interval '24 hours'
        ) h on true
        """

    static let insertEndpoint = """
        with e as (
            insert into wharf.webhook_endpoints (url, description, events, rate_limit_per_s, secret, disable_after_ms,
                                                 dormant_after_ms, retention_ms)
            values ($1, $2, $3::text[], $4, $5, $6, $7, $8)
            returning *
        )
        select \(endpointColumns), \(ping("e.id")) from e \(health)
        """

    /// A `webhook.ping` message to endpoint `id`: its id and body, as every message's are made.
    static func ping(_ id: String) -> String {
        """
        wharf.webhook_message_id(null),
        wharf.webhook_body('webhook.ping', '{"endpointId":' || wharf.json_string(\(id)::text) || '}', now(), null, null)
        """
    }

    /// Enabled endpoints that list event types, with their lists (the server's own events reach only
    /// endpoints that name them).
    static let endpointEventLists = """
        select e.id, array_to_json(e.events)::text from wharf.webhook_endpoints e
        where e.enabled and e.events is not null and cardinality(e.events) > 0
        """

    static let getEndpoint = "select \(endpointColumns) from wharf.webhook_endpoints e \(health) where e.id = $1"

    static let listEndpoints = """
        select \(endpointColumns) from wharf.webhook_endpoints e \(health)
        where ($1::bigint is null or e.id > $1) order by e.id limit $2
        """

    /// Changes the fields whose flag is set (`$2`..`$7` and `$9` values; `$8` which are set, as a text array).
    static let updateEndpoint = """
        with e as (
            update wharf.webhook_endpoints e
            set url = case when 'url' = any($8::text[]) then $2 else e.url end,
                description = case when 'description' = any($8::text[]) then $3 else e.description end,
                events = case when 'events' = any($8::text[]) then $4::text[] else e.events end,
                rate_limit_per_s = case when 'rateLimitPerS' = any($8::text[]) then $5::int else e.rate_limit_per_s end,
                disable_after_ms = case when 'disableAfterMs' = any($8::text[]) then $6::bigint else e.disable_after_ms end,
                dormant_after_ms = case when 'dormantAfterMs' = any($8::text[]) then $7::bigint else e.dormant_after_ms end,
                retention_ms = case when 'retentionMs' = any($8::text[]) then $9::bigint else e.retention_ms end,
                updated_at = now()
            where e.id = $1
            returning *
        )
        select \(endpointColumns) from e \(health)
        """

    static let removeEndpoint = "delete from wharf.webhook_endpoints where id = $1 returning id"

    /// The secrets that sign now: the current one, and the previous one during its grace period; and a
    /// `webhook.ping` message.
    static let secrets = """
        select e.url, e.secret, case when e.previous_secret_until > now() then e.previous_secret end, \(ping("e.id"))
        from wharf.webhook_endpoints e where e.id = $1
        """

    static let rotateSecret = """
        update wharf.webhook_endpoints
        set previous_secret = secret, previous_secret_until = now() + $2::bigint * interval '1 millisecond',
            secret = $3, updated_at = now()
        where id = $1
        returning id
        """

    static let enableEndpoint = """
        with e as (
            update wharf.webhook_endpoints
            set enabled = true, disabled_at = null, disabled_reason = null, failing_since = null,
                consecutive_failures = 0, updated_at = now()
            where id = $1
            returning *
        )
        select \(endpointColumns), \(WakeTopic.hooks.notify()) is null from e \(health)
        """

    /// Takes up to `$1` due deliveries of enabled endpoints for `$2` ms: pending ones whose time came,
    /// and attempts whose replica died (lease run out), shared fairly among endpoints.
    ///
    /// The candidates are the `$7` earliest due deliveries of endpoints not in `$3` (those that may take
    /// nothing now). Each gets its slot: its endpoint's attempts in flight on this replica (`$4`/`$5`)
    /// plus its rank among that endpoint's candidates; slots above `$6` (per endpoint) are left. The
    /// claim takes them in slot order, round-robin over endpoints: every endpoint's first slot, then
    /// second ones, and so on, with at most `$8` of them beyond an endpoint's first.
    static let claim = """
        with cand as materialized (
            select d.id, d.endpoint_id, d.next_attempt_at from wharf.webhook_deliveries d
            join wharf.webhook_endpoints e on e.id = d.endpoint_id
            where d.state in ('pending', 'delivering') and d.next_attempt_at <= now()
              and (d.state = 'pending' or d.lease_until < now()) and e.enabled
              and not (d.endpoint_id = any($3::bigint[]))
            order by d.next_attempt_at
            limit $7
        ),
        ranked as (
            select c.id, c.next_attempt_at,
                   coalesce(b.n, 0) + row_number() over (partition by c.endpoint_id order by c.next_attempt_at, c.id)
                       as slot
            from cand c
            left join unnest($4::bigint[], $5::int[]) as b(endpoint_id, n) on b.endpoint_id = c.endpoint_id
        ),
        ordered as (
            select r.id, r.slot, row_number() over (order by r.slot, r.next_attempt_at, r.id) as k,
                   count(*) filter (where r.slot = 1) over () as firsts
            from ranked r
            where r.slot <= $6
        ),
        due as (
            select d.id from wharf.webhook_deliveries d
            join ordered o on o.id = d.id
            where o.k <= $1 and (o.slot = 1 or o.k - o.firsts <= $8)
              and d.state in ('pending', 'delivering') and d.next_attempt_at <= now()
              and (d.state = 'pending' or d.lease_until < now())
            for update of d skip locked
        )
        update wharf.webhook_deliveries d
        set state = 'delivering', attempt = d.attempt + 1, lease_until = now() + $2::bigint * interval '1 millisecond'
        from due, wharf.webhook_endpoints e
        where d.id = due.id and e.id = d.endpoint_id
        returning d.id, d.message_id, d.endpoint_id, d.attempt, d.body, e.url, e.secret,
                  case when e.previous_secret_until > now() then e.previous_secret end, e.rate_limit_per_s, \(SQLTime.ms("now()"))
        """

    /// Records a batch of attempts in one statement: each attempt row, each delivery's next state
    /// (`pending` after `retry_ms`, `succeeded` or `failed`), and per endpoint its health from the
    /// batch's outcomes in order (`$11..$16`: whether any attempt succeeded, whether the last did, the
    /// failures after the last success, whether any failed, whether one answered 410). An endpoint is
    /// disabled on 410, or when it has failed without a success for longer than its disable-after
    /// period (`$17`, the server default). Rows per endpoint: id, enabled now, enabled before, reason.
    static let record = """
        with input as (
            select * from unnest($1::bigint[], $2::int[], $3::bigint[], $4::int[], $5::float8[], $6::text[], $7::text[],
                                 $8::text[], $9::text[], $10::bigint[])
                as t(delivery_id, attempt, endpoint_id, status, latency_ms, error_kind, error, response_body, next_state,
                     retry_ms)
        ),
        a as (
            insert into wharf.webhook_attempts (delivery_id, attempt, endpoint_id, status, latency_ms, error_kind, error,
                                               response_body)
            select delivery_id, attempt, endpoint_id, status, latency_ms, error_kind, error, response_body from input
            on conflict do nothing
        ),
        d as (
            update wharf.webhook_deliveries w
            set state = i.next_state, lease_until = null, last_status = i.status, last_error = i.error,
                next_attempt_at = case when i.next_state = 'pending'
                                       then now() + i.retry_ms * interval '1 millisecond' else w.next_attempt_at end,
                finished_at = case when i.next_state in ('succeeded', 'failed') then now() end
            from input i
            where w.id = i.delivery_id and w.attempt = i.attempt and w.state = 'delivering'
        ),
        g as (
            select * from unnest($11::bigint[], $12::bool[], $13::bool[], $14::int[], $15::bool[], $16::bool[])
                as t(endpoint_id, any_success, last_success, tail_failures, any_failure, gone)
        ),
        old as (select e.id, e.enabled from wharf.webhook_endpoints e join g on g.endpoint_id = e.id),
        e as (
            update wharf.webhook_endpoints e
            set last_success_at = case when g.any_success then now() else e.last_success_at end,
                last_failure_at = case when g.any_failure then now() else e.last_failure_at end,
                failing_since = case when g.last_success then null
                                     when g.any_success then now()
                                     else coalesce(e.failing_since, now()) end,
                consecutive_failures = case when g.any_success then g.tail_failures
                                            else e.consecutive_failures + g.tail_failures end,
                enabled = e.enabled and not g.gone and (g.last_success or g.any_success
                    or coalesce(e.failing_since, now()) > now() - coalesce(e.disable_after_ms, $17) * interval '1 millisecond'),
                disabled_at = case when e.enabled and (g.gone or (not g.any_success and coalesce(e.failing_since, now())
                    <= now() - coalesce(e.disable_after_ms, $17) * interval '1 millisecond')) then now()
                    else e.disabled_at end,
                disabled_reason = case when e.enabled and g.gone then 'gone'
                    when e.enabled and not g.any_success and coalesce(e.failing_since, now())
                        <= now() - coalesce(e.disable_after_ms, $17) * interval '1 millisecond' then 'failing'
                    else e.disabled_reason end
            from g
            where e.id = g.endpoint_id
            returning e.id, e.enabled, e.disabled_reason
        )
        select e.id, e.enabled, old.enabled, e.disabled_reason from e join old on old.id = e.id
        """

    /// When the dispatcher should look again: the earliest pending attempt of an enabled endpoint not
    /// in `$1` (endpoints that may take nothing now), the earliest lease expiry, and the database's clock.
    static let nextDue = """
        select (select \(SQLTime.ms("min(d.next_attempt_at)")) from wharf.webhook_deliveries d
                join wharf.webhook_endpoints e on e.id = d.endpoint_id
                where d.state = 'pending' and e.enabled and not (d.endpoint_id = any($1::bigint[]))),
               (select \(SQLTime.ms("min(d.lease_until)")) from wharf.webhook_deliveries d where d.state = 'delivering'),
               \(SQLTime.ms("now()"))
        """

    static let deliveries = """
        select d.id, d.message_id, d.event, d.state, d.attempt, \(SQLTime.ms("d.next_attempt_at")),
               \(SQLTime.ms("d.created_at")), \(SQLTime.ms("d.finished_at")), d.last_status, d.last_error,
               (select json_agg(json_build_object('attempt', a.attempt, 'atMs', \(SQLTime.ms("a.attempted_at")), 'status', a.status,
                                                  'latencyMs', a.latency_ms, 'errorKind', a.error_kind, 'error', a.error,
                                                  'responseBody', a.response_body) order by a.attempt)
                from wharf.webhook_attempts a where a.delivery_id = d.id)::text,
               d.endpoint_id
        from wharf.webhook_deliveries d
        where d.endpoint_id = $1 and ($2::text is null or d.state = $2) and ($3::bigint is null or d.id < $3)
        order by d.id desc
        limit $4
        """

    static let redeliver = """
        with d as (
            update wharf.webhook_deliveries
            set state = 'pending', next_attempt_at = now(), finished_at = null, lease_until = null
            where id = $1 and state in ('succeeded', 'failed')
            returning id
        )
        select (select count(*) from d), (select state from wharf.webhook_deliveries where id = $1),
               \(WakeTopic.hooks.notify()) is null
        """

    static let recover = """
        with d as (
            update wharf.webhook_deliveries
            set state = 'pending', next_attempt_at = now(), finished_at = null, lease_until = null
            where endpoint_id = $1 and state = 'failed' and created_at >= \(SQLTime.at("$2::bigint"))
            returning id
        )
        select count(*), \(WakeTopic.hooks.notify()) is null from d
        """

    /// Deletes up to `$2` finished deliveries (and, by cascade, their attempts) that finished longer
    /// ago than their endpoint's retention (`$1`, the server's default, when it has none), oldest
    /// first per endpoint; rows another pruner holds are skipped. Returns how many went.
    static let prune = """
        with doomed as (
            select d.id
            from wharf.webhook_endpoints e
            cross join lateral (
                select d.id from wharf.webhook_deliveries d
                where d.endpoint_id = e.id and d.state in ('succeeded', 'failed')
                  and d.finished_at < now() - coalesce(e.retention_ms, $1::bigint) * interval '1 millisecond'
                order by d.finished_at
                limit $2
                for update skip locked
            ) d
            limit $2
        ),
        gone as (
            delete from wharf.webhook_deliveries d using doomed
            where d.id = doomed.id and d.state in ('succeeded', 'failed')
            returning 1
        )
        select count(*) from gone
        """

    /// Gives a claimed delivery back untried (its endpoint's rate limit): no attempt is counted.
    static let deferDelivery = """
        update wharf.webhook_deliveries
        set state = 'pending', attempt = attempt - 1, lease_until = null,
            next_attempt_at = now() + $3::bigint * interval '1 millisecond'
        where id = $1 and attempt = $2 and state = 'delivering'
        """

    /// Queues a batch of sends (see `wharf.send_webhooks`, migration v0016): rows of the send's
    /// ordinal, a delivery, its endpoint, and whether it is new.
    static let send = """
        select * from wharf.send_webhooks($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                                          $7::bigint[], null, null, null)
        """
}
