import ChatCore
import Testing

@Suite("TerminalText: peer text is safe for a terminal")
struct TerminalTextTests {
    @Test("Printable text, including non-ASCII, passes unchanged", arguments: [
        "hello, world", "Grüße aus Köln", "日本語のテキスト", "emoji 👩‍💻 and flags 🇫🇷", "tabs? no: a b", "",
        "brackets [31m without ESC are harmless",
    ])
    func printableUnchanged(text: String) {
        #expect(TerminalText.sanitize(text) == text)
        #expect(TerminalText.isSafe(text))
    }

    @Test("C0 controls become control pictures, DEL becomes ␡")
    func c0Controls() {
        #expect(TerminalText.sanitize("a\nb") == "a␊b")
        #expect(TerminalText.sanitize("a\r\nb") == "a␍␊b")
        #expect(TerminalText.sanitize("\t\u{07}\u{08}\u{00}") == "␉␇␈␀")
        #expect(TerminalText.sanitize("x\u{7F}y") == "x␡y")
    }

    @Test("Escape sequences are removed whole and marked", arguments: [
        ("\u{1B}[31mred\u{1B}[0m", "␛red␛"),                        // SGR colour
        ("\u{1B}[2J\u{1B}[H", "␛␛"),                                 // clear screen, home
        ("a\u{1B}[?1049hb", "a␛b"),                                  // private mode (alt screen)
        ("\u{1B}]0;pwned\u{07}title", "␛title"),                     // OSC title, BEL-terminated
        ("\u{1B}]8;;http://x\u{1B}\\link\u{1B}]8;;\u{1B}\\", "␛link␛"), // OSC 8 hyperlink, ST-terminated
        ("\u{1B}Pqdata\u{1B}\\after", "␛after"),                     // DCS
        ("\u{1B}_apc\u{9C}after", "␛after"),                         // APC with C1 ST
        ("\u{1B}cafter", "␛after"),                                  // RIS: full reset
        ("\u{1B}(0after", "␛after"),                                 // charset switch (nF)
        ("\u{1B}7\u{1B}8", "␛␛"),                                    // save/restore cursor
        ("\u{9B}31mred", "␛red"),                                    // C1 CSI
        ("\u{9D}0;t\u{07}x", "␛x"),                                  // C1 OSC
        ("end\u{1B}", "end␛"),                                       // lone ESC at the end
        ("\u{1B}]0;never terminated", "␛"),                          // runs to the end, like a terminal
        ("\u{1B}[12", "␛"),                                          // truncated CSI
        ("\u{1B}[1;\u{1B}[m", "␛␛"),                                 // CSI aborted by ESC
        ("\u{1B}é", "␛é"),                                           // ESC before non-ASCII: only ESC goes
    ])
    func escapeSequences(input: String, expected: String) {
        let output = TerminalText.sanitize(input)
        #expect(output == expected)
        #expect(TerminalText.isSafe(output))
    }

    @Test("C1 controls, bidi overrides and isolates, and line separators become U+FFFD")
    func unicodeControls() {
        #expect(TerminalText.sanitize("a\u{85}b") == "a\u{FFFD}b")
        for value in [0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x2028, 0x2029] {
            let scalar = Unicode.Scalar(UInt32(value))!
            let input = "x" + String(scalar) + "y"
            #expect(TerminalText.sanitize(input) == "x\u{FFFD}y", "U+\(String(value, radix: 16))")
            #expect(!TerminalText.isSafe(input))
        }
        // The "Trojan Source" shape: an override that would reorder what the reader sees.
        #expect(TerminalText.sanitize("admin\u{202E}txt.exe") == "admin\u{FFFD}txt.exe")
    }

    @Test("Every single scalar below U+0100 and every ESC pair gives safe output")
    func exhaustiveSmallInputs() {
        for first in 0...0xFF {
            let a = Unicode.Scalar(UInt32(first))!
            #expect(TerminalText.isSafe(TerminalText.sanitize(String(a) + "z")))
            for second in 0...0xFF {
                let b = Unicode.Scalar(UInt32(second))!
                let output = TerminalText.sanitize("\u{1B}" + String(a) + String(b))
                #expect(TerminalText.isSafe(output), "ESC U+\(first) U+\(second)")
            }
        }
    }
}
