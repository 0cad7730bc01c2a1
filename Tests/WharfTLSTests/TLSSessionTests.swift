import Foundation
import Testing
import WharfTLS

/// `TLSSession` without sockets: a client and a server session hand each other their ciphertext in
/// memory, with certificates made for the test by the `openssl` command.
@Suite struct TLSSessionTests {
    /// Moves ciphertext between the two until neither has any to send; returns the last progress of each.
    static func shakeHands(_ client: TLSSession, _ server: TLSSession) -> (TLSSession.Progress, TLSSession.Progress) {
        var c = client.handshake()
        var s = TLSSession.Progress.wantMore
        for _ in 0..<10 {
            client.takeCiphertext { server.feed($0) }
            s = server.handshake()
            server.takeCiphertext { client.feed($0) }
            c = client.handshake()
            if case .failed = c { break }
            if case .failed = s { break }
            if c == .done, s == .done, client.pendingCiphertext == 0 { break }
        }
        return (c, s)
    }

    @Test func handshakeThenPlaintextBothWaysWithAClientCertificate() throws {
        let pki = try TestPKI()
        let serverContext = try TLSContext.server(
            certificateChain: pki.path("server.pem"), privateKey: pki.path("server.key"), clientCA: pki.path("ca.pem"))
        let clientContext = try TLSContext.client(
            caFile: pki.path("ca.pem"), certificateChain: pki.path("client.pem"), privateKey: pki.path("client.key"))
        let server = try TLSSession(context: serverContext)
        let client = try TLSSession(context: clientContext, serverName: "127.0.0.1")
        let (c, s) = Self.shakeHands(client, server)
        #expect(c == .done)
        #expect(s == .done)
        #expect(server.verifiedPeerCommonName == "reader-1")
        #expect(client.protocolVersion == "TLSv1.3")

        // A megabyte goes through in records of at most 16 KiB and comes out whole.
        let big = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var flushes = 0
        let failure = big.withUnsafeBytes {
            client.write($0) {
                flushes += 1
                client.takeCiphertext { server.feed($0) }
            }
        }
        #expect(failure == nil)
        #expect(flushes == (1 << 20) / (64 << 10))
        var received: [UInt8] = []
        #expect(server.readPlaintext(into: &received) == .wantMore)
        #expect(received == big)

        let reply = Array("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"pong\"}\n".utf8)
        #expect(reply.withUnsafeBytes { server.write($0) {} } == nil)
        server.takeCiphertext { client.feed($0) }
        var answer: [UInt8] = []
        #expect(client.readPlaintext(into: &answer) == .wantMore)
        #expect(answer == reply)

        // close_notify ends the peer's stream.
        client.shutdown()
        client.takeCiphertext { server.feed($0) }
        var rest: [UInt8] = []
        #expect(server.readPlaintext(into: &rest) == .closed)
    }

    /// A server signed by a CA the client does not trust, or with a certificate for another name.
    @Test(arguments: [
        ("other.pem", "127.0.0.1", "certificate verify failed"), ("ca.pem", "wharf.example", "hostname mismatch"),
    ])
    func aClientRefusesAServerItCannotVerify(caFile: String, serverName: String, reason expected: String) throws {
        let pki = try TestPKI()
        let server = try TLSSession(
            context: TLSContext.server(certificateChain: pki.path("server.pem"), privateKey: pki.path("server.key")))
        let client = try TLSSession(context: TLSContext.client(caFile: pki.path(caFile)), serverName: serverName)
        let (c, _) = Self.shakeHands(client, server)
        guard case .failed(let reason) = c else {
            Issue.record("handshake did not fail: \(c)")
            return
        }
        #expect(reason.contains(expected))
    }

    @Test func aKeyThatDoesNotMatchItsCertificateIsRefusedAtLoad() throws {
        let pki = try TestPKI()
        #expect(throws: TLSError.self) {
            try TLSContext.server(certificateChain: pki.path("server.pem"), privateKey: pki.path("client.key"))
        }
    }
}
