import Foundation
import WharfRPC
import WharfTLS
import WharfUV

extension Server {
    /// The stream a new connection speaks through: TLS over `tcp` when the server has TLS, else `tcp`;
    /// nil when a TLS session cannot be made (SSL_new fails only without memory).
    func secured(_ tcp: TCPConnection) -> (any ByteStream)? {
        guard let tlsContext else { return tcp }
        guard let session = try? TLSSession(context: tlsContext) else {
            logger.error("cannot start a TLS session; closing the connection")
            return nil
        }
        return TLSStream(tcp: tcp, session: session, plaintextRefusal: Self.plaintextRefusal)
    }

    /// The line a plaintext client gets on the TLS port before the close: a JSON-RPC error it can show.
    static let plaintextRefusal: [UInt8] = {
        var w = JSONWriter()
        let error = RPCError(
            code: RPCError.Code.invalidRequest,
            message: "this port speaks TLS: connect with TLS (wharf --tls, ssl= in Python)",
            data: ["reason": "tls_required", "retryable": false])
        RPCEncoder.failure(id: .null, error: error, into: &w)
        w.bytes.append(0x0A)
        return w.bytes
    }()

    /// SIGHUP reads the certificate, key and client CA again: new connections use them, open ones keep
    /// the session they have. A file that does not load is logged and the old context stays.
    func reloadSignalWatcher() throws -> SignalWatcher {
        let w = try SignalWatcher(loop: loop)
        try w.start(signal: SIGHUP) { [unowned self] _ in self.reloadTLS() }
        w.unref()
        return w
    }

    func reloadTLS() {
        guard let tls = config.tls else { return }
        do {
            tlsContext = try tls.makeContext()
            logger.info("TLS certificate reloaded", metadata: ["certificate": "\(tls.certificateChain)"])
        } catch {
            logger.error(
                "TLS reload failed; new connections keep the previous certificate", metadata: ["error": "\(error)"])
        }
    }
}
