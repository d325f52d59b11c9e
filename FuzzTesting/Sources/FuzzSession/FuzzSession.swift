// Two sessions, the relay and a hostile network, driven by arbitrary steps.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzSession, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzSession(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
