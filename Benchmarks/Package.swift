// swift-tools-version:6.1
//
// Micro-benchmarks for securechat, kept out of the main package (as swift-nio does) so that the
// project's own build never compiles the benchmark harness.
//
//   cd Benchmarks && swift package --disable-sandbox benchmark            # all benchmarks
//   scripts/bench-micro.sh (from the repository root)                     # the same, plus the C baseline
import PackageDescription

let package = Package(
    name: "securechat-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "ChatCoreBenchmarks",
            dependencies: [
                .product(name: "ChatCore", package: "securechat"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/ChatCoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
