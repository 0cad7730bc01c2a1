import Testing
import WharfHooks

/// What receivers send is made storable: no NUL, valid UTF-8.
@Suite struct ReceiverTextTests {
    @Test func nulBytesAndInvalidUTF8BecomeReplacementCharacters() {
        #expect(ReceiverText.sanitized(Array("err\0or".utf8)) == "err\u{FFFD}or")
        #expect(ReceiverText.sanitized([0x6F, 0x6B, 0x00]) == "ok\u{FFFD}")
        #expect(ReceiverText.sanitized([0x63, 0x61, 0x66, 0xC3, 0x20, 0xFF, 0xFE, 0x00]) == "caf\u{FFFD} \u{FFFD}\u{FFFD}\u{FFFD}")
        #expect(ReceiverText.sanitized("a\0b\0") == "a\u{FFFD}b\u{FFFD}")
    }

    @Test func cleanTextIsKeptAsItIs() {
        let text = "ünï 😀 {\"ok\": true}"
        #expect(ReceiverText.sanitized(Array(text.utf8)) == text)
        #expect(ReceiverText.sanitized([]) == "")
    }
}
