import Foundation
import Testing
import WharfClient
import WharfRPC
import WharfServer

/// `Protocol/` is the single description of the protocol: these tests hold the server to it.
@Suite struct ProtocolDocumentTests {
    static let protocolDir = TestEnvironment.repositoryRoot.appendingPathComponent("Protocol")

    static func load(_ path: String) throws -> JSON {
        try JSONParser.parse(Array(try Data(contentsOf: protocolDir.appendingPathComponent(path))))
    }

    @Test func servedMethodsAreExactlyTheDescribedOnes() throws {
        let doc = try Self.load("openrpc.json")
        let described = Set((doc["methods"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
        let server = try TestServer()
        let served = Set(server.server.methodNames)
        #expect(
            served.subtracting(described).isEmpty, "served but not described: \(served.subtracting(described).sorted())"
        )
        #expect(
            described.subtracting(served).isEmpty, "described but not served: \(described.subtracting(served).sorted())"
        )
    }

    @Test func describedParamsAreAcceptedAndOthersRefused() throws {
        let doc = try Self.load("openrpc.json")
        let server = try TestServer()
        let c = try server.connect()
        for method in doc["methods"]?.arrayValue ?? [] {
            let name = try #require(method["name"]?.stringValue)
            let unknown = try c.expectError(name, ["noSuchParam": 1])
            #expect(
                unknown.code == -32602 && unknown.data?["field"] == "noSuchParam",
                "\(name) accepted an undescribed param")
            for param in method["params"]?.arrayValue ?? [] {
                let p = try #require(param["name"]?.stringValue)
                do {
                    _ = try c.call(name, .object([p: Self.sample(param["schema"])]))
                } catch let e as RPCError {
                    let refusedName =
                        e.data?["field"]?.stringValue == p && e.data?["detail"] == "is not a parameter of this method"
                    #expect(!refusedName, "\(name) does not know its described param \(p)")
                }
            }
        }
    }

    /// The document is well formed OpenRPC: unique names, every param named with a schema, every error
    /// a reference that resolves, every example naming only declared params. Pure: no server needed.
    @Test func documentIsWellFormed() throws {
        let doc = try Self.load("openrpc.json")
        #expect(doc["openrpc"] == "1.2.6")
        #expect(doc["info"]?["version"] == .string(WharfVersion.protocol))
        let errors = try #require(doc["components"]?["errors"]?.objectValue)
        var names = Set<String>()
        for method in try #require(doc["methods"]?.arrayValue) {
            let name = try #require(method["name"]?.stringValue)
            #expect(names.insert(name).inserted, "\(name) described twice")
            #expect(method["paramStructure"] == "by-name", "\(name): params are by name")
            #expect(method["result"]?["schema"] != nil, "\(name): no result schema")
            let params = try #require(method["params"]?.arrayValue, "\(name): no params array")
            var declared = Set<String>()
            for param in params {
                let p = try #require(param["name"]?.stringValue, "\(name): a param without a name")
                #expect(declared.insert(p).inserted, "\(name): param \(p) twice")
                #expect(param["schema"] != nil, "\(name).\(p): no schema")
            }
            for ref in method["errors"]?.arrayValue ?? [] {
                let target = try #require(ref["$ref"]?.stringValue, "\(name): errors must be $refs")
                let key = target.replacingOccurrences(of: "#/components/errors/", with: "")
                #expect(errors[key] != nil, "\(name): \(target) does not resolve")
            }
            for example in method["examples"]?.arrayValue ?? [] {
                for p in example["params"]?.arrayValue ?? [] {
                    let given = p["name"]?.stringValue ?? "?"
                    #expect(declared.contains(given), "\(name) example uses undeclared param \(given)")
                }
            }
        }
    }

    /// Every error code the server can send is a reusable error of the document and a row of the
    /// README's table.
    @Test func errorCodesAreDocumented() throws {
        let doc = try Self.load("openrpc.json")
        let readme = try String(contentsOf: Self.protocolDir.appendingPathComponent("README.md"), encoding: .utf8)
        let described = Set(
            (doc["components"]?["errors"]?.objectValue?.pairs ?? []).compactMap { $0.value["code"]?.intValue })
        typealias C = RPCError.Code
        let codes = [
            C.parseError, C.invalidRequest, C.methodNotFound, C.invalidParams, C.internalError, C.unauthorized,
            C.forbidden, C.unavailable, C.notFound, C.limitExceeded, C.conflict,
        ]
        for code in codes {
            #expect(described.contains(Int64(code)), "\(code) is not in components/errors")
            #expect(readme.contains("| \(code) |"), "\(code) is not in Protocol/README.md's table")
        }
    }

    /// Every field that server.info, server.health and session.hello return (and their examples show)
    /// is described by their result schemas.
    @Test func serverResultsMatchTheirSchemas() throws {
        let doc = try Self.load("openrpc.json")
        let server = try TestServer()
        let c = try server.connect()
        for name in ["server.info", "server.health", "session.hello"] {
            let method = try #require(doc["methods"]?.arrayValue?.first { $0["name"]?.stringValue == name })
            let schema = try #require(method["result"]?["schema"])
            let result = try c.call(name)
            #expect(Self.undescribed(result, schema).isEmpty, "\(name): \(Self.undescribed(result, schema))")
            for example in method["examples"]?.arrayValue ?? [] {
                let value = try #require(example["result"]?["value"])
                #expect(Self.undescribed(value, schema).isEmpty, "\(name) example: \(Self.undescribed(value, schema))")
            }
        }
    }

    /// Object fields of `value` that `schema` does not list (recursively through described objects).
    static func undescribed(_ value: JSON, _ schema: JSON, path: String = "") -> [String] {
        guard case .object(let o) = value, let properties = schema["properties"]?.objectValue else { return [] }
        return o.pairs.flatMap { p -> [String] in
            guard let sub = properties[p.key] else { return [path + p.key] }
            return undescribed(p.value, sub, path: path + p.key + ".")
        }
    }

    /// A value of the schema's type, good enough to get past "unknown parameter".
    static func sample(_ schema: JSON?) -> JSON {
        switch schema?["type"]?.stringValue {
        case "string": return "x"
        case "integer", "number": return 0
        case "boolean": return false
        case "array": return .array([])
        case "object": return .object([:])
        default: return .null
        }
    }

    @Test func goldenVectors() throws {
        let dir = Self.protocolDir.appendingPathComponent("vectors")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".json") }
            .sorted()
        #expect(!files.isEmpty)
        let server = try TestServer()
        for file in files {
            for vector in try Self.load("vectors/\(file)")["cases"]?.arrayValue ?? [] {
                let name = vector["name"]?.stringValue ?? "?"
                try #require(vector["send"] != nil && vector["expect"] != nil, "\(file): \(name) needs send and expect")
                let c = try server.connect()
                try c.sendRaw(VectorMatcher.bytes(of: vector["send"] ?? .null) + [0x0A])
                if vector["expect"] == .null {
                    try c.sendLine(#"{"jsonrpc":"2.0","method":"server.ping","id":"sentinel"}"#)
                    #expect(try c.readMessage()["id"] == "sentinel", "\(file): \(name) got a reply")
                    continue
                }
                let reply = try c.readMessage()
                let problems = VectorMatcher.match(vector["expect"]!, reply)
                #expect(problems.isEmpty, "\(file): \(name): \(problems) in \(reply.text)")
                if vector["closes"] == true { #expect(c.isClosedByPeer(), "\(file): \(name) should close") }
            }
        }
    }
}

/// The matching rules of Protocol/README.md ("Golden vectors").
enum VectorMatcher {
    static func bytes(of send: JSON) -> [UInt8] {
        if case .string(let s) = send { return Array(s.utf8) }
        if let s = send["$latin1"]?.stringValue {
            // Each character U+0000...U+00FF is one byte: how a vector spells bytes that are not UTF-8.
            return s.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }
        }
        if let r = send["$repeat"]?.stringValue, let n = send["count"]?.intValue {
            return Array((send["prefix"]?.stringValue ?? "").utf8)
                + Array(repeating: Array(r.utf8), count: Int(n)).flatMap { $0 }
                + Array((send["suffix"]?.stringValue ?? "").utf8)
        }
        return send.encoded
    }

    /// Problems found matching `actual` against `expected` (empty when it matches).
    static func match(_ expected: JSON, _ actual: JSON, path: String = "$") -> [String] {
        switch expected {
        case .string("$any"): return []
        case .string("$string"): return actual.stringValue != nil ? [] : ["\(path): expected a string"]
        case .string("$number"): return actual.doubleValue != nil ? [] : ["\(path): expected a number"]
        case .object(let o):
            if let items = o["$unordered"]?.arrayValue {
                guard let got = actual.arrayValue, got.count == items.count else {
                    return ["\(path): expected \(items.count) items"]
                }
                var remaining = got
                for e in items {
                    guard let i = remaining.firstIndex(where: { match(e, $0).isEmpty }) else {
                        return ["\(path): nothing matches \(e.text)"]
                    }
                    remaining.remove(at: i)
                }
                return []
            }
            guard case .object(let a) = actual else { return ["\(path): expected an object"] }
            return o.pairs.flatMap { p -> [String] in
                guard let v = a[p.key] else { return ["\(path).\(p.key): missing"] }
                return match(p.value, v, path: "\(path).\(p.key)")
            }
        case .array(let items):
            guard let got = actual.arrayValue, got.count == items.count else {
                return ["\(path): expected \(items.count) items"]
            }
            return zip(items, got).enumerated().flatMap { match($1.0, $1.1, path: "\(path)[\($0)]") }
        case .int, .double:
            return expected.doubleValue == actual.doubleValue ? [] : ["\(path): \(actual.text) != \(expected.text)"]
        default:
            return expected == actual ? [] : ["\(path): \(actual.text) != \(expected.text)"]
        }
    }
}
