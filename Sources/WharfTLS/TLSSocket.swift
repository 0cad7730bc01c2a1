import Glibc

/// A TLS session over a connected blocking socket, for command-line clients (blocking is fine there;
/// the server never uses this). The handshake runs in `init`.
public final class TLSSocket {
    public let fd: Int32
    public let session: TLSSession
    private var plaintext: [UInt8] = []

    /// Shakes hands over `fd` (already connected); throws `TLSError` when the server is not trusted or
    /// does not speak TLS.
    public init(fd: Int32, context: TLSContext, serverName: String?) throws {
        self.fd = fd
        session = try TLSSession(context: context, serverName: serverName)
        while true {
            let progress = session.handshake()
            try sendCiphertext()
            switch progress {
            case .done: return
            case .failed(let reason): throw TLSError(message: reason)
            case .wantMore:
                guard try receiveCiphertext() else {
                    throw TLSError(message: "TLS handshake failed: the server closed the connection")
                }
            }
        }
    }

    /// Encrypts and sends all of `bytes`.
    public func send(_ bytes: UnsafeRawBufferPointer) throws {
        var sendError: Error?
        let reason = session.write(bytes) {
            do { try sendCiphertext() } catch { sendError = error }
        }
        if let sendError { throw sendError }
        if let reason { throw TLSError(message: reason) }
    }

    /// Appends the next plaintext to `out`; returns false at the end of the stream. A socket error
    /// (a receive timeout: `EAGAIN`) throws `TLSSocket.SocketError` with errno.
    public func receive(into out: inout [UInt8]) throws -> Bool {
        while true {
            let before = out.count
            let end = session.readPlaintext(into: &out)
            try sendCiphertext()
            if out.count > before { return true }
            switch end {
            case .closed: return false
            case .failed(let reason): throw TLSError(message: reason)
            case .wantMore: if try !receiveCiphertext() { return false }
            }
        }
    }

    /// Decrypts `ciphertext` read from the socket by the caller (a reader thread that blocks in
    /// `recv` on its own), appending the plaintext to `out` and sending what the session must answer.
    /// Returns false once the peer sent close_notify. Callers serialise this with `send`.
    public func decrypt(_ ciphertext: UnsafeRawBufferPointer, into out: inout [UInt8]) throws -> Bool {
        session.feed(ciphertext)
        let end = session.readPlaintext(into: &out)
        try sendCiphertext()
        switch end {
        case .wantMore: return true
        case .closed: return false
        case .failed(let reason): throw TLSError(message: reason)
        }
    }

    public struct SocketError: Error, Sendable {
        public let errno: Int32
    }

    private func sendCiphertext() throws {
        var failed: Int32 = 0
        session.takeCiphertext { bytes in
            var offset = 0
            while offset < bytes.count, failed == 0 {
                let n = Glibc.send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                if n <= 0 { failed = errno == 0 ? EPIPE : errno } else { offset += n }
            }
        }
        if failed != 0 { throw SocketError(errno: failed) }
    }

    /// Reads one chunk from the socket into the session; false at EOF.
    private func receiveCiphertext() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n == 0 { return false }
        if n < 0 { throw SocketError(errno: errno) }
        chunk.withUnsafeBytes { session.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        return true
    }
}
