/// One HTTP/1.1 response, encoded with a `Content-Length` (never chunked: every body is whole).
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A body of `contentType`, e.g. `application/json`.
    public init(status: Int, contentType: String, body: [UInt8], headers: [(name: String, value: String)] = []) {
        self.init(status: status, headers: [("Content-Type", contentType)] + headers, body: body)
    }

    /// Appends the encoded response to `out`. `close`: announce `Connection: close`. `headOnly`: the
    /// answer to a HEAD request (the headers of the GET, no body).
    public func encode(into out: inout [UInt8], close: Bool, headOnly: Bool = false) {
        out.append(contentsOf: "HTTP/1.1 \(status) \(Self.reason(status))\r\n".utf8)
        for h in headers { out.append(contentsOf: "\(h.name): \(h.value)\r\n".utf8) }
        out.append(contentsOf: "Content-Length: \(body.count)\r\n".utf8)
        if close { out.append(contentsOf: "Connection: close\r\n".utf8) }
        out.append(contentsOf: "\r\n".utf8)
        if !headOnly { out.append(contentsOf: body) }
    }

    /// The standard reason phrase of the statuses this server sends.
    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status \(status)"
        }
    }
}
