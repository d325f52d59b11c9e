import ChatCore
import ClientCore

/// The words for file events, shared by the plain pipe renderer (stderr) and the terminal. The
/// offered name is the peer's: sanitized before it reaches a terminal.
enum FileEventText {
    static func line(_ event: FileEvent, savedAs: String?) -> String {
        switch event {
        case let .offered(info, .outgoing):
            "offering \(name(info)) (\(info.sizeBytes) bytes, BLAKE2b-256 \(hashPrefix(info)))"
        case let .offered(info, .incoming):
            "the peer offers \(name(info)) (\(info.sizeBytes) bytes, BLAKE2b-256 \(hashPrefix(info)))"
        case let .hashed(info, .outgoing):
            "hashed \(name(info)) while sending it: BLAKE2b-256 \(hashPrefix(info))"
        case let .hashed(info, .incoming):
            "the peer hashed \(name(info)): BLAKE2b-256 \(hashPrefix(info)) (checked when the last byte is in)"
        case let .progress(info, direction, bytes):
            "\(direction == .outgoing ? "sending" : "receiving") \(name(info)): \(percent(bytes, of: info.sizeBytes))% "
                + "(\(bytes) of \(info.sizeBytes) bytes)"
        case let .done(info, .outgoing, _):
            "sent \(name(info)): the peer stored it, BLAKE2b-256 \(FileHex.encode(info.hash)) matched"
        case let .done(info, .incoming, _):
            "received \(name(info)) as \(TerminalText.sanitize(savedAs ?? "?")), BLAKE2b-256 "
                + "\(FileHex.encode(info.hash)) checked"
        case let .resumed(info, direction, bytes):
            "\(direction == .outgoing ? "sending" : "receiving") \(name(info)) resumed from the .part a previous "
                + "session left: \(bytes) of \(info.sizeBytes) bytes kept"
        case let .failed(info, direction, failure):
            "\(direction == .outgoing ? "sending" : "receiving") \(name(info)) failed: \(failure)"
        }
    }

    static func name(_ info: FileOfferInfo) -> String {
        "\"" + TerminalText.sanitize(info.name) + "\""
    }

    /// The hash's first 16 hex digits; "to follow" for an offer made before its file was hashed.
    static func hashPrefix(_ info: FileOfferInfo) -> String {
        info.hashKnown ? String(FileHex.encode(info.hash).prefix(16)) + "…" : "to follow"
    }

    static func percent(_ bytes: UInt64, of size: UInt64) -> UInt64 {
        size == 0 ? 100 : bytes * 100 / size
    }
}
