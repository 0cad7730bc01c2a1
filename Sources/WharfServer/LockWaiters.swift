/// This replica's waiters for locks: one line per name, ordered by each waiter's place in the durable
/// line (`wharf.lock_waiters.seq`), so the local order always agrees with the order the database enforces.
///
/// Pure bookkeeping with no I/O and no clock: the service reports what happened and gets back the one
/// waiter to retry, if any. Only a line's first waiter is ever retried, and never twice at once, so a
/// freed lock costs one attempt per replica rather than one per waiter. A wake-up that arrives while the
/// line cannot act on it (an acquire is still deciding whether to join, or the first waiter's retry is in
/// flight and may have read the lock before it was freed) is remembered and acted on when that finishes.
struct LockWaiters<Waiter: AnyObject> {
    private struct Line {
        var queued: [(seq: Int64, waiter: Waiter)] = []
        /// Acquires that will join this line if refused, whose statement is still in flight.
        var joining = 0
        /// The first waiter's retry is in flight.
        var retrying = false
        /// A wake-up came while joining or retrying; retry once that is over.
        var missedWake = false

        var isEmpty: Bool { queued.isEmpty && joining == 0 && !retrying }
    }

    private var lines: [String: Line] = [:]

    /// Names with waiters queued here.
    var names: [String] { lines.compactMap { $0.value.queued.isEmpty ? nil : $0.key } }

    /// Number of waiters queued here.
    var count: Int { lines.values.reduce(0) { $0 + $1.queued.count } }

    func hasWaiters(_ name: String) -> Bool { !(lines[name]?.queued.isEmpty ?? true) }

    /// An acquire that joins the line when refused was sent to the database.
    mutating func joinStarted(_ name: String) { lines[name, default: Line()].joining += 1 }

    /// That acquire came back: `queued` is its place and itself when it joined the line (nil when it was
    /// granted, failed, or its caller left). Returns the waiter to retry now, if a wake-up was missed.
    mutating func joinFinished(_ name: String, queued: (seq: Int64, waiter: Waiter)?) -> Waiter? {
        guard var line = lines[name] else { preconditionFailure("joinFinished without joinStarted") }
        line.joining -= 1
        if let queued {
            let index = line.queued.firstIndex { $0.seq > queued.seq } ?? line.queued.count
            line.queued.insert(queued, at: index)
        }
        lines[name] = line
        return takeMissedWake(name)
    }

    /// The lock may have become free. Returns the first waiter to retry, unless its retry is already in
    /// flight; the wake-up is also remembered while that retry or an acquire joining the line is in flight.
    mutating func woke(_ name: String) -> Waiter? {
        guard var line = lines[name] else { return nil }
        if line.retrying || line.joining > 0 { line.missedWake = true }
        var retry: Waiter?
        if !line.retrying, let first = line.queued.first {
            line.retrying = true
            retry = first.waiter
        }
        lines[name] = line
        return retry
    }

    /// The first waiter's retry came back (whatever happened to that waiter meanwhile). Returns the
    /// waiter to retry now, if a wake-up was missed while the retry was in flight and the retry did not
    /// take the lock (once it did, the wake-up is moot).
    mutating func retryFinished(_ name: String, granted: Bool) -> Waiter? {
        guard var line = lines[name] else { return nil }
        line.retrying = false
        if granted { line.missedWake = false }
        lines[name] = line
        return takeMissedWake(name)
    }

    /// Removes a waiter: it was granted, gave up, or its connection closed.
    mutating func remove(_ name: String, _ waiter: Waiter) {
        guard var line = lines[name] else { return }
        line.queued.removeAll { $0.waiter === waiter }
        if line.isEmpty { lines[name] = nil } else { lines[name] = line }
    }

    private mutating func takeMissedWake(_ name: String) -> Waiter? {
        guard var line = lines[name] else { return nil }
        if line.isEmpty {
            lines[name] = nil
            return nil
        }
        guard line.missedWake, !line.retrying else { return nil }
        line.missedWake = false
        lines[name] = line
        return woke(name)
    }
}
