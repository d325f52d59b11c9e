// swift-tools-version:6.0
//
// securechat: an ephemeral, end-to-end encrypted terminal chat over a blind relay.
//
// One sans-IO core (ChatCore) and thin shells around it. Each target has one job:
//   CSodium            libsodium 1.0.18 from Debian, through pkg-config, plus a tiny shim
//   ChatCore           wire codec, crypto, session state machine, rate limiter, room logic
//                      (no sockets, no clocks, no global randomness)
//   Simulator          deterministic simulation: virtual clock, lossy network, virtual relay around
//                      RelayRooms, virtual clients around SessionManager, invariant checker, trace hash.
//                      The only home of seeded entropy: no shipped binary depends on it.
//   SimulatorMain      executable `simulator`: command line -> Simulator
// Tests:
//   Tests/Unit         known answers, codec tables, state machine, in-memory sessions
//   Tests/Property     swift-property-based: round trips, tamper detection, model-based tests
//   Tests/Fuzz         replays the libFuzzer corpus and every regression input
//   Tests/Integration  the real binaries as subprocesses on loopback
//   Tests/Simulation   the simulator's engine: determinism, planted bugs, a small fault sweep
import PackageDescription

let package = Package(
    name: "securechat",
    products: [
        .library(name: "ChatCore", targets: ["ChatCore"]),
        .executable(name: "simulator", targets: ["SimulatorMain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
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
            name: "Simulator",
            dependencies: [
                "ChatCore",
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            path: "Sources/Simulator",
            // The engine is single-threaded and its run loop touches its own state on every event;
            // dynamic exclusivity checks were 5% of a simulation's instructions (BENCHMARKS.md).
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        .executableTarget(
            name: "SimulatorMain",
            dependencies: [
                "Simulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/SimulatorMain"
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
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            path: "Tests/Property"
        ),
        .testTarget(
            name: "FuzzTests",
            dependencies: ["ChatCore"],
            path: "Tests/Fuzz"
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["ChatCore"],
            path: "Tests/Integration"
        ),
        .testTarget(
            name: "SimulationTests",
            dependencies: ["Simulator", "ChatCore"],
            path: "Tests/Simulation"
        ),
    ]
)
