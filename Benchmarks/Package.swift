// swift-tools-version:6.1
//
// Micro-benchmarks for securechat, kept out of the main package (as swift-nio does) so that the
// project's own `swift build` / `swift test` never compile the benchmark harness, and CI never
// runs it (timings on a shared machine are noise, not pass/fail).
//
//   cd Benchmarks && swift package --disable-sandbox benchmark     # ordo-one/benchmark: time + allocations
//   scripts/bench-crypto.sh (from the repository root)             # Swift vs C throughput of the crypto loop
//
// Targets:
//   ChatCoreBenchmarks   ordo-one/benchmark suite: crypto, envelopes, session, room logic, simulator
//   CryptoThroughput     executable `crypto-throughput`: MessageRatchet's seal + open loop, printed in
//                        the format of the C baseline (c-baseline/ratchet_bench.c) for the ratio
import PackageDescription

let package = Package(
    name: "securechat-benchmarks",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "crypto-throughput", targets: ["CryptoThroughput"]),
    ],
    dependencies: [
        // The identity of a path dependency is its directory's name, which differs per checkout
        // (a worktree, CI's clone): `name:` pins the one the targets refer to.
        .package(name: "securechat", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "ChatCoreBenchmarks",
            dependencies: [
                .product(name: "ChatCore", package: "securechat"),
                .product(name: "RelayCore", package: "securechat"),
                .product(name: "Simulator", package: "securechat"),
                .product(name: "ChatTesting", package: "securechat"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/ChatCoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "CryptoThroughput",
            dependencies: [.product(name: "ChatCore", package: "securechat")],
            path: "Sources/CryptoThroughput"
        ),
    ]
)
