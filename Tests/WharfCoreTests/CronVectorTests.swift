import Foundation
import Testing

@testable import WharfCore

/// Differential tests against the `cronsim` package (see `cron_oracle.py`): random expressions, zones and
/// start instants concentrated around DST transitions, compared fire by fire.
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
        let source = CronZoneRulesTests.zoneinfo + "/tzdata.zi"
        try #require(FileManager.default.fileExists(atPath: source), "no \(source)")
        let directory = NSTemporaryDirectory() + "cron-slim-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let zic = Process()
        zic.executableURL = URL(fileURLWithPath: "/usr/sbin/zic")
        zic.arguments = ["-b", "slim", "-d", directory, source]
        try zic.run()
        zic.waitUntilExit()
        try #require(zic.terminationStatus == 0)

        var zones: [String: ZoneRules] = [:]
        let url = Self.directory.appendingPathComponent("Resources/cron-vectors.json")
        let (seed, cases) = try Self.cases(from: Data(contentsOf: url))
        Self.check(cases, seed: seed) { name in
            if let zone = zones[name] { return zone }
            if name == "UTC" { return .utc }
            let bytes = try #require(FileManager.default.contents(atPath: directory + "/" + name))
            let zone = try ZoneRules(identifier: name, tzif: [UInt8](bytes))
            zones[name] = zone
            return zone
        }
        // The slim files really do leave the years after 2007 to the footers.
        let slim = zones.values.reduce(0) { $0 + $1.transitions.count }
        let fat = try zones.keys.reduce(0) { $0 + (try ZoneRules.load($1)).transitions.count }
        #expect(slim < fat - 200, "slim \(slim), fat \(fat) transitions")
    }

    /// Runs the oracle on a fresh random seed. Skipped (with a note) when cronsim is not importable,
    /// unless the `CI` environment variable is set, in which case that is a failure.
    @Test(.enabled(if: Oracle.shouldRun, Oracle.skipNote))
    func liveAgainstCronsim() throws {
        guard Oracle.available else {
            Issue.record("CI is set but cronsim cannot be imported; install it with: python3 -m pip install cronsim")
            return
        }
        let seed = Int.random(in: 1...999_999_999)
        let output = try Oracle.run(["--seed", String(seed), "--count", "300"])
        let (echoed, cases) = try Self.cases(from: output)
        #expect(echoed == seed)
        #expect(cases.count == 300)
        Self.check(cases, seed: seed)
    }
}

/// Running `cron_oracle.py`.
enum Oracle {
    static let script = CronVectorTests.directory.appendingPathComponent("cron_oracle.py").path

    /// Whether `python3 -c "import cronsim"` succeeds.
    static let available: Bool = {
        (try? run(["-c", "import cronsim"], script: nil)) != nil
    }()

    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"].map { !$0.isEmpty } ?? false }
    static var shouldRun: Bool { available || isCI }
    static let skipNote: Comment =
        "cronsim is not installed (python3 -m pip install cronsim); live differential cron test skipped"

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs python3 with the oracle script (or just `arguments`) and returns its standard output.
    static func run(_ arguments: [String], script: String? = Oracle.script, timeoutSeconds: Int = 120) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + (script.map { [$0] } ?? []) + arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read stderr concurrently so a chatty child cannot block on a full pipe.
        let errorBox = DataBox()
        let reader = Thread { errorBox.data = stderr.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        // A stuck child must not hang the test run.
        let watchdog = Thread {
            for _ in 0..<(timeoutSeconds * 10) {
                if !process.isRunning { return }
                usleep(100_000)
            }
            if process.isRunning { process.terminate() }
        }
        watchdog.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !errorBox.done { usleep(1000) }
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errorBox.data, as: UTF8.self)
            throw Failure(
                description: "python3 \(arguments.joined(separator: " ")) exited "
                    + "\(process.terminationStatus): \(message)")
        }
        return output
    }

    /// Standard error collected on another thread.
    private final class DataBox: @unchecked Sendable {
        private let lock = NSLock()
        private var value = Data()
        private var finished = false

        var data: Data {
            get { lock.withLock { value } }
            set {
                lock.withLock {
                    value = newValue; finished = true
                }
            }
        }
        var done: Bool { lock.withLock { finished } }
    }
}
