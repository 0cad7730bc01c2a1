extension ZoneRules {
    /// Builds zone rules from the bytes of a TZif file (RFC 8536, versions 1 to 4).
    ///
    /// Version 2+ files are read from their 64-bit section and POSIX TZ footer; version 1 files from
    /// their 32-bit section alone. Transitions that do not change the UTC offset (only the name or
    /// the DST flag) are dropped. Leap-second records are ignored.
    ///
    /// - Throws: ``CronError`` (field `timezone`) when the bytes are not a well-formed TZif file.
    public init(identifier: String, tzif bytes: [UInt8]) throws {
        func invalid(_ why: String) -> CronError {
            CronError("Time zone '\(identifier)': invalid TZif data (\(why))", field: "timezone")
        }
        var reader = ByteReader(bytes: bytes)
        guard var header = reader.header() else { throw invalid("bad header") }
        var timeSize = 4
        if header.version >= 2 {
            guard reader.skip(header.dataLength(timeSize: 4)), let second = reader.header() else {
                throw invalid("truncated version 1 section")
            }
            header = second
            timeSize = 8
        }
        guard header.typeCount > 0, header.charCount > 0 else { throw invalid("no local time types") }

        var times: [Int64] = []
        times.reserveCapacity(header.timeCount)
        for _ in 0..<header.timeCount {
            guard let t = timeSize == 8 ? reader.int64() : reader.int32().map(Int64.init) else {
                throw invalid("truncated transition times")
            }
            times.append(t)
        }
        var typeIndices: [Int] = []
        for _ in 0..<header.timeCount {
            guard let i = reader.uint8(), Int(i) < header.typeCount else { throw invalid("bad transition type") }
            typeIndices.append(Int(i))
        }
        var typeOffsets: [Int32] = []
        for _ in 0..<header.typeCount {
            guard let offset = reader.int32(), reader.skip(2), offset > -89_999, offset < 93_600 else {
                throw invalid("bad local time type")
            }
            typeOffsets.append(offset)
        }
        guard reader.skip(header.charCount + header.leapCount * (timeSize + 4) + header.isStdCount + header.isUTCount)
        else { throw invalid("truncated data") }

        var footer: POSIXTimeZoneRule?
        if header.version >= 2 {
            guard reader.uint8() == UInt8(ascii: "\n") else { throw invalid("missing footer") }
            let text = reader.bytes(until: UInt8(ascii: "\n"))
            if !text.isEmpty {
                guard let rule = POSIXTimeZoneRule(String(decoding: text, as: UTF8.self)) else {
                    throw invalid("unsupported TZ string footer")
                }
                footer = rule
            }
        }

        var transitions: [Int64] = []
        var offsets: [Int32] = []
        let initial = typeOffsets[0]
        for (t, typeIndex) in zip(times, typeIndices) {
            if let last = transitions.last, t <= last { throw invalid("transition times out of order") }
            let offset = typeOffsets[typeIndex]
            if offset == (offsets.last ?? initial) { continue }
            transitions.append(t)
            offsets.append(offset)
        }
        self.init(
            identifier: identifier, transitions: transitions, offsets: offsets, initialOffset: Int(initial),
            footer: footer)
    }
}

/// The counts from a TZif header.
private struct TZifHeader {
    var version: Int
    var isUTCount: Int
    var isStdCount: Int
    var leapCount: Int
    var timeCount: Int
    var typeCount: Int
    var charCount: Int

    /// The length of the data block that follows the header.
    func dataLength(timeSize: Int) -> Int {
        timeCount * (timeSize + 1) + typeCount * 6 + charCount + leapCount * (timeSize + 4) + isStdCount + isUTCount
    }
}

/// A big-endian reader over TZif bytes.
private struct ByteReader {
    let bytes: [UInt8]
    var position = 0

    mutating func skip(_ n: Int) -> Bool {
        guard n >= 0, position + n <= bytes.count else { return false }
        position += n
        return true
    }

    mutating func uint8() -> UInt8? {
        guard position < bytes.count else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func uint32() -> UInt32? {
        guard position + 4 <= bytes.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 { v = v << 8 | UInt32(bytes[position + k]) }
        position += 4
        return v
    }

    mutating func int32() -> Int32? { uint32().map { Int32(bitPattern: $0) } }

    mutating func int64() -> Int64? {
        guard let high = uint32(), let low = uint32() else { return nil }
        return Int64(bitPattern: UInt64(high) << 32 | UInt64(low))
    }

    mutating func bytes(until terminator: UInt8) -> [UInt8] {
        var out: [UInt8] = []
        while let b = uint8(), b != terminator { out.append(b) }
        return out
    }

    /// Reads a header; nil when the magic or counts are wrong.
    mutating func header() -> TZifHeader? {
        guard position + 44 <= bytes.count, Array(bytes[position..<position + 4]) == Array("TZif".utf8) else {
            return nil
        }
        let versionByte = bytes[position + 4]
        let version = versionByte == 0 ? 1 : Int(versionByte) - 48
        guard (1...9).contains(version) else { return nil }
        position += 20
        var counts: [Int] = []
        for _ in 0..<6 {
            guard let c = uint32(), c < 1 << 20 else { return nil }
            counts.append(Int(c))
        }
        return TZifHeader(
            version: version, isUTCount: counts[0], isStdCount: counts[1], leapCount: counts[2],
            timeCount: counts[3], typeCount: counts[4], charCount: counts[5])
    }
}
