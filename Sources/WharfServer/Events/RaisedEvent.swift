import WharfRPC

/// One event as this replica's subscribers get it: its number in the replica's window, its type and
/// subject, and its data. Encoded at most once per transport (a JSON-RPC notification line, a
/// Server-Sent Events message), and the bytes are shared by every subscriber. Loop thread only.
final class RaisedEvent {
    let type: String
    let subject: EventSubject?
    let at: JSON
    let data: JSON
    /// Its id on this replica (`<boot>-<number>`), set when it enters the window.
    var id = ""

    init(type: String, subject: EventSubject?, at: JSON, data: JSON) {
        self.type = type
        self.subject = subject
        self.at = at
        self.data = data
    }

    /// `params`, encoded once for both transports.
    private lazy var encodedParams: [UInt8] = {
        var w = JSONWriter(capacity: 256)
        w.write(params)
        return w.bytes
    }()

    /// `{"jsonrpc": "2.0", "method": "event", "params": {id, type, at, data}}` and a newline.
    private(set) lazy var rpcLine: [UInt8] = {
        var bytes = Array(#"{"jsonrpc":"2.0","method":"event","params":"#.utf8)
        bytes.append(contentsOf: encodedParams)
        bytes.append(contentsOf: [0x7D, 0x0A])
        return bytes
    }()

    /// `id:`, `event:` and `data:` (the same object as the notification's params), then a blank line.
    private(set) lazy var sseMessage: [UInt8] = {
        var bytes = Array("id: \(id)\nevent: \(type)\ndata: ".utf8)
        bytes.append(contentsOf: encodedParams)
        bytes.append(contentsOf: [0x0A, 0x0A])
        return bytes
    }()

    /// The notification's params: `{id, type, at, data}`.
    var params: JSON { ["id": .string(id), "type": .string(type), "at": at, "data": data] }

    /// The event as it crosses to other replicas: `{type, at, data, subject?}` (kind from the type).
    var wire: JSON {
        var o: JSONObject = ["type": .string(type), "at": at, "data": data]
        if let subject { o["subject"] = .string(subject.name) }
        return .object(o)
    }

    /// One Server-Sent Events message (JSON never holds a raw newline, so `data` is one line).
    static func sse(event: String, id: String?, data: JSON) -> [UInt8] {
        var w = JSONWriter(capacity: 256)
        if let id { w.bytes.append(contentsOf: "id: \(id)\n".utf8) }
        w.bytes.append(contentsOf: "event: \(event)\ndata: ".utf8)
        w.write(data)
        w.bytes.append(contentsOf: "\n\n".utf8)
        return w.bytes
    }
}
