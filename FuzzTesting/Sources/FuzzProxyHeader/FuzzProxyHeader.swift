// The relay's PROXY protocol v2 header decoder fed arbitrary first bytes of a connection.
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzProxyHeader, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzProxyHeader(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
