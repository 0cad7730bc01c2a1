import WharfRPC
import WharfUV

/// One client's TCP connection: framing, decoding, dispatch, reply buffering and backpressure.
///
/// Replies are appended to `output` as calls finish (in any order) and written once per loop
/// iteration by the server's check handle. Reading stops while `maxInFlight` requests are unanswered
/// or while more than `maxWriteBufferBytes` of replies wait for a peer that does not read; the
/// framer keeps what was already read. Loop thread only.
final class ClientConnection {
    let tcp: TCPConnection
    let session: Session
    private unowned let server: Server
    private var framer: LineFramer
    private var output = JSONWriter(capacity: 4096)
    private(set) var inFlight = 0
    private var pausedForInFlight = false
    private var pausedForWrites = false
    private var closeAfterFlush = false
    private(set) var isClosed = false
    private(set) var lastActivityMs: UInt64
    var isDirty = false

    init(tcp: TCPConnection, session: Session, server: Server) {
        self.tcp = tcp
        self.session = session
        self.server = server
        framer = LineFramer(maxFrame: server.config.limits.maxFrameBytes)
        lastActivityMs = server.loop.nowMs
    }

    func start() {
        tcp.setNoDelay()
        tcp.setHandlers(
            onRead: { [unowned self] bytes in self.received(bytes) },
            onEnd: { [unowned self] _ in self.close() })
        tcp.setDrainHandler { [unowned self] in self.writesDrained() }
        tcp.startReading()
    }

    var isIdle: Bool { inFlight == 0 && output.bytes.isEmpty }

    // MARK: Input

    private func received(_ bytes: UnsafeRawBufferPointer) {
        lastActivityMs = server.loop.nowMs
        let outcome = framer.feed(bytes) { line in self.handleLine(line) }
        after(outcome)
    }

    private func after(_ outcome: LineFramer.Outcome) {
        switch outcome {
        case .ok:
            break
        case .paused:
            if inFlight >= server.config.limits.maxInFlight { pausedForInFlight = true }
            if writeBacklog >= server.config.limits.maxWriteBufferBytes { pausedForWrites = true }
            tcp.stopReading()
        case .frameTooLarge:
            let max = server.config.limits.maxFrameBytes
            send(
                error: .limitExceeded("frame exceeds \(max) bytes; closing connection", limit: "frameBytes", max: max),
                id: .null)
            closeAfterFlush = true
            tcp.stopReading()
        }
    }

    /// Handles one line; returns false when no more requests should be taken for now.
    private func handleLine(_ line: UnsafeRawBufferPointer) -> Bool {
        guard !isClosed, !closeAfterFlush else { return false }
        switch RPCDecoder.decode(line, maxBatch: server.config.limits.maxBatch) {
        case .reject(let error):
            send(error: error, id: .null)
        case .single(.failure(let invalid)):
            send(error: invalid.error, id: invalid.id)
        case .single(.success(let request)):
            inFlight += 1
            server.dispatch(request, session: session) { [weak self] result in
                guard let self else { return }
                if let id = request.id { self.send(result, id: id) }
                self.requestFinished()
            }
        case .batch(let items):
            handleBatch(items)
        }
        // libuv reads many chunks per iteration, so the backlog is checked per request, not per flush.
        return inFlight < server.config.limits.maxInFlight && writeBacklog < server.config.limits.maxWriteBufferBytes
    }

    /// Reply bytes not yet taken by the peer: buffered here plus queued in libuv.
    private var writeBacklog: Int { output.bytes.count + tcp.queuedBytes }

    private func handleBatch(_ items: [Result<RPCRequest, RPCInvalid>]) {
        var replies: [JSON?] = Array(repeating: nil, count: items.count)
        var remaining = items.count
        func finishOne() {
            remaining -= 1
            guard remaining == 0, !isClosed else { return }
            let present = replies.compactMap { $0 }
            // A batch of notifications only gets no reply at all.
            if !present.isEmpty { enqueue(.array(present)) }
        }
        for (index, item) in items.enumerated() {
            switch item {
            case .failure(let invalid):
                replies[index] = Self.reply(.failure(invalid.error), id: invalid.id)
                finishOne()
            case .success(let request):
                inFlight += 1
                server.dispatch(request, session: session) { [weak self] result in
                    guard let self else { return }
                    if let id = request.id { replies[index] = Self.reply(result, id: id) }
                    finishOne()
                    self.requestFinished()
                }
            }
        }
    }

    private func requestFinished() {
        inFlight -= 1
        lastActivityMs = server.loop.nowMs
        if pausedForInFlight, inFlight <= server.config.limits.maxInFlight / 2, !isClosed {
            pausedForInFlight = false
            resumeReadingIfAllowed()
        }
    }

    /// Takes requests already buffered, then reads again, unless a limit still holds.
    private func resumeReadingIfAllowed() {
        guard !pausedForInFlight, !pausedForWrites, !closeAfterFlush, !isClosed else { return }
        if framer.bufferedCount > 0 {
            let outcome = framer.drain { line in self.handleLine(line) }
            after(outcome)
            if outcome != .ok { return }
        }
        tcp.startReading()
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

    /// Queues a server-to-client message (a reply array or a notification).
    func enqueue(_ message: JSON) {
        guard !isClosed else { return }
        output.write(message)
        output.bytes.append(0x0A)
        markDirty()
    }

    private func markDirty() {
        if !isDirty {
            isDirty = true
            server.markDirty(self)
        }
    }

    /// Writes everything buffered; called once per loop iteration.
    func flush() {
        isDirty = false
        guard !isClosed else { return }
        if !output.bytes.isEmpty {
            output.bytes.withUnsafeBytes { tcp.write($0) }
            output.bytes.removeAll(keepingCapacity: output.bytes.capacity <= 1 << 16)
        }
        if tcp.queuedBytes >= server.config.limits.maxWriteBufferBytes, !pausedForWrites {
            pausedForWrites = true
            tcp.stopReading()
        }
        if closeAfterFlush, tcp.queuedBytes == 0 { close() }
    }

    private func writesDrained() {
        if closeAfterFlush { return close() }
        if pausedForWrites, output.bytes.isEmpty {
            pausedForWrites = false
            resumeReadingIfAllowed()
        }
    }

    /// Closes at once; unanswered calls finish into nothing, and the session's close hooks run.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        tcp.close()
        session.closed()
        server.connectionClosed(self)
    }

    /// Closes after writing what is buffered (used for limits and shutdown).
    func closeGracefully() {
        closeAfterFlush = true
        tcp.stopReading()
        if output.bytes.isEmpty && tcp.queuedBytes == 0 { close() } else { markDirty() }
    }
}
