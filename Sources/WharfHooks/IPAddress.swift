import Foundation

/// An IPv4 or IPv6 address as bytes, with the classification the SSRF guard needs.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4([UInt8])
    case v6([UInt8])

    /// Parses a literal such as `10.0.0.1`, `::1` or `[::1]` (no zone ids, no shorthand IPv4 forms).
    public init?(_ text: String) {
        var t = Substring(text)
        if t.hasPrefix("[") && t.hasSuffix("]") { t = t.dropFirst().dropLast() }
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, String(t), &v4) == 1 {
            self = .v4(withUnsafeBytes(of: &v4) { Array($0) })
        } else if inet_pton(AF_INET6, String(t), &v6) == 1 {
            self = .v6(withUnsafeBytes(of: &v6) { Array($0) })
        } else {
            return nil
        }
    }

    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch self {
        case .v4(let b):
            var a = in_addr()
            withUnsafeMutableBytes(of: &a) { $0.copyBytes(from: b) }
            inet_ntop(AF_INET, &a, &buffer, socklen_t(buffer.count))
        case .v6(let b):
            var a = in6_addr()
            withUnsafeMutableBytes(of: &a) { $0.copyBytes(from: b) }
            inet_ntop(AF_INET6, &a, &buffer, socklen_t(buffer.count))
        }
        return String(cString: buffer)
    }

    /// How curl's `CURLOPT_RESOLVE` wants it: IPv6 in brackets.
    public var resolveForm: String {
        if case .v6 = self { return "[\(description)]" }
        return description
    }

    /// True when the address is reachable on the public internet: not loopback, private, link-local,
    /// CGNAT, multicast, reserved or documentation space, and, for IPv6 forms that carry an IPv4
    /// address (mapped, compatible, NAT64, 6to4), only when the carried address is public too.
    public var isPublic: Bool {
        switch self {
        case .v4(let b): return Self.isPublicV4(b)
        case .v6(let b): return Self.isPublicV6(b)
        }
    }

    static func isPublicV4(_ b: [UInt8]) -> Bool {
        let (a, c) = (b[0], b[1])
        switch a {
        case 0, 10, 127: return false  // "this network", private, loopback
        case 100 where c & 0xC0 == 64: return false  // 100.64.0.0/10 CGNAT
        case 169 where c == 254: return false  // link-local
        case 172 where c & 0xF0 == 16: return false  // 172.16.0.0/12
        case 192 where c == 168: return false  // 192.168.0.0/16
        case 192 where c == 0 && (b[2] == 0 || b[2] == 2): return false  // IETF protocol space, TEST-NET-1
        case 192 where c == 88 && b[2] == 99: return false  // deprecated 6to4 relay anycast
        case 198 where c & 0xFE == 18: return false  // 198.18.0.0/15 benchmarking
        case 198 where c == 51 && b[2] == 100: return false  // TEST-NET-2
        case 203 where c == 0 && b[2] == 113: return false  // TEST-NET-3
        case 224...255: return false  // multicast, reserved, broadcast
        default: return true
        }
    }

    static func isPublicV6(_ b: [UInt8]) -> Bool {
        let prefix96Zero = b[0..<10].allSatisfy { $0 == 0 }
        if prefix96Zero && b[10] == 0xFF && b[11] == 0xFF { return isPublicV4(Array(b[12..<16])) }  // ::ffff:a.b.c.d
        if prefix96Zero && b[10] == 0 && b[11] == 0 {
            // ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
            if b[12..<16].allSatisfy({ $0 == 0 }) || b[12..<15].allSatisfy({ $0 == 0 }) && b[15] == 1 { return false }
            return isPublicV4(Array(b[12..<16]))
        }
        // 64:ff9b::/96 well-known NAT64: the IPv4 address it reaches decides.
        if b[0..<12] == [0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0] { return isPublicV4(Array(b[12..<16])) }
        if b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B && b[4] == 0 && b[5] == 1 { return false }  // local NAT64
        if b[0] == 0x20 && b[1] == 0x02 { return isPublicV4(Array(b[2..<6])) }  // 2002::/16 6to4
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0 { return false }  // 2001::/32 Teredo
        if b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0D && b[3] == 0xB8 { return false }  // documentation
        if b[0] == 0x01 && b[1] == 0x00 && b[2..<8].allSatisfy({ $0 == 0 }) { return false }  // 100::/64 discard
        if b[0] & 0xFE == 0xFC { return false }  // fc00::/7 unique local
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return false }  // fe80::/10 link-local
        if b[0] == 0xFE && b[1] & 0xC0 == 0xC0 { return false }  // fec0::/10 site-local (deprecated)
        if b[0] == 0xFF { return false }  // multicast
        return b[0] & 0xE0 == 0x20  // only 2000::/3 is global unicast
    }
}

/// A CIDR block such as `10.0.0.0/8` or `fd00::/8`, for the allowlist of non-public targets.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let network: IPAddress
    public let prefix: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        let bits: Int
        switch address {
        case .v4: bits = 32
        case .v6: bits = 128
        }
        // Digits only: `10.0.0.0/` and `10.0.0.0/+8` are not blocks.
        let prefix = parts.count == 2 ? parts[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) ? Int(parts[1]) : nil : bits
        guard let prefix, (0...bits).contains(prefix) else { return nil }
        network = address
        self.prefix = prefix
    }

    public var description: String { "\(network)/\(prefix)" }

    public func contains(_ address: IPAddress) -> Bool {
        let (a, n): ([UInt8], [UInt8])
        switch (address, network) {
        case (.v4(let x), .v4(let y)), (.v6(let x), .v6(let y)): (a, n) = (x, y)
        default: return false
        }
        var left = prefix
        for i in 0..<a.count where left > 0 {
            let mask: UInt8 = left >= 8 ? 0xFF : UInt8(0xFF << (8 - left) & 0xFF)
            if a[i] & mask != n[i] & mask { return false }
            left -= 8
        }
        return true
    }
}
