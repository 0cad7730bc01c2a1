import WharfCore

/// The first byte picks the zone and the policies; the rest is the expression.
enum FuzzCron {
    static let zones = ["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu"]

    static func one(_ data: UnsafeRawBufferPointer) {
        guard let first = data.first, data.count <= 256 else { return }
        let zone = zones[Int(first) % zones.count]
        let dayMatch: DayMatch = first & 0x08 == 0 ? .or : .and
        let gap: DSTGapPolicy? = first & 0x10 == 0 ? nil : first & 0x20 == 0 ? .skip : .runAtTransition
        let fold: DSTFoldPolicy? = first & 0x40 == 0 ? nil : first & 0x80 == 0 ? .once : .twice
        let text = String(decoding: data.dropFirst(), as: UTF8.self)
        guard
            let schedule = try? CronSchedule.parse(
                text, timezone: zone, dayMatch: dayMatch, dstGap: gap, dstFold: fold, anchorMs: 1_700_000_000_000)
        else { return }
        _ = schedule.description
        // 2024-03-09T12:00:00Z, a day before a DST change in New York.
        let start: Int64 = 1_709_985_600_000
        let fires = schedule.nextFires(afterMs: start, count: 4)
        var previous = start
        for f in fires {
            precondition(f > previous, "\(text) in \(zone): fire \(f) not after \(previous)")
            previous = f
        }
    }
}
