import Foundation
import Testing

@testable import WharfCore

/// The engine against independent implementations, on seeded random cases.
///
/// Each run draws a seed (or takes `WHARF_CRON_SEED`), generates `WHARF_CRON_CASES` cases (default
/// 3000) with ``CronCaseGenerator`` and sends them to `cron_oracle.py` in one batch, which answers with
/// cronsim and with its own transcription of the DST rule over Python's `zoneinfo`. A failure names
/// the seed, so `WHARF_CRON_SEED=<seed> swift test --filter CronDifferentialTests` reproduces it.
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
        let query: [[Any]] = cases.map { c in
            let policy: Any =
                c.dstGap.map { [$0.rawValue, c.dstFold?.rawValue ?? DSTFoldPolicy.once.rawValue] } ?? NSNull()
            return [c.oracleExpression, c.zone, NSNumber(value: c.startMs), Self.fires, policy, c.dayMatch.rawValue]
        }
        let document = try Oracle.answer(["cases": query])
        let answers = try #require(document["cases"] as? [[String: Any]])
        try #require(answers.count == cases.count)

        var tally: [String: Int] = [:]
        var failures = 0
        var skipped: [String] = []
        func fail(_ message: String) {
            failures += 1
            if failures <= 25 { Issue.record("seed \(seed): \(message)") }
        }
        for (index, (c, answer)) in zip(cases, answers).enumerated() {
            let source = answer["source"] as? String ?? "?"
            let note = answer["note"] as? String
            tally[note.map { "\(source): \($0)" } ?? source, default: 0] += 1
            let describe = "#\(index) '\(c.expression)' in \(c.zone) after \(c.startMs) ms"
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
                if skipped.count < 10 { skipped.append("\(note ?? "?"): '\(c.oracleExpression)' \(c.zone) \(c.startMs)") }
                continue
            }
            let expected = (answer["fires"] as? [NSNumber] ?? []).map { $0.int64Value * 1000 }
            let ours = schedule.nextFires(afterMs: c.startMs, count: Self.fires)
            let show = { (fires: [Int64]) in fires.map { formatLocal($0, schedule.zone) } }
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
        print("cron differential, seed \(seed), \(cases.count) cases: \(summary)")
        if !skipped.isEmpty { print("skipped, e.g.:\n  " + skipped.joined(separator: "\n  ")) }
        #expect(
            failures == 0,
            "\(failures) of \(cases.count) cases differ; reproduce with WHARF_CRON_SEED=\(seed)")
        #expect((tally["cronsim"] ?? 0) > cases.count / 2, "too few cases compared with cronsim: \(summary)")
    }

    /// ``ZoneRules`` offsets against Python's `zoneinfo` for every zone of the system database: at
    /// random instants from 1850 to 2150 and one second either side of each transition the engine
    /// knows from 1900 to 2100.
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
            for t in generator.transitions(of: rules) { queries += [(name, t - 1), (name, t)] }
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
