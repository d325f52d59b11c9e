// The Swift twin of Benchmarks/c-baseline/ratchet_bench.c: MessageRatchet's seal + open loop,
// timed the same way and printed in the same format, so that scripts/bench-crypto.sh can divide
// one throughput by the other. Whatever this loop costs beyond the C loop is the Swift layer's.
//
//   crypto-throughput [--allocating] SECONDS SIZE...      e.g. crypto-throughput 2 64 1024 65536
//
// By default records are opened with `openRecord(sequence:_:_:)`, which lends the plaintext from
// the ratchet's guarded buffer (as the C loop reuses its buffer); `--allocating` opens with
// `openRecord(sequence:_:) -> SecureBytes`, a fresh guarded allocation per record.
//
// Output, one line per size:
//   size=<bytes> messages=<n> wall_s=<s> cpu_s=<s> mb_per_s_cpu=<MB/s> ns_per_message_cpu=<ns>
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ChatCore

/// Iterations between clock readings (as the C baseline).
let batch = 16
let sizeMaxBytes = 1 << 20

func seconds(_ clock: clockid_t) -> Double {
    var now = timespec()
    clock_gettime(clock, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) * 1e-9
}

func fail(_ message: String) -> Never {
    let line = Array((message + "\n").utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(2)
}

/// One direction, both ends in one process: a sender (low side) and a receiver (high side)
/// ratcheting from the same master key, as two peers do after the handshake.
func run(size: Int, durationSeconds: Double, allocating: Bool) {
    let entropy = SystemEntropy()
    let master = SecureBytes(count: SodiumSizes.kdfKey) { entropy.fill($0) }
    let masterCopy = SecureBytes(count: SodiumSizes.kdfKey) { out in
        master.withUnsafeBytes { out.copyMemory(from: $0) }
    }
    let sender = MessageRatchet(masterKey: master, localSide: .low)
    let receiver = MessageRatchet(masterKey: masterCopy, localSide: .high)
    let plaintext = [UInt8](repeating: 0x5A, count: size)

    var sequence: UInt64 = 1
    var checksum = 0
    let wallStart = seconds(CLOCK_MONOTONIC)
    let cpuStart = seconds(CLOCK_PROCESS_CPUTIME_ID)
    var cpuNow = cpuStart
    while cpuNow - cpuStart < durationSeconds {
        for _ in 0..<batch {
            do {
                let box = try plaintext.withUnsafeBytes { try sender.sealRecord(sequence: sequence, $0) }
                if allocating {
                    let opened = try box.withUnsafeBytes { try receiver.openRecord(sequence: sequence, $0) }
                    checksum &+= opened.withUnsafeBytes { size > 0 ? Int($0[size - 1]) : 1 }
                    opened.wipe()
                } else {
                    checksum &+= try box.withUnsafeBytes { ciphertext in
                        try receiver.openRecord(sequence: sequence, ciphertext) { size > 0 ? Int($0[size - 1]) : 1 }
                    }
                }
            } catch {
                fail("seal/open failed at sequence \(sequence): \(error)")
            }
            sequence += 1
        }
        cpuNow = seconds(CLOCK_PROCESS_CPUTIME_ID)
    }
    let wall = seconds(CLOCK_MONOTONIC) - wallStart
    let cpu = cpuNow - cpuStart
    let messages = sequence - 1
    guard checksum == Int(messages) * (size > 0 ? 0x5A : 1) else { fail("plaintext mismatch") }
    let megabytesPerSecond = Double(size) * Double(messages) / cpu / 1e6
    let nanosecondsPerMessage = cpu * 1e9 / Double(messages)
    print(
        "size=\(size) messages=\(messages) wall_s=\(format(wall, 3)) cpu_s=\(format(cpu, 3))"
            + " mb_per_s_cpu=\(format(megabytesPerSecond, 2)) ns_per_message_cpu=\(format(nanosecondsPerMessage, 0))")
}

/// `value` with `digits` decimals (no Foundation: this binary links only ChatCore).
func format(_ value: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = Int((value * scale).rounded())
    guard digits > 0 else { return String(scaled) }
    let fraction = String(scaled % Int(scale))
    return "\(scaled / Int(scale)).\(String(repeating: "0", count: digits - fraction.count))\(fraction)"
}

var arguments = Array(CommandLine.arguments.dropFirst())
let allocating = arguments.first == "--allocating"
if allocating { arguments.removeFirst() }
guard arguments.count >= 2 else { fail("usage: crypto-throughput [--allocating] SECONDS SIZE...") }
guard let durationSeconds = Double(arguments[0]), durationSeconds > 0, durationSeconds <= 600 else {
    fail("SECONDS must be in (0, 600]")
}
for argument in arguments.dropFirst() {
    guard let size = Int(argument), (0...sizeMaxBytes).contains(size) else {
        fail("SIZE must be in [0, \(sizeMaxBytes)]")
    }
    run(size: size, durationSeconds: durationSeconds, allocating: allocating)
}
