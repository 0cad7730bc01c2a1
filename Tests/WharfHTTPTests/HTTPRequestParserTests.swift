import Testing
import WharfHTTP

struct HTTPRequestParserTests {
    let limits = HTTPRequestParser.Limits(maxHeaderBytes: 256, maxBodyBytes: 64)

    /// Feeds `text` in pieces of `step` bytes and returns the requests and the last outcome.
    func parse(_ text: String, step: Int = .max, accept: Int = .max) -> ([HTTPRequest], HTTPRequestParser.Outcome) {
        let parser = HTTPRequestParser(limits: limits)
        var got: [HTTPRequest] = []
        var outcome = HTTPRequestParser.Outcome.ok
        let bytes = Array(text.utf8)
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + min(step, bytes.count))
            outcome = bytes[i..<end].withUnsafeBytes { buf in
                parser.feed(buf) {
                    got.append($0); return got.count < accept
                }
            }
            if case .failed = outcome { break }
            i = end
        }
        return (got, outcome)
    }

    @Test func pipelinedRequestsSplitAnywhereComeOutWholeAndInOrder() {
        let text =
            "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
            + "POST /rpc HTTP/1.1\r\nContent-Length: 5\r\nAuthorization: Bearer t\r\n\r\nhello"
            + "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n"
        for step in [1, 3, 7, 1000] {
            let (got, outcome) = parse(text, step: step)
            #expect(outcome == .ok)
            #expect(got.map(\.target) == ["/healthz", "/rpc", "/metrics"])
            #expect(got[1].method == "POST")
            #expect(got[1].body == Array("hello".utf8))
            #expect(got[1].header("authorization") == "Bearer t")
            #expect(got[0].keepAlive && got[1].keepAlive && !got[2].keepAlive)
        }
    }

    @Test func chunkedBodyIsJoined() {
        let (got, outcome) = parse(
            "POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", step: 4)
        #expect(outcome == .ok)
        #expect(got.first?.body == Array("abcde".utf8))
    }

    @Test func limitsAndGrammarGetTheirReplies() {
        #expect(
            parse("GET / HTTP/1.1\r\nX: \(String(repeating: "a", count: 300))\r\n\r\n").1 == .failed(.headersTooLarge))
        #expect(parse("POST /rpc HTTP/1.1\r\nContent-Length: 65\r\n\r\n").1 == .failed(.bodyTooLarge))
        let chunk = String(repeating: "z", count: 65)
        #expect(
            parse("POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n\(chunk)\r\n0\r\n\r\n").1
                == .failed(.bodyTooLarge))
        #expect(parse("POST /rpc HTTP/1.1\r\n\r\n").1 == .failed(.lengthRequired))
        guard case .failed(.malformed) = parse("NOT HTTP AT ALL\r\n\r\n").1 else {
            Issue.record("garbage was accepted")
            return
        }
        #expect(parse("GET / HTTP/9.9\r\n\r\n").1 == .failed(.malformed("HTTP/9.9 is not supported")))
        guard case .failed(.malformed) = parse("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n").1
        else {
            Issue.record("an upgrade was accepted")
            return
        }
    }

    @Test func pausesAfterADeclinedRequestAndResumesWithTheRest() {
        let parser = HTTPRequestParser(limits: limits)
        var got: [String] = []
        let text = Array("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n".utf8)
        let first = text.withUnsafeBytes {
            parser.feed($0) {
                got.append($0.target); return false
            }
        }
        #expect(first == .paused)
        #expect(got == ["/a"])
        #expect(parser.bufferedCount > 0)
        let second = parser.resume {
            got.append($0.target); return true
        }
        #expect(second == .ok)
        #expect(got == ["/a", "/b", "/c"])
        #expect(parser.bufferedCount == 0)
    }
}
