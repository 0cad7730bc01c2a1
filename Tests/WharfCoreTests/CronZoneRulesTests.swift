import Foundation
import Testing

@testable import WharfCore

/// The TZif reader and POSIX TZ footer rules.
@Suite struct CronZoneRulesTests {
    static let zoneinfo = "/usr/share/zoneinfo"

    @Test func offsetsFromTheTransitionTable() throws {
        let newYork = try ZoneRules.load("America/New_York")
        #expect(newYork.identifier == "America/New_York")
        let march8 = try #require(Timestamp.parse("2026-03-08T07:00:00Z")) / 1000
        #expect(newYork.offset(atUTCSeconds: march8 - 1) == -5 * 3600)
        #expect(newYork.offset(atUTCSeconds: march8) == -4 * 3600)
        #expect(try ZoneRules.load("Asia/Kolkata").offset(atUTCSeconds: march8) == 19_800)
        #expect(try ZoneRules.load("Asia/Kathmandu").offset(atUTCSeconds: march8) == 20_700)
        #expect(ZoneRules.utc.offset(atUTCSeconds: march8) == 0)
        #expect(try ZoneRules.load("UTC") == ZoneRules.utc)
        // Before the first transition: local mean time.
        let amsterdam1800 = try #require(Timestamp.parse("1800-01-01T00:00:00Z")) / 1000
        #expect(try ZoneRules.load("Europe/Amsterdam").offset(atUTCSeconds: amsterdam1800) == 1172)
    }

    @Test func offsetsFromTheFooterRuleBeyondTheTable() throws {
        let newYork = try ZoneRules.load("America/New_York")
        // 2050-03-13 and 2050-11-06 are the second Sunday of March and first Sunday of November.
        let start = try #require(Timestamp.parse("2050-03-13T07:00:00Z")) / 1000
        let end = try #require(Timestamp.parse("2050-11-06T06:00:00Z")) / 1000
        #expect(newYork.offset(atUTCSeconds: start - 1) == -18_000)
        #expect(newYork.offset(atUTCSeconds: start) == -14_400)
        #expect(newYork.offset(atUTCSeconds: end - 1) == -14_400)
        #expect(newYork.offset(atUTCSeconds: end) == -18_000)
        // Southern hemisphere: summer spans the new year.
        let sydney = try ZoneRules.load("Australia/Sydney")
        let january2060 = try #require(Timestamp.parse("2060-01-15T00:00:00Z")) / 1000
        #expect(sydney.offset(atUTCSeconds: january2060) == 11 * 3600)
        #expect(sydney.offset(atUTCSeconds: january2060 + 180 * 86_400) == 10 * 3600)
    }

    /// A file made of a zone's footer alone must give the same transitions from 2026 to 2037 as the
    /// system's full table (zones whose table departs from their footer, like Asia/Gaza's Ramadan
    /// transitions, are not listed).
    @Test(arguments: [
        "America/New_York", "Europe/London", "Europe/Dublin", "Australia/Lord_Howe", "Australia/Sydney",
        "America/Santiago", "Pacific/Chatham", "America/St_Johns", "Antarctica/Troll", "America/Nuuk",
        "Asia/Jerusalem", "America/Havana", "Pacific/Auckland", "Asia/Kolkata", "Africa/Cairo",
        "America/Miquelon", "Atlantic/Azores", "Europe/Chisinau",
    ])
    func footerAloneMatchesTheTransitionTable(zone: String) throws {
        guard let bytes = FileManager.default.contents(atPath: Self.zoneinfo + "/" + zone).map(Array.init) else {
            Issue.record("no tz database file for \(zone)")
            return
        }
        let full = try ZoneRules(identifier: zone, tzif: bytes)
        let footer = try #require(Self.footer(of: bytes))
        let synthetic = try ZoneRules(identifier: zone, tzif: Self.tzif(footer: footer))
        let end = Int64(CivilCalendar.dayNumber(year: 2037, month: 1, day: 1) * 86_400)
        var t = Int64(CivilCalendar.dayNumber(year: 2026, month: 1, day: 1) * 86_400)
        var periods = 0
        while t < end {
            let a = full.period(containing: t)
            let b = synthetic.period(containing: t)
            #expect(a.offset == b.offset, "\(zone) '\(footer)' at \(Timestamp.format(epochMs: t * 1000))")
            #expect(
                min(a.end ?? end, end) == min(b.end ?? end, end),
                "\(zone) '\(footer)' period after \(Timestamp.format(epochMs: t * 1000))")
            guard a.offset == b.offset, a.end == b.end else { return }
            t = a.end ?? end
            periods += 1
        }
        #expect(periods >= 1)
    }

    @Test func unusualFooterRules() throws {
        // Permanent daylight time spelled as a rule spanning the whole year.
        let permanent = try ZoneRules(identifier: "Test/Permanent", tzif: Self.tzif(footer: "EST5EDT,0/0,J365/25"))
        for day in stride(from: 0, to: 800, by: 17) {
            #expect(permanent.offset(atUTCSeconds: Int64(2_000_000_000 + day * 86_400)) == -4 * 3600)
        }
        // Julian days that skip February 29: J60 is March 1 in leap years too.
        let julian = try ZoneRules(identifier: "Test/Julian", tzif: Self.tzif(footer: "XST3XDT,J60/0,J300/0"))
        let march1 = try #require(Timestamp.parse("2028-03-01T03:00:00Z")) / 1000
        #expect(julian.offset(atUTCSeconds: march1 - 1) == -3 * 3600)
        #expect(julian.offset(atUTCSeconds: march1) == -2 * 3600)
        // Zero-based days count February 29: day 59 is February 29 in 2028.
        let zeroBased = try ZoneRules(identifier: "Test/Zero", tzif: Self.tzif(footer: "<+01>-1<+02>,59/0,300/0"))
        let february29 = try #require(Timestamp.parse("2028-02-28T23:00:00Z")) / 1000
        #expect(zeroBased.offset(atUTCSeconds: february29 - 1) == 3600)
        #expect(zeroBased.offset(atUTCSeconds: february29) == 7200)
        // A zone without daylight time.
        let fixed = try ZoneRules(identifier: "Test/Fixed", tzif: Self.tzif(footer: "<+0545>-5:45"))
        #expect(fixed.offset(atUTCSeconds: 0) == 20_700)
        #expect(fixed.period(containing: 0).end == nil)
    }

    @Test func rejectsMalformedData() {
        let good = Self.tzif(footer: "EST5EDT,M3.2.0,M11.1.0")
        let bad: [[UInt8]] = [
            [], Array("TZif".utf8), Array(good.prefix(60)), Array("NOPE".utf8) + good.dropFirst(4),
            Self.tzif(footer: "EST5EDT,M13.2.0,M11.1.0"), Self.tzif(footer: "E5"),
        ]
        for bytes in bad {
            #expect(throws: CronError.self) { try ZoneRules(identifier: "Test/Bad", tzif: bytes) }
        }
    }

    /// Every zone in the system database loads, and its offset stays within ±15 hours.
    @Test func everySystemZoneLoads() throws {
        let root = Self.zoneinfo
        guard let names = FileManager.default.subpaths(atPath: root) else {
            Issue.record("no tz database at \(root)")
            return
        }
        var loaded = 0
        for name in names.sorted() where !name.hasPrefix("posix") && !name.hasPrefix("right") {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: root + "/" + name, isDirectory: &isDirectory),
                !isDirectory.boolValue,
                let handle = FileHandle(forReadingAtPath: root + "/" + name)
            else { continue }
            let magic = handle.readData(ofLength: 4)
            try? handle.close()
            guard magic == Data("TZif".utf8) else { continue }
            let zone = try ZoneRules.load(name)
            for t: Int64 in [0, 1_800_000_000, 2_500_000_000, 4_000_000_000] {
                #expect(abs(zone.offset(atUTCSeconds: t)) <= 15 * 3600, "\(name)")
            }
            loaded += 1
        }
        #expect(loaded > 300)
    }

    // MARK: Helpers

    /// The POSIX TZ string at the end of a version 2+ TZif file.
    static func footer(of bytes: [UInt8]) -> String? {
        guard bytes.last == 10, let start = bytes.dropLast().lastIndex(of: 10) else { return nil }
        return String(decoding: bytes[(start + 1)..<(bytes.count - 1)], as: UTF8.self)
    }

    /// A version 2 TZif file with no transitions, one local time type and the given footer.
    static func tzif(footer: String) -> [UInt8] {
        func header(_ version: UInt8) -> [UInt8] {
            var h = Array("TZif".utf8) + [version] + [UInt8](repeating: 0, count: 15)
            for count: UInt32 in [0, 0, 0, 0, 1, 4] {
                h += [UInt8(count >> 24), UInt8(count >> 16 & 0xFF), UInt8(count >> 8 & 0xFF), UInt8(count & 0xFF)]
            }
            return h
        }
        let body: [UInt8] = [0, 0, 0, 0, 0, 0] + Array("UTC\0".utf8)
        return header(0x32) + body + header(0x32) + body + [10] + Array(footer.utf8) + [10]
    }
}
