import CLibUV

/// An error code returned by a libuv call, with the name of the call that failed.
public struct UVError: Error, CustomStringConvertible, Sendable {
    /// The negative libuv error code (`UV_E*`).
    public let code: Int32
    /// The libuv function that returned it.
    public let call: String

    public var description: String {
        "\(call): \(String(cString: uv_strerror(code)))"
    }

    /// True when the peer went away (`EOF`, `ECONNRESET`, `EPIPE`), as opposed to a local failure.
    public var isPeerGone: Bool {
        code == Int32(UV_EOF.rawValue) || code == Int32(UV_ECONNRESET.rawValue) || code == Int32(UV_EPIPE.rawValue)
    }
}

/// Turns a libuv return code into a thrown `UVError`; every fallible libuv call goes through here.
@inline(__always)
@discardableResult
func uvCheck(_ rc: Int32, _ call: @autoclosure () -> String) throws -> Int32 {
    if rc < 0 { throw UVError(code: rc, call: call()) }
    return rc
}
