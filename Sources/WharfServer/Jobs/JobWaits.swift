import WharfCore
import WharfRPC
import WharfStore
import WharfUV

/// `jobs.wait`: calls that wait until jobs are final (completed, dead or cancelled) and then get them
/// with their results (Protocol/jobs.md, "Waiting for results"). Loop thread only.
///
/// A waiting call is woken by the events a job raises when it ends (`job.completed`, `job.dead`,
/// `job.cancelled`), on this replica or, through the event stream's NOTIFYs, on any other: while calls
/// wait, this replica wants those types, so the other replicas send them. A woken call's jobs are read
/// again (one statement for all calls woken in a loop turn), and the call answers when all are final.
/// A completion the events could miss (another replica that has not yet heard that this one wants
/// them) is caught by a re-read of every waiting call's jobs each second.
final class JobWaits {
    let context: ServiceContext
    unowned let events: EventsService

    private final class Waiter {
        let call: Call
        let ids: [Int64]
        var jobs: [Int64: JobRecord] = [:]
        let key: String
        var timer: LoopTimer?
        init(call: Call, ids: [Int64], key: String) {
            self.call = call
            self.ids = ids
            self.key = key
        }
        var done: Bool { ids.allSatisfy { jobs[$0].map { JobWaits.finalStates.contains($0.state) } ?? false } }
    }

    private var waiters: [ObjectIdentifier: Waiter] = [:]
    /// Waiting calls by the jobs they wait for.
    private var byJob: [Int64: Set<ObjectIdentifier>] = [:]
    /// Jobs to read again at the end of this loop turn.
    private var dirty: Set<Int64> = []
    private var readScheduled = false
    private var nextKey = 0

    static let finalStates: Set<String> = ["completed", "dead", "cancelled"]
    static let finalEvents: Set<String> = ["job.completed", "job.dead", "job.cancelled"]
    static let maxIDs = 1_000
    static let maxTimeoutMs: Int64 = 300_000
    static let defaultTimeoutMs: Int64 = 30_000
    static let recheckEveryMs: UInt64 = 1_000

    init(_ context: ServiceContext, events: EventsService) {
        self.context = context
        self.events = events
    }

    func start() {
        events.observe { [unowned self] event in
            guard !self.waiters.isEmpty, Self.finalEvents.contains(event.type),
                let id = event.data["jobId"]?.stringValue.flatMap({ Int64($0) }), self.byJob[id] != nil
            else { return }
            self.markDirty([id])
        }
        context.addChore(everyMs: Self.recheckEveryMs) { [unowned self] in
            if !self.byJob.isEmpty { self.markDirty(Array(self.byJob.keys)) }
        }
    }

    /// Answers every waiting call now with what it has (shutdown).
    func drain() {
        for w in Array(waiters.values) { answer(w, draining: true) }
    }

    func register(in methods: MethodTable) {
        methods.register("jobs.wait") { [unowned self] call in
            let p = call.params
            try p.onlyKnown(["ids", "timeoutMs"])
            guard let raw = try p.stringArray("ids", maxCount: Self.maxIDs), !raw.isEmpty else {
                throw RPCError.invalidParams(field: "ids", "is required: 1 to \(Self.maxIDs) job ids")
            }
            var ids: [Int64] = []
            var seen: Set<Int64> = []
            for s in raw {
                guard let id = Int64(s), id > 0 else {
                    throw RPCError.invalidParams(field: "ids", "\(s) is not a job id")
                }
                if seen.insert(id).inserted { ids.append(id) }
            }
            let timeoutMs = try p.optionalInt("timeoutMs", in: 0...Self.maxTimeoutMs) ?? Self.defaultTimeoutMs
            self.wait(call, ids: ids, timeoutMs: UInt64(timeoutMs))
        }
    }

    private func wait(_ call: Call, ids: [Int64], timeoutMs: UInt64) {
        nextKey += 1
        let w = Waiter(call: call, ids: ids, key: "jobs.wait.\(nextKey)")
        // Wanted before the first read: an end raised after it is seen, whichever comes back first.
        add(w)
        context.store.jobs(ids: ids) { [unowned self] r in
            guard self.waiters[ObjectIdentifier(w)] != nil else { return }
            switch r {
            case .failure(let e):
                self.remove(w)
                call.fail(e.rpcError)
            case .success(let rows):
                for j in rows { w.jobs[j.id] = j }
                let missing = ids.filter { w.jobs[$0] == nil }
                if !missing.isEmpty {
                    self.remove(w)
                    return call.fail(.notFound("job", ids: missing.map(String.init)))
                }
                if w.done || timeoutMs == 0 || self.context.draining {
                    return self.answer(w, draining: self.context.draining)
                }
                guard let t = try? LoopTimer(loop: self.context.loop) else { return self.answer(w, draining: false) }
                w.timer = t
                t.start(timeoutMs: timeoutMs) { [unowned self] in
                    // One last read, so that the answer holds the jobs' states at the deadline.
                    self.context.store.jobs(ids: w.ids) { [unowned self] r in
                        guard self.waiters[ObjectIdentifier(w)] != nil else { return }
                        if case .success(let rows) = r { for j in rows { w.jobs[j.id] = j } }
                        self.answer(w, draining: false)
                    }
                }
            }
        }
    }

    private func add(_ w: Waiter) {
        let key = ObjectIdentifier(w)
        if waiters.isEmpty { events.follow(Self.finalEvents) }
        waiters[key] = w
        for id in w.ids { byJob[id, default: []].insert(key) }
        w.call.session.onClose(w.key) { [unowned self] in self.remove(w) }
    }

    private func remove(_ w: Waiter) {
        let key = ObjectIdentifier(w)
        guard waiters.removeValue(forKey: key) != nil else { return }
        for id in w.ids {
            byJob[id]?.remove(key)
            if byJob[id]?.isEmpty == true { byJob[id] = nil }
        }
        w.timer?.close()
        w.timer = nil
        w.call.session.removeCloseHook(w.key)
        if waiters.isEmpty { events.unfollow(Self.finalEvents) }
    }

    private func answer(_ w: Waiter, draining: Bool) {
        remove(w)
        guard w.call.isPending else { return }
        var reply: JSONObject = [
            "jobs": .array(w.ids.compactMap { w.jobs[$0].map { JobReplies.job($0) } }), "done": .bool(w.done),
        ]
        if draining { reply["draining"] = true }
        w.call.reply(.object(reply))
    }

    private func markDirty(_ ids: [Int64]) {
        dirty.formUnion(ids)
        guard !readScheduled else { return }
        readScheduled = true
        context.runBeforeFlush { [unowned self] in
            self.readScheduled = false
            let ids = Array(self.dirty)
            self.dirty.removeAll()
            guard !ids.isEmpty else { return }
            self.context.store.jobs(ids: ids) { [unowned self] r in
                guard case .success(let rows) = r else { return }  // the next second's re-read tries again
                var woken: Set<ObjectIdentifier> = []
                for j in rows {
                    for key in self.byJob[j.id] ?? [] {
                        self.waiters[key]?.jobs[j.id] = j
                        woken.insert(key)
                    }
                }
                for key in woken {
                    if let w = self.waiters[key], w.done { self.answer(w, draining: false) }
                }
            }
        }
    }
}
