import WharfHTTP
import WharfRPC
import WharfTLS
import WharfUV

/// One HTTP/1.1 client connection: parsing, the replies in request order, and the limits.
///
/// Requests may be pipelined; each gets a slot in arrival order and the answered prefix is written
/// once per loop turn, so replies leave in request order whatever order they finish in. Reading stops
/// while `maxPipelined` requests are unanswered or the peer leaves `maxWriteBufferBytes` of replies
/// unread (`WriteBackpressure`), and the parser keeps what was already read. `ConnectionDeadlines` runs
/// the clocks: a request must be complete `requestTimeoutMs` after its first byte (else 408 and close),
/// output the peer does not take ends the connection, and so does idling. A request that breaks the
/// grammar or a limit gets its 4xx after the replies before it, then the connection closes. The
/// connection is the session of the JSON-RPC calls made over it with one credential, as a TCP
/// connection is: closing it runs the sessions' close hooks (a worker's leases go back). With TLS the
/// stream is a `TLSStream`: the handshake has the RPC port's deadline, and a verified client certificate
/// mapped by `--tls-client-role` is this connection's credential when a request has no token. Loop thread only.
final class HTTPConnection {
    /// The socket, or TLS over it (`TLSStream`).
    let tcp: any ByteStream
    /// The role of the verified client certificate (`--tls-client-role`), once the handshake finished.
    private(set) var certificateRole: Role?
    private(set) var certificateName: String?
    private unowned let service: HTTPService
    private let parser: HTTPRequestParser
    private(set) var deadlines: ConnectionDeadlines
    private var backpressure: WriteBackpressure
    private var slots: [Slot] = []
    /// Bytes of answered replies still waiting in `slots` for the ones before them.
    private var heldReplyBytes = 0
    private var slotsHead = 0
    private var output: [UInt8] = []
    /// No request after the current ones is taken (a `Connection: close`, a refusal, shutdown).
    private var finishing = false
    private var closeAfterFlush = false
    /// Set when this connection stopped for the turn's time budget; the server resumes it next turn.
    private var pausedForTurn = false
    /// A refusal is queued: the connection ends with it.
    private var refused = false
    private(set) var isClosed = false
    private var isDirty = false
    /// The sessions of this connection, by the credential presented ("" for none).
    private var sessions: [String: Session] = [:]
    /// The `GET /events` stream this connection answers with, once asked; it carries nothing else.
    private var stream: EventStream?
    /// The stream's response head is written: its messages follow.
    private var streaming = false
    /// The stream overflowed and its last message is in the output: the connection ends once it is
    /// written (or when the write timeout gives up on the peer).
    private var streamEnding = false

    /// Unread reply bytes past which an HTTP connection stops being read (see `init`).
    static let maxUnreadBytes = 256 << 10

    /// One request's place in the reply order.
    private final class Slot {
        var bytes: [UInt8]?
        var closes = false
        /// The bytes are an event stream's head: the stream's messages follow them.
        var opensStream = false
    }

    /// Unsent stream bytes under which queued messages move to the output (above it they wait in the
    /// stream's bounded queue, where a slow reader's backlog ends the stream rather than growing).
    static let streamWindow = 64 << 10

    init(tcp: any ByteStream, service: HTTPService) {
        self.tcp = tcp
        self.service = service
        let s = service.settings
        parser = HTTPRequestParser(limits: .init(maxHeaderBytes: s.maxHeaderBytes, maxBodyBytes: s.maxBodyBytes))
        // HTTP connections are not in the server's buffer budget (which closes stuck RPC connections), so
        // each holds less: at most 256 KiB of unread replies before it stops being read (a
        // single larger reply still goes whole; the kernel socket buffer holds more besides).
        backpressure = WriteBackpressure(
            highWater: max(1, min(service.limits.maxWriteBufferBytes, Self.maxUnreadBytes)))
        deadlines = ConnectionDeadlines(
            settings: .init(
                authTimeoutMs: 0, frameTimeoutMs: s.requestTimeoutMs, writeTimeoutMs: service.limits.writeTimeoutMs,
                idleTimeoutMs: s.idleTimeoutMs),
            now: service.nowMs, authenticated: true)
    }

    func start() {
        tcp.setNoDelay()
        tcp.setHandlers(
            onRead: { [unowned self] bytes in self.received(bytes) },
            onEnd: { [unowned self] _ in self.close() })
        tcp.setWrittenHandler { [unowned self] in self.outputChanged() }
        if let tls = tcp as? TLSStream {
            deadlines.handshakeStarted()
            tls.onHandshake = { [unowned self] in self.handshakeFinished(tls) }
        }
        tcp.startReading()
    }

    private func handshakeFinished(_ tls: TLSStream) {
        deadlines.handshakeFinished()
        guard let name = tls.session.verifiedPeerCommonName else { return }
        certificateName = name
        certificateRole = service.server.config.tls?.clientRoles[name]
    }

    /// Requests taken and not yet written.
    var unanswered: Int { slots.count - slotsHead }

    /// The session for calls made with `credential` on this connection, made on first use.
    func session(for credential: String, make: () -> Session) -> Session {
        if let s = sessions[credential] { return s }
        let s = make()
        sessions[credential] = s
        return s
    }

    /// Answers the request being taken (from `HTTPService.handle`, before it returns) with `stream`:
    /// a Server-Sent Events head, then its messages as they come, until either side closes.
    func openEventStream(_ stream: EventStream) {
        guard let slot = slots.last, slot.bytes == nil else {
            preconditionFailure("no request to answer with a stream")
        }
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
            + "X-Accel-Buffering: no\r\nConnection: close\r\n\r\n"
        slot.bytes = Array(head.utf8)
        slot.opensStream = true
        heldReplyBytes += slot.bytes!.count
        finishing = true
        self.stream = stream
        stream.onQueued = { [unowned self] in if self.streaming { self.markDirty() } }
        service.metrics.httpAnswered(refused: false)
        deadlines.requestFinished(now: service.nowMs)
        markDirty()
    }

    // MARK: Input

    private func received(_ bytes: UnsafeRawBufferPointer) {
        service.metrics.bytesReceived(bytes.count, .http)
        let before = slots.count
        after(parser.feed(bytes) { self.take($0) })
        if tcp.isReading {
            deadlines.inputReceived(
                completedFrame: slots.count != before, partialFrame: parser.inRequest, now: service.nowMs)
        }
    }

    /// Starts answering one request; returns false when no more may be taken for now.
    private func take(_ request: HTTPRequest) -> Bool {
        guard !finishing else { return false }
        service.server.turnWorkStarting()
        let slot = Slot()
        slots.append(slot)
        let closes = !request.keepAlive || service.draining
        let headOnly = request.method == "HEAD"
        if closes { finishing = true }
        // Held strongly until answered, as `ClientConnection` holds its own.
        service.handle(request, on: self) { [self] response in
            guard !isClosed else { return }
            var bytes: [UInt8] = []
            response.encode(into: &bytes, close: closes, headOnly: headOnly)
            slot.bytes = bytes
            slot.closes = closes
            self.heldReplyBytes += bytes.count
            self.service.metrics.httpAnswered(refused: false)
            self.deadlines.requestFinished(now: self.service.nowMs)
            self.markDirty()
        }
        guard !finishing, unanswered < service.settings.maxPipelined,
            backpressure.mayTakeRequest(pendingBytes: writeBacklog)
        else { return false }
        // The turn's time is spent (by this connection or others): continue after the loop polled the rest.
        if service.server.turnExhausted, !pausedForTurn {
            pausedForTurn = true
            service.server.resumeNextTurn(self)
            return false
        }
        return true
    }

    private func after(_ outcome: HTTPRequestParser.Outcome) {
        switch outcome {
        case .ok:
            break
        case .paused:
            pauseReading()
        case .failed(let failure):
            let (status, reason, message) = Self.refusal(failure)
            refuse(status: status, reason: reason, message)
        }
    }

    /// The reply to a request the parser refused.
    static func refusal(_ failure: HTTPRequestParser.Failure) -> (Int, String, String) {
        switch failure {
        case .malformed(let detail): (400, "malformed_request", "malformed HTTP request: \(detail)")
        case .headersTooLarge: (431, "headers_too_large", "request line and headers exceed the limit")
        case .bodyTooLarge: (413, "body_too_large", "request body exceeds the limit")
        case .lengthRequired: (411, "length_required", "a request body needs Content-Length or chunked encoding")
        }
    }

    /// Answers `status` after the replies already owed, then closes; nothing more is read.
    func refuse(status: Int, reason: String, _ message: String, extra: JSONObject = [:]) {
        guard !isClosed, !refused else { return }
        refused = true
        finishing = true
        pauseReading()
        let slot = Slot()
        var bytes: [UInt8] = []
        HTTPService.errorResponse(status: status, reason: reason, message, extra: extra).encode(
            into: &bytes, close: true)
        slot.bytes = bytes
        slot.closes = true
        heldReplyBytes += bytes.count
        slots.append(slot)
        service.metrics.httpAnswered(refused: true)
        markDirty()
    }

    private func pauseReading() {
        tcp.stopReading()
        deadlines.readingPaused()
    }

    /// Takes what the parser kept, then reads again, unless a limit still holds.
    private func resumeReadingIfAllowed() {
        guard !finishing, !isClosed, !pausedForTurn, !backpressure.isPaused,
            unanswered < service.settings.maxPipelined
        else { return }
        if parser.isPaused {
            after(parser.resume { self.take($0) })
            if parser.isPaused || finishing || isClosed { return }
        }
        tcp.startReading()
        deadlines.readingResumed(partialFrame: parser.inRequest, now: service.nowMs)
    }

    // MARK: Output

    /// Reply bytes the peer has not taken yet: held for their turn, buffered here, queued in libuv.
    private var writeBacklog: Int { heldReplyBytes + output.count + tcp.queuedBytes }

    private func markDirty() {
        guard !isDirty else { return }
        isDirty = true
        service.markDirty(self)
    }

    /// Writes the answered prefix of the slots; called once per loop turn.
    func flush() {
        isDirty = false
        guard !isClosed else { return }
        while slotsHead < slots.count, let bytes = slots[slotsHead].bytes {
            output.append(contentsOf: bytes)
            heldReplyBytes -= bytes.count
            // Written slots stay in the array until it is compacted; their bytes need not.
            slots[slotsHead].bytes = nil
            let closes = slots[slotsHead].closes
            let opensStream = slots[slotsHead].opensStream
            slotsHead += 1
            if opensStream {
                streaming = true
                // Read on only to hear the peer leave; what it sends is not requests any more.
                tcp.setHandlers(onRead: { _ in }, onEnd: { [unowned self] _ in self.close() })
                tcp.startReading()
                break
            }
            if closes {
                closeAfterFlush = true
                finishing = true
                break
            }
        }
        if slotsHead > 32, slotsHead * 2 > slots.count {
            slots.removeFirst(slotsHead)
            slotsHead = 0
        }
        if streaming, let stream { moveStream(stream) }
        if !output.isEmpty {
            service.metrics.bytesSent(output.count, .http)
            output.withUnsafeBytes { tcp.write($0) }
            output.removeAll(keepingCapacity: output.capacity <= 1 << 16)
        }
        outputChanged()
        if !closeAfterFlush { resumeReadingIfAllowed() }
    }

    /// Moves the stream's messages to the output while the peer keeps up; a stream whose queue
    /// overflowed gets, after what it holds, its last message, and the connection closes after it.
    private func moveStream(_ stream: EventStream) {
        guard !streamEnding else { return }
        while writeBacklog < Self.streamWindow, let message = stream.pop() { output.append(contentsOf: message) }
        if stream.overflowed, stream.isDrained {
            output.append(contentsOf: stream.droppedMessage)
            streamEnding = true
            service.server.events.closeStream(stream)
        }
    }

    private func outputChanged() {
        guard !isClosed else { return }
        if streamEnding, output.isEmpty, tcp.queuedBytes == 0 { return close() }
        if streaming, let stream, !streamEnding, !stream.closed, writeBacklog < Self.streamWindow,
            !stream.isDrained || stream.overflowed
        {
            markDirty()
        }
        deadlines.outputSampled(pendingBytes: tcp.queuedBytes, writtenBytes: tcp.writtenBytes, now: service.nowMs)
        switch backpressure.outputChanged(pendingBytes: writeBacklog) {
        case .pauseReading?: pauseReading()
        case .resumeReading?: resumeReadingIfAllowed()
        case nil: break
        }
        if closeAfterFlush, output.isEmpty, tcp.queuedBytes == 0 {
            close()
        } else if closeAfterFlush {
            deadlines.closingStarted(now: service.nowMs)
        }
    }

    // MARK: Deadlines and closing

    /// Checks the connection's clocks (the service's sweeper calls it); ends it when one ran out.
    func checkDeadlines(now: UInt64) {
        guard !isClosed else { return }
        deadlines.outputSampled(pendingBytes: tcp.queuedBytes, writtenBytes: tcp.writtenBytes, now: now)
        guard let expiry = deadlines.expired(now: now, busy: unanswered > 0 || stream != nil) else { return }
        switch expiry {
        case .frame:
            refuse(
                status: 408, reason: "request_timeout",
                "request not complete within \(service.settings.requestTimeoutMs) ms",
                extra: ["limit": "requestTimeoutMs", "max": .from(service.settings.requestTimeoutMs)])
        case .write, .idle, .authentication, .handshake:
            close()
        }
    }

    /// Stops taking requests and closes once the replies owed are written (shutdown).
    func finish() {
        finishing = true
        pauseReading()
        if unanswered == 0 { close() } else { markDirty() }
    }

    /// Closes at once; unanswered calls finish into nothing, and the sessions' close hooks run.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        tcp.close()
        if let stream { service.server.events.closeStream(stream) }
        for s in sessions.values { s.closed() }
        sessions = [:]
        service.connectionClosed(self)
    }
}

extension HTTPConnection: TurnSharing {
    /// A new loop turn: take the requests this connection stopped at.
    func turnStarted() {
        guard pausedForTurn else { return }
        pausedForTurn = false
        resumeReadingIfAllowed()
    }
}
