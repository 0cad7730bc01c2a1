import ArgumentParser
import Foundation
import WharfRPC

/// `wharf serve`'s settings from the environment and from `--config FILE`, below its flags.
///
/// Every flag of `wharf serve` is a setting; the precedence is flags > environment > file > defaults.
/// The layer adds the environment's and the file's values to the command line as flags that come
/// before the user's, only for settings the command line does not give, so swift-argument-parser
/// still parses, types and documents every setting once, in `Serve`. The settings are read off
/// `Serve` itself (a `Mirror` of its defaults), so a flag added there is a setting here at once.
///
/// Naming: the variable of `--some-flag` is `WHARF_SOME_FLAG`; a repeatable flag's variable is the
/// plural (`--token` → `WHARF_TOKENS`, `--webhook-allow-cidr` → `WHARF_WEBHOOK_ALLOW_CIDRS`) and holds
/// a list separated by commas or whitespace. An empty variable counts as unset. The file is a JSON
/// object whose keys are the flags' long names without the dashes (`{"listen": "0.0.0.0:7411",
/// "pool-size": 8, "token-file": "/etc/wharf/tokens", "webhook-allow-cidr": ["10.1.0.0/16"]}`).
struct ServeSettings {
    /// One setting: a flag of `wharf serve`.
    struct Key {
        enum Kind { case flag, list, int, double, text }
        /// The flag's long name, without the dashes.
        let name: String
        /// Further long names the flag answers to (`--database` for `--database-url`).
        let aliases: [String]
        let kind: Kind
        /// Tokens and the database URL: `--print-config` shows them redacted.
        var secret: Bool { name == "token" || name == "database-url" }
        var environmentName: String {
            "WHARF_" + name.uppercased().replacingOccurrences(of: "-", with: "_") + (kind == .list ? "S" : "")
        }
    }

    /// Where a setting's value came from.
    enum Source: Equatable {
        case flag, environment(String), file(String), defaultValue
        var description: String {
            switch self {
            case .flag: return "flag"
            case .environment(let name): return "env \(name)"
            case .file(let path): return "config file \(path)"
            case .defaultValue: return "default"
            }
        }
    }

    /// Flags whose long name is not their property's name spelled with dashes.
    static let customNames: [String: (name: String, aliases: [String])] = [
        "tokens": ("token", []), "database": ("database-url", ["database"]),
    ]
    /// Flags that are actions of this run, not settings.
    static let notSettings: Set<String> = ["print-config"]

    /// Every setting, in the order `Serve` declares them.
    static let keys: [Key] = {
        guard let defaults = try? Serve.parse([]) else { preconditionFailure("wharf serve has a required flag") }
        return ArgumentValues.properties(of: defaults).compactMap { property, value in
            let custom = customNames[property]
            let name = custom?.name ?? dashed(property)
            guard !notSettings.contains(name) else { return nil }
            return Key(name: name, aliases: custom?.aliases ?? [], kind: kind(of: value))
        }
    }()

    static func kind(of value: Any) -> Key.Kind {
        // By exact type: a nil of one optional type would pass `is` for any other.
        let type = ObjectIdentifier(Swift.type(of: value))
        if type == ObjectIdentifier(Bool.self) { return .flag }
        if type == ObjectIdentifier([String].self) { return .list }
        let ints: [Any.Type] = [Int.self, Int64.self, Int?.self, Int64?.self]
        if ints.contains(where: { ObjectIdentifier($0) == type }) { return .int }
        let doubles: [Any.Type] = [Double.self, Double?.self]
        if doubles.contains(where: { ObjectIdentifier($0) == type }) { return .double }
        return .text
    }

    /// `maxFrameBytes` → `max-frame-bytes`, as swift-argument-parser names a flag after its property.
    static func dashed(_ property: String) -> String {
        var out = ""
        for c in property {
            if c.isUppercase {
                out += "-" + c.lowercased()
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// The settings one run resolved: the arguments to parse and where each setting came from.
    struct Resolution {
        var arguments: [String]
        var sources: [String: Source]
        /// The values taken from the environment and the file, by setting.
        var values: [String: [String]] = [:]

        /// `error` with the source of each environment or file setting it is about (by its flag or its
        /// value), so that a value refused after parsing still names where it came from.
        func annotated(_ error: Error) -> Error {
            guard let e = error as? ValidationError else { return error }
            let culprits = values.keys.sorted().filter { name in
                e.message.contains("--\(name)")
                    || values[name, default: []].contains { $0.count > 1 && e.message.contains($0) }
            }
            guard !culprits.isEmpty else { return error }
            let from = culprits.map { "--\($0) is from \(sources[$0]?.description ?? "?")" }
            return ValidationError(e.message + " (" + from.joined(separator: "; ") + ")")
        }
    }

    /// `wharf serve`'s arguments (after `serve`) with the environment's and the config file's settings
    /// added in front of them.
    static func resolve(_ cli: [String], environment: [String: String]) throws -> Resolution {
        let given = Set(keys.filter { key in ([key.name] + key.aliases).contains { givenOnCommandLine($0, cli) } }.map(\.name))
        var sources: [String: Source] = [:]
        for name in given { sources[name] = .flag }

        // --config from the command line or WHARF_CONFIG.
        var configPath: String?
        if let i = cli.lastIndex(where: { $0 == "--config" || $0.hasPrefix("--config=") }) {
            configPath = cli[i] == "--config" ? (i + 1 < cli.count ? cli[i + 1] : nil) : String(cli[i].dropFirst(9))
        } else if let env = environment["WHARF_CONFIG"], !env.isEmpty {
            configPath = env
        }
        let file = try configPath.map { try ConfigFile.load($0) } ?? ConfigFile(path: "", values: [:])

        var added: [String] = []
        var taken: [String: [String]] = [:]
        for key in keys where !given.contains(key.name) && key.name != "config" {
            let values: [String]
            if let text = environment[key.environmentName], !text.isEmpty {
                values = try Self.values(text, for: key, source: "environment variable \(key.environmentName)")
                sources[key.name] = .environment(key.environmentName)
            } else if let fileValues = try file.values(for: key) {
                values = fileValues
                sources[key.name] = .file(file.path)
            } else {
                sources[key.name] = .defaultValue
                continue
            }
            taken[key.name] = values
            switch key.kind {
            case .flag: if values == ["true"] { added.append("--\(key.name)") }
            default: added += values.map { "--\(key.name)=\($0)" }
            }
        }
        if configPath != nil && !given.contains("config") {
            sources["config"] = .environment("WHARF_CONFIG")
            added.append("--config=\(configPath!)")
        }
        return Resolution(arguments: added + cli, sources: sources, values: taken)
    }

    /// Whether `cli` sets `--name` (as `--name VALUE`, `--name=VALUE` or a flag).
    static func givenOnCommandLine(_ name: String, _ cli: [String]) -> Bool {
        cli.contains { $0 == "--\(name)" || $0.hasPrefix("--\(name)=") }
    }

    /// An environment variable's text as the flag values it stands for, checked against the flag's type.
    static func values(_ text: String, for key: Key, source: String) throws -> [String] {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        switch key.kind {
        case .list:
            return trimmed.split(whereSeparator: { $0 == "," || $0.isWhitespace }).map(String.init)
        case .flag:
            switch trimmed.lowercased() {
            case "true", "1", "yes", "on": return ["true"]
            case "false", "0", "no", "off": return ["false"]
            default: throw SettingsError("\(source): expected true or false for --\(key.name), got \(quoted(text))")
            }
        case .int:
            guard Int64(trimmed) != nil else {
                throw SettingsError("\(source): expected a whole number for --\(key.name), got \(quoted(text))")
            }
            return [trimmed]
        case .double:
            guard Double(trimmed) != nil else {
                throw SettingsError("\(source): expected a number for --\(key.name), got \(quoted(text))")
            }
            return [trimmed]
        case .text:
            return [text]
        }
    }

    static func quoted(_ text: String) -> String {
        JSON.string(text).text
    }
}

/// Reads the values of a parsed command's properties (its options, flags and option groups).
enum ArgumentValues {
    /// `(property name, value)` of every option, flag and option group's member, in declaration order.
    static func properties(of command: Any) -> [(String, Any)] {
        Mirror(reflecting: command).children.flatMap { child -> [(String, Any)] in
            guard let label = child.label, label.hasPrefix("_") else { return [] }
            let name = String(label.dropFirst())
            if let group = child.value as? AnyOptionGroup { return properties(of: group.anyGroup) }
            guard let argument = child.value as? AnyArgumentValue else { return [] }
            return [(name, argument.anyValue)]
        }
    }
}

protocol AnyArgumentValue { var anyValue: Any { get } }
protocol AnyOptionGroup { var anyGroup: Any { get } }
extension Option: AnyArgumentValue { var anyValue: Any { wrappedValue } }
extension Flag: AnyArgumentValue { var anyValue: Any { wrappedValue } }
extension OptionGroup: AnyOptionGroup { var anyGroup: Any { wrappedValue } }

/// A setting from the environment or the config file that cannot be used: the message names its source.
struct SettingsError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
