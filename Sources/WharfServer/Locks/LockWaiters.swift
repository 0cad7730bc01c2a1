/// This replica's waiters for locks: one line per name, ordered by each waiter's place in the durable
/// line (`wharf.lock_waiters.seq`), so the local order always agrees with the order the database enforces.
///
/// Pure bookkeeping with no I/O and no clock: the service reports what happened and gets back the one
/// waiter to retry, if any. Only a line's first waiter is ever retried, and never twice at once, so a
/// freed lock costs one attempt per replica rather than one per waiter. A wake-up that arrives while the
/// line cannot act on it (an acquire is still deciding whether to join, or the first waiter's retry is in
/// flight and may have read the lock before it was freed) is remembered and acted on when that finishes.
///
/// Every operation costs O(1) amortized whatever the length of a line (joining in `seq` order, leaving
/// from anywhere, finding the first), so ten thousand waiters on one name cost ten thousand times one.
struct LockWaiters<Waiter: AnyObject> {
    private struct Line {
        /// Places in the line, ascending from `head`. A place whose waiter left stays until it reaches the
        /// head or the array is compacted (when such places outnumber the waiters).
        var seqs: [Int64] = []
        var head = 0
        var waiters: [Int64: Waiter] = [:]
        /// Acquires that will join this line if refused, whose statement is still in flight.
        var joining = 0
        /// The first waiter's retry is in flight.
        var retrying = false
        /// A wake-up came while joining or retrying; retry once that is over.
        var missedWake = false

        var isEmpty: Bool { waiters.isEmpty && joining == 0 && !retrying }

        mutating func insert(_ seq: Int64, _ waiter: Waiter) {
            precondition(waiters.updateValue(waiter, forKey: seq) == nil, "place \(seq) queued twice")
            if head == seqs.count || seqs[seqs.count - 1] < seq {
                // Places come back in order but for statements that overlap: appending is the rule.
                seqs.append(seq)
            } else {
                var (lo, hi) = (head, seqs.count)
                while lo < hi {
                    let mid = (lo + hi) / 2
                    if seqs[mid] < seq { lo = mid + 1 } else { hi = mid }
                }
                seqs.insert(seq, at: lo)
            }
        }

        mutating func first() -> (seq: Int64, waiter: Waiter)? {
            while head < seqs.count {
                if let w = waiters[seqs[head]] { return (seqs[head], w) }
                head += 1
            }
            return nil
        }

        mutating func remove(_ seq: Int64) -> Bool {
            guard waiters.removeValue(forKey: seq) != nil else { return false }
            if waiters.isEmpty {
                seqs.removeAll(keepingCapacity: false)
                head = 0
            } else if seqs.count - head > 2 * waiters.count + 64 {
                seqs = seqs[head...].filter { waiters[$0] != nil }
                head = 0
            } else if head > 64 && head * 2 > seqs.count {
                seqs.removeFirst(head)
                head = 0
            }
            return true
        }
    }

    private var lines: [String: Line] = [:]

    /// Number of waiters queued here.
    private(set) var count = 0

    /// Every waiter queued here (the server drains: each is answered at once).
    var all: [Waiter] { lines.values.flatMap { $0.waiters.values } }

    /// Names with waiters queued here.
    var names: [String] { lines.compactMap { $0.value.waiters.isEmpty ? nil : $0.key } }

    func hasWaiters(_ name: String) -> Bool { !(lines[name]?.waiters.isEmpty ?? true) }

    /// Waiters queued for `name` here plus acquires that may join them: what the per-lock limit counts.
    func load(_ name: String) -> Int { lines[name].map { $0.waiters.count + $0.joining } ?? 0 }

    /// An acquire that joins the line when refused was sent to the database.
    mutating func joinStarted(_ name: String) { lines[name, default: Line()].joining += 1 }

    /// That acquire came back: `queued` is its place and itself when it joined the line (nil when it was
    /// granted, failed, or its caller left). Returns the waiter to retry now, if a wake-up was missed.
    mutating func joinFinished(_ name: String, queued: (seq: Int64, waiter: Waiter)?) -> Waiter? {
        guard lines[name] != nil else { preconditionFailure("joinFinished without joinStarted") }
        lines[name]!.joining -= 1
        if let queued {
            lines[name]!.insert(queued.seq, queued.waiter)
            count += 1
        }
        return takeMissedWake(name)
    }

    /// The lock may have become free. Returns the first waiter to retry, unless its retry is already in
    /// flight; the wake-up is also remembered while that retry or an acquire joining the line is in flight.
    mutating func woke(_ name: String) -> Waiter? {
        guard lines[name] != nil else { return nil }
        if lines[name]!.retrying || lines[name]!.joining > 0 { lines[name]!.missedWake = true }
        guard !lines[name]!.retrying, let first = lines[name]!.first() else { return nil }
        lines[name]!.retrying = true
        return first.waiter
    }

    /// The first waiter's retry came back (whatever happened to that waiter meanwhile). Returns the
    /// waiter to retry now, if a wake-up was missed while the retry was in flight and the retry did not
    /// take the lock (once it did, the wake-up is moot).
    mutating func retryFinished(_ name: String, granted: Bool) -> Waiter? {
        guard lines[name] != nil else { return nil }
        lines[name]!.retrying = false
        if granted { lines[name]!.missedWake = false }
        return takeMissedWake(name)
    }

    /// Removes the waiter at place `seq`: it was granted, gave up, or its connection closed.
    mutating func remove(_ name: String, seq: Int64) {
        guard lines[name] != nil, lines[name]!.remove(seq) else { return }
        count -= 1
        if lines[name]!.isEmpty { lines[name] = nil }
    }

    private mutating func takeMissedWake(_ name: String) -> Waiter? {
        guard let line = lines[name] else { return nil }
        if line.isEmpty {
            lines[name] = nil
            return nil
        }
        guard line.missedWake, !line.retrying else { return nil }
        lines[name]!.missedWake = false
        return woke(name)
    }
}
