import Logging
import WharfRPC
import WharfUV

/// Every served method by name, with who may call it, and the dispatch of one request to its handler:
/// the role check, the params checks every method shares, and turning a thrown error into the reply.
/// Each feature registers its own methods here. Loop thread only.
final class MethodTable {
    private var methods: [String: Method] = [:]
    private let logger: Logger

    struct Method {
        let name: String
        let roles: Set<Role>
        let open: Bool
        let handler: (Call) throws -> Void
    }

    init(logger: Logger) { self.logger = logger }

    /// Registers a method. The roles of its row in `Access.table` may call it (admin always may);
    /// `open` methods need no session.
    func register(_ name: String, open: Bool = false, _ handler: @escaping (Call) throws -> Void) {
        precondition(methods[name] == nil, "\(name) registered twice")
        guard let roles = Access.table[name] else { preconditionFailure("\(name) has no row in Access.table") }
        methods[name] = Method(name: name, roles: roles, open: open, handler: handler)
    }

    func serves(_ name: String) -> Bool { methods[name] != nil }

    /// The roles besides `admin` that may call each method (what `dispatch` enforces).
    var roles: [String: Set<Role>] { methods.mapValues(\.roles) }

    /// The names of every method, sorted.
    var names: [String] { methods.keys.sorted() }

    func dispatch(_ request: RPCRequest, session: Session, _ done: @escaping (Result<JSON, RPCError>) -> Void) {
        // One debug line per answered request: its fields, never its params (they may hold secrets).
        let done = logger.logLevel <= .debug ? logged(request, session: session, done) : done
        guard let spec = methods[request.method] else { return done(.failure(.methodNotFound(request.method))) }
        if !spec.open {
            guard let role = session.role else {
                return done(.failure(.unauthorized("authenticate with session.hello first")))
            }
            if role != .admin && !spec.roles.contains(role) {
                return done(.failure(.forbidden(role: role.rawValue, method: request.method)))
            }
        }
        let params: Params
        do throws(RPCError) { params = try Params(request.params) } catch { return done(.failure(error)) }
        // One such string would make PostgreSQL refuse every call batched into the same statement.
        if let path = request.params?.pathOfNUL() {
            return done(.failure(.invalidParams(field: path, "must not contain the character U+0000")))
        }
        // Stored altered (1e400 as null, 99999999999999999999999999 as 1e+26) it would be silently wrong.
        if let path = request.params?.pathOfInexactNumber() {
            return done(
                .failure(.invalidParams(field: path, "is a number that would not be kept exactly (see Protocol/README.md)")))
        }
        let call = Call(method: request.method, params: params, session: session, done: done)
        do {
            try spec.handler(call)
        } catch let error as RPCError {
            if call.isPending { call.fail(error) }
        } catch {
            logger.error("handler failed", metadata: ["method": "\(request.method)", "error": "\(error)"])
            if call.isPending { call.fail(.internalError) }
        }
    }

    /// `done`, logging the request's method, id, session, role, outcome and duration as it answers.
    private func logged(
        _ request: RPCRequest, session: Session, _ done: @escaping (Result<JSON, RPCError>) -> Void
    ) -> (Result<JSON, RPCError>) -> Void {
        let started = EventLoop.hrtimeNs
        return { [logger] result in
            let id = String((request.id?.text ?? "null").prefix(80))
            var fields: Logger.Metadata = [
                "method": "\(request.method.prefix(100))", "id": "\(id)", "session": "\(session.id)",
                "role": "\(session.role?.rawValue ?? "none")",
                "ms": "\(Double((EventLoop.hrtimeNs &- started) / 1_000) / 1_000)",
            ]
            if case .failure(let e) = result { fields["code"] = "\(e.code)" }
            logger.debug("request", metadata: fields)
            done(result)
        }
    }
}
