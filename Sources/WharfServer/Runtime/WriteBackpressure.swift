/// When to stop and restart reading a connection whose peer does not take its replies.
///
/// Pure. Reading stops once the connection's unsent output reaches `highWater` and restarts only when
/// it has fallen to `lowWater`, so a slow reader is not switched on and off for every reply.
struct WriteBackpressure: Sendable, Equatable {
    let highWater: Int
    let lowWater: Int
    /// True while reading is stopped for this reason.
    private(set) var isPaused = false

    /// `lowWater` defaults to a quarter of `highWater`.
    init(highWater: Int, lowWater: Int? = nil) {
        precondition(highWater > 0, "highWater must be positive")
        self.highWater = highWater
        self.lowWater = min(lowWater ?? highWater / 4, highWater)
    }

    enum Action: Equatable, Sendable {
        /// Stop reading the peer's input.
        case pauseReading
        /// Start reading again (if nothing else holds it back).
        case resumeReading
    }

    /// The unsent output is now `pendingBytes`; returns what to do about reading, if anything.
    mutating func outputChanged(pendingBytes: Int) -> Action? {
        if !isPaused, pendingBytes >= highWater {
            isPaused = true
            return .pauseReading
        }
        if isPaused, pendingBytes <= lowWater {
            isPaused = false
            return .resumeReading
        }
        return nil
    }

    /// Whether one more request may be taken now with `pendingBytes` unsent (checked per request,
    /// because one read can hold many).
    func mayTakeRequest(pendingBytes: Int) -> Bool { !isPaused && pendingBytes < highWater }
}
