/// Compiled schedules by definition, holding at most `capacity` of them.
///
/// Two generations stand in for least-recently-used order at O(1) per lookup: new and recently used
/// entries live in `young`; when `young` fills half the capacity it becomes `old` and the previous
/// `old` is dropped, so an entry survives as long as it is used at least once per half-capacity of
/// other insertions. The key is the definition's text (expression or interval, zone, day rule, DST
/// policies, anchor), so schedules with equal timing share one entry and a changed definition never
/// finds a stale one. Not thread-safe: the owner confines it (the scheduler keeps it on its loop).
public struct CronScheduleCache {
    /// The most entries held at once.
    public let capacity: Int
    private var young: [String: CronSchedule] = [:]
    private var old: [String: CronSchedule] = [:]

    public init(capacity: Int) {
        precondition(capacity >= 2, "a cache needs room for two generations")
        self.capacity = capacity
    }

    /// Entries held now (never more than `capacity`).
    public var count: Int { young.count + old.count }

    /// The schedule compiled for `key`, compiling it with `make` when it is not held.
    public mutating func schedule(for key: String, orCompile make: () throws -> CronSchedule) rethrows -> CronSchedule {
        if let hit = young[key] { return hit }
        if let hit = old.removeValue(forKey: key) {
            insert(key, hit)
            return hit
        }
        let made = try make()
        insert(key, made)
        return made
    }

    /// Forgets every entry.
    public mutating func removeAll() {
        young = [:]
        old = [:]
    }

    private mutating func insert(_ key: String, _ value: CronSchedule) {
        if young.count >= capacity / 2 {
            old = young
            young = [:]
        }
        young[key] = value
    }
}
