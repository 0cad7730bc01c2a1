import WharfRPC

/// The first byte sets the limit (1...32), the next two seed the chunk sizes and pauses; the rest is
/// the stream.
enum FuzzFramer {
    static func one(_ data: UnsafeRawBufferPointer) {
        guard data.count >= 3 else { return }
        let max = Int(data[0] % 32) + 1
        var rng = SplitMix(seed: UInt64(data[1]) << 8 | UInt64(data[2]))
        let stream = Array(data[3...])
        let (expected, expectedOverflow) = reference(stream, max: max)

        var framer = LineFramer(maxFrame: max)
        var got: [[UInt8]] = []
        var outcome = LineFramer.Outcome.ok
        var offset = 0
        let accept = { (line: UnsafeRawBufferPointer, rng: inout SplitMix) -> Bool in
            got.append(Array(line))
            return rng.next() % 4 != 0
        }
        while offset < stream.count, outcome != .frameTooLarge {
            let n = min(stream.count - offset, Int(rng.next() % 24) + 1)
            outcome = stream[offset..<offset + n].withUnsafeBytes { b in framer.feed(b) { accept($0, &rng) } }
            offset += n
            // Usually drain before reading on, as the server does; sometimes feed while paused.
            while outcome == .paused, rng.next() % 8 != 0 {
                outcome = framer.drain { accept($0, &rng) }
            }
        }
        while outcome == .paused { outcome = framer.drain { accept($0, &rng) } }
        precondition(got == expected, "delivered \(got.count) lines, expected \(expected.count)")
        precondition((outcome == .frameTooLarge) == expectedOverflow, "outcome \(outcome), expected overflow \(expectedOverflow)")
        precondition(outcome == .frameTooLarge || framer.bufferedCount <= max + 1)
    }

    /// Splits on `\n`, drops one `\r` before it, refuses lines longer than `max` (and ends there), skips
    /// lines of spaces and tabs; an unterminated tail longer than `max` (a final `\r` not counted)
    /// overflows too.
    static func reference(_ stream: [UInt8], max: Int) -> (lines: [[UInt8]], overflow: Bool) {
        var lines: [[UInt8]] = []
        var parts = stream.split(separator: 0x0A, omittingEmptySubsequences: false)
        let tail = parts.removeLast()
        for part in parts {
            var line = Array(part)
            if line.last == 0x0D { line.removeLast() }
            if line.count > max { return (lines, true) }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            lines.append(line)
        }
        let tailLength = tail.last == 0x0D ? tail.count - 1 : tail.count
        return (lines, tailLength > max)
    }
}

/// A small deterministic generator (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
