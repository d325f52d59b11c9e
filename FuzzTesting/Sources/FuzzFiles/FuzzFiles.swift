// A file transfer's sender and receiver fed hostile control messages, chunks and acknowledgements.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzFiles, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzFiles(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
