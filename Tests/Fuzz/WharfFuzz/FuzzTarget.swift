import CFuzzDriver

/// The fuzz targets. Each one checks properties as well as surviving: a target traps
/// (`preconditionFailure`), and libFuzzer saves the input, when a property fails.
enum FuzzTarget: String, CaseIterable {
    /// `JSONParser`: anything it accepts, written back, parses to the same text again.
    case json
    /// `LineFramer`: any chunking and pausing delivers what a simple reference splitter does.
    case framer
    /// `RPCDecoder` and `Params`: every request or refusal encodes into a reply that parses.
    case rpc
    /// `CronSchedule.parse` and `nextFires`: fires strictly increase.
    case cron
    /// `IPAddress`, `CIDR` and the URL checks of the webhook SSRF guard.
    case url

    var callback: wharf_fuzz_callback {
        switch self {
        case .json: return { data, size in run(data, size, FuzzJSON.one) }
        case .framer: return { data, size in run(data, size, FuzzFramer.one) }
        case .rpc: return { data, size in run(data, size, FuzzRPC.one) }
        case .cron: return { data, size in run(data, size, FuzzCron.one) }
        case .url: return { data, size in run(data, size, FuzzURL.one) }
        }
    }
}

private func run(_ data: UnsafePointer<UInt8>?, _ size: Int, _ body: (UnsafeRawBufferPointer) -> Void) -> Int32 {
    // libFuzzer may pass a null pointer for the empty input.
    if let data {
        body(UnsafeRawBufferPointer(start: data, count: size))
    } else {
        [UInt8]().withUnsafeBytes(body)
    }
    return 0
}
