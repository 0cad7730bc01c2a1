import WharfRPC

/// A request's params object with typed accessors that name the offending field in their errors.
public struct Params {
    public let object: JSONObject

    /// Accepts an object, or absent/empty-array params as an empty object.
    init(_ json: JSON?) throws(RPCError) {
        switch json {
        case nil: object = [:]
        case .object(let o)?: object = o
        case .array(let a)? where a.isEmpty: object = [:]
        default: throw RPCError.invalidParams(field: "params", "must be an object with named fields")
        }
    }

    public init(object: JSONObject) { self.object = object }

    public subscript(key: String) -> JSON? {
        let v = object[key]
        return v == .null ? nil : v
    }

    public func has(_ key: String) -> Bool { self[key] != nil }

    public func string(_ key: String) throws(RPCError) -> String {
        guard let v = self[key] else { throw RPCError.invalidParams(field: key, "is required") }
        guard case .string(let s) = v else {
            throw RPCError.invalidParams(field: key, "must be a string, not \(v.typeName)")
        }
        return s
    }

    public func optionalString(_ key: String) throws(RPCError) -> String? {
        guard has(key) else { return nil }
        return try string(key)
    }

    /// A non-empty string of at most `maxLength` characters.
    public func name(_ key: String, maxLength: Int = 200) throws(RPCError) -> String {
        let s = try string(key)
        if s.isEmpty { throw RPCError.invalidParams(field: key, "must not be empty") }
        if s.utf8.count > maxLength { throw RPCError.invalidParams(field: key, "must be at most \(maxLength) bytes") }
        return s
    }

    public func optionalName(_ key: String, maxLength: Int = 200) throws(RPCError) -> String? {
        guard has(key) else { return nil }
        return try name(key, maxLength: maxLength)
    }

    public func int(_ key: String, in range: ClosedRange<Int64>) throws(RPCError) -> Int64 {
        guard let v = self[key] else { throw RPCError.invalidParams(field: key, "is required") }
        guard let i = v.intValue else {
            throw RPCError.invalidParams(field: key, "must be an integer, not \(v.typeName)")
        }
        guard range.contains(i) else {
            throw RPCError.invalidParams(field: key, "must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return i
    }

    public func optionalInt(_ key: String, in range: ClosedRange<Int64>) throws(RPCError) -> Int64? {
        guard has(key) else { return nil }
        return try int(key, in: range)
    }

    public func double(_ key: String, in range: ClosedRange<Double>) throws(RPCError) -> Double? {
        guard let v = self[key] else { return nil }
        guard let d = v.doubleValue else {
            throw RPCError.invalidParams(field: key, "must be a number, not \(v.typeName)")
        }
        guard range.contains(d) else {
            throw RPCError.invalidParams(field: key, "must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return d
    }

    public func bool(_ key: String, default def: Bool) throws(RPCError) -> Bool {
        guard let v = self[key] else { return def }
        guard case .bool(let b) = v else {
            throw RPCError.invalidParams(field: key, "must be a boolean, not \(v.typeName)")
        }
        return b
    }

    /// An id given as a decimal string (or a JSON integer), greater than zero.
    public func numericID(_ key: String) throws(RPCError) -> Int64 {
        guard let v = self[key] else { throw RPCError.invalidParams(field: key, "is required") }
        if let i = v.intValue, i > 0 { return i }
        guard let s = v.stringValue, let i = Int64(s), i > 0 else {
            throw RPCError.invalidParams(field: key, "must be an id such as \"42\"")
        }
        return i
    }

    public func optionalObject(_ key: String) throws(RPCError) -> JSONObject? {
        guard let v = self[key] else { return nil }
        guard case .object(let o) = v else {
            throw RPCError.invalidParams(field: key, "must be an object, not \(v.typeName)")
        }
        return o
    }

    public func stringArray(_ key: String, maxCount: Int = 100) throws(RPCError) -> [String]? {
        guard let v = self[key] else { return nil }
        guard case .array(let items) = v else {
            throw RPCError.invalidParams(field: key, "must be an array, not \(v.typeName)")
        }
        if items.count > maxCount { throw RPCError.invalidParams(field: key, "must have at most \(maxCount) items") }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item, !s.isEmpty else {
                throw RPCError.invalidParams(field: "\(key)[\(i)]", "must be a non-empty string")
            }
            out.append(s)
        }
        return out
    }

    /// Rejects fields the method does not know, so a typo is an error rather than silently ignored.
    public func onlyKnown(_ known: Set<String>) throws(RPCError) {
        for p in object.pairs where !known.contains(p.key) {
            throw RPCError.invalidParams(field: p.key, "is not a parameter of this method")
        }
    }

    /// `onlyKnown` for a method's few fields, written as a literal at the call: a scan of the list,
    /// where a set would be built and every key hashed on each call (every request of the hot path
    /// passes through here).
    public func onlyKnown(_ known: [String]) throws(RPCError) {
        for p in object.pairs where !known.contains(p.key) {
            throw RPCError.invalidParams(field: p.key, "is not a parameter of this method")
        }
    }
}
