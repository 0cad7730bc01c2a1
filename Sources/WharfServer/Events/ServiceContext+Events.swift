import WharfRPC
import WharfStore

/// The events each feature raises, built from the feature's typed rows (the fields are listed in
/// Protocol/events.md). Each builds an event's data only when someone wants its type.
extension ServiceContext {
    // MARK: Jobs

    /// `job.completed`, `job.failed` (will retry) or `job.dead` for each finished job of a batch.
    func raiseFinished(_ ids: [Int64], _ outcomes: [FinishOutcome]) {
        guard wants(.jobCompleted) || wants(.jobFailed) || wants(.jobDead) else { return }
        for (id, outcome) in zip(ids, outcomes) {
            guard case .done(let state, let next, let queue) = outcome else { continue }
            switch state {
            case "completed": raise(.jobCompleted, subject: queue, Self.job(id, queue))
            case "retryable": raise(.jobFailed, subject: queue, Self.job(id, queue, ["nextRunAt": .time(epochMs: next)]))
            case "dead": raise(.jobDead, subject: queue, Self.job(id, queue, ["reason": "failed"]))
            default: break
            }
        }
    }

    /// `job.rescued` (back to available) or `job.dead` (attempts used up) for running jobs whose worker
    /// or lease was lost (`reason`: `worker_lost`, `lease_expired`).
    func raiseReleased(_ jobs: [ReleasedJob], reason: String) {
        guard wants(.jobRescued) || wants(.jobDead) else { return }
        for j in jobs {
            let type: EventType = j.state == "dead" ? .jobDead : .jobRescued
            raise(type, subject: j.queue, Self.job(j.id, j.queue, ["reason": .string(reason)]))
        }
    }

    /// `job.completed` for a step of a run that completed (its next step enqueued).
    func raiseStepCompleted(_ id: Int64, queue: String) {
        raise(.jobCompleted, subject: queue, Self.job(id, queue))
    }

    func raiseCancelled(_ id: Int64, _ outcome: CancelOutcome) {
        guard case .cancelled(let queue) = outcome else { return }
        raise(.jobCancelled, subject: queue, Self.job(id, queue))
    }

    private static func job(_ id: Int64, _ queue: String, _ extra: JSONObject = [:]) -> JSON {
        var o: JSONObject = ["jobId": .string(String(id)), "queue": .string(queue)]
        for (k, v) in extra.pairs { o[k] = v }
        return .object(o)
    }

    // MARK: Cron

    /// `schedule.fired` per fire (a job or a webhook delivery made), `schedule.skipped` and
    /// `schedule.missed` per schedule with fires dropped by its overlap or missed policy.
    func raiseFired(_ batch: [ScheduleAdvance]) {
        guard wants(.scheduleFired) || wants(.scheduleSkipped) || wants(.scheduleMissed) else { return }
        for a in batch {
            for job in a.jobs {
                raise(
                    .scheduleFired, subject: a.name,
                    ["schedule": .string(a.name), "fireAt": .time(epochMs: job.scheduleFireMs), "target": "job",
                     "queue": .string(job.queue)])
            }
            for fire in a.webhookFires {
                raise(
                    .scheduleFired, subject: a.name,
                    ["schedule": .string(a.name), "fireAt": .time(epochMs: fire), "target": "webhook"])
            }
            if a.skipped > 0 {
                raise(.scheduleSkipped, subject: a.name, ["schedule": .string(a.name), "count": .int(a.skipped)])
            }
            if a.missed > 0 {
                raise(.scheduleMissed, subject: a.name, ["schedule": .string(a.name), "count": .int(a.missed)])
            }
        }
    }

    // MARK: Locks

    func raiseGranted(_ grant: LockGrant, holder: String) {
        raise(
            .lockGranted, subject: grant.name,
            [
                "lock": .string(grant.name), "holder": .string(holder), "fencingToken": .int(grant.fencingToken),
                "expiresAt": .time(epochMs: grant.expiresAtMs),
            ])
    }

    func raiseExpired(_ name: String, _ lease: LapsedLease) {
        guard lease.expired else { return }
        raise(
            .lockExpired, subject: name,
            ["lock": .string(name), "holder": .from(lease.holder), "fencingToken": .from(lease.fencingToken)])
    }

    // MARK: Webhooks

    func raiseEnabled(_ endpoint: EndpointRow) {
        raise(
            .endpointEnabled, subject: String(endpoint.id),
            ["endpointId": .string(String(endpoint.id)), "url": .string(endpoint.url)])
    }

    /// `delivery.failed`: a delivery that will not be attempted again.
    func raiseDeliveryFailed(_ d: ClaimedDelivery, _ o: DeliveryOutcome) {
        guard case .failed = o.next else { return }
        raise(
            .deliveryFailed, subject: String(d.endpointID),
            [
                "deliveryId": .string(String(d.id)), "endpointId": .string(String(d.endpointID)),
                "messageId": .string(d.messageID), "event": .from((try? JSONParser.parse(d.body))?["type"]?.stringValue),
                "attempts": .from(d.attempt), "status": .from(o.status.map(Int64.init)), "errorKind": .from(o.errorKind),
                "error": .from(o.error),
            ])
    }
}
