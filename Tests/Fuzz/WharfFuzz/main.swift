import CFuzzDriver

#if canImport(Glibc)
    import Glibc
#endif

// Usage: WharfFuzz TARGET [libFuzzer flags and corpus directories...]
let arguments = CommandLine.arguments
guard arguments.count >= 2, let target = FuzzTarget(rawValue: arguments[1]) else {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
    print("usage: WharfFuzz \(names) [libFuzzer options] [corpus dirs]")
    exit(2)
}
// libFuzzer sees the program name and everything after the target's name.
var cArguments: [UnsafeMutablePointer<CChar>?] = ([arguments[0]] + arguments.dropFirst(2)).map { strdup($0) } + [nil]
var count = Int32(cArguments.count - 1)
let status = cArguments.withUnsafeMutableBufferPointer { buffer -> Int32 in
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
    return wharf_fuzz_run(&count, &argv, target.callback)
}
if status == -1 {
    print("WharfFuzz was built without -sanitize=fuzzer: build it with scripts/fuzz.sh")
    exit(2)
}
exit(status)
