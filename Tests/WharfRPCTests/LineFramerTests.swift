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
