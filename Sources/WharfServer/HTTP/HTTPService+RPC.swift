import WharfHTTP
import WharfRPC

extension HTTPService {
    /// `POST /rpc`: one JSON-RPC request or batch, through the same dispatcher as TCP. The caller's role
    /// comes from `Authorization: Bearer TOKEN`, else from the connection's client certificate mapped by
    /// `--tls-client-role` (neither: the open methods only, as before `session.hello`).
    /// Every JSON-RPC answer, errors included, is a 200 with the reply (204 for notifications only); an
    /// unknown token is a 401. The body is read as JSON whatever its Content-Type (`curl -d` sends a form
    /// type).
    func rpc(_ request: HTTPRequest, on conn: HTTPConnection, _ reply: @escaping (HTTPResponse) -> Void) {
        let (role, credential, refusal) = credential(request, on: conn)
        if let refusal { return reply(refusal) }
        let session = conn.session(for: credential) { makeSession(role: role) }
        let frame = request.body.withUnsafeBytes { RPCDecoder.decode($0, maxBatch: server.config.limits.maxBatch) }
        switch frame {
        case .reject(let error):
            reply(Self.rpcReply(ClientConnection.reply(.failure(error), id: .null)))
        case .single(.failure(let invalid)):
            reply(Self.rpcReply(ClientConnection.reply(.failure(invalid.error), id: invalid.id)))
        case .single(.success(let call)):
            server.dispatch(call, session: session, transport: .http) { result in
                guard let id = call.id else { return reply(HTTPResponse(status: 204)) }
                reply(Self.rpcReply(ClientConnection.reply(result, id: id)))
            }
        case .batch(let items):
            server.dispatchBatch(items, session: session, transport: .http, started: {}, finished: {}) { replies in
                reply(replies.map { Self.rpcReply($0) } ?? HTTPResponse(status: 204))
            }
        }
    }

    /// Methods that need a connection which stays open to push to: not served over `POST /rpc`
    /// (`Server.dispatch` refuses them there).
    static func refusal(_ call: RPCRequest) -> RPCError? {
        guard call.method == "events.subscribe" else { return nil }
        return RPCError(
            code: RPCError.Code.invalidRequest, message: "events.subscribe needs the TCP transport",
            data: [
                "reason": "transport", "retryable": false,
                "detail": "POST /rpc answers once per request and cannot carry event notifications",
            ])
    }

    /// The role `Authorization: Bearer TOKEN` grants (without tokens configured: admin; without the
    /// header: none), or the 401 for a malformed header or an unknown token.
    /// The caller's role from `Authorization: Bearer TOKEN` (and the token), else from the connection's
    /// verified client certificate, else admin on a server that needs no authentication; or the 401
    /// to answer.
    func credential(_ request: HTTPRequest, on conn: HTTPConnection) -> (role: Role?, token: String, refusal: HTTPResponse?) {
        var role: Role? = conn.certificateRole ?? (server.config.requiresAuthentication ? nil : .admin)
        guard let auth = request.header("authorization") else { return (role, "", nil) }
        let parts = auth.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            return (nil, "", unauthorized("Authorization must be Bearer TOKEN"))
        }
        let token = String(parts[1])
        if !server.config.tokens.isEmpty {
            guard let granted = server.config.role(forToken: token) else { return (nil, token, unauthorized("unknown token")) }
            role = granted
        }
        return (role, token, nil)
    }

    func unauthorized(_ message: String) -> HTTPResponse {
        Self.json(
            status: 401, ClientConnection.reply(.failure(.unauthorized(message)), id: .null),
            headers: [("WWW-Authenticate", "Bearer")])
    }

    static func rpcReply(_ value: JSON) -> HTTPResponse { json(status: 200, value) }
}
