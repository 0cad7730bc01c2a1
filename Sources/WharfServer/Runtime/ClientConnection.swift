import WharfCore
import WharfRPC
import WharfTLS
import WharfUV

/// One client's TCP connection: framing, decoding, dispatch, reply buffering and backpressure.
///
/// Replies are appended to `output` as calls finish (in any order) and written once per loop
/// iteration by the server's check handle. Reading stops while `maxInFlight` requests are unanswered
/// or while the peer leaves `maxWriteBufferBytes` of replies unread (`WriteBackpressure`); the framer
/// keeps what was already read. Events wait in a bounded `SubscriberQueue` and move to the output only
/// while the peer keeps up. `ConnectionDeadlines` ends a connection that does not authenticate, does
/// not finish a frame, takes none of its output, or idles. Every byte this connection holds is counted
/// in the server's buffer budget. Loop thread only.
final class ClientConnection {
    /// The socket, or TLS over it (`TLSStream`).
    let tcp: any ByteStream
    let session: Session
    /// The peer's numeric address, counted against the per-peer connection limit (nil: not counted).
    let peer: String?
    private unowned let server: Server
    private var framer: LineFramer
    private var output = JSONWriter(capacity: 4096)
    private var events: SubscriberQueue
    private var backpressure: WriteBackpressure
    private(set) var deadlines: ConnectionDeadlines
    private(set) var inFlight = 0
    private var pausedForInFlight = false
    /// Set when this connection used its share of a loop turn; the server resumes it next turn.
    private var pausedForTurn = false
    /// Requests taken in loop turn `turn`.
    private var takenThisTurn = 0
    private var turn: UInt64 = 0
    private var closeAfterFlush = false
    private(set) var isClosed = false
    /// Lines handed to the decoder so far (tells the frame clock that a frame ended).
    private var linesTaken = 0
    /// What this connection last added to `server.bufferedBytes`.
    private(set) var accountedBytes = 0
    var isDirty = false

    init(tcp: any ByteStream, session: Session, peer: String?, server: Server) {
        self.tcp = tcp
        self.session = session
        self.peer = peer
        self.server = server
        let limits = server.config.limits
        framer = LineFramer(maxFrame: limits.maxFrameBytes)
        events = SubscriberQueue(capacity: max(1, limits.maxSubscriberQueue))
        backpressure = WriteBackpressure(highWater: max(1, limits.maxWriteBufferBytes))
        deadlines = ConnectionDeadlines(
            settings: limits.deadlines, now: server.loop.nowMs, authenticated: session.role != nil)
    }

    func start() {
        tcp.setNoDelay()
        tcp.setKeepAlive(delaySeconds: 60)
        tcp.setHandlers(
            onRead: { [unowned self] bytes in self.received(bytes) },
            onEnd: { [unowned self] _ in self.close() })
        tcp.setWrittenHandler { [unowned self] in self.written() }
        if let tls = tcp as? TLSStream {
            deadlines.handshakeStarted()
            tls.onHandshake = { [unowned self] in self.handshakeFinished(tls) }
        }
        tcp.startReading()
    }

    /// Events dropped from this subscriber's queue so far.
    var eventsDropped: Int { events.droppedTotal }

    // MARK: Input

    private func received(_ bytes: UnsafeRawBufferPointer) {
        server.metrics.bytesReceived(bytes.count, .tcp)
        let before = linesTaken
        let outcome = framer.feed(bytes) { line in self.handleLine(line) }
        after(outcome)
        if tcp.isReading {
            deadlines.inputReceived(
                completedFrame: linesTaken != before, partialFrame: framer.bufferedCount > 0, now: server.loop.nowMs)
        } else {
            deadlines.inputReceived(completedFrame: true, partialFrame: false, now: server.loop.nowMs)
        }
        account()
    }

    private func after(_ outcome: LineFramer.Outcome) {
        switch outcome {
        case .ok:
            break
        case .paused:
            if inFlight >= server.config.limits.maxInFlight { pausedForInFlight = true }
            _ = backpressure.outputChanged(pendingBytes: writeBacklog)
            let heldBack = pausedForInFlight || backpressure.isPaused || closeAfterFlush || isClosed
            if !heldBack, !pausedForTurn, turnUsed {
                // Only the turn's share stops it: worth waiting a turn only if a whole request is
                // waiting (a client with one request at a time goes on reading at once).
                guard framer.hasCompleteLine else { return }
                pausedForTurn = true
                server.resumeNextTurn(self)
            }
            pauseReading()
        case .frameTooLarge:
            let max = server.config.limits.maxFrameBytes
            send(
                error: .limitExceeded("frame exceeds \(max) bytes; closing connection", limit: "frameBytes", max: max),
                id: .null)
            closeGracefully()
        }
    }

    /// Handles one line; returns false when no more requests should be taken for now.
    private func handleLine(_ line: UnsafeRawBufferPointer) -> Bool {
        guard !isClosed, !closeAfterFlush else { return false }
        linesTaken += 1
        if turn != server.turn {
            turn = server.turn
            takenThisTurn = 0
        }
        takenThisTurn += 1
        server.turnWorkStarting()
        switch RPCDecoder.decode(line, maxBatch: server.config.limits.maxBatch) {
        case .reject(let error):
            send(error: error, id: .null)
        case .single(.failure(let invalid)):
            send(error: invalid.error, id: invalid.id)
        case .single(.success(let request)):
            inFlight += 1
            // Held strongly until answered (a closed connection sends nothing): a weak reference would
            // give the connection a side table, and every retain and release of it the slow path.
            server.dispatch(request, session: session) { [self] result in
                if let id = request.id { send(result, id: id) }
                requestFinished()
            }
        case .batch(let items):
            takenThisTurn += items.count - 1
            handleBatch(items)
        }
        // libuv reads many chunks per iteration, so the backlog is checked per request, not per flush.
        return inFlight < server.config.limits.maxInFlight && backpressure.mayTakeRequest(pendingBytes: writeBacklog)
            && !turnUsed
    }

    /// This connection took its share of the turn, or the turn's time is spent.
    private var turnUsed: Bool { takenThisTurn >= Self.requestsPerTurn || server.turnExhausted }

    /// Requests one connection may start per loop turn. A pipelining peer's read holds a thousand
    /// requests or more; taking them all at once would make every other connection wait for them.
    /// Past this share (or once the turn's time is spent, after one request each) the connection
    /// waits for the next turn, after the loop has polled the others.
    static let requestsPerTurn = 64

    /// A new loop turn: take this connection's next share of requests.
    func turnStarted() {
        guard pausedForTurn else { return }
        pausedForTurn = false
        resumeReadingIfAllowed()
    }

    /// Reply bytes not yet taken by the peer: buffered here plus queued in libuv.
    private var writeBacklog: Int { output.bytes.count + tcp.queuedBytes }

    private func handleBatch(_ items: [Result<RPCRequest, RPCInvalid>]) {
        server.dispatchBatch(
            items, session: session, started: { inFlight += 1 }, finished: { [self] in requestFinished() }
        ) { [self] replies in
            if let replies { enqueue(replies) }
        }
    }

    private func requestFinished() {
        inFlight -= 1
        deadlines.requestFinished(now: server.loop.nowMs)
        if pausedForInFlight, inFlight <= server.config.limits.maxInFlight / 2, !isClosed {
            pausedForInFlight = false
            resumeReadingIfAllowed()
        }
    }

    private func pauseReading() {
        tcp.stopReading()
        deadlines.readingPaused()
    }

    /// Takes requests already buffered, then reads again, unless a limit still holds.
    private func resumeReadingIfAllowed() {
        guard !pausedForInFlight, !pausedForTurn, !backpressure.isPaused, !closeAfterFlush, !isClosed else { return }
        if framer.bufferedCount > 0 {
            let outcome = framer.drain { line in self.handleLine(line) }
            after(outcome)
            // `after` may have let a turn's pause go (nothing whole left to take): then read on.
            if pausedForInFlight || pausedForTurn || backpressure.isPaused || closeAfterFlush || isClosed { return }
        }
        tcp.startReading()
        deadlines.readingResumed(partialFrame: framer.bufferedCount > 0, now: server.loop.nowMs)
    }

    // MARK: Output

    static func reply(_ result: Result<JSON, RPCError>, id: JSON) -> JSON {
        switch result {
        case .success(let value): return ["jsonrpc": "2.0", "id": id, "result": value]
        case .failure(let error): return ["jsonrpc": "2.0", "id": id, "error": error.json]
        }
    }

    private func send(_ result: Result<JSON, RPCError>, id: JSON) {
        guard !isClosed else { return }
        switch result {
        case .success(let value): RPCEncoder.success(id: id, result: value, into: &output)
        case .failure(let error): RPCEncoder.failure(id: id, error: error, into: &output)
        }
        output.bytes.append(0x0A)
        markDirty()
    }

    private func send(error: RPCError, id: JSON) { send(.failure(error), id: id) }

    /// Queues a server-to-client message (a reply array or a connection-level error).
    func enqueue(_ message: JSON) {
        guard !isClosed else { return }
        output.write(message)
        output.bytes.append(0x0A)
        markDirty()
    }

    /// Queues one encoded event line (shared between subscribers); the oldest waiting event is dropped
    /// when this subscriber's queue is full.
    func enqueueEvent(_ line: [UInt8]) {
        guard !isClosed, !closeAfterFlush else { return }
        events.push(line)
        account()
        markDirty()
    }

    private func markDirty() {
        if !isDirty {
            isDirty = true
            server.markDirty(self)
        }
    }

    /// Unsent output under which waiting events move to the output. Above it they stay in the queue,
    /// where they can be dropped, rather than in the output, where they cannot.
    private var eventWindow: Int { min(backpressure.lowWater, 64 << 10) }

    /// Moves waiting events into the output while the peer keeps up; a gap marker stands where events
    /// were dropped.
    private func moveEvents() {
        while writeBacklog < eventWindow, let next = events.pop() {
            switch next {
            case .event(let line):
                output.bytes.append(contentsOf: line)
            case .gap(let count):
                output.write(Self.gapMarker(dropped: count, limit: events.capacity))
                output.bytes.append(0x0A)
            }
        }
    }

    /// The `events.dropped` event that replaces events this subscriber was too slow to take.
    static func gapMarker(dropped: Int, limit: Int) -> JSON {
        [
            "jsonrpc": "2.0", "method": "event",
            "params": [
                "type": "events.dropped", "at": .string(Timestamp.format(epochMs: Timestamp.nowMs())),
                "data": ["dropped": .from(dropped), "queueLimit": .from(limit)],
            ],
        ]
    }

    /// Writes everything buffered; called once per loop iteration.
    func flush() {
        isDirty = false
        guard !isClosed else { return }
        if !events.isEmpty { moveEvents() }
        if !output.bytes.isEmpty {
            server.metrics.bytesSent(output.bytes.count, .tcp)
            output.bytes.withUnsafeBytes { tcp.write($0) }
            output.bytes.removeAll(keepingCapacity: output.bytes.capacity <= 1 << 16)
        }
        // The kernel took what was moved: move more next turn (no write completes to say so).
        if !events.isEmpty, writeBacklog < eventWindow { markDirty() }
        outputChanged()
    }

    /// A queued write completed: the peer is reading.
    private func written() {
        if !events.isEmpty, writeBacklog < eventWindow { markDirty() }
        outputChanged()
    }

    /// Re-reads the output's state: the write clock, backpressure, a pending close, the accounting.
    private func outputChanged() {
        guard !isClosed else { return }
        deadlines.outputSampled(pendingBytes: tcp.queuedBytes, writtenBytes: tcp.writtenBytes, now: server.loop.nowMs)
        switch backpressure.outputChanged(pendingBytes: writeBacklog) {
        case .pauseReading?: pauseReading()
        case .resumeReading?: resumeReadingIfAllowed()
        case nil: break
        }
        if closeAfterFlush, output.bytes.isEmpty, tcp.queuedBytes == 0 { return close() }
        account()
    }

    /// Reports this connection's buffered bytes (output, queued writes, input, events) to the server.
    private func account() {
        let bytes = isClosed ? 0 : output.bytes.count + tcp.queuedBytes + framer.bufferedCount + events.byteCount
        if bytes != accountedBytes {
            server.bufferedBytesChanged(by: bytes - accountedBytes)
            accountedBytes = bytes
        }
    }

    // MARK: Deadlines

    /// Checks the connection's clocks (called by the server's sweeper); ends it when one ran out.
    func checkDeadlines(now: UInt64) {
        guard !isClosed else { return }
        if !deadlines.isAuthenticated, session.role != nil { deadlines.sessionAuthenticated() }
        deadlines.outputSampled(pendingBytes: tcp.queuedBytes, writtenBytes: tcp.writtenBytes, now: now)
        guard let expiry = deadlines.expired(now: now, busy: inFlight > 0 || !session.subscriptions.isEmpty) else {
            return
        }
        let limits = server.config.limits
        switch expiry {
        case .write:
            server.logger.info(
                "closing a connection that takes none of its output",
                metadata: [
                    "session": "\(session.id)", "peer": "\(peer ?? "?")", "unsentBytes": "\(tcp.queuedBytes)",
                    "writeTimeoutMs": "\(limits.writeTimeoutMs)",
                ])
            close()
        case .authentication:
            closeWithError(
                .limitExceeded(
                    "no session.hello within \(limits.authTimeoutMs) ms; closing connection", limit: "authTimeoutMs",
                    max: limits.authTimeoutMs, retryable: true))
        case .frame:
            closeWithError(
                .limitExceeded(
                    "frame not finished within \(limits.frameTimeoutMs) ms; closing connection",
                    limit: "frameTimeoutMs", max: limits.frameTimeoutMs, retryable: true))
        case .handshake:
            server.logger.debug(
                "closing a connection whose TLS handshake did not finish", metadata: ["peer": "\(peer ?? "?")"])
            close()
        case .idle:
            server.logger.debug("closing idle connection", metadata: ["session": "\(session.id)"])
            closeWithError(
                .limitExceeded("idle timeout", limit: "idleTimeoutMs", max: limits.idleTimeoutMs, retryable: true))
        }
    }

    /// Sends `error` (id null) and closes once it is written.
    func closeWithError(_ error: RPCError) {
        enqueue(Self.reply(.failure(error), id: .null))
        closeGracefully()
    }

    // MARK: Closing

    /// Closes at once; unanswered calls finish into nothing, and the session's close hooks run.
    func close() {
        guard !isClosed else { return }
        if let failure = (tcp as? TLSStream)?.failure {
            server.logger.debug("TLS connection failed", metadata: ["peer": "\(peer ?? "?")", "reason": "\(failure)"])
        }
        isClosed = true
        tcp.close()
        events.removeAll()
        account()
        session.closed()
        server.connectionClosed(self)
    }

    /// Closes after writing what is buffered (used for limits and shutdown); a peer that takes none of
    /// it for `closeLingerMs` is closed anyway.
    func closeGracefully() {
        guard !isClosed, !closeAfterFlush else { return }
        closeAfterFlush = true
        pauseReading()
        events.removeAll()
        deadlines.closingStarted(now: server.loop.nowMs)
        if output.bytes.isEmpty && tcp.queuedBytes == 0 { close() } else { markDirty() }
    }
}

extension ClientConnection {
    /// The TLS handshake finished: a verified client certificate whose name is mapped gets its role
    /// (as a token would in `session.hello`).
    fileprivate func handshakeFinished(_ tls: TLSStream) {
        deadlines.handshakeFinished()
        guard session.role == nil, let name = tls.session.verifiedPeerCommonName else { return }
        session.certificateName = name
        if let role = server.config.tls?.clientRoles[name] { session.role = role }
    }
}
