import Foundation
import Testing
import WharfClient
import WharfRPC

@testable import WharfServer

/// The connection limits against a real server over loopback TCP: the per-peer limit, the
/// authentication and frame deadlines, and subscriptions that are not idleness. The attacks at scale
/// (non-readers, floods, slow subscribers) are in Tests/hostile.
@Suite struct ConnectionLimitsTests {
    @Test func connectionsBeyondThePerPeerLimitAreRefusedAndASlotFreedIsReused() throws {
        let server = try TestServer { $0.limits.maxConnectionsPerPeer = 2 }
        var a: BlockingConnection? = try server.connect()
        let b = try server.connect()
        #expect(try a?.call("server.ping") == "pong")
        #expect(try b.call("server.ping") == "pong")
        let c = try server.connect()
        let refusal = try c.readMessage()
        #expect(refusal["error"]?["code"] == -32005)
        #expect(refusal["error"]?["data"]?["limit"] == "connectionsPerPeer")
        #expect(refusal["error"]?["data"]?["max"] == 2)
        #expect(refusal["error"]?["data"]?["retryable"] == true)
        #expect(c.isClosedByPeer())
        a = nil  // closes its socket
        // The server notices the close within a loop turn; then the slot is 127.0.0.1's again.
        var reused: JSON?
        for _ in 0..<50 where reused == nil {
            Thread.sleep(forTimeInterval: 0.05)
            let d = try server.connect()
            if let pong = try? d.call("server.ping"), pong == "pong" { reused = pong }
        }
        #expect(reused == "pong")
        #expect(try b.call("server.info")["limits"]?["maxConnectionsPerPeer"] == 2)
    }

    @Test func aConnectionThatNeverAuthenticatesIsClosedAtTheDeadline() throws {
        let server = try TestServer {
            $0.tokens = ["s3cret": .admin]
            $0.limits.authTimeoutMs = 400
        }
        let anon = try server.connect()
        let admin = try server.connect(token: "s3cret")
        // An open method is allowed, but it does not extend the deadline.
        #expect(try anon.call("server.ping") == "pong")
        let started = Date()
        let closing = try anon.readMessage()
        #expect(closing["error"]?["data"]?["limit"] == "authTimeoutMs")
        #expect(closing["id"] == .null)
        #expect(anon.isClosedByPeer())
        #expect(Date().timeIntervalSince(started) < 2)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(try admin.call("server.ping") == "pong", "an authenticated session has no such deadline")
    }

    @Test func aFrameThatIsNotFinishedInTimeClosesTheConnection() throws {
        let server = try TestServer { $0.limits.frameTimeoutMs = 400 }
        let c = try server.connect()
        try c.sendRaw(Array(#"{"jsonrpc":"2.0","method":"#.utf8))
        let closing = try c.readMessage()
        #expect(closing["error"]?["data"]?["limit"] == "frameTimeoutMs")
        #expect(c.isClosedByPeer())
        let other = try server.connect()
        #expect(try other.call("server.ping") == "pong")
    }

    @Test func aLiveSubscriptionIsNotIdle() throws {
        let server = try TestServer { $0.limits.idleTimeoutMs = 300 }
        let listener = try server.connect()
        #expect(
            try listener.call("events.subscribe", ["events": ["endpoint.disabled"]])["events"] == ["endpoint.disabled"])
        let quiet = try server.connect()
        #expect(try quiet.call("server.ping") == "pong")
        Thread.sleep(forTimeInterval: 1.2)
        #expect(try quiet.readMessage()["error"]?["data"]?["limit"] == "idleTimeoutMs")
        #expect(try listener.call("server.ping") == "pong")
        // Without subscriptions it is idle like any other connection.
        _ = try listener.call("events.unsubscribe")
        #expect(try listener.readMessage()["error"]?["data"]?["limit"] == "idleTimeoutMs")
    }

    @Test func limitsThatCannotWorkAreRefused() throws {
        var config = ServerConfig(database: "host=/nonexistent")
        config.limits.maxSubscriberQueue = 0
        #expect(throws: ConfigError.self) { try config.validate() }
        config.limits.maxSubscriberQueue = 1
        config.limits.writeTimeoutMs = -1
        #expect(throws: ConfigError.self) { try config.validate() }
        config.limits.writeTimeoutMs = 0
        try config.validate()
    }
}
