// One real session against a recorded peer and a forging one, driven by a program of operations.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzSessionHarness.fuzzSession,
// which Tests/Fuzz also runs. It links that module alone (ChatCore, ChatTesting), not FuzzHarness: NIO's
// coverage counters would be cleared and scanned on every input for nothing.
import FuzzSessionHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzSession(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
