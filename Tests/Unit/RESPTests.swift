import RelayCore
import Testing

/// The hand-written RESP2/RESP3 parser (the cluster relay's Redis client; fuzzed as FuzzRESP).
@Suite("RESP codec")
struct RESPTests {
    static let parser = RESPParser()

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test("Every RESP2 and RESP3 type parses, with its length; the encoder writes what the parser reads")
    func types() {
        let cases: [(String, RESPValue)] = [
            ("+OK\r\n", .simpleString(Self.bytes("OK"))),
            ("-ERR no\r\n", .error(Self.bytes("ERR no"))),
            (":-42\r\n", .integer(-42)),
            ("$5\r\nhel\r\n\r\n", .bulkString(Self.bytes("hel\r\n"))),
            ("$-1\r\n", .null), ("*-1\r\n", .null), ("_\r\n", .null),
            ("*2\r\n$1\r\na\r\n:1\r\n", .array([.bulkString(Self.bytes("a")), .integer(1)])),
            (",3.5\r\n", .double(Self.bytes("3.5"))), ("#t\r\n", .boolean(true)),
            ("(123456789012345678901234567890\r\n", .bigNumber(Self.bytes("123456789012345678901234567890"))),
            ("=7\r\ntxt:abc\r\n", .verbatim(format: Self.bytes("txt"), text: Self.bytes("abc"))),
            ("!3\r\nbad\r\n", .error(Self.bytes("bad"))),
            ("%1\r\n+k\r\n:1\r\n", .map([.simpleString(Self.bytes("k")), .integer(1)])),
            ("~1\r\n:1\r\n", .set([.integer(1)])),
            (">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n",
             .push([.bulkString(Self.bytes("message")), .bulkString(Self.bytes("c")), .bulkString(Self.bytes("p"))])),
            ("|1\r\n+a\r\n+b\r\n:7\r\n", .integer(7)),
        ]
        for (text, value) in cases {
            let bytes = Self.bytes(text)
            #expect(Self.parser.parse(bytes) == .value(value, length: bytes.count), "\(text.debugDescription)")
            #expect(Self.parser.parse(bytes + Self.bytes("+next\r\n")) == .value(value, length: bytes.count))
            if case .value = Self.parser.parse(RESPEncoding.encode(value)) {} else {
                Issue.record("re-encoded \(value) does not parse")
            }
            for cut in 0..<bytes.count {
                #expect(Self.parser.parse(Array(bytes.prefix(cut))) == .incomplete, "\(text.debugDescription) cut at \(cut)")
            }
        }
        let command = RESPEncoding.command([Self.bytes("SET"), Self.bytes("k"), []])
        #expect(command == Self.bytes("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"))
    }

    @Test("Bad input is a typed failure, never a trap: unknown types, bad lengths, bad integers, bare LF, over the bounds")
    func invalid() {
        let bounded = RESPParser(bulkMaxBytes: 8, elementsMax: 4, depthMax: 2, lineMaxBytes: 24)
        let cases: [(String, RESPParser.Failure)] = [
            ("?\r\n", .unknownType(UInt8(ascii: "?"))), ("$-2\r\n", .badLength), (":12a\r\n", .badInteger),
            (":99999999999999999999\r\n", .badInteger), (":\r\n", .badInteger), ("+a\nb\r\n", .badLineEnding),
            ("$1\r\nab\r\n", .badLineEnding), ("$9\r\n", .tooLarge), ("*5\r\n", .tooLarge),
            ("*1\r\n*1\r\n*1\r\n:1\r\n", .tooDeep), ("+aaaaaaaaaaaaaaaaaaaaaaaaaaaa", .tooLarge), ("#x\r\n", .badBoolean),
            ("=2\r\nab\r\n", .badLength), ("_x\r\n", .badLength),
        ]
        for (text, failure) in cases {
            #expect(bounded.parse(Self.bytes(text)) == .invalid(failure), "\(text.debugDescription)")
        }
    }
}
