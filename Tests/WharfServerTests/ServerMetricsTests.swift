import Prometheus
import Testing

@testable import WharfServer
@testable import WharfStore

/// The metrics counted on the loop, fed directly (no server): how outcomes map to counters, and the cap
/// on label values that clients choose.
@Suite struct ServerMetricsTests {
    private func lines(_ registry: PrometheusCollectorRegistry) -> Set<String> {
        Set(String(decoding: registry.emitToBuffer(), as: UTF8.self).split(separator: "\n").map(String.init))
    }

    @Test func jobOutcomesMapToTheirCounters() {
        let registry = PrometheusCollectorRegistry()
        let jobs = JobMetrics(registry)
        jobs.jobsEnqueued(queues: ["q", "q", "r"])
        jobs.jobsFinished([("q", "completed", 10), ("q", "retryable", 20), ("q", "dead", 30)])
        jobs.jobsReleased(
            [ReleasedJob(id: 1, queue: "q", state: "available"), ReleasedJob(id: 2, queue: "q", state: "dead")],
            reason: "lease_expired")
        jobs.jobsLeased([("q", 3), ("q", 4_000)])
        let out = lines(registry)
        for expected in [
            #"wharf_jobs_enqueued_total{queue="q"} 2"#, #"wharf_jobs_enqueued_total{queue="r"} 1"#,
            #"wharf_jobs_completed_total{queue="q"} 1"#, #"wharf_jobs_failed_total{queue="q"} 2"#,
            #"wharf_jobs_dead_total{queue="q"} 2"#,
            #"wharf_jobs_leases_lost_total{queue="q",reason="lease_expired"} 2"#,
            #"wharf_jobs_run_duration_seconds_count{queue="q"} 3"#,
            #"wharf_jobs_pickup_latency_seconds_count{queue="q"} 2"#,
            #"wharf_jobs_pickup_latency_seconds_sum{queue="q"} 4.003"#,
        ] {
            #expect(out.contains(expected), "\(expected) missing")
        }
    }

    @Test func labelValuesPastTheCapAreCountedTogether() {
        let registry = PrometheusCollectorRegistry()
        let counters = registry.wharfCounters("test", "things", "Things.", labels: ["queue", "reason"], maxValues: 2)
        for q in ["a", "b", "c", "d", "a"] { counters(q, "x").increment() }
        counters("e", "y").increment()
        let out = lines(registry)
        #expect(out.contains(#"wharf_test_things_total{queue="a",reason="x"} 2"#))
        #expect(out.contains(#"wharf_test_things_total{queue="b",reason="x"} 1"#))
        #expect(out.contains(#"wharf_test_things_total{queue="_other",reason="x"} 2"#))
        #expect(out.contains(#"wharf_test_things_total{queue="_other",reason="y"} 1"#))
        #expect(!out.contains { $0.contains(#"queue="c""#) || $0.contains(#"queue="d""#) })
    }
}
