import WharfUV

/// TLS between a `TCPConnection` and its reader/writer: the owner sees a `ByteStream` of plaintext.
///
/// Ciphertext read from the socket goes into the session's read BIO and the plaintext it yields goes
/// up in one `onRead` per socket read (so a reader that pauses keeps `TCPConnection`'s bound on what
/// one read delivers); plaintext written goes through the session and its ciphertext is written to the
/// socket by `TCPConnection.write`, whose queue `queuedBytes` reports. The handshake runs as bytes
/// arrive, never blocking the loop; plaintext written before it finishes waits here. Adopting it is
/// wrapping the accepted (or connected) `TCPConnection`: `TLSStream(tcp: tcp, session: ...)`.
/// Loop thread only; `close()` closes the socket.
public final class TLSStream: ByteStream {
    public let tcp: TCPConnection
    public let session: TLSSession
    private var onRead: ((UnsafeRawBufferPointer) -> Void)?
    private var onEnd: ((UVError?) -> Void)?
    /// Runs once when the handshake finished, before any plaintext goes up.
    public var onHandshake: (() -> Void)?
    /// Plaintext written before the handshake finished.
    private var early: [UInt8] = []
    private var plaintext: [UInt8] = []
    private var sawInput = false
    private var wantsReading = false
    private var ended = false
    /// Why the stream failed (handshake, decryption, a plaintext peer), for logs.
    public private(set) var failure: String?
    /// Server only: sent as is, then the stream ends, when the peer's first byte cannot start a TLS
    /// record (a plaintext client on a TLS port): a clear answer instead of a handshake alert.
    private let plaintextRefusal: [UInt8]?

    public init(tcp: TCPConnection, session: TLSSession, plaintextRefusal: [UInt8]? = nil) {
        self.tcp = tcp
        self.session = session
        self.plaintextRefusal = plaintextRefusal
    }

    public var isHandshakeDone: Bool { session.isHandshakeDone }

    // MARK: ByteStream

    public var queuedBytes: Int { tcp.queuedBytes + early.count }
    public var writtenBytes: UInt64 { tcp.writtenBytes }
    public var isReading: Bool { wantsReading }
    public var isClosing: Bool { tcp.isClosing }
    public var peerAddress: String? { tcp.peerAddress }
    public func setNoDelay() { tcp.setNoDelay() }
    public func setKeepAlive(delaySeconds: UInt32) { tcp.setKeepAlive(delaySeconds: delaySeconds) }
    public func setWrittenHandler(_ onWritten: @escaping () -> Void) { tcp.setWrittenHandler(onWritten) }
    public func startReading() {
        wantsReading = true
        tcp.startReading()
    }

    /// Stops reading once the handshake is done: until then the socket is read anyway, so that output
    /// written before the handshake (a refusal before a close) can reach the peer.
    public func stopReading() {
        wantsReading = false
        if session.isHandshakeDone { tcp.stopReading() }
    }

    public func setHandlers(onRead: @escaping (UnsafeRawBufferPointer) -> Void, onEnd: @escaping (UVError?) -> Void) {
        self.onRead = onRead
        self.onEnd = onEnd
        tcp.setHandlers(
            onRead: { [unowned self] bytes in self.received(bytes) },
            onEnd: { [unowned self] error in self.end(error) })
    }

    /// Client side: sends the ClientHello (call once connected, after `setHandlers`).
    public func startHandshake() {
        advanceHandshake()
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard !tcp.isClosing, !ended, bytes.count > 0 else { return }
        guard session.isHandshakeDone else {
            early.append(contentsOf: bytes)
            return
        }
        if let reason = session.write(bytes, flush: flushCiphertext) { fail(reason) }
    }

    public func close() {
        guard !tcp.isClosing else { return }
        onRead = nil
        onEnd = nil
        onHandshake = nil
        if !ended {
            session.shutdown()
            flushCiphertext()
        }
        tcp.close()
    }

    // MARK: Input

    private func received(_ bytes: UnsafeRawBufferPointer) {
        guard !ended else { return }
        if !sawInput {
            sawInput = true
            // Every TLS connection opens with a handshake record (content type 22).
            if let refusal = plaintextRefusal, bytes.first != 0x16 {
                refusal.withUnsafeBytes { tcp.write($0) }
                return fail("not TLS: the peer spoke plaintext to a TLS port")
            }
        }
        session.feed(bytes)
        if !session.isHandshakeDone {
            advanceHandshake()
            guard session.isHandshakeDone, !ended else { return }
        }
        plaintext.removeAll(keepingCapacity: plaintext.capacity <= 1 << 17)
        let outcome = session.readPlaintext(into: &plaintext)
        flushCiphertext()
        if !plaintext.isEmpty { plaintext.withUnsafeBytes { onRead?($0) } }
        switch outcome {
        case .wantMore: break
        case .closed: end(nil)
        case .failed(let reason): fail(reason)
        }
    }

    private func advanceHandshake() {
        let progress = session.handshake()
        flushCiphertext()
        switch progress {
        case .wantMore:
            break
        case .failed(let reason):
            fail(reason)
        case .done:
            if !wantsReading { tcp.stopReading() }
            onHandshake?()
            if !early.isEmpty, !ended {
                let pending = early
                early = []
                pending.withUnsafeBytes { write($0) }
            }
        }
    }

    private func flushCiphertext() {
        session.takeCiphertext { tcp.write($0) }
    }

    private func fail(_ reason: String) {
        failure = reason
        end(.protocolError(reason))
    }

    private func end(_ error: UVError?) {
        guard !ended else { return }
        ended = true
        let callback = onEnd
        onEnd = nil
        callback?(error)
    }
}
