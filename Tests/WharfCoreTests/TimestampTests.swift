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
    }
}
