import Foundation
import Logging
import WharfClient
import WharfPQ
import WharfRPC
import WharfServer
import WharfStore
import WharfUV

/// Where the integration tests find PostgreSQL: `WHARF_TEST_DATABASE_URL`, set by scripts/test.sh.
enum TestEnvironment {
    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "WHARF_TEST_DATABASE_URL is not set: run the suite with `bash scripts/test.sh`, which starts a throwaway PostgreSQL"
        }
    }

    static func databaseURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["WHARF_TEST_DATABASE_URL"], !url.isEmpty else {
            throw Missing()
        }
        return url
    }

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// The `wharf` executable: `WHARF_BIN`, else the one SwiftPM built beside the test bundle (whatever
    /// the scratch path), else `.build/debug/wharf`.
    static var wharfBinary: String {
        if let bin = ProcessInfo.processInfo.environment["WHARF_BIN"], !bin.isEmpty { return bin }
        // The test runner is `<bin dir>/<package>PackageTests.xctest` (or a bundle inside it).
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
            for _ in 0..<4 {
                let candidate = dir.appendingPathComponent("wharf").path
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
                dir = dir.deletingLastPathComponent()
            }
        }
        return repositoryRoot.appendingPathComponent(".build/debug/wharf").path
    }

    /// A loopback TCP port that was free a moment ago (for child processes that need a fixed port).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa -> Bool in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard bound else { throw TestFailure("bind: \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// A fresh, empty database for one test, created through psql.
struct TestDatabase {
    let name: String
    let conninfo: String

    init() throws {
        let base = try TestEnvironment.databaseURL()
        name = "wharf_t_" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        try Self.psql(base, "create database \(name)")
        conninfo = Self.replacingDBName(base, with: name)
    }

    /// The same connection settings for database `db`: libpq `key=value` pairs or a `postgres://` URL.
    static func replacingDBName(_ conninfo: String, with db: String) -> String {
        if conninfo.hasPrefix("postgres://") || conninfo.hasPrefix("postgresql://"),
            var parts = URLComponents(string: conninfo)
        {
            parts.path = "/" + db
            return parts.string ?? conninfo
        }
        var parts = conninfo.split(separator: " ").map(String.init).filter { !$0.hasPrefix("dbname=") }
        parts.append("dbname=\(db)")
        return parts.joined(separator: " ")
    }

    /// Runs SQL through psql (outside any event loop) and returns its unaligned output.
    @discardableResult
    static func psql(_ conninfo: String, _ sql: String) throws -> String {
        let (status, out, err) = try run([
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql,
        ])
        guard status == 0 else { throw TestFailure("psql failed: \(err)") }
        return out
    }

    /// Runs a command with output in temporary files: Foundation's pipe reads trap on EINTR, which
    /// the signals of other tests' child processes cause.
    static func run(_ arguments: [String]) throws -> (Int32, String, String) {
        let base = NSTemporaryDirectory() + "wharf-test-\(UInt64.random(in: 0...UInt64.max))"
        FileManager.default.createFile(atPath: base + ".out", contents: nil)
        FileManager.default.createFile(atPath: base + ".err", contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: base + ".out")
            try? FileManager.default.removeItem(atPath: base + ".err")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = arguments
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".out"))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: base + ".err"))
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try? out.close()
        try? err.close()
        let o = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        let e = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        return (p.terminationStatus, o.trimmingCharacters(in: .whitespacesAndNewlines), e)
    }

    @discardableResult
    func sql(_ sql: String) throws -> String { try Self.psql(conninfo, sql) }

    /// The plan of `sql` prepared with parameter `types` and run with `arguments`, after `settings` (the
    /// statements a store's `PlanChoice` puts first), in a transaction rolled back.
    func plan(_ sql: String, types: String, arguments: String, settings: [String]) throws -> String {
        try self.sql(
            """
            begin;
            \(settings.map { $0 + ";" }.joined(separator: "\n"))
            prepare s(\(types)) as \(sql);
            explain execute s(\(arguments));
            rollback;
            """)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A real `Server` on its own loop thread, listening on a free loopback port.
///
/// `@unchecked Sendable`: the fields are set before the loop thread starts and only read after; other
/// threads reach the server only through `requestStop()`.
final class TestServer: @unchecked Sendable {
    let server: Server
    let port: Int
    let database: TestDatabase
    private let finished = DispatchSemaphore(value: 0)

    init(database: TestDatabase? = nil, configure: (inout ServerConfig) -> Void = { _ in }) throws {
        let db = try database ?? TestDatabase()
        self.database = db
        var config = ServerConfig(database: db.conninfo)
        config.port = 0
        config.shutdownGraceMs = 500
        configure(&config)
        var logger = Logger(label: "wharf-test")
        logger.logLevel = ProcessInfo.processInfo.environment["WHARF_TEST_LOG"] == nil ? .critical : .debug
        let server = try Server(config: config, logger: logger)
        self.server = server
        let ready = DispatchSemaphore(value: 0)
        let result = Box<Result<Int, Error>>(.success(0))
        let done = finished
        let t = Thread {
            server.run(handleSignals: false) { r in
                result.value = r
                ready.signal()
            }
            done.signal()
        }
        t.stackSize = 8 << 20
        t.start()
        if ready.wait(timeout: .now() + 30) == .timedOut { throw TestFailure("server did not start within 30 s") }
        port = try result.value.get()
    }

    func connect(token: String? = nil) throws -> BlockingConnection {
        let c = try BlockingConnection(host: "127.0.0.1", port: port, timeoutSeconds: 20)
        if let token { _ = try c.call("session.hello", ["token": .string(token)]) }
        return c
    }

    func client(token: String? = nil) -> WharfClient { WharfClient(host: "127.0.0.1", port: port, token: token) }

    func stop() {
        server.requestStop()
        _ = finished.wait(timeout: .now() + 10)
    }

    deinit { stop() }
}

final class Box<T>: @unchecked Sendable {  // written by one thread before a semaphore signal, read after
    var value: T
    init(_ v: T) { value = v }
}

extension BlockingConnection {
    /// Calls and returns the RPC error, failing if the call succeeded.
    func expectError(_ method: String, _ params: JSON? = nil) throws -> RPCError {
        do {
            let r = try call(method, params)
            throw TestFailure("\(method) succeeded with \(r.text), expected an error")
        } catch let e as RPCError {
            return e
        }
    }
}
