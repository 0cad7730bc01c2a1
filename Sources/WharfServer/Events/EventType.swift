/// The events the server raises (Protocol/events.md lists each with its data fields).
///
/// Each type has a subject: the queue, schedule, lock or endpoint it is about, by which subscribers
/// filter (`EventFilter`). Applications' own webhook events (`webhooks.send {event}`) are not raised here.
enum EventType: String, CaseIterable, Sendable {
    case jobCompleted = "job.completed"
    case jobFailed = "job.failed"
    case jobDead = "job.dead"
    case jobCancelled = "job.cancelled"
    case jobRescued = "job.rescued"
    case scheduleFired = "schedule.fired"
    case scheduleSkipped = "schedule.skipped"
    case scheduleMissed = "schedule.missed"
    case lockGranted = "lock.granted"
    case lockExpired = "lock.expired"
    case endpointDisabled = "endpoint.disabled"
    case endpointEnabled = "endpoint.enabled"
    case deliveryFailed = "delivery.failed"

    /// What the subject of an event of this type names.
    var subjectKind: EventSubject.Kind { EventSubject.Kind(type: rawValue) }
}

/// What an event is about: the queue of a job event, the schedule of a cron event, the lock of a lock
/// event, the endpoint of a webhook event.
struct EventSubject: Equatable, Sendable {
    enum Kind: Sendable {
        case queue, schedule, lock, endpoint, none

        /// The kind of subject of an event type, by its family (the part before the first dot).
        init(type: String) {
            if type.hasPrefix("job.") {
                self = .queue
            } else if type.hasPrefix("schedule.") {
                self = .schedule
            } else if type.hasPrefix("lock.") {
                self = .lock
            } else if type.hasPrefix("endpoint.") || type.hasPrefix("delivery.") {
                self = .endpoint
            } else {
                self = .none
            }
        }
    }

    var kind: Kind
    var name: String
}
