/// Splits a byte stream into `\n`-terminated frames, enforcing a maximum frame size.
///
/// Complete lines are handed out straight from the caller's buffer; only a partial tail (or lines the
/// consumer declined while paused) are copied. A trailing `\r` is dropped, and blank lines are
/// skipped.
public struct LineFramer {
    public let maxFrame: Int
    private var pending: [UInt8] = []
    /// Set when a frame exceeded `maxFrame`; the stream cannot be resynchronised after that.
    public private(set) var overflowed = false

    public init(maxFrame: Int) { self.maxFrame = maxFrame }

    /// Bytes held back (a partial line, or lines not yet consumed).
    public var bufferedCount: Int { pending.count }

    /// True when a whole line is held back (not only the start of one).
    public var hasCompleteLine: Bool { pending.contains(0x0A) }

    public enum Outcome: Equatable { case ok, paused, frameTooLarge }

    /// Feeds `chunk`. `onLine` returns false to pause: the rest is kept and delivered by `drain`.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer, _ onLine: (UnsafeRawBufferPointer) -> Bool) -> Outcome {
        if overflowed { return .frameTooLarge }
        if !pending.isEmpty {
            pending.append(contentsOf: chunk)
            return drain(onLine)
        }
        var start = 0
        let bytes = chunk.bindMemory(to: UInt8.self)
        while let nl = Self.index(of: 0x0A, in: bytes, from: start) {
            let line = UnsafeRawBufferPointer(rebasing: chunk[start..<nl])
            start = nl + 1
            if Self.frameLength(line) > maxFrame {
                overflowed = true
                return .frameTooLarge
            }
            if !Self.deliver(line, onLine) {
                pending.append(contentsOf: chunk[start...])
                return .paused
            }
        }
        if Self.frameLength(UnsafeRawBufferPointer(rebasing: chunk[start...])) > maxFrame {
            overflowed = true
            return .frameTooLarge
        }
        pending.append(contentsOf: chunk[start...])
        return .ok
    }

    /// Delivers lines already buffered (after a pause).
    public mutating func drain(_ onLine: (UnsafeRawBufferPointer) -> Bool) -> Outcome {
        if overflowed { return .frameTooLarge }
        var consumed = 0
        var outcome = Outcome.ok
        let held = pending
        held.withUnsafeBytes { (all: UnsafeRawBufferPointer) -> Void in
            let bytes = all.bindMemory(to: UInt8.self)
            while let nl = Self.index(of: 0x0A, in: bytes, from: consumed) {
                let line = UnsafeRawBufferPointer(rebasing: all[consumed..<nl])
                consumed = nl + 1
                if Self.frameLength(line) > maxFrame {
                    outcome = .frameTooLarge
                    return
                }
                if !Self.deliver(line, onLine) {
                    outcome = .paused
                    return
                }
            }
            if Self.frameLength(UnsafeRawBufferPointer(rebasing: all[consumed...])) > maxFrame {
                outcome = .frameTooLarge
            }
        }
        if outcome == .frameTooLarge {
            overflowed = true
            pending = []
            return outcome
        }
        if consumed > 0 { pending.removeFirst(consumed) }
        // A long line once held is not kept for the life of the connection.
        if pending.isEmpty && pending.capacity > 1 << 16 { pending = [] }
        return outcome
    }

    /// A line's size as the limit counts it: without its `\n` and without the `\r` before it, which
    /// `deliver` drops. For a partial line a final `\r` may be the start of `\r\n`, so it is not
    /// counted either; if more bytes follow it, they are checked again then.
    private static func frameLength(_ line: UnsafeRawBufferPointer) -> Int {
        let n = line.count
        return n > 0 && line[n - 1] == 0x0D ? n - 1 : n
    }

    private static func deliver(_ line: UnsafeRawBufferPointer, _ onLine: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        var n = line.count
        if n > 0, line[n - 1] == 0x0D { n -= 1 }
        var blank = true
        for k in 0..<n where line[k] != 0x20 && line[k] != 0x09 {
            blank = false
            break
        }
        if blank { return true }
        return onLine(UnsafeRawBufferPointer(rebasing: line[0..<n]))
    }

    private static func index(of byte: UInt8, in bytes: UnsafeBufferPointer<UInt8>, from: Int) -> Int? {
        guard from < bytes.count else { return nil }
        let base = UnsafeRawPointer(bytes.baseAddress!)
        guard let p = memchr(base + from, Int32(byte), bytes.count - from) else { return nil }
        return UnsafeRawPointer(p) - base
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
