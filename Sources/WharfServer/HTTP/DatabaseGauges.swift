import Prometheus
import WharfStore

/// The gauges read from the database (`Store.metricsSnapshot`): jobs by queue and state, the oldest
/// runnable job's age per queue, locks, webhook endpoints and pending deliveries, schedules.
///
/// At most one snapshot statement runs at a time, and one result serves every scrape for `cacheMs`:
/// scrapers that come while one runs wait for it. A label set missing from the latest snapshot (a queue
/// drained, an endpoint enabled again) is removed rather than left at its last value. Loop thread only.
final class DatabaseGauges {
    private let registry: PrometheusCollectorRegistry
    private let cacheMs: UInt64
    private var gauges: [Key: Gauge] = [:]
    private var refreshedAtMs: UInt64?
    private var waiting: [() -> Void] = []
    private let failures: Counter
    private let age: Gauge

    private struct Key: Hashable {
        let name: String
        let label: String
        let label2: String
    }

    /// How each snapshot row becomes a metric: its name, help, and the label names of its values.
    private static let shapes: [String: (metric: String, help: String, labels: [String])] = [
        "jobs": (
            "wharf_jobs", "Unfinished jobs by queue and state (hot states, counted exactly).", ["queue", "state"]
        ),
        "oldest_available": (
            "wharf_queue_oldest_available_age_seconds", "Age of the oldest job that could run now, per queue.",
            ["queue"]
        ),
        "jobs_rows_estimate": (
            "wharf_jobs_rows_estimate", "PostgreSQL's estimate of all rows in wharf.jobs, finished ones included.", []
        ),
        "locks_held": ("wharf_locks_held", "Locks held now (all replicas).", []),
        "lock_grants": ("wharf_lock_grants", "Grants recorded on the current lock rows (all replicas).", []),
        "lock_waits": ("wharf_lock_waits", "Acquires that had to wait, recorded on the current lock rows.", []),
        "lock_expiries": (
            "wharf_lock_expiries", "Holds that ended by expiry without a release, recorded on the current lock rows.",
            []
        ),
        "lock_waiters": ("wharf_lock_waiters", "Acquires waiting for a lock now (all replicas).", []),
        "endpoints": ("wharf_webhook_endpoints", "Webhook endpoints by state (healthy, failing, disabled).", ["state"]),
        "deliveries": (
            "wharf_webhook_deliveries_pending", "Webhook deliveries not finished, by state (pending, delivering).",
            ["state"]
        ),
        "schedules": ("wharf_cron_schedules", "Cron schedules by state (active, paused).", ["state"]),
        "cron_fires": ("wharf_cron_fires", "Fires recorded on the current schedules (all replicas).", []),
        "cron_skipped": (
            "wharf_cron_skipped", "Fires skipped by the overlap policy, recorded on the current schedules.", []
        ),
        "cron_missed": ("wharf_cron_missed", "Fire times missed (server down), recorded on the current schedules.", []),
        "cron_fire_lag_max": (
            "wharf_cron_fire_lag_max_seconds",
            "Largest delay between nominal and actual time of each schedule's latest fire.",
            []
        ),
        "cron_overdue": (
            "wharf_cron_schedule_overdue_seconds",
            "How late an active schedule's next fire is, for the 20 most overdue (over 5 s late).", ["schedule"]
        ),
    ]

    init(registry: PrometheusCollectorRegistry, cacheMs: Int) {
        self.registry = registry
        self.cacheMs = UInt64(max(1_000, cacheMs))
        failures = registry.wharfCounter(
            "metrics", "snapshot_failures",
            "Database snapshots for /metrics that failed (the previous values are served).")
        age = registry.wharfGauge(
            "metrics", "snapshot_age_seconds", "Age of the database-derived values in this scrape.")
    }

    /// Calls `ready` once the gauges are at most `cacheMs` old (at once if they are).
    func refresh(store: Store, nowMs: @escaping () -> UInt64, _ ready: @escaping () -> Void) {
        if let at = refreshedAtMs, nowMs() &- at < cacheMs {
            age.set(Double(nowMs() &- at) / 1000)
            return ready()
        }
        waiting.append(ready)
        guard waiting.count == 1 else { return }
        store.metricsSnapshot { [self] result in
            switch result {
            case .success(let rows):
                self.apply(rows)
                self.refreshedAtMs = nowMs()
                self.age.set(to: 0.0)
            case .failure:
                self.failures.increment()
            }
            let callers = self.waiting
            self.waiting = []
            for c in callers { c() }
        }
    }

    private func apply(_ rows: [MetricsRow]) {
        var seen: Set<Key> = []
        for row in rows {
            guard let shape = Self.shapes[row.name] else { continue }
            let key = Key(name: row.name, label: row.label, label2: row.label2)
            seen.insert(key)
            let gauge =
                gauges[key]
                ?? {
                    let values = [row.label, row.label2]
                    let labels = shape.labels.enumerated().map { ($0.element, values[$0.offset]) }
                    let g = registry.makeGauge(
                        descriptor: .init(metricName: shape.metric, unitName: "", helpText: shape.help), labels: labels)
                    gauges[key] = g
                    return g
                }()
            gauge.set(row.value)
        }
        for (key, gauge) in gauges where !seen.contains(key) {
            registry.unregisterGauge(gauge)
            gauges[key] = nil
        }
    }
}
