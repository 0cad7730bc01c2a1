import Testing

@testable import WharfJSON

/// Large objects: parsing, lookup and building stay O(1) per key (an index past a few keys), and the
/// indexed path answers exactly as the linear one.
@Suite struct JSONObjectTests {
    /// `{"k0":0,"k1":1,...}` with `n` keys.
    static func wideObject(_ n: Int) -> [UInt8] {
        var text: [UInt8] = [UInt8(ascii: "{")]
        text.reserveCapacity(n * 14)
        for k in 0..<n {
            if k > 0 { text.append(UInt8(ascii: ",")) }
            text += Array("\"k\(k)\":\(k)".utf8)
        }
        text.append(UInt8(ascii: "}"))
        return text
    }

    @Test func parsesAnObjectOf125000KeysThroughTheIndex() throws {
        let n = 125_000
        let text = Self.wideObject(n)
        #expect(text.count > 1_000_000)
        guard case .object(let o) = try JSONParser.parse(text) else {
            Issue.record("not an object")
            return
        }
        #expect(o.count == n)
        #expect(o.isIndexed)
        for k in stride(from: 0, to: n, by: 997) { #expect(o["k\(k)"] == .int(Int64(k))) }
        #expect(o["k\(n)"] == nil)
        #expect(o.keys.first == "k0" && o.keys.last == "k\(n - 1)")
        // Encoding walks the pairs once and gives the same text back.
        #expect(JSON.object(o).encoded == text)
    }

    @Test func smallObjectsKeepNoIndex() throws {
        let small = try JSONParser.parse(#"{"jsonrpc":"2.0","id":1,"method":"server.ping","params":{"a":1}}"#)
        #expect(small.objectValue?.isIndexed == false)
        #expect(small.objectValue?.count == 4)
        let atThreshold = JSONObject((0..<JSONObject.indexThreshold).map { (key: "k\($0)", value: JSON.int(1)) })
        #expect(!atThreshold.isIndexed)
        var past = atThreshold
        past["one more"] = 2
        #expect(past.isIndexed)
        past["one more"] = nil
        #expect(!past.isIndexed)
        #expect(past == atThreshold)
    }

    @Test func anObjectBuiltFromDistinctKeysAnswersLikeOneBuiltKeyByKey() {
        let pairs = (0..<24).map { (key: "k\($0)", value: JSON.int(Int64($0))) }
        var built = JSONObject(distinctKeys: pairs)
        let keyed = JSONObject(pairs)
        #expect(!built.isIndexed && keyed.isIndexed)
        #expect(built == keyed && built.keys == keyed.keys)
        #expect(built["k17"] == 17 && built["k24"] == nil)
        #expect(JSON.object(built).encoded == JSON.object(keyed).encoded)
        // Changing it works as for any object: a set key keeps its place, a new one goes last.
        built["k3"] = "three"
        built["new"] = true
        #expect(built.count == 25 && built.keys[3] == "k3" && built["k3"] == "three")
        #expect(built.keys.last == "new" && built["new"] == true && built.isIndexed)
    }

    @Test func duplicateKeysInALargeObjectKeepTheFirstPlaceAndTheLastValue() throws {
        var text = Array(Self.wideObject(100).dropLast())
        text += Array(#","k5":"again","k99":null,"new":true,"k5":"last"}"#.utf8)
        let o = try #require(try JSONParser.parse(text).objectValue)
        #expect(o.count == 101)
        #expect(o["k5"] == "last")
        #expect(o["k99"] == .null)
        #expect(o.keys[5] == "k5")
        #expect(o.keys.last == "new")
    }

    @Test func indexedAndLinearLookupsAgree() {
        var big = JSONObject()
        var small = JSONObject()
        for k in 0..<40 {
            big["k\(k)"] = .int(Int64(k))
            if k < 10 { small["k\(k)"] = .int(Int64(k)) }
        }
        // Replacing, removing from the middle and re-adding keep positions and the index in step.
        big["k3"] = "three"
        big["k20"] = nil
        big["k0"] = nil
        big["k20"] = 20
        #expect(big.count == 39)
        #expect(big.keys.first == "k1")
        #expect(big.keys.last == "k20")
        for (n, p) in big.pairs.enumerated() {
            #expect(big[p.key] == p.value, "key \(p.key) at \(n)")
        }
        #expect(big["k3"] == "three")
        #expect(big["k0"] == nil)
        for k in 0..<10 { #expect(small["k\(k)"] == .int(Int64(k))) }
        // Equality ignores order, either way round.
        var reversed = JSONObject()
        for p in big.pairs.reversed() { reversed[p.key] = p.value }
        #expect(reversed == big)
        reversed["k1"] = 0
        #expect(reversed != big)
    }

    @Test func initializerKeepsTheLastValueOfARepeatedKey() {
        let pairs = (0..<30).map { (key: "k\($0 % 20)", value: JSON.int(Int64($0))) }
        let o = JSONObject(pairs)
        #expect(o.count == 20)
        #expect(o["k3"] == 23)
        #expect(o["k19"] == 19)
        #expect(o.keys == (0..<20).map { "k\($0)" })
    }
}
