/// The leases this replica granted or renewed, one per name, and when each would lapse: what the
/// service's expiry watch sleeps until, so that a lease whose holder neither renews nor releases it
/// wakes the lock's line (clients in `locks.acquire`, workers waiting for keyed jobs) when it lapses.
///
/// Pure bookkeeping with no I/O and no clock: times are passed in, on whatever clock the owner uses. A
/// new grant or renewal of a name replaces what was watched for it; a release forgets it. A min-heap
/// finds the earliest; an entry replaced or forgotten stays in the heap until it surfaces or the heap is
/// rebuilt (once such entries outnumber the watched leases), so every operation costs O(log n)
/// amortized and the heap stays within about twice the leases watched.
struct LockExpiries {
    /// A watched lease.
    struct Lease: Equatable {
        var name: String
        var token: String
    }

    private struct Entry {
        var atMs: Int64
        var lease: Lease
    }

    /// Name → the lease watched for it and when it lapses.
    private var watched: [String: (token: String, atMs: Int64)] = [:]
    private var heap: [Entry] = []

    /// Leases watched.
    var count: Int { watched.count }

    /// Entries the heap holds, stale ones included (for tests: it stays within about twice `count`).
    var stored: Int { heap.count }

    func watches(_ name: String) -> Bool { watched[name] != nil }

    /// `name` is held with `token` until `atMs`; replaces what was watched for the name.
    mutating func held(_ name: String, token: String, untilMs atMs: Int64) {
        watched[name] = (token, atMs)
        push(Entry(atMs: atMs, lease: Lease(name: name, token: token)))
        if heap.count > 2 * watched.count + 64 { rebuild() }
    }

    /// The lease of `name` with `token` ended (released): no longer watched. A lease the name holds with
    /// another token (granted since) stays watched.
    mutating func released(_ name: String, token: String) {
        guard watched[name]?.token == token else { return }
        watched[name] = nil
        if heap.count > 2 * watched.count + 64 { rebuild() }
    }

    /// When the first watched lease lapses (nil: none watched).
    mutating func next() -> Int64? {
        dropStaleTop()
        return heap.first?.atMs
    }

    /// Takes out the leases that lapse by `nowMs`, earliest first.
    mutating func due(nowMs: Int64) -> [Lease] {
        var out: [Lease] = []
        while let top = next(), top <= nowMs {
            let entry = pop()
            watched[entry.lease.name] = nil
            out.append(entry.lease)
        }
        return out
    }

    private func isLive(_ e: Entry) -> Bool {
        guard let w = watched[e.lease.name] else { return false }
        return w.token == e.lease.token && w.atMs == e.atMs
    }

    private mutating func dropStaleTop() {
        while let top = heap.first, !isLive(top) { _ = pop() }
    }

    private mutating func rebuild() {
        heap = watched.map { Entry(atMs: $0.value.atMs, lease: Lease(name: $0.key, token: $0.value.token)) }
        for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
    }

    private mutating func push(_ e: Entry) {
        heap.append(e)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].atMs < heap[parent].atMs else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func pop() -> Entry {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        return top
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let (l, r) = (2 * i + 1, 2 * i + 2)
            var least = i
            if l < heap.count && heap[l].atMs < heap[least].atMs { least = l }
            if r < heap.count && heap[r].atMs < heap[least].atMs { least = r }
            guard least != i else { return }
            heap.swapAt(i, least)
            i = least
        }
    }
}
