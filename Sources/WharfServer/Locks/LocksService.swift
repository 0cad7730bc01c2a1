import Foundation
import WharfCore
import WharfRPC
import WharfStore
import WharfUV

/// Lock leasing on one replica.
///
/// Acquires and releases that arrive in the same loop iteration are coalesced into one set-based
/// statement each (one commit; every request reads its own row of the result). Waiters queue in the
/// database's durable line and in this replica's `LockWaiters`; when a lock may have become free (a
/// release here, `NOTIFY wharf_wake, 'lock:<name>'` from any replica, a timer at the holder's expiry,
/// or the periodic sweep) only the first local waiter is retried, and the database grants it only if
/// it is the oldest live waiter on any replica. Locks bound to a session are released when its
/// connection closes.
///
/// Waiting costs O(1) per waiter: requests for one name share statements (a thousand new waiters are
/// queued by one statement, not one each), queued waiters' retries go ahead of new requests (so a
/// release is handed on at once however many clients queue behind), and the attempts of a connection
/// that closed are dropped before they reach the database. A lease granted or renewed here is watched
/// until it runs out: if nobody renewed or released it by then, one statement wakes its line on every
/// replica, clients and the workers of keyed jobs alike (`LockExpiries`). Loop thread only.
final class LocksService {
    let context: ServiceContext
    var store: Store { context.store }
    var replicaID: String { context.config.replicaID }

    /// One waiting `locks.acquire` call.
    final class Waiter {
        let call: Call
        var request: LockRequest
        let bind: Bool
        var deadline: LoopTimer?
        /// Out of the line (gave up, or its connection closed).
        var left = false

        init(call: Call, request: LockRequest, bind: Bool) {
            self.call = call
            self.request = request
            self.bind = bind
        }

        var name: String { request.name }
        var seq: Int64 { request.waiterSeq! }
        var closeKey: String { "lockwait:\(seq)" }
    }

    private var waiters = LockWaiters<Waiter>()
    private var wakeTimers: [String: LoopTimer] = [:]
    /// Waiters of closed connections still to be cleaned up, a slice per loop iteration.
    private var departing: [Waiter] = []
    private var departures: LoopTimer?
    /// Departures cleaned up per loop iteration, so that thousands of waiters leaving at once (their
    /// connections closed) do not hold up the loop.
    let departuresPerIteration = 500

    /// An acquire attempt: the request, and the session that asked (nil: nobody who could leave).
    struct Attempt {
        var request: LockRequest
        var session: Session?
    }

    /// What a dropped attempt gets.
    static let callerLeft = LockReplies.callerLeft

    /// Acquire (and release) statements in flight at once; while one runs, new requests accumulate into
    /// the next. One: statements of one replica then never wait for each other's row locks, and each
    /// commit carries more requests. With four, 64 clients on 16 names got half the acquires per second
    /// (BENCHMARKS.md, "One lock statement at a time").
    let maxInFlight = 1
    /// Most requests coalesced into one acquire statement.
    let maxBatch = 250

    /// The acquire attempts of one loop iteration share one statement: queued waiters' retries ahead of
    /// new requests, sorted by name (so that concurrent statements lock rows in one order; a name's
    /// requests keep their order, retries first, which is their order in the line), and the attempts of
    /// a connection that closed before their statement was sent are dropped (`callerLeft`).
    private lazy var attempts = Batcher<Attempt, LockOutcome>(
        maxInFlight: maxInFlight, maxBatch: maxBatch, ahead: { $0.request.waiterSeq != nil },
        orderedBy: { $0.request.name },
        dropping: { $0.session?.isOpen == false ? Self.callerLeft : nil },
        schedule: context.batchSchedule,
        runInStages: { [unowned self] batch, answer, finished in self.run(batch, answer, finished) })

    /// Releases from all clients in one loop iteration share one statement, sorted by name so that
    /// concurrent statements lock rows in one order.
    private(set) lazy var releases = Batcher<(name: String, token: String, session: String?), LockRelease>(
        maxInFlight: maxInFlight, maxBatch: maxBatch, orderedBy: { $0.name },
        schedule: context.batchSchedule,
        run: { [unowned self] items, done in
            self.store.retryingWhenBusy(attempts: 2) {
                self.store.releaseLocks(items, $0)
            } then: {
                done($0.mapError(\.rpcError))
            }
        })

    /// Waiters that gave up or left, removed from the durable line together.
    private lazy var removals = Batcher<Int64, (holder: String?, freeAtMs: Int64?)>(
        schedule: context.batchSchedule,
        run: { [unowned self] seqs, done in self.store.removeLockWaiters(seqs) { done($0.mapError(\.rpcError)) } })

    /// The leases granted or renewed here, watched so that one that lapses wakes its line at once, on
    /// every replica: a keyed job's worker is not told by any timer of its own.
    private var expiries = LockExpiries()
    private lazy var expiryWatch = DueTimer(context) { [unowned self] in self.wakeLapsed() }

    /// Most waiters this replica queues for one name (`--max-lock-waiters`).
    var maxWaitersPerLock: Int { context.config.limits.maxLockWaiters }

    init(_ context: ServiceContext) { self.context = context }

    func start() {
        context.onWake(.lock) { [unowned self] name in self.wake(name) }
        // Queued waiters' rows count only while their replica refreshes them (a few seconds), so a
        // replica that dies holds up a line briefly.
        context.addChore(everyMs: 1_000) { [unowned self] in
            if self.waiters.count > 0 { self.store.refreshLockWaiters(replicaID: self.replicaID) { _ in } }
        }
        // The safety net: drop dead waiters of any replica, and retry every line here in case a wake-up
        // was lost (a dropped LISTEN connection, say).
        context.addChore(everyMs: 5_000) { [unowned self] in
            self.store.sweepLockWaiters { _ in }
            for name in self.waiters.names { self.wake(name) }
        }
    }

    func stop() { expiryWatch.stop() }

    // MARK: Coalesced acquires

    /// Queues an attempt for this loop iteration's acquire statement.
    func attempt(
        _ request: LockRequest, for session: Session?, _ done: @escaping (Result<LockOutcome, RPCError>) -> Void
    ) {
        attempts.add(Attempt(request: request, session: session), done)
    }

    /// Runs one batch: new requests first through the plain upsert that grants free locks nobody waits
    /// for (answered as soon as it commits), then everything it left, and queued waiters' retries,
    /// through the statement that decides exactly.
    private func run(
        _ batch: [Attempt], _ answer: @escaping (Int, Result<LockOutcome, RPCError>) -> Void,
        _ finished: @escaping () -> Void
    ) {
        let decide = { [unowned self] (rest: [Int]) in
            if rest.isEmpty { return finished() }
            let requests = rest.map { batch[$0].request }
            self.store.retryingWhenBusy(attempts: 2) {
                self.store.decideLocks(requests, replicaID: self.replicaID, $0)
            } then: { result in
                switch result.mapError(\.rpcError) {
                case .success(let outcomes):
                    for (i, o) in zip(rest, outcomes) { answer(i, .success(o)) }
                case .failure(let e):
                    for i in rest { answer(i, .failure(e)) }
                }
                finished()
            }
        }
        // The plain upsert takes one new request per name (a name's first); it grants only names
        // nobody waits for, so a retry's name never gets there.
        var seen = Set<String>()
        var retried = Set<String>()
        for p in batch where p.request.waiterSeq != nil { retried.insert(p.request.name) }
        let fresh = batch.indices.filter {
            batch[$0].request.waiterSeq == nil && !retried.contains(batch[$0].request.name)
                && seen.insert(batch[$0].request.name).inserted
        }
        if fresh.isEmpty { return decide(Array(batch.indices)) }
        store.retryingWhenBusy(attempts: 2) {
            self.store.grantFreeLocks(fresh.map { batch[$0].request }, $0)
        } then: { result in
            switch result.mapError(\.rpcError) {
            case .success(let grants):
                var answered = Set<Int>()
                for i in fresh {
                    if let g = grants[batch[i].request.name] {
                        answer(i, .success(.granted(g)))
                        answered.insert(i)
                    }
                }
                decide(batch.indices.filter { !answered.contains($0) })
            case .failure(let e):
                let failed = Set(fresh)
                for i in fresh { answer(i, .failure(e)) }
                decide(batch.indices.filter { !failed.contains($0) })
            }
        }
    }

    // MARK: locks.acquire

    func acquire(call: Call, request: LockRequest, waitMs: Int64, bind: Bool) {
        var request = request
        request.queueForMs = waitMs
        request.bound = bind
        let name = request.name
        let arrivedMs = context.loop.nowMs
        if waitMs > 0 {
            guard waiters.load(name) < maxWaitersPerLock else {
                return call.fail(LockReplies.tooManyWaiters(name, max: maxWaitersPerLock))
            }
            waiters.joinStarted(name)
        }
        attempt(request, for: call.session) { [unowned self] result in
            switch result {
            case .failure(let e):
                if waitMs > 0 { self.joined(name, nil) }
                call.fail(e)
            case .success(.requestIDReused(let reuse)):
                if waitMs > 0 { self.joined(name, nil) }
                call.fail(LockReplies.requestIDReused(request, reuse))
            case .success(.granted(let grant)):
                if waitMs > 0 { self.joined(name, nil) }
                self.deliver(grant, request, to: call, bind: bind)
            case .success(.notGranted(let refusal)):
                guard let seq = refusal.waiterSeq else {
                    if waitMs > 0 { self.joined(name, nil) }
                    return call.reply(LockReplies.notGranted(name, refusal.holder, freeAtMs: refusal.freeAtMs))
                }
                guard call.isPending, call.session.isOpen, !self.context.draining else {
                    self.joined(name, nil)
                    if call.isPending, self.context.draining {
                        call.reply(
                            LockReplies.notGranted(name, refusal.holder, freeAtMs: refusal.freeAtMs, draining: true))
                    }
                    return self.removals.add(seq) { _ in }
                }
                var retry = request
                retry.queueForMs = 0
                retry.waiterSeq = seq
                let w = Waiter(call: call, request: retry, bind: bind)
                self.context.metrics.locks.waits.increment()
                let elapsed = Int64(self.context.loop.nowMs - arrivedMs)
                self.startDeadline(w, inMs: max(0, waitMs - elapsed))
                call.session.onClose(w.closeKey) { [unowned self, unowned w] in self.depart(w) }
                self.joined(name, (seq, w))
                self.scheduleWake(name, after: refusal)
            }
        }
    }

    private func joined(_ name: String, _ queued: (seq: Int64, waiter: Waiter)?) {
        if let w = waiters.joinFinished(name, queued: queued) { retry(w) }
    }

    /// Hands a committed grant to its caller (and watches its expiry), or gives it back if the caller is
    /// gone.
    private func deliver(_ grant: LockGrant, _ request: LockRequest, to call: Call, bind: Bool) {
        context.metrics.locks.grants.increment()
        context.logger.debug(
            "lock granted",
            metadata: [
                "lock": "\(grant.name)", "holder": "\(request.holder)", "fencing": "\(grant.fencingToken)",
                "acquired_ms": "\(grant.acquiredAtMs)", "expires_ms": "\(grant.expiresAtMs)",
            ])
        guard call.isPending, call.session.isOpen else {
            // Nobody will ever see this token: release it now rather than at its expiry.
            return release(name: grant.name, token: grant.token) { _ in }
        }
        watch(grant.name, token: grant.token, forMs: request.ttlMs + request.lockDelayMs)
        context.raiseGranted(grant, holder: request.holder)
        if bind {
            // Released only while still bound to this session: a `requestId` retry from another
            // connection moves the binding to that one.
            let (name, token, session) = (grant.name, grant.token, call.session.id)
            call.session.onClose("lock:\(name):\(token)") { [unowned self] in
                self.release(name: name, token: token, session: session) { _ in }
            }
        }
        call.reply(LockReplies.granted(grant))
    }

    // MARK: Waiting

    private func startDeadline(_ w: Waiter, inMs: Int64) {
        let timer = try? LoopTimer(loop: context.loop)
        w.deadline = timer
        // The closure holds the waiter until the timer fires or is closed.
        timer?.start(timeoutMs: UInt64(inMs)) { [unowned self, w] in self.leave(w, reply: true) }
    }

    /// A waiter gives up (its `waitMs` ran out) or its connection closed: out of both lines.
    private func leave(_ w: Waiter, reply: Bool) {
        guard !w.left else { return }
        w.left = true
        w.deadline?.close()
        w.deadline = nil
        w.call.session.removeCloseHook(w.closeKey)
        waiters.remove(w.name, seq: w.seq)
        if !waiters.hasWaiters(w.name) { cancelWakeTimer(w.name) }
        let name = w.name
        removals.add(w.seq) { result in
            guard reply, w.call.isPending else { return }
            let (holder, freeAtMs) = (try? result.get()) ?? (nil, nil)
            w.call.reply(LockReplies.notGranted(name, holder, freeAtMs: freeAtMs, draining: self.context.draining))
        }
    }

    /// The server began draining: every waiter here gives up now and is told `draining: true`, so its
    /// client waits through another replica.
    func drain() {
        for w in waiters.all { leave(w, reply: true) }
    }

    /// A waiter's connection closed: out of this replica's line at once (no retry picks it any more);
    /// its timer and its row go in the slices that `departures` works through, one per iteration.
    private func depart(_ w: Waiter) {
        guard !w.left else { return }
        waiters.remove(w.name, seq: w.seq)
        departing.append(w)
        guard departing.count == 1 else { return }
        if departures == nil { departures = try? LoopTimer(loop: context.loop) }
        guard let timer = departures else { return leaveDeparting() }
        timer.start(timeoutMs: 0) { [unowned self] in self.leaveDeparting() }
    }

    private func leaveDeparting() {
        let slice = departing.prefix(departuresPerIteration)
        departing.removeFirst(slice.count)
        for w in slice { leave(w, reply: false) }
        if !departing.isEmpty { departures?.start(timeoutMs: 0) { [unowned self] in self.leaveDeparting() } }
    }

    /// The lock may be free: retry the first waiter of its line here.
    func wake(_ name: String) {
        if let w = waiters.woke(name) { retry(w) }
    }

    private func retry(_ w: Waiter) {
        let name = w.name
        attempt(w.request, for: w.call.session) { [unowned self] result in
            var granted = false
            var wakeNext = false
            switch result {
            case .success(.granted(let grant)):
                granted = true
                w.deadline?.close()
                w.deadline = nil
                w.call.session.removeCloseHook(w.closeKey)
                self.waiters.remove(name, seq: w.seq)
                self.deliver(grant, w.request, to: w.call, bind: w.bind)
            case .success(.notGranted(let refusal)):
                self.scheduleWake(name, after: refusal)
            case .failure(let e) where e == Self.callerLeft:
                // The waiter left before its retry was sent: the wake-up is the next one's.
                wakeNext = true
            case .success(.requestIDReused), .failure:
                self.scheduleWake(name, inMs: 500)
            }
            if let next = self.waiters.retryFinished(name, granted: granted) {
                self.retry(next)
            } else if wakeNext {
                self.wake(name)
            }
            if !self.waiters.hasWaiters(name) { self.cancelWakeTimer(name) }
        }
    }

    /// Arms the line's timer for when the refusal says the lock could be taken: the holder's expiry
    /// (plus lock-delay), or failing that when the waiters ahead stop counting. A refusal that names
    /// neither saw the lock freed by a statement that ran alongside it: try again at once.
    private func scheduleWake(_ name: String, after refusal: LockRefusal) {
        let ms = refusal.freeInMs.map { $0 + 1 } ?? refusal.aheadForMs.map { $0 + 1 } ?? 0
        scheduleWake(name, inMs: ms)
    }

    private func scheduleWake(_ name: String, inMs: Int64) {
        guard waiters.hasWaiters(name) else { return }
        if wakeTimers[name] == nil { wakeTimers[name] = try? LoopTimer(loop: context.loop) }
        wakeTimers[name]?.start(timeoutMs: UInt64(max(0, inMs))) { [unowned self] in self.wake(name) }
    }

    private func cancelWakeTimer(_ name: String) {
        wakeTimers.removeValue(forKey: name)?.close()
    }

    // MARK: locks.release

    /// Releases a lease (coalesced with the other releases of this iteration) and wakes this replica's
    /// line for the name; the statement itself wakes other replicas' lines when anyone waits.
    func release(
        name: String, token: String, session: String? = nil, _ done: @escaping (Result<Bool, RPCError>) -> Void
    ) {
        releases.add((name, token, session)) { [unowned self] result in
            switch result {
            case .success(let r) where r.released:
                self.context.logger.debug(
                    "lock released",
                    metadata: [
                        "lock": "\(name)", "fencing": "\(r.fencingToken ?? 0)",
                        "released_ms": "\(r.releasedAtMs ?? 0)",
                    ])
                self.expiries.released(name, token: token)
                self.wake(name)
                done(.success(true))
            case .success:
                done(.success(false))
            case .failure(let e):
                done(.failure(e))
            }
        }
    }

    /// Logs a renewal for the grant log (the lease's new end) and watches the lease's new expiry.
    func renewed(_ grant: LockGrant, ttlMs: Int64) {
        context.logger.debug(
            "lock renewed",
            metadata: [
                "lock": "\(grant.name)", "fencing": "\(grant.fencingToken)", "expires_ms": "\(grant.expiresAtMs)",
            ])
        // The lock-delay is not known here: if the lease has one, the look at the expiry finds it not yet
        // free and watches it again for what is left.
        watch(grant.name, token: grant.token, forMs: ttlMs)
    }

    // MARK: Expiry

    /// Watches a lease held with `token` that runs out (plus lock-delay) `forMs` from now. The time is
    /// taken when the reply arrived, after the statement's `now()`, so the watch never looks early by the
    /// database's clock unless the clocks run at different rates (the look then finds it still held and
    /// watches it again).
    private func watch(_ name: String, token: String, forMs: Int64) {
        let at = Int64(context.loop.nowMs) + max(0, forMs)
        expiries.held(name, token: token, untilMs: at)
        expiryWatch.wake(dueAtMs: at)
    }

    /// The expiry watch's look: the leases that ran out by now wake their lines (one statement for all),
    /// and those still held (renewed on another replica, say) are watched again for what they have left.
    /// A failed statement leaves their lines to the waiters' own timers and the periodic re-checks.
    private func wakeLapsed() {
        let now = Int64(context.loop.nowMs)
        let due = expiries.due(nowMs: now)
        if !due.isEmpty {
            store.wakeLapsedLocks(due.map { ($0.name, $0.token) }) { [unowned self] result in
                guard case .success(let left) = result else { return }
                for (lease, look) in zip(due, left) {
                    // Counted only when it ran out still held with its token (not released elsewhere).
                    if look.expired { self.context.metrics.locks.expiries.increment() }
                    self.context.raiseExpired(lease.name, look)
                    // A lease granted or renewed here meanwhile is watched already.
                    if let ms = look.leftMs, !self.expiries.watches(lease.name) {
                        self.watch(lease.name, token: lease.token, forMs: ms)
                    }
                }
            }
        }
        if let next = expiries.next() { expiryWatch.arm(afterMs: next - now, nowMs: now) } else { expiryWatch.disarm() }
    }
}
