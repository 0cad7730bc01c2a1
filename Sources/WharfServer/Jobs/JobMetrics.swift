import Prometheus
import WharfStore

/// The jobs family's counters and histograms (Protocol/http.md), per queue: told by the store what each
/// statement changed (`JobsObserver`), as its result arrives on the loop, from the instants its own
/// rows carry. Per replica: each replica counts the statements it ran. Loop thread only.
final class JobMetrics: JobsObserver {
    private let enqueued: LabelledMetrics<Counter>
    private let completed: LabelledMetrics<Counter>
    private let failed: LabelledMetrics<Counter>
    private let dead: LabelledMetrics<Counter>
    private let leasesLost: LabelledMetrics<Counter>
    private let pickup: LabelledMetrics<DurationHistogram>
    private let runTime: LabelledMetrics<DurationHistogram>
    /// Dead row versions in `wharf.jobs` at the last check, and the vacuums that cleared them (`JobsVacuum`).
    let deadRows: Gauge
    let vacuums: Counter

    init(_ r: PrometheusCollectorRegistry) {
        enqueued = r.wharfCounters(
            "jobs", "enqueued", "Jobs made by this replica's enqueues and cron fires.", labels: ["queue"])
        completed = r.wharfCounters("jobs", "completed", "Jobs completed.", labels: ["queue"])
        failed = r.wharfCounters(
            "jobs", "failed", "Failures reported by workers (jobs.fail), retried or dead.", labels: ["queue"])
        dead = r.wharfCounters(
            "jobs", "dead", "Jobs that became dead: failed with no retry left, or lost with no attempt left.",
            labels: ["queue"])
        leasesLost = r.wharfCounters(
            "jobs", "leases_lost", "Leases that ended without a complete or fail (lease_expired, worker_lost).",
            labels: ["queue", "reason"])
        pickup = r.wharfHistograms(
            "jobs", "pickup_latency", "Time from a job being due (available) to its lease.",
            buckets: ServerMetrics.waitBuckets, labels: ["queue"])
        runTime = r.wharfHistograms(
            "jobs", "run_duration", "Time from a job's lease to its complete or fail.",
            buckets: ServerMetrics.waitBuckets, labels: ["queue"])
        deadRows = r.wharfGauge(
            "jobs", "dead_rows", "Dead row versions PostgreSQL counts in wharf.jobs, read once a second.")
        vacuums = r.wharfCounter("jobs", "vacuums", "VACUUMs of wharf.jobs this replica ran (--vacuum-jobs-after).")
    }

    func jobsEnqueued(queues: [String]) {
        for q in queues { enqueued(q).increment() }
    }

    func jobsLeased(_ jobs: [(queue: String, pickupMs: Int64)]) {
        for j in jobs { pickup(j.queue).record(ms: j.pickupMs) }
    }

    func jobsFinished(_ jobs: [(queue: String, state: String, runMs: Int64)]) {
        for j in jobs {
            runTime(j.queue).record(ms: j.runMs)
            switch j.state {
            case "completed": completed(j.queue).increment()
            case "dead":
                failed(j.queue).increment()
                dead(j.queue).increment()
            default: failed(j.queue).increment()
            }
        }
    }

    func jobsReleased(_ jobs: [ReleasedJob], reason: String) {
        for j in jobs {
            leasesLost(j.queue, reason).increment()
            if j.state == "dead" { dead(j.queue).increment() }
        }
    }
}
