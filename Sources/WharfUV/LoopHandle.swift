import CLibUV

/// The owner of one libuv handle.
///
/// Each subclass allocates its handle's memory here, stores a retained reference to itself in
/// `handle.data` once the handle is initialised, and gets it back in the close callback, which is the
/// only place the memory is freed and the reference released. Only `close()` calls `uv_close`.
/// Every handle belongs to the loop thread; none of these types may be touched from another thread.
public class LoopHandle {
    let raw: UnsafeMutableRawPointer
    private var registered = false
    /// True once `close()` was called.
    public private(set) var isClosing = false
    /// Called once, from the close callback, after libuv let go of the handle.
    public var onClose: (() -> Void)?

    init(byteCount: Int) {
        raw = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
    }

    deinit {
        // Reached only when the handle was never initialised (a registered handle is retained by
        // libuv until its close callback, which frees the memory itself).
        if !registered { raw.deallocate() }
    }

    var handle: UnsafeMutablePointer<uv_handle_t> { raw.assumingMemoryBound(to: uv_handle_t.self) }

    /// Marks the handle initialised: from now on libuv holds a reference to `self` until closed.
    func register() {
        registered = true
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    static func owner<T: LoopHandle>(_ h: UnsafeMutableRawPointer?, as _: T.Type = T.self) -> T {
        let handle = h!.assumingMemoryBound(to: uv_handle_t.self)
        return Unmanaged<T>.fromOpaque(handle.pointee.data).takeUnretainedValue()
    }

    /// Closes the handle; `onClose` runs from libuv's close callback. Safe to call twice.
    public func close() {
        guard registered, !isClosing else { return }
        isClosing = true
        willClose()
        uv_close(handle) { h in
            let owner = Unmanaged<LoopHandle>.fromOpaque(h!.pointee.data).takeRetainedValue()
            owner.handle.pointee.data = nil
            let callback = owner.onClose
            owner.onClose = nil
            owner.raw.deallocate()
            callback?()
        }
    }

    /// Hook for subclasses to drop callbacks that could form reference cycles.
    func willClose() {}

    /// Keeps the loop from waiting on this handle alone (for background timers).
    public func unref() { uv_unref(handle) }
}
