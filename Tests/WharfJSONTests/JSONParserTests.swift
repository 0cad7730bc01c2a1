import Testing

@testable import WharfJSON

@Suite struct JSONParserTests {
    @Test(arguments: [
        ("null", JSON.null), ("true", .bool(true)), ("false", .bool(false)), ("0", .int(0)), ("-12", .int(-12)),
        ("9223372036854775807", .int(Int64.max)), ("-9223372036854775808", .int(Int64.min)),
        ("1.5", .double(1.5)), ("-2e3", .double(-2000)), ("1E-2", .double(0.01)),
        ("9.223372036854776e18", .double(9223372036854775808)),
        (#""a\"b\\c\/d\b\f\n\r\t""#, .string("a\"b\\c/d\u{8}\u{c}\n\r\t")),
        (#""\u00e9\ud83d\ude00""#, .string("é😀")), ("\"é\"", .string("é")),
        ("[]", .array([])), ("[1,[2,{}]]", .array([1, .array([2, .object([:])])])),
        (#" { "a" : 1 , "b" : [ true ] } "#, JSON.object(["a": 1, "b": [true]])),
    ])
    func parsesValid(text: String, expected: JSON) throws {
        #expect(try JSONParser.parse(text) == expected)
    }

    @Test(arguments: [
        "", " ", "{", "}", "[1,]", "[,1]", "{\"a\":}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "-", "1e", "+1",
        "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
        "[1] x", "\"a\nb\"", "NaN", "Infinity", "'a'",
    ])
    func rejectsInvalid(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsInvalidUTF8() {
        for bytes: [UInt8] in [
            [0x22, 0xC3, 0x28, 0x22], [0x22, 0xFF, 0x22], [0x22, 0xE2, 0x82, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22],
        ] {
            #expect(throws: JSONParseError.self) { try JSONParser.parse(bytes) }
        }
    }

    @Test func limitsNesting() throws {
        let ok = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        _ = try JSONParser.parse(ok)
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
    }

    @Test func lastDuplicateKeyWins() throws {
        #expect(try JSONParser.parse(#"{"a":1,"a":2}"#)["a"] == 2)
    }

    @Test func writerRoundTrips() throws {
        let values: [JSON] = [
            [
                "s": "quote \" backslash \\ newline \n tab \t nul \u{0} é 😀", "n": -42, "d": 0.1, "big": 1e300,
                "a": [nil, true, false],
            ],
            .array([]), .object([:]), .string(""), .int(Int64.min), .int(Int64.max),
        ]
        for v in values {
            #expect(try JSONParser.parse(v.encoded) == v)
        }
        #expect(JSON.double(.nan).text == "null")
        #expect(JSON.double(2.0).text == "2")
    }

    @Test(arguments: [
        ("-0", JSON.int(0)), ("0e-400", .double(0)), ("0.5e+1", .double(5)), ("123456789012", .int(123_456_789_012)),
        (#""\u0000""#, .string("\u{0}")), ("\"\u{7F}\"", .string("\u{7F}")), (#""\uD83D\uDE00""#, .string("😀")),
        (#""\u00E9\n""#, .string("é\n")), (#"{"k\u0065y":"v"}"#, JSON.object(["key": "v"])),
        (" \t\r\n[ \t\r\n1 \t\r\n] \t\r\n", .array([1])), (#""𝄞 tab\t""#, .string("𝄞 tab\t")),
    ])
    func parsesEdgeCases(text: String, expected: JSON) throws {
        #expect(try JSONParser.parse(text) == expected)
    }

    @Test(arguments: [
        "[1 2]", #"{"a":1,}"#, "1 2", "--1", "-a", "0x10", "1.e3", "\u{FEFF}1", "tRue", "nulll", "[1}", #"{"a"}"#,
        #""\ude00\ud83d""#, #""\ud83d""#, #""\ud83d\u""#, #""\u+123""#, "\"tab\there\"", "\"\u{1F}\"", "[\"a\",]",
        "{\"a\":1 \"b\":2}", "[]]", "{}x",
    ])
    func rejectsMoreInvalid(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func rejectsMalformedUTF8Everywhere() throws {
        let bad: [[UInt8]] = [
            [0xC0, 0x80],  // overlong NUL
            [0xE0, 0x80, 0x80],  // overlong
            [0xF4, 0x90, 0x80, 0x80],  // beyond U+10FFFF
            [0xF8, 0x88, 0x80, 0x80, 0x80],  // five-byte form
            [0x80],  // lone continuation byte
            [0xE2, 0x82],  // truncated sequence
        ]
        for seq in bad {
            // In a plain string, in a string with escapes (the slow path), and as a key.
            #expect(throws: JSONParseError.self) { try JSONParser.parse([0x22] + seq + [0x22]) }
            #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(#""\n"#.utf8) + seq + [0x22]) }
            #expect(throws: JSONParseError.self) { try JSONParser.parse([0x7B, 0x22] + seq + Array(#"":1}"#.utf8)) }
        }
        // Outside any string, a non-ASCII byte is just an unexpected character.
        #expect(throws: JSONParseError.self) { try JSONParser.parse([0xFF]) }
        #expect(try JSONParser.parse([0x22, 0xF0, 0x9F, 0x98, 0x80, 0x22]) == .string("😀"))
    }

    @Test func depthLimitIsExact() throws {
        let n = JSONParser.maxDepth
        let ok = String(repeating: "[", count: n) + String(repeating: "]", count: n)
        #expect(throws: Never.self) { try JSONParser.parse(ok) }
        let tooDeep = String(repeating: "[", count: n + 1) + String(repeating: "]", count: n + 1)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(tooDeep) }
        let objects = String(repeating: #"{"a":"#, count: n + 1) + "1" + String(repeating: "}", count: n + 1)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(objects) }
    }

    @Test func errorsSayWhere() {
        do {
            _ = try JSONParser.parse(#"{"a":tru}"#)
            Issue.record("parsed")
        } catch {
            #expect(error.offset == 5)
            #expect(error.description.contains("at byte 5"))
        }
    }

    @Test func writerEscapesEveryControlCharacter() throws {
        let all = String(String.UnicodeScalarView((0..<0x20).compactMap(Unicode.Scalar.init)))
        let text = JSON.string(all + "\"\\/\u{7F}\u{2028}").text
        #expect(!text.utf8.dropFirst().dropLast().contains { $0 < 0x20 })
        #expect(try JSONParser.parse(text) == .string(all + "\"\\/\u{7F}\u{2028}"))
        #expect(JSON.string("\u{1}").text == #""\u0001""#)
    }

    @Test(arguments: [0.1, -0.0, 1e-7, 5e-324, 1.7976931348623157e308, 123.456, 1e15, -1e21, 0.30000000000000004])
    func writerKeepsDoubles(value: Double) throws {
        let back = try JSONParser.parse(JSON.double(value).encoded)
        #expect(back.doubleValue == value)
    }

    @Test func writerKeepsKeyOrder() {
        let o: JSON = ["z": 1, "a": 2, "m": ["y": true, "b": nil]]
        #expect(o.text == #"{"z":1,"a":2,"m":{"y":true,"b":null}}"#)
    }
}
