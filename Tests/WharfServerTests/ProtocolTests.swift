import Foundation
import Testing
import WharfClient
import WharfRPC
import WharfServer

/// The JSON-RPC 2.0 specification's examples, adapted to our methods, and the server's limits,
/// over real TCP against a real server and database.
@Suite(.serialized) struct ProtocolTests {
    let server: TestServer

    init() throws { server = try TestServer { $0.limits.maxBatch = 50 } }

    func roundTrip(_ line: String, on c: BlockingConnection? = nil) throws -> JSON {
        let conn = try c ?? server.connect()
        try conn.sendLine(line)
        return try conn.readMessage()
    }

    @Test func callWithPositionalAndNamedIDs() throws {
        let c = try server.connect()
        for id in [#""abc""#, "7", "null", "1.5"] {
            let r = try roundTrip(#"{"jsonrpc":"2.0","method":"server.ping","id":\#(id)}"#, on: c)
            #expect(r["result"] == "pong")
            #expect(r["id"] == (try JSONParser.parse(id)))
        }
    }

    @Test func invalidJSONIsParseErrorWithNullID() throws {
        let r = try roundTrip(#"{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]"#)
        #expect(r["error"]?["code"] == -32700)
        #expect(r["id"] == .null)
    }

    @Test func invalidRequestObject() throws {
        let r = try roundTrip(#"{"jsonrpc":"2.0","method":1,"params":"bar"}"#)
        #expect(r["error"]?["code"] == -32600)
        #expect(r["id"] == .null)
        let wrongVersion = try roundTrip(#"{"jsonrpc":"1.0","method":"server.ping","id":3}"#)
        #expect(wrongVersion["error"]?["code"] == -32600)
        #expect(wrongVersion["id"] == 3)
    }

    @Test func batchWithInvalidJSON() throws {
        let r = try roundTrip(#"[{"jsonrpc":"2.0","method":"server.ping","id":"1"},{"jsonrpc":"2.0","method""#)
        #expect(r["error"]?["code"] == -32700)
    }

    @Test func emptyArrayIsOneInvalidRequest() throws {
        let r = try roundTrip("[]")
        #expect(r["error"]?["code"] == -32600)
        #expect(r.arrayValue == nil)
    }

    @Test func invalidBatches() throws {
        let one = try roundTrip("[1]")
        #expect(one.arrayValue?.count == 1)
        #expect(one.arrayValue?.first?["error"]?["code"] == -32600)
        let three = try roundTrip("[1,2,3]")
        #expect(three.arrayValue?.map { $0["error"]?["code"] } == [-32600, -32600, -32600])
    }

    @Test func mixedBatch() throws {
        let line = """
            [{"jsonrpc":"2.0","method":"server.ping","id":"1"},\
            {"jsonrpc":"2.0","method":"server.ping"},\
            {"jsonrpc":"2.0","method":"server.info","params":{"x":1},"id":"2"},\
            {"foo":"boo"},\
            {"jsonrpc":"2.0","method":"foo.get","params":{"name":"myself"},"id":"5"},\
            {"jsonrpc":"2.0","method":"server.ping","id":"9"}]
            """
        let r = try roundTrip(line)
        let items = try #require(r.arrayValue)
        #expect(items.count == 5)
        func reply(_ id: JSON) -> JSON? { items.first { $0["id"] == id } }
        #expect(reply("1")?["result"] == "pong")
        #expect(reply("2")?["error"]?["code"] == -32602)
        #expect(reply("2")?["error"]?["data"]?["field"] == "x")
        #expect(reply("5")?["error"]?["code"] == -32601)
        #expect(reply("9")?["result"] == "pong")
        #expect(items.contains { $0["id"] == .null && $0["error"]?["code"] == -32600 })
    }

    @Test func notificationsGetNoReply() throws {
        let c = try server.connect()
        try c.sendLine(#"{"jsonrpc":"2.0","method":"server.ping"}"#)
        try c.sendLine(#"[{"jsonrpc":"2.0","method":"server.ping"},{"jsonrpc":"2.0","method":"nope"}]"#)
        try c.sendLine(#"{"jsonrpc":"2.0","method":"server.ping","id":"after"}"#)
        // The first reply on the connection is the one to the request that has an id.
        let r = try c.readMessage()
        #expect(r["id"] == "after")
    }

    @Test func unknownMethodAndInvalidParams() throws {
        let c = try server.connect()
        let unknown = try c.expectError("no.such")
        #expect(unknown.code == -32601)
        let wrongType = try c.expectError("session.hello", ["token": 5])
        #expect(wrongType.code == -32602)
        #expect(wrongType.data?["field"] == "token")
        let positional = try c.expectError("jobs.get", ["1"])
        #expect(positional.code == -32602)
    }

    @Test func frameTooLargeClosesOnlyThatConnection() throws {
        let big = try server.connect()
        let other = try server.connect()
        var frame = Array(#"{"jsonrpc":"2.0","method":"server.ping","params":{"pad":""#.utf8)
        frame += [UInt8](repeating: UInt8(ascii: "a"), count: 2 << 20)
        frame += Array("\"},\"id\":1}\n".utf8)
        try? big.sendRaw(frame)
        let r = try big.readMessage()
        #expect(r["error"]?["code"] == -32005)
        #expect(r["error"]?["data"]?["limit"] == "frameBytes")
        #expect(r["id"] == .null)
        #expect(big.isClosedByPeer())
        #expect(try other.call("server.ping") == "pong")
    }

    @Test func invalidUTF8IsParseErrorAndConnectionStays() throws {
        let c = try server.connect()
        var bytes = Array(#"{"jsonrpc":"2.0","method":"server.ping","id":"#.utf8)
        bytes += [0x22, 0xC3, 0x28, 0x22]  // a string holding an invalid two-byte sequence
        bytes += Array("}\n".utf8)
        try c.sendRaw(bytes)
        let r = try c.readMessage()
        #expect(r["error"]?["code"] == -32700)
        #expect(try c.call("server.ping") == "pong")
    }

    @Test func tenThousandPipelinedRequests() throws {
        let c = try server.connect()
        var out: [UInt8] = []
        for i in 0..<10_000 { out += Array(#"{"jsonrpc":"2.0","method":"server.ping","id":\#(i)}"#.utf8) + [0x0A] }
        try c.sendRaw(out)
        var seen = Set<Int64>()
        while seen.count < 10_000 {
            let r = try c.readMessage()
            #expect(r["result"] == "pong")
            if let id = r["id"]?.intValue { seen.insert(id) }
        }
        #expect(seen == Set(0..<10_000))
    }

    @Test func clientThatNeverReadsDoesNotStallOthers() throws {
        let greedy = try server.connect()
        // Far more requests than the socket buffers and the server's 8 MiB reply backlog can absorb:
        // once the backlog is full the server stops reading, so the writer blocks in send().
        let line = Array(#"{"jsonrpc":"2.0","method":"server.info","id":1}"#.utf8) + [0x0A]
        var chunk: [UInt8] = []
        for _ in 0..<2_000 { chunk += line }
        let chunks = 400
        let box = Box(greedy)
        let sent = Counter()
        let failed = Counter()
        let bytes = chunk
        let writer = Thread {
            for _ in 0..<chunks {
                if (try? box.value.sendRaw(bytes)) == nil { return failed.increment() }
                sent.increment()
            }
        }
        writer.start()
        // Wait until the writer stalls: the server has stopped reading from that connection.
        var last = -1
        let deadline = Date().addingTimeInterval(20)
        while sent.value != last && Date() < deadline {
            last = sent.value
            Thread.sleep(forTimeInterval: 0.3)
        }
        #expect(sent.value < chunks, "the server read everything from a peer that never reads its replies")
        #expect(failed.value == 0, "the server closed the connection instead of pausing it")
        // A stalled server would never answer: each ping gets 5 s, and all of them far less than that in
        // total (the bound is loose because the machine may be busy with other tests).
        let other = try BlockingConnection(host: "127.0.0.1", port: server.port, timeoutSeconds: 5)
        let start = Date()
        for _ in 0..<20 { #expect(try other.call("server.ping") == "pong") }
        #expect(Date().timeIntervalSince(start) < 5)
    }

    @Test func batchLongerThanTheLimit() throws {
        let items = (0..<51).map { _ in #"{"jsonrpc":"2.0","method":"server.ping","id":1}"# }.joined(separator: ",")
        let r = try roundTrip("[\(items)]")
        #expect(r["error"]?["code"] == -32005)
        #expect(r["error"]?["data"]?["limit"] == "batch")
    }

    @Test func serverInfoAndHealth() throws {
        let c = try server.connect()
        let info = try c.call("server.info")
        #expect(info["name"] == "wharf")
        #expect(info["protocolVersion"] == "1")
        #expect(info["replicaId"]?.stringValue?.isEmpty == false)
        #expect(info["postgresVersion"]?.stringValue?.hasPrefix("15") == true)
        let health = try c.call("server.health")
        #expect(health["status"] == "ok")
        #expect(health["database"]?["reachable"] == true)
    }
}

@Suite struct LimitTests {
    @Test func idleConnectionsAreClosed() throws {
        let server = try TestServer { $0.limits.idleTimeoutMs = 300 }
        let c = try server.connect()
        #expect(try c.call("server.ping") == "pong")
        let r = try c.readMessage()
        #expect(r["error"]?["data"]?["limit"] == "idleTimeoutMs")
        #expect(c.isClosedByPeer(timeoutMs: 3000))
    }

    @Test func connectionsBeyondTheLimitAreRefused() throws {
        let server = try TestServer { $0.limits.maxConnections = 2 }
        let a = try server.connect()
        let b = try server.connect()
        #expect(try a.call("server.ping") == "pong")
        #expect(try b.call("server.ping") == "pong")
        let c = try server.connect()
        let r = try c.readMessage()
        #expect(r["error"]?["data"]?["limit"] == "connections")
        #expect(c.isClosedByPeer())
    }
}

@Suite struct AuthTests {
    @Test func tokensGrantRoles() throws {
        let server = try TestServer { $0.tokens = ["s3cret": .admin, "look": .reader] }
        let anon = try server.connect()
        #expect(try anon.call("server.ping") == "pong")
        #expect(try anon.expectError("server.info").code == -32001)
        #expect(try anon.expectError("session.hello", ["token": "wrong"]).code == -32001)
        #expect(try anon.expectError("session.hello").code == -32001)
        let hello = try anon.call("session.hello", ["token": "look", "client": "test"])
        #expect(hello["role"] == "reader")
        #expect(try anon.call("server.info")["name"] == "wharf")
        let denied = try anon.expectError("jobs.enqueue", ["queue": "q", "kind": "k"])
        #expect(denied.code == -32002)
        let admin = try server.connect(token: "s3cret")
        #expect(try admin.call("jobs.enqueue", ["queue": "q", "kind": "k"])["state"] == "available")
    }

    @Test func noTokensRefusesNonLoopback() throws {
        var config = ServerConfig(database: "host=/nonexistent")
        config.host = "0.0.0.0"
        #expect(throws: ConfigError.self) { try config.validate() }
        config.tokens = ["x": .admin]
        // Tokens alone are not enough off loopback: they would cross the network in plain text.
        #expect(throws: ConfigError.self) { try config.validate() }
        config.insecurePlaintext = true
        try config.validate()
        config.insecurePlaintext = false
        config.tls = TLSSettings(certificateChain: "cert.pem", privateKey: "key.pem")
        try config.validate()
        config.tls = nil
        config.tokens = [:]
        config.host = "127.0.0.1"
        try config.validate()
    }
}

@Suite struct InFlightLimitTests {
    /// With 4 requests in flight the server stops reading: a ping behind 6 long polls is answered
    /// only after some of them end, yet every request is answered and another connection is unaffected.
    @Test func stopsReadingAtTheInFlightLimit() throws {
        let server = try TestServer { $0.limits.maxInFlight = 4 }
        let c = try server.connect()
        var out = ""
        for i in 0..<6 {
            out +=
                #"{"jsonrpc":"2.0","id":\#(i),"method":"jobs.lease","params":{"queues":["none"],"waitMs":2000,"worker":"w"}}"#
                + "\n"
        }
        out += #"{"jsonrpc":"2.0","id":"ping","method":"server.ping"}"# + "\n"
        let start = Date()
        try c.sendRaw(Array(out.utf8))
        let other = try server.connect()
        #expect(try other.call("server.ping") == "pong")
        // Well before the long polls end (the margin allows for a machine busy with other tests).
        #expect(Date().timeIntervalSince(start) < 1.5)
        var pingAt: TimeInterval?
        var answered = 0
        while answered < 7 {
            let r = try c.readMessage()
            answered += 1
            if r["id"] == "ping" { pingAt = Date().timeIntervalSince(start) }
        }
        let delay = try #require(pingAt)
        #expect(delay >= 1.9, "the ping was read before the in-flight requests finished (\(delay) s)")
    }
}

/// A thread-safe counter. `@unchecked Sendable`: `count` is only touched under `lock`.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func increment() { lock.withLock { count += 1 } }
}
