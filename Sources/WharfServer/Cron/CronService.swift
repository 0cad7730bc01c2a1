import Foundation
import Logging
import WharfCore
import WharfRPC
import WharfStore
import WharfUV

/// The scheduler on one replica.
///
/// It sleeps on one loop timer until the earliest next fire that PostgreSQL knows of, then claims due
/// schedules in batches (`FOR UPDATE SKIP LOCKED`, so replicas share the work), computes each one's
/// fires under its missed and overlap policies, and commits every batch as one statement that
/// advances the schedules by compare-and-set and inserts their jobs. A fire is therefore one
/// transaction; a replica that dies between claim and fire only delays the fire until its claim
/// expires. `NOTIFY wharf_wake 'cron:<ms>'` after a definition changes re-arms every replica's timer.
/// Loop thread only.
final class CronService {
    let context: ServiceContext
    var store: Store { context.store }
    /// Where fires' jobs go.
    let jobs: JobsService
    /// Where fires' webhook deliveries go.
    let webhooks: WebhooksService

    /// Schedules claimed per statement.
    var batchSize = 500
    /// Batches in flight at once.
    var maxBatches = 3
    /// How long a claim holds before another replica may take the schedule over.
    var claimMs: Int64 = 15_000
    /// The shortest period a schedule may have (`--cron-min-period-ms`).
    var minPeriodMs: Int64 { context.config.cronMinPeriodMs }

    /// Sleeps until the earliest next fire, by the database's clock.
    private lazy var timer = DueTimer(context) { [unowned self] in
        self.drained = false
        self.pump()
    }
    private var batchesInFlight = 0
    /// The last claim found fewer due schedules than it asked for.
    private var drained = true
    /// PostgreSQL's clock minus this machine's, from the last statement that read it.
    private(set) var dbClockOffsetMs: Int64 = 0
    /// Compiled timings by definition text, shared by schedules with equal timing and bounded, so
    /// removed schedules and a table of a million schedules cost no more than `compiledCapacity`
    /// entries (a few hundred bytes each; the zone rules inside are shared by every schedule of a zone).
    private var compiled = CronScheduleCache(capacity: CronService.compiledCapacity)
    /// How many compiled timings the scheduler keeps.
    static let compiledCapacity = 10_000


    /// `cron.upsert`s that leave `paused` as it is, one statement (one commit) per loop iteration.
    private(set) lazy var upserts = Batcher<(definition: ScheduleDefinition, nextFireMs: Int64?), (row: ScheduleRow, created: Bool)>(
        distinctBy: { $0.definition.name },
        schedule: context.batchSchedule,
        run: { [unowned self] items, done in self.store.upsertSchedules(items) { done($0.mapError(\.rpcError)) } })

    init(_ context: ServiceContext, jobs: JobsService, webhooks: WebhooksService) {
        self.context = context
        self.jobs = jobs
        self.webhooks = webhooks
    }

    func start() {
        context.onWake(.cron) { [unowned self] payload in
            // Empty: the schedule has no fire left.
            if let ms = Int64(payload) { self.wake(forFireAtMs: ms) }
        }
        // A safety net for wake-ups lost while the listening connection was down.
        context.addChore(everyMs: 10_000) { [unowned self] in self.poke() }
    }

    /// A schedule now fires at `ms`: look now only if the timer waits for a later time. Called for
    /// definitions changed here (the NOTIFY reaches other replicas, and this one too unless its
    /// listening connection is not up yet) and for the notifications of other replicas.
    func wake(forFireAtMs ms: Int64) { timer.wake(dueAtMs: ms) }

    /// Starts the scheduler once the server serves.
    func serving() { poke() }

    func stop() { timer.stop() }

    /// The server began draining: no more claims here. Batches already claimed still fire (the drain
    /// waits for them: `busy`), so this replica leaves no claim behind for the others to wait out.
    func drain() { timer.stop() }

    /// Claims or fires in flight.
    var busy: Bool { batchesInFlight > 0 }

    /// The database's clock as this replica estimates it.
    var dbNowMs: Int64 { Timestamp.nowMs() + dbClockOffsetMs }

    private func observe(dbNowMs now: Int64) { dbClockOffsetMs = now - Timestamp.nowMs() }

    /// Looks for due schedules soon (once per loop turn however often it is asked).
    func poke() { timer.poke() }

    private func pump() {
        guard !timer.stopped else { return }
        guard context.pool.isAvailable else { return arm(afterMs: 1_000) }
        while batchesInFlight < maxBatches && !drained {
            batchesInFlight += 1
            store.claimDueSchedules(limit: batchSize, claimMs: claimMs) { [unowned self] result in
                switch result {
                case .failure(let e):
                    self.context.logger.warning("claiming due schedules failed", metadata: ["error": "\(e)"])
                    self.batchesInFlight -= 1
                    self.drained = true
                    if self.batchesInFlight == 0 { self.arm(afterMs: 1_000) }
                case .success(let due):
                    if due.count < self.batchSize { self.drained = true }
                    if let now = due.first?.nowMs { self.observe(dbNowMs: now) }
                    guard !due.isEmpty else {
                        self.batchesInFlight -= 1
                        return self.batchFinished(foundNothing: true)
                    }
                    self.fire(due)
                    // Claim the next batch while this one commits.
                    self.pump()
                }
            }
        }
    }

    private func fire(_ due: [DueSchedule]) {
        let batch = due.map { advance($0) }
        store.fireSchedules(batch) { [unowned self] result in
            self.batchesInFlight -= 1
            switch result {
            case .success(let fired):
                self.context.metrics.cron.fired(fired.schedules, batch, nowMs: due.first?.nowMs ?? self.dbNowMs)
                // Events for the schedules that advanced (any other lost its claim to another replica).
                let advanced = Set(fired.schedules.map(\.name))
                self.context.raiseFired(fired.advanced == batch.count ? batch : batch.filter { advanced.contains($0.name) })
                // The statement's NOTIFYs reach every replica; this one need not wait for its own.
                for queue in Set(batch.flatMap { $0.jobs.map(\.queue) }) { self.jobs.wake(queue: queue) }
                if batch.contains(where: { !$0.webhookFires.isEmpty }) { self.webhooks.poke() }
            case .failure(let e):
                // The claims expire and another look fires them: nothing is lost, only late.
                self.context.logger.warning("firing schedules failed", metadata: ["error": "\(e)"])
            }
            self.batchFinished(foundNothing: false)
        }
    }

    private func batchFinished(foundNothing: Bool) {
        if !drained { return pump() }
        guard batchesInFlight == 0 else { return }
        store.nextScheduleDue { [unowned self] result in
            guard case .success(let next) = result else { return self.arm(afterMs: 1_000) }
            self.observe(dbNowMs: next.nowMs)
            let due = [next.nextFireMs, next.claimExpiryMs.map { $0 + 1 }].compactMap { $0 }.min()
            guard let due else { return self.timer.disarm() }
            // A due schedule that the claim did not get (locked by another replica's claim this
            // instant) is looked at again shortly rather than in a tight loop.
            self.arm(afterMs: max(due - next.nowMs, foundNothing ? 5 : 0))
        }
    }

    private func arm(afterMs delay: Int64) { timer.arm(afterMs: delay, nowMs: dbNowMs) }

    // MARK: Computing fires

    /// A schedule's timing and job template.
    struct SchedulePlan {
        let schedule: CronSchedule
        let job: JobSpec?
    }

    /// The row's timing, from the cache when a schedule with the same timing was compiled lately, and
    /// its job template (parsed each time: it is small next to the fire statement, and caching it per
    /// schedule is what made memory grow with every schedule ever seen).
    func plan(_ row: ScheduleRow) throws -> SchedulePlan {
        let job = try row.target["job"]?.objectValue.map { o throws(RPCError) in try JobSpec.parse(Params(object: o)) }
        return SchedulePlan(schedule: try schedule(row), job: job)
    }

    /// The row's compiled timing (cached by definition, see `compiled`).
    func schedule(_ row: ScheduleRow) throws -> CronSchedule {
        try schedule(
            expression: row.expression, everyMs: row.everyMs, timezone: row.timezone, dayMatch: row.dayMatch,
            dstGap: row.dstGap, dstFold: row.dstFold, startAtMs: row.startAtMs)
    }

    /// A definition's compiled timing, from the cache when the same timing was compiled lately: a
    /// `cron.upsert` or `cron.preview` of a common expression then costs no parse at all.
    func schedule(
        expression: String?, everyMs: Int64?, timezone: String, dayMatch: String, dstGap: String?, dstFold: String?,
        startAtMs: Int64?
    ) throws -> CronSchedule {
        let key = Self.timingKey(
            expression: expression, everyMs: everyMs, timezone: timezone, dayMatch: dayMatch, dstGap: dstGap,
            dstFold: dstFold, startAtMs: startAtMs)
        return try compiled.schedule(for: key) {
            try Self.compile(
                expression: expression, everyMs: everyMs, timezone: timezone, dayMatch: dayMatch, dstGap: dstGap,
                dstFold: dstFold, startAtMs: startAtMs)
        }
    }

    /// Everything `compile` reads, as one string. Each field is prefixed with its length, so no text
    /// a client sends (the key is built before the definition is validated) can make two different
    /// definitions share a key.
    static func timingKey(
        expression: String?, everyMs: Int64?, timezone: String, dayMatch: String, dstGap: String?, dstFold: String?,
        startAtMs: Int64?
    ) -> String {
        // The anchor matters to intervals only; leaving it out lets cron schedules share entries.
        let isInterval = everyMs != nil || expression?.lowercased().contains("@every") == true
        let fields: [String?] = [
            expression, everyMs.map(String.init), timezone, dayMatch, dstGap, dstFold,
            isInterval ? startAtMs.map(String.init) : nil,
        ]
        // "~" for an absent field, "<length>:<text>" for a present one.
        return fields.map { $0.map { "\($0.utf8.count):\($0)" } ?? "~" }.joined()
    }

    static func compile(
        expression: String?, everyMs: Int64?, timezone: String, dayMatch: String, dstGap: String?, dstFold: String?,
        startAtMs: Int64?
    ) throws -> CronSchedule {
        if let everyMs {
            return CronSchedule(everyMs: everyMs, anchorMs: startAtMs ?? 0, zone: try ZoneRules.load(timezone))
        }
        return try CronSchedule.parse(
            expression ?? "", timezone: timezone, dayMatch: DayMatch(rawValue: dayMatch) ?? .or,
            dstGap: dstGap.flatMap(DSTGapPolicy.init(rawValue:)), dstFold: dstFold.flatMap(DSTFoldPolicy.init(rawValue:)),
            anchorMs: startAtMs ?? 0)
    }

    /// Up to `count` fires from the row's next one on (inclusive), within its end and limit.
    func upcoming(_ row: ScheduleRow, count: Int) -> [Int64] {
        guard !row.paused, row.nextFireMs != nil, let schedule = try? self.schedule(row) else { return [] }
        return CronPlanner.upcoming(
            schedule, first: row.nextFireMs, paused: row.paused, startAtMs: row.startAtMs, endAtMs: row.endAtMs,
            limit: row.limit, runs: row.runs, count: count)
    }

    /// What one claimed schedule fires now and where it goes next (`CronPlanner` decides).
    func advance(_ d: DueSchedule) -> ScheduleAdvance {
        let row = d.row
        let stop = ScheduleAdvance(name: row.name, claimSeq: row.claimSeq, nextFireMs: nil)
        guard row.nextFireMs != nil else { return stop }
        let p: SchedulePlan
        do {
            p = try plan(row)
        } catch {
            // Validated at upsert, so only a tz database change can get here: stop rather than guess.
            context.logger.error("schedule cannot be evaluated", metadata: ["schedule": "\(row.name)", "error": "\(error)"])
            return stop
        }
        var random = SystemRandomNumberGenerator()
        return CronPlanner.advance(
            CronPlanner.plan(CronPlanner.Due(d), schedule: p.schedule), name: row.name, claimSeq: row.claimSeq,
            template: p.job, jitterMs: row.jitterMs, using: &random)
    }
}
