import Prometheus
import WharfStore

/// Cron's counters and fire lag histogram (Protocol/http.md), counted when a fire statement commits on
/// this replica, from what the statement recorded on each schedule's row. Schedule names are labels for the first 50 schedules this replica fires; later ones are
/// counted under `schedule="_other"` (bounded cardinality without a per-schedule opt-in). Loop thread
/// only.
final class CronMetrics {
    /// Distinct schedule names labelled on one replica.
    static let maxSchedules = 50

    private let fires: LabelledMetrics<Counter>
    private let skipped: LabelledMetrics<Counter>
    private let missed: LabelledMetrics<Counter>
    private let lag: DurationHistogram

    init(_ r: PrometheusCollectorRegistry) {
        fires = r.wharfCounters(
            "cron", "schedule_fires", "Fires made (jobs or webhook messages), by schedule.", labels: ["schedule"],
            maxValues: Self.maxSchedules)
        skipped = r.wharfCounters(
            "cron", "schedule_skipped", "Fires skipped by the overlap policy, by schedule.", labels: ["schedule"],
            maxValues: Self.maxSchedules)
        missed = r.wharfCounters(
            "cron", "schedule_missed", "Fire times missed (past the missed window), by schedule.",
            labels: ["schedule"], maxValues: Self.maxSchedules)
        lag = r.wharfHistogram(
            "cron", "fire_lag", "Delay from a fire's nominal time to the database clock when it was claimed.",
            buckets: ServerMetrics.latencyBuckets)
    }

    /// A fire statement committed `batch` and counted `fired` on the schedules it advanced; they were
    /// claimed when the database clock read `nowMs`.
    func fired(_ fired: [FiredSchedule], _ batch: [ScheduleAdvance], nowMs: Int64) {
        let ran = Set(fired.filter { $0.runs > 0 }.map(\.name))
        for f in fired {
            if f.runs > 0 { fires(f.name).increment(by: f.runs) }
            if f.skipped > 0 { skipped(f.name).increment(by: f.skipped) }
            if f.missed > 0 { missed(f.name).increment(by: f.missed) }
        }
        for b in batch where ran.contains(b.name) {
            for nominal in b.jobs.compactMap(\.scheduleFireMs) + b.webhookFires { lag.record(ms: nowMs - nominal) }
        }
    }
}
