// Two client processes, the relay and a hostile network, driven by arbitrary steps (slow: both
// sides' handshakes run for every input; FuzzSession is the fast one, for the session alone).
// Nothing but the libFuzzer entry (libFuzzer provides main): the harness is FuzzHarness.fuzzSessionWorld, which Tests/Fuzz also runs.
import FuzzHarness

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    fuzzSessionWorld(UnsafeRawBufferPointer(start: start, count: count))
    return 0
}
