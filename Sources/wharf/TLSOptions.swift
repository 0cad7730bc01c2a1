import ArgumentParser
import WharfServer
import WharfTLS

/// `wharf serve`'s TLS flags (Protocol/README.md, "TLS").
struct ServeTLSOptions: ParsableArguments {
    @Option(help: "PEM certificate chain (the server's certificate first): serve JSON-RPC over TLS. SIGHUP reloads it.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(help: "PEM bundle of CAs: request client certificates and verify them against it.")
    var tlsClientCa: String?

    @Option(
        help: ArgumentHelp(
            "CN=ROLE, repeatable: a verified client certificate whose subject common name is CN gets ROLE "
                + "(admin, producer, worker, reader) without a token. Needs --tls-client-ca."))
    var tlsClientRole: [String] = []

    @Flag(help: "Allow a non-loopback --listen without TLS (a trusted network, or TLS ending in front of the server).")
    var insecurePlaintext = false

    /// The settings, or nil without `--tls-cert`.
    func settings() throws -> TLSSettings? {
        guard let tlsCert, let tlsKey else {
            if tlsCert != nil || tlsKey != nil { throw ValidationError("--tls-cert and --tls-key go together") }
            if tlsClientCa != nil || !tlsClientRole.isEmpty {
                throw ValidationError("--tls-client-ca and --tls-client-role need --tls-cert and --tls-key")
            }
            return nil
        }
        var s = TLSSettings(certificateChain: tlsCert, privateKey: tlsKey)
        s.clientCA = tlsClientCa
        for entry in tlsClientRole {
            guard let eq = entry.lastIndex(of: "="),
                let role = Role(rawValue: String(entry[entry.index(after: eq)...])),
                eq != entry.startIndex
            else {
                throw ValidationError(
                    "--tls-client-role must be CN=ROLE with ROLE one of admin, producer, worker, reader")
            }
            s.clientRoles[String(entry[..<eq])] = role
        }
        return s
    }
}

/// The TLS flags of every client command.
struct ClientTLSOptions: ParsableArguments {
    @Flag(help: "Connect with TLS (implied by --ca-file or --cert).")
    var tls = false

    @Option(help: "PEM bundle of CAs to verify the server with (default: the system's trust store).")
    var caFile: String?
    @Option(help: "PEM client certificate chain to present (with --key).") var cert: String?
    @Option(help: "PEM private key of --cert.") var key: String?

    /// The client context, or nil for plaintext.
    func context() throws -> TLSContext? {
        guard tls || caFile != nil || cert != nil || key != nil else { return nil }
        do {
            return try TLSContext.client(caFile: caFile, certificateChain: cert, privateKey: key)
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
