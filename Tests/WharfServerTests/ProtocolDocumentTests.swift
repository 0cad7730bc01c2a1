import Foundation
import Testing
import WharfClient
import WharfRPC

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
