@testable import WharfServer

/// The check phase of a loop turn, run by hand: what `ServiceContext.batchSchedule` queues runs when
/// the test calls `endTurn()`.
final class ManualTurns {
    private var queued: [() -> Void] = []

    var schedule: (@escaping () -> Void) -> Void { { [unowned self] body in queued.append(body) } }

    var pending: Int { queued.count }

    /// Runs what this turn queued (work queued while running waits for the next turn).
    func endTurn() {
        let now = queued
        queued = []
        for body in now { body() }
    }
}

/// A one-shot timer that goes off when the test says so.
final class ManualTimer: OneShotTimer {
    private(set) var armedMs: UInt64?
    private var body: (() -> Void)?
    private(set) var closed = false
    private(set) var starts = 0

    func start(afterMs: UInt64, _ body: @escaping () -> Void) {
        armedMs = afterMs
        self.body = body
        starts += 1
    }

    func stop() {
        armedMs = nil
        body = nil
    }

    func close() {
        stop()
        closed = true
    }

    /// Goes off now, if armed.
    func fire() {
        guard let b = body else { return }
        stop()
        b()
    }
}
