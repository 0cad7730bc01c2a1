/// PostgreSQL array literals in text format, for passing many rows as one parameter
/// (`unnest($1::text[], ...)`): the set-based statements that batch concurrent requests.
public enum PGArray {
    /// `{"a","b",NULL}` with `"` and `\` escaped.
    public static func text(_ values: [String?]) -> String {
        var out = "{"
        out.reserveCapacity(values.count * 16)
        for (i, v) in values.enumerated() {
            if i > 0 { out.append(",") }
            guard let v else {
                out.append("NULL")
                continue
            }
            out.append("\"")
            for ch in v.unicodeScalars {
                if ch == "\"" || ch == "\\" { out.append("\\") }
                out.unicodeScalars.append(ch)
            }
            out.append("\"")
        }
        out.append("}")
        return out
    }

    public static func ints(_ values: [Int64?]) -> String {
        "{" + values.map { $0.map(String.init) ?? "NULL" }.joined(separator: ",") + "}"
    }

    public static func bools(_ values: [Bool?]) -> String {
        "{" + values.map { $0.map { $0 ? "t" : "f" } ?? "NULL" }.joined(separator: ",") + "}"
    }
}
