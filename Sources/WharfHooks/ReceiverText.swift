/// What a receiver sent, made storable as text.
///
/// PostgreSQL text can hold neither NUL nor invalid UTF-8, and a NUL inside an array parameter ends
/// it early (`malformed array literal`), failing the whole statement. Receivers may send any bytes,
/// so everything kept from a response passes through here first.
public enum ReceiverText {
    /// `bytes` as UTF-8, with each invalid sequence and each NUL replaced by U+FFFD.
    public static func sanitized(_ bytes: [UInt8]) -> String {
        sanitized(String(decoding: bytes, as: UTF8.self))
    }

    /// `text` with each NUL replaced by U+FFFD.
    public static func sanitized(_ text: String) -> String {
        guard text.utf8.contains(0) else { return text }
        var scalars = String.UnicodeScalarView()
        for s in text.unicodeScalars { scalars.append(s == "\0" ? "\u{FFFD}" : s) }
        return String(scalars)
    }
}
