import Testing

@testable import WharfRPC

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

    @Test func idKinds() {
        for (text, id) in [(#""s""#, JSON.string("s")), ("7", .int(7)), ("-1.5", .double(-1.5)), ("null", .null)] {
            guard case .single(.success(let r)) = decode(#"{"jsonrpc":"2.0","method":"m","id":\#(text)}"#) else {
                Issue.record("refused id \(text)")
                continue
            }
            #expect(r.id == id)
            // A null id is a request with a null id, not a notification.
            #expect(!r.isNotification)
        }
    }

    @Test func invalidRequestsKeepTheirIDWhenItIsValid() {
        for (text, id) in [
            (#"{"jsonrpc":"2.0","params":{},"id":"x"}"#, JSON.string("x")),
            (#"{"jsonrpc":2.0,"method":"m","id":3}"#, .int(3)),
            (#"{"jsonrpc":"2.0","method":5,"id":null}"#, .null),
            (#"{"jsonrpc":"2.0","method":"m","id":[1]}"#, .null),
            (#"{"jsonrpc":"2.0","method":"m","id":true}"#, .null),
        ] {
            guard case .single(.failure(let inv)) = decode(text) else {
                Issue.record("accepted \(text)")
                continue
            }
            #expect(inv.id == id, "\(text)")
            #expect(inv.error.code == RPCError.Code.invalidRequest)
            #expect(inv.error.reason == "invalid_request")
        }
    }

    @Test func paramsAreKeptAsSent() {
        guard case .single(.success(let byPosition)) = decode(#"{"jsonrpc":"2.0","method":"m","params":[1,"a"]}"#)
        else {
            Issue.record("refused positional params")
            return
        }
        #expect(byPosition.params == [1, "a"])
        guard case .single(.success(let none)) = decode(#"{"jsonrpc":"2.0","method":"m","id":1,"x":true}"#) else {
            Issue.record("refused an extra member")
            return
        }
        #expect(none.params == nil)
    }

    @Test func batchAtTheLimitAndNestedBatches() {
        let item = #"{"jsonrpc":"2.0","method":"m","id":1}"#
        guard
            case .batch(let items) = decode(
                "[" + Array(repeating: item, count: 3).joined(separator: ",") + "]", maxBatch: 3)
        else {
            Issue.record("refused a batch at the limit")
            return
        }
        #expect(items.count == 3)
        guard case .batch(let nested) = decode("[[\(item)]]") else {
            Issue.record("not a batch")
            return
        }
        guard case .failure(let inv)? = nested.first else {
            Issue.record("accepted a nested batch")
            return
        }
        #expect(inv.error.code == RPCError.Code.invalidRequest)
        guard case .reject(let tooLong) = decode("[1,2,3,4]", maxBatch: 3) else {
            Issue.record("accepted a long batch")
            return
        }
        #expect(tooLong.data?["limit"] == "batch")
        #expect(tooLong.data?["max"] == 3)
    }

    @Test func parseErrorsCarryTheirDetail() {
        guard case .reject(let e) = decode(#"{"jsonrpc":"2.0","#) else {
            Issue.record("parsed garbage")
            return
        }
        #expect(e.code == RPCError.Code.parseError)
        #expect(e.reason == "parse_error")
        #expect(e.data?["detail"]?.stringValue?.isEmpty == false)
    }

    @Test func encoderOutputParsesBack() throws {
        var w = JSONWriter()
        RPCEncoder.success(id: "a", result: ["x": [1, 2]], into: &w)
        #expect(try JSONParser.parse(w.bytes) == ["jsonrpc": "2.0", "id": "a", "result": ["x": [1, 2]]])
        w = JSONWriter()
        RPCEncoder.failure(id: .null, error: .methodNotFound("nope"), into: &w)
        let failure = try JSONParser.parse(w.bytes)
        #expect(failure["id"] == .null)
        #expect(failure["error"]?["code"] == -32601)
        #expect(failure["error"]?["data"]?["method"] == "nope")
        w = JSONWriter()
        RPCEncoder.request(id: nil, method: "m\"q", params: nil, into: &w)
        #expect(try JSONParser.parse(w.bytes) == ["jsonrpc": "2.0", "method": "m\"q"])
    }

    @Test func errorObjectsRoundTrip() {
        let errors: [RPCError] = [
            .parseError("x"), .invalidRequest("y"), .methodNotFound("m"), .invalidParams(field: "a.b", "is wrong"),
            .internalError, .unauthorized("no"), .forbidden(role: "reader", method: "jobs.enqueue"),
            .unavailable("down"), .notFound("job", id: "1"), .limitExceeded("big", limit: "frameBytes", max: 10),
            .conflict("stale", reason: "lease_lost"),
        ]
        for e in errors {
            #expect(RPCError(json: e.json) == e)
            #expect(e.reason != nil, "\(e) has no data.reason")
            // Application errors always say whether a retry may succeed.
            if e.code >= -32099 && e.code <= -32000 { #expect(e.data?["retryable"]?.boolValue != nil, "\(e)") }
        }
        #expect(RPCError.unavailable("down").isRetryable)
        #expect(!RPCError.conflict("stale", reason: "lease_lost").isRetryable)
        #expect(RPCError.internalError.json["data"]?["reason"] == "internal")
    }
}
