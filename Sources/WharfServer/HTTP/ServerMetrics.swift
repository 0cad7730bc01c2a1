import Prometheus
import WharfPQ
import WharfStore

/// The server's Prometheus metrics (Protocol/http.md lists them), kept in a swift-prometheus registry
/// of this server's own (not a process-wide one: a test process runs several servers).
///
/// What happens on the loop is counted as it happens (requests, bytes, statement latency); what is a
/// state is read at scrape time: the runtime's own (connections, the pool) directly, the database's
/// from one `Store.metricsSnapshot` statement, reused for `metricsCacheMs`. Loop thread only (the
/// registry's metrics are thread-safe themselves).
final class ServerMetrics {
    let registry = PrometheusCollectorRegistry()

    /// Latency buckets, 0.5 ms to 10 s: most calls take a few milliseconds, long polls up to `waitMs`.
    static let latencyBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
    ]

    private struct RequestKey: Hashable {
        let transport: Transport
        let method: String
        let code: Int
    }

    /// How a request arrived.
    enum Transport: String {
        case tcp, http
    }

    private var requests: [RequestKey: Counter] = [:]
    private var latencies: [String: DurationHistogram] = [:]
    private let received: [Transport: Counter]
    private let sent: [Transport: Counter]
    private let connections: [Transport: Gauge]
    private let httpResponses: Counter
    private let httpRefused: Counter

    private let poolSize: Gauge
    private let poolReady: Gauge
    private let poolBusy: Gauge
    private let poolQueued: Gauge
    private let poolReconnects: Counter
    private var poolReconnectsSeen = 0
    let statementLatency: DurationHistogram

    /// Each feature's counters and histograms, counted by its service where things happen.
    let jobs: JobMetrics
    let cron: CronMetrics
    let locks: LockMetrics
    let webhooks: WebhookMetrics

    init() {
        let r = registry
        jobs = JobMetrics(r)
        cron = CronMetrics(r)
        locks = LockMetrics(r)
        webhooks = WebhookMetrics(r)
        func per<T>(_ make: (Transport) -> T) -> [Transport: T] {
            [.tcp: make(.tcp), .http: make(.http)]
        }
        received = per {
            r.wharfCounter("rpc", "received_bytes", "Bytes read from clients.", [("transport", $0.rawValue)])
        }
        sent = per { r.wharfCounter("rpc", "sent_bytes", "Bytes written to clients.", [("transport", $0.rawValue)]) }
        connections = per {
            r.wharfGauge("rpc", "connections", "Open client connections.", [("transport", $0.rawValue)])
        }
        httpResponses = r.wharfCounter("http", "requests", "HTTP requests answered.")
        httpRefused = r.wharfCounter(
            "http", "refused", "HTTP requests or connections refused with a 4xx/5xx status by the listener's limits.")
        poolSize = r.wharfGauge("pg_pool", "connections", "Pipelined PostgreSQL connections configured.")
        poolReady = r.wharfGauge("pg_pool", "connections_ready", "Pipelined PostgreSQL connections ready.")
        poolBusy = r.wharfGauge(
            "pg_pool", "connections_in_use", "Pipelined PostgreSQL connections with a statement in flight.")
        poolQueued = r.wharfGauge(
            "pg_pool", "statements_queued", "Statements sent and not yet answered, all connections.")
        poolReconnects = r.wharfCounter("pg_pool", "reconnects", "PostgreSQL connections opened again after a failure.")
        statementLatency = r.makeDurationHistogram(
            descriptor: .init(
                namespace: "wharf", subsystem: "pg", metricName: "statement_duration", unitName: "seconds",
                helpText: "Time from sending a statement segment to its result."),
            buckets: Self.latencyBuckets)
    }

    // MARK: Counted as it happens

    /// One request answered: `code` 0 for a result, else the JSON-RPC error code.
    func requestFinished(transport: Transport, method: String, code: Int, nanoseconds: UInt64) {
        let key = RequestKey(transport: transport, method: method, code: code)
        let counter =
            requests[key]
            ?? {
                let c = registry.wharfCounter(
                    "rpc", "requests", "JSON-RPC requests answered, by method and result (ok or the error code).",
                    [("transport", transport.rawValue), ("method", method), ("code", code == 0 ? "ok" : String(code))])
                requests[key] = c
                return c
            }()
        counter.increment()
        let histogram =
            latencies[method]
            ?? {
                let h = registry.makeDurationHistogram(
                    descriptor: .init(
                        namespace: "wharf", subsystem: "rpc", metricName: "request_duration", unitName: "seconds",
                        helpText: "Time from a request's decoding to its answer, by method."),
                    labels: [("method", method)], buckets: Self.latencyBuckets)
                latencies[method] = h
                return h
            }()
        histogram.recordNanoseconds(Int64(clamping: nanoseconds))
    }

    func bytesReceived(_ n: Int, _ transport: Transport) { received[transport]!.increment(by: Int64(n)) }
    func bytesSent(_ n: Int, _ transport: Transport) { sent[transport]!.increment(by: Int64(n)) }
    func httpAnswered(refused: Bool) {
        httpResponses.increment()
        if refused { httpRefused.increment() }
    }

    // MARK: Read at scrape time

    /// Sets the gauges of what the runtime holds now.
    func sample(tcpConnections: Int, httpConnections: Int, pool: PQPool, poolSize size: Int) {
        connections[.tcp]!.set(Int64(tcpConnections))
        connections[.http]!.set(Int64(httpConnections))
        poolSize.set(Int64(size))
        poolReady.set(Int64(pool.readyCount))
        poolBusy.set(Int64(pool.busyCount))
        poolQueued.set(Int64(pool.pendingCount))
        if pool.reconnects > poolReconnectsSeen {
            poolReconnects.increment(by: Int64(pool.reconnects - poolReconnectsSeen))
            poolReconnectsSeen = pool.reconnects
        }
    }
}

extension PrometheusCollectorRegistry {
    /// The counter `wharf_<subsystem>_<name>_total` with `labels`.
    func wharfCounter(_ subsystem: String, _ name: String, _ help: String, _ labels: [(String, String)] = []) -> Counter
    {
        makeCounter(
            descriptor: .init(
                namespace: "wharf", subsystem: subsystem, metricName: name, unitName: "total", helpText: help),
            labels: labels)
    }

    /// The gauge `wharf_<subsystem>_<name>` with `labels`.
    func wharfGauge(_ subsystem: String, _ name: String, _ help: String, _ labels: [(String, String)] = []) -> Gauge {
        makeGauge(
            descriptor: .init(namespace: "wharf", subsystem: subsystem, metricName: name, unitName: "", helpText: help),
            labels: labels)
    }
}

/// The metrics of one family keyed by their label values, made on first use. Label values come from
/// clients (queue and schedule names), so the first label takes at most `maxValues` distinct values on
/// a replica: later ones are counted together under `_other`, which keeps a scrape bounded whatever
/// names clients choose. Loop thread only.
final class LabelledMetrics<Metric: AnyObject> {
    private var made: [[String]: Metric] = [:]
    private var firstValues: Set<String> = []
    private let names: [String]
    private let maxValues: Int
    private let make: ([(String, String)]) -> Metric

    /// The value the first label takes once `maxValues` are in use.
    static var other: String { "_other" }

    init(labels: [String], maxValues: Int = 100, make: @escaping ([(String, String)]) -> Metric) {
        names = labels
        self.maxValues = maxValues
        self.make = make
    }

    /// The metric with these label values (one per label name).
    func callAsFunction(_ values: String...) -> Metric {
        if let m = made[values] { return m }
        var values = values
        if !firstValues.contains(values[0]) {
            if firstValues.count >= maxValues {
                values[0] = Self.other
                if let m = made[values] { return m }
            } else {
                firstValues.insert(values[0])
            }
        }
        let m = make(Array(zip(names, values)))
        made[values] = m
        return m
    }
}

extension PrometheusCollectorRegistry {
    /// Counters `wharf_<subsystem>_<name>_total` by `labels`.
    func wharfCounters(
        _ subsystem: String, _ name: String, _ help: String, labels: [String], maxValues: Int = 100
    ) -> LabelledMetrics<Counter> {
        LabelledMetrics(labels: labels, maxValues: maxValues) { [unowned self] in
            self.wharfCounter(subsystem, name, help, $0)
        }
    }

    /// Histograms `wharf_<subsystem>_<name>_seconds` by `labels` (none: one histogram).
    func wharfHistograms(
        _ subsystem: String, _ name: String, _ help: String, buckets: [Duration], labels: [String],
        maxValues: Int = 100
    ) -> LabelledMetrics<DurationHistogram> {
        LabelledMetrics(labels: labels, maxValues: maxValues) { [unowned self] in
            self.makeDurationHistogram(
                descriptor: .init(
                    namespace: "wharf", subsystem: subsystem, metricName: name, unitName: "seconds", helpText: help),
                labels: $0, buckets: buckets)
        }
    }

    /// One histogram `wharf_<subsystem>_<name>_seconds` without labels.
    func wharfHistogram(_ subsystem: String, _ name: String, _ help: String, buckets: [Duration])
        -> DurationHistogram
    {
        makeDurationHistogram(
            descriptor: .init(
                namespace: "wharf", subsystem: subsystem, metricName: name, unitName: "seconds", helpText: help),
            buckets: buckets)
    }
}

extension ServerMetrics {
    /// Buckets for waits and run times, 5 ms to an hour: jobs run from milliseconds to long batches.
    static let waitBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60), .seconds(300), .seconds(900), .seconds(3600),
    ]
}

extension DurationHistogram {
    /// Records `ms` milliseconds (negative counts as zero).
    func record(ms: Int64) { recordNanoseconds(max(0, ms) &* 1_000_000) }
    func record(ms: Double) { recordNanoseconds(Int64(max(0, ms) * 1_000_000)) }
}
