// Explains a FuzzSession, FuzzSessionWorld or FuzzRelayRooms input (a crash file, a corpus entry) step by step:
// each decoded step, what it did, and the first broken invariant, without stopping the process.
//
//   swift run --package-path FuzzTesting fuzz-explain FuzzSession <input-file> [--verbose]
//   swift run --package-path FuzzTesting fuzz-explain FuzzSessionWorld <input-file> [--verbose]
import ChatCore
import Foundation
import FuzzHarness

let arguments = CommandLine.arguments
guard arguments.count >= 3, let data = FileManager.default.contents(atPath: arguments[2]) else {
    print("usage: fuzz-explain FuzzSession|FuzzSessionWorld|FuzzRelayRooms <input-file> [--verbose]")
    exit(2)
}
let verbose = arguments.contains("--verbose")
let bytes = [UInt8](data)

func describe(_ frame: [UInt8]) -> String {
    if case let .signal(signal)? = try? WireCodec.decodeClientMessage(frame) {
        return "SIGNAL \(signal.kind) (\(signal.payload?.count ?? 0) bytes)"
    }
    return String(decoding: frame.prefix(80), as: UTF8.self)
}

switch arguments[1] {
case "FuzzSessionWorld":
    let steps = bytes.withUnsafeBytes { decodeSessionInput($0) }
    let world = ChatWorld()
    if verbose { world.trace = { print($0) } }
    for (index, step) in steps.enumerated() {
        world.apply(step)
        let states = world.processes.map { "\($0.side):\($0.session.state)/i\($0.instance)/\($0.framesInFlight)f" }
        print(String(format: "%4d ", index) + "\(step)  →  \(states.joined(separator: " "))  t=\(world.now)")
        if !world.violations.isEmpty {
            print("VIOLATION:\n  " + world.violations.joined(separator: "\n  "))
            exit(1)
        }
    }
    if !world.isAdversarial {
        world.heal()
        print("heal → \(world.processes.map { "\($0.session.state) pending \($0.session.pendingCount)" })")
        if !world.violations.isEmpty {
            print("VIOLATION:\n  " + world.violations.joined(separator: "\n  "))
            exit(1)
        }
    }
    print("no violation (\(steps.count) steps, adversarial: \(world.isAdversarial))")
case "FuzzSession":
    let (password, ops) = decodeSessionProgram(bytes)
    let run = SessionRun(password: password)
    if verbose { run.trace = { print($0) } }
    print("mode: \(password ? "password (CPace)" : "no password (X25519)")")
    for (index, op) in ops.enumerated() {
        run.apply(op)
        let session = run.victim
        print(String(format: "%4d ", index) + "\(op)  →  \(session.state) pending \(session.pendingCount)  t=\(run.now)")
        if !run.violations.isEmpty {
            print("VIOLATION:\n  " + run.violations.joined(separator: "\n  "))
            exit(1)
        }
    }
    print("no violation (\(ops.count) operations)")
case "FuzzRelayRooms":
    var reader = FuzzReader(bytes)
    var scenario = RoomsScenario()
    var index = 0
    while let step = RoomsStep.read(from: &reader) {
        let problems = scenario.apply(step)
        print(String(format: "%4d ", index) + "\(step)")
        if !problems.isEmpty {
            print("VIOLATION:\n  " + problems.joined(separator: "\n  "))
            exit(1)
        }
        index += 1
    }
    print("no violation")
default:
    print("unknown target \(arguments[1])")
    exit(2)
}
