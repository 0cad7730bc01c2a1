import Foundation
import WharfPQ
import WharfUV

/// A fresh database beside `WHARF_TEST_DATABASE_URL` (set by scripts/test.sh), created with psql.
struct PQTestDatabase {
    struct Missing: Error, CustomStringConvertible {
        var description: String {
            "WHARF_TEST_DATABASE_URL is not set: run the suite with `bash scripts/test.sh`, which starts a throwaway PostgreSQL"
        }
    }

    let base: String
    let name: String
    let conninfo: String

    init() throws {
        guard let base = ProcessInfo.processInfo.environment["WHARF_TEST_DATABASE_URL"], !base.isEmpty else {
            throw Missing()
        }
        self.base = base
        name = "wharf_pq_" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        try Self.psql(base, "create database \(name)")
        conninfo =
            base.split(separator: " ").filter { !$0.hasPrefix("dbname=") }.joined(separator: " ")
            + " dbname=\(name)"
    }

    /// Runs SQL through psql, outside any event loop; output goes through a file, not a pipe.
    @discardableResult
    static func psql(_ conninfo: String, _ sql: String) throws -> String {
        let out = NSTemporaryDirectory() + "wharf-pq-test-\(UInt64.random(in: 0...UInt64.max)).out"
        FileManager.default.createFile(atPath: out, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql]
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try? handle.close()
        let text = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").trimmingCharacters(
            in: .whitespacesAndNewlines)
        guard p.terminationStatus == 0 else { throw PQTestFailure("psql failed: \(text)") }
        return text
    }

    /// Waits (blocking, up to 10 s) until a session of this database sleeps in `pg_sleep`.
    func waitUntilSleeping() throws {
        for _ in 0..<200 {
            let n = try Self.psql(
                base, "select count(*) from pg_stat_activity where datname = '\(name)' and wait_event = 'PgSleep'")
            if n != "0" { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw PQTestFailure("no session of \(name) started sleeping")
    }

    /// Ends every session connected to this database (what a failover or an admin does).
    func terminateBackends() throws {
        try Self.psql(
            base,
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = '\(name)' and pid <> pg_backend_pid()"
        )
    }
}

struct PQTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

final class PQBox<T>: @unchecked Sendable {  // written by the loop thread before a semaphore signal, read after
    var value: T
    init(_ v: T) { value = v }
}

/// Runs `body` on a fresh event loop thread until it calls `finish`, then returns what it produced.
func runOnLoop<T>(timeout: Double = 30, _ body: @escaping (EventLoop, @escaping (T) -> Void) -> Void) throws -> T {
    let result = PQBox<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    let work = PQBox(body)
    let t = Thread {
        guard let loop = try? EventLoop() else {
            done.signal()
            return
        }
        var finished = false
        work.value(loop) { value in
            guard !finished else { return }
            finished = true
            result.value = value
            loop.stop()
        }
        loop.run()
        loop.shutdown()
        done.signal()
    }
    t.start()
    guard done.wait(timeout: .now() + timeout) == .success, let value = result.value else {
        throw PQTestFailure("loop work did not finish within \(timeout) s")
    }
    return value
}

/// Opens a connection and calls `body` once it is ready (or finishes with the failure message).
func withConnection<T>(
    _ conninfo: String, mode: PQConnection.Mode = .pipelined, timeout: Double = 30,
    _ body: @escaping (PQConnection, @escaping (Result<T, PQTestFailure>) -> Void) -> Void
) throws -> T {
    try runOnLoop(timeout: timeout) { (loop: EventLoop, finish: @escaping (Result<T, PQTestFailure>) -> Void) in
        let c = PQConnection(loop: loop, conninfo: conninfo, mode: mode)
        c.onStateChange = { state in
            switch state {
            case .ready:
                body(c) { r in
                    c.close()
                    finish(r)
                }
            case .failed(let m):
                c.close()
                finish(.failure(PQTestFailure("connect failed: \(m)")))
            default: break
            }
        }
        c.connect()
    }.get()
}
