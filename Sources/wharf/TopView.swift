/// What `wharf top` shows, made from two scrapes of `GET /metrics` (no I/O here): queues, schedules,
/// webhook endpoints and locks, with per-second rates when an earlier scrape is given.
struct TopView {
    let now: [MetricSample]
    /// The previous scrape and the seconds since it, for rates.
    let previous: (samples: [MetricSample], seconds: Double)?

    private func values(_ name: String) -> [MetricSample] { now.filter { $0.name == name } }

    private func value(_ name: String, _ labels: [String: String] = [:], in samples: [MetricSample]? = nil) -> Double {
        (samples ?? now).filter { s in s.name == name && labels.allSatisfy { k, v in s.labels[k] == v } }
            .reduce(0) { $0 + $1.value }
    }

    /// Per second between the scrapes, nil without an earlier one.
    private func rate(_ name: String, _ labels: [String: String]) -> Double? {
        guard let previous, previous.seconds > 0 else { return nil }
        return max(0, value(name, labels) - value(name, labels, in: previous.samples)) / previous.seconds
    }

    /// Distinct values of `label` over the metrics `names`, sorted.
    private func labelValues(_ label: String, _ names: [String]) -> [String] {
        Set(now.filter { names.contains($0.name) }.compactMap { $0.labels[label] }).sorted()
    }

    func render(title: String) -> String {
        var out: [String] = [title, ""]
        let rates = previous != nil
        var queueHead = [
            "QUEUE", "AVAIL", "SCHED", "RUN", "RETRY", "OLDEST", "ENQUEUED", "DONE", "FAILED", "DEAD", "LOST",
        ]
        if rates { queueHead += ["ENQ/S", "DONE/S"] }
        var rows = [queueHead]
        let queueMetrics = [
            "wharf_jobs", "wharf_jobs_enqueued_total", "wharf_jobs_completed_total", "wharf_jobs_dead_total",
            "wharf_queue_oldest_available_age_seconds",
        ]
        for q in labelValues("queue", queueMetrics) {
            let l = ["queue": q]
            func state(_ s: String) -> String { Self.count(value("wharf_jobs", ["queue": q, "state": s])) }
            var row = [
                q, state("available"), state("scheduled"), state("running"), state("retryable"),
                Self.seconds(value("wharf_queue_oldest_available_age_seconds", l)),
                Self.count(value("wharf_jobs_enqueued_total", l)), Self.count(value("wharf_jobs_completed_total", l)),
                Self.count(value("wharf_jobs_failed_total", l)), Self.count(value("wharf_jobs_dead_total", l)),
                Self.count(value("wharf_jobs_leases_lost_total", l)),
            ]
            if rates {
                row += [
                    Self.perSecond(rate("wharf_jobs_enqueued_total", l)),
                    Self.perSecond(rate("wharf_jobs_completed_total", l)),
                ]
            }
            rows.append(row)
        }
        out += Self.table(rows)
        out.append("")

        out.append(
            "schedules: \(Self.count(value("wharf_cron_schedules", ["state": "active"]))) active, "
                + "\(Self.count(value("wharf_cron_schedules", ["state": "paused"]))) paused")
        var scheduleRows = [["SCHEDULE", "FIRES", "SKIPPED", "MISSED", "OVERDUE"]]
        let scheduleMetrics = [
            "wharf_cron_schedule_fires_total", "wharf_cron_schedule_skipped_total", "wharf_cron_schedule_missed_total",
            "wharf_cron_schedule_overdue_seconds",
        ]
        for s in labelValues("schedule", scheduleMetrics) {
            let l = ["schedule": s]
            scheduleRows.append([
                s, Self.count(value("wharf_cron_schedule_fires_total", l)),
                Self.count(value("wharf_cron_schedule_skipped_total", l)),
                Self.count(value("wharf_cron_schedule_missed_total", l)),
                Self.seconds(value("wharf_cron_schedule_overdue_seconds", l)),
            ])
        }
        if scheduleRows.count > 1 { out += Self.table(scheduleRows) }
        out.append("")

        func endpoints(_ s: String) -> String { Self.count(value("wharf_webhook_endpoints", ["state": s])) }
        func attempts(_ o: String) -> String { Self.count(value("wharf_webhook_attempts_total", ["outcome": o])) }
        out.append(
            "endpoints: \(endpoints("healthy")) healthy, \(endpoints("failing")) failing, "
                + "\(endpoints("disabled")) disabled; deliveries: "
                + "\(Self.count(value("wharf_webhook_deliveries_pending", ["state": "pending"]))) pending, "
                + "\(Self.count(value("wharf_webhook_deliveries_pending", ["state": "delivering"]))) delivering; "
                + "attempts: \(attempts("succeeded")) succeeded, \(attempts("retry")) retried, "
                + "\(attempts("failed")) failed")
        out.append(
            "locks: \(Self.count(value("wharf_locks_held"))) held, \(Self.count(value("wharf_lock_waiters"))) waiting; "
                + "\(Self.count(value("wharf_locks_granted_total"))) granted, "
                + "\(Self.count(value("wharf_locks_waited_total"))) waited, "
                + "\(Self.count(value("wharf_locks_expired_total"))) expired")
        let requests = rate("wharf_rpc_requests_total", [:]).map { ", \(Self.perSecond($0)) requests/s" } ?? ""
        out.append(
            "server: \(Self.count(value("wharf_rpc_connections"))) connections\(requests), "
                + "pool \(Self.count(value("wharf_pg_pool_connections_in_use")))/"
                + "\(Self.count(value("wharf_pg_pool_connections"))) in use")
        return out.joined(separator: "\n") + "\n"
    }

    static func count(_ v: Double) -> String { String(Int64(v.rounded())) }
    static func seconds(_ v: Double) -> String { v <= 0 ? "-" : String(format: "%.1fs", v) }
    static func perSecond(_ v: Double?) -> String { v.map { String(format: "%.1f", $0) } ?? "-" }

    /// Rows as left-aligned columns two spaces apart.
    static func table(_ rows: [[String]]) -> [String] {
        let widths = (0..<(rows.first?.count ?? 0)).map { c in rows.map { $0[c].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { c, cell in cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingTrailingSpaces()
        }
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        String(reversed().drop { $0 == " " }.reversed())
    }
}
