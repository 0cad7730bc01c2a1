import Foundation
import Logging
import WharfPQ
import WharfRPC
import WharfStore
import WharfTLS
import WharfUV

/// `wharf serve`: the listener, the method table, the database pool and the background chores, all
/// on one event loop.
///
/// Start order: connect the pool, apply migrations, register the methods, then listen. `run()` blocks
/// the calling thread (which becomes the loop thread) until shutdown completes. Every other method is
/// loop-thread only, except `requestStop()`.
public final class Server: RuntimeHooks, @unchecked Sendable {  // loop-thread confined; only requestStop() crosses threads
    public let config: ServerConfig
    public let loop: EventLoop
    let logger: Logger
    public let pool: PQPool
    public let store: Store
    private var listener: TCPListener?
    private(set) var connections: [ObjectIdentifier: ClientConnection] = [:]
    /// Open connections per peer address (for `maxConnectionsPerPeer`).
    private var connectionsPerPeer: [String: Int] = [:]
    /// Bytes held by all connections together (see `Limits.maxBufferedBytes`).
    private(set) var bufferedBytes = 0
    private var dirty: [ClientConnection] = []
    /// Connections that used their share of this loop turn, resumed at the start of the next one.
    private var yielded: [any TurnSharing] = []
    /// Counts loop turns (check phases); a connection's share of requests is per turn.
    private(set) var turn: UInt64 = 0
    /// When the first request of this turn started (`EventLoop.hrtimeNs`; 0: none yet).
    private var turnWorkStartedNs: UInt64 = 0
    /// Time all connections together may spend starting requests in one loop turn before each is held
    /// to one request per turn: this bounds how long one turn keeps the others waiting, on any build
    /// and with any number of busy connections.
    static let turnBudgetNs: UInt64 = 2_000_000

    /// A request is about to be handled: starts the turn's clock if it is the first.
    func turnWorkStarting() {
        if turnWorkStartedNs == 0 { turnWorkStartedNs = EventLoop.hrtimeNs }
    }

    /// True once this turn's budget for starting requests is spent.
    var turnExhausted: Bool {
        turnWorkStartedNs != 0 && EventLoop.hrtimeNs &- turnWorkStartedNs >= Self.turnBudgetNs
    }
    private var beforeFlush: [() -> Void] = []
    /// What the features' services get from the runtime (never the server itself).
    private lazy var context = ServiceContext(loop: loop, store: store, config: config, logger: logger, hooks: self)
    private(set) lazy var jobs = JobsService(context, webhooks: webhooks)
    private(set) lazy var locks = LocksService(context)
    private(set) lazy var webhooks = WebhooksService(context)
    private(set) lazy var cron = CronService(context, jobs: jobs, webhooks: webhooks)
    private(set) lazy var runs = RunsService(context, jobs: jobs)
    private(set) lazy var events = EventsService(context, webhooks: webhooks) { [unowned self] in self.connections.values }
    private(set) lazy var jobWaits = JobWaits(context, events: events)
    private var flusher: Check?
    private var keepAwake: Idle?
    private var idleSweeper: LoopTimer?
    private var signals: [SignalWatcher] = []
    private var stopWaker: AsyncWake?
    private(set) lazy var methods = MethodTable(logger: logger)
    /// The Prometheus metrics served at `GET /metrics`.
    private(set) lazy var metrics = ServerMetrics()
    /// The HTTP side door (nil: `--http-listen off`, or its default address was taken).
    var http: HTTPService?
    /// Writes of this replica's row under way, and what waits for them (`Server+Replicas`).
    var replicaWritesInFlight = 0
    var afterReplicaWrites: [() -> Void] = []
    /// Set once migrations are applied (`/readyz`).
    private(set) var schemaReady = false
    private var chores: [() -> Void] = []
    private(set) var draining = false
    let startedAt = Date()
    private var nextSessionID = 0
    /// The bound port, known once listening (useful with port 0).
    public private(set) var boundPort = 0
    private var onListening: ((Result<Int, Error>) -> Void)?
    /// What new connections shake hands with (replaced on SIGHUP); nil without TLS.
    var tlsContext: TLSContext?

    public init(config: ServerConfig, logger: Logger) throws {
        try config.validate()
        self.config = config
        self.logger = logger
        loop = try EventLoop()
        pool = PQPool(loop: loop, conninfo: config.database, size: config.poolSize, logger: logger)
        store = Store(pool: pool, logger: logger)
        tlsContext = try config.tls?.makeContext()
    }

    // MARK: Lifecycle

    /// Runs the server on the calling thread until it is stopped (SIGINT/SIGTERM or `requestStop`).
    /// `onListening` is called on the loop thread with the bound port, or the startup error.
    public func run(handleSignals: Bool = true, onListening: ((Result<Int, Error>) -> Void)? = nil) {
        self.onListening = onListening
        do {
            try setUp(handleSignals: handleSignals)
        } catch {
            onListening?(.failure(error))
            loop.shutdown()
            return
        }
        loop.run()
        stopLock.withLock { stopWakerClosed = true }
        loop.shutdown()
    }

    private func setUp(handleSignals: Bool) throws {
        signal(SIGPIPE, SIG_IGN)
        let flusher = try Check(loop: loop)
        flusher.start { [unowned self] in self.flushDirty() }
        self.flusher = flusher
        keepAwake = try Idle(loop: loop)
        stopWaker = try AsyncWake(loop: loop) { [unowned self] in self.beginShutdown() }
        stopWaker?.unref()
        if handleSignals {
            for sig in [SIGINT, SIGTERM] {
                let w = try SignalWatcher(loop: loop)
                try w.start(signal: sig) { [unowned self] s in
                    self.logger.info("signal received, shutting down", metadata: ["signal": "\(s)"])
                    self.beginShutdown()
                }
                w.unref()
                signals.append(w)
            }
            if config.tls != nil { signals.append(try reloadSignalWatcher()) }
        }
        for service in [jobs.start, locks.start, webhooks.start, cron.start, events.start, jobWaits.start] { service() }
        registerMethods()
        pool.onSegmentFinished = { [unowned self] ns in self.metrics.statementLatency.recordNanoseconds(Int64(ns)) }
        store.jobsObserver = metrics.jobs
        try startHTTP()
        migrateThenListen(attempt: 0)
    }

    private func migrateThenListen(attempt: Int) {
        let conn = pool.separateConnection()
        conn.onStateChange = { [unowned self] state in
            switch state {
            case .ready:
                Migrator.migrate(connection: conn, logger: self.logger) { [unowned self] result in
                    conn.close()
                    switch result {
                    case .success(let applied):
                        self.logger.info("database schema up to date", metadata: ["applied": "\(applied)"])
                        self.schemaReady = true
                        self.startServing()
                    case .failure(let e):
                        self.logger.critical("migration failed", metadata: ["error": "\(e)"])
                        self.onListening?(.failure(e))
                        self.onListening = nil
                        self.beginShutdown()
                    }
                }
            case .failed(let message):
                conn.close()
                if attempt == 0 || attempt % 10 == 0 {
                    self.logger.warning("database not reachable yet, retrying", metadata: ["error": "\(message)"])
                }
                guard !self.draining else { return }
                let t = try? LoopTimer(loop: self.loop)
                t?.start(timeoutMs: UInt64(min(100 << min(attempt, 5), 2_000))) { [unowned self] in
                    t?.close()
                    self.migrateThenListen(attempt: attempt + 1)
                }
            default:
                break
            }
        }
        conn.connect()
    }

    private func startServing() {
        guard !draining else { return }
        pool.start(listen: notificationChannels)
        pool.onNotification = { [unowned self] channel, payload in self.notificationReceived(channel, payload) }
        // Listen only once a pooled connection is ready, so the first requests do not fail.
        pool.whenReady { [unowned self] in self.listen() }
    }

    private func listen() {
        guard !draining else { return }
        do {
            let l = try TCPListener(loop: loop)
            try l.listen(host: config.host == "localhost" ? "127.0.0.1" : config.host, port: config.port) {
                [unowned self] tcp in self.accepted(tcp)
            }
            listener = l
            boundPort = l.port
        } catch {
            logger.critical("cannot listen", metadata: ["error": "\(error)"])
            onListening?(.failure(error))
            onListening = nil
            beginShutdown()
            return
        }
        let sweeper = try? LoopTimer(loop: loop)
        sweeper?.start(timeoutMs: Self.sweepEveryMs, repeatMs: Self.sweepEveryMs) { [unowned self] in
            self.sweepDeadlines()
        }
        sweeper?.unref()
        idleSweeper = sweeper
        startReplicaHeartbeat()
        startChores()
        cron.serving()
        webhooks.serving()
        logger.info(
            "listening", metadata: ["address": "\(config.host):\(boundPort)", "replica": "\(config.replicaID)"])
        onListening?(.success(boundPort))
        onListening = nil
    }

    private let stopLock = NSLock()
    /// Set once the loop ended: the wake-up handle is about to be freed and must not be touched.
    private var stopWakerClosed = false

    /// Stops the server from any thread; harmless once it has stopped.
    public func requestStop() {
        stopLock.withLock {
            if !stopWakerClosed { stopWaker?.send() }
        }
    }

    /// The drain (Protocol/README.md, "Draining"): stop accepting, answer the long polls, let what is in
    /// flight finish for `shutdownGraceMs` (`--drain-timeout`), then stop.
    private func beginShutdown() {
        guard !draining else { return }
        draining = true
        listener?.close()
        listener = nil
        // The HTTP listener stays open to the end, so that the probes hear /readyz turn 503; each of its
        // connections closes after its next reply (`HTTPConnection.take`), and all at the end.
        drainServices()
        writeReplicaRow()
        let deadline = loop.nowMs + UInt64(config.shutdownGraceMs)
        let t = try? LoopTimer(loop: loop)
        t?.start(timeoutMs: 0, repeatMs: 20) { [unowned self] in
            self.closeIdleConnections()
            if !self.drainBusy || self.loop.nowMs >= deadline {
                t?.close()
                self.finishShutdown()
            }
        }
    }

    private func finishShutdown() {
        handOffDuties()
        for c in Array(connections.values) { c.closeGracefully() }
        stopChores()
        cron.stop()
        webhooks.stop()
        locks.stop()
        // Give graceful closes a moment to write (and this replica's row its delete), then stop the loop.
        var forgotten = false
        forgetReplicaRow { forgotten = true }
        let t = try? LoopTimer(loop: loop)
        var waited = 0
        t?.start(timeoutMs: 50, repeatMs: 50) { [unowned self] in
            waited += 50
            guard forgotten || waited >= 1_000 else { return }
            t?.close()
            for c in Array(self.connections.values) { c.close() }
            self.http?.close()
            self.pool.close()
            self.logger.info("stopped")
            self.loop.stop()
        }
    }

    // MARK: Connections

    private func accepted(_ tcp: TCPConnection) {
        nextSessionID += 1
        let session = Session(id: "\(config.replicaID)-\(nextSessionID)", role: config.requiresAuthentication ? nil : .admin)
        let peer = tcp.peerAddress
        let limits = config.limits
        var refusal: RPCError?
        if draining {
            refusal = .unavailable("server is shutting down", reason: "shutting_down")
        } else if connections.count >= limits.maxConnections {
            refusal = .limitExceeded(
                "too many connections", limit: "connections", max: limits.maxConnections, retryable: true)
        } else if let peer, limits.maxConnectionsPerPeer > 0,
            connectionsPerPeer[peer, default: 0] >= limits.maxConnectionsPerPeer
        {
            refusal = .limitExceeded(
                "too many connections from \(peer)", limit: "connectionsPerPeer", max: limits.maxConnectionsPerPeer,
                retryable: true)
        }
        // A refused connection is not counted against its peer: it only carries the error line.
        guard let stream = secured(tcp) else { return tcp.close() }
        let conn = ClientConnection(tcp: stream, session: session, peer: refusal == nil ? peer : nil, server: self)
        connections[ObjectIdentifier(conn)] = conn
        if let peer = conn.peer { connectionsPerPeer[peer, default: 0] += 1 }
        conn.start()
        if let refusal { conn.closeWithError(refusal) }
    }

    func connectionClosed(_ conn: ClientConnection) {
        connections[ObjectIdentifier(conn)] = nil
        if let peer = conn.peer {
            let left = connectionsPerPeer[peer, default: 1] - 1
            connectionsPerPeer[peer] = left > 0 ? left : nil
        }
    }

    func bufferedBytesChanged(by delta: Int) { bufferedBytes += delta }

    public var connectionCount: Int { connections.count }

    func markDirty(_ conn: ClientConnection) {
        dirty.append(conn)
        keepAwake?.start()
    }

    /// Runs `body` in this iteration's check phase, before replies are written.
    func runBeforeFlush(_ body: @escaping () -> Void) {
        beforeFlush.append(body)
        keepAwake?.start()
    }

    /// `conn` used its share of this turn: it continues after the loop has polled everyone else.
    func resumeNextTurn(_ conn: any TurnSharing) {
        yielded.append(conn)
        keepAwake?.start()
    }

    /// Resumes waiting connections in the order they yielded, while this turn's time lasts; the rest
    /// keep their place for the next turn (round robin), and those that yield again go to the back.
    private func resumeYielded() {
        let waiting = yielded
        yielded = []
        var next = 0
        while next < waiting.count, !turnExhausted {
            waiting[next].turnStarted()
            next += 1
        }
        if next < waiting.count {
            yielded = Array(waiting[next...]) + yielded
            keepAwake?.start()
        }
    }

    private func flushDirty() {
        keepAwake?.stop()
        turn &+= 1
        turnWorkStartedNs = 0
        if !yielded.isEmpty { resumeYielded() }
        while !beforeFlush.isEmpty {
            let hooks = beforeFlush
            beforeFlush.removeAll()
            for h in hooks { h() }
        }
        guard !dirty.isEmpty else { return }
        let list = dirty
        dirty.removeAll(keepingCapacity: true)
        for c in list { c.flush() }
        if bufferedBytes > config.limits.maxBufferedBytes { enforceBufferBudget() }
    }

    /// How often connection deadlines are checked; each deadline is met within this much.
    static let sweepEveryMs: UInt64 = 250

    private func sweepDeadlines() {
        let now = loop.nowMs
        for c in Array(connections.values) { c.checkDeadlines(now: now) }
        if bufferedBytes > config.limits.maxBufferedBytes { enforceBufferBudget() }
    }

    /// Over the budget, closes the connections that have held their bytes longest without progress
    /// (a peer that does not read, or a frame that does not end) until the total fits again. A peer
    /// that keeps reading is closed only if nothing else frees enough.
    private func enforceBufferBudget() {
        let budget = config.limits.maxBufferedBytes
        let ranked = connections.values.filter { !$0.isClosed && $0.accountedBytes > 0 }.sorted { a, b in
            switch (a.deadlines.stuckSinceMs, b.deadlines.stuckSinceMs) {
            case (let x?, let y?) where x != y: return x < y
            case (.some, nil): return true
            case (nil, .some): return false
            default: return a.accountedBytes > b.accountedBytes
            }
        }
        for c in ranked {
            guard bufferedBytes > budget else { break }
            logger.warning(
                "closing a connection: the server holds more buffered bytes than --max-buffered-bytes",
                metadata: [
                    "session": "\(c.session.id)", "peer": "\(c.peer ?? "?")", "bytes": "\(c.accountedBytes)",
                    "totalBytes": "\(bufferedBytes)", "maxBufferedBytes": "\(budget)",
                ])
            c.close()
        }
    }

    // MARK: Background chores and notifications

    /// LISTEN channels used for cross-replica wake-ups.
    var notificationChannels: [String] { [WakeTopic.channel] }

    private var notificationHandlers: [WakeTopic: (String) -> Void] = [:]

    /// Routes payloads of `NOTIFY wharf_wake, '<topic>:<rest>'` to the handler of `topic`.
    func onWake(_ topic: WakeTopic, _ handler: @escaping (String) -> Void) {
        precondition(notificationHandlers[topic] == nil, "two handlers for wake topic \(topic)")
        notificationHandlers[topic] = handler
    }

    private func notificationReceived(_ channel: String, _ payload: String) {
        guard let (topic, rest) = WakeTopic.parse(payload) else { return }
        notificationHandlers[topic]?(rest)
    }

    /// Adds a periodic chore (lease reaper, scheduler...), started once serving.
    private var choreTimers: [LoopTimer] = []

    func addChore(everyMs: UInt64, _ body: @escaping () -> Void) {
        chores.append { [unowned self] in
            guard let t = try? LoopTimer(loop: self.loop) else { return }
            t.start(timeoutMs: everyMs, repeatMs: everyMs, body)
            t.unref()
            self.choreTimers.append(t)
        }
    }

    private func startChores() { for c in chores { c() } }

    private func stopChores() {
        for t in choreTimers { t.close() }
        choreTimers = []
    }
}

/// A connection that takes its share of a loop turn's requests, then yields to the others
/// (`Server.resumeNextTurn`); `turnStarted` resumes it in a later turn.
protocol TurnSharing: AnyObject {
    func turnStarted()
}

extension ClientConnection: TurnSharing {}
