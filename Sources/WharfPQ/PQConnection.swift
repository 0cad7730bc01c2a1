import CLibPQ
import WharfUV

/// One libpq connection driven by the event loop; never blocks.
///
/// Connects with `PQconnectStart`/`PQconnectPoll`, watches `PQsocket` with one `Poll` (re-created when
/// libpq swaps the socket during connect), asks for writability only while `PQflush` has more to send,
/// and on readability consumes input, drains every ready result and then `PQnotifies`.
///
/// In `.pipelined` mode every `PQSegment` is sent as prepared statements followed by its own Sync, so
/// many segments are in flight at once but each is its own transaction. In `.simple` mode one
/// simple-protocol query string runs at a time (used for LISTEN and migrations).
///
/// When the connection breaks, work in flight fails so that callers can tell a statement that cannot
/// have run from one that may have committed: `.server` when PostgreSQL answered one of its
/// statements with an error (the implicit transaction rolled back); `.unavailable` for segments
/// behind one whose statement ended the session (a FATAL error: the backend exited before reading
/// them); `.outcomeUnknown` otherwise, since once libpq has a segment, whether its Sync (where its
/// transaction commits) reached PostgreSQL cannot be known (libpq even reports a failed write as
/// flushed, to read the server's error first). Work that never reached libpq fails as `.unavailable`.
/// Lives on the loop thread. `PQfinish` runs only after the poll handle was closed.
public final class PQConnection {
    public enum Mode { case pipelined, simple }

    public enum State: Equatable {
        case idle, connecting, ready
        /// Connect failed or the connection was lost; the message says why.
        case failed(String)
        case closed
    }

    private enum Slot { case prepare(String), statement }

    private struct InFlight {
        var slots: [Slot]
        var slot = 0
        var results: [PQResult] = []
        var error: PQError?
        /// True when `error` answered one of the segment's own statements, which means the segment's
        /// transaction rolled back whatever happens to the connection afterwards.
        var errorIsDefinite = false
        var completion: (Result<[PQResult], PQError>) -> Void
    }

    private unowned let loop: EventLoop
    private let conninfo: String
    public let mode: Mode
    private var conn: OpaquePointer?
    private var poll: Poll?
    public private(set) var state: State = .idle
    private var inFlight: [InFlight] = []
    private var inFlightHead = 0
    private var simpleQueue: [(String, (Result<[PQResult], PQError>) -> Void)] = []
    private var prepared: [String: String] = [:]
    private var nextStatement = 0

    /// Called on every state change (ready, failed, closed).
    public var onStateChange: ((State) -> Void)?
    /// Called for each `NOTIFY` received: channel, payload.
    public var onNotification: ((String, String) -> Void)?

    public init(loop: EventLoop, conninfo: String, mode: Mode) {
        self.loop = loop
        self.conninfo = conninfo
        self.mode = mode
    }

    deinit {
        if let conn { PQfinish(conn) }
    }

    /// Number of segments (or simple queries) sent or queued and not yet answered.
    public var pendingCount: Int { inFlight.count - inFlightHead + simpleQueue.count }

    /// The server's version as libpq reports it (e.g. 150018), once connected.
    public var serverVersion: Int { conn.map { Int(PQserverVersion($0)) } ?? 0 }

    /// Starts connecting; `onStateChange` reports `.ready` or `.failed`.
    public func connect() {
        precondition(state == .idle, "connect() called twice")
        state = .connecting
        guard let c = PQconnectStart(conninfo) else { return fail("out of memory") }
        conn = c
        if PQstatus(c) == CONNECTION_BAD { return fail(errorMessage()) }
        PQsetnonblocking(c, 1)
        // Without a receiver libpq prints notices on stderr.
        PQsetNoticeReceiver(c, { _, _ in }, nil)
        continueConnect(PGRES_POLLING_WRITING)
    }

    private func errorMessage() -> String {
        guard let conn else { return "no connection" }
        return String(cString: PQerrorMessage(conn)).trimmingWhitespace()
    }

    private func continueConnect(_ status: PostgresPollingStatusType) {
        guard let conn else { return }
        switch status {
        case PGRES_POLLING_OK:
            if mode == .pipelined, PQenterPipelineMode(conn) != 1 { return fail(errorMessage()) }
            guard watchSocket(.readable) else { return }
            state = .ready
            onStateChange?(.ready)
        case PGRES_POLLING_READING:
            _ = watchSocket(.readable)
        case PGRES_POLLING_WRITING:
            _ = watchSocket(.writable)
        default:
            fail(errorMessage())
        }
    }

    /// Points the poll handle at libpq's current socket, re-creating it if the fd changed.
    private func watchSocket(_ events: Poll.Events) -> Bool {
        guard let conn else { return false }
        let fd = PQsocket(conn)
        guard fd >= 0 else {
            fail("no socket")
            return false
        }
        if let poll, poll.fd != fd {
            poll.close()
            self.poll = nil
        }
        if poll == nil {
            do {
                let p = try Poll(loop: loop, fd: fd)
                p.setCallback { [unowned self] status, events in self.socketEvent(status: status, events: events) }
                poll = p
            } catch {
                fail("\(error)")
                return false
            }
        }
        poll!.watch(events)
        return true
    }

    private func socketEvent(status: Int32, events: Poll.Events) {
        guard let conn else { return }
        if state == .connecting {
            continueConnect(PQconnectPoll(conn))
            return
        }
        guard state == .ready else { return }
        if status < 0 { return fail("socket error \(status)") }
        if events.contains(.writable) { flush() }
        if events.contains(.readable) {
            if PQconsumeInput(conn) == 0 { return fail(errorMessage()) }
            mode == .pipelined ? drainPipelineResults() : drainSimpleResults()
            guard state == .ready else { return }
            while let n = PQnotifies(conn) {
                let channel = String(cString: n.pointee.relname)
                let payload = String(cString: n.pointee.extra)
                PQfreemem(n)
                onNotification?(channel, payload)
            }
        }
    }

    private func flush() {
        guard let conn else { return }
        switch PQflush(conn) {
        case 0: poll?.watch(.readable)
        case 1: poll?.watch([.readable, .writable])
        default: fail(errorMessage())
        }
    }

    // MARK: Pipelined segments

    /// Sends a segment; `completion` gets one result per statement, or the first error.
    public func send(_ segment: PQSegment, _ completion: @escaping (Result<[PQResult], PQError>) -> Void) {
        precondition(mode == .pipelined)
        guard state == .ready, let conn else {
            return completion(.failure(PQError(kind: .unavailable, message: "database connection not ready")))
        }
        var slots: [Slot] = []
        slots.reserveCapacity(segment.statements.count)
        // Every Parse goes before the first Execute: a statement that fails at run time then cannot
        // abort the Parse of a later one, which segments sent meanwhile may already be using. Each
        // statement's text is looked up once (the lease statement's is 10 KB to hash).
        var names: [String] = []
        names.reserveCapacity(segment.statements.count)
        for st in segment.statements {
            if let name = prepared[st.sql] {
                names.append(name)
                continue
            }
            nextStatement += 1
            let name = "w\(nextStatement)"
            guard PQsendPrepare(conn, name, st.sql, 0, nil) == 1 else { return sendFailed(completion) }
            prepared[st.sql] = name
            slots.append(.prepare(st.sql))
            names.append(name)
        }
        for (st, name) in zip(segment.statements, names) {
            let ok = withCStrings(st.params) { values in
                PQsendQueryPrepared(conn, name, Int32(st.params.count), values, nil, nil, 0)
            }
            guard ok == 1 else { return sendFailed(completion) }
            slots.append(.statement)
        }
        guard PQpipelineSync(conn) == 1 else { return sendFailed(completion) }
        inFlight.append(InFlight(slots: slots, completion: completion))
        flush()
    }

    /// libpq refused part of a segment: the segment has no Sync, so it cannot run.
    private func sendFailed(_ completion: (Result<[PQResult], PQError>) -> Void) {
        let message = errorMessage()
        completion(.failure(PQError(kind: .unavailable, message: message)))
        fail(message)
    }

    private func drainPipelineResults() {
        guard let conn else { return }
        while inFlightHead < inFlight.count {
            if PQisBusy(conn) == 1 { return }
            guard let r = PQgetResult(conn) else {
                inFlight[inFlightHead].slot += 1
                continue
            }
            let status = PQresultStatus(r)
            if status == PGRES_PIPELINE_SYNC {
                PQclear(r)
                let done = inFlight[inFlightHead]
                inFlight[inFlightHead].results = []
                inFlightHead += 1
                if inFlightHead > 64 && inFlightHead * 2 > inFlight.count {
                    inFlight.removeFirst(inFlightHead)
                    inFlightHead = 0
                }
                if let error = done.error {
                    done.completion(.failure(error))
                } else {
                    done.completion(.success(done.results))
                }
                guard state == .ready else { return }
                continue
            }
            let index = inFlight[inFlightHead].slot
            let slot = index < inFlight[inFlightHead].slots.count ? inFlight[inFlightHead].slots[index] : .statement
            switch status {
            case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
                if case .statement = slot {
                    inFlight[inFlightHead].results.append(PQResult(r))
                } else {
                    PQclear(r)
                }
            case PGRES_PIPELINE_ABORTED:
                PQclear(r)
                // A Parse skipped after an earlier failure never happened: prepare that SQL again next time.
                if case .prepare(let sql) = slot { prepared[sql] = nil }
                if inFlight[inFlightHead].error == nil {
                    inFlight[inFlightHead].error = PQError(
                        kind: .aborted, message: "statement skipped after an earlier failure")
                }
            default:
                let error = PQError.from(result: r)
                PQclear(r)
                if case .prepare(let sql) = slot { prepared[sql] = nil }
                if inFlight[inFlightHead].error == nil {
                    inFlight[inFlightHead].error = error
                    // An error in place of one of the segment's results means that statement failed.
                    // One after the last result (a FATAL at shutdown) may follow a commit.
                    inFlight[inFlightHead].errorIsDefinite = index < inFlight[inFlightHead].slots.count
                }
            }
        }
    }

    // MARK: Simple queries

    /// Runs one simple-protocol query string (several statements allowed, no parameters).
    public func simpleQuery(_ sql: String, _ completion: @escaping (Result<[PQResult], PQError>) -> Void) {
        precondition(mode == .simple)
        guard state == .ready else {
            return completion(.failure(PQError(kind: .unavailable, message: "database connection not ready")))
        }
        simpleQueue.append((sql, completion))
        if !simpleSent { sendNextSimple() }
    }

    private var simpleResults: [PQResult] = []
    private var simpleError: PQError?
    /// True while the query at the head of `simpleQueue` has been sent and not yet answered.
    private var simpleSent = false

    private func sendNextSimple() {
        guard let conn, let (sql, completion) = simpleQueue.first else { return }
        simpleSent = true
        if PQsendQuery(conn, sql) != 1 {
            simpleSent = false
            simpleQueue.removeFirst()
            completion(.failure(PQError(kind: .unavailable, message: errorMessage())))
            return fail(errorMessage())
        }
        flush()
    }

    private func drainSimpleResults() {
        guard let conn else { return }
        while simpleSent {
            if PQisBusy(conn) == 1 { return }
            if let r = PQgetResult(conn) {
                let status = PQresultStatus(r)
                if status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK {
                    simpleResults.append(PQResult(r))
                } else {
                    if simpleError == nil { simpleError = PQError.from(result: r) }
                    PQclear(r)
                }
                continue
            }
            simpleSent = false
            let (_, completion) = simpleQueue.removeFirst()
            let results = simpleResults
            let error = simpleError
            simpleResults = []
            simpleError = nil
            if let error { completion(.failure(error)) } else { completion(.success(results)) }
            guard state == .ready else { return }
            if !simpleSent { sendNextSimple() }
        }
    }

    // MARK: Failure and close

    private func fail(_ message: String) {
        guard state != .closed, !isFailed else { return }
        teardown()
        state = .failed(message)
        failPending(message)
        onStateChange?(state)
    }

    private var isFailed: Bool {
        if case .failed = state { return true }
        return false
    }

    private func failPending(_ message: String) {
        let notSent = PQError(kind: .unavailable, message: "database connection lost: \(message)")
        let unknown = PQError(
            kind: .outcomeUnknown,
            message: "database connection lost after the statement was sent; it may have committed: \(message)")
        let pending = Array(inFlight[inFlightHead...])
        inFlight = []
        inFlightHead = 0
        let simple = simpleQueue
        let simpleWasSent = simpleSent
        simpleQueue = []
        simpleSent = false
        // PostgreSQL runs the segments in order; after a FATAL error the backend exits unread.
        var sessionEnded = false
        for p in pending {
            if sessionEnded {
                p.completion(.failure(notSent))
            } else if let e = p.error, p.errorIsDefinite {
                sessionEnded = e.severity == "FATAL" || e.severity == "PANIC"
                p.completion(.failure(e))
            } else {
                p.completion(.failure(unknown))
            }
        }
        for (i, s) in simple.enumerated() {
            s.1(.failure(i == 0 && simpleWasSent ? unknown : notSent))
        }
    }

    private func teardown() {
        poll?.close()
        poll = nil
        if let conn { PQfinish(conn) }
        conn = nil
        prepared = [:]
    }

    /// Closes the connection; pending work fails with `.unavailable`, or `.outcomeUnknown` for what
    /// was already sent.
    public func close() {
        guard state != .closed else { return }
        teardown()
        state = .closed
        failPending("closed")
        onStateChange = nil
        onNotification = nil
    }
}

/// Calls `body` with a C array of NUL-terminated copies of `strings` (nil stays NULL).
func withCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    if strings.isEmpty { return body(nil) }
    var pointers: [UnsafePointer<CChar>?] = []
    pointers.reserveCapacity(strings.count)
    var owned: [UnsafeMutablePointer<CChar>] = []
    for s in strings {
        if let s {
            let p = strdup(s)!
            owned.append(p)
            pointers.append(UnsafePointer(p))
        } else {
            pointers.append(nil)
        }
    }
    defer { for p in owned { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}

extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.last, c.isWhitespace { s.removeLast() }
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        return String(s)
    }
}

#if canImport(Glibc)
    import Glibc
#endif
