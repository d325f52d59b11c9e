/// Makes text from the peer safe to put on a terminal.
///
/// A peer (or a relay that tampers) controls every byte of a message. Printed raw, a message
/// could move the cursor, rewrite what is already on screen, set the window title, change
/// colours for good, switch character sets, reset the terminal, or (with bidi overrides) make
/// text read differently from what it is (croc issue 595; "Trojan Source", CVE-2021-42574).
/// `sanitize` guarantees that the result contains no C0 or C1 control, no DEL, no escape
/// sequence and no bidi override or isolate, and that it is one line.
///
/// Nothing is dropped silently: each control becomes a visible stand-in, so the reader can tell
/// the peer sent something unusual.
/// - C0 controls (U+0000–U+001F, including tab, LF and CR) become their Unicode control pictures
///   (U+2400–U+241F, e.g. `␊` for LF) and DEL becomes `␡` (U+2421).
/// - Escape sequences (ESC or a C1 introducer, then CSI parameters, an OSC/DCS/SOS/PM/APC string
///   up to its terminator, or the final byte of a short sequence) become one `␛` (U+241B).
///   An unterminated string sequence runs to the end of the text, as it would on a terminal.
/// - Other C1 controls (U+0080–U+009F), bidi embeddings, overrides and isolates
///   (U+202A–U+202E, U+2066–U+2069) and the line and paragraph separators (U+2028, U+2029)
///   become U+FFFD.
///
/// Everything else, including every printable non-ASCII character, is kept as it is.
public enum TerminalText {
    /// The stand-in for a removed escape sequence.
    public static let escapeMarker: Unicode.Scalar = "\u{241B}"
    /// The stand-in for other forbidden scalars.
    public static let replacement: Unicode.Scalar = "\u{FFFD}"

    /// `text` made safe for a terminal, on one line (see the type's documentation).
    public static func sanitize(_ text: String) -> String {
        let scalars = Array(text.unicodeScalars)
        var output = String.UnicodeScalarView()
        var index = 0
        // Bounded: every iteration consumes at least one scalar.
        while index < scalars.count {
            let scalar = scalars[index]
            let value = scalar.value
            switch value {
            case 0x1B:
                index = skipEscapeSequence(scalars, from: index + 1)
                output.append(escapeMarker)
            case 0x9B:  // C1 CSI
                index = skipControlSequence(scalars, from: index + 1)
                output.append(escapeMarker)
            case 0x90, 0x98, 0x9D, 0x9E, 0x9F:  // C1 DCS, SOS, OSC, PM, APC
                index = skipControlString(scalars, from: index + 1)
                output.append(escapeMarker)
            case 0x00...0x1F:
                output.append(Unicode.Scalar(0x2400 + value)!)
                index += 1
            case 0x7F:
                output.append("\u{2421}")
                index += 1
            case 0x80...0x9F, 0x202A...0x202E, 0x2066...0x2069, 0x2028, 0x2029:
                output.append(replacement)
                index += 1
            default:
                output.append(scalar)
                index += 1
            }
        }
        return String(output)
    }

    /// True when `text` passes through `sanitize` unchanged.
    public static func isSafe(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { !isForbidden($0.value) }
    }

    private static func isForbidden(_ value: UInt32) -> Bool {
        switch value {
        case 0x00...0x1F, 0x7F...0x9F, 0x202A...0x202E, 0x2066...0x2069, 0x2028, 0x2029: true
        default: false
        }
    }

    /// After an ESC at `start - 1`: the index just past the sequence it begins.
    private static func skipEscapeSequence(_ scalars: [Unicode.Scalar], from start: Int) -> Int {
        guard start < scalars.count else { return start }
        switch scalars[start].value {
        case 0x5B:  // ESC [ : CSI
            return skipControlSequence(scalars, from: start + 1)
        case 0x5D, 0x50, 0x58, 0x5E, 0x5F:  // ESC ] P X ^ _ : OSC, DCS, SOS, PM, APC strings
            return skipControlString(scalars, from: start + 1)
        case 0x20...0x2F:  // nF: intermediates, then one final byte (e.g. ESC ( B)
            var index = start
            while index < scalars.count, (0x20...0x2F).contains(scalars[index].value) { index += 1 }
            if index < scalars.count, (0x30...0x7E).contains(scalars[index].value) { index += 1 }
            return index
        case 0x30...0x7E:  // Two-character sequences: ESC 7, ESC c (reset), ESC M, ...
            return start + 1
        default:
            return start  // A lone ESC: only it goes.
        }
    }

    /// A CSI body: parameter and intermediate bytes (0x20–0x3F), then one final byte (0x40–0x7E).
    /// Anything else ends the sequence early (the terminal would abort it) and is kept.
    private static func skipControlSequence(_ scalars: [Unicode.Scalar], from start: Int) -> Int {
        var index = start
        while index < scalars.count {
            let value = scalars[index].value
            if (0x20...0x3F).contains(value) {
                index += 1
            } else if (0x40...0x7E).contains(value) {
                return index + 1
            } else {
                return index
            }
        }
        return index
    }

    /// A control string (OSC, DCS, ...): everything up to BEL, ST (ESC \) or C1 ST (U+009C).
    private static func skipControlString(_ scalars: [Unicode.Scalar], from start: Int) -> Int {
        var index = start
        while index < scalars.count {
            switch scalars[index].value {
            case 0x07, 0x9C:
                return index + 1
            case 0x1B:
                if index + 1 < scalars.count, scalars[index + 1].value == 0x5C { return index + 2 }
                return index + 1  // ESC without "\" aborts the string on real terminals.
            default:
                index += 1
            }
        }
        return index
    }
}
