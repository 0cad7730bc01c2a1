import CLibUV

/// A connected byte stream as a connection handler sees it: a `TCPConnection`, or a layer on top of
/// one (TLS) that hands up plaintext and takes plaintext to send.
///
/// The contract is `TCPConnection`'s: `onRead` runs on the loop thread with bytes valid only during the
/// call; after `stopReading()` no more `onRead` arrives until `startReading()`; `queuedBytes` and
/// `writtenBytes` describe what the peer has not yet taken and what it has taken so far (a layer
/// counts its own bytes on the wire, which is what backpressure and the write clock need).
/// Loop thread only.
public protocol ByteStream: AnyObject {
    var queuedBytes: Int { get }
    var writtenBytes: UInt64 { get }
    var isReading: Bool { get }
    var isClosing: Bool { get }
    var peerAddress: String? { get }
    func setNoDelay()
    func setKeepAlive(delaySeconds: UInt32)
    func setHandlers(onRead: @escaping (UnsafeRawBufferPointer) -> Void, onEnd: @escaping (UVError?) -> Void)
    func setWrittenHandler(_ onWritten: @escaping () -> Void)
    func startReading()
    func stopReading()
    func write(_ bytes: UnsafeRawBufferPointer)
    func close()
}

extension TCPConnection: ByteStream {}

extension UVError {
    /// A failure of a layer above the socket (a TLS handshake, a record that does not decrypt), as the
    /// stream's end reason; `what` says which.
    public static func protocolError(_ what: String) -> UVError { UVError(code: Int32(UV_EPROTO.rawValue), call: what) }
}
