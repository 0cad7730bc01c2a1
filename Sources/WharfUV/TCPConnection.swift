import CLibUV
import Glibc

/// One TCP stream (`uv_tcp_t`), accepted by a `TCPListener` or connected outward.
///
/// Writes try `uv_try_write` first and queue only what the kernel did not take; the queued bytes and
/// their `uv_write_t` live in one allocation freed by the write callback. `close()` cancels queued
/// writes (their callbacks run with `UV_ECANCELED` before the close callback).
public final class TCPConnection: LoopHandle {
    private var onRead: ((UnsafeRawBufferPointer) -> Void)?
    private var onEnd: ((UVError?) -> Void)?
    private var onDrain: (() -> Void)?
    private var onWritten: (() -> Void)?
    private var onConnect: ((UVError?) -> Void)?
    /// Bytes handed to libuv and not yet written.
    public private(set) var queuedBytes = 0
    /// Every byte ever passed to `write` that the kernel did not take at once.
    private var queuedTotal: UInt64 = 0
    public private(set) var isReading = false
    unowned let loop: EventLoop

    public init(loop: EventLoop) throws {
        self.loop = loop
        super.init(byteCount: MemoryLayout<uv_tcp_t>.size)
        try uvCheck(uv_tcp_init(loop.loop, tcp), "uv_tcp_init")
        register()
    }

    var tcp: UnsafeMutablePointer<uv_tcp_t> { raw.assumingMemoryBound(to: uv_tcp_t.self) }
    var stream: UnsafeMutablePointer<uv_stream_t> { raw.assumingMemoryBound(to: uv_stream_t.self) }

    public func setNoDelay() { uv_tcp_nodelay(tcp, 1) }

    /// Turns on TCP keep-alive probes after `delaySeconds` of silence, so a vanished peer is noticed.
    public func setKeepAlive(delaySeconds: UInt32) { uv_tcp_keepalive(tcp, 1, delaySeconds) }

    /// The peer's numeric address (`"127.0.0.1"`, `"::1"`), or nil when the socket has none.
    public var peerAddress: String? {
        guard !isClosing else { return nil }
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(tcp, $0, &len) }
        }
        guard rc == 0 else { return nil }
        var name = [CChar](repeating: 0, count: 64)
        let isIPv6 = storage.ss_family == sa_family_t(AF_INET6)
        let ok: Int32 = withUnsafePointer(to: &storage) { p in
            if isIPv6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_name($0, &name, name.count) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_name($0, &name, name.count) }
        }
        guard ok == 0 else { return nil }
        return String(cString: name)
    }

    /// Bytes of queued writes the kernel has taken so far: it grows while a peer reads, even in the
    /// middle of one large write, and stands still while the peer reads nothing.
    public var writtenBytes: UInt64 {
        isClosing ? queuedTotal : queuedTotal - UInt64(uv_stream_get_write_queue_size(stream))
    }

    /// Connects to `host:port` (a numeric address; names are not resolved here).
    public func connect(host: String, port: Int, _ done: @escaping (UVError?) -> Void) throws {
        var storage = sockaddr_storage()
        try SocketAddress.fill(&storage, host: host, port: port)
        onConnect = done
        let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { addr in
                uv_tcp_connect(req, tcp, addr) { req, status in
                    let conn = Unmanaged<TCPConnection>.fromOpaque(req!.pointee.data).takeUnretainedValue()
                    req!.deallocate()
                    let cb = conn.onConnect
                    conn.onConnect = nil
                    cb?(status < 0 ? UVError(code: status, call: "connect") : nil)
                }
            }
        }
        if rc < 0 {
            req.deallocate()
            onConnect = nil
            throw UVError(code: rc, call: "uv_tcp_connect")
        }
    }

    /// Sets what happens on incoming bytes and at end of stream (nil error = orderly EOF).
    public func setHandlers(onRead: @escaping (UnsafeRawBufferPointer) -> Void, onEnd: @escaping (UVError?) -> Void) {
        self.onRead = onRead
        self.onEnd = onEnd
    }

    /// Called whenever the queue of pending writes becomes empty.
    public func setDrainHandler(_ onDrain: @escaping () -> Void) { self.onDrain = onDrain }

    /// Called after each queued write completes (`queuedBytes` went down), before the drain handler.
    public func setWrittenHandler(_ onWritten: @escaping () -> Void) { self.onWritten = onWritten }

    public func startReading() {
        guard !isClosing, !isReading else { return }
        isReading = true
        uv_read_start(
            stream,
            { h, _, buf in
                let loop = EventLoop.from(h!.pointee.loop)
                buf!.pointee.base = loop.readBuffer.baseAddress!.assumingMemoryBound(to: CChar.self)
                buf!.pointee.len = loop.readBuffer.count
            },
            { s, nread, _ in
                let conn = LoopHandle.owner(s, as: TCPConnection.self)
                if nread > 0 {
                    conn.onRead?(UnsafeRawBufferPointer(start: conn.loop.readBuffer.baseAddress, count: nread))
                } else if nread < 0 {
                    let err = UVError(code: Int32(nread), call: "read")
                    conn.onEnd?(err.code == Int32(UV_EOF.rawValue) ? nil : err)
                }
            })
    }

    public func stopReading() {
        guard !isClosing, isReading else { return }
        isReading = false
        uv_read_stop(stream)
    }

    /// Writes `bytes`; what the kernel does not take now is queued and written as the socket allows.
    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard !isClosing, bytes.count > 0 else { return }
        var offset = 0
        if queuedBytes == 0 {
            var buf = uv_buf_t(
                base: UnsafeMutablePointer(mutating: bytes.baseAddress!.assumingMemoryBound(to: CChar.self)),
                len: bytes.count)
            let n = uv_try_write(stream, &buf, 1)
            if n == bytes.count { return }
            if n > 0 { offset = Int(n) }
            // EAGAIN (or any error) falls through to a queued write, which reports real errors.
        }
        let remaining = bytes.count - offset
        let headerSize = (MemoryLayout<uv_write_t>.size + 15) & ~15
        let block = UnsafeMutableRawPointer.allocate(byteCount: headerSize + remaining, alignment: 16)
        let req = block.bindMemory(to: uv_write_t.self, capacity: 1)
        let data = block + headerSize
        data.copyMemory(from: bytes.baseAddress! + offset, byteCount: remaining)
        var buf = uv_buf_t(base: data.assumingMemoryBound(to: CChar.self), len: remaining)
        req.pointee.data = UnsafeMutableRawPointer(bitPattern: remaining)
        queuedBytes += remaining
        let rc = uv_write(req, stream, &buf, 1) { req, _ in
            let count = Int(bitPattern: req!.pointee.data)
            let conn = LoopHandle.owner(req!.pointee.handle, as: TCPConnection.self)
            UnsafeMutableRawPointer(req!).deallocate()
            conn.queuedBytes -= count
            guard !conn.isClosing else { return }
            conn.onWritten?()
            if conn.queuedBytes == 0 { conn.onDrain?() }
        }
        if rc < 0 {
            queuedBytes -= remaining
            block.deallocate()
        } else {
            queuedTotal += UInt64(remaining)
        }
    }

    public func write(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { write($0) }
    }

    override func willClose() {
        onRead = nil
        onEnd = nil
        onConnect = nil
        // onDrain stays nil'd too: queued writes are cancelled and nobody waits for them.
        onDrain = nil
        onWritten = nil
    }
}

/// Socket address parsing for numeric IPv4/IPv6 hosts.
public enum SocketAddress {
    public static func fill(_ storage: inout sockaddr_storage, host: String, port: Int) throws {
        let rc: Int32 = withUnsafeMutablePointer(to: &storage) { p in
            if host.contains(":") {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(host, Int32(port), $0) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(host, Int32(port), $0) }
        }
        try uvCheck(rc, "address \(host):\(port)")
    }
}
