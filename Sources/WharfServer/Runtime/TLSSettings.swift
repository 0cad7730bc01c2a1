import WharfTLS

/// TLS on the JSON-RPC port (`--tls-cert`, `--tls-key`, `--tls-client-ca`, `--tls-client-role`); see
/// Protocol/README.md, "TLS".
public struct TLSSettings: Sendable {
    /// PEM: the server's certificate first, then its intermediates.
    public var certificateChain: String
    /// PEM private key of that certificate.
    public var privateKey: String
    /// PEM bundle of CAs: client certificates are requested and verified against it.
    public var clientCA: String?
    /// A verified client certificate's subject common name (CN) -> the role its connection gets, as
    /// an alternative to a token.
    public var clientRoles: [String: Role] = [:]

    public init(certificateChain: String, privateKey: String) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
    }

    /// Reads the files into a fresh context (at start, and again on SIGHUP).
    func makeContext() throws -> TLSContext {
        try TLSContext.server(certificateChain: certificateChain, privateKey: privateKey, clientCA: clientCA)
    }

    func validate() throws(ConfigError) {
        if !clientRoles.isEmpty, clientCA == nil {
            throw ConfigError(message: "--tls-client-role needs --tls-client-ca (the CA that vouches for the names)")
        }
    }
}
