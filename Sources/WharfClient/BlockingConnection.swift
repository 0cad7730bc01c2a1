import Foundation
import WharfRPC
import WharfTLS

#if canImport(Glibc)
    import Glibc
#endif

/// Errors a client sees besides the server's JSON-RPC errors.
public enum ClientError: Error, CustomStringConvertible, Sendable {
    case connectFailed(String)
    case connectionClosed
    case timeout
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .connectFailed(let m): return "cannot connect: \(m)"
        case .connectionClosed: return "connection closed by the server"
        case .timeout: return "timed out waiting for a reply"
        case .protocolViolation(let m): return "unexpected reply: \(m)"
        }
    }
}

/// A plain blocking JSON-RPC connection over a POSIX socket, for command-line tools and tests.
///
/// Not thread-safe: use it from one thread at a time. `WharfClient` is the concurrent variant.
public final class BlockingConnection {
    private let fd: Int32
    /// TLS over `fd`, when connected with a context.
    private let tls: TLSSocket?
    private var buffer: [UInt8] = []
    private var nextID: Int64 = 0
    /// Server-to-client notifications received while waiting for replies.
    public private(set) var notifications: [JSON] = []

    /// Connects to `host:port`; with `tls`, shakes hands first and verifies the server's certificate
    /// against `host` (a name or an IP address).
    public init(host: String, port: Int, timeoutSeconds: Int = 30, tls context: TLSContext? = nil) throws {
        let fd = try Socket.connect(host: host, port: port)
        self.fd = fd
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        do {
            tls = try context.map { try TLSSocket(fd: fd, context: $0, serverName: host) }
        } catch {
            Glibc.close(fd)
            throw ClientError.connectFailed("\(host):\(port): \(error)")
        }
    }

    deinit { Glibc.close(fd) }

    /// Calls `method` and returns its result, or throws the server's `RPCError`.
    public func call(_ method: String, _ params: JSON? = nil) throws -> JSON {
        nextID += 1
        let id = JSON.int(nextID)
        var w = JSONWriter()
        RPCEncoder.request(id: id, method: method, params: params, into: &w)
        w.bytes.append(0x0A)
        try sendRaw(w.bytes)
        while true {
            let message = try readMessage()
            if message["id"] == id {
                if let error = message["error"] {
                    throw RPCError(json: error) ?? ClientError.protocolViolation(error.text)
                }
                return message["result"] ?? .null
            }
            // A connection-level error (id null) comes before a close: it is the answer.
            if message["id"] == .null, let error = message["error"] {
                throw RPCError(json: error) ?? ClientError.protocolViolation(error.text)
            }
            if message["method"] != nil && message["id"] == nil {
                notifications.append(message)
            }
        }
    }

    /// Sends bytes as they are (for protocol tests that need malformed input).
    public func sendRaw(_ bytes: [UInt8]) throws {
        if let tls {
            do { return try bytes.withUnsafeBytes { try tls.send($0) } } catch { throw ClientError.connectionClosed }
        }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n <= 0 { throw ClientError.connectionClosed }
            offset += n
        }
    }

    public func sendLine(_ text: String) throws { try sendRaw(Array((text + "\n").utf8)) }

    /// Reads the next line and returns it parsed (throws `connectionClosed` at EOF).
    public func readMessage() throws -> JSON {
        let line = try readLine()
        do {
            return try JSONParser.parse(line)
        } catch {
            throw ClientError.protocolViolation("\(error)")
        }
    }

    /// Reads the next raw line (without the newline).
    public func readLine() throws -> [UInt8] {
        while true {
            if let nl = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<nl])
                buffer.removeFirst(nl + 1)
                return line
            }
            if let tls {
                do {
                    guard try tls.receive(into: &buffer) else { throw ClientError.connectionClosed }
                } catch let e as TLSSocket.SocketError {
                    throw e.errno == EAGAIN || e.errno == EWOULDBLOCK
                        ? ClientError.timeout : ClientError.connectionClosed
                } catch let e as TLSError {
                    throw ClientError.protocolViolation("\(e)")
                }
                continue
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { throw ClientError.connectionClosed }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { throw ClientError.timeout }
                throw ClientError.connectionClosed
            }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// True when the server closed the connection (reads EOF within `timeoutMs`).
    public func isClosedByPeer(timeoutMs: Int32 = 2000) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMs) > 0 else { return false }
        // Drain what the server sent before closing; EOF or a reset means it closed.
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n == 0 { return true }
            if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
        }
    }
}

enum Socket {
    /// Connects a blocking TCP socket, resolving `host` with getaddrinfo (off any event loop).
    static func connect(host: String, port: Int) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = Int32(AF_UNSPEC)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw ClientError.connectFailed("\(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        var ai: UnsafeMutablePointer<addrinfo>? = first
        var lastError = "no address"
        while let a = ai {
            let fd = socket(a.pointee.ai_family, a.pointee.ai_socktype, a.pointee.ai_protocol)
            if fd >= 0 {
                if Glibc.connect(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 {
                    var one: Int32 = 1
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                    return fd
                }
                lastError = String(cString: strerror(errno))
                Glibc.close(fd)
            }
            ai = a.pointee.ai_next
        }
        throw ClientError.connectFailed("\(host):\(port): \(lastError)")
    }
}
