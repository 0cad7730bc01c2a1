import WharfRPC

/// Decodes a line as the server does, validates params through `Params` the way handlers do, and
/// encodes every reply the server would send.
enum FuzzRPC {
    static func one(_ data: UnsafeRawBufferPointer) {
        var w = JSONWriter()
        switch RPCDecoder.decode(data, maxBatch: 8) {
        case .reject(let error):
            RPCEncoder.failure(id: .null, error: error, into: &w)
        case .single(let item):
            handle(item, &w)
        case .batch(let items):
            precondition(!items.isEmpty && items.count <= 8)
            for item in items { handle(item, &w) }
        }
        mustParse(w.bytes)
    }

    static func handle(_ item: Result<RPCRequest, RPCInvalid>, _ w: inout JSONWriter) {
        switch item {
        case .failure(let invalid):
            RPCEncoder.failure(id: invalid.id, error: invalid.error, into: &w)
        case .success(let request):
            if let id = request.id {
                switch id {
                case .string, .int, .double, .null: break
                default: preconditionFailure("id of type \(id.typeName) accepted")
                }
            }
            // The dispatcher's checks, then a handler's typical reads.
            if let path = request.params?.pathOfNUL() {
                return RPCEncoder.failure(id: request.id ?? .null, error: .invalidParams(field: path, "NUL"), into: &w)
            }
            if let path = request.params?.pathOfInexactNumber() {
                return RPCEncoder.failure(id: request.id ?? .null, error: .invalidParams(field: path, "inexact"), into: &w)
            }
            do throws(RPCError) {
                let p = try Params(request.params)
                var result = JSONObject()
                for key in p.object.keys.prefix(16) {
                    if let s = try? p.string(key) { result[key] = .string(s) }
                    if let s = try? p.name(key, maxLength: 8) { result[key + ".name"] = .string(s) }
                    if let i = try? p.int(key, in: -1000...1000) { result[key + ".int"] = .int(i) }
                    if let d = try? p.double(key, in: 0...1) { result[key + ".double"] = .double(d) }
                    if let b = try? p.bool(key, default: false) { result[key + ".bool"] = .bool(b) }
                    if let o = try? p.optionalObject(key) { result[key + ".object"] = .object(o) }
                    if let a = try? p.stringArray(key, maxCount: 4) { result[key + ".array"] = .array(a.map(JSON.string)) }
                }
                try p.onlyKnown(["queue", "kind", "payload", "limit"])
                _ = try p.optionalInt("limit", in: 1...1000)
                RPCEncoder.success(id: request.id ?? .null, result: .object(result), into: &w)
            } catch {
                precondition(error.code == RPCError.Code.invalidParams, "\(error)")
                precondition(error.data?["field"]?.stringValue != nil, "invalid params without a field: \(error)")
                RPCEncoder.failure(id: request.id ?? .null, error: error, into: &w)
            }
        }
        w.bytes.append(0x0A)
    }

    static func mustParse(_ replies: [UInt8]) {
        for line in replies.split(separator: 0x0A) {
            do {
                _ = try JSONParser.parse(Array(line))
            } catch {
                preconditionFailure("a reply does not parse (\(error)): \(String(decoding: line, as: UTF8.self))")
            }
        }
    }
}
