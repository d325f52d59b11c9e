// The client's parser fed one arbitrary relay frame.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzClientFrame, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzClientFrame(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
