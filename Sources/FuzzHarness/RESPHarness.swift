import RelayCore

/// The cluster relay's RESP parser (hand-written: no Swift Redis client is available here) fed
/// arbitrary bytes from Redis's side of the connection, and every message it carries through the
/// pub/sub parser (`ClusterWire`). Besides "no crash, reads stay in bounds" (ASan), it checks
/// what the relay's Redis connection relies on:
///
/// - a value's length is within the input, and bytes after it change nothing;
/// - the verdict does not depend on how the bytes arrive: every prefix of a value is `incomplete`,
///   every prefix of an invalid input `incomplete` or the same refusal;
/// - a value re-encoded parses to the same value (for values the encoder can write: no CR or LF in
///   a simple line);
/// - the subscriber's fast path (`pubSubMessage`) reads exactly the `smessage`s `parse` reads:
///   when it answers, `parse` reads the same array or push of the same three bulk strings with the
///   same length; when `parse` reads an array or push of three bulk strings led by `smessage`
///   (not under an attribute), the fast path answers too;
/// - every bulk string inside parses as a cluster message or is refused, without a trap;
/// - every value read as a `CLUSTER SLOTS` reply gives a map that routes every slot to one of its
///   masters, or a typed refusal; every error read as a redirection (`-MOVED`, `-ASK`) gives a
///   slot in range and a valid port, or nil.
public func fuzzRESP(_ data: UnsafeRawBufferPointer) {
    let bytes = Array(data)
    let parser = RESPParser(bulkMaxBytes: 4096, elementsMax: 256, depthMax: 8, lineMaxBytes: 256)
    let verdict = parser.parse(bytes)
    switch verdict {
    case .incomplete:
        break
    case let .value(value, length):
        require(length > 0 && length <= bytes.count, "length \(length) of \(bytes.count)")
        require(parser.parse(Array(bytes.prefix(length)) + [43, 120, 13, 10]) == .value(value, length: length),
                "trailing bytes changed the value")
        for cut in stride(from: 0, to: length, by: max(1, length / 64)) {
            require(parser.parse(Array(bytes.prefix(cut))) == .incomplete, "prefix of \(cut) is not incomplete")
        }
        if encodable(value) {
            let encoded = RESPEncoding.encode(value)
            require(parser.parse(encoded) == .value(value, length: encoded.count), "re-encoded \(value)")
        }
        visitBulks(value) { bulk in _ = ClusterWire.parse(bulk) }
        checkRouting(value)
    case .invalid:
        for cut in stride(from: 1, to: bytes.count, by: max(1, bytes.count / 64)) {
            let earlier = parser.parse(Array(bytes.prefix(cut)))
            require(earlier == .incomplete || earlier == verdict, "prefix of \(cut): \(earlier), whole: \(verdict)")
        }
    }
    checkPubSubMessage(bytes, parser: parser, verdict: verdict)
    _ = ClusterWire.parse(bytes)
}

/// `RESPParser.pubSubMessage` against `parse`'s `verdict` on the same bytes (see `fuzzRESP`).
func checkPubSubMessage(_ bytes: [UInt8], parser: RESPParser, verdict: RESPParse) {
    let kind = RESPValue.bulkString(Array("smessage".utf8))
    guard let fast = bytes.withUnsafeBytes({ parser.pubSubMessage($0) }) else {
        // (An attribute, `|`, may annotate a message: parse returns the message; that form is
        // the general path's.)
        guard bytes.first != UInt8(ascii: "|") else { return }
        if case let .value(.array(fields), _) = verdict, isMessage(fields) {
            require(false, "parse read an smessage array the fast path did not: \(fields)")
        }
        if case let .value(.push(fields), _) = verdict, isMessage(fields) {
            require(false, "parse read an smessage push the fast path did not: \(fields)")
        }
        return
    }
    require(
        fast.channel.lowerBound >= 0 && fast.channel.upperBound <= fast.payload.lowerBound
            && fast.payload.upperBound <= fast.length && fast.length <= bytes.count,
        "fast path ranges \(fast) of \(bytes.count)")
    let fields = [kind, .bulkString(Array(bytes[fast.channel])), .bulkString(Array(bytes[fast.payload]))]
    require(
        verdict == .value(.array(fields), length: fast.length) || verdict == .value(.push(fields), length: fast.length),
        "fast path \(fast), parse \(verdict)")
}

/// Three bulk strings, the first `smessage`: a sharded pub/sub message.
private func isMessage(_ fields: [RESPValue]) -> Bool {
    guard fields.count == 3, fields[0] == .bulkString(Array("smessage".utf8)) else { return false }
    return fields.allSatisfy { if case .bulkString = $0 { true } else { false } }
}

/// The Redis Cluster shapes the relay reads: a slot map and redirections.
func checkRouting(_ value: RESPValue) {
    let asked = RedisServerAddress(host: "127.0.0.1", port: 7000)
    if let map = try? RedisSlotMap(clusterSlots: value, asked: asked) {
        require(!map.masters.isEmpty, "a map without masters")
        for slot in stride(from: 0, to: RedisSlots.count, by: 97) + [RedisSlots.count - 1] {
            require(map.masters.contains(map.master(forSlot: slot)), "slot \(slot) routed outside the masters")
        }
    }
    func redirects(_ value: RESPValue) {
        switch value {
        case let .error(text):
            switch RedisRedirect.parse(text, asked: asked) {
            case let .moved(slot, to)?, let .ask(slot, to)?:
                require((0..<RedisSlots.count).contains(slot) && (1...65_535).contains(to.port), "redirect \(value)")
            case nil: break
            }
        case let .array(values), let .map(values), let .set(values), let .push(values):
            values.forEach(redirects)
        default: break
        }
    }
    redirects(value)
}

/// Whether `RESPEncoding.encode` writes `value` so that it parses back the same: line types
/// without CR or LF (a blob error with one has no line form), a verbatim format without them.
func encodable(_ value: RESPValue) -> Bool {
    func clean(_ line: [UInt8]) -> Bool { !line.contains(13) && !line.contains(10) }
    switch value {
    case let .simpleString(line), let .error(line), let .double(line), let .bigNumber(line): return clean(line)
    case .integer, .bulkString, .null, .boolean: return true
    case let .verbatim(format, _): return format.count == 3
    case let .array(values), let .map(values), let .set(values), let .push(values): return values.allSatisfy(encodable)
    }
}

private func visitBulks(_ value: RESPValue, _ body: ([UInt8]) -> Void) {
    switch value {
    case let .bulkString(bytes): body(bytes)
    case let .array(values), let .map(values), let .set(values), let .push(values):
        for element in values { visitBulks(element, body) }
    default: break
    }
}
