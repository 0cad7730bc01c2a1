import Testing

@testable import WharfServer

/// `DueTimer`, the look-for-due-work loop shared by the scheduler and the webhook dispatcher.
@Suite struct DueTimerTests {
    final class Rig {
        let turns = ManualTurns()
        let timer = ManualTimer()
        var looks = 0
        var timersMade = 0
        lazy var due = DueTimer(
            soon: turns.schedule, makeTimer: { [unowned self] in timersMade += 1; return timer },
            look: { [unowned self] in looks += 1 })
    }

    @Test func pokesOfOneTurnLookOnce() {
        let r = Rig()
        for _ in 0..<5 { r.due.poke() }
        #expect(r.looks == 0 && r.turns.pending == 1)
        r.turns.endTurn()
        #expect(r.looks == 1)
        r.due.poke()
        r.turns.endTurn()
        #expect(r.looks == 2)
    }

    @Test func armingRemembersWhenItGoesOffAndFiringLooks() {
        let r = Rig()
        r.due.arm(afterMs: 250, nowMs: 10_000)
        #expect(r.timer.armedMs == 250 && r.due.armedAtMs == 10_250)
        r.timer.fire()
        #expect(r.looks == 1 && r.due.armedAtMs == nil)
        r.due.arm(afterMs: 5, nowMs: 20_000)
        #expect(r.timersMade == 1, "one timer, re-armed")
    }

    @Test func negativeDelaysGoOffAtOnce() {
        let r = Rig()
        r.due.arm(afterMs: -40, nowMs: 1_000)
        #expect(r.timer.armedMs == 0 && r.due.armedAtMs == 1_000)
    }

    /// Work due no earlier than the armed time needs no look: the timer comes first.
    @Test func wakeLooksOnlyForWorkDueBeforeTheTimer() {
        let r = Rig()
        r.due.arm(afterMs: 1_000, nowMs: 0)
        r.due.wake(dueAtMs: 1_000)
        r.due.wake(dueAtMs: 5_000)
        #expect(r.turns.pending == 0)
        r.due.wake(dueAtMs: 999)
        r.turns.endTurn()
        #expect(r.looks == 1)
    }

    @Test func anUnarmedTimerLooksForAnyWake() {
        let r = Rig()
        r.due.wake(dueAtMs: .max)
        r.turns.endTurn()
        #expect(r.looks == 1)
    }

    @Test func disarmingSleepsUntilPoked() {
        let r = Rig()
        r.due.arm(afterMs: 100, nowMs: 0)
        r.due.disarm()
        #expect(r.due.armedAtMs == nil && r.timer.armedMs == nil)
        r.timer.fire()
        #expect(r.looks == 0)
        r.due.wake(dueAtMs: 50_000)
        r.turns.endTurn()
        #expect(r.looks == 1)
    }

    @Test func nothingRunsOnceStopped() {
        let r = Rig()
        r.due.arm(afterMs: 100, nowMs: 0)
        r.due.poke()
        r.due.stop()
        r.turns.endTurn()
        r.timer.fire()
        r.due.poke()
        r.due.arm(afterMs: 1, nowMs: 0)
        #expect(r.looks == 0 && r.turns.pending == 0)
        #expect(r.timer.closed && r.due.stopped)
    }
}
