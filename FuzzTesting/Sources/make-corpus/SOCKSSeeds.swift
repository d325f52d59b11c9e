// Seeds for FuzzSOCKSReply: byte 0 is the harness's configuration (bit 0: offer username/password
// only; bits 1-3: how the proxy's bytes are cut into reads, 1 2 3 5 10 64 263 or all at once), then
// what the proxy sends. Honest exchanges of each kind, every refusal, and malformed answers.

/// Offer "none or username/password" (0) or username/password only (1), read `chunk` (0...7).
func socksConfig(passwordOnly: Bool, chunk: UInt8) -> UInt8 { (chunk << 1) | (passwordOnly ? 1 : 0) }

let socksReplyIPv4: [UInt8] = [5, 0, 0, 1, 127, 0, 0, 1, 0x1F, 0x90]
let socksAfterReply = Array("HTTP/1.1 101 Switching Protocols\r\n".utf8)

let socksSeeds: [(String, [UInt8])] = [
    ("none-ipv4-reply-then-data",
     [socksConfig(passwordOnly: false, chunk: 7), 5, 0] + socksReplyIPv4 + socksAfterReply),
    ("password-domain-reply-byte-by-byte", [socksConfig(passwordOnly: true, chunk: 0), 5, 2, 1, 0, 5, 0, 0, 3, 11]
        + Array("example.org".utf8) + [1, 187] + socksAfterReply),
    ("password-ipv6-reply", [socksConfig(passwordOnly: false, chunk: 2), 5, 2, 1, 0, 5, 0, 0, 4]
        + [UInt8](repeating: 0, count: 15) + [1, 0x23, 0x82] + socksAfterReply),
    ("password-verdict-version-5", [socksConfig(passwordOnly: true, chunk: 1), 5, 2, 5, 0] + socksReplyIPv4),
    ("password-refused", [socksConfig(passwordOnly: true, chunk: 7), 5, 2, 1, 1]),
    ("no-acceptable-method", [socksConfig(passwordOnly: false, chunk: 7), 5, 0xFF]),
    ("none-picked-when-password-only", [socksConfig(passwordOnly: true, chunk: 7), 5, 0] + socksReplyIPv4),
    ("gssapi-picked", [socksConfig(passwordOnly: false, chunk: 7), 5, 1]),
    ("connection-refused-reply-5", [socksConfig(passwordOnly: false, chunk: 3), 5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]),
    ("tor-onion-not-found-f0",
     [socksConfig(passwordOnly: true, chunk: 4), 5, 2, 1, 0, 5, 0xF0, 0, 1, 0, 0, 0, 0, 0, 0]),
    ("http-proxy-answer",
     [socksConfig(passwordOnly: false, chunk: 5)] + Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)),
    ("socks4-answer", [socksConfig(passwordOnly: false, chunk: 7), 0, 0x5A, 0, 0, 0, 0, 0, 0]),
    ("reserved-byte-set", [socksConfig(passwordOnly: false, chunk: 7), 5, 0, 5, 0, 1, 1, 127, 0, 0, 1, 0, 80]),
    ("address-type-2", [socksConfig(passwordOnly: false, chunk: 7), 5, 0, 5, 0, 0, 2, 0, 0]),
    ("longest-domain-reply", [socksConfig(passwordOnly: false, chunk: 6), 5, 0, 5, 0, 0, 3, 255]
        + [UInt8](repeating: UInt8(ascii: "a"), count: 255) + [0, 80] + socksAfterReply),
    ("truncated-domain-reply", [socksConfig(passwordOnly: false, chunk: 7), 5, 0, 5, 0, 0, 3, 32, 97, 98]),
    ("pipelined-answers-one-read", [socksConfig(passwordOnly: true, chunk: 7), 5, 2, 1, 0] + socksReplyIPv4
        + socksAfterReply),
    ("empty", [socksConfig(passwordOnly: false, chunk: 0)]),
]
