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

    static func smessage(_ channel: String, _ payload: [UInt8], push: Bool = false) -> [UInt8] {
        let head = "\(push ? ">" : "*")3\r\n$8\r\nsmessage\r\n$\(channel.utf8.count)\r\n\(channel)\r\n"
        return bytes(head + "$\(payload.count)\r\n") + payload + [13, 10]
    }

    static func fast(_ parser: RESPParser, _ bytes: [UInt8]) -> RESPPubSubMessage? {
        bytes.withUnsafeBytes { parser.pubSubMessage($0) }
    }

    @Test("The subscriber's fast path finds an smessage (array or push) where parse does, with a binary payload")
    func pubSubMessage() {
        let payload: [UInt8] = Self.bytes("S 4 1 a.00000000\n") + [0, 13, 10, 255, 36, 42]
        for push in [false, true] {
            let message = Self.smessage("sc:ch:b.1", payload, push: push)
            let tail = Self.bytes(":1\r\n")
            let found = Self.fast(Self.parser, message + tail)
            #expect(found?.length == message.count)
            #expect(found.map { Array(message[$0.channel]) } == Self.bytes("sc:ch:b.1"))
            #expect(found.map { Array(message[$0.payload]) } == payload)
            let fields: [RESPValue] = [
                .bulkString(Self.bytes("smessage")), .bulkString(Self.bytes("sc:ch:b.1")), .bulkString(payload),
            ]
            #expect(Self.parser.parse(message) == .value(push ? .push(fields) : .array(fields), length: message.count))
            for cut in 0..<message.count {
                #expect(Self.fast(Self.parser, Array(message.prefix(cut))) == nil, "cut at \(cut)")
                #expect(Self.parser.parse(Array(message.prefix(cut))) == .incomplete, "cut at \(cut)")
            }
        }
        let empty = Self.smessage("c", [])
        #expect(Self.fast(Self.parser, empty)?.payload.isEmpty == true)
    }

    @Test("Anything but a complete, valid smessage is left to parse: other kinds and shapes, bad or over-bound bulks")
    func pubSubMessageRefusals() {
        let bounded = RESPParser(bulkMaxBytes: 8, elementsMax: 4, depthMax: 2, lineMaxBytes: 24)
        let cases: [(String, RESPParse)] = [
            ("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n", .value(.array([
                .bulkString(Self.bytes("message")), .bulkString(Self.bytes("c")), .bulkString(Self.bytes("p")),
            ]), length: -1)),
            ("*2\r\n$8\r\nsmessage\r\n$1\r\nc\r\n", .value(.array([
                .bulkString(Self.bytes("smessage")), .bulkString(Self.bytes("c")),
            ]), length: -1)),
            ("*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$-1\r\n", .value(.array([
                .bulkString(Self.bytes("smessage")), .bulkString(Self.bytes("c")), .null,
            ]), length: -1)),
            ("*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$9\r\n123456789\r\n", .invalid(.tooLarge)),
            ("*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$2\r\nabc\r\n", .invalid(.badLineEnding)),
            ("*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$-2\r\n", .invalid(.badLength)),
            ("*3\r\n$8\r\nsmessage\r\n$x\r\n", .invalid(.badInteger)),
            ("*3\n$8\r\nsmessage\r\n", .invalid(.badLineEnding)),
            ("*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n+p\r\n", .value(.array([
                .bulkString(Self.bytes("smessage")), .bulkString(Self.bytes("c")), .simpleString(Self.bytes("p")),
            ]), length: -1)),
            ("~3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$1\r\np\r\n", .value(.set([
                .bulkString(Self.bytes("smessage")), .bulkString(Self.bytes("c")), .bulkString(Self.bytes("p")),
            ]), length: -1)),
            ("*99999999999999999999\r\n", .invalid(.badInteger)),
        ]
        for (text, verdict) in cases {
            let bytes = Self.bytes(text)
            var expected = verdict
            // Every value case is the whole text (length -1 above).
            if case let .value(value, _) = verdict { expected = .value(value, length: bytes.count) }
            #expect(Self.fast(bounded, bytes) == nil, "\(text.debugDescription)")
            #expect(bounded.parse(bytes) == expected, "\(text.debugDescription)")
        }
        // Bounds the general parser enforces, the fast path enforces too.
        let message = Self.smessage("c", Self.bytes("p"))
        for parser in [RESPParser(depthMax: 0), RESPParser(elementsMax: 2), RESPParser(bulkMaxBytes: 0)] {
            #expect(Self.fast(parser, message) == nil)
            #expect(parser.parse(message) == .invalid(.tooDeep) || parser.parse(message) == .invalid(.tooLarge))
        }
    }
}
