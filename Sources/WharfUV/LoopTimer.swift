import CLibUV

/// A `uv_timer_t`: calls back after a delay, optionally repeating.
public final class LoopTimer: LoopHandle {
    private var callback: (() -> Void)?

    public init(loop: EventLoop) throws {
        super.init(byteCount: MemoryLayout<uv_timer_t>.size)
        try uvCheck(uv_timer_init(loop.loop, raw.assumingMemoryBound(to: uv_timer_t.self)), "uv_timer_init")
        register()
    }

    private var timer: UnsafeMutablePointer<uv_timer_t> { raw.assumingMemoryBound(to: uv_timer_t.self) }

    /// (Re)starts the timer: `callback` runs after `timeoutMs`, then every `repeatMs` if non-zero.
    public func start(timeoutMs: UInt64, repeatMs: UInt64 = 0, _ callback: @escaping () -> Void) {
        guard !isClosing else { return }
        self.callback = callback
        uv_timer_start(
            timer,
            { t in
                LoopHandle.owner(t, as: LoopTimer.self).callback?()
            }, timeoutMs, repeatMs)
    }

    public func stop() {
        guard !isClosing else { return }
        uv_timer_stop(timer)
    }

    override func willClose() { callback = nil }
}

/// A `uv_check_t`: calls back once per loop iteration, after I/O was polled.
public final class Check: LoopHandle {
    private var callback: (() -> Void)?

    public init(loop: EventLoop) throws {
        super.init(byteCount: MemoryLayout<uv_check_t>.size)
        try uvCheck(uv_check_init(loop.loop, raw.assumingMemoryBound(to: uv_check_t.self)), "uv_check_init")
        register()
    }

    public func start(_ callback: @escaping () -> Void) {
        self.callback = callback
        uv_check_start(raw.assumingMemoryBound(to: uv_check_t.self)) { c in
            LoopHandle.owner(c, as: Check.self).callback?()
        }
    }

    override func willClose() { callback = nil }
}

/// A `uv_idle_t`: while started, the loop polls for I/O without blocking, so work queued outside the
/// I/O phase (from a timer, say) is flushed in the same iteration's check phase.
public final class Idle: LoopHandle {
    public private(set) var isActive = false

    public init(loop: EventLoop) throws {
        super.init(byteCount: MemoryLayout<uv_idle_t>.size)
        try uvCheck(uv_idle_init(loop.loop, raw.assumingMemoryBound(to: uv_idle_t.self)), "uv_idle_init")
        register()
    }

    public func start() {
        guard !isActive, !isClosing else { return }
        isActive = true
        uv_idle_start(raw.assumingMemoryBound(to: uv_idle_t.self)) { _ in }
    }

    public func stop() {
        guard isActive, !isClosing else { return }
        isActive = false
        uv_idle_stop(raw.assumingMemoryBound(to: uv_idle_t.self))
    }
}
