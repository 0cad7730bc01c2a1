import CLibUV
import Glibc

/// A listening TCP socket. Each accepted connection is handed to `onConnection`, already initialised
/// on the same loop; the callee owns it (and must close it).
public final class TCPListener: LoopHandle {
    private var onConnection: ((TCPConnection) -> Void)?
    unowned let loop: EventLoop

    public init(loop: EventLoop) throws {
        self.loop = loop
        super.init(byteCount: MemoryLayout<uv_tcp_t>.size)
        try uvCheck(uv_tcp_init(loop.loop, raw.assumingMemoryBound(to: uv_tcp_t.self)), "uv_tcp_init")
        register()
    }

    /// Binds to a numeric `host` and `port` (0 picks a free port) and starts listening.
    public func listen(
        host: String, port: Int, backlog: Int32 = 1024, _ onConnection: @escaping (TCPConnection) -> Void
    )
        throws
    {
        var storage = sockaddr_storage()
        try SocketAddress.fill(&storage, host: host, port: port)
        let tcp = raw.assumingMemoryBound(to: uv_tcp_t.self)
        _ = try withUnsafePointer(to: &storage) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try uvCheck(uv_tcp_bind(tcp, $0, 0), "bind \(host):\(port)")
            }
        }
        self.onConnection = onConnection
        try uvCheck(
            uv_listen(raw.assumingMemoryBound(to: uv_stream_t.self), backlog) { s, status in
                let listener = LoopHandle.owner(s, as: TCPListener.self)
                guard status == 0, let conn = try? TCPConnection(loop: listener.loop) else { return }
                if uv_accept(s, conn.stream) == 0 {
                    listener.onConnection?(conn)
                } else {
                    conn.close()
                }
            }, "listen \(host):\(port)")
    }

    /// The port actually bound (useful after binding port 0).
    public var port: Int {
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = uv_tcp_getsockname(raw.assumingMemoryBound(to: uv_tcp_t.self), $0, &len)
            }
        }
        if storage.ss_family == sa_family_t(AF_INET6) {
            return withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    Int(UInt16(bigEndian: $0.pointee.sin6_port))
                }
            }
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    override func willClose() { onConnection = nil }
}
