/// A JSON-RPC error object: what a client receives when a call fails.
///
/// Application errors use codes in -32000...-32099 and always carry `data.reason` (a stable
/// snake_case word) and `data.retryable`.
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var message: String
    public var data: JSON?

    public init(code: Int, message: String, data: JSON? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public var description: String { "\(code) \(message)" + (data.map { " \($0.text)" } ?? "") }

    /// `data.reason`, when present.
    public var reason: String? { data?["reason"]?.stringValue }
    /// `data.retryable`, false when absent.
    public var isRetryable: Bool { data?["retryable"]?.boolValue ?? false }

    /// The codes of the JSON-RPC 2.0 specification and Wharf's application codes.
    public enum Code {
        public static let parseError = -32700
        public static let invalidRequest = -32600
        public static let methodNotFound = -32601
        public static let invalidParams = -32602
        public static let internalError = -32603
        public static let unauthorized = -32001
        public static let forbidden = -32002
        public static let unavailable = -32003
        public static let notFound = -32004
        public static let limitExceeded = -32005
        public static let conflict = -32009
    }

    static func appData(_ reason: String, retryable: Bool, _ extra: JSONObject) -> JSON {
        var o: JSONObject = ["reason": .string(reason), "retryable": .bool(retryable)]
        for p in extra.pairs { o[p.key] = p.value }
        return .object(o)
    }

    public static func parseError(_ detail: String) -> RPCError {
        RPCError(
            code: Code.parseError, message: "Parse error", data: ["reason": "parse_error", "detail": .string(detail)])
    }

    public static func invalidRequest(_ detail: String) -> RPCError {
        RPCError(
            code: Code.invalidRequest, message: "Invalid Request",
            data: ["reason": "invalid_request", "detail": .string(detail)])
    }

    public static func methodNotFound(_ method: String) -> RPCError {
        RPCError(
            code: Code.methodNotFound, message: "Method not found",
            data: ["reason": "method_not_found", "method": .string(method)])
    }

    /// Invalid params, naming the offending field (dotted path) and what was wrong with it.
    public static func invalidParams(field: String, _ detail: String) -> RPCError {
        RPCError(
            code: Code.invalidParams, message: "Invalid params: \(field) \(detail)",
            data: ["reason": "invalid_params", "field": .string(field), "detail": .string(detail)])
    }

    /// An unexpected failure. Deliberately says nothing about its cause.
    public static let internalError = RPCError(
        code: Code.internalError, message: "Internal error", data: ["reason": "internal", "retryable": true])

    public static func unauthorized(_ message: String) -> RPCError {
        RPCError(code: Code.unauthorized, message: message, data: appData("unauthorized", retryable: false, [:]))
    }

    public static func forbidden(role: String, method: String) -> RPCError {
        RPCError(
            code: Code.forbidden, message: "role \(role) may not call \(method)",
            data: appData("forbidden", retryable: false, ["role": .string(role), "method": .string(method)]))
    }

    public static func unavailable(_ message: String, reason: String = "store_unavailable") -> RPCError {
        RPCError(code: Code.unavailable, message: message, data: appData(reason, retryable: true, [:]))
    }

    /// The database connection broke after the call's statement was sent and before its outcome came
    /// back: the call may or may not have taken effect. `retryable` only for a call that is safe to
    /// repeat (idempotent by nature, or carrying an idempotency key); the dispatcher decides.
    public static func outcomeUnknown(_ message: String, retryable: Bool = false) -> RPCError {
        RPCError(code: Code.unavailable, message: message, data: appData("outcome_unknown", retryable: retryable, [:]))
    }

    /// The database accepts no writes (a read-only database, or a standby after a failover).
    public static func storeReadOnly(_ message: String) -> RPCError {
        RPCError(code: Code.unavailable, message: message, data: appData("store_read_only", retryable: true, [:]))
    }

    /// The same error with `data.retryable` set to `retryable`.
    public func settingRetryable(_ retryable: Bool) -> RPCError {
        guard case .object(var o)? = data else { return self }
        o["retryable"] = .bool(retryable)
        return RPCError(code: code, message: message, data: .object(o))
    }

    public static func notFound(_ what: String, id: String) -> RPCError {
        RPCError(
            code: Code.notFound, message: "\(what) \(id) not found",
            data: appData("not_found", retryable: false, ["id": .string(id)]))
    }

    /// Several ids at once (`jobs.wait`): `data.ids` lists the missing ones.
    public static func notFound(_ what: String, ids: [String]) -> RPCError {
        RPCError(
            code: Code.notFound, message: "no such \(what): \(ids.joined(separator: ", "))",
            data: appData("not_found", retryable: false, ["ids": .array(ids.map { .string($0) })]))
    }

    public static func limitExceeded(_ message: String, limit: String, max: Int, retryable: Bool = false) -> RPCError {
        RPCError(
            code: Code.limitExceeded, message: message,
            data: appData("limit_exceeded", retryable: retryable, ["limit": .string(limit), "max": .int(Int64(max))]))
    }

    public static func conflict(_ message: String, reason: String, _ extra: JSONObject = [:]) -> RPCError {
        RPCError(code: Code.conflict, message: message, data: appData(reason, retryable: false, extra))
    }

    public var json: JSON {
        var o: JSONObject = ["code": .int(Int64(code)), "message": .string(message)]
        if let data { o["data"] = data }
        return .object(o)
    }

    /// Reads an error object as received by a client.
    public init?(json: JSON) {
        guard let code = json["code"]?.intValue, let message = json["message"]?.stringValue else { return nil }
        self.init(code: Int(code), message: message, data: json["data"])
    }
}
