import Foundation
import WharfRPC
import WharfTLS

#if canImport(Glibc)
    import Glibc
#endif

/// An async JSON-RPC client for a Wharf server: many calls in flight on one connection.
///
/// Requests are written as they are made and replies are matched by id by a reader thread, so
/// concurrent tasks share the connection (pipelining). When the connection drops, calls in flight
/// fail with `ClientError.connectionClosed` and the next call reconnects (presenting the token again).
/// With `tls`, each connection shakes hands first (blocking, in the call that connects) and the TLS
/// session is used under `lock` by writers and by the reader thread alike.
public final class WharfClient: @unchecked Sendable {  // mutable state guarded by `lock`
    public let host: String
    public let port: Int
    public let token: String?
    public let clientName: String
    public let tls: TLSContext?
    private let lock = NSLock()
    private var fd: Int32 = -1
    /// TLS over `fd`, when `tls` is set.
    private var tlsSocket: TLSSocket?
    private var generation = 0
    private var nextID: Int64 = 0
    private var waiting: [Int64: CheckedContinuation<JSON, Error>] = [:]
    private var closed = false
    /// Called (on the reader thread) for each server-to-client notification.
    public var onNotification: (@Sendable (String, JSON?) -> Void)?

    public init(
        host: String = "127.0.0.1", port: Int = 7411, token: String? = nil, clientName: String = "wharf-swift",
        tls: TLSContext? = nil
    ) {
        self.tls = tls
        self.host = host
        self.port = port
        self.token = token
        self.clientName = clientName
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Calls `method` and returns its result; throws `RPCError` for the server's errors and
    /// `ClientError` for transport failures.
    public func call(_ method: String, _ params: JSON? = nil) async throws -> JSON {
        try connectIfNeeded()
        return try await withCheckedThrowingContinuation { continuation in
            lock.lock()
            guard fd >= 0 else {
                lock.unlock()
                continuation.resume(throwing: ClientError.connectionClosed)
                return
            }
            nextID += 1
            let id = nextID
            waiting[id] = continuation
            var w = JSONWriter()
            RPCEncoder.request(id: .int(id), method: method, params: params, into: &w)
            w.bytes.append(0x0A)
            let ok = writeAll(w.bytes)
            if !ok { dropConnectionLocked() }
            lock.unlock()
        }
    }

    /// Closes the connection; calls in flight fail.
    public func close() {
        lock.lock()
        closed = true
        dropConnectionLocked()
        lock.unlock()
    }

    private func connectIfNeeded() throws {
        lock.lock()
        if closed {
            lock.unlock()
            throw ClientError.connectionClosed
        }
        if fd >= 0 {
            lock.unlock()
            return
        }
        let newFD: Int32
        do {
            newFD = try Socket.connect(host: host, port: port)
        } catch {
            lock.unlock()
            throw error
        }
        if let tls {
            do {
                tlsSocket = try TLSSocket(fd: newFD, context: tls, serverName: host)
            } catch {
                Glibc.close(newFD)
                lock.unlock()
                throw ClientError.connectFailed("\(host):\(port): \(error)")
            }
        }
        fd = newFD
        generation += 1
        let gen = generation
        // The hello goes first on the new connection, before any call can be written.
        var hello: JSONObject = ["client": .string(clientName)]
        if let token { hello["token"] = .string(token) }
        nextID += 1
        var w = JSONWriter()
        RPCEncoder.request(id: .int(-nextID), method: "session.hello", params: .object(hello), into: &w)
        w.bytes.append(0x0A)
        _ = writeAll(w.bytes)
        lock.unlock()
        let t = Thread { [self] in readLoop(fd: newFD, generation: gen) }
        t.start()
    }

    /// Writes all bytes; caller holds the lock.
    private func writeAll(_ bytes: [UInt8]) -> Bool {
        if let tlsSocket { return (try? bytes.withUnsafeBytes { try tlsSocket.send($0) }) != nil }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n <= 0 {
                if n < 0 && errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    /// Fails every waiting call and forgets the socket; caller holds the lock.
    private func dropConnectionLocked() {
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            Glibc.close(fd)
            fd = -1
            tlsSocket = nil
        }
        let pending = waiting
        waiting = [:]
        for c in pending.values { c.resume(throwing: ClientError.connectionClosed) }
    }

    private func readLoop(fd: Int32, generation gen: Int) {
        var framer = LineFramer(maxFrame: 64 << 20)
        var chunk = [UInt8](repeating: 0, count: 65536)
        var plaintext: [UInt8] = []
        func take(_ bytes: UnsafeRawBufferPointer) {
            _ = framer.feed(bytes) { line in
                dispatch(line)
                return true
            }
        }
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            guard tls != nil else {
                chunk.withUnsafeBytes { take(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                continue
            }
            // The session is shared with writers: decrypt under the lock, dispatch outside it.
            plaintext.removeAll(keepingCapacity: true)
            lock.lock()
            let session = generation == gen ? tlsSocket : nil
            let open = chunk.withUnsafeBytes { raw in
                (try? session?.decrypt(UnsafeRawBufferPointer(rebasing: raw[0..<n]), into: &plaintext)) ?? false
            }
            lock.unlock()
            plaintext.withUnsafeBytes { take($0) }
            if !open { break }
        }
        lock.lock()
        if generation == gen && self.fd == fd { dropConnectionLocked() }
        lock.unlock()
    }

    private func dispatch(_ line: UnsafeRawBufferPointer) {
        guard let message = try? JSONParser.parse(line) else { return }
        if case .array(let items) = message {
            for item in items { dispatchOne(item) }
        } else {
            dispatchOne(message)
        }
    }

    private func dispatchOne(_ message: JSON) {
        guard let id = message["id"]?.intValue else {
            if let method = message["method"]?.stringValue { onNotification?(method, message["params"]) }
            return
        }
        if id < 0 {
            // Our own session.hello: a refused token fails everything that follows.
            if let error = message["error"].flatMap(RPCError.init(json:)) {
                lock.lock()
                let pending = waiting
                waiting = [:]
                lock.unlock()
                for c in pending.values { c.resume(throwing: error) }
            }
            return
        }
        lock.lock()
        let continuation = waiting.removeValue(forKey: id)
        lock.unlock()
        guard let continuation else { return }
        if let error = message["error"] {
            continuation.resume(throwing: RPCError(json: error) ?? ClientError.protocolViolation(error.text))
        } else {
            continuation.resume(returning: message["result"] ?? .null)
        }
    }
}
