import WharfRPC

extension Server {
    /// Starts the HTTP side door when configured. An address given explicitly must be had; the default
    /// one, when taken (a second replica on the host), leaves the server running without HTTP.
    func startHTTP() throws {
        guard config.http.enabled else { return }
        let service = HTTPService(server: self)
        do {
            try service.start()
        } catch {
            if config.http.required { throw error }
            logger.warning(
                "HTTP listener not started: metrics, probes and POST /rpc are off (use --http-listen HOST:PORT)",
                metadata: ["address": "\(config.http.host):\(config.http.port)", "error": "\(error)"])
            return
        }
        http = service
        logger.info("http listening", metadata: ["address": "\(config.http.host):\(service.boundPort)"])
    }

    /// The bound HTTP port (useful with port 0); 0 when HTTP is off.
    public var httpPort: Int { http?.boundPort ?? 0 }
}
