/// The HTTP side door: where it listens and the limits that protect it (Protocol/http.md).
public struct HTTPSettings: Sendable {
    /// False: no HTTP listener (`--http-listen off`; the library's default, `wharf serve` turns it on).
    public var enabled = false
    /// True: failing to bind stops the server (an address given explicitly). False: a warning, and the
    /// server runs without HTTP (the default address, which a second replica on one host cannot share).
    public var required = false
    public var host = "127.0.0.1"
    public var port = 7412
    /// Request line plus header fields; past it the reply is 431 and the connection closes.
    public var maxHeaderBytes = 16 << 10
    /// Request body (a `POST /rpc` document); past it the reply is 413 and the connection closes.
    public var maxBodyBytes = 1 << 20
    /// Open HTTP connections; the next one gets 503 and is closed.
    public var maxConnections = 1_024
    /// Requests one connection may have unanswered (pipelined) before the server stops reading it.
    public var maxPipelined = 64
    /// A request must be complete this soon after its first byte (slow clients get 408 and a close).
    public var requestTimeoutMs = 10_000
    /// A keep-alive connection with nothing in flight for this long is closed.
    public var idleTimeoutMs = 60_000
    /// How long `GET /metrics` reuses the database-derived gauges (one query per period at most).
    public var metricsCacheMs = 1_000

    public init() {}

    /// Refuses settings that cannot work, and an open HTTP port off loopback without tokens, or without
    /// TLS (`encrypted`: the server has a certificate, which HTTP serves too) unless `plaintextAllowed`.
    func validate(tokensConfigured: Bool, encrypted: Bool = false, plaintextAllowed: Bool = true) throws(ConfigError) {
        guard enabled else { return }
        if !tokensConfigured && !ServerConfig.isLoopback(host) {
            throw ConfigError(
                message:
                    "refusing to serve HTTP on \(host) without tokens: anyone who can reach it could run jobs. "
                    + "Add --token ROLE:SECRET (or --token-file), or use --http-listen 127.0.0.1:PORT or off.")
        }
        if !encrypted && !plaintextAllowed && !ServerConfig.isLoopback(host) {
            throw ConfigError(
                message:
                    "refusing to serve HTTP on \(host) without TLS: bearer tokens and payloads would cross the network "
                    + "in plain text. Add --tls-cert PEM --tls-key PEM (HTTP then serves HTTPS with that certificate), "
                    + "or pass --insecure-plaintext if the network is trusted, or use --http-listen 127.0.0.1:PORT or off.")
        }
        if port < 0 || port > 65535 { throw ConfigError(message: "HTTP port \(port) is out of range") }
        let positive: [(String, Int)] = [
            ("http-max-header-bytes", maxHeaderBytes), ("http-max-body-bytes", maxBodyBytes),
            ("http-max-connections", maxConnections), ("http-max-pipelined", maxPipelined),
        ]
        for (name, value) in positive where value < 1 { throw ConfigError(message: "--\(name) must be at least 1") }
        if metricsCacheMs < 1_000 { throw ConfigError(message: "--http-metrics-cache-ms must be at least 1000") }
    }
}
