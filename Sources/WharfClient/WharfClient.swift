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
    /// One server address.
    public struct Address: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
        public var description: String { "\(host):\(port)" }
    }

    /// The replicas this client may use, in order: it connects to the current one and goes to the next
    /// when told to (`moveOn(from:)`), for example when that replica drains.
    public let addresses: [Address]
    /// The index in `addresses` of the replica the next connection goes to.
    private var at = 0
    public let token: String?
    public let clientName: String
    public let tls: TLSContext?
    private let lock = NSLock()
    private var fd: Int32 = -1
    /// TLS over `fd`, when `tls` is set.
    private var tlsSocket: TLSSocket?
    private var generation = 0
    private var nextID: Int64 = 0
    /// What to do with each call's reply, by id.
    private var waiting: [Int64: @Sendable (Result<JSON, Error>) -> Void] = [:]
    private var closed = false
    /// Called (on the reader thread) for each server-to-client notification.
    public var onNotification: (@Sendable (String, JSON?) -> Void)?

    public convenience init(
        host: String = "127.0.0.1", port: Int = 7411, token: String? = nil, clientName: String = "wharf-swift",
        tls: TLSContext? = nil
    ) {
        self.init(addresses: [Address(host: host, port: port)], token: token, clientName: clientName, tls: tls)
    }

    /// A client of several replicas of one deployment (one database): it uses the first address until
    /// `moveOn(from:)` sends it to the next.
    public init(addresses: [Address], token: String? = nil, clientName: String = "wharf-swift", tls: TLSContext? = nil)
    {
        precondition(!addresses.isEmpty, "a client needs an address")
        self.tls = tls
        self.addresses = addresses
        self.token = token
        self.clientName = clientName
    }

    /// The replica the client uses now (or connects to next).
    public var address: Address { lock.withLock { addresses[at] } }
    public var host: String { address.host }
    public var port: Int { address.port }

    /// Points the client at the next address when it is still at `from` (so that several callers told
    /// by one replica that it drains move the client once), and returns whether it moved. The current
    /// connection stays for the replies it owes (a draining replica closes it once it has answered); the
    /// next connection goes to the new address.
    @discardableResult
    public func moveOn(from: Address) -> Bool {
        lock.withLock {
            guard addresses.count > 1, addresses[at] == from else { return false }
            at = (at + 1) % addresses.count
            return true
        }
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Calls `method` and returns its result; throws `RPCError` for the server's errors and
    /// `ClientError` for transport failures.
    public func call(_ method: String, _ params: JSON? = nil) async throws -> JSON {
        try connectIfNeeded()
        return try await withCheckedThrowingContinuation { continuation in
            write([(method, params)]) { continuation.resume(with: $0[0]) }
        }
    }

    /// Sends `calls` as one JSON-RPC batch, in one write, and returns each call's outcome in order: its
    /// result, or the `RPCError` the server answered it with. A batch that cannot be sent throws
    /// (`ClientError`); a call whose reply is lost with the connection gets `ClientError.connectionClosed`.
    public func callBatch(_ calls: [(method: String, params: JSON?)]) async throws -> [Result<JSON, Error>] {
        if calls.isEmpty { return [] }
        try connectIfNeeded()
        let outcomes = try await withCheckedThrowingContinuation { continuation in
            write(calls) { continuation.resume(returning: $0) }
        }
        if case .failure(let e as ClientError) = outcomes[0] { throw e }
        return outcomes
    }

    /// Writes `calls` (as one request, or one batch when there are several) and calls `done` once with
    /// every outcome, in order, when the last reply came or the connection dropped.
    private func write(
        _ calls: [(method: String, params: JSON?)], done: @escaping @Sendable ([Result<JSON, Error>]) -> Void
    ) {
        let collected = BatchReplies(count: calls.count, done: done)
        lock.lock()
        guard fd >= 0 else {
            lock.unlock()
            collected.failAll(ClientError.connectionClosed)
            return
        }
        var w = JSONWriter()
        if calls.count > 1 { w.bytes.append(UInt8(ascii: "[")) }
        for (i, c) in calls.enumerated() {
            nextID += 1
            let id = nextID
            waiting[id] = { collected.set(i, $0) }
            if i > 0 { w.bytes.append(UInt8(ascii: ",")) }
            RPCEncoder.request(id: .int(id), method: c.method, params: c.params, into: &w)
        }
        if calls.count > 1 { w.bytes.append(UInt8(ascii: "]")) }
        w.bytes.append(0x0A)
        let ok = writeAll(w.bytes)
        if !ok { dropConnectionLocked() }
        lock.unlock()
    }

    /// Requests written so far (each call of a batch counts), the `session.hello` of each connection
    /// included.
    public var requestsSent: Int { lock.withLock { Int(nextID) } }

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
        let (host, port) = (addresses[at].host, addresses[at].port)
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
        for c in pending.values { c(.failure(ClientError.connectionClosed)) }
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
                for c in pending.values { c(.failure(error)) }
            }
            return
        }
        lock.lock()
        let continuation = waiting.removeValue(forKey: id)
        lock.unlock()
        guard let continuation else { return }
        if let error = message["error"] {
            continuation(.failure(RPCError(json: error) ?? ClientError.protocolViolation(error.text)))
        } else {
            continuation(.success(message["result"] ?? .null))
        }
    }
}

/// The outcomes of one batch of calls as their replies come, in any order; `done` gets them all, in
/// call order, with the last one.
private final class BatchReplies: @unchecked Sendable {  // guarded by `lock`
    private let lock = NSLock()
    private var outcomes: [Result<JSON, Error>?]
    private var left: Int
    private let done: @Sendable ([Result<JSON, Error>]) -> Void

    init(count: Int, done: @escaping @Sendable ([Result<JSON, Error>]) -> Void) {
        outcomes = Array(repeating: nil, count: count)
        left = count
        self.done = done
    }

    func set(_ i: Int, _ outcome: Result<JSON, Error>) {
        let all: [Result<JSON, Error>]? = lock.withLock {
            guard outcomes[i] == nil else { return nil }
            outcomes[i] = outcome
            left -= 1
            return left == 0 ? outcomes.map { $0! } : nil
        }
        if let all { done(all) }
    }

    func failAll(_ error: Error) {
        for i in outcomes.indices { set(i, .failure(error)) }
    }
}
