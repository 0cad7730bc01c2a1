import Foundation
import Testing

@testable import WharfCore

/// The engine against independent implementations, on seeded random cases.
///
/// Each run draws a seed (or takes `WHARF_CRON_SEED`), generates `WHARF_CRON_CASES` cases (default
/// 3000) with ``CronCaseGenerator`` and sends them to `cron_oracle.py` in one batch, which answers with
/// cronsim and with its own transcription of the DST rule over Python's `zoneinfo`. A failure names
/// the seed; setting `WHARF_CRON_SEED` to it reproduces the run.
@Suite struct CronDifferentialTests {
    static let fires = 5

    static var seed: UInt64 {
        if let text = ProcessInfo.processInfo.environment["WHARF_CRON_SEED"], let seed = UInt64(text) { return seed }
        return UInt64.random(in: 1...999_999_999)
    }

    static var caseCount: Int {
        ProcessInfo.processInfo.environment["WHARF_CRON_CASES"].flatMap { Int($0) } ?? 3000
    }

    @Test(.enabled(if: Oracle.shouldRun, Oracle.skipNote))
    func randomCasesAgainstCronsimAndZoneinfo() throws {
        guard Oracle.available else {
            Issue.record("CI is set but cronsim cannot be imported; install it with: python3 -m pip install cronsim")
            return
        }
        let seed = Self.seed
        var generator = CronCaseGenerator(seed: seed)
        let cases = try (0..<Self.caseCount).map { _ in try generator.makeCase() }
        let tally = try Self.check(cases, fires: Self.fires, label: "seed \(seed)", slim: try SlimZones()) {
            "reproduce with WHARF_CRON_SEED=\(seed)"
        }
        #expect((tally["cronsim"] ?? 0) > cases.count / 2, "too few cases compared with cronsim: \(tally)")
    }

    /// Every transition from 1900 to 2040 of every distinct zone in the system database, a few cases
    /// each: a fixed time and a six-field time inside the skipped or repeated interval (with default and
    /// flipped policies), a start inside a repeated interval, and a wall-clock schedule across it. About
    /// 120,000 cases and a minute, so it runs only when `WHARF_CRON_EXHAUSTIVE` is set.
    @Test(.enabled(if: Oracle.shouldRun && ProcessInfo.processInfo.environment["WHARF_CRON_EXHAUSTIVE"] != nil))
    func everyTransitionOfEveryZone() throws {
        var seen = Set<String>()
        var cases: [CronCase] = []
        var generator = CronCaseGenerator(seed: 1)
        for name in try Self.systemZoneNames() {
            let rules = try ZoneRules.load(name)
            guard
                seen.insert(
                    "\(rules.initialOffset) \(rules.transitions) \(rules.offsets) \(String(describing: rules.footer))"
                ).inserted
            else { continue }
            for t in generator.transitions(of: rules) where t < 2_208_988_800 {
                cases += Self.transitionCases(rules, at: t)
            }
        }
        var failures = 0
        for chunk in stride(from: 0, to: cases.count, by: 20_000) {
            let part = Array(cases[chunk..<min(chunk + 20_000, cases.count)])
            let tally = try Self.check(part, fires: 3, label: "exhaustive \(chunk)", slim: nil) { "" }
            failures += tally["failures"] ?? 0
        }
        print("cron exhaustive: \(cases.count) cases over \(seen.count) distinct zones, \(failures) failures")
    }

    /// Cases probing the transition at `t`.
    static func transitionCases(_ rules: ZoneRules, at t: Int64) -> [CronCase] {
        let period = rules.period(containing: t)
        let before = Int64(period.previousOffset)
        let after = Int64(period.offset)
        // The local times skipped (before < after) or repeated (before > after), and one in the middle.
        let low = t + min(before, after)
        let high = t + max(before, after)
        let middle = (low + high) / 2
        let secondOfDay = Int(middle - Int64(CivilCalendar.floorDiv(Int(middle), 86_400)) * 86_400)
        let (h, m, sec) = (secondOfDay / 3600, secondOfDay / 60 % 60, secondOfDay % 60)
        let day: Int64 = 86_400_000
        func make(_ text: String, _ start: Int64, _ gap: DSTGapPolicy? = nil, _ fold: DSTFoldPolicy? = nil) -> CronCase
        {
            CronCase(
                expression: text, oracleExpression: text, zone: rules.identifier, startMs: start, dstGap: gap,
                dstFold: fold)
        }
        var cases = [
            make("\(sec) \(m) \(h) * * *", t * 1000 - day),
            make("*/15 * * * *", t * 1000 - 2 * 3_600_000),
        ]
        let minute = (middle / 60) * 60
        if minute >= low {
            cases.append(make("\(m) \(h) * * *", t * 1000 - day))
            cases.append(make("\(m) \(h) * * *", t * 1000 - day, .skip, .twice))
        }
        if before > after {
            cases.append(make("\(m) \(h) * * *", (t + (before - after) / 2) * 1000))
        }
        return cases
    }

    /// Sends cases to the oracle in one batch and compares the engine's next `fires` fires with its
    /// answers (and, given slim zone files, the engine's fires under them). Records an issue per
    /// difference, labelled; returns how many cases each source answered, and `failures`.
    @discardableResult
    static func check(
        _ cases: [CronCase], fires: Int, label: String, slim: SlimZones?, hint: () -> String
    ) throws -> [String: Int] {
        let query: [[Any]] = cases.map { c in
            let policy: Any =
                c.dstGap.map { [$0.rawValue, c.dstFold?.rawValue ?? DSTFoldPolicy.once.rawValue] } ?? NSNull()
            return [c.oracleExpression, c.zone, NSNumber(value: c.startMs), fires, policy, c.dayMatch.rawValue]
        }
        let document = try Oracle.answer(["cases": query])
        let answers = try #require(document["cases"] as? [[String: Any]])
        try #require(answers.count == cases.count)

        var tally: [String: Int] = [:]
        var failures = 0
        var skipped: [String] = []
        func fail(_ message: String) {
            failures += 1
            if failures <= 25 { Issue.record("\(label): \(message)") }
        }
        for (index, (c, answer)) in zip(cases, answers).enumerated() {
            let source = answer["source"] as? String ?? "?"
            let note = answer["note"] as? String
            tally[note.map { "\(source): \($0)" } ?? source, default: 0] += 1
            let describe =
                "#\(index) '\(c.expression)' in \(c.zone) after \(c.startMs) ms"
                + (c.dstGap.map { " dstGap \($0) dstFold \(c.dstFold!)" } ?? "")
                + (c.dayMatch == .and ? " dayMatch and" : "")
            let schedule: CronSchedule
            do {
                let expression = try CronExpression(c.expression, dayMatch: c.dayMatch)
                schedule = CronSchedule(
                    expression: expression, zone: try ZoneRules.load(c.zone), dstGap: c.dstGap, dstFold: c.dstFold)
            } catch {
                // The engine rejects only expressions that can never fire; cronsim then rejects them too or
                // finds nothing within 50 years.
                if source != "skip" { fail("\(describe) rejected: \(error)") }
                continue
            }
            guard source != "skip" else {
                if skipped.count < 10 {
                    skipped.append("\(note ?? "?"): '\(c.oracleExpression)' \(c.zone) \(c.startMs)")
                }
                continue
            }
            let expected = (answer["fires"] as? [NSNumber] ?? []).map { $0.int64Value * 1000 }
            let ours = schedule.nextFires(afterMs: c.startMs, count: fires)
            let show = { (fires: [Int64]) in fires.map { formatLocal($0, schedule.zone) } }
            if let slim, let slimZone = try? slim.load(c.zone),
                SlimZones.sameOffsets(slimZone, schedule.zone, from: c.startMs / 1000, to: (ours.last ?? 0) / 1000)
            {
                // The same schedule with the zone's later years described by its footer rule alone.
                let footer = CronSchedule(
                    expression: try CronExpression(c.expression, dayMatch: c.dayMatch), zone: slimZone,
                    dstGap: c.dstGap, dstFold: c.dstFold)
                let slimFires = footer.nextFires(afterMs: c.startMs, count: fires)
                if slimFires != ours {
                    fail("\(describe): slim zone file gives \(show(slimFires)), full gives \(show(ours))")
                }
            }
            if source == "unexplained" {
                let reference = (answer["reference"] as? [NSNumber] ?? []).map { $0.int64Value * 1000 }
                fail(
                    """
                    \(describe): cronsim and the reference disagree for no known reason
                      cronsim:   \(show(expected))
                      reference: \(show(reference))
                      ours:      \(show(ours))
                    """)
            } else if ours != expected {
                fail(
                    """
                    \(describe), start \(formatLocal(c.startMs, schedule.zone))
                      expected (\(source)\(note.map { ", \($0)" } ?? "")): \(show(expected))
                      ours:     \(show(ours))
                    """)
            }
        }
        let summary = tally.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        print("cron differential, \(label), \(cases.count) cases: \(summary)")
        if !skipped.isEmpty { print("skipped, e.g.:\n  " + skipped.joined(separator: "\n  ")) }
        #expect(failures == 0, "\(label): \(failures) of \(cases.count) cases differ; \(hint())")
        tally["failures"] = failures
        return tally
    }

    /// ``ZoneRules`` offsets against Python's `zoneinfo` for every zone of the system database: at
    /// random instants from 1850 to 2150, one second either side of each transition the engine knows
    /// from 1900 to 2040 (and of every fifth to 2100), and halfway between each two of those.
    @Test(.enabled(if: Oracle.shouldRun, Oracle.skipNote))
    func zoneOffsetsAgainstZoneinfo() throws {
        guard Oracle.available else { return }
        let seed = Self.seed
        var generator = CronCaseGenerator(seed: seed)
        let names = try Self.systemZoneNames()
        try #require(names.count > 300)
        var queries: [(String, Int64)] = []
        let low = CivilCalendar.dayNumber(year: 1850, month: 1, day: 1) * 86_400
        let high = CivilCalendar.dayNumber(year: 2150, month: 1, day: 1) * 86_400
        for name in names {
            let rules = try ZoneRules.load(name)
            for _ in 0..<40 { queries.append((name, Int64(generator.int(low...high)))) }
            // Past 2040 only footer rules remain; every fifth of their transitions is enough.
            let all = generator.transitions(of: rules)
            let transitions = all.enumerated().filter { $0.element < 2_208_988_800 || $0.offset % 5 == 0 }.map(
                \.element)
            for t in transitions { queries += [(name, t - 1), (name, t)] }
            // Between two transitions the offset must not change: a transition missing here would show.
            for (a, b) in zip(transitions, transitions.dropFirst()) {
                queries.append((name, a + (b - a) / 2))
            }
        }
        let document = try Oracle.answer(["offsets": queries.map { [$0.0, NSNumber(value: $0.1)] }])
        let offsets = try #require(document["offsets"] as? [NSNumber])
        try #require(offsets.count == queries.count)
        var failures = 0
        for ((name, t), expected) in zip(queries, offsets) {
            let ours = try ZoneRules.load(name).offset(atUTCSeconds: t)
            if ours != expected.intValue {
                failures += 1
                if failures <= 25 {
                    Issue.record(
                        "\(name) at \(Timestamp.format(epochMs: t * 1000)) (\(t)): ours \(ours), zoneinfo \(expected)")
                }
            }
        }
        #expect(failures == 0, "\(failures) of \(queries.count) offsets differ (seed \(seed))")
    }

    /// Zones compiled by `zic -b slim` into a temporary directory, as the system database would be if
    /// built slim: the files stop listing transitions once the POSIX TZ footer describes them (from 2007
    /// for most zones), so the footer rules carry the years after that. Nil when `zic` or the database
    /// source `tzdata.zi` is missing.
    final class SlimZones {
        let directory = NSTemporaryDirectory() + "cron-slim-\(UInt64.random(in: 0...UInt64.max))"
        private var loaded: [String: ZoneRules] = [:]

        init?() throws {
            let source = CronZoneRulesTests.zoneinfo + "/tzdata.zi"
            guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/zic"),
                FileManager.default.fileExists(atPath: source)
            else { return nil }
            let zic = Process()
            zic.executableURL = URL(fileURLWithPath: "/usr/sbin/zic")
            zic.arguments = ["-b", "slim", "-d", directory, source]
            try zic.run()
            zic.waitUntilExit()
            try #require(zic.terminationStatus == 0)
        }

        deinit { try? FileManager.default.removeItem(atPath: directory) }

        func load(_ name: String) throws -> ZoneRules {
            if name == "UTC" { return .utc }
            if let zone = loaded[name] { return zone }
            let bytes = try #require(FileManager.default.contents(atPath: directory + "/" + name))
            let zone = try ZoneRules(identifier: name, tzif: [UInt8](bytes))
            loaded[name] = zone
            return zone
        }

        /// The zones loaded so far.
        var zones: [String: ZoneRules] { loaded }

        /// Whether two zones have the same periods of constant offset from `from` to `to` (a day either
        /// side included).
        ///
        /// A slim file can describe a different zone than the system's: the system's `zic` may be older
        /// than the one that built the installed files and mishandle rules past 2037, as with Asia/Gaza's
        /// predicted Ramadan transitions (2083-05-15 is standard time in `tzdata.zi`, in the installed
        /// file and in Python's reading of it, but daylight time in glibc 2.36's slim output).
        static func sameOffsets(_ a: ZoneRules, _ b: ZoneRules, from: Int64, to: Int64) -> Bool {
            var t = from - 86_400
            while t <= to + 86_400 {
                let p = a.period(containing: t)
                let q = b.period(containing: t)
                guard p.offset == q.offset, p.end == q.end else { return false }
                guard let end = p.end else { return true }
                t = end
            }
            return true
        }
    }

    /// Every zone name in the system tz database (TZif files outside `posix/` and `right/`).
    static func systemZoneNames() throws -> [String] {
        let root = CronZoneRulesTests.zoneinfo
        let names = FileManager.default.subpaths(atPath: root) ?? []
        return names.sorted().filter { name in
            guard !name.hasPrefix("posix"), !name.hasPrefix("right"), name != "localtime",
                let handle = FileHandle(forReadingAtPath: root + "/" + name)
            else { return false }
            defer { try? handle.close() }
            return (try? handle.read(upToCount: 4)) == Data("TZif".utf8)
        }
    }
}
