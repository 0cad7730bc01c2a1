import WharfCore
import WharfRPC
import WharfStore

/// The cron family's replies and refusals, built from the store's typed rows: the one place a
/// schedule becomes JSON.
enum CronReplies {
    static func notFound(_ name: String) -> RPCError { .notFound("schedule", id: name) }

    /// `cron.resume` found the schedule changed under it on every attempt.
    static func keepsChanging(_ name: String) -> RPCError {
        .conflict("schedule \(name) keeps changing", reason: "concurrent_update")
    }

    static func removed(_ name: String) -> JSON { ["name": .string(name), "removed": true] }

    /// `cron.trigger` on a webhook target: the delivery queued, or not found when the endpoint is gone.
    static func triggered(_ sent: [SentDelivery], endpointID: Int64, fireMs: Int64) -> Result<JSON, RPCError> {
        guard let d = sent.first else { return .failure(.notFound("webhook endpoint", id: String(endpointID))) }
        return .success(["deliveryId": .string(String(d.deliveryID)), "fireAt": .time(epochMs: fireMs)])
    }

    /// `cron.trigger` on a job target.
    static func triggered(_ job: EnqueuedJob, fireMs: Int64) -> JSON {
        ["jobId": .string(String(job.id)), "state": .string(job.state), "fireAt": .time(epochMs: fireMs)]
    }

    static func preview(_ schedule: CronSchedule, timezone: String, fires: [Int64]) -> JSON {
        [
            "description": .string(schedule.description),
            "timezone": .string(timezone),
            "dstGap": .string(schedule.dstGap.rawValue),
            "dstFold": .string(schedule.dstFold.rawValue),
            "fires": .array(fires.map { .time(epochMs: $0) }),
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
        let schedule = try? self.schedule(row)
        var lastFire: JSON = .null
        if let nominal = row.lastNominalMs {
            lastFire = [
                "nominalAt": .time(epochMs: nominal), "firedAt": .time(epochMs: row.lastFiredMs),
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
            "startAt": .time(epochMs: row.startAtMs),
            "endAt": .time(epochMs: row.endAtMs),
            "limit": .from(row.limit),
            "paused": .bool(row.paused),
            "pausedNote": .from(row.pausedNote),
            "pausedAt": .time(epochMs: row.pausedAtMs),
            "nextFireAt": row.paused ? .null : .time(epochMs: row.nextFireMs),
            "nextFires": .array(upcoming(row, count: 5).map { .time(epochMs: $0) }),
            "lastFire": lastFire,
            "stats": [
                "runs": .int(row.runs), "skippedOverlap": .int(row.skippedOverlap), "missed": .int(row.missedCount),
            ],
            "version": .int(row.version),
            "createdAt": .time(epochMs: row.createdAtMs),
            "updatedAt": .time(epochMs: row.updatedAtMs),
        ]
    }
}
