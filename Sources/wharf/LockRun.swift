import ArgumentParser
import Dispatch
import Foundation
import WharfClient
import WharfRPC

extension Lock {
    /// `wharf lock run NAME --ttl 30s [--wait 10s] -- COMMAND...`: the one-line fix for a cron host that
    /// may start a job twice. Exits with the command's status; 75 (EX_TEMPFAIL) when the lock is held by
    /// someone else, or when it was lost while the command ran (the command is then stopped).
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Acquire NAME, run COMMAND while renewing at a third of the TTL, release, exit with its status.",
            discussion: """
                The lock is bound to this process's connection, so it is released at once if this process \
                dies. The command sees WHARF_LOCK_NAME and WHARF_FENCING_TOKEN. SIGINT, SIGTERM and SIGHUP \
                are passed on to the command.
                """)

        static let heldStatus: Int32 = 75

        @OptionGroup var options: ClientOptions
        @Argument var name: String
        @Option(help: "Lease length, e.g. 30s.") var ttl = "30s"
        @Option(help: "Wait this long for the lock instead of failing at once, e.g. 10s.") var wait: String?
        @Option(help: "Who holds the lock, as shown to others.") var holder =
            "\(ProcessInfo.processInfo.hostName)/\(getpid())"
        @Argument(parsing: .postTerminator, help: "The command, after --.") var command: [String] = []

        func run() throws {
            var argv = command
            if argv.first == "--" { argv.removeFirst() }
            guard !argv.isEmpty else { throw ValidationError("give the command after --") }
            let ttlMs = try parseDurationMs(ttl)
            guard ttlMs >= 300 else { throw ValidationError("--ttl must be at least 300ms") }
            let waitMs = try wait.map(parseDurationMs) ?? 0

            var conn = try options.connect()
            let grant = try acquire(&conn, ttlMs: ttlMs, waitMs: waitMs)
            guard grant["granted"] == true, let token = grant["token"]?.stringValue else {
                let by = grant["heldBy"]?.stringValue ?? "?"
                let until = grant["expiresAt"]?.stringValue ?? "?"
                FileHandle.standardError.write(Data("wharf: lock \(name) is held by \(by) until \(until)\n".utf8))
                throw ExitCode(Self.heldStatus)
            }

            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = argv
            var env = ProcessInfo.processInfo.environment
            env["WHARF_LOCK_NAME"] = name
            env["WHARF_FENCING_TOKEN"] = String(grant["fencingToken"]?.intValue ?? 0)
            process.environment = env
            try process.run()
            let signals = forwardSignals(to: process.processIdentifier)
            defer { for s in signals { s.cancel() } }

            let lost = keepRenewing(&conn, token: token, ttlMs: ttlMs, while: process)
            if lost {
                process.terminate()
                let grace = Date().addingTimeInterval(5)
                while process.isRunning && Date() < grace { Thread.sleep(forTimeInterval: 0.02) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            }
            process.waitUntilExit()
            _ = try? conn.call("locks.release", ["name": .string(name), "token": .string(token)])
            if lost { throw ExitCode(Self.heldStatus) }
            if process.terminationReason == .uncaughtSignal { throw ExitCode(128 + process.terminationStatus) }
            throw ExitCode(process.terminationStatus)
        }

        /// Acquires, retrying once on a new connection (same requestId) if the reply was lost.
        private func acquire(_ conn: inout BlockingConnection, ttlMs: Int, waitMs: Int) throws -> JSON {
            var p: JSONObject = [
                "name": .string(name), "holder": .string(holder), "ttlMs": .from(ttlMs), "bindToSession": true,
                "requestId": .string(UUID().uuidString),
            ]
            if waitMs > 0 { p["waitMs"] = .from(waitMs) }
            do {
                do {
                    return try conn.call("locks.acquire", .object(p))
                } catch let e as RPCError where !e.isRetryable {
                    throw e
                } catch {
                    Thread.sleep(forTimeInterval: 0.2)
                    conn = try options.connect()
                    return try conn.call("locks.acquire", .object(p))
                }
            } catch let e as RPCError {
                FileHandle.standardError.write(Data("wharf: \(e.message)\n".utf8))
                throw ExitCode(2)
            }
        }

        /// Renews at a third of the TTL until the command exits. A failed connection is re-opened and the
        /// renewal retried while the lease may still be live; returns true when the lease was lost.
        private func keepRenewing(
            _ conn: inout BlockingConnection, token: String, ttlMs: Int, while process: Process
        ) -> Bool {
            let interval = Double(ttlMs) / 3 / 1000
            var leaseEnd = Date().addingTimeInterval(Double(ttlMs) / 1000)
            var next = Date().addingTimeInterval(interval)
            let params: JSON = ["name": .string(name), "token": .string(token), "ttlMs": .from(ttlMs)]
            while process.isRunning {
                Thread.sleep(forTimeInterval: min(0.02, interval / 4))
                guard Date() >= next, process.isRunning else { continue }
                let sent = Date()
                do {
                    _ = try conn.call("locks.renew", params)
                    leaseEnd = sent.addingTimeInterval(Double(ttlMs) / 1000)
                    next = sent.addingTimeInterval(interval)
                } catch let e as RPCError where e.reason == "lease_lost" {
                    FileHandle.standardError.write(Data("wharf: lost lock \(name); stopping the command\n".utf8))
                    return true
                } catch {
                    guard Date() < leaseEnd else {
                        FileHandle.standardError.write(
                            Data("wharf: could not renew lock \(name) (\(error)); stopping the command\n".utf8))
                        return true
                    }
                    next = Date().addingTimeInterval(min(0.1, interval / 3))
                    if let fresh = try? options.connect() { conn = fresh }
                }
            }
            return false
        }

        /// Passes SIGINT, SIGTERM and SIGHUP on to the command, so that it can finish and the lock be
        /// released by this process rather than left to expire.
        private func forwardSignals(to pid: Int32) -> [DispatchSourceSignal] {
            [SIGINT, SIGTERM, SIGHUP].map { sig in
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler { kill(pid, sig) }
                source.resume()
                return source
            }
        }
    }
}
