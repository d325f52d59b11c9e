// swift-tools-version:6.0
//
// securechat: an ephemeral, end-to-end encrypted terminal chat over a blind relay.
//
// One sans-IO core (ChatCore) and thin shells around it. Each target has one job:
//   CSodium            libsodium 1.0.18 from Debian, through pkg-config, plus a tiny shim
//   CBuildInfo         the version and commit for --version (set by scripts/release.sh only)
//   ChatCore           wire codec, crypto, session state machine, rate limiter
//                      (no sockets, no clocks, no global randomness)
//   RelayCore          the relay's decisions, sans-IO like ChatCore: RelayRooms (room logic),
//                      RelayLimits (every limit and default, validated), RelayEngine (admission,
//                      per-connection policy, timers, shutdown)
//   ChatNetworking     WebSocket plumbing shared by the binaries: ws/wss client, URL parsing, rlimits,
//                      the SOCKS5 tunnel (NIOSOCKS plus RFC 1929 in front of it) for --proxy and --tor
//   RelayServer        the relay's NIO shell around RelayEngine: sockets, pipeline, TLS, metrics export
//   relay              executable: command line -> RelayServer
//   RelayBench         executable `relay-bench`: load generator speaking only the original protocol
//   CEditline          libedit from Debian (BSD licence), through pkg-config
//   CClientSupport     tiny C shim for the client: libedit's line callback and globals, prctl,
//                      signalfd, the window size (variadic or global C that Swift cannot call)
//   ClientCore         the client's sans-IO decisions: ClientDriver (connection lifecycle, reconnect policy,
//                      give-up, drain, keepalive, commands, exit status) and its event/action/display types
//   ChatClient         the client shell around ClientDriver: poll loop, sockets, terminal UI, pipe/JSON
//   securechat         executable: command line -> ChatClient
//   Simulator          deterministic simulation: virtual clock, lossy network, virtual relay around
//                      RelayRooms, virtual clients around SessionManager, invariant checker, trace hash.
//                      The only home of seeded entropy: no shipped binary depends on it.
//   SimulatorMain      executable `simulator`: command line -> Simulator
//   FuzzHarness        test code: the libFuzzer harness functions (FuzzTesting/ links them; Tests/Fuzz
//                      replays the corpus through them). No shipped binary depends on it.
//   FuzzSessionHarness the FuzzSession harness (FuzzHarness re-exports it), apart so that the FuzzSession
//                      binary links no NIO.
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
        .library(name: "RelayCore", targets: ["RelayCore"]),
        .library(name: "ChatNetworking", targets: ["ChatNetworking"]),
        .executable(name: "relay", targets: ["relay"]),
        .executable(name: "relay-bench", targets: ["RelayBench"]),
        .executable(name: "securechat", targets: ["securechat"]),
        .executable(name: "simulator", targets: ["SimulatorMain"]),
        // A product so that the separate Benchmarks/ package can time whole simulations.
        .library(name: "Simulator", targets: ["Simulator"]),
        // The testing world, for the Benchmarks package (never shipped).
        .library(name: "ChatTesting", targets: ["ChatTesting"]),
        // Test code, a product only so that the separate FuzzTesting/ package can link it into its
        // libFuzzer executables. No shipped binary depends on it.
        .library(name: "FuzzHarness", targets: ["FuzzHarness"]),
        .library(name: "FuzzSessionHarness", targets: ["FuzzSessionHarness"]),
    ],
    dependencies: [
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // NIOSOCKS only: the SOCKS5 client under --proxy and --tor.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
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
            name: "CBuildInfo",
            path: "Sources/CBuildInfo"
        ),
        .target(
            name: "ChatCore",
            dependencies: ["CSodium"],
            path: "Sources/ChatCore",
            // Release builds export ChatCore's function bodies (the codec, TokenBucket) for inlining
            // and specialization in the binaries: without it (when the room logic was still here)
            // the relay spent ~9% of its CPU in runtime generic-metadata lookups (perf profile in
            // BENCHMARKS.md). Root-package only.
            swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]
        ),
        .target(
            name: "RelayCore",
            dependencies: [
                "ChatCore",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            path: "Sources/RelayCore",
            // As ChatCore: RelayEngine<ByteBuffer> and RelayRooms<ConnectionID> are specialized in
            // the relay binary only if their bodies are exported.
            swiftSettings: [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]
        ),
        .target(
            name: "ChatNetworking",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOSOCKS", package: "swift-nio-extras"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            path: "Sources/ChatNetworking"
        ),
        .target(
            name: "RelayServer",
            dependencies: [
                "ChatCore",
                "RelayCore",
                "ChatNetworking",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            path: "Sources/RelayServer"
        ),
        .executableTarget(
            name: "relay",
            dependencies: [
                "RelayCore",
                "RelayServer",
                "ChatNetworking",
                "CBuildInfo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/relay"
        ),
        .executableTarget(
            name: "RelayBench",
            dependencies: [
                "ChatNetworking",
                // Its WebSocket masking keys come from SplitMix64 (no syscall per frame).
                "SeededRandom",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Sources/RelayBench"
        ),
        .systemLibrary(
            name: "CEditline",
            path: "Sources/CEditline",
            pkgConfig: "libedit",
            providers: [.apt(["libedit-dev"])]
        ),
        .target(
            name: "CClientSupport",
            dependencies: ["CEditline"],
            path: "Sources/CClientSupport"
        ),
        .target(
            name: "ClientCore",
            dependencies: ["ChatCore"],
            path: "Sources/ClientCore"
        ),
        .target(
            name: "ChatClient",
            dependencies: [
                "ChatCore", "ClientCore", "ChatNetworking", "CClientSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Sources/ChatClient"
        ),
        .executableTarget(
            name: "securechat",
            dependencies: [
                "ChatClient",
                "ClientCore",
                "CBuildInfo",
                "CClientSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/securechat"
        ),
        .target(name: "SeededRandom", path: "Sources/SeededRandom"),
        .target(
            name: "ChatTesting",
            dependencies: [
                "ChatCore",
                "ClientCore",
                "RelayCore",
                "SeededRandom",
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            path: "Sources/ChatTesting",
            // Every simulated event runs through the world; see the Simulator target's settings.
            swiftSettings: [
                .unsafeFlags(["-enforce-exclusivity=unchecked"]),
                .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
            ]
        ),
        .target(
            name: "Simulator",
            dependencies: [
                "ChatCore",
                "ChatTesting",
                "ClientCore",
                "RelayCore",
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
        .target(
            name: "FuzzSessionHarness",
            // FuzzSession's harness alone, without NIO: every instrumented edge linked into a fuzz
            // binary is a counter libFuzzer clears and scans on every input (the FuzzSession binary
            // had 312,048 with FuzzHarness, NIO's mostly; 72,847 with this module alone).
            dependencies: ["ChatCore", "ChatTesting"],
            path: "Sources/FuzzSessionHarness"
        ),
        .target(
            name: "FuzzHarness",
            dependencies: [
                "FuzzSessionHarness", "ChatCore", "ChatTesting", "RelayCore", "ChatNetworking",
                // FuzzSOCKSReply runs the client's SOCKS handlers on an EmbeddedChannel.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "Sources/FuzzHarness"
        ),
        // The tests' share of the machine (MachineShare): a library of the test targets, not a test.
        .target(name: "TestSupport", path: "Tests/Support"),
        .testTarget(
            name: "UnitTests",
            dependencies: [
                "TestSupport",
                "ChatCore",
                "ChatTesting",
                "ClientCore",
                "RelayCore",
                "ChatClient",
                "ChatNetworking",
                "RelayServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Tests/Unit",
            exclude: ["Vectors"]
        ),
        .testTarget(
            name: "PropertyTests",
            dependencies: [
                "TestSupport",
                "ChatCore",
                "ChatTesting",
                "RelayCore",
                "FuzzHarness",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            path: "Tests/Property"
        ),
        .testTarget(
            name: "FuzzTests",
            dependencies: ["ChatCore", "RelayCore", "FuzzHarness"],
            path: "Tests/Fuzz"
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "TestSupport",
                "ChatCore",
                "ChatNetworking",
                // Built by `swift test`; the tests run them as processes from the build directory.
                "relay",
                "RelayBench",
                "securechat",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Tests/Integration"
        ),
        .testTarget(
            name: "SimulationTests",
            dependencies: ["TestSupport", "Simulator", "ChatCore", "ChatTesting"],
            path: "Tests/Simulation"
        ),
    ]
)
