import WharfUV

/// The "look for due work" loop of a feature that keeps its due times in PostgreSQL (the scheduler,
/// the webhook dispatcher): it sleeps on one timer until the earliest due time the owner armed it for,
/// and can be poked to look sooner. However often it is poked in one loop turn, it looks once.
///
/// The owner's `look` claims and runs due work, then arms the timer for the next due time (or disarms
/// it when nothing is due). Loop thread only.
final class DueTimer {
    private let soon: (@escaping () -> Void) -> Void
    private let makeTimer: () -> OneShotTimer?
    private let look: () -> Void
    private var timer: OneShotTimer?
    private var lookQueued = false
    /// True once stopped: nothing runs any more.
    private(set) var stopped = false
    /// When the timer goes off, on the clock `arm` was given (nil: not armed).
    private(set) var armedAtMs: Int64?

    /// `soon` runs a body later in this loop turn; `makeTimer` makes the timer (once, when first armed).
    init(
        soon: @escaping (@escaping () -> Void) -> Void, makeTimer: @escaping () -> OneShotTimer?,
        look: @escaping () -> Void
    ) {
        self.soon = soon
        self.makeTimer = makeTimer
        self.look = look
    }

    /// On the service's loop: looks in the turn's check phase; the timer does not keep the loop alive.
    convenience init(_ context: ServiceContext, look: @escaping () -> Void) {
        let loop = context.loop
        self.init(
            soon: context.batchSchedule,
            makeTimer: {
                let t = try? LoopTimer(loop: loop)
                t?.unref()
                return t
            }, look: look)
    }

    /// Looks for due work soon (once per loop turn however often it is asked).
    func poke() {
        guard !lookQueued, !stopped else { return }
        lookQueued = true
        soon { [self] in
            lookQueued = false
            if !stopped { look() }
        }
    }

    /// Work is due at `ms`: looks now unless the timer already goes off by then.
    func wake(dueAtMs ms: Int64) {
        if let armed = armedAtMs, ms >= armed { return }
        poke()
    }

    /// Looks again in `delay` ms (at once if negative). `nowMs` is the owner's clock, for `wake(dueAtMs:)`.
    func arm(afterMs delay: Int64, nowMs: Int64) {
        guard !stopped else { return }
        if timer == nil { timer = makeTimer() }
        armedAtMs = nowMs + max(delay, 0)
        timer?.start(afterMs: UInt64(max(delay, 0))) { [unowned self] in
            armedAtMs = nil
            if !stopped { look() }
        }
    }

    /// Nothing is due: sleeps until poked.
    func disarm() {
        armedAtMs = nil
        timer?.stop()
    }

    func stop() {
        stopped = true
        armedAtMs = nil
        timer?.close()
        timer = nil
    }
}

/// A timer that calls back once per start; a new start replaces the pending one.
protocol OneShotTimer: AnyObject {
    func start(afterMs: UInt64, _ body: @escaping () -> Void)
    func stop()
    func close()
}

extension LoopTimer: OneShotTimer {
    func start(afterMs: UInt64, _ body: @escaping () -> Void) { start(timeoutMs: afterMs, body) }
}
