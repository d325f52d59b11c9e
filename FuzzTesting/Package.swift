// swift-tools-version:6.0
//
// The libFuzzer executables, in a package of their own (as swift-protobuf's FuzzTesting) so that
// the main package's `swift build` never tries to link them without libFuzzer.
//
// Each fuzz target's only content is its `LLVMFuzzerTestOneInput` entry; the harness functions
// live in the main package's FuzzHarness library (FuzzSession's in FuzzSessionHarness, which
// FuzzHarness re-exports), where `swift test` (Tests/Fuzz) replays the corpus through the very
// same code. Build and run them with `scripts/fuzz.sh`.
//
// `make-corpus` writes the seed corpus (`swift run --package-path FuzzTesting make-corpus`);
// `fuzz-explain` replays a FuzzSession or FuzzRelayRooms input step by step, for triage.
import PackageDescription

let fuzzTargets = [
    "FuzzRelayFrame", "FuzzClientFrame", "FuzzRelayRooms", "FuzzSession", "FuzzSessionWorld", "FuzzSOCKSReply",
    "FuzzProxyHeader", "FuzzRESP", "FuzzFiles",
]

let package = Package(
    name: "FuzzTesting",
    dependencies: [
        // The directory name of the checkout is the package identity of a path dependency, so the
        // products are named through `name:` rather than an identity that varies by checkout.
        .package(name: "securechat", path: ".."),
    ],
    targets: fuzzTargets.map { name in
        // FuzzSession links its own harness module only (no NIO): libFuzzer clears and scans every
        // linked coverage counter on every input (312,048 with FuzzHarness, 72,847 without).
        let harness = name == "FuzzSession" ? "FuzzSessionHarness" : "FuzzHarness"
        return .executableTarget(
            name: name,
            dependencies: [.product(name: harness, package: "securechat")],
            path: "Sources/\(name)"
        )
    } + [
        .executableTarget(
            name: "make-corpus",
            dependencies: [
                .product(name: "FuzzHarness", package: "securechat"),
                .product(name: "ChatCore", package: "securechat"),
                .product(name: "RelayCore", package: "securechat"),
            ],
            path: "Sources/make-corpus"
        ),
        .executableTarget(
            name: "fuzz-explain",
            dependencies: [
                .product(name: "FuzzHarness", package: "securechat"),
                .product(name: "ChatCore", package: "securechat"),
            ],
            path: "Sources/fuzz-explain"
        ),
    ]
)
