import ArgumentParser
import Foundation
import Logging
import WharfRPC

/// A log handler that writes one JSON object per line to stderr: `time` (UTC, milliseconds), `level`,
/// `message`, `replica`, then the entry's metadata fields (`method`, `session`, `peer`, `error`...),
/// each a string. Lines are written whole under one lock, so entries from several threads never mix.
struct JSONLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let replica: String

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The fields every line starts with; metadata with the same names is written with a `field.` prefix.
    static let reserved: Set<String> = ["time", "level", "message", "replica"]

    func log(event: LogEvent) {
        var object: JSONObject = [
            "time": .string(Self.timestamp()), "level": .string(event.level.rawValue),
            "message": .string("\(event.message)"), "replica": .string(replica),
        ]
        let fields = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new })
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            if key == "replica" && "\(value)" == replica { continue }
            object[Self.reserved.contains(key) ? "field.\(key)" : key] = .string("\(value)")
        }
        let line = JSON.object(object).encoded + [UInt8(ascii: "\n")]
        Self.lock.withLock {
            line.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let n = write(2, bytes.baseAddress! + offset, bytes.count - offset)
                    if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { break }
                }
            }
        }
    }

    private static let lock = NSLock()

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = time_t(tv.tv_sec)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(tv.tv_usec) / 1000)
    }
}

/// The process's logger: `--log-format text` (swift-log's stream handler, the default) or `json`.
func makeLogger(level: String, format: String, replica: String) throws -> Logger {
    guard let logLevel = Logger.Level(rawValue: level) else {
        throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
    }
    switch format {
    case "text":
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = logLevel
            return h
        }
    case "json":
        LoggingSystem.bootstrap { _ in JSONLogHandler(logLevel: logLevel, replica: replica) }
    default:
        throw ValidationError("--log-format must be text or json")
    }
    return Logger(label: "wharf")
}
