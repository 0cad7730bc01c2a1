import WharfRPC
import WharfUV

/// Dispatch: one request or a batch through the method table, with its metrics and the drain's refusal.
extension Server {
    /// The roles besides `admin` that may call each served method (what `dispatch` enforces).
    public var methodRoles: [String: Set<Role>] { methods.roles }

    /// The names of every method served.
    public var methodNames: [String] { methods.names }

    func dispatch(
        _ request: RPCRequest, session: Session, transport: ServerMetrics.Transport = .tcp,
        _ done: @escaping (Result<JSON, RPCError>) -> Void
    ) {
        let started = EventLoop.hrtimeNs
        let method = methods.serves(request.method) ? request.method : "unknown"
        let done: (Result<JSON, RPCError>) -> Void = { [unowned self] result in
            let code: Int
            switch result {
            case .success: code = 0
            case .failure(let e): code = e.code
            }
            self.metrics.requestFinished(
                transport: transport, method: method, code: code, nanoseconds: EventLoop.hrtimeNs &- started)
            done(result)
        }
        if draining, methods.serves(request.method) {
            return done(.failure(.unavailable("server is shutting down", reason: "shutting_down")))
        }
        if transport == .http, let refusal = HTTPService.refusal(request) { return done(.failure(refusal)) }
        methods.dispatch(request, session: session, done)
    }

    /// Dispatches the requests of one batch; `done` gets the reply array once every request answered
    /// (nil when all were notifications). `started`/`finished` bracket each dispatched request.
    func dispatchBatch(
        _ items: [Result<RPCRequest, RPCInvalid>], session: Session, transport: ServerMetrics.Transport = .tcp,
        started: () -> Void, finished: @escaping () -> Void, _ done: @escaping (JSON?) -> Void
    ) {
        var replies: [JSON?] = Array(repeating: nil, count: items.count)
        var remaining = items.count
        func finishOne() {
            remaining -= 1
            guard remaining == 0 else { return }
            let present = replies.compactMap { $0 }
            // A batch of notifications only gets no reply at all.
            done(present.isEmpty ? nil : .array(present))
        }
        for (index, item) in items.enumerated() {
            switch item {
            case .failure(let invalid):
                replies[index] = ClientConnection.reply(.failure(invalid.error), id: invalid.id)
                finishOne()
            case .success(let request):
                started()
                dispatch(request, session: session, transport: transport) { result in
                    if let id = request.id { replies[index] = ClientConnection.reply(result, id: id) }
                    finishOne()
                    finished()
                }
            }
        }
    }

    /// Raises an event for subscribers on every replica.
    func wantsEvent(_ type: EventType) -> Bool { events.wants(type) }
    func raiseEvent(_ type: EventType, subject: String?, data: JSON) { events.raise(type, subject: subject, data: data) }
}
