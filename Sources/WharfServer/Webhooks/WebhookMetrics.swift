import Prometheus
import WharfStore

/// The webhooks family's counters and delivery latency (Protocol/http.md), counted as this replica
/// makes each attempt. Endpoints by state and pending deliveries are database gauges
/// (`DatabaseGauges`). Loop thread only.
final class WebhookMetrics {
    private let attempts: LabelledMetrics<Counter>
    private let latency: DurationHistogram

    init(_ r: PrometheusCollectorRegistry) {
        attempts = r.wharfCounters(
            "webhook", "attempts",
            "Delivery attempts by outcome: succeeded, retry (failed, tried again later), failed (no attempt left or gone).",
            labels: ["outcome"])
        latency = r.wharfHistogram(
            "webhook", "delivery_duration", "Time of one delivery attempt's HTTP exchange, answered or not.",
            buckets: ServerMetrics.latencyBuckets)
    }

    /// One attempt ended with `outcome`.
    func attempted(_ outcome: DeliveryOutcome) {
        let name: String
        switch outcome.next {
        case .succeeded: name = "succeeded"
        case .retry: name = "retry"
        case .failed: name = "failed"
        }
        attempts(name).increment()
        latency.record(ms: outcome.latencyMs)
    }
}
