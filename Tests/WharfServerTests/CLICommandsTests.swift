import Foundation
import Testing
import WharfClient
import WharfRPC

/// The `wharf` client commands, run as the real binary against a real server: each one changes what
/// the protocol then reports, and every method of Protocol/openrpc.json has a command or a stated
/// reason to be reached only through `wharf call`.
@Suite struct CLICommandsTests {
    /// Runs `wharf ARGS --server ... --json` and parses its output.
    struct CLI {
        let bin = TestEnvironment.wharfBinary
        let server: String

        init(_ s: TestServer) throws {
            try #require(FileManager.default.isExecutableFile(atPath: bin))
            server = "127.0.0.1:\(s.port)"
        }

        /// Status, standard output, standard error.
        func run(_ args: [String]) throws -> (Int32, String, String) {
            try TestDatabase.run([bin] + args + ["--server", server])
        }

        func json(_ args: [String]) throws -> JSON {
            let (status, out, err) = try run(args + ["--json"])
            guard status == 0 else {
                throw TestFailure("wharf \(args.joined(separator: " ")) exited \(status): \(err)")
            }
            return try JSONParser.parse(out)
        }
    }

    @Test func queuesConfigureSetsTheRetryPolicyAFailedJobUses() throws {
        let s = try TestServer()
        let cli = try CLI(s)
        let set = try cli.json([
            "queues", "configure", "slow", "--retry-initial", "1h", "--retry-max", "2h", "--retry-jitter", "0",
            "--keep-dead", "30d",
        ])
        #expect(set["retry"]?["initialMs"] == 3_600_000)
        #expect(set["retry"]?["maxMs"] == 7_200_000)
        #expect(set["retention"]?["deadMs"] == 2_592_000_000)
        // A job of the queue that fails retries after the queue's hour, not the server's second.
        let c = try s.connect()
        let id = try #require(try c.call("jobs.enqueue", ["queue": "slow", "kind": "k"])["id"])
        let leased = try #require(
            try c.call("jobs.lease", ["queues": ["slow"], "worker": "w"])["jobs"]?.arrayValue?.first)
        let failed = try c.call("jobs.fail", ["id": id, "leaseToken": leased["leaseToken"] ?? .null, "error": "boom"])
        let next = try #require(failed["nextRunAt"]?.stringValue.flatMap(parseTime))
        #expect(next.timeIntervalSinceNow > 3_500, "retries at \(next)")
        // A later call changes what it names and keeps the rest; 'server' clears a retention field.
        let kept = try cli.json(["queues", "configure", "slow", "--keep-completed", "2h", "--keep-dead", "server"])
        #expect(kept["retry"]?["initialMs"] == 3_600_000)
        #expect(kept["retention"]?["completedMs"] == 7_200_000)
        #expect(kept["retention"]?["deadMs"] == .null)
        let cleared = try cli.json(["queues", "configure", "slow", "--clear-retry"])
        #expect(cleared["retry"] == .null)
        // Nothing to set is refused before any call.
        let empty = try cli.run(["queues", "configure", "slow"])
        #expect(empty.0 != 0)
        #expect(empty.2.contains("nothing to set"))
        // The readable form names the settings.
        let text = try cli.run(["queues", "configure", "slow", "--retry-initial", "5s"])
        #expect(text.0 == 0)
        #expect(text.1.contains("initial 5s"), "\(text.1)")
        #expect(text.1.contains("completed 2h"), "\(text.1)")
    }

    @Test func jobsEnqueueBatchTakesAnArrayOrJSONLines() throws {
        let s = try TestServer()
        let cli = try CLI(s)
        let dir = NSTemporaryDirectory() + "wharf-cli-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try #"[{"queue":"b","kind":"one"},{"queue":"b","kind":"two","delayMs":60000}]"#
            .write(toFile: dir + "/jobs.json", atomically: true, encoding: .utf8)
        let r = try cli.json(["jobs", "enqueue-batch", dir + "/jobs.json"])
        let jobs = try #require(r["jobs"]?.arrayValue)
        #expect(jobs.map { $0["state"]?.stringValue } == ["available", "scheduled"])
        try "{\"queue\":\"b\",\"kind\":\"three\"}\n\n{\"queue\":\"b\",\"kind\":\"four\"}\n"
            .write(toFile: dir + "/jobs.jsonl", atomically: true, encoding: .utf8)
        #expect(try cli.json(["jobs", "enqueue-batch", dir + "/jobs.jsonl"])["jobs"]?.arrayValue?.count == 2)
        // '-' reads standard input.
        let piped = try TestDatabase.run([
            "bash", "-c",
            #"printf '%s\n' '{"queue":"b","kind":"five"}' | "$0" jobs enqueue-batch - --server "$1""#, cli.bin,
            cli.server,
        ])
        #expect(piped.0 == 0, "\(piped.2)")
        #expect(piped.1.hasPrefix("job ") && piped.1.hasSuffix(" available"), "\(piped.1)")
        let listed = try s.connect().call("jobs.list", ["queue": "b"])["jobs"]?.arrayValue ?? []
        #expect(Set(listed.compactMap { $0["kind"]?.stringValue }) == ["one", "two", "three", "four", "five"])
        // All or nothing: one bad job makes none.
        try #"[{"queue":"b","kind":"six"},{"queue":"b"}]"#.write(
            toFile: dir + "/bad.json", atomically: true, encoding: .utf8)
        let bad = try cli.run(["jobs", "enqueue-batch", dir + "/bad.json"])
        #expect(bad.0 == 2)
        #expect(bad.2.contains("kind"))
        #expect(try s.connect().call("jobs.list", ["queue": "b"])["jobs"]?.arrayValue?.count == 5)
    }

    @Test func webhookEndpointCommandsChangeTheEndpoint() throws {
        let s = try TestServer { $0.webhooks.allowPrivate = true }
        let cli = try CLI(s)
        let c = try s.connect()
        // Nothing listens there: deliveries fail.
        let port = try TestEnvironment.freePort()
        let id = try #require(
            try c.call("webhooks.register", ["url": .string("http://127.0.0.1:\(port)/hook")])["id"]?.stringValue)

        let updated = try cli.json([
            "webhooks", "update", id, "--url", "http://127.0.0.1:\(port)/v2", "--event", "order.created",
            "--rate-limit", "7", "--retention", "30d",
        ])
        #expect(updated["url"] == .string("http://127.0.0.1:\(port)/v2"))
        let got = try c.call("webhooks.get", ["id": .string(id)])
        #expect(got["events"] == ["order.created"])
        #expect(got["rateLimitPerS"] == 7)
        #expect(got["retentionMs"] == 2_592_000_000)
        #expect(try cli.json(["webhooks", "update", id, "--retention", "server"])["retentionMs"] == .null)
        #expect(try cli.json(["webhooks", "get", id])["url"] == .string("http://127.0.0.1:\(port)/v2"))

        #expect(try cli.json(["webhooks", "health", id])["state"] == "enabled")
        #expect(try cli.run(["webhooks", "health", id]).1.contains("failures     0 in a row"))

        // recover: failed deliveries since the time given are queued again.
        let sent = try c.call("webhooks.send", ["endpointId": .string(id), "payload": ["n": 1]])
        let delivery = try #require(sent["deliveryIds"]?.arrayValue?.first?.stringValue)
        try s.database.sql("update wharf.webhook_deliveries set state = 'failed' where id = \(delivery)")
        #expect(try cli.json(["webhooks", "recover", id, "--since", "1h"])["requeued"] == 1)
        let state = try s.database.sql("select state from wharf.webhook_deliveries where id = \(delivery)")
        #expect(state == "pending" || state == "delivering")
        try s.database.sql("update wharf.webhook_deliveries set state = 'failed' where id = \(delivery)")
        #expect(try cli.json(["webhooks", "recover", id, "--since", "2000-01-01T00:00:00Z"])["requeued"] == 1)

        // remove: the endpoint is gone.
        #expect(try cli.json(["webhooks", "remove", id])["removed"] == true)
        #expect(try c.expectError("webhooks.get", ["id": .string(id)]).code != 0)
        let again = try cli.run(["webhooks", "remove", id])
        #expect(again.0 == 2)
        #expect(again.2.contains("error:"), "\(again.2)")
    }

    /// A receiver that answers 410 Gone disables its endpoint at once: `wharf events watch` prints the
    /// endpoint.disabled event, `webhooks health` shows the state, and `webhooks enable` undoes it.
    @Test func eventsWatchSeesAnEndpointDisabledAndEnableUndoesIt() throws {
        let s = try TestServer { $0.webhooks.allowPrivate = true }
        let cli = try CLI(s)
        let gone = try GoneReceiver()
        defer { gone.stop() }
        let dir = NSTemporaryDirectory() + "wharf-watch-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        FileManager.default.createFile(atPath: dir + "/out", contents: nil)
        FileManager.default.createFile(atPath: dir + "/err", contents: nil)
        let watch = Process()
        watch.executableURL = URL(fileURLWithPath: cli.bin)
        watch.arguments = [
            "events", "watch", "--event", "endpoint.disabled", "--count", "1", "--json", "--server", cli.server,
        ]
        watch.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
        watch.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/err"))
        try watch.run()
        defer { if watch.isRunning { kill(watch.processIdentifier, SIGKILL) } }
        func stderrText() -> String { (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? "" }
        let deadline = Date().addingTimeInterval(15)
        while !stderrText().contains("subscribed to endpoint.disabled") && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        try #require(stderrText().contains("subscribed to endpoint.disabled"), "\(stderrText())")

        let c = try s.connect()
        let id = try #require(try c.call("webhooks.register", ["url": .string(gone.url)])["id"]?.stringValue)
        _ = try c.call("webhooks.send", ["endpointId": .string(id), "payload": ["n": 1]])
        while watch.isRunning && Date() < deadline.addingTimeInterval(15) { Thread.sleep(forTimeInterval: 0.02) }
        #expect(!watch.isRunning, "no event within 30 s")
        watch.waitUntilExit()
        #expect(watch.terminationStatus == 0, "\(stderrText())")
        let event = try JSONParser.parse((try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "")
        #expect(event["type"] == "endpoint.disabled")
        #expect(event["data"]?["endpointId"] == .string(id))

        let health = try cli.json(["webhooks", "health", id])
        #expect(health["state"] == "disabled")
        #expect(health["disabledReason"] == "gone")
        #expect(try cli.run(["webhooks", "health", id]).1.contains("disabled     since"))
        let enabled = try cli.json(["webhooks", "enable", id])
        #expect(enabled["health"]?["state"] == "enabled")
        #expect(try c.call("webhooks.health", ["id": .string(id)])["state"] == "enabled")
    }

    @Test func serverCommandsReport() throws {
        let s = try TestServer()
        let cli = try CLI(s)
        let ping = try cli.run(["server", "ping"])
        #expect(ping.0 == 0)
        #expect(ping.1 == "pong")
        let info = try cli.json(["server", "info"])
        #expect(info["replicaId"] == (try s.connect().call("server.info"))["replicaId"])
        let health = try cli.run(["server", "health"])
        #expect(health.0 == 0)
        #expect(health.1.hasPrefix("ok"))
        #expect(try cli.json(["server", "health"])["database"]?["reachable"] == true)
        // Nothing listens: a clear failure, not a hang.
        let port = try TestEnvironment.freePort()
        let down = try TestDatabase.run([cli.bin, "server", "ping", "--server", "127.0.0.1:\(port)"])
        #expect(down.0 != 0)
    }

    /// Every method of openrpc.json appears in `wharf methods`; each command it names exists; and a
    /// method the table does not know fails here.
    @Test func everyMethodHasACommandOrAReason() throws {
        let bin = TestEnvironment.wharfBinary
        let doc = try ProtocolDocumentTests.load("openrpc.json")
        let described = Set((doc["methods"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
        #expect(described.count > 40)
        let (status, out, err) = try TestDatabase.run([bin, "methods", "--json"])
        #expect(status == 0, "\(err)")
        let table = try #require(try JSONParser.parse(out).objectValue)
        let covered = Set(table.keys)
        #expect(described.subtracting(covered).isEmpty, "methods without a command or a reason")
        #expect(covered.subtracting(described).isEmpty, "commands for methods the server does not describe")
        for (method, route) in table.pairs {
            if let command = route["command"]?.stringValue {
                let words = command.split(separator: " ").map(String.init)
                let help = try TestDatabase.run([bin] + words + ["--help"])
                #expect(help.0 == 0, "\(method): wharf \(command) --help failed: \(help.2)")
                #expect(help.1.contains("USAGE: wharf \(command)"), "\(method): \(help.1)")
            } else {
                let why = try #require(route["callOnly"]?.stringValue, "\(method) has neither command nor reason")
                #expect(why.count > 20)
            }
        }
        // For a command that does not exist the usage names only its parent, so the check above can fail.
        let missing = try TestDatabase.run([bin, "webhooks", "no-such-command", "--help"])
        #expect(!missing.1.contains("USAGE: wharf webhooks no-such-command"))
    }

    /// Every command of the table says what it does, and every argument and option says what it means.
    @Test func everyCommandHasHelpForItAndEachOption() throws {
        let bin = TestEnvironment.wharfBinary
        let (_, out, _) = try TestDatabase.run([bin, "methods", "--json"])
        let commands = Set(
            try #require(try JSONParser.parse(out).objectValue).pairs.compactMap { $0.value["command"]?.stringValue })
        #expect(commands.count > 35)
        for command in commands.sorted() {
            let help = try TestDatabase.run([bin] + command.split(separator: " ").map(String.init) + ["--help"]).1
            #expect(help.hasPrefix("OVERVIEW: ") && !help.hasPrefix("OVERVIEW: \n"), "wharf \(command) has no abstract")
            #expect(
                Self.helpEntries(help).contains { $0.name == "--server <server>" }, "wharf \(command) --help: \(help)")
            for entry in Self.helpEntries(help) where entry.text.isEmpty {
                Issue.record("wharf \(command): \(entry.name) has no help text")
            }
        }
        // The check can fail: an entry with only its default is found.
        #expect(Self.helpEntries("OPTIONS:\n  --limit <limit>         (default: 50)\n").map(\.text) == [""])
    }

    /// The ARGUMENTS and OPTIONS entries of a --help text with their descriptions, defaults left out.
    static func helpEntries(_ help: String) -> [(name: String, text: String)] {
        var entries: [(name: String, text: String)] = []
        var inList = false
        for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "ARGUMENTS:" || line == "OPTIONS:" { inList = true; continue }
            if line.isEmpty || !line.hasPrefix(" ") { inList = false; continue }
            guard inList else { continue }
            // Labels take the first 26 columns; a longer label has its text on the next lines.
            let chars = Array(line)
            let text = chars.count > 26 && chars[25] == " " ? String(chars[26...]) : ""
            if line.hasPrefix("  -") || line.hasPrefix("  <") {
                let label = chars.count > 26 && chars[25] == " " ? String(chars[2..<26]) : String(chars[2...])
                entries.append((label.trimmingCharacters(in: .whitespaces), text))
            } else if !entries.isEmpty {
                entries[entries.count - 1].text += " " + line.drop(while: { $0 == " " })
            }
        }
        return entries.map { e in
            var text = e.text
            if let d = text.range(of: "(default:") { text = String(text[..<d.lowerBound]) }
            return (e.name, text.trimmingCharacters(in: .whitespaces))
        }
    }

    @Test(arguments: ["bash", "zsh", "fish"])
    func completionScriptNamesTheSubcommands(shell: String) throws {
        let (status, out, err) = try TestDatabase.run([
            TestEnvironment.wharfBinary, "--generate-completion-script", shell,
        ])
        #expect(status == 0, "\(err)")
        for word in ["serve", "enqueue", "queues", "webhooks", "configure", "enqueue-batch", "recover", "health"] {
            #expect(out.contains(word), "\(shell) completion lacks \(word)")
        }
    }

    /// The bash script, sourced in bash, completes subcommands and options as a shell would ask it to.
    @Test func bashCompletionCompletesSubcommandsAndOptions() throws {
        let bin = TestEnvironment.wharfBinary
        let dir = NSTemporaryDirectory() + "wharf-completion-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = try TestDatabase.run([bin, "--generate-completion-script", "bash"])
        #expect(script.0 == 0)
        try script.1.write(toFile: dir + "/wharf.bash", atomically: true, encoding: .utf8)
        // As bash calls a completion function: COMP_LINE, COMP_POINT, COMP_WORDS, COMP_CWORD; the
        // script runs `wharf` itself for some words, so the binary's folder goes first on PATH.
        let driver = """
            shopt -s extglob
            export PATH=\(URL(fileURLWithPath: bin).deletingLastPathComponent().path):$PATH
            source \(dir)/wharf.bash
            complete_line() {
              COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
              read -ra COMP_WORDS <<< "$1"
              [[ "$1" == *" " ]] && COMP_WORDS+=("")
              COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
              COMPREPLY=()
              _wharf wharf "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
              echo "${COMPREPLY[*]}"
            }
            complete_line "wharf "
            complete_line "wharf queues "
            complete_line "wharf webhooks re"
            complete_line "wharf queues configure q --retry-"
            """
        let (status, out, err) = try TestDatabase.run(["bash", "-c", driver])
        #expect(status == 0, "\(err)")
        let lines = out.split(separator: "\n").map { Set($0.split(separator: " ").map(String.init)) }
        try #require(lines.count == 4, "\(out)\n\(err)")
        #expect(
            lines[0].isSuperset(of: [
                "serve", "enqueue", "jobs", "queues", "cron", "lock", "webhooks", "server", "methods",
            ]))
        #expect(lines[1] == ["-h", "--help", "list", "stats", "configure", "pause", "resume"])
        #expect(lines[2] == ["register", "remove", "redeliver", "recover"])
        #expect(lines[3] == ["--retry-initial", "--retry-max", "--retry-coefficient", "--retry-jitter"])
    }

    private func parseTime(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }
}

/// An HTTP receiver that answers every POST with 410 Gone, in a python3 child process.
final class GoneReceiver {
    let process = Process()
    let url: String

    init() throws {
        let port = try TestEnvironment.freePort()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c",
            """
            import http.server, sys
            class H(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def do_POST(self):
                    self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    self.send_response(410)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                def log_message(self, *a):
                    pass
            http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
            """,
            String(port),
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        url = "http://127.0.0.1:\(port)/gone"
        // Ready once it accepts a connection.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if (try? BlockingConnection(host: "127.0.0.1", port: port, timeoutSeconds: 1)) != nil { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        stop()
        throw TestFailure("the 410 receiver did not start")
    }

    /// SIGKILL: a child inherits the signal mask of the thread that started it, and the loop threads of
    /// the test servers in this process may have SIGTERM blocked.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
