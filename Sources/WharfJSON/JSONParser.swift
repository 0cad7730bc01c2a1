import Foundation

/// Why a text is not JSON, with the byte offset where the parser gave up.
public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let offset: Int
    public var description: String { "\(message) at byte \(offset)" }
}

/// A strict RFC 8259 parser over UTF-8 bytes.
///
/// Invalid UTF-8 inside strings, lone surrogate escapes, trailing garbage and nesting deeper than
/// `maxDepth` are errors. Allocation is limited to the values themselves.
public struct JSONParser {
    public static let maxDepth = 128

    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(JSONParseError) -> JSON {
        var p = JSONParser(bytes.bindMemory(to: UInt8.self))
        p.skipWhitespace()
        let value = try p.parseValue(depth: 0)
        p.skipWhitespace()
        if p.i != p.end { throw p.error("unexpected data after the JSON value") }
        return value
    }

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> JSON {
        do {
            return try bytes.withUnsafeBytes { try parse($0) }
        } catch let e as JSONParseError {
            throw e
        } catch {
            preconditionFailure("unreachable")
        }
    }

    public static func parse(_ text: String) throws(JSONParseError) -> JSON {
        try parse(Array(text.utf8))
    }

    private let buf: UnsafeBufferPointer<UInt8>
    private var i: Int
    private let end: Int

    private init(_ buf: UnsafeBufferPointer<UInt8>) {
        self.buf = buf
        i = 0
        end = buf.count
    }

    private func error(_ message: String) -> JSONParseError { JSONParseError(message: message, offset: i) }

    private mutating func skipWhitespace() {
        while i < end {
            let c = buf[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { return }
        }
    }

    private mutating func parseValue(depth: Int) throws(JSONParseError) -> JSON {
        guard i < end else { throw error("unexpected end of input") }
        switch buf[i] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let n = word.utf8CodeUnitCount
        guard end - i >= n else { throw error("unexpected end of input") }
        let w = word.utf8Start
        for k in 0..<n where buf[i + k] != w[k] { throw error("invalid literal") }
        i += n
    }

    private mutating func parseObject(depth: Int) throws(JSONParseError) -> JSON {
        if depth > JSONParser.maxDepth { throw error("nesting too deep") }
        i += 1
        var object = JSONObject()
        skipWhitespace()
        if i < end, buf[i] == UInt8(ascii: "}") {
            i += 1
            return .object(object)
        }
        // Room for a typical request's few keys at once, instead of growing one at a time.
        object.reserveCapacity(4)
        while true {
            skipWhitespace()
            guard i < end, buf[i] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try parseString()
            skipWhitespace()
            guard i < end, buf[i] == UInt8(ascii: ":") else { throw error("expected ':'") }
            i += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            // Duplicate keys: the last one wins, as in most parsers. O(1) per key past a few keys.
            object.set(key, value)
            skipWhitespace()
            guard i < end else { throw error("unexpected end of input") }
            if buf[i] == UInt8(ascii: ",") {
                i += 1
            } else if buf[i] == UInt8(ascii: "}") {
                i += 1
                return .object(object)
            } else {
                throw error("expected ',' or '}'")
            }
        }
    }

    private mutating func parseArray(depth: Int) throws(JSONParseError) -> JSON {
        if depth > JSONParser.maxDepth { throw error("nesting too deep") }
        i += 1
        var items: [JSON] = []
        skipWhitespace()
        if i < end, buf[i] == UInt8(ascii: "]") {
            i += 1
            return .array(items)
        }
        items.reserveCapacity(4)
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard i < end else { throw error("unexpected end of input") }
            if buf[i] == UInt8(ascii: ",") {
                i += 1
            } else if buf[i] == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            } else {
                throw error("expected ',' or ']'")
            }
        }
    }

    private mutating func parseString() throws(JSONParseError) -> String {
        i += 1  // opening quote
        let start = i
        var ascii = true
        // Fast path: no escapes.
        while i < end {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: buf[start..<i])
                i += 1
                if ascii { return String(decoding: slice, as: UTF8.self) }
                guard let s = String(validating: slice, as: UTF8.self) else { throw error("invalid UTF-8 in string") }
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error("control character in string") }
            if c >= 0x80 { ascii = false }
            i += 1
        }
        guard i < end else { throw error("unterminated string") }
        // Slow path: copy with escapes resolved.
        var out = [UInt8](UnsafeBufferPointer(rebasing: buf[start..<i]))
        while i < end {
            let c = buf[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                guard let s = String(validating: out, as: UTF8.self) else { throw error("invalid UTF-8 in string") }
                return s
            }
            if c < 0x20 { throw error("control character in string") }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                i += 1
                continue
            }
            i += 1
            guard i < end else { break }
            let e = buf[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    guard end - i >= 6, buf[i] == UInt8(ascii: "\\"), buf[i + 1] == UInt8(ascii: "u") else {
                        throw error("lone surrogate in string")
                    }
                    i += 2
                    let low = try hex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw error("invalid surrogate pair") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                } else if scalar >= 0xDC00 && scalar < 0xE000 {
                    throw error("lone surrogate in string")
                }
                out.append(contentsOf: String(Character(Unicode.Scalar(scalar)!)).utf8)
            default:
                throw error("invalid escape")
            }
        }
        throw error("unterminated string")
    }

    private mutating func hex4() throws(JSONParseError) -> UInt32 {
        guard end - i >= 4 else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = buf[i]
            let d: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | UInt32(d)
            i += 1
        }
        return v
    }

    private mutating func parseNumber() throws(JSONParseError) -> JSON {
        let start = i
        var isInteger = true
        if buf[i] == UInt8(ascii: "-") { i += 1 }
        guard i < end else { throw error("invalid number") }
        if buf[i] == UInt8(ascii: "0") {
            i += 1
        } else if buf[i] >= UInt8(ascii: "1") && buf[i] <= UInt8(ascii: "9") {
            while i < end, buf[i] >= UInt8(ascii: "0"), buf[i] <= UInt8(ascii: "9") { i += 1 }
        } else {
            throw error("invalid number")
        }
        if i < end, buf[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            let digits = i
            while i < end, buf[i] >= UInt8(ascii: "0"), buf[i] <= UInt8(ascii: "9") { i += 1 }
            if i == digits { throw error("invalid number") }
        }
        if i < end, buf[i] == UInt8(ascii: "e") || buf[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < end, buf[i] == UInt8(ascii: "+") || buf[i] == UInt8(ascii: "-") { i += 1 }
            let digits = i
            while i < end, buf[i] >= UInt8(ascii: "0"), buf[i] <= UInt8(ascii: "9") { i += 1 }
            if i == digits { throw error("invalid number") }
        }
        if isInteger {
            var negative = false
            var k = start
            if buf[k] == UInt8(ascii: "-") {
                negative = true
                k += 1
            }
            var value: Int64 = 0
            var overflow = false
            while k < i {
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.subtractingReportingOverflow(Int64(buf[k] - UInt8(ascii: "0")))
                if o1 || o2 {
                    overflow = true
                    break
                }
                value = a
                k += 1
            }
            if !overflow {
                if !negative {
                    if value == Int64.min { overflow = true } else { return .int(-value) }
                } else {
                    return .int(value)
                }
            }
        }
        let literal = UnsafeBufferPointer(rebasing: buf[start..<i])
        let text = String(decoding: literal, as: UTF8.self)
        guard let d = Double(text) else { throw error("invalid number") }
        guard d.isFinite, DecimalValue(literal) == DecimalValue(d.description.utf8) else { return JSON.inexactNumber }
        return .double(d)
    }

    /// A number's value as written: `0.digits × 10^exponent`, digits without leading or trailing zeros
    /// (none for zero, whose sign is ignored). Two spellings of one value compare equal (`1.50`,
    /// `15e-1`); the writer spells a double as its `description`, so a literal survives the trip when
    /// its `DecimalValue` equals that of the nearest double's description.
    struct DecimalValue: Equatable {
        var negative = false
        var digits: [UInt8] = []
        var exponent = 0

        /// `text` is a JSON number or a Swift `Double.description` of a finite value.
        init<C: Collection<UInt8>>(_ text: C) {
            var afterPoint = false
            var k = text.startIndex
            if k != text.endIndex, text[k] == UInt8(ascii: "-") {
                negative = true
                k = text.index(after: k)
            }
            while k != text.endIndex {
                let c = text[k]
                if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { break }
                k = text.index(after: k)
                if c == UInt8(ascii: ".") {
                    afterPoint = true
                } else if digits.isEmpty && c == UInt8(ascii: "0") {
                    if afterPoint { exponent -= 1 }
                } else {
                    digits.append(c)
                    if !afterPoint { exponent += 1 }
                }
            }
            if k != text.endIndex {
                k = text.index(after: k)
                var sign = 1
                if k != text.endIndex, text[k] == UInt8(ascii: "+") || text[k] == UInt8(ascii: "-") {
                    if text[k] == UInt8(ascii: "-") { sign = -1 }
                    k = text.index(after: k)
                }
                // Saturates: any exponent past this makes a double infinite or zero anyway.
                var e = 0
                while k != text.endIndex {
                    e = min(e * 10 + Int(text[k] - UInt8(ascii: "0")), 1 << 40)
                    k = text.index(after: k)
                }
                exponent += sign * e
            }
            while digits.last == UInt8(ascii: "0") { digits.removeLast() }
            if digits.isEmpty {
                negative = false
                exponent = 0
            }
        }
    }
}
