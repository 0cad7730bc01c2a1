import Foundation
import Testing
import WharfClient
import WharfRPC
import WharfServer

/// The role table: the one in Protocol/README.md, the one the server enforces, and what each role's
/// calls actually get must be the same.
@Suite struct AccessTests {
    static let tokens: [String: Role] = ["t-admin": .admin, "t-producer": .producer, "t-worker": .worker, "t-reader": .reader]

    /// `| \`method\` | ✓ | ✓ |  | ✓ |` rows of Protocol/README.md's Auth table: method → roles besides admin.
    static func documentedTable() throws -> [String: Set<Role>] {
        let readme = try String(
            contentsOf: ProtocolDocumentTests.protocolDir.appendingPathComponent("README.md"), encoding: .utf8)
        var table: [String: Set<Role>] = [:]
        for line in readme.split(separator: "\n") where line.hasPrefix("| `") {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map {
                $0.trimmingCharacters(in: .whitespaces)
            }
            // "", method, admin, producer, worker, reader, ""
            guard cells.count == 7, cells[1].hasPrefix("`"), cells[1].contains(".") else { continue }
            let method = cells[1].trimmingCharacters(in: CharacterSet(charactersIn: "`"))
            #expect(cells[2] == "✓", "\(method): admin may call everything")
            var roles: Set<Role> = []
            for (cell, role) in zip(cells[3...5], [Role.producer, .worker, .reader]) where cell == "✓" {
                roles.insert(role)
            }
            #expect(table[method] == nil, "\(method) is in the table twice")
            table[method] = roles
        }
        return table
    }

    @Test func theDocumentedTableIsTheEnforcedOne() throws {
        let documented = try Self.documentedTable()
        let server = try TestServer()
        let enforced = server.server.methodRoles
        #expect(Set(documented.keys) == Set(enforced.keys), "methods differ: \(Set(documented.keys).symmetricDifference(enforced.keys).sorted())")
        for (method, roles) in enforced.sorted(by: { $0.key < $1.key }) {
            #expect(documented[method] == roles, "\(method): Protocol/README.md says \(documented[method].map { $0.map(\.rawValue).sorted() } ?? []), the server enforces \(roles.map(\.rawValue).sorted())")
        }
    }

    /// Every method with every role: a call outside the role is `forbidden`; one inside it reaches the
    /// method, which refuses the unknown param (so nothing is changed by the probe).
    @Test func everyMethodWithEveryRole() throws {
        let documented = try Self.documentedTable()
        let server = try TestServer { c in c.tokens = Self.tokens }
        for (token, role) in Self.tokens.sorted(by: { $0.key < $1.key }) {
            let c = try server.connect(token: token)
            for (method, roles) in documented.sorted(by: { $0.key < $1.key }) where method != "session.hello" {
                let e = try c.expectError(method, ["noSuchParam": 1])
                if role == .admin || roles.contains(role) {
                    #expect(e.code == -32602 && e.data?["field"] == "noSuchParam", "\(role) calling \(method) got \(e.code) \(e.message)")
                } else {
                    #expect(e.code == -32002 && e.data?["reason"] == "forbidden", "\(role) calling \(method) got \(e.code) \(e.message)")
                }
            }
        }
    }

    /// The CLI presents `$WHARF_TOKEN` (kept out of `ps`) when `--token` is not given.
    @Test func theCLITakesItsTokenFromTheEnvironment() throws {
        let s = try TestServer { c in c.tokens = Self.tokens }
        let bin = TestEnvironment.wharfBinary
        try #require(FileManager.default.isExecutableFile(atPath: bin))
        let server = "127.0.0.1:\(s.port)"
        let without = try TestDatabase.run([bin, "call", "server.info", "--server", server])
        #expect(without.0 != 0 && without.2.contains("session.hello"), "\(without)")
        let with = try TestDatabase.run(["WHARF_TOKEN=t-reader", bin, "call", "server.info", "--server", server])
        #expect(with.0 == 0 && with.1.contains("\"name\":\"wharf\""), "\(with)")
        let forbidden = try TestDatabase.run(["WHARF_TOKEN=t-reader", bin, "call", "jobs.enqueue", #"{"queue":"q","kind":"k"}"#, "--server", server])
        #expect(forbidden.0 != 0 && forbidden.2.contains("forbidden"), "\(forbidden)")
    }
}
