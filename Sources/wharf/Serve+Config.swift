import ArgumentParser
import Foundation
import WharfServer

extension Serve {
    /// The arguments after `serve` on this process's command line.
    static func rawArguments() -> [String] {
        let args = Array(CommandLine.arguments.dropFirst())
        guard let i = args.firstIndex(of: "serve") else { return [] }
        return Array(args[(i + 1)...])
    }

    /// Secret -> role from `ROLE:SECRET` and `ROLE:sha256:HEX` entries (see `ServerConfig.role(forToken:)`).
    static func tokenMap(_ entries: [String]) throws -> [String: Role] {
        var map: [String: Role] = [:]
        for t in entries {
            let parts = t.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, let role = Role(rawValue: parts[0]), !parts[1].isEmpty else {
                throw ValidationError("token must be ROLE:SECRET with ROLE one of admin, producer, worker, reader")
            }
            if parts[1].hasPrefix(ServerConfig.tokenDigestPrefix) && ServerConfig.tokenDigest(parts[1]) == nil {
                throw ValidationError(
                    "a token of role \(parts[0]) starts with sha256: but is not sha256: and 64 hex digits "
                        + "(the SHA-256 of the token, e.g. from `printf %s TOKEN | sha256sum`)")
            }
            map[parts[1]] = role
        }
        return map
    }

    /// `--print-config`: every setting's effective value and source, one per line, secrets redacted.
    func effectiveConfiguration(_ sources: [String: ServeSettings.Source]) -> String {
        var out = "# wharf serve: effective settings (flags > WHARF_* environment > --config file > defaults)\n"
        let keys = Dictionary(ServeSettings.keys.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for (property, value) in ArgumentValues.properties(of: self) {
            let name = ServeSettings.customNames[property]?.name ?? ServeSettings.dashed(property)
            guard let key = keys[name] else { continue }
            var text = Self.describe(value)
            if key.secret { text = name == "token" ? Self.redactTokens(value) : Self.redactDatabaseURL(text) }
            let source = sources[name] ?? .defaultValue
            let env = source == .environment(key.environmentName) ? "" : " (env \(key.environmentName))"
            out += "\(name) = \(text)  # \(source.description)\(env)\n"
        }
        return out
    }

    static func describe(_ value: Any) -> String {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return "(unset)" }
            return describe(wrapped)
        }
        if let list = value as? [String] { return list.isEmpty ? "(none)" : list.joined(separator: ",") }
        return "\(value)"
    }

    static func redactTokens(_ value: Any) -> String {
        let list = value as? [String] ?? []
        if list.isEmpty { return "(none)" }
        return list.map { entry in
            let role = entry.split(separator: ":", maxSplits: 1).first.map(String.init) ?? "?"
            return "\(role):<redacted>"
        }.joined(separator: ",")
    }

    /// A conninfo or URL with its password replaced (`password=...`, `postgresql://user:...@`).
    static func redactDatabaseURL(_ text: String) -> String {
        var s = text
        let rules = [
            (#"(://[^:/@\s]*:)[^@\s]*@"#, "$1<redacted>@"),
            (#"([?&]password=)[^&\s]*"#, "$1<redacted>"),
            (#"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']\S*)"#, "$1<redacted>"),
        ]
        for (pattern, template) in rules {
            let re = try! NSRegularExpression(pattern: pattern, options: [.caseInsensitive])
            s = re.stringByReplacingMatches(
                in: s, range: NSRange(s.startIndex..., in: s), withTemplate: template)
        }
        return s
    }
}
