import Foundation
import WharfRPC

/// The `--config` file: a JSON object of settings, each key a flag's long name without the dashes.
struct ConfigFile {
    let path: String
    let values: [String: JSON]

    static func load(_ path: String) throws -> ConfigFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SettingsError("config file \(path): cannot be read")
        }
        let json: JSON
        do {
            json = try JSONParser.parse([UInt8](data))
        } catch {
            throw SettingsError("config file \(path): not JSON: \(error)")
        }
        guard let object = json.objectValue else {
            throw SettingsError("config file \(path): must be a JSON object of settings, e.g. {\"listen\": \"0.0.0.0:7411\"}")
        }
        var values: [String: JSON] = [:]
        let known = Dictionary(ServeSettings.keys.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (key, value) in object.pairs {
            guard key != "config" else { throw SettingsError("config file \(path): \"config\" cannot be set in a config file") }
            guard known[key] != nil else {
                throw SettingsError(
                    "config file \(path): unknown key \(ServeSettings.quoted(key)) (keys are the long names of "
                        + "`wharf serve --help`'s flags without the dashes, e.g. \"listen\", \"pool-size\")")
            }
            values[key] = value
        }
        return ConfigFile(path: path, values: values)
    }

    /// The flag values a key's setting stands for, or nil when the file does not set it.
    func values(for key: ServeSettings.Key) throws -> [String]? {
        guard let value = values[key.name] else { return nil }
        let source = "config file \(path), key \(ServeSettings.quoted(key.name))"
        func scalar(_ v: JSON) throws -> String {
            switch v {
            case .string(let s): return s
            case .int(let i): return String(i)
            case .double(let d): return String(d)
            case .bool(let b): return String(b)
            default: throw SettingsError("\(source): expected a string or a number, got \(v.typeName)")
            }
        }
        switch (key.kind, value) {
        case (.list, .array(let items)): return try items.map(scalar)
        case (.list, _): return [try scalar(value)]
        case (.flag, .bool(let b)): return [String(b)]
        case (.flag, _): throw SettingsError("\(source): expected true or false, got \(value.typeName)")
        default: return try ServeSettings.values(try scalar(value), for: key, source: source)
        }
    }
}
