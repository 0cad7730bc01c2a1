// Every user of the protocol handles JSON values, so importing WharfRPC brings WharfJSON along.
@_exported import WharfJSON

/// One decoded JSON-RPC request or notification.
public struct RPCRequest: Sendable {
    /// The request id; nil for a notification (no reply is sent).
    public var id: JSON?
    public var method: String
    /// Params as sent: an object, an array, or nil when absent.
    public var params: JSON?

    public init(id: JSON?, method: String, params: JSON?) {
        self.id = id
        self.method = method
        self.params = params
    }

    public var isNotification: Bool { id == nil }
}

/// What one line of input decodes to.
public enum RPCFrame: Sendable {
    /// A single request, or the error reply it earned (with the id to answer, `.null` if unknown).
    case single(Result<RPCRequest, RPCInvalid>)
    /// A batch: one entry per element, in order.
    case batch([Result<RPCRequest, RPCInvalid>])
    /// A reply needing no request at all: parse error, or an empty batch.
    case reject(RPCError)
}

/// A request that could not be accepted, and the id its error reply goes to.
public struct RPCInvalid: Error, Sendable {
    public var id: JSON
    public var error: RPCError
}

public enum RPCDecoder {
    /// Decodes one line (without its newline) per JSON-RPC 2.0.
    public static func decode(_ bytes: UnsafeRawBufferPointer, maxBatch: Int) -> RPCFrame {
        let value: JSON
        do {
            value = try JSONParser.parse(bytes)
        } catch {
            return .reject(.parseError(error.description))
        }
        switch value {
        case .array(let items):
            if items.isEmpty { return .reject(.invalidRequest("empty batch")) }
            if items.count > maxBatch {
                return .reject(
                    .limitExceeded("batch of \(items.count) exceeds \(maxBatch)", limit: "batch", max: maxBatch))
            }
            return .batch(items.map(request(from:)))
        default:
            return .single(request(from: value))
        }
    }

    /// Validates one request object.
    public static func request(from value: JSON) -> Result<RPCRequest, RPCInvalid> {
        guard case .object(let o) = value else {
            return .failure(RPCInvalid(id: .null, error: .invalidRequest("a request must be an object")))
        }
        var id: JSON? = nil
        if let raw = o["id"] {
            switch raw {
            case .string, .int, .double, .null: id = raw
            default:
                return .failure(RPCInvalid(id: .null, error: .invalidRequest("id must be a string, number or null")))
            }
        }
        let answerTo = id ?? .null
        guard o["jsonrpc"] == .string("2.0") else {
            return .failure(RPCInvalid(id: answerTo, error: .invalidRequest("jsonrpc must be \"2.0\"")))
        }
        guard case .string(let method)? = o["method"] else {
            return .failure(RPCInvalid(id: answerTo, error: .invalidRequest("method must be a string")))
        }
        let params = o["params"]
        switch params {
        case nil, .object?, .array?: break
        default: return .failure(RPCInvalid(id: answerTo, error: .invalidRequest("params must be an object or array")))
        }
        return .success(RPCRequest(id: id, method: method, params: params))
    }
}

/// Encodes replies.
public enum RPCEncoder {
    public static func success(id: JSON, result: JSON, into w: inout JSONWriter) {
        w.raw("{\"jsonrpc\":\"2.0\",\"id\":")
        w.write(id)
        w.raw(",\"result\":")
        w.write(result)
        w.raw("}")
    }

    public static func failure(id: JSON, error: RPCError, into w: inout JSONWriter) {
        w.raw("{\"jsonrpc\":\"2.0\",\"id\":")
        w.write(id)
        w.raw(",\"error\":")
        w.write(error.json)
        w.raw("}")
    }

    public static func request(id: JSON?, method: String, params: JSON?, into w: inout JSONWriter) {
        w.raw("{\"jsonrpc\":\"2.0\",")
        if let id {
            w.raw("\"id\":")
            w.write(id)
            w.raw(",")
        }
        w.raw("\"method\":")
        w.write(string: method)
        if let params {
            w.raw(",\"params\":")
            w.write(params)
        }
        w.raw("}")
    }
}
