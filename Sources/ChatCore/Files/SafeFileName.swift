/// The name under which a received file is stored: an offered name reduced to one safe
/// basename (croc's CVE-2023-43616..43620 are the lesson: the name is the peer's, hostile until
/// proven otherwise).
///
/// Rules, in order: the last component after any `/` or `\` (no directory is ever named by the
/// peer); Unicode controls, format characters (bidi overrides and isolates, zero-width
/// characters), line and paragraph separators, private-use, surrogate and unassigned scalars
/// removed; leading dots, dashes and spaces removed (no hidden file, no option-like name, no `..`);
/// trailing dots and spaces removed; at most `bytesMax` UTF-8 bytes (a short extension kept); and
/// `file` when nothing is left.
public enum SafeFileName {
    /// Room under NAME_MAX (255) for " (999)" and a `.part` name's ".TAG.part" (22 bytes).
    public static let bytesMax = 200
    static let extensionBytesMax = 16
    public static let fallback = "file"

    public static func make(_ offered: String) -> String {
        let last = offered.split(omittingEmptySubsequences: false) { $0 == "/" || $0 == "\\" }.last.map(String.init)
            ?? ""
        var scalars = String.UnicodeScalarView(last.unicodeScalars.filter(isAllowed))
        while let first = scalars.first, first == "." || first == "-" || first == " " { scalars.removeFirst() }
        while let end = scalars.last, end == "." || end == " " { scalars.removeLast() }
        let name = shortened(String(scalars))
        return name.isEmpty ? fallback : name
    }

    static func isAllowed(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .surrogate, .unassigned:
            false
        default:
            scalar != "/" && scalar != "\\"
        }
    }

    /// At most `bytesMax` UTF-8 bytes, cut at a character boundary, keeping a short extension.
    static func shortened(_ name: String) -> String {
        guard name.utf8.count > bytesMax else { return name }
        var stem = name
        var suffix = ""
        if let dot = name.lastIndex(of: "."), dot != name.startIndex,
           name.utf8.distance(from: dot, to: name.endIndex) <= extensionBytesMax {
            stem = String(name[..<dot])
            suffix = String(name[dot...])
        }
        var kept = ""
        for character in stem {
            guard kept.utf8.count + character.utf8.count + suffix.utf8.count <= bytesMax else { break }
            kept.append(character)
        }
        return kept + suffix
    }

    /// The `index`-th alternative to `name` when it is taken: `name (1).ext`, `name (2).ext`, …
    /// The `.part` a transfer writes before the file takes `alternative(name, index:)`:
    /// `NAME.TAG.part`, where the tag binds it to one offered file (`partTag`). A resume opens only
    /// a `.part` with the offer's tag, so an offer cannot make the receiver hash, empty or delete a
    /// file it did not write for that same file (a user's own `thesis.part`, another transfer's).
    public static func partName(_ name: String, index: Int, tag: String) -> String {
        alternative(name, index: index) + "." + tag + ".part"
    }

    /// Whether `fileName` is shaped like a name `partName` gives: something, a dot, 16 lowercase
    /// hex digits, `.part` (a user's own `thesis.part` is not).
    public static func isPartName(_ fileName: String) -> Bool {
        let bytes = Array(fileName.utf8)
        let tail = 1 + 16 + 5  // "." TAG ".part"
        guard bytes.count > tail, bytes.suffix(5) == Array(".part".utf8), bytes[bytes.count - tail] == UInt8(ascii: ".")
        else { return false }
        return bytes[(bytes.count - 21)..<(bytes.count - 5)].allSatisfy {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0)
        }
    }

    /// 16 hex digits of BLAKE2b-256("securechat part v1" ‖ the offered hash ‖ the size, 8 bytes
    /// big-endian), where the offered hash is the file's, or its head's for an offer whose hash
    /// follows (`FileOfferInfo.partTag`): the same file offered again finds its `.part`; another
    /// offer does only if it knows the content that hash covers.
    public static func partTag(fileHash: [UInt8], sizeBytes: UInt64) -> String {
        let hasher = FileHasher()
        hasher.update(Array("securechat part v1".utf8))
        hasher.update(fileHash)
        var size: [UInt8] = []
        BigEndian.append(sizeBytes, to: &size)
        hasher.update(size)
        return FileHex.encode(Array(hasher.finish().prefix(8)))
    }

    public static func alternative(_ name: String, index: Int) -> String {
        guard index > 0 else { return name }
        if let dot = name.lastIndex(of: "."), dot != name.startIndex {
            return "\(name[..<dot]) (\(index))\(name[dot...])"
        }
        return "\(name) (\(index))"
    }
}
