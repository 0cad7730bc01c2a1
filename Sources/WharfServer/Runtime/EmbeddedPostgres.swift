import Foundation
import Logging
import Synchronization

/// A private PostgreSQL cluster under Wharf's data directory, for running with no `--database`.
///
/// `initdb` on first start, `pg_ctl start` on a Unix socket only (no TCP port), `pg_ctl stop` on exit.
/// PostgreSQL refuses to run as root, so when Wharf runs as root the cluster is owned by and run as
/// the unprivileged `postgres` user (created if missing). These calls block and are made before the
/// event loop starts and after it ended, never on it.
public struct EmbeddedPostgres: Sendable {
    public let dataDir: URL
    public let logger: Logger
    let port = 5432
    /// The directory holding the cluster (`pg/`) and its socket (`run/`): the data directory, unless
    /// Wharf runs as root and the `postgres` user cannot enter it (a checkout under `/root`, mode
    /// 0700, or in a `mktemp -d` folder); then `/var/lib/wharf/embedded-<hash of the data directory>`.
    let home: URL

    public init(dataDir: String, logger: Logger) {
        let url = URL(
            fileURLWithPath: dataDir, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        self.dataDir = url.standardizedFileURL
        self.logger = logger
        // A postgres user still to be created owns nothing: only "others" permissions apply to it.
        let postgres = getpwnam("postgres")
        if geteuid() == 0,
            !Self.canEnter(
                self.dataDir.path, uid: postgres?.pointee.pw_uid ?? uid_t.max, gid: postgres?.pointee.pw_gid ?? gid_t.max)
        {
            home = URL(fileURLWithPath: "/var/lib/wharf/embedded-\(Self.hash(self.dataDir.path))")
        } else {
            home = self.dataDir
        }
    }

    var clusterDir: String { home.appendingPathComponent("pg").path }

    /// The socket directory. Unix socket paths are short (107 bytes), so a deep data directory gets
    /// its socket under /tmp instead.
    var socketDir: String {
        let preferred = home.appendingPathComponent("run").path
        if preferred.utf8.count + 20 < 100 { return preferred }
        return "/tmp/wharf-\(Self.hash(home.path))"
    }

    static func hash(_ path: String) -> String {
        var hash: UInt64 = 1_469_598_103_934_665_603
        for b in path.utf8 { hash = (hash ^ UInt64(b)) &* 1_099_511_628_211 }
        return String(hash, radix: 36)
    }

    /// Whether a process of `uid`/`gid` may walk down to `path`: every existing directory on the way
    /// grants it search (execute) permission. Directories still to be made are made mode 0755.
    static func canEnter(_ path: String, uid: uid_t, gid: gid_t) -> Bool {
        var dir = URL(fileURLWithPath: path)
        while true {
            var st = stat()
            if stat(dir.path, &st) == 0 {
                let mode = st.st_mode
                let bit: mode_t = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH
                if mode & bit == 0 { return false }
            }
            if dir.path == "/" { return true }
            dir = dir.deletingLastPathComponent()
        }
    }

    /// The libpq connection string for the running cluster.
    public var conninfo: String { "host=\(socketDir) port=\(port) user=postgres dbname=postgres" }

    private var runAsPostgres: Bool { geteuid() == 0 }

    /// Creates the cluster if needed and starts it; returns once it accepts connections. Another
    /// process using the same data directory is refused first, before anything else is touched.
    public func start() throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: dataDir.path, withIntermediateDirectories: true)
        try claimDataDirectory()
        if home != dataDir {
            logger.info(
                "the postgres user cannot enter the data directory; the embedded cluster lives elsewhere",
                metadata: ["dataDir": "\(dataDir.path)", "cluster": "\(home.path)"])
            try fm.createDirectory(atPath: home.path, withIntermediateDirectories: true)
        }
        try fm.createDirectory(atPath: socketDir, withIntermediateDirectories: true)
        if runAsPostgres {
            try ensurePostgresUser()
            try run("/bin/chmod", ["755", home.path])
            try run("/bin/chown", ["postgres:", socketDir])
        }
        if !fm.fileExists(atPath: clusterDir + "/PG_VERSION") {
            logger.info("creating embedded PostgreSQL cluster", metadata: ["dir": "\(clusterDir)"])
            try fm.createDirectory(atPath: clusterDir, withIntermediateDirectories: true)
            if runAsPostgres { try run("/bin/chown", ["postgres:", clusterDir]) }
            try pg("initdb", ["-D", clusterDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-instructions"])
        }
        if (try? pg("pg_ctl", ["-D", clusterDir, "status"])) != nil {
            // Left running by a server that did not stop cleanly (kill -9): reuse it.
            logger.warning("embedded PostgreSQL is already running; reusing it", metadata: ["dir": "\(clusterDir)"])
            return
        }
        logger.info("starting embedded PostgreSQL", metadata: ["socket": "\(socketDir)"])
        let options = "-c listen_addresses='' -k \(socketDir) -p \(port) -c max_connections=100"
        try pg(
            "pg_ctl", ["-D", clusterDir, "-l", clusterDir + "/server.log", "-w", "-t", "60", "-o", options, "start"])
    }

    /// Stops the cluster (fast shutdown: active sessions are ended, everything committed is kept).
    public func stop() {
        do {
            try pg("pg_ctl", ["-D", clusterDir, "-m", "fast", "-w", "-t", "60", "stop"])
            logger.info("embedded PostgreSQL stopped")
        } catch {
            logger.error("stopping embedded PostgreSQL failed", metadata: ["error": "\(error)"])
        }
        if let fd = Self.claimed.withLock({ $0.removeValue(forKey: dataDir.path) }) { close(fd) }
    }

    /// Data directories this process holds: an open `serve.lock` with an exclusive `flock` each. The
    /// kernel releases it when the process dies, however it dies, so a server killed with SIGKILL
    /// leaves the directory free (and its cluster running, which the next server reuses).
    private static let claimed = Mutex<[String: Int32]>([:])

    /// Takes `serve.lock` in the data directory, or refuses naming the process that holds it.
    private func claimDataDirectory() throws {
        let path = dataDir.appendingPathComponent("serve.lock").path
        if Self.claimed.withLock({ $0[dataDir.path] != nil }) { return }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ConfigError(message: "cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &buffer, buffer.count)
            close(fd)
            let holder = String(decoding: buffer.prefix(max(0, n)), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            throw ConfigError(
                message: "the data directory \(dataDir.path) is in use by another wharf serve"
                    + (holder.isEmpty ? "" : " (pid \(holder))")
                    + "; stop it, or give this one another --data-dir or a --database")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        Self.claimed.withLock { $0[dataDir.path] = fd }
    }

    private func ensurePostgresUser() throws {
        if getpwnam("postgres") != nil { return }
        try run("/usr/sbin/useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"])
    }

    private func pg(_ tool: String, _ args: [String]) throws {
        let path = Self.locate(tool)
        if runAsPostgres {
            try run("/usr/sbin/runuser", ["-u", "postgres", "--", path] + args)
        } else {
            try run("/usr/bin/env", [path] + args)
        }
    }

    /// `tool` from PATH, else from the newest Debian-style /usr/lib/postgresql/N/bin, whose binaries
    /// are not on PATH by default.
    static func locate(_ tool: String) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(tool)") {
            return tool
        }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        for v in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(root)/\(v)/bin/\(tool)") {
            return "\(root)/\(v)/bin/\(tool)"
        }
        return tool
    }

    /// Runs a command to completion with its output in a temporary file.
    ///
    /// posix_spawn and waitpid rather than Foundation's Process: the postmaster that pg_ctl starts
    /// inherits descriptors, and Process then never sees pg_ctl exit.
    private func run(_ path: String, _ args: [String]) throws {
        let outPath = NSTemporaryDirectory() + "wharf-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out"
        defer { unlink(outPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard rc == 0 else { throw ConfigError(message: "cannot run \(path): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = (status & 0x7f) == 0
        let code = (status >> 8) & 0xff
        guard exited && code == 0 else {
            let text = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
            throw ConfigError(message: "\(([path] + args).joined(separator: " ")) failed: \(text)")
        }
    }
}
