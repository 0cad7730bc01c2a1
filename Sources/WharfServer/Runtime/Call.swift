import WharfRPC

/// One request being handled: its params, the caller's session, and the one reply it will get.
///
/// A handler replies exactly once, now or later (after a database round trip, or when a long poll
/// ends). Replying to a call whose connection has gone is harmless. Loop thread only.
public final class Call {
    public let method: String
    public let params: Params
    public let session: Session
    private var done: ((Result<JSON, RPCError>) -> Void)?

    init(method: String, params: Params, session: Session, done: @escaping (Result<JSON, RPCError>) -> Void) {
        self.method = method
        self.params = params
        self.session = session
        self.done = done
    }

    /// True until the call was answered.
    public var isPending: Bool { done != nil }

    public func reply(_ result: JSON) { finish(.success(result)) }
    public func fail(_ error: RPCError) { finish(.failure(error)) }

    public func finish(_ result: Result<JSON, RPCError>) {
        guard let d = done else { preconditionFailure("\(method) answered twice") }
        done = nil
        d(result.mapError { RetrySafety.adjust($0, method: method, params: params) })
    }
}

/// What the server knows about one client connection, shared by its calls.
public final class Session {
    public let id: String
    /// The granted role; nil until `session.hello` when the server requires tokens.
    public internal(set) var role: Role?
    public internal(set) var clientName: String?
    /// The common name of the verified TLS client certificate, if one was presented.
    public internal(set) var certificateName: String?
    public internal(set) var isOpen = true
    /// The event types this connection receives as `event` notifications (`*`: all).
    public var subscriptions: Set<String> { eventFilter.types }
    /// Which events this connection receives (`events.subscribe`).
    var eventFilter = EventFilter()
    private var closeHooks: [String: () -> Void] = [:]

    init(id: String, role: Role?) {
        self.id = id
        self.role = role
    }

    /// Runs `hook` when the connection closes (replaces an earlier hook under the same key).
    public func onClose(_ key: String, _ hook: @escaping () -> Void) { closeHooks[key] = hook }
    public func removeCloseHook(_ key: String) { closeHooks[key] = nil }

    func closed() {
        isOpen = false
        let hooks = closeHooks
        closeHooks = [:]
        for hook in hooks.values { hook() }
    }
}
