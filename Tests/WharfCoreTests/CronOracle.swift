import Foundation
import Testing

/// Running `cron_oracle.py`, which answers cron and zone offset queries with cronsim and `zoneinfo`.
enum Oracle {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let script = directory.appendingPathComponent("cron_oracle.py").path

    /// Whether `python3 -c "import cronsim"` succeeds.
    static let available: Bool = {
        (try? run(["-c", "import cronsim"], script: nil)) != nil
    }()

    static var isCI: Bool { ProcessInfo.processInfo.environment["CI"].map { !$0.isEmpty } ?? false }
    static var shouldRun: Bool { available || isCI }
    static let skipNote: Comment =
        "cronsim is not installed (python3 -m pip install cronsim); live differential cron test skipped"

    /// Sends one batch of queries (see `cron_oracle.py`) and returns the decoded answer document.
    static func answer(_ query: [String: Any], timeoutSeconds: Int = 300) throws -> [String: Any] {
        let path = NSTemporaryDirectory() + "cron-oracle-\(UInt64.random(in: 0...UInt64.max)).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try JSONSerialization.data(withJSONObject: query).write(to: URL(fileURLWithPath: path))
        let output = try run([path], timeoutSeconds: timeoutSeconds)
        guard let document = try JSONSerialization.jsonObject(with: output) as? [String: Any] else {
            throw Failure(description: "the oracle's answer is not a JSON object")
        }
        return document
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs python3 with the oracle script (or just `arguments`) and returns its standard output.
    static func run(_ arguments: [String], script: String? = Oracle.script, timeoutSeconds: Int = 120) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + (script.map { [$0] } ?? []) + arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read stderr concurrently so a chatty child cannot block on a full pipe.
        let errorBox = DataBox()
        let reader = Thread { errorBox.data = stderr.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        // A stuck child must not hang the test run.
        let watchdog = Thread {
            for _ in 0..<(timeoutSeconds * 10) {
                if !process.isRunning { return }
                usleep(100_000)
            }
            if process.isRunning { process.terminate() }
        }
        watchdog.start()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        while !errorBox.done { usleep(1000) }
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errorBox.data, as: UTF8.self)
            throw Failure(
                description: "python3 \(arguments.joined(separator: " ")) exited "
                    + "\(process.terminationStatus): \(message)")
        }
        return output
    }

    /// Standard error collected on another thread.
    private final class DataBox: @unchecked Sendable {
        private let lock = NSLock()
        private var value = Data()
        private var finished = false

        var data: Data {
            get { lock.withLock { value } }
            set {
                lock.withLock {
                    value = newValue; finished = true
                }
            }
        }
        var done: Bool { lock.withLock { finished } }
    }
}
