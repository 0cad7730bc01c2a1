import Foundation

/// Address literals and their classification, CIDR blocks, and the URL checks of
/// `WebhooksService.check` up to the point where a host name would be resolved.
enum FuzzURL {
    static func one(_ data: UnsafeRawBufferPointer) {
        guard data.count <= 512 else { return }
        let text = String(decoding: data, as: UTF8.self)
        address(text)
        if let block = CIDR(text) {
            precondition(block.contains(block.network), "\(block) does not contain its own network")
            precondition(CIDR(block.description) == block, "\(block) does not round-trip")
        }
        url(text)
    }

    static func address(_ text: String) {
        guard let a = IPAddress(text) else { return }
        precondition(IPAddress(a.description) == a, "\(text) -> \(a) does not round-trip")
        precondition(IPAddress(a.resolveForm) == a, "\(a.resolveForm) does not parse")
        let isPublic = a.isPublic
        if case .v4(let b) = a {
            // IPv4-mapped and NAT64 forms reach the same host, so they are classified the same.
            let mapped = IPAddress.v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + b)
            precondition(mapped.isPublic == isPublic, "::ffff:\(a) classified unlike \(a)")
            let nat64 = IPAddress.v6([0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0] + b)
            precondition(nat64.isPublic == isPublic, "64:ff9b::\(a) classified unlike \(a)")
            let sixToFour = IPAddress.v6([0x20, 0x02] + b + [UInt8](repeating: 0, count: 10))
            precondition(!sixToFour.isPublic || isPublic, "6to4 of private \(a) is public")
        }
    }

    /// What `WebhooksService.check` decides before any DNS lookup: refused, an address literal
    /// (public or not) or a name to resolve.
    static func url(_ text: String) {
        guard let c = URLComponents(string: text), let scheme = c.scheme?.lowercased(),
            scheme == "http" || scheme == "https", var host = c.host, !host.isEmpty, c.user == nil, c.password == nil
        else { return }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        _ = c.port ?? (scheme == "https" ? 443 : 80)
        if let literal = IPAddress(host) {
            address(literal.description)
            return
        }
        let lower = host.lowercased()
        _ = lower == "localhost" || lower.hasSuffix(".localhost")
    }
}
