// swift-tools-version:6.0
//
// securechat: an ephemeral, end-to-end encrypted terminal chat over a blind relay.
//
// One sans-IO core (ChatCore) and thin shells around it. Each target has one job:
//   CSodium            libsodium 1.0.18 from Debian, through pkg-config, plus a tiny shim
//   ChatCore           wire codec, crypto, session state machine, rate limiter, room logic
//                      (no sockets, no clocks, no global randomness)
//   FuzzHarness        test code: one harness function per fuzz target (FuzzTesting/ links them
//                      into libFuzzer executables, Tests/Fuzz replays the corpus through them),
//                      reference models and a two-session world. No shipped binary links it.
// Tests:
//   Tests/Unit         known answers, codec tables, state machine, in-memory sessions
//   Tests/Property     swift-property-based: round trips, tamper detection, model-based tests
//   Tests/Fuzz         replays the libFuzzer corpus and every regression input
//   Tests/Integration  the real binaries as subprocesses on loopback
import PackageDescription

let package = Package(
    name: "securechat",
    products: [
        .library(name: "ChatCore", targets: ["ChatCore"]),
        // Test code, a product only so that the separate FuzzTesting/ package can link it into its
        // libFuzzer executables. No shipped binary depends on it.
        .library(name: "FuzzHarness", targets: ["FuzzHarness"]),
    ],
    dependencies: [
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CSodium",
            path: "Sources/CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .target(
            name: "ChatCore",
            dependencies: ["CSodium"],
            path: "Sources/ChatCore"
        ),
        .target(
            name: "FuzzHarness",
            dependencies: ["ChatCore"],
            path: "Sources/FuzzHarness"
        ),
        .testTarget(
            name: "UnitTests",
            dependencies: ["ChatCore"],
            path: "Tests/Unit",
            exclude: ["Vectors"]
        ),
        .testTarget(
            name: "PropertyTests",
            dependencies: [
                "ChatCore",
                "FuzzHarness",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            path: "Tests/Property"
        ),
        .testTarget(
            name: "FuzzTests",
            dependencies: ["ChatCore", "FuzzHarness"],
            path: "Tests/Fuzz"
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["ChatCore"],
            path: "Tests/Integration"
        ),
    ]
)
