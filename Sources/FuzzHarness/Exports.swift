// FuzzSession's harness lives in FuzzSessionHarness (so that its fuzz binary links no NIO); the
// other targets, Tests/Fuzz, make-corpus and fuzz-explain reach it through this module as before.
@_exported import FuzzSessionHarness
