import Crypto

extension ServerConfig {
    /// A token entry of this form holds the token's SHA-256 (64 hex digits), not the token.
    public static let tokenDigestPrefix = "sha256:"

    /// The 32 bytes of a `sha256:HEX` entry, or nil when `entry` is not one.
    public static func tokenDigest(_ entry: String) -> [UInt8]? {
        guard entry.hasPrefix(tokenDigestPrefix) else { return nil }
        let hex = Array(entry.utf8.dropFirst(tokenDigestPrefix.utf8.count))
        guard hex.count == 64 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        for i in stride(from: 0, to: 64, by: 2) {
            guard let hi = hexValue(hex[i]), let lo = hexValue(hex[i + 1]) else { return nil }
            bytes.append(hi << 4 | lo)
        }
        return bytes
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The role `token` grants, or nil.
    ///
    /// Every configured entry is compared, each as the SHA-256 of its token (a `sha256:` entry is one
    /// already), byte by byte without stopping early, so the time taken tells nothing of how close a
    /// guess came nor which entry it matched.
    public func role(forToken token: String) -> Role? {
        let presented = Array(SHA256.hash(data: Array(token.utf8)))
        var granted: Role?
        for (entry, role) in tokens {
            let digest = Self.tokenDigest(entry) ?? Array(SHA256.hash(data: Array(entry.utf8)))
            var difference: UInt8 = 0
            for i in 0..<32 { difference |= digest[i] ^ presented[i] }
            if difference == 0 { granted = role }
        }
        return granted
    }
}
