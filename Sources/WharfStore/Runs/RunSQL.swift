/// The statements of runs, batches and dependencies (Protocol/workflows.md). The work is done by the
/// SQL functions of migrations v0020, v0022 and v0023 (`wharf.complete_steps`, `wharf.enqueue_workflow`,
/// `wharf.cancel_run`, and the trigger that ends runs, counts batches and fires their callbacks, and
/// releases waiting jobs), so that each call is one statement and one transaction.
enum RunSQL {
    /// Step completions of one loop turn in one statement (one transaction): per item, `$1` job id,
    /// `$2` lease token, `$3` result, then the next step's `$5` queue, `$6` kind, `$7` payload, `$8` runAt
    /// (epoch ms), `$9` priority, `$10` maxAttempts, `$11` retry, `$12` timeoutMs (null: the completed
    /// step's); `$4` is the server's retention of completed jobs. A row per item, in item order (the
    /// outcome is null for a job that does not exist).
    static let completeSteps = """
        select s.ord, s.outcome, s.job_state, s.token_matches, s.run_id, s.step, s.next_job_id, s.queue,
               \(SQLTime.durationMs("now() - s.leased_at"))
        from wharf.complete_steps($1::bigint[], $2::text[], $3::jsonb[], $4::bigint, $5::text[], $6::text[],
                                  $7::jsonb[],
                                  array(select \(SQLTime.at("u.ms")) from unnest($8::bigint[]) with ordinality u(ms, n)
                                        order by u.n),
                                  $9::int[], $10::int[], $11::jsonb[], $12::bigint[]) s
        order by s.ord
        """

    /// `JobSQL.enqueueArrays`' queue..idempotency_key arrays (`$1`-`$13`, without schedule), then `$14`
    /// dependsOn (a JSON array per job), `$15` onDependencyFailure, `$16` batch callbacks. Rows: ord,
    /// job id, state, created, replayed, batch id (or one refusal row, see `wharf.enqueue_workflow`).
    static let enqueueWorkflow = """
        select w.ord, w.job_id, w.job_state, w.created, w.replayed, w.batch_id
        from wharf.enqueue_workflow(
            $1::text[], $2::text[], $3::jsonb[], $4::int[],
            array(select \(SQLTime.at("u.ms")) from unnest($5::bigint[]) with ordinality u(ms, n) order by u.n),
            $6::int[], $7::jsonb[], $8::bigint[], $9::text[], $10::text[], $11::jsonb[], $12::jsonb[], $13::text[],
            $14::jsonb[], $15::text[], $16::jsonb) w
        """

    static let cancel = "select c.previous_state, c.cancelled_job_id from wharf.cancel_run($1::bigint, $2::bigint) c"

    static let runColumns = """
        r.id, r.state, r.step, r.current_job_id, r.queue, r.kind, \(SQLTime.ms("r.created_at")),
        \(SQLTime.ms("r.updated_at")), \(SQLTime.ms("r.finished_at"))
        """

    /// A run, its outputs, and each of its steps' jobs that retention has not pruned.
    static let get = """
        select \(runColumns), r.outputs::text,
            (select coalesce(json_agg(json_build_object(
                        'step', j.run_step, 'jobId', j.id::text, 'state', j.state, 'queue', j.queue, 'kind', j.kind,
                        'attempt', j.attempt, 'maxAttempts', j.max_attempts, 'payload', j.payload,
                        'result', j.result, 'lastError', j.last_error, 'attempts', j.attempts)
                    order by j.run_step), '[]')
             from wharf.jobs j where j.run_id = r.id)::text
        from wharf.runs r where r.id = $1
        """

    /// A page of runs, newest first: `$1` state (null: any), `$2` keyset cursor (an id), `$3` limit.
    static let list = """
        select \(runColumns) from wharf.runs r
        where ($1::text is null or r.state = $1) and ($2::bigint is null or r.id < $2)
        order by r.id desc
        limit $3
        """

    static let getBatch = """
        select b.id, b.total, b.completed, b.dead, b.cancelled,
               (select coalesce(json_agg(f::text order by f), '[]') from unnest(b.failed_ids) f)::text,
               b.callbacks::text, b.callback_jobs::text, \(SQLTime.ms("b.created_at")), \(SQLTime.ms("b.finished_at"))
        from wharf.batches b where b.id = $1
        """
}
