/// Which events one subscriber receives: types (exact, `*` for all, or a family prefix such as `job.*`)
/// and, per kind of subject, the names it is limited to (`queues`, `schedules`, `locks`, `endpoints`).
///
/// A subject list limits only the events of its kind: `{events: ["*"], queues: ["mail"]}` receives job
/// events of queue `mail` and every other event. Pure.
struct EventFilter: Equatable, Sendable {
    /// Type patterns; empty: nothing.
    var types: Set<String> = []
    var queues: Set<String>?
    var schedules: Set<String>?
    var locks: Set<String>?
    var endpoints: Set<String>?

    /// Longest type pattern accepted.
    static let maxPatternLength = 200

    /// Why `pattern` is not a type pattern, or nil when it is one.
    static func problem(_ pattern: String) -> String? {
        if pattern.isEmpty || pattern.utf8.count > maxPatternLength {
            return "must be 1 to \(maxPatternLength) bytes"
        }
        guard pattern != "*" else { return nil }
        let body = pattern.hasSuffix(".*") ? pattern.dropLast(2) : Substring(pattern)
        if body.isEmpty || body.contains("*") {
            return "\"*\" may stand alone or end a family prefix such as job.*"
        }
        return nil
    }

    /// True when `pattern` takes events of `type`.
    static func pattern(_ pattern: String, matches type: String) -> Bool {
        if pattern == type || pattern == "*" { return true }
        guard pattern.hasSuffix(".*") else { return false }
        // "job.*" takes "job.completed": the prefix with its dot.
        return type.utf8.count > pattern.utf8.count - 1 && type.hasPrefix(pattern.dropLast())
    }

    /// True when some type pattern takes `type` (whatever the subject).
    func wants(type: String) -> Bool {
        if types.contains(type) || types.contains("*") { return true }
        return types.contains { Self.pattern($0, matches: type) }
    }

    /// True when this filter takes an event of `type` about `subject`.
    func matches(type: String, subject: EventSubject?) -> Bool {
        guard wants(type: type) else { return false }
        guard let subject else { return true }
        let names: Set<String>?
        switch subject.kind {
        case .queue: names = queues
        case .schedule: names = schedules
        case .lock: names = locks
        case .endpoint: names = endpoints
        case .none: names = nil
        }
        return names?.contains(subject.name) ?? true
    }

    /// This filter's subject lists as reply fields (the lists set, by their parameter names).
    var subjectFields: [(String, Set<String>)] {
        [("queues", queues), ("schedules", schedules), ("locks", locks), ("endpoints", endpoints)].compactMap { f in
            f.1.map { (f.0, $0) }
        }
    }
}
