// A hostile SOCKS5 proxy's replies against the client's SOCKS handlers.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzSOCKSReply, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzSOCKSReply(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
