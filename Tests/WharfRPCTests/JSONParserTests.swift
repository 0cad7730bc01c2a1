import Testing

@testable import WharfRPC

@Suite struct JSONParserTests {
    @Test(arguments: [
        ("null", JSON.null), ("true", .bool(true)), ("false", .bool(false)), ("0", .int(0)), ("-12", .int(-12)),
        ("9223372036854775807", .int(Int64.max)), ("-9223372036854775808", .int(Int64.min)),
        ("1.5", .double(1.5)), ("-2e3", .double(-2000)), ("1E-2", .double(0.01)),
        ("9223372036854775808", .double(9223372036854775808)),
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
}

@Suite struct LineFramerTests {
    func lines(_ chunks: [String], max: Int = 1 << 20) -> ([String], LineFramer.Outcome) {
        var framer = LineFramer(maxFrame: max)
        var out: [String] = []
        var last = LineFramer.Outcome.ok
        for c in chunks {
            last = Array(c.utf8).withUnsafeBytes { b in
                framer.feed(b) { line in
                    out.append(String(decoding: line, as: UTF8.self))
                    return true
                }
            }
        }
        return (out, last)
    }

    @Test func splitsAcrossChunks() {
        #expect(lines(["ab", "c\nde", "f\n\ng\r\n", "h"]).0 == ["abc", "def", "g"])
        #expect(lines(["  \n\t\n", "x\n"]).0 == ["x"])
    }

    @Test func reportsFramesTooLarge() {
        #expect(lines([String(repeating: "a", count: 20)], max: 10).1 == .frameTooLarge)
        #expect(lines([String(repeating: "a", count: 20) + "\n"], max: 10).1 == .frameTooLarge)
        #expect(lines(["aaaaa", "aaaaa", "a"], max: 10).1 == .frameTooLarge)
        #expect(lines(["aaaaaaaaaa\n"], max: 10).0 == ["aaaaaaaaaa"])
    }

    @Test func pausesAndDrains() {
        var framer = LineFramer(maxFrame: 100)
        var got: [String] = []
        let outcome = Array("a\nb\nc\n".utf8).withUnsafeBytes { b in
            framer.feed(b) { line in
                got.append(String(decoding: line, as: UTF8.self))
                return got.count < 1
            }
        }
        #expect(outcome == .paused)
        #expect(got == ["a"])
        #expect(framer.bufferedCount == 4)
        let rest = framer.drain { line in
            got.append(String(decoding: line, as: UTF8.self))
            return true
        }
        #expect(rest == .ok)
        #expect(got == ["a", "b", "c"])
        #expect(framer.bufferedCount == 0)
    }
}

@Suite struct RPCDecoderTests {
    func decode(_ s: String, maxBatch: Int = 10) -> RPCFrame {
        Array(s.utf8).withUnsafeBytes { RPCDecoder.decode($0, maxBatch: maxBatch) }
    }

    @Test func requestsAndNotifications() throws {
        guard case .single(.success(let r)) = decode(#"{"jsonrpc":"2.0","method":"m","params":{"a":1},"id":"x"}"#)
        else {
            Issue.record("not a request")
            return
        }
        #expect(r.method == "m")
        #expect(r.id == "x")
        guard case .single(.success(let n)) = decode(#"{"jsonrpc":"2.0","method":"m"}"#) else {
            Issue.record("not a notification")
            return
        }
        #expect(n.isNotification)
    }

    @Test func invalidRequests() {
        for text in [
            #"{"method":"m","id":1}"#, #"{"jsonrpc":"2.0","id":1}"#,
            #"{"jsonrpc":"2.0","method":"m","params":3,"id":1}"#,
            #"{"jsonrpc":"2.0","method":"m","id":{}}"#, #"5"#,
        ] {
            guard case .single(.failure(let inv)) = decode(text) else {
                Issue.record("accepted \(text)")
                continue
            }
            #expect(inv.error.code == -32600)
        }
    }

    @Test func batches() {
        guard case .reject(let e) = decode("[]") else {
            Issue.record("empty batch accepted")
            return
        }
        #expect(e.code == -32600)
        guard case .reject(let tooLong) = decode("[1,2,3]", maxBatch: 2) else {
            Issue.record("long batch accepted")
            return
        }
        #expect(tooLong.code == -32005)
        guard case .batch(let items) = decode(#"[1,{"jsonrpc":"2.0","method":"m","id":1}]"#) else {
            Issue.record("not a batch")
            return
        }
        #expect(items.count == 2)
        guard case .reject(let parse) = decode("[1,") else {
            Issue.record("parsed garbage")
            return
        }
        #expect(parse.code == -32700)
    }
}
