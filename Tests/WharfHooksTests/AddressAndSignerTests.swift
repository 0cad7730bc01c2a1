import Testing

@testable import WharfHooks

/// The SSRF guard's classification and Standard Webhooks signing: pure, no network.
@Suite struct AddressAndSignerTests {
    @Test(arguments: [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "100.127.255.254", "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.10", "198.18.0.1", "240.0.0.1",
        "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
        "64:ff9b::10.0.0.1", "64:ff9b::7f00:1", "2002:0a00:0001::1", "2002:c0a8:0101::", "2001:db8::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", "64:ff9b:1::1", "::127.0.0.1",
    ])
    func nonPublicAddressesAreRefused(_ text: String) throws {
        let a = try #require(IPAddress(text))
        #expect(!a.isPublic, "\(text) must not count as public")
    }

    @Test(arguments: [
        "8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:0808:0808::1",
    ])
    func publicAddressesAreAllowed(_ text: String) throws {
        let a = try #require(IPAddress(text))
        #expect(a.isPublic, "\(text) is public")
    }

    @Test func literalsAndCIDRs() throws {
        #expect(IPAddress("[::1]") == IPAddress("::1"))
        #expect(IPAddress("localhost") == nil)
        #expect(IPAddress("1.2.3") == nil)
        #expect(IPAddress("::ffff:127.0.0.1")?.description == "::ffff:127.0.0.1")
        let net = try #require(CIDR("10.0.0.0/8"))
        #expect(net.contains(try #require(IPAddress("10.200.1.1"))))
        #expect(!net.contains(try #require(IPAddress("11.0.0.1"))))
        #expect(!net.contains(try #require(IPAddress("::1"))))
        let v6 = try #require(CIDR("fd00::/8"))
        #expect(v6.contains(try #require(IPAddress("fd12::1"))))
        #expect(CIDR("10.0.0.0/33") == nil)
        #expect(try #require(CIDR("127.0.0.1")).contains(try #require(IPAddress("127.0.0.1"))))
    }

    /// Found by the `url` fuzz target: the empty string trapped (an index into an empty split).
    @Test(arguments: ["", "/", "/8", "10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/-1", "10.0.0.0/8/8", "::1/ 64", "10.0.0.0/٣"])
    func malformedCIDRsAreRefused(text: String) {
        #expect(CIDR(text) == nil)
    }

    /// The Standard Webhooks specification's example, which the reference libraries also test.
    @Test func signatureMatchesTheSpecificationExample() {
        let sig = Signer.signature(
            id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330, body: Array(#"{"test": 2432232314}"#.utf8),
            secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
        #expect(sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    }

    @Test func rotationSignsWithBothSecretsAndNewSecretsAreWellFormed() throws {
        let a = Signer.newSecret()
        let b = Signer.newSecret()
        #expect(a != b)
        #expect(a.hasPrefix("whsec_"))
        #expect(try #require(Signer.key(a)).count == 32)
        let both = Signer.signature(id: "m", timestamp: 1, body: [], secrets: [a, b])
        let parts = both.split(separator: " ")
        #expect(parts.count == 2)
        #expect(parts.allSatisfy { $0.hasPrefix("v1,") })
        #expect(String(parts[0]) == Signer.signature(id: "m", timestamp: 1, body: [], secrets: [a]))
    }
}
