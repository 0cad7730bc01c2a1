import Testing
import WharfCore
import WharfStore

@testable import WharfServer

/// The scheduler's decisions on their own: no database, no server, no clock (`nowMs` is an input).
@Suite struct CronPlannerTests {
    static func at(_ text: String) -> Int64 { Timestamp.parse(text)! }

    let everySecond = CronSchedule(everyMs: 1_000)
    let hourly = try! CronSchedule.parse("0 * * * *")
    /// Noon on a whole second, hour and minute.
    let noon = Self.at("2026-06-01T12:00:00Z")
    let h10 = Self.at("2026-06-01T10:00:00Z")
    let h11 = Self.at("2026-06-01T11:00:00Z")
    let h12 = Self.at("2026-06-01T12:00:00Z")
    let h13 = Self.at("2026-06-01T13:00:00Z")

    func plan(_ schedule: CronSchedule, _ due: CronPlanner.Due) -> CronPlanner.Plan {
        CronPlanner.plan(due, schedule: schedule)
    }

    // MARK: Missed policies

    /// Five minutes behind an every-second schedule with a one-minute window: the 61 fires inside the
    /// window (both ends included) run under every policy; the 240 before it are counted or run.
    @Test(arguments: MissedPolicy.allCases) func firesInsideTheWindowAlwaysRun(_ missed: MissedPolicy) {
        let p = plan(everySecond, .init(nextFireMs: noon - 300_000, missed: missed, nowMs: noon))
        let window = Array(stride(from: noon - 60_000, through: noon, by: 1_000))
        let before = Array(stride(from: noon - 300_000, to: noon - 60_000, by: 1_000))
        #expect(before.count == 240)
        #expect(p.nextFireMs == noon + 1_000)
        #expect(p.skipped == 0)
        switch missed {
        case .skip, .runOnce:
            #expect(p.fires == window)
            #expect(p.missed == 240)
        case .runAll:
            #expect(p.fires == before + window)
            #expect(p.missed == 0)
        }
    }

    /// An hourly schedule 2.5 hours behind, window one minute: 10:00, 11:00 and 12:00 are all missed.
    @Test func missedSkipCountsAndRunsNothing() {
        let p = plan(hourly, .init(nextFireMs: h10, missed: .skip, nowMs: h12 + 1_800_000))
        #expect(p == CronPlanner.Plan(fires: [], nextFireMs: h13, skipped: 0, missed: 3))
    }

    @Test func missedRunOnceRunsTheLatestMissedFireWhenNoneIsInTheWindow() {
        let p = plan(hourly, .init(nextFireMs: h10, missed: .runOnce, nowMs: h12 + 1_800_000))
        #expect(p == CronPlanner.Plan(fires: [h12], nextFireMs: h13, skipped: 0, missed: 2))
    }

    @Test func missedRunOnceRunsNoMissedFireWhenOneIsInTheWindow() {
        // 12:00 is 30 s late, inside the default 60 s window; 10:00 and 11:00 are missed.
        let p = plan(hourly, .init(nextFireMs: h10, missed: .runOnce, nowMs: h12 + 30_000))
        #expect(p == CronPlanner.Plan(fires: [h12], nextFireMs: h13, skipped: 0, missed: 2))
    }

    @Test func missedRunAllRunsEveryMissedFire() {
        let p = plan(hourly, .init(nextFireMs: h10, missed: .runAll, nowMs: h12 + 1_800_000))
        #expect(p == CronPlanner.Plan(fires: [h10, h11, h12], nextFireMs: h13, skipped: 0, missed: 0))
    }

    @Test func aFireExactlyAtTheWindowStartIsNotMissed() {
        let p = plan(hourly, .init(nextFireMs: h12, missed: .skip, missedWindowMs: 60_000, nowMs: h12 + 60_000))
        #expect(p.fires == [h12])
        let late = plan(hourly, .init(nextFireMs: h12, missed: .skip, missedWindowMs: 60_000, nowMs: h12 + 60_001))
        #expect(late.fires == [])
        #expect(late.missed == 1)
    }

    @Test func nothingDueYetFiresNothing() {
        let p = plan(hourly, .init(nextFireMs: h13, nowMs: h12))
        #expect(p == CronPlanner.Plan(fires: [], nextFireMs: h13, skipped: 0, missed: 0))
        #expect(plan(hourly, .init(nextFireMs: nil, nowMs: h12)) == CronPlanner.Plan())
    }

    // MARK: Catch-up bounds

    /// `runAll` computes at most 1,000 fires per batch; the schedule stays due at the next one.
    @Test func runAllFiresAtMostOneThousandPerBatch() {
        let first = noon - 2_000_000
        let p = plan(everySecond, .init(nextFireMs: first, missed: .runAll, nowMs: noon))
        #expect(p.fires.count == CronPlanner.maxFiresPerBatch)
        #expect(p.fires.first == first)
        #expect(p.fires.last == first + 999_000)
        #expect(p.nextFireMs == first + 1_000_000)
        #expect(p.missed == 0)
        // The next batch picks up where this one stopped.
        let again = plan(everySecond, .init(nextFireMs: p.nextFireMs, missed: .runAll, nowMs: noon))
        #expect(again.fires.first == first + 1_000_000)
    }

    /// A day behind an every-second schedule: counting stops after 10,000 missed fires and the schedule
    /// jumps to the window's start uncounted; the next batch runs the window.
    @Test(arguments: [MissedPolicy.skip, .runOnce]) func aLongOutageCountsTenThousandMissedFiresThenJumps(
        _ missed: MissedPolicy
    ) {
        let first = noon - 86_400_000
        let p = plan(everySecond, .init(nextFireMs: first, missed: missed, nowMs: noon))
        #expect(p.nextFireMs == noon - 60_000)
        if missed == .skip {
            #expect(p.fires == [])
            #expect(p.missed == 10_000)
        } else {
            // The latest fire it looked at stands for the missed ones.
            #expect(p.fires == [first + 9_999_000])
            #expect(p.missed == 9_999)
        }
        let next = plan(everySecond, .init(nextFireMs: p.nextFireMs, missed: missed, nowMs: noon))
        #expect(next.fires == Array(stride(from: noon - 60_000, through: noon, by: 1_000)))
        #expect(next.missed == 0)
    }

    // MARK: Overlap policies

    /// 10:00, 11:00 and 12:00 all inside a three-hour window.
    func overlapped(_ overlap: OverlapPolicy, held: Bool = false, waiting: Bool = false) -> CronPlanner.Plan {
        plan(
            hourly,
            .init(
                nextFireMs: h10, missedWindowMs: 10_800_000, overlap: overlap, held: held, waiting: waiting,
                nowMs: h12 + 30_000))
    }

    @Test func overlapAllowFiresEveryDueFire() {
        #expect(overlapped(.allow) == CronPlanner.Plan(fires: [h10, h11, h12], nextFireMs: h13, skipped: 0))
        // Neither a held lock nor a waiting job matters.
        #expect(overlapped(.allow, held: true, waiting: true).fires == [h10, h11, h12])
    }

    @Test func overlapSkipLetsTheLatestFireStandForAll() {
        #expect(overlapped(.skip) == CronPlanner.Plan(fires: [h12], nextFireMs: h13, skipped: 2))
        // A waiting job does not hold a "skip" schedule back; only its lock does.
        #expect(overlapped(.skip, waiting: true).fires == [h12])
    }

    @Test func overlapSkipFiresNothingWhileTheLockIsHeld() {
        #expect(overlapped(.skip, held: true) == CronPlanner.Plan(fires: [], nextFireMs: h13, skipped: 3))
    }

    @Test func overlapBufferOneLetsTheLatestFireStandForAll() {
        #expect(overlapped(.bufferOne) == CronPlanner.Plan(fires: [h12], nextFireMs: h13, skipped: 2))
        // A held lock does not hold a "bufferOne" schedule back; only a waiting job does.
        #expect(overlapped(.bufferOne, held: true).fires == [h12])
    }

    @Test func overlapBufferOneFiresNothingWhileAJobWaits() {
        #expect(overlapped(.bufferOne, waiting: true) == CronPlanner.Plan(fires: [], nextFireMs: h13, skipped: 3))
    }

    /// A missed fire that `runOnce` would run is skipped, not missed, when the lock is held.
    @Test func aHeldLockSkipsTheMissedFireThatRunOnceWouldRun() {
        let p = plan(
            hourly, .init(nextFireMs: h10, missed: .runOnce, overlap: .skip, held: true, nowMs: h12 + 1_800_000))
        #expect(p == CronPlanner.Plan(fires: [], nextFireMs: h13, skipped: 1, missed: 2))
    }

    // MARK: Limit and window

    @Test func theLimitCutsTheFiresAndEndsTheSchedule() {
        func limited(runs: Int64, limit: Int64) -> CronPlanner.Plan {
            plan(
                hourly,
                .init(nextFireMs: h10, missedWindowMs: 10_800_000, limit: limit, runs: runs, nowMs: h12 + 30_000))
        }
        #expect(limited(runs: 0, limit: 5) == CronPlanner.Plan(fires: [h10, h11, h12], nextFireMs: h13))
        #expect(limited(runs: 2, limit: 5) == CronPlanner.Plan(fires: [h10, h11, h12], nextFireMs: nil))
        #expect(limited(runs: 3, limit: 5) == CronPlanner.Plan(fires: [h10, h11], nextFireMs: nil))
        #expect(limited(runs: 5, limit: 5) == CronPlanner.Plan(fires: [], nextFireMs: nil))
    }

    @Test func theEndOfTheWindowEndsTheSchedule() {
        let p = plan(
            hourly, .init(nextFireMs: h10, missedWindowMs: 10_800_000, endAtMs: h11 + 1_800_000, nowMs: h12 + 30_000))
        #expect(p == CronPlanner.Plan(fires: [h10, h11], nextFireMs: nil))
    }

    // MARK: Daylight-saving time

    /// `30 2 * * *` in New York, 2026-03-08 spring forward (02:00 EST → 03:00 EDT): by default the fire
    /// inside the gap runs at 03:00 EDT; with `dstGap: "skip"` it does not run.
    @Test func aFireInASpringForwardGapRunsAtTheTransitionOrNotAtAll() throws {
        let due = CronPlanner.Due(
            nextFireMs: Self.at("2026-03-07T07:30:00Z"), missed: .runAll, nowMs: Self.at("2026-03-08T12:00:00Z"))
        let byDefault = try CronSchedule.parse("30 2 * * *", timezone: "America/New_York")
        #expect(
            plan(byDefault, due)
                == CronPlanner.Plan(
                    fires: [Self.at("2026-03-07T07:30:00Z"), Self.at("2026-03-08T07:00:00Z")],
                    nextFireMs: Self.at("2026-03-09T06:30:00Z")))
        let skipping = try CronSchedule.parse("30 2 * * *", timezone: "America/New_York", dstGap: .skip)
        #expect(
            plan(skipping, due)
                == CronPlanner.Plan(
                    fires: [Self.at("2026-03-07T07:30:00Z")], nextFireMs: Self.at("2026-03-09T06:30:00Z")))
    }

    /// `30 1 * * *` in New York, 2026-11-01 fall back (02:00 EDT → 01:00 EST): 01:30 happens twice; by
    /// default it fires once (01:30 EDT), with `dstFold: "twice"` at both.
    @Test func aFireInARepeatedHourRunsOnceOrTwice() throws {
        let due = CronPlanner.Due(
            nextFireMs: Self.at("2026-10-31T05:30:00Z"), missed: .runAll, nowMs: Self.at("2026-11-01T12:00:00Z"))
        let once = try CronSchedule.parse("30 1 * * *", timezone: "America/New_York")
        #expect(
            plan(once, due)
                == CronPlanner.Plan(
                    fires: [Self.at("2026-10-31T05:30:00Z"), Self.at("2026-11-01T05:30:00Z")],
                    nextFireMs: Self.at("2026-11-02T06:30:00Z")))
        let twice = try CronSchedule.parse("30 1 * * *", timezone: "America/New_York", dstFold: .twice)
        #expect(
            plan(twice, due).fires
                == [Self.at("2026-10-31T05:30:00Z"), Self.at("2026-11-01T05:30:00Z"), Self.at("2026-11-01T06:30:00Z")])
    }

    /// The transition fire counts like any other: late past the window, `runOnce` runs it as the latest
    /// missed fire.
    @Test func aLateTransitionFireIsTheOneRunOnceRuns() throws {
        let s = try CronSchedule.parse("30 2 * * *", timezone: "America/New_York")
        let p = plan(
            s,
            .init(nextFireMs: Self.at("2026-03-07T07:30:00Z"), missed: .runOnce, nowMs: Self.at("2026-03-08T12:00:00Z"))
        )
        #expect(
            p
                == CronPlanner.Plan(
                    fires: [Self.at("2026-03-08T07:00:00Z")], nextFireMs: Self.at("2026-03-09T06:30:00Z"), missed: 1))
    }

    // MARK: Paused, resumed, created

    @Test func aPausedScheduleShowsNoUpcomingFires() {
        func upcoming(paused: Bool, limit: Int64? = nil, runs: Int64 = 0, endAtMs: Int64? = nil) -> [Int64] {
            CronPlanner.upcoming(
                hourly, first: h12, paused: paused, startAtMs: nil, endAtMs: endAtMs, limit: limit, runs: runs, count: 5
            )
        }
        #expect(upcoming(paused: true) == [])
        #expect(upcoming(paused: false) == (0..<5).map { h12 + Int64($0) * 3_600_000 })
        #expect(upcoming(paused: false, limit: 3, runs: 1) == [h12, h13])
        #expect(upcoming(paused: false, endAtMs: h13) == [h12, h13])
        #expect(
            CronPlanner.upcoming(
                hourly, first: nil, paused: false, startAtMs: nil, endAtMs: nil, limit: nil, runs: 0, count: 5) == [])
    }

    /// Resuming at 12:30 after a pause since before 10:00: the fires of the pause are neither run nor
    /// counted as missed.
    @Test func aResumedScheduleFiresFromTheNextTimeAfterNow() {
        let now = h12 + 1_800_000
        let next = CronPlanner.resumedNextFire(hourly, nowMs: now, startAtMs: nil, endAtMs: nil)
        #expect(next == h13)
        #expect(plan(hourly, .init(nextFireMs: next, nowMs: now)) == CronPlanner.Plan(fires: [], nextFireMs: h13))
        #expect(CronPlanner.resumedNextFire(hourly, nowMs: now, startAtMs: nil, endAtMs: h12 + 3_000_000) == nil)
    }

    @Test func theFirstFireAfterCreationIsStrictlyAfterNow() {
        #expect(CronPlanner.firstFire(hourly, nowMs: h12, startAtMs: nil, endAtMs: nil) == .at(h13))
        #expect(CronPlanner.firstFire(hourly, nowMs: h12 - 1, startAtMs: nil, endAtMs: nil) == .at(h12))
    }

    @Test func theFirstFireIsNotBeforeStartAt() {
        let july = Self.at("2026-07-01T00:00:00Z")
        // startAt itself is a candidate.
        #expect(CronPlanner.firstFire(hourly, nowMs: noon, startAtMs: july, endAtMs: nil) == .at(july))
        #expect(
            CronPlanner.firstFire(hourly, nowMs: noon, startAtMs: july + 1_800_000, endAtMs: nil)
                == .at(july + 3_600_000))
        // A startAt in the past changes nothing.
        #expect(CronPlanner.firstFire(hourly, nowMs: noon, startAtMs: h10, endAtMs: nil) == .at(h13))
        // An interval counts from its startAt.
        let anchored = CronSchedule(everyMs: 60_000, anchorMs: noon - 100_000)
        #expect(
            CronPlanner.firstFire(anchored, nowMs: noon, startAtMs: noon - 100_000, endAtMs: nil) == .at(noon + 20_000))
        let later = CronSchedule(everyMs: 90_000, anchorMs: noon + 10_000)
        #expect(CronPlanner.firstFire(later, nowMs: noon, startAtMs: noon + 10_000, endAtMs: nil) == .at(noon + 10_000))
    }

    @Test func aFirstFirePastEndAtIsAClosedWindowAndNoneAtAllIsNever() {
        #expect(CronPlanner.firstFire(hourly, nowMs: noon, startAtMs: nil, endAtMs: noon + 60_000) == .windowClosed)
        #expect(CronPlanner.firstFire(hourly, nowMs: noon, startAtMs: nil, endAtMs: h13) == .at(h13))
        // Nothing after the last instant RFC 3339 can write.
        #expect(
            CronPlanner.firstFire(hourly, nowMs: CronSchedule.latestFireMs - 1_000, startAtMs: nil, endAtMs: nil)
                == .never)
    }

    // MARK: The advance written

    @Test func eachFireBecomesAJobOfTheTemplate() {
        var random = SplitMix(seed: 1)
        var template = JobSpec(queue: "q", kind: "k")
        template.priority = 3
        let p = CronPlanner.Plan(fires: [h10, h11], nextFireMs: h12, skipped: 1, missed: 4)
        let adv = CronPlanner.advance(p, name: "nightly", claimSeq: 7, template: template, jitterMs: 0, using: &random)
        #expect(adv.name == "nightly")
        #expect(adv.claimSeq == 7)
        #expect(adv.nextFireMs == h12)
        #expect(adv.runs == 2)
        #expect(adv.skipped == 1)
        #expect(adv.missed == 4)
        #expect(adv.lastNominalMs == h11)
        #expect(adv.webhookFires == [])
        #expect(adv.jobs.map(\.scheduleFireMs) == [h10, h11])
        #expect(adv.jobs.map(\.runAtMs) == [h10, h11])
        #expect(adv.jobs.allSatisfy { $0.scheduleName == "nightly" && $0.queue == "q" && $0.priority == 3 })
    }

    @Test func jitterDelaysEachJobByAtMostJitterMs() {
        var random = SplitMix(seed: 42)
        let fires = (0..<200).map { h10 + Int64($0) * 1_000 }
        let adv = CronPlanner.advance(
            CronPlanner.Plan(fires: fires, nextFireMs: nil), name: "s", claimSeq: 1,
            template: JobSpec(queue: "q", kind: "k"),
            jitterMs: 500, using: &random)
        let delays = zip(adv.jobs, fires).map { $0.runAtMs! - $1 }
        #expect(delays.allSatisfy { (0...500).contains($0) })
        #expect(Set(delays).count > 50)
        // The nominal time is untouched: it is what makes a fire's job unique.
        #expect(adv.jobs.map(\.scheduleFireMs) == fires)
    }

    @Test func aWebhookTargetFiresDeliveries() {
        var random = SplitMix(seed: 1)
        let adv = CronPlanner.advance(
            CronPlanner.Plan(fires: [h10, h11], nextFireMs: h12), name: "hook", claimSeq: 1, template: nil,
            jitterMs: 500,
            using: &random)
        #expect(adv.webhookFires == [h10, h11])
        #expect(adv.jobs.isEmpty)
        #expect(adv.runs == 2)
    }

    /// A batch that fires nothing leaves the last fire as it was (the statement keeps it when null).
    @Test func anAdvanceWithoutFiresRecordsNoLastFire() {
        var random = SplitMix(seed: 1)
        let adv = CronPlanner.advance(
            CronPlanner.Plan(fires: [], nextFireMs: h13, skipped: 3), name: "s", claimSeq: 1,
            template: JobSpec(queue: "q", kind: "k"), jitterMs: 0, using: &random)
        #expect(adv.runs == 0)
        #expect(adv.lastNominalMs == nil)
        #expect(adv.jobs.isEmpty)
        #expect(adv.skipped == 3)
    }
}
