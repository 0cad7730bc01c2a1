import Foundation
import Logging
import Testing
import WharfPQ
import WharfUV

/// The pool against a real PostgreSQL: fails fast while nothing is connected, reconnects by itself.
@Suite struct PQPoolTests {
    static let logger: Logger = {
        var l = Logger(label: "wharf-pq-test")
        l.logLevel = .critical
        return l
    }()

    @Test func failsFastWhileNothingIsConnected() throws {
        let outcome: String = try runOnLoop { loop, finish in
            let pool = PQPool(
                loop: loop, conninfo: "host=/nonexistent-wharf-dir port=5432 user=postgres dbname=postgres", size: 2,
                logger: Self.logger)
            pool.start()
            pool.query("select 1") { r in
                pool.close()
                if case .failure(let e) = r { finish("\(e.kind)") } else { finish("success") }
            }
        }
        #expect(outcome == "unavailable")
    }

    @Test func reconnectsAfterItsSessionsAreTerminated() throws {
        let db = try PQTestDatabase()
        let trace: [String] = try runOnLoop(timeout: 30) { loop, finish in
            let pool = PQPool(loop: loop, conninfo: db.conninfo, size: 2, logger: Self.logger)
            var trace: [String] = []
            var sawFailure = false
            var done = false
            let started = loop.nowMs
            func end(_ t: LoopTimer?, _ last: String) {
                guard !done else { return }
                done = true
                t?.close()
                pool.close()
                finish(trace + [last])
            }
            pool.start()
            pool.whenReady {
                pool.query("select 'before'") { r in
                    trace.append((try? r.get().string(0, 0)) ?? "failed")
                    try? db.terminateBackends()
                    let t = try? LoopTimer(loop: loop)
                    t?.start(timeoutMs: 20, repeatMs: 50) {
                        pool.query("select 'after'") { r in
                            switch r {
                            case .failure(let e):
                                if !sawFailure { trace.append("\(e.kind)") }
                                sawFailure = true
                                if loop.nowMs - started > 20_000 { end(t, "gave up") }
                            case .success(let res):
                                end(t, res.string(0, 0) ?? "nil")
                            }
                        }
                    }
                }
            }
        }
        // The first query after the termination may still reach a connection that has not noticed yet,
        // so "unavailable" is expected but not required before "after".
        #expect(trace.first == "before")
        #expect(trace.last == "after")
    }

    @Test func listenerDeliversNotifications() throws {
        let db = try PQTestDatabase()
        let got: String = try runOnLoop { loop, finish in
            let pool = PQPool(loop: loop, conninfo: db.conninfo, size: 1, logger: Self.logger)
            pool.onNotification = { channel, payload in
                pool.close()
                finish("\(channel):\(payload)")
            }
            pool.onListenerReady = {
                pool.whenReady { pool.query("select pg_notify('wharf_wake', 'jobs:q1')") { _ in } }
            }
            pool.start(listen: ["wharf_wake"])
        }
        #expect(got == "wharf_wake:jobs:q1")
    }
}
