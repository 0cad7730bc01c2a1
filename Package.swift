// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "wharf",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "wharf", targets: ["wharf"]),
        .library(name: "WharfClient", targets: ["WharfClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries. Only the wrapper module named beside each may import it.
        .systemLibrary(
            name: "CLibUV", pkgConfig: "libuv", providers: [.apt(["libuv1-dev"])]),  // WharfUV
        .systemLibrary(
            name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),  // WharfPQ
        .systemLibrary(
            name: "CLibCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),  // WharfHooks
        .systemLibrary(name: "CHTTPParser", providers: [.apt(["libhttp-parser-dev"])]),  // WharfHTTP
        .systemLibrary(
            name: "CLibSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),  // WharfTLS

        // Pure modules.
        .target(name: "WharfCore"),
        // JSON values and their codec, and the JSON-RPC framing on top. Optimized even in debug builds: every
        // reply and request goes through its codec on the loop, and unoptimized byte loops took ~150 ms per MB there, stalling every connection during a large reply.
        .target(name: "WharfJSON", swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "WharfRPC", dependencies: ["WharfJSON"], swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),

        // I/O shells.
        .target(name: "WharfUV", dependencies: ["CLibUV"]),
        // HTTP/1.1 requests parsed by Debian's http_parser (no I/O).
        .target(name: "WharfHTTP", dependencies: ["CHTTPParser"]),
        // TLS over memory BIOs: the loop's streams and the blocking client drive the same session.
        // Optimized in debug builds too, like the codec: every byte of a TLS connection goes through it.
        .target(
            name: "WharfTLS", dependencies: ["CLibSSL", "WharfUV"],
            swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "WharfPQ", dependencies: ["WharfUV", "CLibPQ", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "WharfStore",
            dependencies: ["WharfPQ", "WharfCore", "WharfJSON", .product(name: "Logging", package: "swift-log")],
            resources: [.embedInCode("Migrations")]),
        .target(
            name: "WharfServer",
            dependencies: [
                "WharfStore", "WharfRPC", "WharfUV", "WharfPQ", "WharfCore", "WharfHooks", "WharfHTTP", "WharfTLS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),  // token digests
            ],
            resources: [.embedInCode("HTTP/openrpc.json"), .embedInCode("HTTP/Dashboard")]),
        .target(
            name: "WharfHooks",
            dependencies: ["CLibCurl", "CLibUV", "WharfUV", "WharfCore", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "WharfClient", dependencies: ["WharfRPC", "WharfTLS"]),
        .executableTarget(
            name: "wharf",
            dependencies: [
                "WharfServer", "WharfClient", "WharfUV", "WharfRPC", "WharfHooks", "CLibPQ", "WharfTLS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]),

        .testTarget(name: "WharfCoreTests", dependencies: ["WharfCore"]),
        .testTarget(name: "WharfJSONTests", dependencies: ["WharfJSON"]),
        .testTarget(name: "WharfRPCTests", dependencies: ["WharfRPC"]),
        .testTarget(name: "WharfHTTPTests", dependencies: ["WharfHTTP"]),
        .testTarget(name: "WharfHooksTests", dependencies: ["WharfHooks", "WharfUV"]),
        .testTarget(name: "WharfTLSTests", dependencies: ["WharfTLS"]),
        .testTarget(
            name: "WharfPQTests",
            dependencies: ["WharfPQ", "WharfUV", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "WharfServerTests",
            dependencies: ["WharfServer", "WharfStore", "WharfPQ", "WharfUV", "WharfClient", "WharfRPC", "WharfCore"]),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer targets (Tests/Fuzz), declared only for `scripts/fuzz.sh`, which sets WHARF_FUZZ and builds
// them with `-sanitize=fuzzer,address` in their own scratch path. They compile the pure files they fuzz
// (symlinked) with WharfRPC and WharfCore, so the fuzz build needs neither libcurl nor swift-crypto.
if Context.environment["WHARF_FUZZ"] != nil {
    package.targets += [
        .target(name: "CFuzzDriver", path: "Tests/Fuzz/CFuzzDriver"),
        .executableTarget(
            name: "WharfFuzz", dependencies: ["WharfJSON", "WharfRPC", "WharfCore", "CFuzzDriver"], path: "Tests/Fuzz/WharfFuzz"),
    ]
}
