/// The clocks that end a connection which overstays: authentication, an unfinished frame, output that
/// the peer does not take, and idleness.
///
/// Pure: the connection reports what happened and passes `now` (loop milliseconds); `expired(now:busy:)`
/// says which deadline, if any, has passed. The connection turns the answer into an error line and a
/// close. A limit of 0 turns its clock off.
struct ConnectionDeadlines: Sendable {
    struct Settings: Sendable, Equatable {
        /// A session must authenticate this soon after connecting (when the server has tokens).
        var authTimeoutMs = 10_000
        /// A frame must be complete this soon after its first byte arrived.
        var frameTimeoutMs = 30_000
        /// Pending output that the peer takes none of for this long ends the connection.
        var writeTimeoutMs = 30_000
        /// Nothing read, nothing in flight and no subscription for this long ends the connection.
        var idleTimeoutMs = 300_000
        /// Once closing, how long unsent output may wait without progress (capped by `writeTimeoutMs`).
        var closeLingerMs = 2_000
        /// On a TLS port, the handshake must finish this soon after connecting.
        var handshakeTimeoutMs = 10_000
    }

    /// Which clock ran out.
    enum Expiry: Equatable, Sendable {
        /// No `session.hello` with a valid token in time.
        case authentication
        /// A frame was started and not finished in time (a slowloris peer).
        case frame
        /// Output has waited without the peer taking a byte.
        case write
        /// Nothing happened for the idle timeout.
        case idle
        /// A TLS handshake did not finish in time.
        case handshake
    }

    let settings: Settings
    private(set) var openedAtMs: UInt64
    private(set) var isAuthenticated: Bool
    /// Since when the input holds the beginning of a frame that has not ended yet.
    private(set) var partialFrameSinceMs: UInt64?
    /// The last time a request was read or an answer finished.
    private(set) var lastActivityMs: UInt64
    /// Since when output has been pending without the peer taking any of it.
    private(set) var writeStalledSinceMs: UInt64?
    private var lastWrittenBytes: UInt64 = 0
    /// Set once the connection is closing (its last output is being written).
    private(set) var closingSinceMs: UInt64?

    init(settings: Settings, now: UInt64, authenticated: Bool) {
        self.settings = settings
        openedAtMs = now
        lastActivityMs = now
        isAuthenticated = authenticated
    }

    /// True while a TLS handshake is under way.
    private(set) var isHandshaking = false

    /// The connection is TLS: its handshake clock runs from the connect.
    mutating func handshakeStarted() { isHandshaking = true }
    mutating func handshakeFinished() { isHandshaking = false }

    /// The session presented a valid token.
    mutating func sessionAuthenticated() { isAuthenticated = true }

    /// Input was read. `completedFrame`: at least one frame ended in it; `partialFrame`: the input now
    /// ends inside a frame.
    mutating func inputReceived(completedFrame: Bool, partialFrame: Bool, now: UInt64) {
        lastActivityMs = now
        if !partialFrame {
            partialFrameSinceMs = nil
        } else if completedFrame || partialFrameSinceMs == nil {
            partialFrameSinceMs = now
        }
    }

    /// Reading stopped on the server's side (backpressure): an unfinished frame is not the peer's
    /// delay while it lasts, so its clock restarts when reading resumes.
    mutating func readingResumed(partialFrame: Bool, now: UInt64) {
        partialFrameSinceMs = partialFrame ? now : nil
    }

    mutating func readingPaused() { partialFrameSinceMs = nil }

    /// A request finished (its answer is queued).
    mutating func requestFinished(now: UInt64) { lastActivityMs = now }

    /// Output changed or was sampled: `pendingBytes` not yet taken by the kernel, of which the kernel
    /// has taken `writtenBytes` in total so far. Any progress restarts the write clock.
    mutating func outputSampled(pendingBytes: Int, writtenBytes: UInt64, now: UInt64) {
        defer { lastWrittenBytes = writtenBytes }
        if pendingBytes == 0 {
            writeStalledSinceMs = nil
        } else if writtenBytes != lastWrittenBytes || writeStalledSinceMs == nil {
            writeStalledSinceMs = now
        }
    }

    /// The connection began closing: only the write clock (shortened to `closeLingerMs`) still runs.
    mutating func closingStarted(now: UInt64) {
        if closingSinceMs == nil { closingSinceMs = now }
    }

    /// The clock that has run out at `now`, if any. `busy`: requests are in flight or a subscription is
    /// live, which is not idleness.
    func expired(now: UInt64, busy: Bool) -> Expiry? {
        if let since = writeStalledSinceMs {
            var limit = UInt64(settings.writeTimeoutMs)
            if closingSinceMs != nil {
                limit = limit == 0 ? UInt64(settings.closeLingerMs) : min(limit, UInt64(settings.closeLingerMs))
            }
            if limit > 0, now &- since >= limit { return .write }
        }
        if closingSinceMs != nil { return nil }
        if isHandshaking, settings.handshakeTimeoutMs > 0, now &- openedAtMs >= UInt64(settings.handshakeTimeoutMs) {
            return .handshake
        }
        if !isAuthenticated, settings.authTimeoutMs > 0, now &- openedAtMs >= UInt64(settings.authTimeoutMs) {
            return .authentication
        }
        if let since = partialFrameSinceMs, settings.frameTimeoutMs > 0, now &- since >= UInt64(settings.frameTimeoutMs)
        {
            return .frame
        }
        if !busy, settings.idleTimeoutMs > 0, now &- lastActivityMs >= UInt64(settings.idleTimeoutMs) {
            return .idle
        }
        return nil
    }

    /// Since when this connection has held bytes without the peer moving them along (unsent output or
    /// an unfinished frame), or nil. The oldest goes first when the server is over its buffer budget.
    var stuckSinceMs: UInt64? {
        switch (writeStalledSinceMs, partialFrameSinceMs) {
        case (let a?, let b?): return min(a, b)
        case (let a?, nil): return a
        case (nil, let b?): return b
        case (nil, nil): return nil
        }
    }
}
