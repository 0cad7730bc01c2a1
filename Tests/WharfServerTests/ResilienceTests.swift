import Foundation
import Testing
import WharfClient
import WharfRPC
import Logging
@testable import WharfServer

@Suite struct ResilienceTests {
    @Test func databaseOutageGivesRetryableErrorsThenRecovers() throws {
        let s = try TestServer()
        let c = try s.connect()
        #expect(try c.call("jobs.enqueue", ["queue": "o", "kind": "k"])["state"] == "available")
        let base = try TestEnvironment.databaseURL()
        try TestDatabase.psql(base, "alter database \(s.database.name) allow_connections false")
        try TestDatabase.psql(
            base, "select pg_terminate_backend(pid) from pg_stat_activity where datname = '\(s.database.name)'")
        var sawRetryable = false
        for i in 0..<20 {
            do {
                // With a key, even a call whose outcome the outage hid is safe to repeat.
                _ = try c.call("jobs.enqueue", ["queue": "o", "kind": "k", "idempotencyKey": .string("outage-\(i)")])
            } catch let e as RPCError {
                #expect(e.code == -32003)
                #expect(["store_unavailable", "store_busy", "outcome_unknown"].contains(e.reason ?? ""), "\(e)")
                #expect(e.isRetryable)
                sawRetryable = true
                break
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(sawRetryable)
        let health = try c.call("server.health")
        #expect(health["database"]?["reachable"] == false)
        #expect(try c.call("server.ping") == "pong")
        try TestDatabase.psql(base, "alter database \(s.database.name) allow_connections true")
        var recovered = false
        let deadline = Date().addingTimeInterval(15)
        while !recovered && Date() < deadline {
            recovered = (try? c.call("jobs.enqueue", ["queue": "o", "kind": "k"])) != nil
            if !recovered { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(recovered)
        #expect(try c.call("server.health")["database"]?["reachable"] == true)
    }

    /// The real binary with its embedded PostgreSQL: answers, reports the database, and SIGTERM leaves
    /// nothing running.
    @Test(.timeLimit(.minutes(2))) func embeddedServeStartsAndStopsCleanly() throws {
        let dataDir = NSTemporaryDirectory() + "wharf-embedded-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let serve = try EmbeddedServe(dataDir: dataDir)
        defer { serve.stop() }
        let (p, c, log) = (serve.process, serve.connection, serve.log)
        let health = try c.call("server.health")
        #expect(health["status"] == "ok")
        #expect(health["database"]?["reachable"] == true)
        #expect(health["database"]?["serverVersion"]?.stringValue?.hasPrefix("15") == true)
        // The database it reports is the embedded cluster: migrated, on the socket under the data dir.
        let embedded = "host=\(dataDir)/run port=5432 user=postgres dbname=postgres"
        #expect(
            try TestDatabase.psql(embedded, "select count(*) > 0 from wharf.schema_migrations") == "t",
            "\(log())")

        p.terminate()
        let stopDeadline = Date().addingTimeInterval(30)
        while p.isRunning && Date() < stopDeadline { Thread.sleep(forTimeInterval: 0.05) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            Issue.record("wharf serve ignored SIGTERM for 30 s:\n\(log())")
        }
        p.waitUntilExit()
        #expect(p.terminationReason == .exit)
        #expect(p.terminationStatus == 0, "\(log())")
        let leftovers = try TestDatabase.psqlFreeShell("pgrep -f -- '[p]ostgres -D \(dataDir)/pg' || true")
        #expect(leftovers.isEmpty, "postgres still running: \(leftovers)")
        #expect(
            !FileManager.default.fileExists(atPath: dataDir + "/pg/postmaster.pid"),
            "the embedded cluster was not shut down cleanly:\n\(log())")
    }
}

extension ResilienceTests {
    /// Run as root from a folder the postgres user cannot enter (as a checkout under /root, mode 0700,
    /// or in a `mktemp -d` folder), the embedded cluster lives under /var/lib/wharf instead, and the
    /// server starts, answers and stops.
    @Test(.timeLimit(.minutes(2)), .enabled(if: geteuid() == 0)) func embeddedServeStartsInAPrivateFolder() throws {
        let parent = NSTemporaryDirectory() + "wharf-private-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: false)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: parent)
        let dataDir = parent + "/checkout/.wharf"
        let pg = EmbeddedPostgres(dataDir: dataDir, logger: Logger(label: "wharf-test-pg"))
        #expect(pg.home.path.hasPrefix("/var/lib/wharf/embedded-"), "\(pg.home.path)")
        defer {
            try? FileManager.default.removeItem(atPath: parent)
            try? FileManager.default.removeItem(atPath: pg.home.path)
        }
        let serve = try EmbeddedServe(dataDir: dataDir)
        defer { serve.stop() }
        let (p, c, log) = (serve.process, serve.connection, serve.log)
        #expect(try c.call("server.health")["status"] == "ok")
        #expect(
            try TestDatabase.psql(pg.conninfo, "select count(*) > 0 from wharf.schema_migrations") == "t", "\(log())")
        p.terminate()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(log())")
        #expect(!FileManager.default.fileExists(atPath: pg.clusterDir + "/postmaster.pid"), "\(log())")
    }
}

extension ResilienceTests {
    /// A second server on the same data directory refuses at once, naming the first, and leaves the
    /// first one's PostgreSQL running (it used to reuse the cluster, fail to listen, and stop it).
    @Test(.timeLimit(.minutes(2))) func aSecondServeOnTheSameDataDirectoryRefuses() throws {
        let dataDir = NSTemporaryDirectory() + "wharf-embedded-" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        defer { try? FileManager.default.removeItem(atPath: dataDir) }
        let first = try EmbeddedServe(dataDir: dataDir)
        defer { first.stop() }
        let second = Process()
        second.executableURL = URL(fileURLWithPath: TestEnvironment.wharfBinary)
        let port = try TestEnvironment.freePort()
        second.arguments = ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:\(port)"]
        let logPath = dataDir + "-second.log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        second.standardInput = FileHandle.nullDevice
        second.standardOutput = FileHandle.nullDevice
        second.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try second.run()
        let deadline = Date().addingTimeInterval(10)
        while second.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let refused = !second.isRunning
        if second.isRunning {
            // It did not refuse (it runs beside the first on the same cluster): SIGKILL, so that it
            // does not stop the cluster on its way out.
            kill(second.processIdentifier, SIGKILL)
        }
        second.waitUntilExit()
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        #expect(refused, "a second wharf serve on the same data directory kept running:\n\(text)")
        #expect(second.terminationStatus != 0)
        #expect(
            text.contains("is in use by another wharf serve (pid \(first.process.processIdentifier))"), "\(text)")
        // The first one still has its database.
        #expect(try first.connection.call("server.health")["database"]?["reachable"] == true, "\(first.log())")
        #expect(try first.connection.call("jobs.enqueue", ["queue": "q", "kind": "k"])["state"] == "available")
    }
}

/// `wharf serve` on its embedded PostgreSQL under `dataDir`, answering pings; its log beside the data
/// directory. `stop()` (or the end of the test) never leaves a server or its PostgreSQL behind.
final class EmbeddedServe {
    let process = Process()
    let connection: BlockingConnection
    let logPath: String

    init(dataDir: String) throws {
        let bin = TestEnvironment.wharfBinary
        try #require(FileManager.default.isExecutableFile(atPath: bin), "build the wharf binary first (\(bin))")
        logPath = dataDir + ".log"
        try FileManager.default.createDirectory(
            atPath: URL(fileURLWithPath: dataDir).deletingLastPathComponent().path, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let port = try TestEnvironment.freePort()
        process.executableURL = URL(fileURLWithPath: bin)
        process.arguments = ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:\(port)", "--log-level", "info"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()
        var conn: BlockingConnection?
        let deadline = Date().addingTimeInterval(60)
        while conn == nil && Date() < deadline && process.isRunning {
            conn = try? BlockingConnection(host: "127.0.0.1", port: port, timeoutSeconds: 5)
            if let c = conn, (try? c.call("server.ping")) != "pong" { conn = nil }
            if conn == nil { Thread.sleep(forTimeInterval: 0.1) }
        }
        guard let conn else {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            Self.end(process)
            throw TestFailure("wharf serve did not answer within 60 s:\n\(text)")
        }
        connection = conn
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, then SIGKILL after 30 s; removes the log.
    func stop() {
        Self.end(process)
        try? FileManager.default.removeItem(atPath: logPath)
    }

    private static func end(_ process: Process) {
        guard process.isRunning else { return }
        process.terminate()
        let until = Date().addingTimeInterval(30)
        while process.isRunning && Date() < until { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

extension TestDatabase {
    static func psqlFreeShell(_ command: String) throws -> String {
        try run(["sh", "-c", command]).1
    }
}
