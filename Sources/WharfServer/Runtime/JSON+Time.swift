import WharfCore
import WharfJSON

extension JSON {
    /// An instant in replies: RFC 3339 UTC with milliseconds (`Timestamp.format`), or null.
    static func time(epochMs ms: Int64?) -> JSON { ms.map { .string(Timestamp.format(epochMs: $0)) } ?? .null }
}
