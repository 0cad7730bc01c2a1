import WharfCore
import WharfRPC
import WharfStore

/// The cron family: `cron.upsert`, `get`, `list`, `remove`, `pause`, `resume`, `trigger`, `preview`.
extension CronService {
    func register(in methods: MethodTable) {
        // A worker reshapes the schedule it runs for with `jobs.complete {schedulePatch}`, not `cron.upsert`.

        methods.register("cron.upsert") { [unowned self] call in
            let d = try Self.scheduleDefinition(call.params, cron: self)
            let schedule = try Self.compiled(d, cron: self)
            let now = self.dbNowMs
            // No fire at all from now (or startAt) on is a definition that can never fire here; a
            // first fire past endAt is a window that has closed (accepted, with no next fire).
            let next: Int64?
            switch CronPlanner.firstFire(schedule, nowMs: now, startAtMs: d.startAtMs, endAtMs: d.endAtMs) {
            case .never: throw Self.neverFires(schedule, d, afterMs: max(now, (d.startAtMs ?? now) - 1))
            case .windowClosed: next = nil
            case .at(let first): next = first
            }
            let done = { (r: Result<(row: ScheduleRow, created: Bool), RPCError>) in
                if case .success(let up) = r, let ms = up.row.nextFireMs, !up.row.paused { self.wake(forFireAtMs: ms) }
                call.finish(r.map { self.upserted($0.row, created: $0.created) })
            }
            // Upserts that leave `paused` as it is share one statement per loop iteration.
            if d.paused == nil {
                self.upserts.add((d, next), done)
            } else {
                store.upsertSchedule(d, nextFireMs: next) { done($0.mapError(\.rpcError)) }
            }
        }

        methods.register("cron.get") { [unowned self] call in
            try call.params.onlyKnown(["name"])
            let name = try call.params.name("name")
            store.schedule(name) { r in call.finish(self.found(r, name: name)) }
        }

        methods.register("cron.list") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["prefix", "limit", "cursor"])
            let limit = Int(try p.optionalInt("limit", in: 1...1000) ?? 100)
            store.schedules(prefix: try p.optionalString("prefix"), after: try p.optionalString("cursor"), limit: limit) {
                r in call.finish(r.mapError(\.rpcError).map { self.listed($0, limit: limit) })
            }
        }

        methods.register("cron.remove") { [unowned self] call in
            try call.params.onlyKnown(["name"])
            let name = try call.params.name("name")
            store.removeSchedule(name) { r in
                call.finish(
                    r.mapError(\.rpcError).flatMap { removed in
                        removed ? .success(CronReplies.removed(name)) : .failure(CronReplies.notFound(name))
                    })
            }
        }

        methods.register("cron.pause") { [unowned self] call in
            try call.params.onlyKnown(["name", "note"])
            let name = try call.params.name("name")
            let note = try call.params.optionalName("note", maxLength: 1000)
            store.pauseSchedule(name, note: note) { r in call.finish(self.found(r, name: name)) }
        }

        methods.register("cron.resume") { [unowned self] call in
            try call.params.onlyKnown(["name"])
            let name = try call.params.name("name")
            resumeSchedule(name, call: call, attempt: 0)
        }

        methods.register("cron.trigger") { [unowned self] call in
            try call.params.onlyKnown(["name"])
            let name = try call.params.name("name")
            store.schedule(name) { [unowned self] r in
                switch r {
                case .failure(let e): call.fail(e.rpcError)
                case .success(nil): call.fail(CronReplies.notFound(name))
                case .success(let row?):
                    let fireMs = self.dbNowMs
                    guard let jobObject = row.target["job"]?.objectValue else {
                        let w = row.target["webhook"] ?? .null
                        let event = w["event"]?.stringValue ?? "cron.fire"
                        let endpoint = w["endpointId"]?.stringValue.flatMap { Int64($0) } ?? w["endpointId"]?.intValue
                        return self.webhooks.send(
                            endpointID: endpoint ?? 0, event: event, data: w["payload"] ?? .null,
                            schedule: (name, fireMs)
                        ) { r in
                            call.finish(r.flatMap { CronReplies.triggered($0, endpointID: endpoint ?? 0, fireMs: fireMs) })
                        }
                    }
                    do throws(RPCError) {
                        var spec = try JobSpec.parse(Params(object: jobObject))
                        spec.scheduleName = name
                        spec.scheduleFireMs = fireMs
                        self.jobs.enqueue(spec) { r in call.finish(r.map { CronReplies.triggered($0, fireMs: fireMs) }) }
                    } catch {
                        call.fail(error)
                    }
                }
            }
        }

        methods.register("cron.preview") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["expression", "everyMs", "timezone", "dayMatch", "dstGap", "dstFold", "count", "from"])
            var d = ScheduleDefinition(name: "preview", target: .null)
            try Self.parseTiming(p, into: &d, cron: self)
            let schedule = try Self.compiled(d, cron: self)
            let count = Int(try p.optionalInt("count", in: 1...1000) ?? 5)
            var from = self.dbNowMs
            if let text = try p.optionalString("from") {
                guard let ms = Timestamp.parse(text) else {
                    throw RPCError.invalidParams(field: "from", "must be an RFC 3339 date-time")
                }
                from = ms
            }
            // `from` itself is a candidate, as in "the fires from this instant on". The list stops at
            // 9999-12-31 (CronSchedule.latestFireMs), so it may be shorter than `count`.
            let fires = schedule.nextFires(afterMs: from - 1, count: count)
            // None from `from` on is none from now on when `from` is not later (no second search).
            let now = self.dbNowMs
            if fires.isEmpty, from - 1 <= now || schedule.nextFire(afterMs: now) == nil {
                throw Self.neverFires(schedule, d, afterMs: now)
            }
            call.reply(CronReplies.preview(schedule, timezone: d.timezone, fires: fires))
        }
    }

    /// Resumes with the next fire counted from now; retried when the schedule changed meanwhile.
    private func resumeSchedule(_ name: String, call: Call, attempt: Int) {
        store.schedule(name) { [unowned self] r in
            switch r {
            case .failure(let e): return call.fail(e.rpcError)
            case .success(nil): return call.fail(CronReplies.notFound(name))
            case .success(let row?):
                let next: Int64?
                do {
                    let s = try CronService.compile(
                        expression: row.expression, everyMs: row.everyMs, timezone: row.timezone,
                        dayMatch: row.dayMatch, dstGap: row.dstGap, dstFold: row.dstFold, startAtMs: row.startAtMs)
                    next = CronPlanner.resumedNextFire(
                        s, nowMs: self.dbNowMs, startAtMs: row.startAtMs, endAtMs: row.endAtMs)
                } catch {
                    return call.fail(.internalError)
                }
                store.resumeSchedule(name, version: row.version, nextFireMs: next) { [unowned self] r in
                    switch r {
                    case .failure(let e): call.fail(e.rpcError)
                    case .success(let row?):
                        if let ms = row.nextFireMs { self.wake(forFireAtMs: ms) }
                        call.reply(.object(self.json(row)))
                    case .success(nil):
                        guard attempt < 5 else { return call.fail(CronReplies.keepsChanging(name)) }
                        self.resumeSchedule(name, call: call, attempt: attempt + 1)
                    }
                }
            }
        }
    }

    // MARK: Validation

    static let scheduleFields: Set<String> = [
        "name", "expression", "everyMs", "timezone", "dayMatch", "dstGap", "dstFold", "target", "overlap", "missed",
        "missedWindowMs", "jitterMs", "startAt", "endAt", "limit", "paused", "pausedNote",
    ]

    /// The job options a schedule's template may carry (the fire time decides when it runs).
    static let templateJobFields: Set<String> = JobSpec.fields.subtracting(["runAt", "delayMs"])

    static func scheduleDefinition(_ p: Params, cron: CronService) throws(RPCError) -> ScheduleDefinition {
        try p.onlyKnown(scheduleFields)
        let name = try p.name("name")
        guard let target = try p.optionalObject("target") else {
            throw RPCError.invalidParams(field: "target", "is required: {job: {queue, kind, payload, ...}}")
        }
        var d = ScheduleDefinition(name: name, target: try parseTarget(target))
        try parseTiming(p, into: &d, cron: cron)
        d.overlap = try oneOf(p, "overlap", OverlapPolicy.allCases.map(\.rawValue)) ?? OverlapPolicy.allow.rawValue
        d.missed = try oneOf(p, "missed", MissedPolicy.allCases.map(\.rawValue)) ?? MissedPolicy.runOnce.rawValue
        d.missedWindowMs = try p.optionalInt("missedWindowMs", in: 0...31_536_000_000) ?? 60_000
        d.jitterMs = try p.optionalInt("jitterMs", in: 0...86_400_000) ?? 0
        d.startAtMs = try time(p, "startAt")
        d.endAtMs = try time(p, "endAt")
        if let s = d.startAtMs, let e = d.endAtMs, e < s {
            throw RPCError.invalidParams(field: "endAt", "must not be before startAt")
        }
        d.limit = try p.optionalInt("limit", in: 1...Int64(Int32.max))
        if p.has("paused") { d.paused = try p.bool("paused", default: false) }
        d.pausedNote = try p.optionalName("pausedNote", maxLength: 1000)
        return d
    }

    /// Fills the timing fields shared by `cron.upsert` and `cron.preview`, checking they compile and
    /// never fire more often than the server's minimum period (`--cron-min-period-ms`).
    static func parseTiming(_ p: Params, into d: inout ScheduleDefinition, cron: CronService) throws(RPCError) {
        let expression = try p.optionalString("expression")
        let every = try p.optionalInt("everyMs", in: 1...31_536_000_000)
        switch (expression, every) {
        case (nil, nil): throw RPCError.invalidParams(field: "expression", "is required (or everyMs)")
        case (.some, .some): throw RPCError.invalidParams(field: "everyMs", "cannot be combined with expression")
        default: break
        }
        if let expression, expression.utf8.count > 400 {
            throw RPCError.invalidParams(field: "expression", "must be at most 400 bytes")
        }
        d.expression = expression
        d.everyMs = every
        d.timezone = try p.optionalName("timezone", maxLength: 100) ?? "UTC"
        d.dayMatch = try oneOf(p, "dayMatch", ["or", "and"]) ?? "or"
        d.dstGap = try oneOf(p, "dstGap", DSTGapPolicy.allCases.map(\.rawValue))
        d.dstFold = try oneOf(p, "dstFold", DSTFoldPolicy.allCases.map(\.rawValue))
        let period = try compiled(d, cron: cron).shortestPeriodMs
        let minPeriodMs = cron.minPeriodMs
        if period < minPeriodMs {
            throw RPCError.invalidParams(
                field: every == nil ? "expression" : "everyMs",
                "fires every \(period) ms at its most frequent; this server's minimum period is \(minPeriodMs) ms")
        }
    }

    /// The refusal of a definition with no fire time from now (or its start) on, saying why when a
    /// daylight-saving policy is the cause.
    static func neverFires(_ schedule: CronSchedule, _ d: ScheduleDefinition, afterMs: Int64) -> RPCError {
        if schedule.dstGap == .skip, let expression = schedule.expression {
            let atTransition = CronSchedule(
                expression: expression, zone: schedule.zone, dstGap: .runAtTransition, dstFold: schedule.dstFold)
            guard atTransition.nextFire(afterMs: afterMs) != nil else { return neverFiresAtAll }
            return .invalidParams(
                field: "expression",
                "never fires: every time it matches falls in a daylight-saving gap in \(d.timezone), and dstGap is "
                    + "\"skip\" (use \"runAtTransition\" to fire at the end of the gap)")
        }
        return neverFiresAtAll
    }

    static var neverFiresAtAll: RPCError {
        .invalidParams(field: "expression", "never fires: it has no fire time from now (or startAt) to 9999-12-31")
    }

    /// The schedule a definition describes; a clear error when it is invalid or can never fire.
    static func compiled(_ d: ScheduleDefinition, cron: CronService) throws(RPCError) -> CronSchedule {
        do {
            return try cron.schedule(
                expression: d.expression, everyMs: d.everyMs, timezone: d.timezone, dayMatch: d.dayMatch,
                dstGap: d.dstGap, dstFold: d.dstFold, startAtMs: d.startAtMs)
        } catch let e as CronError {
            throw RPCError.invalidParams(field: e.field == "timezone" ? "timezone" : "expression", e.message)
        } catch {
            throw RPCError.invalidParams(field: "expression", "\(error)")
        }
    }

    static func parseTarget(_ target: JSONObject) throws(RPCError) -> JSON {
        let t = Params(object: target)
        try t.onlyKnown(["job", "webhook"])
        if let webhook = try t.optionalObject("webhook") {
            guard !t.has("job") else { throw RPCError.invalidParams(field: "target", "has either job or webhook") }
            let w = Params(object: webhook)
            do throws(RPCError) {
                try w.onlyKnown(["endpointId", "event", "payload"])
                _ = try w.numericID("endpointId")
                _ = try w.optionalName("event", maxLength: 200)
            } catch {
                throw RPCError.invalidParams(
                    field: "target.webhook." + (error.data?["field"]?.stringValue ?? ""),
                    error.data?["detail"]?.stringValue ?? error.message)
            }
            return ["webhook": .object(webhook)]
        }
        guard let job = try t.optionalObject("job") else {
            throw RPCError.invalidParams(field: "target", "must have job: {queue, kind, payload, ...}")
        }
        let jp = Params(object: job)
        do throws(RPCError) {
            try jp.onlyKnown(templateJobFields)
            _ = try JobSpec.parse(jp)
        } catch {
            guard let field = error.data?["field"]?.stringValue, let detail = error.data?["detail"]?.stringValue else {
                throw error
            }
            throw RPCError.invalidParams(field: "target.job." + field, detail)
        }
        return ["job": .object(job)]
    }

    static func oneOf(_ p: Params, _ key: String, _ allowed: [String]) throws(RPCError) -> String? {
        guard let v = try p.optionalString(key) else { return nil }
        guard allowed.contains(v) else {
            throw RPCError.invalidParams(field: key, "must be one of \(allowed.joined(separator: ", "))")
        }
        return v
    }

    static func time(_ p: Params, _ key: String) throws(RPCError) -> Int64? {
        guard let text = try p.optionalString(key) else { return nil }
        guard let ms = Timestamp.parse(text) else {
            throw RPCError.invalidParams(field: key, "must be an RFC 3339 date-time such as 2030-01-01T00:00:00Z")
        }
        return ms
    }
}
