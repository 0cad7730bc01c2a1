import Logging
import WharfUV

/// A fixed number of pipelined connections plus one LISTEN connection, re-established with backoff.
///
/// `run` sends a segment on the ready connection with the fewest segments in flight. While no
/// connection is ready it fails at once with `.unavailable` (retryable for clients) rather than
/// queueing without bound. Lives on the loop thread.
public final class PQPool {
    private unowned let loop: EventLoop
    public let conninfo: String
    private let logger: Logger
    private var slots: [Slot] = []
    private var listener: Slot?
    private var channels: [String] = []
    private var readyWaiters: [() -> Void] = []
    private var stopped = false

    /// Segments (implicit transactions, one round trip each) and statements sent so far.
    public private(set) var segmentsSent = 0
    public private(set) var statementsSent = 0

    /// Called for every notification on a channel passed to `listen`.
    public var onNotification: ((String, String) -> Void)?
    /// Called after the LISTEN connection (re)connected, so callers can re-check what they might have
    /// missed while it was down.
    public var onListenerReady: (() -> Void)?
    /// Called as each segment run by `run` finishes, with its time from send to result in nanoseconds
    /// (the metrics' statement latency).
    public var onSegmentFinished: ((UInt64) -> Void)?
    /// Connections that failed and were opened again, since start.
    public private(set) var reconnects = 0

    private final class Slot {
        var connection: PQConnection?
        var failures = 0
        var timer: LoopTimer?
    }

    public init(loop: EventLoop, conninfo: String, size: Int, logger: Logger) {
        self.loop = loop
        self.conninfo = conninfo
        self.logger = logger
        slots = (0..<max(1, size)).map { _ in Slot() }
    }

    /// Opens the connections. `channels` are LISTENed on a dedicated connection.
    public func start(listen channels: [String] = []) {
        self.channels = channels
        for slot in slots { open(slot, mode: .pipelined) }
        if !channels.isEmpty {
            let s = Slot()
            listener = s
            open(s, mode: .simple)
        }
    }

    /// True when at least one pipelined connection is ready.
    public var isAvailable: Bool { slots.contains { $0.connection?.state == .ready } }

    /// Number of pipelined connections that are ready.
    public var readyCount: Int { slots.filter { $0.connection?.state == .ready }.count }

    /// Pipelined connections with at least one segment in flight.
    public var busyCount: Int { slots.filter { ($0.connection?.pendingCount ?? 0) > 0 }.count }

    /// Segments sent and not yet answered, on all pipelined connections.
    public var pendingCount: Int { slots.reduce(0) { $0 + ($1.connection?.pendingCount ?? 0) } }

    /// The server version reported by a ready connection (e.g. 150018), 0 if none.
    public var serverVersion: Int {
        slots.lazy.compactMap { $0.connection }.first { $0.state == .ready }?.serverVersion ?? 0
    }

    /// Calls `body` once a connection is ready (at once if one is).
    public func whenReady(_ body: @escaping () -> Void) {
        if isAvailable { body() } else { readyWaiters.append(body) }
    }

    /// Runs one segment (one implicit transaction).
    public func run(_ segment: PQSegment, _ completion: @escaping (Result<[PQResult], PQError>) -> Void) {
        var best: PQConnection?
        for slot in slots {
            guard let c = slot.connection, c.state == .ready else { continue }
            if best == nil || c.pendingCount < best!.pendingCount { best = c }
        }
        guard let best else {
            return completion(.failure(PQError(kind: .unavailable, message: "database unavailable")))
        }
        segmentsSent += 1
        statementsSent += segment.statements.count
        guard let observe = onSegmentFinished else { return best.send(segment, completion) }
        let started = EventLoop.hrtimeNs
        best.send(segment) { result in
            observe(EventLoop.hrtimeNs &- started)
            completion(result)
        }
    }

    /// A simple-mode connection to the pool's database on its loop, outside the pool: for work that
    /// should not hold up the segments queued on a pipelined connection (the migrations, a vacuum).
    /// The caller connects it and closes it.
    public func separateConnection() -> PQConnection { PQConnection(loop: loop, conninfo: conninfo, mode: .simple) }

    /// Convenience for one statement.
    public func query(
        _ sql: String, _ params: [String?] = [], _ completion: @escaping (Result<PQResult, PQError>) -> Void
    ) {
        run(PQSegment(sql, params)) { r in completion(r.map { $0[0] }) }
    }

    private func open(_ slot: Slot, mode: PQConnection.Mode) {
        guard !stopped else { return }
        let c = PQConnection(loop: loop, conninfo: conninfo, mode: mode)
        slot.connection = c
        c.onStateChange = { [unowned self, unowned slot, unowned c] state in
            switch state {
            case .ready:
                if slot.failures > 0 { self.logger.info("database connection re-established") }
                slot.failures = 0
                if mode == .simple {
                    c.onNotification = { [unowned self] ch, payload in self.onNotification?(ch, payload) }
                    let sql = self.channels.map { "LISTEN \($0);" }.joined()
                    c.simpleQuery(sql) { [unowned self] r in
                        if case .failure(let e) = r { self.logger.warning("LISTEN failed: \(e)") }
                        self.onListenerReady?()
                    }
                } else {
                    let waiters = self.readyWaiters
                    self.readyWaiters = []
                    for w in waiters { w() }
                }
            case .failed(let message):
                self.scheduleReconnect(slot, mode: mode, message: message)
            default:
                break
            }
        }
        c.connect()
    }

    private func scheduleReconnect(_ slot: Slot, mode: PQConnection.Mode, message: String) {
        guard !stopped else { return }
        slot.failures += 1
        let delay = min(100 << min(slot.failures - 1, 6), 5_000)
        if slot.failures == 1 || slot.failures % 10 == 0 {
            logger.warning(
                "database connection failed, retrying", metadata: ["error": "\(message)", "in_ms": "\(delay)"])
        }
        if slot.timer == nil { slot.timer = try? LoopTimer(loop: loop) }
        slot.timer?.start(timeoutMs: UInt64(delay)) { [unowned self, unowned slot] in
            self.reconnects += 1
            slot.connection?.close()
            self.open(slot, mode: mode)
        }
    }

    /// Closes every connection; pending work fails.
    public func close() {
        stopped = true
        for slot in slots + (listener.map { [$0] } ?? []) {
            slot.timer?.close()
            slot.timer = nil
            slot.connection?.close()
            slot.connection = nil
        }
    }
}
