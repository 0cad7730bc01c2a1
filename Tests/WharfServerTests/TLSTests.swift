import Foundation
import Testing
import WharfClient
import WharfRPC
import WharfTLS

@testable import WharfServer

/// The Swift clients over TLS against a real server: the blocking connection and the pipelining
/// `WharfClient`, with a client certificate mapped to a role.
@Suite struct TLSTests {
    static func server(_ pki: TestPKI) throws -> TestServer {
        try TestServer { config in
            var tls = TLSSettings(certificateChain: pki.path("server.pem"), privateKey: pki.path("server.key"))
            tls.clientCA = pki.path("ca.pem")
            tls.clientRoles = ["reader-1": .reader]
            config.tls = tls
            config.tokens = ["s3cret": .admin]
        }
    }

    @Test func blockingConnectionWithAClientCertificateGetsItsRole() throws {
        let pki = try TestPKI()
        let server = try Self.server(pki)
        let tls = try TLSContext.client(
            caFile: pki.path("ca.pem"), certificateChain: pki.path("client.pem"), privateKey: pki.path("client.key"))
        let c = try BlockingConnection(host: "127.0.0.1", port: server.port, tls: tls)
        let hello = try c.call("session.hello")
        #expect(hello["role"] == "reader")
        #expect(hello["certificate"] == "reader-1")
        #expect(try c.expectError("jobs.enqueue", ["queue": "q", "kind": "k"]).code == -32002)
        // A reply of many records comes back whole.
        let admin = try BlockingConnection(
            host: "127.0.0.1", port: server.port, tls: try TLSContext.client(caFile: pki.path("ca.pem")))
        _ = try admin.call("session.hello", ["token": "s3cret"])
        let blob = String(repeating: "x", count: 300_000)
        let job = try admin.call("jobs.enqueue", ["queue": "q", "kind": "k", "payload": ["blob": .string(blob)]])
        #expect(try admin.call("jobs.get", ["id": job["id"]!])["payload"]?["blob"]?.stringValue == blob)
    }

    @Test func aPlaintextClientIsToldThePortSpeaksTLS() throws {
        let pki = try TestPKI()
        let server = try Self.server(pki)
        let plain = try server.connect()
        let refusal = try plain.expectError("server.ping")
        #expect(refusal.reason == "tls_required")
    }

    @Test func pipeliningClientOverTLS() async throws {
        let pki = try TestPKI()
        let server = try Self.server(pki)
        let client = WharfClient(
            host: "127.0.0.1", port: server.port, token: "s3cret",
            tls: try TLSContext.client(caFile: pki.path("ca.pem")))
        defer { client.close() }
        let replies = try await withThrowingTaskGroup(of: JSON.self) { group in
            for _ in 0..<200 { group.addTask { try await client.call("server.ping") } }
            return try await group.reduce(into: [JSON]()) { $0.append($1) }
        }
        #expect(replies.count == 200)
        #expect(replies.allSatisfy { $0 == "pong" })
        #expect(try await client.call("server.info")["name"] == "wharf")
    }
}
