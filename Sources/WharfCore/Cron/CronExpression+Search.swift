extension CronExpression {
    /// How many years ahead a search looks before concluding there is no match.
    ///
    /// The Gregorian calendar repeats every 400 years and parsing rejects expressions that match no
    /// day, so a search that finds nothing in this span has no match at all.
    static let searchYears = 401

    /// The first local wall-clock time at or after `start` and before `limit` that matches.
    ///
    /// Times are seconds on the local time line (see ``CivilCalendar``). The search skips by fields:
    /// to the next matching month, then day, hour, minute and second, so its cost does not depend on
    /// the distance to the match.
    func firstMatch(from start: Int, before limit: Int = .max) -> Int? {
        guard start < limit else { return nil }
        let dayNumber = CivilCalendar.floorDiv(start, CivilCalendar.secondsPerDay)
        let secondOfDay = start - dayNumber * CivilCalendar.secondsPerDay
        var (year, month, day) = CivilCalendar.date(dayNumber: dayNumber)
        var hour = secondOfDay / 3600
        var minute = secondOfDay / 60 % 60
        var second = secondOfDay % 60
        let lastYear = year + Self.searchYears
        let monthBits = UInt64(months)

        // The day mask of (maskYear, maskMonth), cached while the search stays in one month.
        var maskYear = Int.min
        var maskMonth = 0
        var mask: UInt64 = 0
        var length = 0

        while true {
            // Carry overflowing components upward.
            if second >= 60 { second = 0; minute += 1 }
            if minute >= 60 { minute = 0; hour += 1 }
            if hour >= 24 { hour = 0; day += 1 }
            if month != maskMonth || year != maskYear { length = CivilCalendar.daysIn(month: month, year: year) }
            if day > length { day = 1; month += 1 }
            if month > 12 { month = 1; year += 1 }

            if !monthBits.has(month) {
                if let next = monthBits.nextBit(from: month + 1), next <= 12 {
                    month = next
                } else {
                    month = monthBits.trailingZeroBitCount
                    year += 1
                }
                day = 1; hour = 0; minute = 0; second = 0
            }
            if year > lastYear { return nil }
            if month != maskMonth || year != maskYear {
                maskYear = year
                maskMonth = month
                length = CivilCalendar.daysIn(month: month, year: year)
                mask = UInt64(dayMask(year: year, month: month))
                if CivilCalendar.dayNumber(year: year, month: month, day: 1) * CivilCalendar.secondsPerDay >= limit {
                    return nil
                }
            }

            guard let matchingDay = mask.nextBit(from: day) else {
                day = length + 1; hour = 0; minute = 0; second = 0
                continue
            }
            if matchingDay != day { day = matchingDay; hour = 0; minute = 0; second = 0 }

            guard let matchingHour = hours.nextBit(from: hour), matchingHour < 24 else {
                day += 1; hour = 0; minute = 0; second = 0
                continue
            }
            if matchingHour != hour { hour = matchingHour; minute = 0; second = 0 }

            guard let matchingMinute = minutes.nextBit(from: minute), matchingMinute < 60 else {
                hour += 1; minute = 0; second = 0
                continue
            }
            if matchingMinute != minute { minute = matchingMinute; second = 0 }

            guard let matchingSecond = seconds.nextBit(from: second), matchingSecond < 60 else {
                minute += 1; second = 0
                continue
            }
            let dayStart = CivilCalendar.dayNumber(year: year, month: month, day: day) * CivilCalendar.secondsPerDay
            let result = dayStart + hour * 3600 + minute * 60 + matchingSecond
            return result < limit ? result : nil
        }
    }
}
