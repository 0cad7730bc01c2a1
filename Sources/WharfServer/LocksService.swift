import WharfRPC
import WharfStore
import WharfUV

/// Lock leasing on one replica: batched compare-and-set acquires, a first-come-first-served line of
/// waiters per name (only the first is retried when the lock may be free: no thundering herd), wake-ups
/// from local releases, from other replicas (`NOTIFY wharf_wake, 'lock:<name>'`) and from a timer at the
/// holder's expiry, and locks bound to a session released when its connection closes. Loop thread only.
final class LocksService {
    unowned let server: Server
    var store: Store { server.store }

    private struct Pending {
        let request: LockRequest
        let done: (Result<LockOutcome, RPCError>) -> Void
    }

    private var pending: [Pending] = []
    private var inFlight = 0
    private var flushScheduled = false
    private let maxInFlight = 4

    final class Waiter {
        let call: Call
        let request: LockRequest
        let bind: Bool
        var deadline: LoopTimer?
        init(call: Call, request: LockRequest, bind: Bool) {
            self.call = call
            self.request = request
            self.bind = bind
        }
    }

    /// Waiters per lock name, in arrival order.
    private var lines: [String: [Waiter]] = [:]
    /// Names whose first waiter is being retried right now.
    private var retrying: Set<String> = []
    private var expiryTimers: [String: LoopTimer] = [:]

    /// Releases from all clients in one loop turn share one statement.
    private(set) lazy var releaseBatcher = Batcher<(name: String, token: String), Bool>(
        schedule: { [unowned server] body in server.runBeforeFlush(body) },
        run: { [unowned self] items, done in self.store.releaseLocks(items, done) })

    init(server: Server) { self.server = server }

    func start() {
        server.onWake("lock") { [unowned self] name in self.wake(name) }
    }

    // MARK: Batched acquire

    /// Queues an acquire; concurrent ones share one statement (distinct names per statement).
    func tryAcquire(_ request: LockRequest, _ done: @escaping (Result<LockOutcome, RPCError>) -> Void) {
        pending.append(Pending(request: request, done: done))
        if !flushScheduled {
            flushScheduled = true
            server.runBeforeFlush { [unowned self] in
                self.flushScheduled = false
                self.flush()
            }
        }
    }

    private func flush() {
        while !pending.isEmpty && inFlight < maxInFlight {
            var names = Set<String>()
            var batch: [Pending] = []
            var rest: [Pending] = []
            for p in pending {
                if batch.count < 1_000 && names.insert(p.request.name).inserted {
                    batch.append(p)
                } else {
                    rest.append(p)
                }
            }
            pending = rest
            inFlight += 1
            store.acquireLocks(batch.map(\.request)) { [unowned self] result in
                self.inFlight -= 1
                switch result {
                case .success(let outcomes):
                    for (p, o) in zip(batch, outcomes) { p.done(.success(o)) }
                case .failure(let e):
                    for p in batch { p.done(.failure(e)) }
                }
                if !self.pending.isEmpty { self.flush() }
            }
        }
    }

    // MARK: Calls

    func acquire(call: Call, request: LockRequest, waitMs: Int64, bind: Bool) {
        tryAcquire(request) { [unowned self] result in
            switch result {
            case .failure(let e):
                call.fail(e)
            case .success(.granted(let token, let fencing, let expires)):
                self.granted(call: call, request: request, bind: bind, token: token, fencing: fencing, expires: expires)
            case .success(.held(let holder, let freeAt, let freeInMs)):
                guard waitMs > 0, call.session.isOpen else {
                    return call.reply(Self.notGranted(request.name, holder, freeAt))
                }
                self.enqueueWaiter(Waiter(call: call, request: request, bind: bind), waitMs: waitMs, freeInMs: freeInMs)
            }
        }
    }

    static func notGranted(_ name: String, _ holder: String?, _ freeAt: String?) -> JSON {
        ["granted": false, "name": .string(name), "heldBy": .from(holder), "expiresAt": .from(freeAt)]
    }

    private func granted(call: Call, request: LockRequest, bind: Bool, token: String, fencing: Int64, expires: String) {
        if bind {
            let name = request.name
            call.session.onClose("lock:\(name):\(token)") { [unowned self] in
                self.store.releaseLocks([(name, token)]) { [unowned self] r in
                    if case .success([true]) = r { self.wake(name) }
                }
            }
        }
        guard call.isPending else { return }
        call.reply([
            "granted": true, "name": .string(request.name), "token": .string(token), "fencingToken": .int(fencing),
            "expiresAt": .string(expires),
        ])
    }

    private func enqueueWaiter(_ w: Waiter, waitMs: Int64, freeInMs: Int64?) {
        let name = w.request.name
        lines[name, default: []].append(w)
        store.countLockWait(name: name)
        let timer = try? LoopTimer(loop: server.loop)
        w.deadline = timer
        // The closure holds the waiter until the timer fires or is closed.
        timer?.start(timeoutMs: UInt64(waitMs)) { [unowned self, w] in
            w.deadline?.close()
            w.deadline = nil
            self.lines[name]?.removeAll { $0 === w }
            if self.lines[name]?.isEmpty == true { self.lines[name] = nil }
            guard w.call.isPending else { return }
            self.store.lock(name: name) { r in
                guard w.call.isPending else { return }
                let info = (try? r.get()) ?? [:]
                w.call.reply(Self.notGranted(name, info["holder"]?.stringValue, info["expiresAt"]?.stringValue))
            }
        }
        w.call.session.onClose("lockwait:\(ObjectIdentifier(w).hashValue)") { [unowned self, weak w] in
            guard let w else { return }
            w.deadline?.close()
            w.deadline = nil
            self.lines[name]?.removeAll { $0 === w }
        }
        scheduleExpiryWake(name, inMs: freeInMs)
    }

    /// Retries the line's first waiter when the holder's lease (plus lock-delay) runs out.
    private func scheduleExpiryWake(_ name: String, inMs: Int64?) {
        guard let inMs else { return }
        if expiryTimers[name] == nil { expiryTimers[name] = try? LoopTimer(loop: server.loop) }
        expiryTimers[name]?.start(timeoutMs: UInt64(max(0, inMs) + 1)) { [unowned self] in self.wake(name) }
    }

    /// The lock may be free: retry the first waiter of its line only.
    func wake(_ name: String) {
        guard let first = lines[name]?.first, !retrying.contains(name) else {
            if lines[name] == nil, let t = expiryTimers.removeValue(forKey: name) { t.close() }
            return
        }
        retrying.insert(name)
        tryAcquire(first.request) { [unowned self] result in
            self.retrying.remove(name)
            switch result {
            case .success(.granted(let token, let fencing, let expires)):
                self.lines[name]?.removeAll { $0 === first }
                if self.lines[name]?.isEmpty == true { self.lines[name] = nil }
                first.deadline?.close()
                first.deadline = nil
                if first.call.isPending && first.call.session.isOpen {
                    self.granted(
                        call: first.call, request: first.request, bind: first.bind, token: token, fencing: fencing,
                        expires: expires)
                } else {
                    // Its caller left while the grant was being taken: give it back.
                    self.store.releaseLocks([(name, token)]) { [unowned self] _ in self.wake(name) }
                }
            case .success(.held(_, _, let freeInMs)):
                self.scheduleExpiryWake(name, inMs: freeInMs)
            case .failure:
                self.scheduleExpiryWake(name, inMs: 500)
            }
        }
    }
}
