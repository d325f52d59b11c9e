// One real session against a recorded peer and a forging one, driven by a program of operations.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzSession, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzSession(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
