import WharfJSON

/// The one job-insert path is the SQL function `wharf.enqueue_batch` (migration v0015), which applications
/// may call in their own transactions too: `jobs.enqueue`, `jobs.enqueueBatch`, `cron.trigger` and cron
/// fires all insert through it. This file packs jobs into its arguments, once for every caller.
extension JobSQL {
    /// The arrays `enqueueArrays` packs, in order: the function's arguments, except that times travel as
    /// epoch milliseconds (`_ms`) and become timestamptz exactly in SQL (`at`).
    static let enqueueColumns: [(name: String, type: String)] = [
        ("queue", "text"), ("kind", "text"), ("payload", "jsonb"), ("priority", "int"), ("run_at_ms", "bigint"),
        ("max_attempts", "int"), ("retry", "jsonb"), ("timeout_ms", "bigint"), ("unique_key", "text"),
        ("lock_key", "text"), ("tags", "jsonb"), ("meta", "jsonb"), ("idempotency_key", "text"),
        ("schedule_name", "text"), ("schedule_fire_ms", "bigint"),
    ]

    /// `specs` as the parameters `enqueueColumns` names, in that order. With `nullWhenAbsent`, a column
    /// in which every spec leaves the function's default (null; no tags; priority 0 and 20 attempts,
    /// which `wharf.enqueue_batch` puts in place of a null) is passed as one SQL null instead of an
    /// array: the function's `unnest` pads a null array with nulls, so it makes the same rows, without
    /// parsing and carrying a thousand nulls (BENCHMARKS.md, "Columns no job sets").
    static func enqueueArrays(_ specs: [JobSpec], nullWhenAbsent: Bool = false) -> [String?] {
        func text(_ values: [String?]) -> String? {
            nullWhenAbsent && values.allSatisfy { $0 == nil } ? nil : PGArray.text(values)
        }
        func ints(_ values: [Int64?], default value: Int64? = nil) -> String? {
            nullWhenAbsent && values.allSatisfy { $0 == nil || $0 == value } ? nil : PGArray.ints(values)
        }
        let untagged = nullWhenAbsent && specs.allSatisfy { $0.tags.isEmpty }
        return [
            PGArray.text(specs.map(\.queue)),
            PGArray.text(specs.map(\.kind)),
            PGArray.text(specs.map { $0.payload.text }),
            ints(specs.map(\.priority), default: 0),
            ints(specs.map(\.runAtMs)),
            ints(specs.map(\.maxAttempts), default: 20),
            text(specs.map { $0.retry?.text }),
            ints(specs.map(\.timeoutMs)),
            text(specs.map(\.uniqueKey)),
            text(specs.map(\.lockKey)),
            untagged ? nil : PGArray.text(specs.map { JSON.array($0.tags.map(JSON.string)).text }),
            text(specs.map { $0.meta?.text }),
            text(specs.map(\.idempotencyKey)),
            text(specs.map(\.scheduleName)),
            ints(specs.map(\.scheduleFireMs)),
        ]
    }

    /// The rows of `enqueueArrays` passed from parameter `$first` on: `unnest(...) with ordinality as
    /// t(<enqueueColumns>, ord)`.
    static func enqueueRows(fromParameter first: Int) -> String {
        let arrays = enqueueColumns.enumerated().map { i, c in "$\(first + i)::\(c.type)[]" }
        let names = enqueueColumns.map(\.name) + ["ord"]
        return "unnest(\(arrays.joined(separator: ", "))) with ordinality as t(\(names.joined(separator: ", ")))"
    }

    /// `wharf.enqueue_batch` over the rows of `source` (alias `k`; columns named as `enqueueColumns`,
    /// plus `ord`), in `ord` order: one row of argument arrays, then the call, whose rows are `e.*`
    /// (ord, job_id, job_state, created, replayed). `overrides` replaces a column's value (by argument
    /// name; cron fires take the payload from the schedule row and bring job ids and hold tokens).
    static func enqueueBatch(over source: String, overrides: [String: String] = [:]) -> String {
        let arguments: [(name: String, value: String)] =
            enqueueColumns.map { c in
                switch c.name {
                case "run_at_ms": ("run_at", SQLTime.at("k.run_at_ms"))
                case "schedule_fire_ms": ("schedule_fire_at", SQLTime.at("k.schedule_fire_ms"))
                default: (c.name, "k.\(c.name)")
                }
            } + [("id", "null::bigint"), ("hold_token", "null::text")]
        let aggregates = arguments.map { a in "array_agg(\(overrides[a.name] ?? a.value) order by k.ord) as \(a.name)" }
        let call = arguments.map { "\($0.name) => a.\($0.name)" }
        return """
            (select \(aggregates.joined(separator: ",\n        ")) from \(source) k) a
            cross join lateral wharf.enqueue_batch(\(call.joined(separator: ", "))) e
            """
    }

    /// Inserts a batch of jobs (`enqueueArrays` as `$1...$15`) through `wharf.enqueue_batch`, passing
    /// the arrays straight through. Columns: ord, id, state, created, replayed, in input order.
    static let enqueue: String = {
        var n = 0
        let arguments = enqueueColumns.map { c -> String in
            n += 1
            switch c.name {
            case "run_at_ms", "schedule_fire_ms":
                // Element by element, keeping the order and the nulls.
                let name = c.name == "run_at_ms" ? "run_at" : "schedule_fire_at"
                return
                    "\(name) => array(select \(SQLTime.at("u.ms")) from unnest($\(n)::bigint[]) with ordinality u(ms, n) order by u.n)"
            default:
                return "\(c.name) => $\(n)::\(c.type)[]"
            }
        }
        return """
            select e.ord, e.job_id, e.job_state, e.created, e.replayed
            from wharf.enqueue_batch(\(arguments.joined(separator: ",\n    "))) e
            """
    }()

    /// Finds the unfinished job holding each unique key (after a concurrent enqueue won the race); a
    /// waiting job holds its key too (migration v0023).
    static let byUniqueKeys = """
        select unique_key, id, state from wharf.jobs
        where unique_key = any($1::text[]) and (state in \(hotStates) or state = 'waiting')
        """
}
