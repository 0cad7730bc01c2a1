import Foundation
import Logging
import WharfPQ
import WharfRPC
import WharfStore
import WharfUV

/// `wharf serve`: the listener, the method table, the database pool and the background chores, all
/// on one event loop.
///
/// Start order: connect the pool, apply migrations, register the methods, then listen. `run()` blocks
/// the calling thread (which becomes the loop thread) until shutdown completes. Every other method is
/// loop-thread only, except `requestStop()`.
public final class Server: @unchecked Sendable {  // loop-thread confined; only requestStop() crosses threads
    public let config: ServerConfig
    public let loop: EventLoop
    let logger: Logger
    public private(set) var pool: PQPool!
    public private(set) var store: Store!
    private var listener: TCPListener?
    private(set) var connections: [ObjectIdentifier: ClientConnection] = [:]
    private var dirty: [ClientConnection] = []
    private var beforeFlush: [() -> Void] = []
    var jobs: JobsService!
    var locks: LocksService!
    var cron: CronService!
    var webhooks: WebhooksService!
    private var flusher: Check?
    private var keepAwake: Idle?
    private var idleSweeper: LoopTimer?
    private var signals: [SignalWatcher] = []
    private var stopWaker: AsyncWake?
    private var methods: [String: MethodSpec] = [:]
    private var chores: [() -> Void] = []
    private(set) var draining = false
    let startedAt = Date()
    private var nextSessionID = 0
    /// The bound port, known once listening (useful with port 0).
    public private(set) var boundPort = 0
    private var onListening: ((Result<Int, Error>) -> Void)?

    public init(config: ServerConfig, logger: Logger) throws {
        try config.validate()
        self.config = config
        self.logger = logger
        loop = try EventLoop()
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
        }
        pool = PQPool(loop: loop, conninfo: config.database, size: config.poolSize, logger: logger)
        store = Store(pool: pool, logger: logger)
        registerMethods()
        migrateThenListen(attempt: 0)
    }

    private func migrateThenListen(attempt: Int) {
        let conn = PQConnection(loop: loop, conninfo: config.database, mode: .simple)
        conn.onStateChange = { [unowned self] state in
            switch state {
            case .ready:
                Migrator.migrate(connection: conn, logger: self.logger) { [unowned self] result in
                    conn.close()
                    switch result {
                    case .success(let applied):
                        self.logger.info("database schema up to date", metadata: ["applied": "\(applied)"])
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
        sweeper?.start(timeoutMs: 1_000, repeatMs: 1_000) { [unowned self] in self.sweepIdle() }
        sweeper?.unref()
        idleSweeper = sweeper
        pool.whenReady { [unowned self] in
            self.store.registerReplica(
                id: self.config.replicaID, hostname: ProcessInfo.processInfo.hostName, version: WharfVersion.server
            ) { _ in }
        }
        startChores()
        cron?.serving()
        webhooks?.serving()
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

    private func beginShutdown() {
        guard !draining else { return }
        draining = true
        listener?.close()
        listener = nil
        let deadline = loop.nowMs + UInt64(config.shutdownGraceMs)
        let t = try? LoopTimer(loop: loop)
        t?.start(timeoutMs: 0, repeatMs: 20) { [unowned self] in
            let busy = self.connections.values.contains { $0.inFlight > 0 }
            if !busy || self.loop.nowMs >= deadline {
                t?.close()
                self.finishShutdown()
            }
        }
    }

    private func finishShutdown() {
        for c in Array(connections.values) { c.closeGracefully() }
        stopChores()
        cron?.stop()
        webhooks?.stop()
        // Give graceful closes a moment to write, then stop the loop.
        let t = try? LoopTimer(loop: loop)
        t?.start(timeoutMs: 50) { [unowned self] in
            t?.close()
            for c in Array(self.connections.values) { c.close() }
            self.pool?.close()
            self.logger.info("stopped")
            self.loop.stop()
        }
    }

    // MARK: Connections

    private func accepted(_ tcp: TCPConnection) {
        nextSessionID += 1
        let session = Session(id: "\(config.replicaID)-\(nextSessionID)", role: config.tokens.isEmpty ? .admin : nil)
        let conn = ClientConnection(tcp: tcp, session: session, server: self)
        if draining || connections.count >= config.limits.maxConnections {
            connections[ObjectIdentifier(conn)] = conn
            conn.start()
            let max = config.limits.maxConnections
            conn.enqueue(
                ClientConnection.reply(
                    .failure(
                        draining
                            ? .unavailable("server is shutting down", reason: "shutting_down")
                            : .limitExceeded("too many connections", limit: "connections", max: max, retryable: true)),
                    id: .null))
            conn.closeGracefully()
            return
        }
        connections[ObjectIdentifier(conn)] = conn
        conn.start()
    }

    func connectionClosed(_ conn: ClientConnection) {
        connections[ObjectIdentifier(conn)] = nil
    }

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

    private func flushDirty() {
        keepAwake?.stop()
        while !beforeFlush.isEmpty {
            let hooks = beforeFlush
            beforeFlush.removeAll()
            for h in hooks { h() }
        }
        guard !dirty.isEmpty else { return }
        let list = dirty
        dirty.removeAll(keepingCapacity: true)
        for c in list { c.flush() }
    }

    private func sweepIdle() {
        let now = loop.nowMs
        let limit = UInt64(config.limits.idleTimeoutMs)
        for c in Array(connections.values) where c.isIdle && now - c.lastActivityMs > limit {
            logger.debug("closing idle connection", metadata: ["session": "\(c.session.id)"])
            c.enqueue(
                ClientConnection.reply(
                    .failure(
                        .limitExceeded(
                            "idle timeout", limit: "idleTimeoutMs", max: config.limits.idleTimeoutMs, retryable: true)),
                    id: .null))
            c.closeGracefully()
        }
    }

    // MARK: Dispatch

    /// Registers a method. `roles` may call it (admin always may); `open` methods need no session.
    func register(_ name: String, roles: Set<Role>, open: Bool = false, _ handler: @escaping (Call) throws -> Void) {
        precondition(methods[name] == nil, "\(name) registered twice")
        methods[name] = MethodSpec(name: name, roles: roles, open: open, handler: handler)
    }

    /// The names of every method served.
    public var methodNames: [String] { methods.keys.sorted() }

    func dispatch(_ request: RPCRequest, session: Session, _ done: @escaping (Result<JSON, RPCError>) -> Void) {
        guard let spec = methods[request.method] else { return done(.failure(.methodNotFound(request.method))) }
        if draining { return done(.failure(.unavailable("server is shutting down", reason: "shutting_down"))) }
        if !spec.open {
            guard let role = session.role else {
                return done(.failure(.unauthorized("authenticate with session.hello first")))
            }
            if role != .admin && !spec.roles.contains(role) {
                return done(.failure(.forbidden(role: role.rawValue, method: request.method)))
            }
        }
        let params: Params
        do throws(RPCError) { params = try Params(request.params) } catch { return done(.failure(error)) }
        // One such string would make PostgreSQL refuse every call batched into the same statement.
        if let path = request.params?.pathOfNUL() {
            return done(.failure(.invalidParams(field: path, "must not contain the character U+0000")))
        }
        // Stored altered (1e400 as null, 99999999999999999999999999 as 1e+26) it would be silently wrong.
        if let path = request.params?.pathOfInexactNumber() {
            return done(
                .failure(.invalidParams(field: path, "is a number that would not be kept exactly (see Protocol/README.md)")))
        }
        let call = Call(method: request.method, params: params, session: session, done: done)
        do {
            try spec.handler(call)
        } catch let error as RPCError {
            if call.isPending { call.fail(error) }
        } catch {
            logger.error("handler failed", metadata: ["method": "\(request.method)", "error": "\(error)"])
            if call.isPending { call.fail(.internalError) }
        }
    }

    // MARK: Background chores and notifications

    /// LISTEN channels used for cross-replica wake-ups.
    var notificationChannels: [String] { ["wharf_wake"] }

    private var notificationHandlers: [String: (String) -> Void] = [:]

    /// Routes payloads of `NOTIFY wharf_wake, '<topic>:<rest>'` to the handler of `topic`.
    func onWake(_ topic: String, _ handler: @escaping (String) -> Void) { notificationHandlers[topic] = handler }

    private func notificationReceived(_ channel: String, _ payload: String) {
        guard let colon = payload.firstIndex(of: ":") else {
            notificationHandlers[payload]?("")
            return
        }
        notificationHandlers[String(payload[..<colon])]?(String(payload[payload.index(after: colon)...]))
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

struct MethodSpec {
    let name: String
    let roles: Set<Role>
    let open: Bool
    let handler: (Call) throws -> Void
}
