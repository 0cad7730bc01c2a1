/// A JSON value.
///
/// Integers that fit in 64 bits stay `.int`; other numbers are `.double`. Objects keep their keys in
/// the order they were written, which keeps encoded replies readable and stable.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)

    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9.2e18: return Int64(d)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: JSONObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNull: Bool { self == .null }

    /// The JSON type's name as the spec says it ("string", "object"...), for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

/// A JSON object: key/value pairs in insertion order, each key at most once.
///
/// Small objects (the protocol's requests and replies) are looked up by a linear scan, which beats
/// hashing at that size. Past `indexThreshold` keys the object also keeps a dictionary from key to
/// position, so that building, parsing and looking up a large object (a client's `meta` with 100,000
/// keys) costs O(1) per key instead of O(n). Setting an existing key replaces its value in place.
public struct JSONObject: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public private(set) var pairs: [(key: String, value: JSON)]
    /// Position of each key in `pairs`; nil while the object has at most `indexThreshold` keys, and in
    /// an object made with `init(distinctKeys:)` until a key is added (lookups scan meanwhile).
    private var index: [String: Int]?

    /// Objects with more keys than this keep an index.
    static let indexThreshold = 16

    public init() { pairs = [] }
    /// The pairs in order; when a key appears twice the first position and the last value are kept.
    public init(_ pairs: [(key: String, value: JSON)]) {
        self.pairs = []
        self.pairs.reserveCapacity(pairs.count)
        for p in pairs { self[p.key] = p.value }
    }
    /// The pairs as given, whose keys the caller knows to be distinct (a reply built field by field):
    /// no lookup per key on the way in, and no index.
    public init(distinctKeys pairs: [(key: String, value: JSON)]) {
        assert(Set(pairs.map(\.key)).count == pairs.count, "duplicate keys")
        self.pairs = pairs
    }
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self.init(elements.map { (key: $0.0, value: $0.1) })
    }

    /// The position of `key` in `pairs`.
    private func position(of key: String) -> Int? {
        if let index { return index[key] }
        for k in pairs.indices where pairs[k].key == key { return k }
        return nil
    }

    public subscript(key: String) -> JSON? {
        get { position(of: key).map { pairs[$0].value } }
        set {
            if let i = position(of: key) {
                if let newValue {
                    pairs[i].value = newValue
                } else {
                    pairs.remove(at: i)
                    rebuildIndex()
                }
            } else if let newValue {
                append(key, newValue)
            }
        }
    }

    /// Sets `key` as `self[key] = value` does, hashing the key once on the indexed path (the parser's
    /// way in: a wide object costs one dictionary insertion per key, a small one a short scan).
    mutating func set(_ key: String, _ value: JSON) {
        if index == nil {
            // Duplicates are rare: scan for one, and only then look for its place.
            for p in pairs where p.key == key {
                pairs[pairs.firstIndex { $0.key == key }!].value = value
                return
            }
            pairs.append((key: key, value: value))
            if pairs.count > Self.indexThreshold { rebuildIndex() }
        } else if let earlier = index!.updateValue(pairs.count, forKey: key) {
            index![key] = earlier
            pairs[earlier].value = value
        } else {
            pairs.append((key: key, value: value))
        }
    }

    mutating func reserveCapacity(_ n: Int) { pairs.reserveCapacity(n) }

    /// Appends a key known to be absent.
    private mutating func append(_ key: String, _ value: JSON) {
        pairs.append((key: key, value: value))
        if index != nil {
            index![key] = pairs.count - 1
        } else if pairs.count > Self.indexThreshold {
            rebuildIndex()
        }
    }

    private mutating func rebuildIndex() {
        guard pairs.count > Self.indexThreshold else {
            index = nil
            return
        }
        var built = [String: Int](minimumCapacity: pairs.count)
        for (k, p) in pairs.enumerated() { built[p.key] = k }
        index = built
    }

    /// Whether lookups use the index (for tests of the large-object path).
    var isIndexed: Bool { index != nil }

    public var keys: [String] { pairs.map(\.key) }
    public var count: Int { pairs.count }
    public var isEmpty: Bool { pairs.isEmpty }

    /// Equal when both hold the same keys with equal values, in any order.
    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        guard a.pairs.count == b.pairs.count else { return false }
        for p in a.pairs where b[p.key] != p.value { return false }
        return true
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(JSONObject(elements.map { (key: $0.0, value: $0.1) }))
    }
    public init(nilLiteral: ()) { self = .null }
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension JSON {
    /// `.string(s)` or `.null` when `s` is nil.
    public static func from(_ s: String?) -> JSON { s.map(JSON.string) ?? .null }
    /// `.int(i)` or `.null` when `i` is nil.
    public static func from(_ i: Int64?) -> JSON { i.map(JSON.int) ?? .null }
    public static func from(_ i: Int) -> JSON { .int(Int64(i)) }
}

extension JSON {
    /// What the parser makes of a number whose value would not survive being written back: an integer
    /// beyond 64 bits, a number beyond a double's range or rounded to zero, a fraction with more
    /// significant digits than a double keeps. JSON has no NaN, so this cannot be confused with a
    /// number that was sent; it is written as `null`. The server refuses params holding one
    /// (`pathOfInexactNumber`), so such a number is never stored altered.
    public static let inexactNumber = JSON.double(.nan)

    /// Whether this is `inexactNumber`.
    public var isInexactNumber: Bool {
        if case .double(let d) = self { return d.isNaN }
        return false
    }

    /// The path of the first string or key holding U+0000, e.g. `payload.items[2]`, or nil when there
    /// is none. PostgreSQL cannot store that character in text or jsonb.
    public func pathOfNUL(_ path: String = "") -> String? {
        firstPath(path, { $0.stringValue.map(Self.hasNUL) ?? false }, key: Self.hasNUL)
    }

    /// Whether `s` holds a NUL byte: a scan of its contiguous UTF-8 (every string of every request is
    /// checked), through the view only for a string stored otherwise.
    private static func hasNUL(_ s: String) -> Bool {
        s.utf8.withContiguousStorageIfAvailable { $0.contains(0) } ?? s.utf8.contains(0)
    }

    /// The path of the first `inexactNumber`, e.g. `payload.n`, or nil when there is none.
    public func pathOfInexactNumber(_ path: String = "") -> String? {
        firstPath(path, { $0.isInexactNumber }, key: { _ in false })
    }

    /// The path of the first value for which `hit` holds, or whose key does. The path is only built
    /// for the value found, so a large object costs no string per key.
    private func firstPath(_ prefix: String, _ hit: (JSON) -> Bool, key keyHit: (String) -> Bool) -> String? {
        var steps: [PathStep] = []
        guard find(hit, keyHit, &steps) else { return nil }
        var path = prefix
        for step in steps.reversed() {
            switch step {
            case .key(let k): path = path.isEmpty ? k : "\(path).\(k)"
            case .index(let i): path += "[\(i)]"
            }
        }
        return path
    }

    private enum PathStep {
        case key(String)
        case index(Int)
    }

    /// Depth-first search; on success `steps` holds the way there, innermost step first.
    private func find(_ hit: (JSON) -> Bool, _ keyHit: (String) -> Bool, _ steps: inout [PathStep]) -> Bool {
        if hit(self) { return true }
        switch self {
        case .array(let items):
            for (i, item) in items.enumerated() where item.find(hit, keyHit, &steps) {
                steps.append(.index(i))
                return true
            }
            return false
        case .object(let o):
            for (key, value) in o.pairs where keyHit(key) || value.find(hit, keyHit, &steps) {
                steps.append(.key(key))
                return true
            }
            return false
        case .null, .bool, .int, .double, .string:
            return false
        }
    }
}
