import CLibSSL

/// A TLS failure: what was being done and OpenSSL's reason (the error queue, or the certificate
/// verification result when that is what failed).
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }

    init(_ what: String) {
        var reasons: [String] = []
        while case let code = ERR_get_error(), code != 0 {
            var buf = [UInt8](repeating: 0, count: 256)
            buf.withUnsafeMutableBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) {
                    ERR_error_string_n(code, $0, p.count)
                }
            }
            reasons.append(String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self))
        }
        message = reasons.isEmpty ? what : "\(what): \(reasons.joined(separator: "; "))"
    }

    init(message: String) { self.message = message }
}

/// One OpenSSL `SSL_CTX`: certificates, trust and protocol settings shared by many sessions.
///
/// Immutable once built, so it may be shared between threads; a reload builds a new context (sessions
/// already open keep the one they started with, which OpenSSL reference-counts).
public final class TLSContext: @unchecked Sendable {  // never mutated after init; SSL_CTX is thread-safe for SSL_new
    let ctx: OpaquePointer
    public let isServer: Bool
    /// Server only: client certificates are requested and verified against this CA bundle.
    public let requestsClientCertificates: Bool

    /// Versions below TLS 1.2 are refused; for TLS 1.2, OpenSSL's default list without the weak suites.
    static let cipherList = "DEFAULT:!aNULL:!eNULL:!MD5:!RC4:!DES:!3DES:!EXPORT:!LOW:!kRSA:!PSK:!SRP:!SHA1"

    private init(method: OpaquePointer?, isServer: Bool, clientCA: Bool) throws {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(method) else { throw TLSError("SSL_CTX_new") }
        self.ctx = ctx
        self.isServer = isServer
        requestsClientCertificates = clientCA
        guard wharf_ssl_ctx_set_min_proto(ctx, TLS1_2_VERSION) == 1 else { throw TLSError("TLS 1.2 minimum") }
        SSL_CTX_set_options(
            ctx,
            wharf_ssl_op_no_compression() | wharf_ssl_op_no_renegotiation() | wharf_ssl_op_server_preference()
                | wharf_ssl_op_ignore_unexpected_eof())
        guard SSL_CTX_set_cipher_list(ctx, Self.cipherList) == 1 else { throw TLSError("cipher list") }
        // An idle connection keeps no record buffers (about 27 KiB each otherwise, measured with 1,000
        // connections); they are taken again from the allocator when a record comes.
        _ = wharf_ssl_ctx_set_mode(ctx, Int(SSL_MODE_RELEASE_BUFFERS))
    }

    deinit { SSL_CTX_free(ctx) }

    /// A server context: `certificateChain` (PEM, the leaf first, then intermediates), `privateKey`
    /// (PEM), and optionally a PEM bundle of CAs whose client certificates are requested and verified
    /// (a client without one may still connect and authenticate with a token).
    public static func server(certificateChain: String, privateKey: String, clientCA: String? = nil) throws
        -> TLSContext
    {
        let c = try TLSContext(method: TLS_server_method(), isServer: true, clientCA: clientCA != nil)
        // No TLS 1.3 session tickets: Wharf's clients hold long connections and never resume, and a
        // ticket arriving right after the handshake races a client that reads on one thread while it
        // writes on another (Python's threaded client hung in about 1 of 100 handshakes with them).
        SSL_CTX_set_num_tickets(c.ctx, 0)
        try c.useIdentity(certificateChain: certificateChain, privateKey: privateKey)
        if let clientCA {
            guard SSL_CTX_load_verify_locations(c.ctx, clientCA, nil) == 1 else {
                throw TLSError("cannot read client CA \(clientCA)")
            }
            guard let names = SSL_load_client_CA_file(clientCA) else { throw TLSError("no CA in \(clientCA)") }
            SSL_CTX_set_client_CA_list(c.ctx, names)
            SSL_CTX_set_verify(c.ctx, SSL_VERIFY_PEER, nil)
        }
        return c
    }

    /// A client context that verifies the server against `caFile` (PEM bundle; nil: the system's
    /// trust store) unless `verify` is false, presenting `certificateChain`/`privateKey` if given.
    public static func client(
        caFile: String? = nil, certificateChain: String? = nil, privateKey: String? = nil, verify: Bool = true
    ) throws -> TLSContext {
        let c = try TLSContext(method: TLS_client_method(), isServer: false, clientCA: false)
        if verify {
            SSL_CTX_set_verify(c.ctx, SSL_VERIFY_PEER, nil)
            if let caFile {
                guard SSL_CTX_load_verify_locations(c.ctx, caFile, nil) == 1 else {
                    throw TLSError("cannot read CA file \(caFile)")
                }
            } else {
                guard SSL_CTX_set_default_verify_paths(c.ctx) == 1 else { throw TLSError("system trust store") }
            }
        } else {
            SSL_CTX_set_verify(c.ctx, SSL_VERIFY_NONE, nil)
        }
        switch (certificateChain, privateKey) {
        case (let cert?, let key?): try c.useIdentity(certificateChain: cert, privateKey: key)
        case (nil, nil): break
        default: throw TLSError(message: "a client certificate needs both the certificate and its key")
        }
        return c
    }

    private func useIdentity(certificateChain: String, privateKey: String) throws {
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateChain) == 1 else {
            throw TLSError("cannot use certificate \(certificateChain)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, privateKey, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError("cannot use private key \(privateKey)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError("private key \(privateKey) does not match certificate \(certificateChain)")
        }
    }
}
