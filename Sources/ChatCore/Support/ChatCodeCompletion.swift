/// Completing the words of a code as a person types it (`securechat --join`'s prompt completes
/// them on Tab, as magic-wormhole's `receive` does). The wordlist is public (BIP-39), so offering
/// its words reveals nothing; the typed prefix never leaves the process.
extension ChatCode {
    /// The most candidates returned for one prefix (a one-letter prefix matches up to ~150 words).
    public static let completionCandidatesMax = 256

    /// The wordlist's words that start with `prefix` (any case), in the list's (alphabetical)
    /// order, at most `completionCandidatesMax`. An empty prefix, or one with a character no word
    /// has, matches nothing.
    public static func wordsCompleting(_ prefix: String) -> [String] {
        let lower = prefix.utf8.map { (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) ? $0 + 32 : $0 }
        guard !lower.isEmpty, lower.allSatisfy({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) }) else {
            return []
        }
        let words = BIP39Wordlist.words
        // The list is sorted: binary search for the first word not below the prefix.
        var low = 0
        var high = words.count
        while low < high {  // Bounded: halves each time (11 steps for 2048 words).
            let middle = (low + high) / 2
            if words[middle].utf8.lexicographicallyPrecedes(lower) { low = middle + 1 } else { high = middle }
        }
        var matches: [String] = []
        // Bounded by the list and by `completionCandidatesMax`.
        while low < words.count, matches.count < completionCandidatesMax, words[low].utf8.starts(with: lower) {
            matches.append(words[low])
            low += 1
        }
        return matches
    }
}
