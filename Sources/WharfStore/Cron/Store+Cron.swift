import WharfJSON
import WharfPQ

/// A schedule as stored. Times are epoch milliseconds.
public struct ScheduleRow: Sendable {
    public var name: String
    public var expression: String?
    public var everyMs: Int64?
    public var timezone: String
    public var dayMatch: String
    public var dstGap: String?
    public var dstFold: String?
    public var target: JSON
    public var overlap: String
    public var missed: String
    public var missedWindowMs: Int64
    public var jitterMs: Int64
    public var startAtMs: Int64?
    public var endAtMs: Int64?
    public var limit: Int64?
    public var paused: Bool
    public var pausedNote: String?
    public var pausedAtMs: Int64?
    public var nextFireMs: Int64?
    public var claimSeq: Int64
    public var version: Int64
    public var lastNominalMs: Int64?
    public var lastFiredMs: Int64?
    public var runs: Int64
    public var skippedOverlap: Int64
    public var missedCount: Int64
    public var createdAtMs: Int64
    public var updatedAtMs: Int64
    /// The job of the last fire, when read with it and it still exists.
    public var lastJobID: Int64?

    /// The number of columns `CronSQL.columns` has.
    static let columnCount = 28

    init(_ r: PQResult, _ i: Int) throws(StoreError) {
        name = r.string(i, 0) ?? ""
        expression = r.string(i, 1)
        everyMs = r.int(i, 2)
        timezone = r.string(i, 3) ?? "UTC"
        dayMatch = r.string(i, 4) ?? "or"
        dstGap = r.string(i, 5)
        dstFold = r.string(i, 6)
        guard let text = r.string(i, 7), let t = try? JSONParser.parse(text) else { throw StoreError.internalError }
        target = t
        overlap = r.string(i, 8) ?? "allow"
        missed = r.string(i, 9) ?? "runOnce"
        missedWindowMs = r.int(i, 10) ?? 0
        jitterMs = r.int(i, 11) ?? 0
        startAtMs = r.int(i, 12)
        endAtMs = r.int(i, 13)
        limit = r.int(i, 14)
        paused = r.bool(i, 15) ?? false
        pausedNote = r.string(i, 16)
        pausedAtMs = r.int(i, 17)
        nextFireMs = r.int(i, 18)
        claimSeq = r.int(i, 19) ?? 0
        version = r.int(i, 20) ?? 0
        lastNominalMs = r.int(i, 21)
        lastFiredMs = r.int(i, 22)
        runs = r.int(i, 23) ?? 0
        skippedOverlap = r.int(i, 24) ?? 0
        missedCount = r.int(i, 25) ?? 0
        createdAtMs = r.int(i, 26) ?? 0
        updatedAtMs = r.int(i, 27) ?? 0
    }
}

/// A schedule's definition for `cron.upsert`, already validated.
public struct ScheduleDefinition: Sendable {
    public var name: String
    public var expression: String?
    public var everyMs: Int64?
    public var timezone = "UTC"
    public var dayMatch = "or"
    public var dstGap: String?
    public var dstFold: String?
    public var target: JSON
    public var overlap = "allow"
    public var missed = "runOnce"
    public var missedWindowMs: Int64 = 60_000
    public var jitterMs: Int64 = 0
    public var startAtMs: Int64?
    public var endAtMs: Int64?
    public var limit: Int64?
    /// Nil keeps a replaced schedule's paused state (false for a new one).
    public var paused: Bool?
    public var pausedNote: String?

    public init(name: String, target: JSON) {
        self.name = name
        self.target = target
    }
}

/// A schedule the scheduler claimed, with what the overlap policies need and the database's clock.
public struct DueSchedule: Sendable {
    public var row: ScheduleRow
    /// The schedule's lock `cron:<name>` is held (by the unfinished job of its last fire under overlap
    /// "skip", or by a client) or has someone in line.
    public var held: Bool
    /// A job of this schedule waits to run (scheduled, available or retryable).
    public var waiting: Bool
    public var nowMs: Int64
}

/// What firing one claimed schedule does: the jobs to insert and how the schedule advances.
/// What one fire statement did.
public struct FiredSchedules: Sendable {
    /// Schedules advanced (the others of the batch lost their claim).
    public var advanced: Int
    /// Jobs and webhook deliveries inserted.
    public var made: Int
    /// Each advanced schedule's counts, as recorded on its row.
    public var schedules: [FiredSchedule]
}

/// One schedule's share of a fire statement: fires that ran, fires skipped by the overlap policy (a
/// fire held back by its schedule's lock included), fire times missed.
public struct FiredSchedule: Sendable, Equatable {
    public var name: String
    public var runs: Int64
    public var skipped: Int64
    public var missed: Int64
}

public struct ScheduleAdvance: Sendable {
    public var name: String
    public var claimSeq: Int64
    /// Nil when the schedule has no fire left.
    public var nextFireMs: Int64?
    public var runs: Int64 = 0
    public var skipped: Int64 = 0
    public var missed: Int64 = 0
    public var lastNominalMs: Int64?
    /// One job per fire; `scheduleFireMs` is the nominal fire time. The payload is taken from the
    /// schedule row when the fire commits, not from here.
    public var jobs: [JobSpec] = []
    /// Nominal fire times that become webhook deliveries (schedules with a webhook target).
    public var webhookFires: [Int64] = []

    public init(name: String, claimSeq: Int64, nextFireMs: Int64?) {
        self.name = name
        self.claimSeq = claimSeq
        self.nextFireMs = nextFireMs
    }
}

extension Store {
    public func upsertSchedule(
        _ d: ScheduleDefinition, nextFireMs: Int64?,
        _ completion: @escaping (Result<(row: ScheduleRow, created: Bool), StoreError>) -> Void
    ) {
        let params: [String?] = [
            d.name, d.expression, d.everyMs.map(String.init), d.timezone, d.dayMatch, d.dstGap, d.dstFold, d.target.text,
            d.overlap, d.missed, String(d.missedWindowMs), String(d.jitterMs), d.startAtMs.map(String.init),
            d.endAtMs.map(String.init), d.limit.map(String.init), d.paused.map { $0 ? "true" : "false" }, d.pausedNote,
            nextFireMs.map(String.init),
        ]
        rows(CronSQL.upsert, params, completion) { rows throws(StoreError) in
            guard rows.rowCount == 1 else { throw StoreError.internalError }
            var row = try ScheduleRow(rows, 0)
            row.lastJobID = rows.int(0, ScheduleRow.columnCount)
            return (row, rows.bool(0, ScheduleRow.columnCount + 1) ?? false)
        }
    }

    /// Creates or replaces schedules that leave `paused` as it is, in one statement (one commit).
    /// Names must be distinct; outcomes come back in the order of `items`.
    public func upsertSchedules(
        _ items: [(definition: ScheduleDefinition, nextFireMs: Int64?)],
        _ completion: @escaping (Result<[(row: ScheduleRow, created: Bool)], StoreError>) -> Void
    ) {
        let d = items.map(\.definition)
        let params: [String?] = [
            PGArray.text(d.map(\.name)), PGArray.text(d.map(\.expression)), PGArray.ints(d.map(\.everyMs)),
            PGArray.text(d.map(\.timezone)), PGArray.text(d.map(\.dayMatch)), PGArray.text(d.map(\.dstGap)),
            PGArray.text(d.map(\.dstFold)), PGArray.text(d.map { $0.target.text }), PGArray.text(d.map(\.overlap)),
            PGArray.text(d.map(\.missed)), PGArray.ints(d.map(\.missedWindowMs)), PGArray.ints(d.map(\.jitterMs)),
            PGArray.ints(d.map(\.startAtMs)), PGArray.ints(d.map(\.endAtMs)), PGArray.ints(d.map(\.limit)),
            PGArray.ints(items.map(\.nextFireMs)),
        ]
        rows(CronSQL.upsertMany, params, completion) { rows throws(StoreError) in
            var byName: [String: (row: ScheduleRow, created: Bool)] = [:]
            for i in 0..<rows.rowCount {
                var row = try ScheduleRow(rows, i)
                row.lastJobID = rows.int(i, ScheduleRow.columnCount)
                byName[row.name] = (row, rows.bool(i, ScheduleRow.columnCount + 1) ?? false)
            }
            return try d.map { (def) throws(StoreError) in
                guard let up = byName[def.name] else { throw StoreError.internalError }
                return up
            }
        }
    }

    /// The schedule `name`; nil when there is none.
    public func schedule(_ name: String, _ completion: @escaping (Result<ScheduleRow?, StoreError>) -> Void) {
        rows(CronSQL.get, [name], completion) { rows throws(StoreError) in try Self.scheduleRows(rows).first }
    }

    public func schedules(
        prefix: String?, after: String?, limit: Int, _ completion: @escaping (Result<[ScheduleRow], StoreError>) -> Void
    ) {
        rows(CronSQL.list, [prefix, after, String(limit)], completion) { rows throws(StoreError) in
            try Self.scheduleRows(rows)
        }
    }

    /// Deletes schedule `name`; false when there was none.
    public func removeSchedule(_ name: String, _ completion: @escaping (Result<Bool, StoreError>) -> Void) {
        rows(CronSQL.remove, [name], completion) { rows in rows.rowCount > 0 }
    }

    /// Pauses schedule `name`; nil when there is none.
    public func pauseSchedule(
        _ name: String, note: String?, _ completion: @escaping (Result<ScheduleRow?, StoreError>) -> Void
    ) {
        rows(CronSQL.pause, [name, note], completion) { rows throws(StoreError) in try Self.scheduleRows(rows).first }
    }

    /// Resumes if the schedule is still at `version`; nil when it changed or is gone.
    public func resumeSchedule(
        _ name: String, version: Int64, nextFireMs: Int64?,
        _ completion: @escaping (Result<ScheduleRow?, StoreError>) -> Void
    ) {
        rows(CronSQL.resume, [name, nextFireMs.map(String.init), String(version)], completion) {
            rows throws(StoreError) in try Self.scheduleRows(rows).first
        }
    }

    public func claimDueSchedules(
        limit: Int, claimMs: Int64, _ completion: @escaping (Result<[DueSchedule], StoreError>) -> Void
    ) {
        rows(CronSQL.claim, [String(limit), String(claimMs)], completion) { rows throws(StoreError) in
            var out: [DueSchedule] = []
            out.reserveCapacity(rows.rowCount)
            let c = ScheduleRow.columnCount
            for i in 0..<rows.rowCount {
                out.append(
                    DueSchedule(
                        row: try ScheduleRow(rows, i), held: rows.bool(i, c) ?? false,
                        waiting: rows.bool(i, c + 1) ?? false, nowMs: rows.int(i, c + 2) ?? 0))
            }
            return out
        }
    }

    /// The earliest unclaimed next fire, the earliest claim expiry, and the database's clock.
    public func nextScheduleDue(
        _ completion: @escaping (Result<(nextFireMs: Int64?, claimExpiryMs: Int64?, nowMs: Int64), StoreError>) -> Void
    ) {
        rows(CronSQL.nextDue, [], completion) { rows in (rows.int(0, 0), rows.int(0, 1), rows.int(0, 2) ?? 0) }
    }

    /// Fires a batch of claimed schedules in one statement. Returns how many schedules advanced (the
    /// others lost their claim), how many jobs and deliveries were inserted, and what each advanced
    /// schedule counted.
    public func fireSchedules(
        _ batch: [ScheduleAdvance], _ completion: @escaping (Result<FiredSchedules, StoreError>) -> Void
    ) {
        let jobs = batch.flatMap(\.jobs)
        let params: [String?] = [
            PGArray.text(batch.map(\.name)), PGArray.ints(batch.map(\.claimSeq)), PGArray.ints(batch.map(\.nextFireMs)),
            PGArray.ints(batch.map(\.runs)), PGArray.ints(batch.map(\.skipped)), PGArray.ints(batch.map(\.missed)),
            PGArray.ints(batch.map(\.lastNominalMs)),
        ] + JobSQL.enqueueArrays(jobs) + [
            PGArray.text(batch.flatMap { b in b.webhookFires.map { _ in b.name } }),
            PGArray.ints(batch.flatMap(\.webhookFires)),
        ]
        rows(CronSQL.fire, params, completion) { [self] rows in
            let queues = (JobRow.parsed(rows, 0, 3)?.arrayValue ?? []).compactMap(\.stringValue)
            if !queues.isEmpty { jobsObserver?.jobsEnqueued(queues: queues) }
            return FiredSchedules(
                advanced: Int(rows.int(0, 0) ?? 0), made: Int(rows.int(0, 1) ?? 0),
                schedules: (JobRow.parsed(rows, 0, 2)?.arrayValue ?? []).compactMap { row in
                    guard let a = row.arrayValue, a.count == 4, let name = a[0].stringValue else { return nil }
                    return FiredSchedule(
                        name: name, runs: a[1].intValue ?? 0, skipped: a[2].intValue ?? 0, missed: a[3].intValue ?? 0)
                })
        }
    }

    /// Completes a job and, in the same transaction, merges `patch` into schedule `schedule`'s template
    /// payload. The outcome says whether the schedule existed and was patched.
    public func complete(
        id: Int64, token: String, result: JSON?, schedulePatch schedule: String, payload patch: JSON,
        _ completion: @escaping (Result<(FinishOutcome, patched: Bool), StoreError>) -> Void
    ) {
        var patched = false
        finish(
            CronSQL.completeWithPatch, [String(id), token, result?.text, schedule, patch.text], [(id, token)],
            completes: true, { r in completion(r.map { ($0[0], patched) }) }
        ) { rows, row in
            patched = rows.bool(row, 1) ?? false
            return .done(state: "completed", nextRunAtMs: nil, queue: rows.string(row, 2) ?? "")
        }
    }

    static func scheduleRows(_ rows: PQResult) throws(StoreError) -> [ScheduleRow] {
        var out: [ScheduleRow] = []
        for i in 0..<rows.rowCount {
            var row = try ScheduleRow(rows, i)
            if rows.columnCount > ScheduleRow.columnCount { row.lastJobID = rows.int(i, ScheduleRow.columnCount) }
            out.append(row)
        }
        return out
    }
}
