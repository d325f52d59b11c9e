// The relay's room logic fed arbitrary frames and disconnects, against a reference model.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzRelayRooms, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzRelayRooms(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
