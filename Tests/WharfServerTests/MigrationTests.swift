import Foundation
import Logging
import Testing
import WharfPQ
import WharfStore
import WharfUV

/// Runs `body` on a fresh event loop thread until it calls `finish`, then returns what it produced.
func onLoop<T>(timeout: Double = 30, _ body: @escaping (EventLoop, @escaping (T) -> Void) -> Void) throws -> T {
    let result = Box<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    let work = Box(body)
    let t = Thread {
        guard let loop = try? EventLoop() else {
            done.signal()
            return
        }
        work.value(loop) { value in
            result.value = value
            loop.stop()
        }
        loop.run()
        loop.shutdown()
        done.signal()
    }
    t.start()
    guard done.wait(timeout: .now() + timeout) == .success, let value = result.value else {
        throw TestFailure("loop work did not finish within \(timeout) s")
    }
    return value
}

/// Opens a simple-protocol connection and applies the migrations once.
func migrate(_ conninfo: String) throws -> Result<[Int], PQError> {
    try onLoop { loop, finish in
        let c = PQConnection(loop: loop, conninfo: conninfo, mode: .simple)
        c.onStateChange = { state in
            switch state {
            case .ready:
                Migrator.migrate(connection: c, logger: Logger(label: "test")) { r in
                    c.close()
                    finish(r)
                }
            case .failed(let m):
                c.close()
                finish(.failure(PQError(kind: .unavailable, message: m)))
            default: break
            }
        }
        c.connect()
    }
}

@Suite struct MigrationTests {
    @Test func applyTwiceSecondIsNoOp() throws {
        let db = try TestDatabase()
        let first = try migrate(db.conninfo).get()
        #expect(first == Migrator.all.map(\.version))
        let second = try migrate(db.conninfo).get()
        #expect(second.isEmpty)
        #expect(try db.sql("select count(*) from wharf.schema_migrations") == String(Migrator.all.count))
        #expect(try db.sql("select count(*) from pg_namespace where nspname = 'wharf'") == "1")
        #expect(try db.sql("select to_regclass('wharf.schema_migrations') is not null") == "t")
        #expect(
            try db.sql("select string_agg(version::text, ',' order by version) from wharf.schema_migrations")
                == Migrator.all.map { String($0.version) }.joined(separator: ","))
        #expect(
            try db.sql(
                "select count(*) from information_schema.tables where table_schema = 'wharf' and table_name = 'jobs'")
                == "1")
    }

    /// Nothing of Wharf's lives outside its schema.
    @Test func everythingIsInSchemaWharf() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        let stray = try db.sql(
            """
            select string_agg(n.nspname || '.' || c.relname, ', ') from pg_class c
            join pg_namespace n on n.oid = c.relnamespace
            where n.nspname not in ('wharf', 'pg_catalog', 'information_schema', 'pg_toast')
            """)
        #expect(stray.isEmpty, "relations outside schema wharf: \(stray)")
    }

    @Test func concurrentMigrationsApplyOnce() throws {
        let db = try TestDatabase()
        let results = Box<[Result<[Int], PQError>]>([])
        let lock = NSLock()
        let group = DispatchGroup()
        for _ in 0..<3 {
            group.enter()
            Thread {
                let r = (try? migrate(db.conninfo)) ?? .failure(PQError(kind: .unavailable, message: "timeout"))
                lock.withLock { results.value.append(r) }
                group.leave()
            }.start()
        }
        group.wait()
        let applied = try results.value.map { try $0.get() }
        #expect(applied.filter { !$0.isEmpty }.count == 1)
        #expect(try db.sql("select count(*) from wharf.schema_migrations") == String(Migrator.all.count))
    }

    /// The array literals that carry batched requests read back exactly, whatever the strings hold.
    @Test func arrayLiteralsRoundTrip() throws {
        let db = try TestDatabase()
        let values: [String?] = [
            "plain", "\"quoted\"", "back\\slash", "a,b", "{brace}", "NULL", nil, "", "ünï 😀", " spaced ", "\\\"",
        ]
        let literal = PGArray.text(values)
        let out = try db.sql(
            "select json_agg(x order by n) from unnest($lit$\(literal)$lit$::text[]) with ordinality as t(x, n)")
        let decoded = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [Any]
        let strings = decoded?.map { $0 as? String }
        #expect(strings == values, "\(literal) read back as \(out)")
        #expect(try db.sql("select array_to_string($lit$\(PGArray.ints([1, nil, -3]))$lit$::bigint[], ',', 'null')") == "1,null,-3")
        #expect(
            try db.sql("select array_to_string($lit$\(PGArray.doubles([1.5, nil, -0.25]))$lit$::float8[], ',', 'null')")
                == "1.5,null,-0.25")
    }

    @Test func everyStoreQueryPrepares() throws {
        let db = try TestDatabase()
        _ = try migrate(db.conninfo).get()
        #expect(!Store.allQueries.isEmpty)
        let failures: [String] = try onLoop { loop, finish in
            let c = PQConnection(loop: loop, conninfo: db.conninfo, mode: .simple)
            c.onStateChange = { state in
                guard state == .ready else { return }
                var failures: [String] = []
                var remaining = Store.allQueries.count
                for (i, q) in Store.allQueries.enumerated() {
                    // PREPARE parses, analyses and plans the statement without running it.
                    c.simpleQuery("prepare q\(i) as \(q.sql)") { r in
                        if case .failure(let e) = r { failures.append("\(q.name): \(e.message)") }
                        remaining -= 1
                        if remaining == 0 {
                            c.close()
                            finish(failures)
                        }
                    }
                }
            }
            c.connect()
        }
        #expect(failures.isEmpty, "\(failures)")
    }
}
