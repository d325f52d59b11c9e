/// The options a `--help` text (swift-argument-parser's layout) lists: the leading `-x`/`--name`
/// words of each line of its OPTIONS section. Whole words, so "--port" is not found in
/// "--metrics-port".
func helpOptions(_ help: String) -> Set<String> {
    var options = Set<String>()
    var inOptions = false
    for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
        if !line.hasPrefix(" ") && line.hasSuffix(":") {
            inOptions = line == "OPTIONS:"
            continue
        }
        // Options are indented by two spaces; wrapped descriptions by many more (and may begin
        // with a flag they mention).
        guard inOptions, line.hasPrefix("  -") else { continue }
        let trimmed = line.dropFirst(2)
        // The option words end where the description begins (two spaces) or the line does.
        let head = trimmed.range(of: "  ").map { trimmed[..<$0.lowerBound] } ?? trimmed
        for word in head.split(whereSeparator: { $0 == " " || $0 == "," }) where word.hasPrefix("-") {
            options.insert(String(word))
        }
    }
    return options
}
