@testable import WharfCore

/// A small, fast, seedable random number generator (SplitMix64), so a seed names a whole test run.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// One differential case: an expression in a zone, a start instant and optional DST policy overrides.
struct CronCase: Sendable {
    /// The text the engine parses.
    var expression: String
    /// The same expression as cronsim reads it: macros expanded and `?` written `*`.
    var oracleExpression: String
    var zone: String
    var startMs: Int64
    var dstGap: DSTGapPolicy?
    var dstFold: DSTFoldPolicy?
    var dayMatch: DayMatch = .or
}

/// Random cron expressions in the syntax both the engine and cronsim support, with start instants
/// concentrated just before (and inside) the DST transitions of the chosen zone.
///
/// `nW` terms, ``DayMatch/and`` and DST policy overrides, which cronsim lacks, are checked against the
/// oracle's own reference alone. Excluded, because cronsim reads them differently (unit tests cover
/// them): day-of-week `nL` spelled with a name (`FRIL`) and stepped single-value ranges such as `5-5/2`,
/// which cronsim reads as `5/2`.
struct CronCaseGenerator {
    /// Zones with unusual transitions: 30- and 45-minute offsets or shifts, 2-hour shifts, skipped
    /// days, transitions at midnight or 00:01, negative DST in the TZif data, local mean time offsets
    /// that are not whole minutes, and ordinary DST in both hemispheres.
    static let zones = [
        "UTC", "America/New_York", "Europe/London", "Europe/Berlin", "Europe/Dublin", "Australia/Lord_Howe",
        "Australia/Sydney", "America/Santiago", "America/Havana", "Asia/Tehran", "Pacific/Chatham", "Pacific/Apia",
        "America/St_Johns", "Africa/Casablanca", "Antarctica/Troll", "Asia/Kolkata", "Asia/Kathmandu",
        "America/Nuuk", "America/Caracas", "Africa/Monrovia", "Pacific/Kwajalein", "Asia/Gaza", "Europe/Moscow",
        "America/Sao_Paulo", "Asia/Pyongyang", "Pacific/Fakaofo", "America/Metlakatla", "Asia/Dhaka",
        "America/Miquelon", "Europe/Chisinau", "Atlantic/Azores", "America/Asuncion", "America/Mexico_City",
        "Asia/Amman", "Asia/Jerusalem", "Pacific/Norfolk", "Australia/Eucla", "America/Scoresbysund",
        "Antarctica/Casey", "Asia/Beirut", "Africa/Cairo", "Pacific/Tongatapu", "Pacific/Kiritimati",
        "Asia/Colombo", "Europe/Volgograd",
    ]

    static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let dayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
    static let macros = [
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
    ]

    var rng: SplitMix64
    /// Transition instants per zone, from the engine's own zone rules.
    private var transitionCache: [String: [Int64]] = [:]

    init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }

    // MARK: Cases

    mutating func makeCase() throws -> CronCase {
        let zone = pick(Self.zones)
        var (expression, oracle) = makeExpression()
        if chance(0.03) {
            let macro = pick(Self.macros.keys.sorted())
            expression = chance(0.5) ? macro : macro.uppercased()
            oracle = Self.macros[macro]!
        }
        var gap: DSTGapPolicy?
        var fold: DSTFoldPolicy?
        if chance(0.2) {
            gap = pick(DSTGapPolicy.allCases)
            fold = pick(DSTFoldPolicy.allCases)
        }
        let dayMatch: DayMatch = chance(0.15) ? .and : .or
        let start = try makeStart(zone: zone)
        return CronCase(
            expression: expression, oracleExpression: oracle, zone: zone, startMs: start, dstGap: gap, dstFold: fold,
            dayMatch: dayMatch)
    }

    /// A start instant in epoch milliseconds: mostly shortly before a transition of the zone, sometimes
    /// inside the interval a fall-back transition repeats, sometimes anywhere from 1900 to 2100.
    mutating func makeStart(zone: String) throws -> Int64 {
        let rules = try ZoneRules.load(zone)
        let all = transitions(of: rules)
        let ms: Int64 = chance(0.5) ? 0 : Int64(int(0...999))
        guard !all.isEmpty, chance(0.85) else {
            let from = chance(0.7) ? 1970 : 1900
            let to = chance(0.8) ? 2040 : 2100
            let low = CivilCalendar.dayNumber(year: from, month: 1, day: 1) * 86_400
            let high = CivilCalendar.dayNumber(year: to, month: 1, day: 1) * 86_400
            return Int64(int(low...high)) * 1000 + ms
        }
        // Recent transitions more often than historical ones.
        let recent = all.filter { $0 >= 946_684_800 }
        let t = !recent.isEmpty && chance(0.7) ? pick(recent) : pick(all)
        let period = rules.period(containing: t)
        let shift = Int64(period.offset - period.previousOffset)
        let r = Double.random(in: 0..<1, using: &rng)
        let seconds: Int64
        if r < 0.45 {
            seconds = t + Int64(int(-6 * 3600...3600))
        } else if r < 0.7 {
            seconds = t + Int64(int(-3 * 86_400...3600))
        } else if r < 0.8 {
            seconds = t + Int64(int(-2...1))
            if chance(0.5) { return seconds * 1000 + Int64(pick([0, 1, 500, 999])) }
        } else if shift < 0 {
            // Inside the repeated interval, in its second copy.
            seconds = t + Int64(int(0...Int(-shift)))
        } else {
            seconds = t + Int64(int(-2 * 86_400...2 * 86_400))
        }
        return seconds * 1000 + (r >= 0.7 && r < 0.8 ? 0 : ms)
    }

    /// The zone's changes of UTC offset from 1900 to 2100, as the engine's zone rules list them.
    mutating func transitions(of rules: ZoneRules) -> [Int64] {
        if let cached = transitionCache[rules.identifier] { return cached }
        var found: [Int64] = []
        var t = Int64(CivilCalendar.dayNumber(year: 1900, month: 1, day: 1) * 86_400)
        let end = Int64(CivilCalendar.dayNumber(year: 2100, month: 1, day: 1) * 86_400)
        while let next = rules.period(containing: t).end, next < end {
            found.append(next)
            t = next
        }
        transitionCache[rules.identifier] = found
        return found
    }

    // MARK: Expressions

    /// An expression for the engine and the same for cronsim.
    mutating func makeExpression() -> (String, String) {
        let six = chance(0.15)
        // Hours and minutes near typical transition times make gaps and folds likely.
        let minute = field(0...59, star: 0.25, hot: [0, 30, 45, 15, 1])
        let hour = field(0...23, star: 0.3, hot: [0, 1, 2, 3, 23])
        let month = field(1...12, star: 0.75, names: Self.monthNames, base: 1)
        var engine = [minute, hour, dayOfMonth(), month, dayOfWeek()]
        if six { engine.insert(field(0...59, star: 0.3, hot: [0, 30]), at: 0) }
        let oracle = engine.map { $0 == "?" ? "*" : $0 }
        return (engine.joined(separator: " "), oracle.joined(separator: " "))
    }

    mutating func value(_ range: ClosedRange<Int>, names: [String]? = nil, base: Int = 0) -> String {
        let v = int(range)
        if let names, chance(0.3), v - base >= 0, v - base < names.count {
            return chance(0.7) ? names[v - base] : names[v - base].lowercased()
        }
        return String(v)
    }

    mutating func term(_ range: ClosedRange<Int>, names: [String]? = nil, base: Int = 0, hot: [Int] = []) -> String {
        let lo = range.lowerBound
        let hi = range.upperBound
        let r = Double.random(in: 0..<1, using: &rng)
        if !hot.isEmpty, r < 0.25 { return String(pick(hot)) }
        if r < 0.45 { return value(range, names: names, base: base) }
        let a = int(lo...(hi - 1))
        let b = int((a + 1)...hi)
        if r < 0.65 { return "\(nameOrNumber(a, names, base))-\(nameOrNumber(b, names, base))" }
        if r < 0.8 { return "\(a)-\(b)/\(int(1...max(1, b - a)))" }
        if r < 0.9 { return "\(int(range))/\(int(1...max(1, (hi - lo) / 2)))" }
        return "*/\(int(1...max(1, (hi - lo) / 2)))"
    }

    mutating func nameOrNumber(_ v: Int, _ names: [String]?, _ base: Int) -> String {
        if let names, chance(0.3), v - base >= 0, v - base < names.count { return names[v - base] }
        return String(v)
    }

    mutating func field(
        _ range: ClosedRange<Int>, star: Double, names: [String]? = nil, base: Int = 0, hot: [Int] = []
    ) -> String {
        if chance(star) {
            return chance(0.7) ? "*" : "*/\(int(1...max(2, (range.upperBound - range.lowerBound) / 3)))"
        }
        var terms = [term(range, names: names, base: base, hot: hot)]
        while chance(0.25), terms.count < 4 { terms.append(term(range, names: names, base: base, hot: hot)) }
        return terms.joined(separator: ",")
    }

    mutating func dayOfMonth() -> String {
        let r = Double.random(in: 0..<1, using: &rng)
        if r < 0.55 { return "*" }
        if r < 0.6 { return "?" }
        if r < 0.7 { return pick(["L", "LW", "1,L", "15,LW", "L,10-12"]) }
        if r < 0.75 {
            let nearest = "\(pick([1, 1, 2, 15, 28, 29, 30, 31, int(1...31)]))W"
            return chance(0.7) ? nearest : pick(["\(nearest),L", "1,\(nearest)", "\(nearest),LW,20"])
        }
        return field(1...31, star: 0, hot: [1, 15, 28, 29, 30, 31])
    }

    mutating func dayOfWeek() -> String {
        let r = Double.random(in: 0..<1, using: &rng)
        if r < 0.55 { return "*" }
        if r < 0.6 { return "?" }
        if r < 0.7 { return "\(int(0...7))L" }
        if r < 0.8 {
            let day = chance(0.5) ? String(int(0...7)) : pick(Self.dayNames)
            return "\(day)#\(int(1...5))"
        }
        if r < 0.85 { return pick(["MON-FRI", "SAT,SUN", "1-5", "0,6", "1/2", "*/2", "5L,1", "MON#1,FRI#5"]) }
        return field(0...7, star: 0, names: Self.dayNames)
    }
}
