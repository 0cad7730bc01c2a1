import CLibSSL

/// One TLS session over memory BIOs: ciphertext goes in with `feed`, plaintext comes out of
/// `readPlaintext`; plaintext goes in with `write`, ciphertext comes out of `takeCiphertext`.
///
/// No I/O and no blocking: the owner moves bytes between the socket and the session (an event loop's
/// stream, or a blocking socket in a client) and calls `handshake()` until it says `done`. Whatever a
/// call produced for the peer (handshake messages, alerts, records) waits in `takeCiphertext`. One
/// thread at a time.
public final class TLSSession {
    private let ssl: OpaquePointer
    private let rbio: OpaquePointer
    private let wbio: OpaquePointer
    public let context: TLSContext

    /// Plaintext written to the session at most per record batch, so the ciphertext waiting in the write
    /// BIO stays small (the owner flushes between batches).
    static let writeChunk = 64 << 10

    /// `serverName`: for a client, the name (or IP address) the server's certificate must match, also
    /// sent as SNI when it is a name.
    public init(context: TLSContext, serverName: String? = nil) throws {
        ERR_clear_error()
        guard let ssl = SSL_new(context.ctx) else { throw TLSError("SSL_new") }
        guard let r = BIO_new(BIO_s_mem()), let w = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw TLSError("BIO_new")
        }
        // An empty read BIO means "wait for more", not end of stream.
        BIO_ctrl(r, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
        BIO_ctrl(w, BIO_C_SET_BUF_MEM_EOF_RETURN, -1, nil)
        SSL_set_bio(ssl, r, w)
        self.ssl = ssl
        rbio = r
        wbio = w
        self.context = context
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let serverName {
                let param = SSL_get0_param(ssl)
                if serverName.contains(":") || serverName.allSatisfy({ $0.isNumber || $0 == "." }) {
                    X509_VERIFY_PARAM_set1_ip_asc(param, serverName)
                } else {
                    SSL_set1_host(ssl, serverName)
                    _ = wharf_ssl_set_sni(ssl, serverName)
                }
            }
        }
    }

    deinit { SSL_free(ssl) }

    public enum Progress: Equatable {
        /// The handshake is finished.
        case done
        /// More bytes from the peer are needed (send what `takeCiphertext` holds first).
        case wantMore
        /// The handshake failed (an alert for the peer may wait in `takeCiphertext`).
        case failed(String)
    }

    /// Whether the handshake has finished.
    public var isHandshakeDone: Bool { SSL_is_init_finished(ssl) == 1 }

    /// Adds bytes received from the peer.
    public func feed(_ ciphertext: UnsafeRawBufferPointer) {
        guard let base = ciphertext.baseAddress, ciphertext.count > 0 else { return }
        var written = 0
        BIO_write_ex(rbio, base, ciphertext.count, &written)
    }

    /// Advances the handshake with what was fed so far.
    public func handshake() -> Progress {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .done }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wantMore
        default: return .failed(failureReason("TLS handshake failed"))
        }
    }

    public enum ReadEnd: Equatable {
        /// Everything decryptable so far was read; more needs more bytes from the peer.
        case wantMore
        /// The peer sent close_notify.
        case closed
        case failed(String)
    }

    /// Appends every byte of plaintext the fed ciphertext holds to `out`.
    public func readPlaintext(into out: inout [UInt8]) -> ReadEnd {
        ERR_clear_error()
        // One record's plaintext at most per read; the scratch lives only during the call, so an idle
        // session holds none.
        let chunk = 16 << 10
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 16)
        defer { scratch.deallocate() }
        while true {
            var n = 0
            let rc = SSL_read_ex(ssl, scratch, chunk, &n)
            if rc == 1 {
                out.append(contentsOf: UnsafeRawBufferPointer(start: scratch, count: n))
                continue
            }
            switch SSL_get_error(ssl, rc) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wantMore
            case SSL_ERROR_ZERO_RETURN: return .closed
            default: return .failed(failureReason("TLS read failed"))
            }
        }
    }

    /// Encrypts `plaintext`, calling `flush` after each batch of records so the owner can move the
    /// ciphertext on. Only after the handshake. Returns a failure reason, or nil.
    public func write(_ plaintext: UnsafeRawBufferPointer, flush: () -> Void) -> String? {
        guard let base = plaintext.baseAddress else { return nil }
        var offset = 0
        while offset < plaintext.count {
            ERR_clear_error()
            let len = min(Self.writeChunk, plaintext.count - offset)
            var n = 0
            let rc = SSL_write_ex(ssl, base + offset, len, &n)
            guard rc == 1 else { return failureReason("TLS write failed") }
            offset += n
            flush()
        }
        return nil
    }

    /// Bytes waiting to go to the peer.
    public var pendingCiphertext: Int { Int(BIO_ctrl_pending(wbio)) }

    /// Hands the ciphertext waiting for the peer to `body` (valid only during the call) and forgets it.
    public func takeCiphertext(_ body: (UnsafeRawBufferPointer) -> Void) {
        var pointer: UnsafeMutablePointer<CChar>?
        let len = BIO_ctrl(wbio, BIO_CTRL_INFO, 0, &pointer)
        guard len > 0, let pointer else { return }
        body(UnsafeRawBufferPointer(start: pointer, count: len))
        BIO_ctrl(wbio, BIO_CTRL_RESET, 0, nil)
    }

    /// Queues close_notify for the peer (send it with `takeCiphertext`).
    public func shutdown() {
        guard isHandshakeDone else { return }
        ERR_clear_error()
        SSL_shutdown(ssl)
    }

    /// The common name (CN) of the peer's certificate, when it presented one that verified.
    public var verifiedPeerCommonName: String? {
        guard SSL_get_verify_result(ssl) == X509_V_OK, let cert = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(cert) }
        guard let name = X509_get_subject_name(cert) else { return nil }
        let index = X509_NAME_get_index_by_NID(name, NID_commonName, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(name, index), let data = X509_NAME_ENTRY_get_data(entry),
            let bytes = ASN1_STRING_get0_data(data)
        else { return nil }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: Int(ASN1_STRING_length(data))), as: UTF8.self)
    }

    /// The negotiated protocol version, e.g. "TLSv1.3".
    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    private func failureReason(_ what: String) -> String {
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            return "\(what): certificate verify failed: \(String(cString: X509_verify_cert_error_string(Int(verify))))"
        }
        return TLSError(what).message
    }
}
