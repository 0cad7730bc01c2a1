import Foundation
import Testing
import WharfCore

@Suite struct TimestampTests {
    @Test func formatsAndParses() {
        #expect(Timestamp.format(epochMs: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp.format(epochMs: 1_795_000_000_123) == "2026-11-18T11:06:40.123Z")
        #expect(Timestamp.parse("2026-11-18T11:06:40.123Z") == 1_795_000_000_123)
        #expect(Timestamp.parse("2026-11-18T12:06:40.123+01:00") == 1_795_000_000_123)
        #expect(Timestamp.parse("2026-11-18T11:06:40Z") == 1_795_000_000_000)
        #expect(Timestamp.parse("2000-02-29T00:00:00Z") != nil)
        for bad in [
            "2026-02-30T00:00:00Z", "2026-11-18", "2026-11-18T25:00:00Z", "2026-11-18T08:26:40", "x",
            "2026-11-18T08:26:40.Z",
        ] {
            #expect(Timestamp.parse(bad) == nil, "\(bad)")
        }
        for ms: Int64 in [0, 1, 999, 1_000, 951_782_400_000, 4_102_444_799_999] {
            #expect(Timestamp.parse(Timestamp.format(epochMs: ms)) == ms)
        }
        #expect(Timestamp.format(epochMs: -1) == "1969-12-31T23:59:59.999Z")
        #expect(Timestamp.format(epochMs: 253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
        #expect(Timestamp.format(epochMs: 253_402_300_800_000) == "10000-01-01T00:00:00.000Z")
    }

    /// Agrees with Foundation's formatter across years 0001-9999.
    @Test func formatMatchesFoundation() {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.calendar = Calendar(identifier: .iso8601)
        f.dateFormat = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
        // A fixed pseudo-random walk from 1583 (where Foundation's calendar and gmtime's proleptic
        // Gregorian agree) to 9999.
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<20_000 {
            x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let ms = -12_212_553_600_000 + Int64(x >> 16) % 265_614_854_400_000
            let date = Date(timeIntervalSince1970: Double(ms) / 1000)
            #expect(Timestamp.format(epochMs: ms) == f.string(from: date), "\(ms)")
        }
    }
}
