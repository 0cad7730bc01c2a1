import Foundation
import Testing

@testable import WharfCore

/// Recorded vectors from the `cronsim` package: 6000 random expressions, zones and start instants
/// concentrated around DST transitions (seed 20261122, recorded by an earlier generator that has since
/// moved into ``CronCaseGenerator``), compared fire by fire. They pin behaviour without Python; the live
/// comparison is ``CronDifferentialTests``.
@Suite struct CronVectorTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()

    /// One oracle case: an expression in a zone, a start instant and the fires that follow it.
    struct Case {
        var expression: String
        var zone: String
        var startMs: Int64
        var fires: [Int64]
        /// "cronsim"; "scan" when the oracle's plain wall-clock scan replaced cronsim (a known cronsim
        /// problem); "either" when the two disagreed otherwise and `alternative` holds the scan's fires.
        var source: String
        var alternative: [Int64]?

        init?(_ row: [Any]) {
            guard row.count >= 4, let expression = row[0] as? String, let zone = row[1] as? String,
                let start = row[2] as? NSNumber, let fires = row[3] as? [NSNumber]
            else { return nil }
            self.expression = expression
            self.zone = zone
            startMs = start.int64Value
            self.fires = fires.map { $0.int64Value * 1000 }
            source = row.count > 4 ? (row[4] as? String ?? "?") : "cronsim"
            alternative = row.count > 5 ? (row[5] as? [NSNumber])?.map { $0.int64Value * 1000 } : nil
        }
    }

    /// Parses an oracle document: `{"seed": …, "cases": [[expr, zone, start_ms, [fire_s…]], …]}`.
    static func cases(from data: Data) throws -> (seed: Int, cases: [Case]) {
        let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let rows = try #require(document["cases"] as? [[Any]])
        let cases = rows.compactMap(Case.init)
        #expect(cases.count == rows.count, "malformed rows")
        return ((document["seed"] as? NSNumber)?.intValue ?? -1, cases)
    }

    /// Compares every case; returns the number compared. `zone` overrides how zones are loaded.
    @discardableResult
    static func check(_ cases: [Case], seed: Int, zone: ((String) throws -> ZoneRules)? = nil) -> Int {
        var failures = 0
        for c in cases {
            let schedule: CronSchedule
            do {
                if let zone {
                    schedule = CronSchedule(expression: try CronExpression(c.expression), zone: try zone(c.zone))
                } else {
                    schedule = try CronSchedule.parse(c.expression, timezone: c.zone)
                }
            } catch {
                failures += 1
                if failures <= 20 { Issue.record("seed \(seed): '\(c.expression)' in \(c.zone) rejected: \(error)") }
                continue
            }
            let ours = schedule.nextFires(afterMs: c.startMs, count: c.fires.count)
            if ours != c.fires && ours != c.alternative {
                failures += 1
                if failures <= 20 {
                    let show = { (fires: [Int64]) in fires.map { formatLocal($0, schedule.zone) } }
                    Issue.record(
                        """
                        seed \(seed): '\(c.expression)' in \(c.zone) after \(formatLocal(c.startMs, schedule.zone)) \
                        (\(c.startMs) ms)
                          expected (\(c.source)): \(show(c.fires))
                          ours:     \(show(ours))
                        """)
                }
            }
        }
        #expect(failures == 0, "\(failures) of \(cases.count) cases differ (seed \(seed))")
        return cases.count
    }

    @Test func committedVectors() throws {
        let url = Self.directory.appendingPathComponent("Resources/cron-vectors.json")
        let (seed, cases) = try Self.cases(from: Data(contentsOf: url))
        #expect(cases.count >= 5000)
        // The vectors must exercise what they are for.
        #expect(Set(cases.map(\.zone)).count >= 15)
        #expect(cases.filter { $0.expression.split(separator: " ").count == 6 }.count > 300)
        Self.check(cases, seed: seed)
    }

    /// The same vectors with zone files compiled by `zic -b slim`, which stop listing transitions once
    /// the POSIX TZ footer describes them, so the footer rules carry most of 2007-2035.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/zic")))
    func committedVectorsWithSlimZoneFiles() throws {
        let slim = try #require(try CronDifferentialTests.SlimZones(), "zic or tzdata.zi missing")
        let url = Self.directory.appendingPathComponent("Resources/cron-vectors.json")
        let (seed, cases) = try Self.cases(from: Data(contentsOf: url))
        Self.check(cases, seed: seed, zone: slim.load)
        // The slim files really do leave the years after 2007 to the footers.
        let slimCount = slim.zones.values.reduce(0) { $0 + $1.transitions.count }
        let fatCount = try slim.zones.keys.reduce(0) { $0 + (try ZoneRules.load($1)).transitions.count }
        #expect(slimCount < fatCount - 200, "slim \(slimCount), fat \(fatCount) transitions")
    }
}
