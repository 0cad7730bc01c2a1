import CLibCurl
import Foundation
import WharfUV

/// One outbound POST.
public struct HTTPRequest: Sendable {
    public var url: String
    /// Header lines, `Name: value`.
    public var headers: [String] = []
    public var body: [UInt8] = []
    /// Connect only to these addresses for `host:port` (`CURLOPT_RESOLVE`): the ones the SSRF guard
    /// checked, so a second lookup cannot send the request somewhere else.
    public var pinned: (host: String, port: Int, addresses: [IPAddress])?
    public var connectTimeoutMs = 5_000
    public var timeoutMs = 15_000
    /// A PEM bundle of CAs to trust for HTTPS instead of the system's.
    public var caFile: String?

    public init(url: String) { self.url = url }
}

/// What came of a request: an HTTP status, or why there was none.
public struct HTTPResponse: Sendable {
    /// The status line's code; nil when no response arrived.
    public var status: Int?
    /// `dns`, `connect`, `timeout`, `tls`, `network`, or `http` (a response that is not 2xx); nil on success.
    public var errorKind: String?
    public var error: String?
    /// The first 4 KiB of the response body; the transfer stops there (the rest is never read).
    public var body: [UInt8] = []
    /// The `Retry-After` header, as sent.
    public var retryAfter: String?
    public var latencyMs: Double = 0

    public var succeeded: Bool { (200..<300).contains(status ?? 0) }
    public static let maxBody = 4096

    public init(status: Int? = nil, errorKind: String? = nil, error: String? = nil) {
        self.status = status
        self.errorKind = errorKind
        self.error = error
    }
}

/// libcurl's multi interface driven by the event loop: curl tells which sockets to watch
/// (`CURLMOPT_SOCKETFUNCTION` → one `Poll` per socket) and when to wake it (`CURLMOPT_TIMERFUNCTION`
/// → one `LoopTimer`); readiness goes back through `curl_multi_socket_action`. Any number of
/// requests share the loop thread and curl's connection cache (keep-alive). Loop thread only.
public final class HTTPClient {
    private let loop: EventLoop
    private let multi: UnsafeMutableRawPointer
    private let timer: LoopTimer
    private var polls: [Int32: Poll] = [:]
    /// Requests curl is working on, kept alive until it is done with them.
    private var live = Set<Transfer>()
    private var closed = false
    /// Requests in flight.
    public private(set) var active = 0

    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    public init(loop: EventLoop) throws {
        _ = Self.globalInit
        self.loop = loop
        guard let m = curl_multi_init() else { throw HTTPClientError("curl_multi_init failed") }
        multi = m
        timer = try LoopTimer(loop: loop)
        timer.unref()
        let me = Unmanaged.passUnretained(self).toOpaque()
        wharf_curl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, me)
        wharf_curl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, me)
        wharf_curl_multi_setopt_socketfn(multi) { _, fd, what, userp, _ in
            Unmanaged<HTTPClient>.fromOpaque(userp!).takeUnretainedValue().watch(fd: fd, what: what)
            return 0
        }
        wharf_curl_multi_setopt_timerfn(multi) { _, timeoutMs, userp in
            Unmanaged<HTTPClient>.fromOpaque(userp!).takeUnretainedValue().setTimer(timeoutMs)
            return 0
        }
        wharf_curl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16)
    }

    /// Cancels what is in flight (each completes with a `network` error) and frees curl's state.
    public func close() {
        guard !closed else { return }
        closed = true
        timer.close()
        // Every request still in flight gets a completion.
        for t in Array(live) { finish(t.easy, code: CURLE_ABORTED_BY_CALLBACK) }
        for p in polls.values { p.close() }
        polls = [:]
        curl_multi_cleanup(multi)
    }

    public func send(_ request: HTTPRequest, _ completion: @escaping (HTTPResponse) -> Void) {
        guard !closed, let easy = curl_easy_init() else {
            return completion(HTTPResponse(errorKind: "network", error: "client closed"))
        }
        let t = Transfer(client: self, easy: easy, completion: completion)
        let me = Unmanaged.passUnretained(t).toOpaque()
        wharf_curl_setopt_ptr(easy, CURLOPT_PRIVATE, me)
        _ = request.url.withCString { wharf_curl_setopt_ptr(easy, CURLOPT_URL, $0) }
        _ = "http,https".withCString { wharf_curl_setopt_ptr(easy, CURLOPT_PROTOCOLS_STR, $0) }
        wharf_curl_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        wharf_curl_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0)
        wharf_curl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, request.connectTimeoutMs)
        wharf_curl_setopt_long(easy, CURLOPT_TIMEOUT_MS, request.timeoutMs)
        wharf_curl_setopt_long(easy, CURLOPT_POST, 1)
        wharf_curl_setopt_long(easy, CURLOPT_POSTFIELDSIZE, request.body.count)
        _ = request.body.withUnsafeBytes { wharf_curl_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)) }
        for h in request.headers + ["Expect:"] { t.headers = curl_slist_append(t.headers, h) }
        wharf_curl_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeRawPointer(t.headers))
        if let caFile = request.caFile {
            _ = caFile.withCString { wharf_curl_setopt_ptr(easy, CURLOPT_CAINFO, $0) }
        }
        if let pin = request.pinned {
            let entry = "\(pin.host):\(pin.port):" + pin.addresses.map(\.resolveForm).joined(separator: ",")
            t.resolve = curl_slist_append(nil, entry)
            wharf_curl_setopt_ptr(easy, CURLOPT_RESOLVE, UnsafeRawPointer(t.resolve))
        }
        wharf_curl_setopt_ptr(easy, CURLOPT_WRITEDATA, me)
        wharf_curl_setopt_write(easy, CURLOPT_WRITEFUNCTION) { data, size, count, userp in
            let t = Unmanaged<Transfer>.fromOpaque(userp!).takeUnretainedValue()
            let n = size * count
            let room = HTTPResponse.maxBody - t.body.count
            // The stored prefix is all we keep, so the rest is not downloaded: answering fewer bytes
            // than given aborts the transfer (CURLE_WRITE_ERROR), which `finish` reads as complete.
            guard room > 0 else {
                t.cut = true
                return 0
            }
            if let data { t.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: min(n, room))) }
            return n
        }
        wharf_curl_setopt_ptr(easy, CURLOPT_HEADERDATA, me)
        wharf_curl_setopt_write(easy, CURLOPT_HEADERFUNCTION) { data, size, count, userp in
            let t = Unmanaged<Transfer>.fromOpaque(userp!).takeUnretainedValue()
            let n = size * count
            if let data {
                let line = String(decoding: UnsafeRawBufferPointer(start: data, count: n), as: UTF8.self)
                if line.lowercased().hasPrefix("retry-after:") {
                    t.retryAfter = line.dropFirst("retry-after:".count).trimmingCharacters(in: .whitespacesAndNewlines)
                }
            }
            return n
        }
        live.insert(t)
        active += 1
        let rc = curl_multi_add_handle(multi, easy)
        if rc != CURLM_OK { finish(easy, code: CURLE_FAILED_INIT) }
    }

    // MARK: curl's callbacks

    private func watch(fd: Int32, what: Int32) {
        if what == CURL_POLL_REMOVE {
            polls.removeValue(forKey: fd)?.close()
            return
        }
        let poll: Poll
        if let p = polls[fd] {
            poll = p
        } else {
            guard let p = try? Poll(loop: loop, fd: fd) else { return }
            p.setCallback { [unowned self] status, events in
                var flags: Int32 = 0
                if status < 0 { flags |= CURL_CSELECT_ERR }
                if events.contains(.readable) { flags |= CURL_CSELECT_IN }
                if events.contains(.writable) { flags |= CURL_CSELECT_OUT }
                self.action(fd, flags)
            }
            polls[fd] = p
            poll = p
        }
        var events: Poll.Events = []
        if what == CURL_POLL_IN || what == CURL_POLL_INOUT { events.insert(.readable) }
        if what == CURL_POLL_OUT || what == CURL_POLL_INOUT { events.insert(.writable) }
        poll.watch(events)
    }

    private func setTimer(_ timeoutMs: Int) {
        guard !closed else { return }
        if timeoutMs < 0 { return timer.stop() }
        timer.start(timeoutMs: UInt64(timeoutMs)) { [unowned self] in self.action(CURL_SOCKET_TIMEOUT, 0) }
    }

    private func action(_ fd: Int32, _ flags: Int32) {
        guard !closed else { return }
        var running: Int32 = 0
        curl_multi_socket_action(multi, fd, flags, &running)
        var left: Int32 = 0
        while let msg = curl_multi_info_read(multi, &left) {
            guard msg.pointee.msg == CURLMSG_DONE, let easy = msg.pointee.easy_handle else { continue }
            finish(easy, code: msg.pointee.data.result)
        }
    }

    private func finish(_ easy: UnsafeMutableRawPointer, code: CURLcode) {
        var raw: UnsafeMutableRawPointer?
        wharf_curl_getinfo_ptr(easy, CURLINFO_PRIVATE, &raw)
        guard let raw else { return }
        let t = Unmanaged<Transfer>.fromOpaque(raw).takeUnretainedValue()
        var response = HTTPResponse()
        var status = 0
        wharf_curl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        var seconds = 0.0
        wharf_curl_getinfo_double(easy, CURLINFO_TOTAL_TIME, &seconds)
        response.latencyMs = (seconds * 1_000_000).rounded() / 1000
        response.body = t.body
        response.retryAfter = t.retryAfter
        // A transfer cut after the stored prefix has its answer: the status decides.
        if (code == CURLE_OK || (code == CURLE_WRITE_ERROR && t.cut)) && status > 0 {
            response.status = status
            if !(200..<300).contains(status) {
                response.errorKind = "http"
                response.error = "HTTP \(status)"
            }
        } else {
            response.errorKind = Self.kind(code)
            response.error = String(cString: curl_easy_strerror(code))
        }
        curl_multi_remove_handle(multi, easy)
        curl_easy_cleanup(easy)
        curl_slist_free_all(t.headers)
        curl_slist_free_all(t.resolve)
        live.remove(t)
        active -= 1
        t.completion(response)
    }

    static func kind(_ code: CURLcode) -> String {
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: return "dns"
        case CURLE_COULDNT_CONNECT: return "connect"
        case CURLE_OPERATION_TIMEDOUT: return "timeout"
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
            CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS,
            CURLE_USE_SSL_FAILED, CURLE_SSL_ENGINE_INITFAILED, CURLE_SSL_SHUTDOWN_FAILED, CURLE_SSL_CRL_BADFILE:
            return "tls"
        default: return "network"
        }
    }

    /// One request's state, kept alive by its client's `live` until curl is done with it.
    final class Transfer: Hashable {
        unowned let client: HTTPClient
        let easy: UnsafeMutableRawPointer
        let completion: (HTTPResponse) -> Void
        var headers: UnsafeMutablePointer<curl_slist>?
        var resolve: UnsafeMutablePointer<curl_slist>?
        var body: [UInt8] = []
        /// The body went on past the stored prefix and the transfer was cut there.
        var cut = false
        var retryAfter: String?

        init(client: HTTPClient, easy: UnsafeMutableRawPointer, completion: @escaping (HTTPResponse) -> Void) {
            self.client = client
            self.easy = easy
            self.completion = completion
        }

        static func == (a: Transfer, b: Transfer) -> Bool { a === b }
        func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(self)) }
    }
}

public struct HTTPClientError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
