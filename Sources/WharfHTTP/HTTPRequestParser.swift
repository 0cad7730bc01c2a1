import CHTTPParser

/// One HTTP/1.1 request, whole: its head and its body.
public struct HTTPRequest: Sendable {
    /// `GET`, `POST`... as the parser names it.
    public var method: String
    /// The request target as sent (`/metrics?x=1`).
    public var target: String
    /// Header fields in the order received; names as sent (compare them case-insensitively).
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The connection may carry another request after this one (HTTP/1.1 without `Connection: close`).
    public var keepAlive: Bool
    public var versionMinor: Int

    /// The path without the query.
    public var path: Substring { target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0] }

    /// The first value of a header field, by case-insensitive name.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name }?.value
    }
}

/// Turns bytes into whole requests with Debian's http_parser (`libhttp-parser-dev`), within limits.
///
/// No I/O: the connection feeds what it read and gets each request as it completes. A request that
/// breaks a limit or the grammar ends parsing for good with a `Failure` naming the reply it deserves.
/// When the consumer declines more requests (pipelining past its limit), the parser pauses and keeps
/// the unparsed rest until `resume`. One thread at a time (the loop thread).
public final class HTTPRequestParser {
    public struct Limits: Sendable, Equatable {
        /// Request line plus header fields, in bytes.
        public var maxHeaderBytes: Int
        /// Body bytes (after de-chunking).
        public var maxBodyBytes: Int
        public init(maxHeaderBytes: Int, maxBodyBytes: Int) {
            self.maxHeaderBytes = maxHeaderBytes
            self.maxBodyBytes = maxBodyBytes
        }
    }

    /// Why parsing stopped for good, named after the reply it deserves.
    public enum Failure: Error, Equatable, Sendable {
        /// 400: not HTTP/1.x as the grammar says (the parser's own description).
        case malformed(String)
        /// 431: the request line and header fields exceed `maxHeaderBytes`.
        case headersTooLarge
        /// 413: the body exceeds `maxBodyBytes` (announced or received).
        case bodyTooLarge
        /// 411: a request that carries a body without `Content-Length` or chunked encoding.
        case lengthRequired
    }

    /// What a `feed` or `resume` came to.
    public enum Outcome: Equatable, Sendable {
        /// Every byte was taken.
        case ok
        /// The consumer declined more requests; the rest waits for `resume`.
        case paused
        case failed(Failure)
    }

    public let limits: Limits
    private let parser: UnsafeMutablePointer<http_parser>
    private var failure: Failure?
    private(set) public var isPaused = false
    /// Bytes read after the request that paused the parser.
    private var pending: [UInt8] = []
    private var onRequest: ((HTTPRequest) -> Bool)?

    // The request being read.
    private var target = ""
    private var headers: [(name: String, value: String)] = []
    private var field: [UInt8] = []
    private var value: [UInt8] = []
    private var readingValue = false
    private var headerBytes = 0
    private var body: [UInt8] = []
    /// True between the first byte of a request and its end (a slow client's clock runs meanwhile).
    public private(set) var inRequest = false

    public init(limits: Limits) {
        self.limits = limits
        parser = .allocate(capacity: 1)
        http_parser_init(parser, HTTP_REQUEST)
    }

    deinit { parser.deallocate() }

    /// Bytes held besides the request being read (the rest after a pause).
    public var bufferedCount: Int { pending.count + body.count + headerBytes }

    /// Parses `bytes`, calling `onRequest` for each request completed; `onRequest` returns false to
    /// pause after that request. While paused, bytes are only kept.
    public func feed(_ bytes: UnsafeRawBufferPointer, _ onRequest: (HTTPRequest) -> Bool) -> Outcome {
        if let failure { return .failed(failure) }
        if isPaused {
            pending.append(contentsOf: bytes)
            return .paused
        }
        return execute(bytes, onRequest)
    }

    /// Continues after a pause with the bytes kept meanwhile.
    public func resume(_ onRequest: (HTTPRequest) -> Bool) -> Outcome {
        if let failure { return .failed(failure) }
        guard isPaused else { return .ok }
        isPaused = false
        http_parser_pause(parser, 0)
        let rest = pending
        pending = []
        if rest.isEmpty { return .ok }
        return rest.withUnsafeBytes { execute($0, onRequest) }
    }

    private func execute(_ bytes: UnsafeRawBufferPointer, _ onRequest: (HTTPRequest) -> Bool) -> Outcome {
        guard bytes.count > 0 else { return .ok }
        let consumed = withoutActuallyEscaping(onRequest) { handler -> Int in
            self.onRequest = handler
            defer { self.onRequest = nil }
            parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            var settings = Self.settings
            return http_parser_execute(
                parser, &settings, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), bytes.count)
        }
        let errno = http_errno(rawValue: wharf_http_parser_errno(parser))
        if errno == HPE_PAUSED {
            isPaused = true
            if consumed < bytes.count { pending.append(contentsOf: bytes[consumed...]) }
            return .paused
        }
        if errno != HPE_OK {
            let reason = failure ?? .malformed(String(cString: http_errno_description(errno)))
            failure = reason
            return .failed(reason)
        }
        if wharf_http_parser_upgrade(parser) != 0 || consumed != bytes.count {
            failure = .malformed("protocol upgrade is not supported")
            return .failed(failure!)
        }
        return .ok
    }

    private static func owner(_ p: UnsafeMutablePointer<http_parser>?) -> HTTPRequestParser {
        Unmanaged<HTTPRequestParser>.fromOpaque(p!.pointee.data).takeUnretainedValue()
    }

    /// Counts header-part bytes; false once over the limit.
    private func countHeader(_ n: Int) -> Bool {
        headerBytes += n
        if headerBytes > limits.maxHeaderBytes {
            failure = .headersTooLarge
            return false
        }
        return true
    }

    private func endField() {
        guard readingValue else { return }
        headers.append((String(decoding: field, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        readingValue = false
    }

    private static var settings: http_parser_settings {
        var s = http_parser_settings()
        s.on_message_begin = { p in
            let me = HTTPRequestParser.owner(p)
            me.inRequest = true
            me.target = ""
            me.headers = []
            me.headerBytes = 0
            me.body = []
            me.readingValue = false
            return 0
        }
        s.on_url = { p, at, n in
            let me = HTTPRequestParser.owner(p)
            guard me.countHeader(n) else { return -1 }
            me.target += String(decoding: UnsafeRawBufferPointer(start: at, count: n), as: UTF8.self)
            return 0
        }
        s.on_header_field = { p, at, n in
            let me = HTTPRequestParser.owner(p)
            guard me.countHeader(n) else { return -1 }
            me.endField()
            me.field.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
            return 0
        }
        s.on_header_value = { p, at, n in
            let me = HTTPRequestParser.owner(p)
            guard me.countHeader(n) else { return -1 }
            me.readingValue = true
            me.value.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
            return 0
        }
        s.on_headers_complete = { p in
            let me = HTTPRequestParser.owner(p)
            if p!.pointee.http_major != 1 {
                me.failure = .malformed("HTTP/\(p!.pointee.http_major).\(p!.pointee.http_minor) is not supported")
                return -1
            }
            me.readingValue = me.readingValue || !me.field.isEmpty
            me.endField()
            let flags = wharf_http_parser_flags(p)
            let chunked = flags & UInt32(F_CHUNKED.rawValue) != 0
            let hasLength = flags & UInt32(F_CONTENTLENGTH.rawValue) != 0
            if hasLength, p!.pointee.content_length > UInt64(me.limits.maxBodyBytes) {
                me.failure = .bodyTooLarge
                return -1
            }
            let method = http_method(rawValue: wharf_http_parser_method(p))
            let wantsBody = method == HTTP_POST || method == HTTP_PUT || method == HTTP_PATCH
            if wantsBody, !chunked, !hasLength {
                me.failure = .lengthRequired
                return -1
            }
            return 0
        }
        s.on_body = { p, at, n in
            let me = HTTPRequestParser.owner(p)
            if me.body.count + n > me.limits.maxBodyBytes {
                me.failure = .bodyTooLarge
                return -1
            }
            me.body.append(contentsOf: UnsafeRawBufferPointer(start: at, count: n))
            return 0
        }
        s.on_message_complete = { p in
            let me = HTTPRequestParser.owner(p)
            let request = HTTPRequest(
                method: String(cString: http_method_str(http_method(rawValue: wharf_http_parser_method(p)))),
                target: me.target, headers: me.headers, body: me.body, keepAlive: http_should_keep_alive(p) != 0,
                versionMinor: Int(p!.pointee.http_minor))
            me.inRequest = false
            me.target = ""
            me.headers = []
            me.body = []
            me.headerBytes = 0
            if me.onRequest?(request) == false { http_parser_pause(p, 1) }
            return 0
        }
        return s
    }
}
