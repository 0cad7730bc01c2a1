import Logging
import WharfPQ

/// One forward-only migration embedded in the binary.
public struct Migration: Sendable {
    public let version: Int
    public let name: String
    public let sql: String
}

/// Applies the embedded migrations in one transaction under an advisory lock, so replicas starting
/// together apply each migration exactly once. Uses its own simple-protocol connection, which may
/// carry whole SQL files, and closes it when done.
public enum Migrator {
    /// The advisory lock key guarding migrations ("wharf" as ASCII).
    static let lockKey = 0x7768_6172_66

    /// Every migration, ordered by version.
    public static let all: [Migration] = {
        let files: [(String, [UInt8])] = [
            ("v0001_base", PackageResources.v0001_base_sql),
            ("v0002_jobs", PackageResources.v0002_jobs_sql),
            ("v0003_locks", PackageResources.v0003_locks_sql),
            ("v0004_cron", PackageResources.v0004_cron_sql),
            ("v0005_webhooks", PackageResources.v0005_webhooks_sql),
            ("v0006_job_locks", PackageResources.v0006_job_locks_sql),
            ("v0007_cron_locks", PackageResources.v0007_cron_locks_sql),
            ("v0008_cron_webhook_locks", PackageResources.v0008_cron_webhook_locks_sql),
            ("v0009_job_limits", PackageResources.v0009_job_limits_sql),
            ("v0010_idempotency", PackageResources.v0010_idempotency_sql),
            ("v0011_webhook_limits", PackageResources.v0011_webhook_limits_sql),
            ("v0012_cron_next_fire", PackageResources.v0012_cron_next_fire_sql),
            ("v0013_lock_waiters", PackageResources.v0013_lock_waiters_sql),
            ("v0014_schedule_lock_release", PackageResources.v0014_schedule_lock_release_sql),
            ("v0015_enqueue_function", PackageResources.v0015_enqueue_function_sql),
            ("v0016_one_delivery_insert", PackageResources.v0016_one_delivery_insert_sql),
            ("v0020_workflows", PackageResources.v0020_workflows_sql),
            ("v0021_replicas", PackageResources.v0021_replicas_sql),
            ("v0022_step_completions", PackageResources.v0022_step_completions_sql),
            ("v0023_batch_callbacks", PackageResources.v0023_batch_callbacks_sql),
            ("v0024_enqueue_fast_path", PackageResources.v0024_enqueue_fast_path_sql),
        ]
        return files.map { name, bytes in
            let digits = name.dropFirst().prefix { $0.isNumber }
            return Migration(version: Int(digits)!, name: name, sql: String(decoding: bytes, as: UTF8.self))
        }.sorted { $0.version < $1.version }
    }()

    /// Applies what is missing. `completion` gets the versions applied now (empty when up to date).
    public static func migrate(
        connection: PQConnection, logger: Logger, _ completion: @escaping (Result<[Int], PQError>) -> Void
    ) {
        let prologue = """
            begin;
            select pg_advisory_xact_lock(\(lockKey));
            create schema if not exists wharf;
            create table if not exists wharf.schema_migrations (
                version integer not null,
                name text not null,
                applied_at timestamptz not null default now(),
                constraint schema_migrations_pkey primary key (version)
            );
            select version from wharf.schema_migrations order by version;
            """
        connection.simpleQuery(prologue) { result in
            switch result {
            case .failure(let e):
                connection.simpleQuery("rollback") { _ in completion(.failure(e)) }
            case .success(let results):
                let rows = results.last!
                let applied = Set((0..<rows.rowCount).compactMap { rows.int($0, 0) }.map(Int.init))
                let missing = all.filter { !applied.contains($0.version) }
                var script = ""
                for m in missing {
                    logger.info("applying migration", metadata: ["migration": "\(m.name)"])
                    script += m.sql + "\n;\n"
                    script +=
                        "insert into wharf.schema_migrations (version, name) values (\(m.version), '\(m.name)');\n"
                }
                script += "commit;"
                connection.simpleQuery(script) { result in
                    switch result {
                    case .success: completion(.success(missing.map(\.version)))
                    case .failure(let e): connection.simpleQuery("rollback") { _ in completion(.failure(e)) }
                    }
                }
            }
        }
    }
}
