/// PostgreSQL array literals in text format, for passing many rows as one parameter
/// (`unnest($1::text[], ...)`): the set-based statements that batch concurrent requests.
public enum PGArray {
    /// `{"a","b",NULL}` with `"` and `\` escaped. Built as UTF-8 bytes: these literals carry every
    /// batched request, so they are on the hot path.
    public static func text(_ values: [String?]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(2 + values.reduce(0) { $0 + ($1?.utf8.count ?? 4) + 3 })
        out.append(UInt8(ascii: "{"))
        for (i, v) in values.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            guard let v else {
                out.append(contentsOf: "NULL".utf8)
                continue
            }
            out.append(UInt8(ascii: "\""))
            let copied = v.utf8.withContiguousStorageIfAvailable { bytes -> Bool in
                // Most values need no escape: copied in one go.
                guard !bytes.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
                    return false
                }
                out.append(contentsOf: bytes)
                return true
            }
            if copied != true {
                for byte in v.utf8 {
                    if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
                    out.append(byte)
                }
            }
            out.append(UInt8(ascii: "\""))
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }

    public static func ints(_ values: [Int64?]) -> String {
        var out = "{"
        out.reserveCapacity(2 + values.count * 8)
        for (i, v) in values.enumerated() {
            if i > 0 { out.append(",") }
            if let v { out.append(String(v)) } else { out.append("NULL") }
        }
        out.append("}")
        return out
    }

    public static func doubles(_ values: [Double?]) -> String {
        "{" + values.map { $0.map { String($0) } ?? "NULL" }.joined(separator: ",") + "}"
    }

    public static func bools(_ values: [Bool?]) -> String {
        "{" + values.map { $0.map { $0 ? "t" : "f" } ?? "NULL" }.joined(separator: ",") + "}"
    }
}
