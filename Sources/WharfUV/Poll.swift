import CLibUV

/// A `uv_poll_t` watching a file descriptor somebody else owns (libpq's socket).
///
/// The fd's owner must close this handle before it closes the fd.
public final class Poll: LoopHandle {
    public struct Events: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: Int32(UV_READABLE.rawValue))
        public static let writable = Events(rawValue: Int32(UV_WRITABLE.rawValue))
    }

    /// Status (0 or a negative libuv error) and the events that fired.
    private var callback: ((Int32, Events) -> Void)?
    public let fd: Int32
    public private(set) var events: Events = []

    public init(loop: EventLoop, fd: Int32) throws {
        self.fd = fd
        super.init(byteCount: MemoryLayout<uv_poll_t>.size)
        try uvCheck(uv_poll_init(loop.loop, raw.assumingMemoryBound(to: uv_poll_t.self), fd), "uv_poll_init")
        register()
    }

    public func setCallback(_ callback: @escaping (Int32, Events) -> Void) { self.callback = callback }

    /// Watches for `events`; a no-op when they are the ones already watched.
    public func watch(_ events: Events) {
        guard !isClosing, events != self.events else { return }
        self.events = events
        let p = raw.assumingMemoryBound(to: uv_poll_t.self)
        if events.isEmpty {
            uv_poll_stop(p)
            return
        }
        uv_poll_start(p, events.rawValue) { p, status, ev in
            LoopHandle.owner(p, as: Poll.self).callback?(status, Events(rawValue: ev))
        }
    }

    override func willClose() { callback = nil }
}
