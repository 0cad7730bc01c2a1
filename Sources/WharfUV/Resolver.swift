import CLibUV
import Foundation

/// Name resolution off the loop thread: `uv_getaddrinfo` runs `getaddrinfo` on libuv's thread pool and
/// calls back on the loop.
public enum Resolver {
    /// One address a name resolved to: `AF_INET` with 4 bytes or `AF_INET6` with 16.
    public struct Address: Hashable, Sendable {
        public let family: Int32
        public let bytes: [UInt8]
    }

    private final class Request {
        let completion: (Result<[Address], UVError>) -> Void
        init(_ completion: @escaping (Result<[Address], UVError>) -> Void) { self.completion = completion }
    }

    /// Resolves `host` to its IPv4 and IPv6 addresses (deduplicated, in the resolver's order).
    public static func resolve(
        loop: EventLoop, host: String, _ completion: @escaping (Result<[Address], UVError>) -> Void
    ) {
        let req = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        req.initialize(to: uv_getaddrinfo_t())
        req.pointee.data = Unmanaged.passRetained(Request(completion)).toOpaque()
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let rc = uv_getaddrinfo(
            loop.loop, req,
            { req, status, res in
                let request = Unmanaged<Request>.fromOpaque(req!.pointee.data).takeRetainedValue()
                req!.deinitialize(count: 1)
                req!.deallocate()
                defer { uv_freeaddrinfo(res) }
                guard status == 0 else { return request.completion(.failure(UVError(code: status, call: "getaddrinfo"))) }
                var out: [Address] = []
                var p = res
                while let ai = p {
                    if ai.pointee.ai_family == AF_INET, let sa = ai.pointee.ai_addr {
                        sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                            var a = s.pointee.sin_addr
                            out.append(Address(family: AF_INET, bytes: withUnsafeBytes(of: &a) { Array($0) }))
                        }
                    } else if ai.pointee.ai_family == AF_INET6, let sa = ai.pointee.ai_addr {
                        sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                            var a = s.pointee.sin6_addr
                            out.append(Address(family: AF_INET6, bytes: withUnsafeBytes(of: &a) { Array($0) }))
                        }
                    }
                    p = ai.pointee.ai_next
                }
                var seen = Set<Address>()
                request.completion(.success(out.filter { seen.insert($0).inserted }))
            }, host, nil, &hints)
        if rc < 0 {
            let request = Unmanaged<Request>.fromOpaque(req.pointee.data).takeRetainedValue()
            req.deinitialize(count: 1)
            req.deallocate()
            request.completion(.failure(UVError(code: rc, call: "uv_getaddrinfo")))
        }
    }
}
