import ChatCore
import Testing

@testable import ChatClient

#if canImport(Glibc)
import Glibc
#endif

@Suite("Joining: completing the code's words")
struct CodeCompletionTests {
    @Test("Words are completed from the BIP-39 list, any case; nothing for an empty or non-letter prefix")
    func wordsCompleting() {
        #expect(ChatCode.wordsCompleting("orbi") == ["orbit"])
        #expect(ChatCode.wordsCompleting("ORB") == ["orbit"])
        #expect(ChatCode.wordsCompleting("ab") == [
            "abandon", "ability", "able", "about", "above", "absent", "absorb", "abstract", "absurd", "abuse",
        ])
        #expect(ChatCode.wordsCompleting("zoo") == ["zoo"])
        #expect(ChatCode.wordsCompleting("").isEmpty)
        #expect(ChatCode.wordsCompleting("7k").isEmpty)
        #expect(ChatCode.wordsCompleting("qx").isEmpty)
        #expect(ChatCode.wordsCompleting("s").count == 250)
        #expect(ChatCode.wordsCompleting("s").allSatisfy { $0.hasPrefix("s") })
        // Every word completes to itself from its first four letters (BIP-39 words are unique there).
        for word in ["abandon", "zoo", "velvet", "orbit"] {
            #expect(ChatCode.wordsCompleting(String(word.prefix(4))) == [word])
        }
    }

    @Test("readline's match format: the common prefix, then the candidates; a single match twice; none is NULL")
    func readlineMatches() throws {
        func strings(_ array: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [String] {
            guard let array else { return [] }
            defer {
                var index = 0
                while let entry = array[index] {
                    free(entry)
                    index += 1
                }
                free(array)
            }
            var result: [String] = []
            var index = 0
            while let entry = array[index] {
                result.append(String(cString: entry))
                index += 1
            }
            return result
        }
        #expect(strings(CodeInput.readlineMatches([])) == [])
        #expect(strings(CodeInput.readlineMatches(["orbit"])) == ["orbit", "orbit"])
        #expect(strings(CodeInput.readlineMatches(["absent", "absorb", "abstract"])) == [
            "abs", "absent", "absorb", "abstract",
        ])
    }
}
