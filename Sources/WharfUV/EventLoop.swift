import CLibUV
import Foundation

/// One libuv loop and the thread that runs it.
///
/// Everything except `execute(_:)` must be called on the loop thread. `execute` may be called from any
/// thread: work is queued under a lock and drained by one `uv_async_t` (sends coalesce).
public final class EventLoop: @unchecked Sendable {  // guarded: `pending` by `lock`, the rest by the loop thread
    let loop: UnsafeMutablePointer<uv_loop_t>
    private let lock = NSLock()
    private var pending: [@Sendable () -> Void] = []
    private var waker: AsyncWake!
    /// A scratch buffer for reads: libuv calls alloc then read back to back on this thread.
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
    private var closed = false

    public init() throws {
        loop = .allocate(capacity: 1)
        try uvCheck(uv_loop_init(loop), "uv_loop_init")
        loop.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        waker = try AsyncWake(loop: self) { [unowned self] in self.drainPending() }
        waker.unref()
    }

    deinit {
        readBuffer.deallocate()
        loop.deallocate()
    }

    static func from(_ loop: UnsafeMutablePointer<uv_loop_t>?) -> EventLoop {
        Unmanaged<EventLoop>.fromOpaque(loop!.pointee.data).takeUnretainedValue()
    }

    /// Runs the loop on the calling thread until `stop()` or until nothing is left to wait for.
    public func run() {
        uv_run(loop, UV_RUN_DEFAULT)
    }

    /// Makes `run()` return after the current iteration.
    public func stop() { uv_stop(loop) }

    /// Closes every handle, runs the loop until their close callbacks ran, and closes the loop.
    /// Returns libuv's `uv_loop_close` result (0 when nothing was leaked).
    @discardableResult
    public func shutdown() -> Int32 {
        guard !closed else { return 0 }
        closed = true
        uv_walk(
            loop,
            { h, _ in
                guard let h, uv_is_closing(h) == 0, let data = h.pointee.data else { return }
                Unmanaged<LoopHandle>.fromOpaque(data).takeUnretainedValue().close()
            }, nil)
        uv_run(loop, UV_RUN_DEFAULT)
        return uv_loop_close(loop)
    }

    /// The loop's cached time in milliseconds (monotonic, updated once per iteration).
    public var nowMs: UInt64 { uv_now(loop) }

    /// A monotonic clock in nanoseconds, read now (`uv_hrtime`), for measuring work within one turn.
    public static var hrtimeNs: UInt64 { uv_hrtime() }

    /// Refreshes the cached time; for callers that measure within one iteration.
    public func updateTime() { uv_update_time(loop) }

    /// Runs `work` on the loop thread. Callable from any thread.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        lock.lock()
        pending.append(work)
        lock.unlock()
        waker.send()
    }

    private func drainPending() {
        lock.lock()
        let work = pending
        pending.removeAll(keepingCapacity: true)
        lock.unlock()
        for w in work { w() }
    }
}
