import CLibUV
import Glibc

/// A `uv_async_t`: the one way another thread wakes the loop. Several `send()`s may coalesce into one
/// callback.
public final class AsyncWake: LoopHandle, @unchecked Sendable {  // only send() is called off the loop thread
    private var callback: (() -> Void)?

    public init(loop: EventLoop, _ callback: @escaping () -> Void) throws {
        self.callback = callback
        super.init(byteCount: MemoryLayout<uv_async_t>.size)
        try uvCheck(
            uv_async_init(loop.loop, raw.assumingMemoryBound(to: uv_async_t.self)) { a in
                LoopHandle.owner(a, as: AsyncWake.self).callback?()
            }, "uv_async_init")
        register()
    }

    /// Wakes the loop. Callable from any thread.
    public func send() { uv_async_send(raw.assumingMemoryBound(to: uv_async_t.self)) }

    override func willClose() { callback = nil }
}

/// A `uv_signal_t`: calls back on the loop thread when the process receives a signal.
public final class SignalWatcher: LoopHandle {
    private var callback: ((Int32) -> Void)?

    public init(loop: EventLoop) throws {
        super.init(byteCount: MemoryLayout<uv_signal_t>.size)
        try uvCheck(uv_signal_init(loop.loop, raw.assumingMemoryBound(to: uv_signal_t.self)), "uv_signal_init")
        register()
    }

    public func start(signal: Int32, _ callback: @escaping (Int32) -> Void) throws {
        self.callback = callback
        // A parent may have started us with the signal blocked (masks are inherited across exec);
        // libuv only sees signals that reach some thread, so the loop thread unblocks it.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        try uvCheck(
            uv_signal_start(
                raw.assumingMemoryBound(to: uv_signal_t.self),
                { s, signum in
                    LoopHandle.owner(s, as: SignalWatcher.self).callback?(signum)
                }, signal), "uv_signal_start")
    }

    override func willClose() { callback = nil }
}
