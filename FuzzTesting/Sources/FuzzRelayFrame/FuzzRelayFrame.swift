// The relay's parser and its reply to one arbitrary client frame.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzRelayFrame, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzRelayFrame(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
