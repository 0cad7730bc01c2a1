import Foundation
import Testing
import WharfPQ
import WharfUV

/// One libpq connection on the loop against a real PostgreSQL.
@Suite struct PQConnectionTests {
    @Test func parametersAndTextValues() throws {
        let db = try PQTestDatabase()
        let row: [String?] = try withConnection(db.conninfo) { c, done in
            let sql =
                "select $1::int + 1 as n, $2::text as t, $3::text is null as isnull, 1.5::float8 as d, $3::text as nothing"
            c.send(PQSegment(sql, ["41", "héllo 'quoted' \\ back", nil])) { r in
                switch r {
                case .success(let results):
                    let res = results[0]
                    done(
                        .success([
                            res.int(0, 0).map(String.init), res.string(0, 1), res.bool(0, 2).map(String.init),
                            res.double(0, 3).map { String($0) }, res.string(0, 4), res.columnName(1),
                            res.column("d").map(String.init),
                        ]))
                case .failure(let e): done(.failure(PQTestFailure("\(e)")))
                }
            }
        }
        #expect(row == ["42", "héllo 'quoted' \\ back", "true", "1.5", nil, "t", "3"])
    }

    /// The pitfall measured in LIBUV-LIBPQ-NOTES.md: pipelined requests must not share a transaction,
    /// so one failing request cannot undo another that was already reported as done.
    @Test func pipelinedSegmentsAreIndependentTransactions() throws {
        let db = try PQTestDatabase()
        try PQTestDatabase.psql(db.conninfo, "create table t (x int primary key)")
        let outcomes: [String] = try withConnection(db.conninfo) { c, done in
            var outcomes = [String](repeating: "", count: 3)
            var remaining = 3
            for (i, x) in ["1", "1", "2"].enumerated() {
                // All three are sent before any answer arrives.
                c.send(PQSegment("insert into t values ($1::int)", [x])) { r in
                    switch r {
                    case .success: outcomes[i] = "ok"
                    case .failure(let e): outcomes[i] = e.sqlState ?? "\(e.kind)"
                    }
                    remaining -= 1
                    if remaining == 0 { done(.success(outcomes)) }
                }
            }
            #expect(c.pendingCount == 3)
        }
        #expect(outcomes == ["ok", "23505", "ok"])
        #expect(try PQTestDatabase.psql(db.conninfo, "select string_agg(x::text, ',' order by x) from t") == "1,2")
    }

    @Test func aFailingStatementRollsBackItsSegment() throws {
        let db = try PQTestDatabase()
        try PQTestDatabase.psql(db.conninfo, "create table t (x int primary key)")
        let error: PQError = try withConnection(db.conninfo) { c, done in
            c.send(
                PQSegment([
                    PQStatement("insert into t values (10)"), PQStatement("insert into t values (10)"),
                    PQStatement("insert into t values (11)"),
                ])
            ) { r in
                switch r {
                case .success: done(.failure(PQTestFailure("a duplicate key succeeded")))
                case .failure(let e): done(.success(e))
                }
            }
        }
        #expect(error.kind == .server)
        #expect(error.sqlState == "23505")
        #expect(error.constraint == "t_pkey")
        #expect(try PQTestDatabase.psql(db.conninfo, "select count(*) from t") == "0")
    }

    /// A statement whose segment failed before it ran must still work afterwards, whether the failure
    /// was at run time or a statement that did not parse.
    @Test func statementsOfAFailedSegmentStillWorkLater() throws {
        let db = try PQTestDatabase()
        let results: [String] = try withConnection(db.conninfo) { c, done in
            var results: [String] = []
            func then(_ segment: PQSegment, _ next: @escaping () -> Void) {
                c.send(segment) { r in
                    switch r {
                    case .success(let res): results.append(res.last?.string(0, 0) ?? "nil")
                    case .failure(let e): results.append(e.sqlState ?? "\(e.kind)")
                    }
                    next()
                }
            }
            then(PQSegment([PQStatement("select 1 / $1::int", ["0"]), PQStatement("select 'a'")])) {
                then(PQSegment("select 'a'")) {
                    then(PQSegment([PQStatement("selec 1"), PQStatement("select 'b'")])) {
                        then(PQSegment("select 'b'")) { done(.success(results)) }
                    }
                }
            }
        }
        #expect(results == ["22012", "a", "42601", "b"])
    }

    /// Segments pipelined behind a failing one share its prepared statements; the failure must not
    /// leak into them.
    @Test func aFailingSegmentDoesNotBreakSegmentsSentBehindIt() throws {
        let db = try PQTestDatabase()
        let results: [String] = try withConnection(db.conninfo) { c, done in
            var results = ["", ""]
            var remaining = 2
            let segments = [
                PQSegment([PQStatement("select 1 / $1::int", ["0"]), PQStatement("select 'shared'")]),
                PQSegment("select 'shared'"),
            ]
            for (i, segment) in segments.enumerated() {
                c.send(segment) { r in
                    switch r {
                    case .success(let res): results[i] = res.last?.string(0, 0) ?? "nil"
                    case .failure(let e): results[i] = e.sqlState ?? "\(e.kind)"
                    }
                    remaining -= 1
                    if remaining == 0 { done(.success(results)) }
                }
            }
        }
        #expect(results == ["22012", "shared"])
    }

    @Test func syntaxErrorsAreReportedAndTheConnectionStaysUsable() throws {
        let db = try PQTestDatabase()
        let outcomes: [String] = try withConnection(db.conninfo) { c, done in
            var outcomes: [String] = []
            func record(_ r: Result<[PQResult], PQError>) {
                switch r {
                case .success(let res): outcomes.append(res.first?.string(0, 0) ?? "ok")
                case .failure(let e): outcomes.append("\(e.kind) \(e.sqlState ?? "")")
                }
            }
            c.send(PQSegment("selec 1")) { r in
                record(r)
                // The failed statement is prepared afresh, so it fails for its own reason again.
                c.send(PQSegment("selec 1")) { r in
                    record(r)
                    done(.success(outcomes))
                }
            }
            c.send(PQSegment("select 'fine'")) { record($0) }
        }
        #expect(outcomes == ["server 42601", "fine", "server 42601"])
    }

    @Test func connectFailureIsReported() throws {
        let state: String = try runOnLoop { loop, finish in
            let c = PQConnection(
                loop: loop, conninfo: "host=/nonexistent-wharf-dir port=5432 user=postgres dbname=postgres",
                mode: .pipelined)
            c.onStateChange = { s in
                if case .failed(let m) = s {
                    // Work sent to a failed connection fails at once rather than waiting.
                    c.send(PQSegment("select 1")) { r in
                        guard case .failure(let e) = r, e.kind == .unavailable else { return finish("accepted work") }
                        c.close()
                        finish(m)
                    }
                }
            }
            c.connect()
        }
        #expect(state.contains("nonexistent-wharf-dir"))
    }

    @Test func simpleModeRunsSeveralStatements() throws {
        let db = try PQTestDatabase()
        let counts: [Int] = try withConnection(db.conninfo, mode: .simple) { c, done in
            c.simpleQuery("create table a (x int); insert into a values (1), (2); select count(*) from a") { r in
                guard case .success(let results) = r else { return done(.failure(PQTestFailure("\(r)"))) }
                c.simpleQuery("select 1; select 1 / 0") { bad in
                    guard case .failure(let e) = bad, e.sqlState == "22012" else {
                        return done(.failure(PQTestFailure("expected division by zero, got \(bad)")))
                    }
                    done(.success([results.count, Int(results[2].int(0, 0) ?? -1), results[1].affectedRows]))
                }
            }
        }
        #expect(counts == [3, 2, 2])
    }

    @Test func notificationsArrive() throws {
        let db = try PQTestDatabase()
        let got: String = try withConnection(db.conninfo, mode: .simple) { c, done in
            c.onNotification = { channel, payload in done(.success("\(channel):\(payload)")) }
            c.simpleQuery("listen wharf_test") { _ in
                // Another session notifies; this one only listens.
                try? PQTestDatabase.psql(db.conninfo, "notify wharf_test, 'hello'")
            }
        }
        #expect(got == "wharf_test:hello")
    }

    /// A lost connection fails the work in flight and says so once. The statement the session died
    /// in reports its error (it rolled back) and the segment queued behind it was never read by the
    /// exited backend, so it did not run; or, when the connection's end is seen before the error,
    /// both are outcome-unknown.
    @Test func lostConnectionFailsPendingWork() throws {
        let db = try PQTestDatabase()
        let outcome: String = try runOnLoop { loop, finish in
            let c = PQConnection(loop: loop, conninfo: db.conninfo, mode: .pipelined)
            var failures = 0
            var outcomes: [String] = []
            func record(_ r: Result<[PQResult], PQError>) {
                if case .failure(let e) = r { outcomes.append("\(e.kind) \(e.sqlState ?? "-")") } else { outcomes.append("success") }
                guard outcomes.count == 2 else { return }
                // Let a second state change show up if there were one.
                let t = try? LoopTimer(loop: loop)
                t?.start(timeoutMs: 100) {
                    t?.close()
                    c.close()
                    finish(outcomes.joined(separator: ", ") + " failures=\(failures)")
                }
            }
            c.onStateChange = { s in
                switch s {
                case .ready:
                    c.send(PQSegment("select pg_sleep(30)"), record)
                    c.send(PQSegment("select 1"), record)
                    // The loop blocks for psql's duration; PostgreSQL does not need it to make progress.
                    try? db.waitUntilSleeping()
                    try? db.terminateBackends()
                case .failed: failures += 1
                default: break
                }
            }
            c.connect()
        }
        // When libpq reads the backend's FATAL message before the socket's end, the first statement
        // reports it and the one queued behind is known not to have run; when the reset arrives first
        // (seen on a loaded machine), neither outcome can be known. Either way, never "unavailable" for
        // the statement that was executing, and one state change.
        #expect(
            ["server 57P01, unavailable - failures=1", "outcomeUnknown -, outcomeUnknown - failures=1"].contains(outcome),
            "\(outcome)")
    }

    /// A session that ends after a segment's statements answered and before its Sync did (here a
    /// deferred trigger is still running at commit) leaves the segment's outcome unknown: it may have
    /// committed. So does everything sent behind it.
    @Test func connectionLostAtCommitLeavesTheOutcomeUnknown() throws {
        let db = try PQTestDatabase()
        try PQTestDatabase.psql(
            db.conninfo,
            """
            create table t (x int);
            create function slow_commit() returns trigger language plpgsql as
                $$ begin perform pg_sleep(30); return null; end $$;
            create constraint trigger t_slow after insert on t deferrable initially deferred
                for each row execute function slow_commit();
            """)
        let outcome: [String] = try runOnLoop { loop, finish in
            let c = PQConnection(loop: loop, conninfo: db.conninfo, mode: .pipelined)
            var outcomes: [String] = []
            func record(_ r: Result<[PQResult], PQError>) {
                if case .failure(let e) = r { outcomes.append("\(e.kind)") } else { outcomes.append("success") }
                if outcomes.count == 2 {
                    c.close()
                    finish(outcomes)
                }
            }
            c.onStateChange = { s in
                guard s == .ready else { return }
                c.send(PQSegment("insert into t values (1)"), record)
                c.send(PQSegment("select 1"), record)
                try? db.waitUntilSleeping()
                try? db.terminateBackends()
            }
            c.connect()
        }
        #expect(outcome == ["outcomeUnknown", "outcomeUnknown"])
    }
}
