import Prometheus

/// The locks family's counters (Protocol/http.md), counted where this replica decides: a grant handed
/// to its caller, an acquire that joined a lock's line, and a hold it watched that ran out without a
/// release. Current holders and waiters are database gauges (`DatabaseGauges`). Loop thread only.
final class LockMetrics {
    let grants: Counter
    let waits: Counter
    let expiries: Counter

    init(_ r: PrometheusCollectorRegistry) {
        grants = r.wharfCounter("locks", "granted", "Locks granted by this replica (at once or after waiting).")
        waits = r.wharfCounter("locks", "waited", "Acquires that joined a lock's line to wait.")
        expiries = r.wharfCounter(
            "locks", "expired", "Holds granted or renewed on this replica that ran out without a release.")
    }
}
