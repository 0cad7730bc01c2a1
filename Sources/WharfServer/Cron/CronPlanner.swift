import WharfCore
import WharfStore

/// What `missed` says about fires more than `missedWindowMs` late.
enum MissedPolicy: String, CaseIterable {
    /// Missed fires are counted, not run.
    case skip
    /// When no fire inside the window is due, the latest missed fire runs; the others are counted.
    case runOnce
    /// Every missed fire runs (up to `CronPlanner.maxFiresPerBatch` per batch).
    case runAll
}

/// What `overlap` says about a fire while an earlier run of the schedule is unfinished.
enum OverlapPolicy: String, CaseIterable {
    /// Every fire makes a job.
    case allow
    /// No fire while the schedule's lock `cron:<name>` is held or has someone in line.
    case skip
    /// No fire while a job of the schedule waits to start.
    case bufferOne
}

/// The scheduler's decisions, without I/O: which fires a claimed schedule makes now under its missed
/// and overlap policies, where it goes next, and when a new or resumed schedule first fires.
///
/// Every input is a value (the database's clock included); randomness (jitter) is passed in. The
/// scheduler (`CronService`) claims, calls `plan`, and writes what it returns.
enum CronPlanner {
    /// Fires computed per schedule per batch for `missed: "runAll"` (more wait for the next batch);
    /// the other policies count up to ten times as many missed fires before jumping to the present.
    static let maxFiresPerBatch = 1_000

    /// The fields of a claimed schedule that its fires depend on.
    struct Due: Equatable {
        /// The stored next nominal fire (due: at or before `nowMs`); nil when none is left.
        var nextFireMs: Int64?
        var missed: MissedPolicy = .runOnce
        var missedWindowMs: Int64 = 60_000
        var overlap: OverlapPolicy = .allow
        var startAtMs: Int64?
        var endAtMs: Int64?
        var limit: Int64?
        /// Fires made so far (`stats.runs`), for `limit`.
        var runs: Int64 = 0
        /// The schedule's lock `cron:<name>` holds fires back (held, or someone in line).
        var held = false
        /// A job of the schedule waits to start.
        var waiting = false
        /// The database's clock.
        var nowMs: Int64
    }

    /// What one claimed schedule does now.
    struct Plan: Equatable {
        /// The nominal fire times that make a job (or delivery), oldest first.
        var fires: [Int64] = []
        /// Where the schedule goes next; nil when it has no fire left.
        var nextFireMs: Int64?
        /// Due fires dropped by the overlap policy (`stats.skippedOverlap`).
        var skipped: Int64 = 0
        /// Fires more than the missed window late that do not run (`stats.missed`).
        var missed: Int64 = 0
    }

    /// Decides what a claimed schedule fires now and where it goes next.
    static func plan(_ d: Due, schedule: CronSchedule) -> Plan {
        guard let first = d.nextFireMs else { return Plan() }
        let next = { (after: Int64) in
            nextFire(schedule, afterMs: after, startAtMs: d.startAtMs, endAtMs: d.endAtMs)
        }
        let windowStart = d.nowMs - d.missedWindowMs
        let stepCap = d.missed == .runAll ? maxFiresPerBatch : 10 * maxFiresPerBatch
        var inWindow: [Int64] = []
        var missedFires: [Int64] = []
        var lastMissed: Int64?
        var missedCount: Int64 = 0
        var t: Int64? = first
        var steps = 0
        while let f = t, f <= d.nowMs, steps < stepCap {
            if f < windowStart {
                missedCount += 1
                if d.missed == .runAll { missedFires.append(f) } else { lastMissed = f }
            } else {
                inWindow.append(f)
            }
            t = next(f)
            steps += 1
        }
        if let f = t, f < windowStart, d.missed != .runAll {
            // A long outage of a frequent schedule: jump over the rest of the missed fires uncounted.
            t = next(windowStart - 1)
        }
        var fires: [Int64]
        switch d.missed {
        case .runAll:
            fires = missedFires + inWindow
            missedCount = 0
        case .runOnce:
            if inWindow.isEmpty, let m = lastMissed {
                fires = [m]
                missedCount -= 1
            } else {
                fires = inWindow
            }
        case .skip:
            fires = inWindow
        }
        var skipped: Int64 = 0
        switch d.overlap {
        case .skip where d.held, .bufferOne where d.waiting:
            skipped = Int64(fires.count)
            fires = []
        case .skip, .bufferOne:
            // Never start several runs of a one-at-a-time schedule at once: the latest fire stands for all.
            if fires.count > 1 {
                skipped = Int64(fires.count - 1)
                fires = [fires.last!]
            }
        case .allow:
            break
        }
        if let limit = d.limit {
            let left = max(limit - d.runs, 0)
            if Int64(fires.count) >= left {
                fires = Array(fires.prefix(Int(left)))
                t = nil
            }
        }
        return Plan(fires: fires, nextFireMs: t, skipped: skipped, missed: missedCount)
    }

    /// The first fire strictly after `afterMs` that the schedule's window allows.
    static func nextFire(_ schedule: CronSchedule, afterMs: Int64, startAtMs: Int64?, endAtMs: Int64?) -> Int64? {
        let after = max(afterMs, (startAtMs ?? Int64.min + 1) - 1)
        guard let next = schedule.nextFire(afterMs: after) else { return nil }
        if let endAtMs, next > endAtMs { return nil }
        return next
    }

    /// When a schedule defined (or redefined) at `nowMs` first fires.
    enum FirstFire: Equatable {
        /// At this time.
        case at(Int64)
        /// Its window has closed: the first fire from now (or `startAt`) on is past `endAt`. Accepted,
        /// with no next fire.
        case windowClosed
        /// The definition has no fire from now (or `startAt`) on at all: refused.
        case never
    }

    /// The first fire of a schedule created or replaced at `nowMs`: strictly after now and not before
    /// `startAt`.
    static func firstFire(_ schedule: CronSchedule, nowMs: Int64, startAtMs: Int64?, endAtMs: Int64?) -> FirstFire {
        guard let first = nextFire(schedule, afterMs: nowMs, startAtMs: startAtMs, endAtMs: nil) else { return .never }
        if let endAtMs, first > endAtMs { return .windowClosed }
        return .at(first)
    }

    /// The next fire of a schedule resumed at `nowMs`: fires that fell in the pause are neither run
    /// nor counted as missed.
    static func resumedNextFire(_ schedule: CronSchedule, nowMs: Int64, startAtMs: Int64?, endAtMs: Int64?) -> Int64? {
        nextFire(schedule, afterMs: nowMs, startAtMs: startAtMs, endAtMs: endAtMs)
    }

    /// Up to `count` fires from `first` on (inclusive), within the schedule's end and limit; none for
    /// a paused schedule.
    static func upcoming(
        _ schedule: CronSchedule, first: Int64?, paused: Bool, startAtMs: Int64?, endAtMs: Int64?, limit: Int64?,
        runs: Int64, count: Int
    ) -> [Int64] {
        guard !paused, let first else { return [] }
        var left = min(Int64(count), limit.map { max($0 - runs, 0) } ?? Int64(count))
        var out: [Int64] = []
        var t: Int64? = first
        while left > 0, let f = t {
            out.append(f)
            left -= 1
            t = nextFire(schedule, afterMs: f, startAtMs: startAtMs, endAtMs: endAtMs)
        }
        return out
    }

    /// The advance the fire statement writes for `plan`: one job per fire from the schedule's job
    /// template (run at its fire time plus up to `jitterMs`), or, without a template, one webhook
    /// delivery per fire.
    static func advance(
        _ plan: Plan, name: String, claimSeq: Int64, template: JobSpec?, jitterMs: Int64,
        using random: inout some RandomNumberGenerator
    ) -> ScheduleAdvance {
        var adv = ScheduleAdvance(name: name, claimSeq: claimSeq, nextFireMs: plan.nextFireMs)
        adv.runs = Int64(plan.fires.count)
        adv.skipped = plan.skipped
        adv.missed = plan.missed
        adv.lastNominalMs = plan.fires.last
        if let template {
            adv.jobs = plan.fires.map { f in
                var spec = template
                spec.scheduleName = name
                spec.scheduleFireMs = f
                spec.runAtMs = jitterMs > 0 ? f + Int64.random(in: 0...jitterMs, using: &random) : f
                return spec
            }
        } else {
            adv.webhookFires = plan.fires
        }
        return adv
    }
}

extension CronPlanner.Due {
    /// A claimed schedule's fields. A policy the scheduler does not know (the table's CHECKs allow none)
    /// reads as `missed: "skip"`, `overlap: "allow"`.
    init(_ d: DueSchedule) {
        let row = d.row
        self.init(
            nextFireMs: row.nextFireMs, missed: MissedPolicy(rawValue: row.missed) ?? .skip,
            missedWindowMs: row.missedWindowMs, overlap: OverlapPolicy(rawValue: row.overlap) ?? .allow,
            startAtMs: row.startAtMs, endAtMs: row.endAtMs, limit: row.limit, runs: row.runs, held: d.held,
            waiting: d.waiting, nowMs: d.nowMs)
    }
}
