import Testing

@testable import WharfRPC

@Suite struct LineFramerTests {
    func lines(_ chunks: [String], max: Int = 1 << 20) -> ([String], LineFramer.Outcome) {
        var framer = LineFramer(maxFrame: max)
        var out: [String] = []
        var last = LineFramer.Outcome.ok
        for c in chunks {
            last = Array(c.utf8).withUnsafeBytes { b in
                framer.feed(b) { line in
                    out.append(String(decoding: line, as: UTF8.self))
                    return true
                }
            }
        }
        return (out, last)
    }

    @Test func splitsAcrossChunks() {
        #expect(lines(["ab", "c\nde", "f\n\ng\r\n", "h"]).0 == ["abc", "def", "g"])
        #expect(lines(["  \n\t\n", "x\n"]).0 == ["x"])
    }

    @Test func reportsFramesTooLarge() {
        #expect(lines([String(repeating: "a", count: 20)], max: 10).1 == .frameTooLarge)
        #expect(lines([String(repeating: "a", count: 20) + "\n"], max: 10).1 == .frameTooLarge)
        #expect(lines(["aaaaa", "aaaaa", "a"], max: 10).1 == .frameTooLarge)
        #expect(lines(["aaaaaaaaaa\n"], max: 10).0 == ["aaaaaaaaaa"])
    }

    @Test func pausesAndDrains() {
        var framer = LineFramer(maxFrame: 100)
        var got: [String] = []
        let outcome = Array("a\nb\nc\n".utf8).withUnsafeBytes { b in
            framer.feed(b) { line in
                got.append(String(decoding: line, as: UTF8.self))
                return got.count < 1
            }
        }
        #expect(outcome == .paused)
        #expect(got == ["a"])
        #expect(framer.bufferedCount == 4)
        let rest = framer.drain { line in
            got.append(String(decoding: line, as: UTF8.self))
            return true
        }
        #expect(rest == .ok)
        #expect(got == ["a", "b", "c"])
        #expect(framer.bufferedCount == 0)
    }

    @Test func crlfSplitAcrossChunksAndBlankLines() {
        #expect(lines(["a\r", "\nb\r\n"]).0 == ["a", "b"])
        #expect(lines(["\r\n\r\n", " \r\n", "c\n"]).0 == ["c"])
        #expect(lines(["x\r\r\n"]).0 == ["x\r"])
    }

    @Test func oneByteAtATime() {
        let text = #"{"a":1}"# + "\n" + #"[2]"# + "\r\n"
        #expect(lines(text.map { String($0) }).0 == [#"{"a":1}"#, "[2]"])
    }

    @Test func partialTailUpToTheLimitIsKept() {
        let (got, outcome) = lines([String(repeating: "a", count: 10), "\n"], max: 10)
        #expect(got == [String(repeating: "a", count: 10)])
        #expect(outcome == .ok)
    }

    @Test func overflowIsFinal() {
        var framer = LineFramer(maxFrame: 4)
        let first = Array("toolong\n".utf8).withUnsafeBytes { b in framer.feed(b) { _ in true } }
        #expect(first == .frameTooLarge)
        #expect(framer.overflowed)
        var delivered = 0
        let next = Array("ok\n".utf8).withUnsafeBytes { b in
            framer.feed(b) { _ in
                delivered += 1
                return true
            }
        }
        #expect(next == .frameTooLarge)
        #expect(delivered == 0)
    }

    @Test func feedWhilePausedKeepsOrder() {
        var framer = LineFramer(maxFrame: 100)
        var got: [String] = []
        var accept = false
        func feed(_ s: String) -> LineFramer.Outcome {
            Array(s.utf8).withUnsafeBytes { b in
                framer.feed(b) { line in
                    got.append(String(decoding: line, as: UTF8.self))
                    return accept
                }
            }
        }
        #expect(feed("a\nb\n") == .paused)
        #expect(got == ["a"])
        accept = true
        #expect(feed("c\nd") == .ok)
        #expect(got == ["a", "b", "c"])
        #expect(framer.bufferedCount == 1)
        #expect(feed("\n") == .ok)
        #expect(got == ["a", "b", "c", "d"])
    }

    @Test func pausingOnTheLastLineLeavesNothingBuffered() {
        var framer = LineFramer(maxFrame: 100)
        let outcome = Array("only\n".utf8).withUnsafeBytes { b in framer.feed(b) { _ in false } }
        #expect(outcome == .paused)
        #expect(framer.bufferedCount == 0)
        #expect(framer.drain { _ in true } == .ok)
    }

    @Test func tooLargeLineFoundWhileDraining() {
        var framer = LineFramer(maxFrame: 5)
        var got: [String] = []
        let outcome = Array("a\nbbbbbbbbbb\n".utf8).withUnsafeBytes { b in
            framer.feed(b) { line in
                got.append(String(decoding: line, as: UTF8.self))
                return false
            }
        }
        #expect(outcome == .paused)
        #expect(framer.drain { _ in true } == .frameTooLarge)
        #expect(got == ["a"])
    }
}

/// The limit counts a frame's bytes without its `\n` and without a `\r` before it (Protocol/README.md).
@Suite struct LineFramerLimitTests {
    func run(_ chunks: [[UInt8]], max: Int) -> ([Int], LineFramer.Outcome) {
        var framer = LineFramer(maxFrame: max)
        var sizes: [Int] = []
        var last = LineFramer.Outcome.ok
        for c in chunks where last != .frameTooLarge {
            last = c.withUnsafeBytes { b in
                framer.feed(b) { line in
                    sizes.append(line.count)
                    return true
                }
            }
        }
        return (sizes, last)
    }

    @Test(arguments: [-1, 0, 1])
    func atTheBoundary(delta: Int) {
        let max = 64
        let body = [UInt8](repeating: UInt8(ascii: "a"), count: max + delta)
        for ending: [UInt8] in [[0x0A], [0x0D, 0x0A]] {
            let whole = body + ending
            // In one chunk, byte by byte, and split just before and after the `\r`.
            let splits: [[[UInt8]]] = [
                [whole], whole.map { [$0] }, [body, ending], [body + ending.dropLast(), [0x0A]],
            ]
            for chunks in splits {
                let (sizes, outcome) = run(chunks, max: max)
                if delta <= 0 {
                    #expect(outcome == .ok, "\(body.count) bytes + \(ending)")
                    #expect(sizes == [body.count])
                } else {
                    #expect(outcome == .frameTooLarge, "\(body.count) bytes + \(ending)")
                    #expect(sizes.isEmpty)
                }
            }
        }
    }

    @Test func aSecondCarriageReturnCounts() {
        let body = [UInt8](repeating: UInt8(ascii: "a"), count: 64)
        #expect(run([body + [0x0D, 0x0D, 0x0A]], max: 64).1 == .frameTooLarge)
        #expect(run([body + [0x0D, 0x0D]], max: 64).1 == .frameTooLarge)
        #expect(run([body + [0x0D], [UInt8(ascii: "b")]], max: 64).1 == .frameTooLarge)
        #expect(run([body + [0x0D]], max: 64).1 == .ok)
    }

    @Test func theBoundaryHoldsWhileDraining() {
        var framer = LineFramer(maxFrame: 8)
        var got: [String] = []
        let text = Array("x\naaaaaaaa\r\nbbbbbbbb\ncccccccccc\r\n".utf8)
        let first = text.withUnsafeBytes { b in
            framer.feed(b) { line in
                got.append(String(decoding: line, as: UTF8.self))
                return false
            }
        }
        #expect(first == .paused)
        var outcome = LineFramer.Outcome.paused
        while outcome == .paused {
            outcome = framer.drain { line in
                got.append(String(decoding: line, as: UTF8.self))
                return got.count < 3
            }
            if got.count >= 3 { outcome = framer.drain { _ in true } }
        }
        #expect(got == ["x", "aaaaaaaa", "bbbbbbbb"])
        #expect(outcome == .frameTooLarge)
    }
}
