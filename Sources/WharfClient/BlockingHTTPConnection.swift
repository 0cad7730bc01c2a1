import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A plain blocking HTTP/1.1 client connection to the server's HTTP side door (Protocol/http.md), kept
/// alive between requests: for `wharf top`, `wharf bench http` and the metrics scraper of `wharf bench
/// jobs`. It reads replies framed by `Content-Length`, which is how the server frames every reply.
///
/// Not thread-safe: use it from one thread at a time.
public final class BlockingHTTPConnection {
    private let fd: Int32
    private let host: String
    private var buffer: [UInt8] = []

    /// One reply.
    public struct Reply: Sendable {
        public var status: Int
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public init(host: String, port: Int, timeoutSeconds: Int = 30) throws {
        fd = try Socket.connect(host: host, port: port)
        self.host = host
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    /// Sends one request and reads its reply.
    public func request(
        _ method: String, _ path: String, body: [UInt8] = [], headers: [(String, String)] = []
    ) throws -> Reply {
        try send(Self.encode(method, path, host: host, body: body, headers: headers))
        return try readReply()
    }

    /// The bytes of one request (several can be sent back to back: pipelining).
    public static func encode(
        _ method: String, _ path: String, host: String, body: [UInt8] = [], headers: [(String, String)] = []
    ) -> [UInt8] {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    /// Writes `bytes` whole.
    public func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError.connectionClosed
            }
            sent += n
        }
    }

    /// Reads the next reply.
    public func readReply() throws -> Reply {
        let headerEnd: Int = try {
            while true {
                if let i = Self.find([13, 10, 13, 10], in: buffer) { return i }
                try fill()
            }
        }()
        let head = String(decoding: buffer[..<headerEnd], as: UTF8.self)
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else {
            throw ClientError.protocolViolation("bad status line: \(lines.first ?? "")")
        }
        var length = 0
        for line in lines.dropFirst() {
            let kv = line.split(separator: ":", maxSplits: 1)
            if kv.count == 2, kv[0].lowercased() == "content-length" {
                length = Int(kv[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        let start = headerEnd + 4
        while buffer.count < start + length { try fill() }
        let body = Array(buffer[start..<start + length])
        buffer.removeFirst(start + length)
        return Reply(status: status, body: body)
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: chunk[..<n])
                return
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw ClientError.timeout }
            throw ClientError.connectionClosed
        }
    }

    private static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        var i = 0
        while i <= hay.count - needle.count {
            if hay[i] == needle[0] && Array(hay[i..<i + needle.count]) == needle { return i }
            i += 1
        }
        return nil
    }
}
