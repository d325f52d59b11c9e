/// A decoder for the PROXY protocol version 2 header (HAProxy's specification, "The PROXY
/// protocol", §2.2), which a proxy in front of the relay sends before anything else on a
/// connection to say whose connection it is (`--trust-proxy proxy-protocol`).
///
/// Hand-written because neither SwiftNIO nor any package this project uses decodes it, and the
/// part needed is small: a 16-byte fixed header, an IPv4 or IPv6 source address, TLVs skipped.
/// It is sans-IO (bytes in, a verdict out), bounded (`RelayLimits.proxyHeaderMaxBytes`), never
/// traps on any input, and has a fuzz target (FuzzTesting's `FuzzProxyHeader`, which also
/// checks that every prefix of a header is `incomplete` and that trailing bytes change nothing).
public enum ProxyProtocolV2 {
    /// The 12 bytes every v2 header begins with.
    public static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// The signature, the version and command, the family and protocol, and the length.
    public static let fixedBytes = 16

    /// What the first bytes of a connection say.
    public enum Verdict: Hashable, Sendable {
        /// A header may still be arriving: read more (at most `RelayLimits.proxyHeaderMaxBytes`).
        case incomplete
        /// A whole header of `length` bytes; the connection's own bytes follow it. `client` is the
        /// source address (nil for the LOCAL command: a connection the proxy made itself, such as
        /// a health check, which no per-address cap counts).
        case header(length: Int, client: RelayAddress?)
        /// Not a valid header: close the connection.
        case invalid(Failure)
    }

    /// Why the bytes are not a valid v2 header.
    public enum Failure: String, Hashable, Sendable {
        case badSignature = "not a PROXY protocol v2 signature"
        case badVersion = "version is not 2"
        case badCommand = "command is neither LOCAL nor PROXY"
        case badFamily = "unknown address family"
        case tooLong = "longer than the relay accepts"
        case shortAddress = "length too short for the address family"
    }

    /// Judge the first bytes of a connection (everything read so far; more bytes than the header
    /// are fine). Reads only within `bytes`; allocates nothing.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Verdict {
        // A mismatch anywhere in what has arrived settles it: no need to wait for the rest.
        for (index, byte) in zip(signature.indices, bytes) where byte != signature[index] {
            return .invalid(.badSignature)
        }
        guard bytes.count >= fixedBytes else { return .incomplete }
        let versionAndCommand = bytes[12]
        guard versionAndCommand >> 4 == 2 else { return .invalid(.badVersion) }
        let command = versionAndCommand & 0x0F
        guard command <= 1 else { return .invalid(.badCommand) }
        let family = bytes[13] >> 4
        guard family <= 3 else { return .invalid(.badFamily) }
        let length = fixedBytes + (Int(bytes[14]) << 8 | Int(bytes[15]))
        guard length <= RelayLimits.proxyHeaderMaxBytes else { return .invalid(.tooLong) }
        // Source, destination, then ports for IP; two 108-byte paths for Unix sockets.
        let addressBytes = [0, 12, 36, 216][Int(family)]
        guard length - fixedBytes >= addressBytes else { return .invalid(.shortAddress) }
        guard bytes.count >= length else { return .incomplete }
        guard command == 1 else { return .header(length: length, client: nil) }
        let client: RelayAddress
        switch family {
        case 1:
            client = RelayAddress(ipv4: (bytes[16], bytes[17], bytes[18], bytes[19]))
        case 2:
            client = RelayAddress(ipv6: UnsafeRawBufferPointer(rebasing: bytes[16..<32])) ?? .unknown
        case 3:
            client = .unix
        default:
            // UNSPEC with the PROXY command: the proxy does not know the source. All such
            // connections share one budget rather than none.
            client = .unknown
        }
        return .header(length: length, client: client)
    }

    /// Judge an array's bytes (tests and tools).
    public static func parse(_ bytes: [UInt8]) -> Verdict {
        bytes.withUnsafeBytes { parse($0) }
    }
}
