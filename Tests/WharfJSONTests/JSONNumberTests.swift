import Testing

@testable import WharfJSON

/// Numbers either come back with the value they were sent with, or parse as `JSON.inexactNumber`
/// (which the server refuses, naming the field).
@Suite struct JSONNumberTests {
    @Test(arguments: [
        "99999999999999999999999999", "-99999999999999999999999999", "9223372036854775808", "-9223372036854775809",
        "18446744073709551616", "1e400", "-1e400", "1.8e308", "1e-400", "-2.5e-330", "1e99999999999999999999999",
        "0.10000000000000000001", "3.141592653589793238462643383279", "12345678901234567891.5",
        "1" + String(repeating: "0", count: 400), "9223372036854775808e0", "9.2233720368547758e18",
    ])
    func refusesNumbersThatWouldChange(text: String) throws {
        #expect(try JSONParser.parse(text).isInexactNumber)
        // Wherever it sits, it is found and named.
        let params = try JSONParser.parse(#"{"queue":"q","payload":{"list":[1,{"n":\#(text)}]}}"#)
        #expect(params.pathOfInexactNumber() == "payload.list[1].n")
    }

    @Test(arguments: [
        "0.1", "-0.0", "0e-400", "0.000e99999999999", "1e26", "1E+26", "1.5e300", "1.7976931348623157e308",
        "5e-324", "2.2250738585072014e-308", "123.456", "100.000", "0.30000000000000004", "9223372036854775807",
        "-9223372036854775808", "9.223372036854776e18", "1e15", "1234567890123456e2", "0.00001",
    ])
    func keepsNumbersThatSurvive(text: String) throws {
        let value = try JSONParser.parse(text)
        #expect(!value.isInexactNumber)
        // Written back and read again, the value is the same, and so is its decimal value.
        let back = try JSONParser.parse(value.encoded)
        #expect(back.doubleValue == value.doubleValue)
        let sent = Array(text.utf8)
        #expect(JSONParser.DecimalValue(sent) == JSONParser.DecimalValue(value.encoded))
    }

    @Test func decimalValueIgnoresSpelling() {
        func d(_ s: String) -> JSONParser.DecimalValue { JSONParser.DecimalValue(Array(s.utf8)) }
        #expect(d("1.50") == d("15e-1"))
        #expect(d("1500") == d("1.5e+3"))
        #expect(d("0.015") == d("1.5E-2"))
        #expect(d("-0") == d("0.0"))
        #expect(d("1") != d("-1"))
        #expect(d("1") != d("10"))
        #expect(d("0.1") != d("0.10000000000000001"))
    }

    @Test func inexactNumbersAreWrittenAsNullAndFoundNowhereElse() throws {
        #expect(JSON.inexactNumber.text == "null")
        let ordinary = try JSONParser.parse(#"{"a":[1,2.5,-3e10,null,"1e400"],"b":{"c":0.1}}"#)
        #expect(ordinary.pathOfInexactNumber() == nil)
        #expect(try JSONParser.parse("[1,1e400]").pathOfInexactNumber() == "[1]")
    }

    @Test func pathOfNULStillNamesKeysAndValues() throws {
        #expect(try JSONParser.parse(#"{"a":{"b\u0000":1}}"#).pathOfNUL() == "a.b\u{0}")
        #expect(try JSONParser.parse(#"{"a":[0,"x\u0000"]}"#).pathOfNUL() == "a[1]")
        #expect(try JSONParser.parse(#"{"a":[0,"x"]}"#).pathOfNUL() == nil)
        #expect(JSON.string("\u{0}").pathOfNUL("params") == "params")
    }
}
