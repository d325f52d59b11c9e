// The cluster relay's RESP2/RESP3 parser (Redis replies and pub/sub messages) fed arbitrary bytes.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzRESP, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzRESP(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
