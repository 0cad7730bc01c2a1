import WharfCore
import WharfRPC
import WharfStore

/// The cron family's replies and refusals, built from the store's typed rows: the one place a
/// schedule becomes JSON. (The reply of `cron.trigger` on a webhook target is built where that
/// delivery is sent.)
enum CronReplies {
    static func at(_ ms: Int64?) -> JSON { ms.map { .string(Timestamp.format(epochMs: $0)) } ?? .null }

    static func notFound(_ name: String) -> RPCError { .notFound("schedule", id: name) }

    /// `cron.resume` found the schedule changed under it on every attempt.
    static func keepsChanging(_ name: String) -> RPCError {
        .conflict("schedule \(name) keeps changing", reason: "concurrent_update")
    }

    static func removed(_ name: String) -> JSON { ["name": .string(name), "removed": true] }

    /// `cron.trigger` on a job target.
    static func triggered(_ job: EnqueuedJob, fireMs: Int64) -> JSON {
        ["jobId": .string(String(job.id)), "state": .string(job.state), "fireAt": at(fireMs)]
    }

    static func preview(_ schedule: CronSchedule, timezone: String, fires: [Int64]) -> JSON {
        [
            "description": .string(schedule.description),
            "timezone": .string(timezone),
            "dstGap": .string(schedule.dstGap.rawValue),
            "dstFold": .string(schedule.dstFold.rawValue),
            "fires": .array(fires.map { at($0) }),
        ]
    }
}

extension CronService {
    /// `cron.get`, `cron.pause`: the schedule, or not found.
    func found(_ r: Result<ScheduleRow?, StoreError>, name: String) -> Result<JSON, RPCError> {
        r.mapError(\.rpcError).flatMap { row in
            guard let row else { return .failure(CronReplies.notFound(name)) }
            return .success(.object(json(row)))
        }
    }

    /// `cron.upsert`.
    func upserted(_ row: ScheduleRow, created: Bool) -> JSON {
        var o = json(row)
        o["created"] = .bool(created)
        return .object(o)
    }

    /// `cron.list`: a page of schedules, with the cursor of the next one when this one is full.
    func listed(_ rows: [ScheduleRow], limit: Int) -> JSON {
        [
            "schedules": .array(rows.map { .object(json($0)) }),
            "cursor": rows.count == limit ? .from(rows.last?.name) : .null,
        ]
    }

    /// A schedule as the protocol shows it.
    func json(_ row: ScheduleRow) -> JSONObject {
        let at = CronReplies.at
        let schedule = try? self.schedule(row)
        var lastFire: JSON = .null
        if let nominal = row.lastNominalMs {
            lastFire = [
                "nominalAt": at(nominal), "firedAt": at(row.lastFiredMs),
                "lagMs": row.lastFiredMs.map { .int(max($0 - nominal, 0)) } ?? .null,
                "jobId": row.lastJobID.map { .string(String($0)) } ?? .null,
            ]
        }
        return [
            "name": .string(row.name),
            "expression": .from(row.expression),
            "everyMs": .from(row.everyMs),
            "timezone": .string(row.timezone),
            "dayMatch": .string(row.dayMatch),
            "dstGap": .from(schedule?.dstGap.rawValue ?? row.dstGap),
            "dstFold": .from(schedule?.dstFold.rawValue ?? row.dstFold),
            "description": .from(schedule?.description),
            "target": row.target,
            "overlap": .string(row.overlap),
            "missed": .string(row.missed),
            "missedWindowMs": .int(row.missedWindowMs),
            "jitterMs": .int(row.jitterMs),
            "startAt": at(row.startAtMs),
            "endAt": at(row.endAtMs),
            "limit": .from(row.limit),
            "paused": .bool(row.paused),
            "pausedNote": .from(row.pausedNote),
            "pausedAt": at(row.pausedAtMs),
            "nextFireAt": row.paused ? .null : at(row.nextFireMs),
            "nextFires": .array(upcoming(row, count: 5).map { at($0) }),
            "lastFire": lastFire,
            "stats": [
                "runs": .int(row.runs), "skippedOverlap": .int(row.skippedOverlap), "missed": .int(row.missedCount),
            ],
            "version": .int(row.version),
            "createdAt": at(row.createdAtMs),
            "updatedAt": at(row.updatedAtMs),
        ]
    }
}
