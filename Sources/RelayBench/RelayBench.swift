import ArgumentParser
import ChatNetworking
import Histogram
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOWebSocket

#if canImport(Glibc)
    import Glibc
#endif

/// `relay-bench`: a load generator for any relay that speaks the original protocol (§5.2).
@main
struct RelayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-bench",
        abstract: "Load generator for WebSocket relays speaking the original securechat protocol.",
        discussion: """
            Needs nothing beyond the original protocol: JOIN, PEER_FOUND and SIGNAL text frames \
            (JOINED, ERROR and the rest are counted or ignored). Run a relay with limits raised \
            for benchmarking, e.g. relay --messages-per-second 1000000 --message-burst 1000000 \
            --bytes-per-second 4294967296 --byte-burst 4294967296 --connections-max 100000 \
            --connections-per-address-max 100000 --joins-per-address-per-minute 1000000.
            """,
        subcommands: [Load.self, Idle.self],
        defaultSubcommand: Load.self
    )
}

struct CommonOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Relay URL (ws:// or wss://). Repeat it for a cluster's nodes: the two clients of each room then go to "
                + "different ones (load); connections go round robin (idle)."))
    var url: [String] = []
    @Option(help: "PEM file of extra trusted certificates for wss://.")
    var caFile: String?
    @Option(help: "Event loop threads of the load generator.")
    var threads = 1
    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func validateCommon() throws {
        guard !url.isEmpty, url.count <= 64 else { throw ValidationError("--url: give 1 to 64") }
        do {
            _ = try urls()
        } catch {
            throw ValidationError("--url: \(error)")
        }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1 to 64") }
    }
}

extension CommonOptions {
    func urls() throws -> [WebSocketURL] { try url.map { try WebSocketURL($0) } }
    /// The URLs as the report names them.
    var urlText: String { url.joined(separator: " ") }
}

/// A room code no other run will use: `PREFIX` + random base-36 + index (A-Z0-9 only).
func roomCode(prefix: String, run: UInt32, index: Int) -> String {
    "\(prefix)\(String(run, radix: 36, uppercase: true))X\(index)"
}

/// The resident set size of a process in KiB, from /proc (nil when unreadable).
func residentKiB(pid: Int32) -> Int? {
    guard let file = fopen("/proc/\(pid)/status", "r") else { return nil }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 512)
    for _ in 0..<200 {
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix("VmRSS:") {
            return Int(text.dropFirst(6).trimmingPrefix(while: { $0 == " " || $0 == "\t" }).prefix { $0.isNumber })
        }
    }
    return nil
}

/// CPU seconds (user + system) a process has used, from /proc (nil when unreadable).
func cpuSeconds(pid: Int32) -> Double? {
    guard let file = fopen("/proc/\(pid)/stat", "r") else { return nil }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 4096)
    guard fgets(&line, Int32(line.count), file) != nil else { return nil }
    let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    guard let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// CPU seconds of several processes added (nil when none is given or one is unreadable).
func cpuSeconds(pids: [Int32]) -> Double? {
    guard !pids.isEmpty else { return nil }
    var total = 0.0
    for pid in pids {
        guard let seconds = cpuSeconds(pid: pid) else { return nil }
        total += seconds
    }
    return total
}

/// A process's threads' scheduling, summed over `/proc/PID/task/*/schedstat`: milliseconds spent
/// runnable but waiting for a CPU (field 2; on a shared machine, how much of a latency figure is
/// waiting for a core rather than work) and the times a thread was put on a CPU (field 3: every
/// wakeup, and every return after a preemption; per message, what a wakeup saved is seen in).
/// A difference of two readings can be negative when a thread exited in between (its counts go
/// with it): the figures derived from it are then not reported.
struct SchedStats {
    var waitedMilliseconds = 0.0
    var timesScheduled: Int64 = 0

    static func - (end: SchedStats, start: SchedStats) -> SchedStats {
        SchedStats(
            waitedMilliseconds: end.waitedMilliseconds - start.waitedMilliseconds,
            timesScheduled: end.timesScheduled - start.timesScheduled)
    }
}

/// `schedStats` of several processes added (nil when none is given or one is unreadable).
func schedStats(pids: [Int32]) -> SchedStats? {
    guard !pids.isEmpty else { return nil }
    var total = SchedStats()
    for pid in pids {
        guard let stats = schedStats(pid: pid) else { return nil }
        total.waitedMilliseconds += stats.waitedMilliseconds
        total.timesScheduled += stats.timesScheduled
    }
    return total
}

/// `SchedStats` of one process; nil when unreadable.
func schedStats(pid: Int32) -> SchedStats? {
    guard let directory = opendir("/proc/\(pid)/task") else { return nil }
    defer { closedir(directory) }
    var waitedNanoseconds: UInt64 = 0
    var stats = SchedStats()
    var threads = 0
    // Bounded: a process has at most a few thousand threads.
    for _ in 0..<100_000 {
        guard let entry = readdir(directory) else { break }
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        guard name.first?.isNumber == true, let file = fopen("/proc/\(pid)/task/\(name)/schedstat", "r") else {
            continue
        }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        guard fgets(&line, Int32(line.count), file) != nil else { continue }
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard fields.count >= 3, let waited = UInt64(fields[1]), let scheduled = Int64(fields[2]) else { continue }
        waitedNanoseconds += waited
        stats.timesScheduled += scheduled
        threads += 1
    }
    guard threads > 0 else { return nil }
    stats.waitedMilliseconds = Double(waitedNanoseconds) / 1e6
    return stats
}

/// This process's CPU seconds (user + system).
func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
        + Double(usage.ru_stime.tv_usec) / 1e6
}

// MARK: - Load

struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "R rooms x 2 clients exchanging SIGNALs; reports messages/s, MB/s, latency percentiles and errors."
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Rooms (each with two clients sending to each other).")
    var rooms = 10
    @Option(help: "Size of each SIGNAL frame in bytes (WebSocket payload, JSON text).")
    var messageBytes = 256
    @Option(help: "Open loop: total messages per second across all clients (latency from the schedule).")
    var rate: Int?
    @Option(help: "Closed loop (when no --rate): messages in flight per client.")
    var window = 32
    @Option(help: "Seconds measured.")
    var durationSeconds = 10
    @Option(help: "Seconds of load before measuring.")
    var warmupSeconds = 2
    @Option(
        help: ArgumentHelp(
            "PID of the relay, to report its CPU time per forwarded message (read from /proc). Repeat it for a "
                + "cluster's nodes: their CPU times are added."))
    var relayPid: [Int32] = []
    @Option(help: "PID of a cluster's redis-server, to report its CPU time per forwarded message (read from /proc).")
    var redisPid: Int32?

    func validate() throws {
        try common.validateCommon()
        guard (1...50_000).contains(rooms) else { throw ValidationError("--rooms must be 1 to 50000") }
        guard messageBytes >= BenchWire.frameBytesMin && messageBytes <= 16 << 20 else {
            throw ValidationError("--message-bytes must be \(BenchWire.frameBytesMin) to 16 MiB")
        }
        if let rate { guard rate >= 1 else { throw ValidationError("--rate must be positive") } }
        guard (1...100_000).contains(window) else { throw ValidationError("--window must be 1 to 100000") }
        guard (1...3600).contains(durationSeconds) else {
            throw ValidationError("--duration-seconds must be 1 to 3600")
        }
        guard (0...600).contains(warmupSeconds) else { throw ValidationError("--warmup-seconds must be 0 to 600") }
    }

    func run() async throws {
        _ = try? FileDescriptorLimit.raise()
        let urls = try common.urls()
        let clientCount = rooms * 2
        let mode: LoadMode =
            rate.map { .openLoop(perClientMessagesPerSecond: Double($0) / Double(clientCount)) }
            ?? .closedLoop(window: window)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: common.threads)
        let loops = Array(group.makeIterator())
        let frameBytes = messageBytes
        var workers: [NIOLoopBound<LoadWorker>] = []
        for (index, loop) in loops.enumerated() {
            workers.append(
                try await loop.submit {
                    NIOLoopBound(
                        LoadWorker(eventLoop: loop, mode: mode, frameBytes: frameBytes, seed: UInt64(index) &+ 0x5EED),
                        eventLoop: loop
                    )
                }.get()
            )
        }
        let configuration = WebSocketClientConfiguration(
            caFilePath: common.caFile, frameSizeMaxBytes: max(1 << 20, messageBytes * 2))
        let clientsPerLoop = try loops.map { try WebSocketClient(configuration: configuration, eventLoopGroup: $0) }
        let run = UInt32.random(in: 0...UInt32.max)

        // Connect and pair every room's two clients on the same event loop.
        var peerFoundFutures: [EventLoopFuture<UInt64>] = []
        var connectFailures = 0
        for room in 0..<rooms {
            let slot = room % loops.count
            let worker = workers[slot]
            let loop = loops[slot]
            var pair: [NIOLoopBound<BenchClientHandler>] = []
            for client in 0..<2 {
                let promise = loop.makePromise(of: UInt64.self)
                // With several URLs the room's two clients are on different nodes.
                let url = urls[(room + client) % urls.count]
                do {
                    let handler = try await clientsPerLoop[slot].connect(to: url) { channel in
                        let handler = BenchClientHandler(worker: worker.value, peerFound: promise)
                        try channel.pipeline.syncOperations.addHandler(handler)
                        return NIOLoopBound(handler, eventLoop: channel.eventLoop)
                    }
                    pair.append(handler)
                    peerFoundFutures.append(promise.futureResult)
                } catch {
                    connectFailures += 1
                    promise.fail(error)
                }
            }
            guard pair.count == 2 else { continue }
            let code = roomCode(prefix: "BENCH", run: run, index: room)
            let (firstBound, secondBound) = (pair[0], pair[1])
            try await loop.submit {
                let (first, second) = (firstBound.value, secondBound.value)
                first.peer = second
                second.peer = first
                worker.value.add(first)
                worker.value.add(second)
                first.join(room: code)
                second.join(room: code)
            }.get()
        }
        // Each client fails its own PEER_FOUND promise after 30 s (see BenchClientHandler.join).
        var pairingFailures = 0
        var joinLatencies: [UInt64] = []
        for future in peerFoundFutures {
            do {
                joinLatencies.append(try await future.get())
            } catch {
                pairingFailures += 1
            }
        }

        for worker in workers { try await worker.eventLoop.submit { worker.value.start() }.get() }
        try await Task.sleep(for: .seconds(warmupSeconds))
        for worker in workers { try await worker.eventLoop.submit { worker.value.beginMeasuring() }.get() }
        let measureStart = ContinuousClock.now
        let relayCPUStart = cpuSeconds(pids: relayPid)
        let redisCPUStart = redisPid.flatMap(cpuSeconds)
        let ownCPUStart = ownCPUSeconds()
        let relaySchedStart = schedStats(pids: relayPid)
        let redisSchedStart = redisPid.flatMap(schedStats)
        let ownSchedStart = schedStats(pid: getpid())
        try await Task.sleep(for: .seconds(durationSeconds))
        var total = LoadStats()
        for worker in workers {
            total.merge(try await worker.eventLoop.submit { worker.value.finish() }.get())
        }
        let elapsed = ContinuousClock.now - measureStart
        let ownCPU = ownCPUSeconds() - ownCPUStart
        let relayCPU = cpuSeconds(pids: relayPid).flatMap { end in relayCPUStart.map { end - $0 } }
        let redisCPU = redisPid.flatMap(cpuSeconds).flatMap { end in redisCPUStart.map { end - $0 } }
        let relaySched = schedStats(pids: relayPid).flatMap { end in relaySchedStart.map { end - $0 } }
        let redisSched = redisPid.flatMap(schedStats).flatMap { end in redisSchedStart.map { end - $0 } }
        let ownSched = schedStats(pid: getpid()).flatMap { end in ownSchedStart.map { end - $0 } }
        for worker in workers { try await worker.eventLoop.submit { worker.value.closeAll() }.get() }
        try await group.shutdownGracefully()

        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let report = LoadReport(
            url: common.urlText, rooms: rooms, clients: clientCount,
            frameBytes: BenchWire.frameBytesMin
                + BenchWire.filler(frameBytes: messageBytes).count,
            mode: rate.map { "open loop at \($0) msg/s" } ?? "closed loop, window \(window)",
            seconds: seconds, stats: total, connectFailures: connectFailures, pairingFailures: pairingFailures,
            relayCPUSeconds: relayCPU, redisCPUSeconds: redisCPU, ownCPUSeconds: ownCPU,
            relaySched: relaySched, redisSched: redisSched, ownSched: ownSched,
            joinToPeerFoundNanoseconds: joinLatencies.sorted()
        )
        print(common.json ? report.json : report.text)
    }
}

struct LoadReport {
    var url: String
    var rooms: Int
    var clients: Int
    var frameBytes: Int
    var mode: String
    var seconds: Double
    var stats: LoadStats
    var connectFailures: Int
    var pairingFailures: Int
    /// Summed over every `--relay-pid`.
    var relayCPUSeconds: Double?
    var redisCPUSeconds: Double?
    var ownCPUSeconds: Double
    /// Scheduling during the measurement: the relays (summed), redis-server, the load generator.
    var relaySched: SchedStats?
    var redisSched: SchedStats?
    var ownSched: SchedStats?
    /// Every paired client's time from its JOIN to its PEER_FOUND, sorted (rooms set up one at a
    /// time, before the load).
    var joinToPeerFoundNanoseconds: [UInt64] = []

    func joinMicroseconds(_ percentile: Double) -> Double {
        guard !joinToPeerFoundNanoseconds.isEmpty else { return 0 }
        let index = min(joinToPeerFoundNanoseconds.count - 1,
                        Int((percentile / 100 * Double(joinToPeerFoundNanoseconds.count)).rounded(.up)) - 1)
        return Double(joinToPeerFoundNanoseconds[max(0, index)]) / 1000
    }

    /// Relay CPU microseconds per forwarded message (each forwarded message is one received here).
    var relayMicrosecondsPerMessage: Double? {
        relayCPUSeconds.map { stats.received == 0 ? 0 : $0 * 1e6 / Double(stats.received) }
    }
    /// redis-server's CPU microseconds per forwarded message (in a split run each one crossed it).
    var redisMicrosecondsPerMessage: Double? {
        redisCPUSeconds.map { stats.received == 0 ? 0 : $0 * 1e6 / Double(stats.received) }
    }
    var ownMicrosecondsPerMessage: Double { stats.received == 0 ? 0 : ownCPUSeconds * 1e6 / Double(stats.received) }
    var relayRunQueueWaitMilliseconds: Double? { relaySched.flatMap(Self.waited) }
    var ownRunQueueWaitMilliseconds: Double? { ownSched.flatMap(Self.waited) }

    private static func waited(_ sched: SchedStats) -> Double? {
        sched.waitedMilliseconds >= 0 ? sched.waitedMilliseconds : nil
    }
    /// Times a thread was put on a CPU (a wakeup, or a return after a preemption) per forwarded
    /// message: relays (summed), redis-server.
    var relayScheduledPerMessage: Double? { relaySched.flatMap(scheduledPerMessage) }
    var redisScheduledPerMessage: Double? { redisSched.flatMap(scheduledPerMessage) }

    private func scheduledPerMessage(_ sched: SchedStats) -> Double? {
        sched.timesScheduled >= 0 ? perMessage(Double(sched.timesScheduled)) : nil
    }

    private func perMessage(_ count: Double) -> Double { stats.received == 0 ? 0 : count / Double(stats.received) }

    var messagesPerSecond: Double { Double(stats.received) / seconds }
    var megabytesPerSecond: Double { Double(stats.receivedBytes) / seconds / 1e6 }
    func percentileMicroseconds(_ percentile: Double) -> Double {
        stats.latencyNanoseconds.totalCount == 0
            ? 0 : Double(stats.latencyNanoseconds.valueAtPercentile(percentile)) / 1000
    }
    var errors: UInt64 {
        stats.errorFrames + stats.unexpectedCloses + UInt64(connectFailures) + UInt64(pairingFailures)
    }

    var text: String {
        func format(_ value: Double, _ digits: Int = 1) -> String {
            let scale = pow(10.0, Double(digits))
            return String((value * scale).rounded() / scale)
        }
        return """
            relay-bench load: \(url)
              \(rooms) rooms x 2 clients, \(frameBytes)-byte frames, \(mode), \(format(seconds, 2)) s measured
              messages/s   \(format(messagesPerSecond, 0))  (received; sent \(stats.sent))
              MB/s         \(format(megabytesPerSecond, 2))
              latency us   p50 \(format(percentileMicroseconds(50))) p99 \(format(percentileMicroseconds(99))) \
            p99.9 \(format(percentileMicroseconds(99.9))) max \(format(percentileMicroseconds(100)))
              JOIN us      p50 \(format(joinMicroseconds(50))) p99 \(format(joinMicroseconds(99))) \
            max \(format(joinMicroseconds(100))) (JOIN to PEER_FOUND, every client)
              CPU us/msg   relay \(relayMicrosecondsPerMessage.map { format($0, 2) } ?? "n/a (no --relay-pid)"), \
            load generator \(format(ownMicrosecondsPerMessage, 2))\
            \(redisMicrosecondsPerMessage.map { ", redis-server \(format($0, 2))" } ?? "")
              CPU wait ms  relay \(relayRunQueueWaitMilliseconds.map { format($0, 0) } ?? "n/a"), \
            load generator \(ownRunQueueWaitMilliseconds.map { format($0, 0) } ?? "n/a") (runnable, waiting for a core)
              woken /msg   relay \(relayScheduledPerMessage.map { format($0, 2) } ?? "n/a")\
            \(redisScheduledPerMessage.map { ", redis-server \(format($0, 2))" } ?? "") (times put on a CPU per message)
              errors       \(errors) (ERROR frames \(stats.errorFrames), unexpected closes \(stats.unexpectedCloses), \
            connect failures \(connectFailures), unpaired \(pairingFailures), out of order \(stats.outOfOrder))
            """
    }

    var json: String {
        """
        {"url":"\(url)","rooms":\(rooms),"clients":\(clients),"frame_bytes":\(frameBytes),"mode":"\(mode)",\
        "seconds":\(seconds),"messages_sent":\(stats.sent),"messages_received":\(stats.received),\
        "messages_per_second":\(messagesPerSecond),"megabytes_per_second":\(megabytesPerSecond),\
        "latency_us":{"p50":\(percentileMicroseconds(50)),"p99":\(percentileMicroseconds(99)),\
        "p99_9":\(percentileMicroseconds(99.9)),"max":\(percentileMicroseconds(100))},\
        "join_to_peer_found_us":{"p50":\(joinMicroseconds(50)),"p99":\(joinMicroseconds(99)),\
        "max":\(joinMicroseconds(100))},\
        "relay_cpu_us_per_message":\(relayMicrosecondsPerMessage ?? -1),\
        "load_generator_cpu_us_per_message":\(ownMicrosecondsPerMessage),\
        "redis_cpu_us_per_message":\(redisMicrosecondsPerMessage ?? -1),\
        "relay_run_queue_wait_ms":\(relayRunQueueWaitMilliseconds ?? -1),\
        "load_generator_run_queue_wait_ms":\(ownRunQueueWaitMilliseconds ?? -1),\
        "relay_scheduled_per_message":\(relayScheduledPerMessage ?? -1),\
        "redis_scheduled_per_message":\(redisScheduledPerMessage ?? -1),\
        "errors":{"error_frames":\(stats.errorFrames),"unexpected_closes":\(stats.unexpectedCloses),\
        "connect_failures":\(connectFailures),"unpaired":\(pairingFailures),"out_of_order":\(stats.outOfOrder)}}
        """
    }
}

// MARK: - Idle

struct Idle: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open N connections, hold them, and report how many stayed up (and the relay's RSS)."
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Connections to open.")
    var connections = 1000
    @Option(help: "Seconds to hold them once all are open.")
    var holdSeconds = 30
    @Option(help: "Handshakes in progress at once.")
    var connectConcurrency = 128
    @Flag(inversion: .prefixedNo, help: "JOIN the connections pairwise into rooms (N/2 rooms).")
    var join = true
    @Option(help: "PID of the relay, to report its resident memory (read from /proc).")
    var relayPid: Int32?

    func validate() throws {
        try common.validateCommon()
        guard (1...1_000_000).contains(connections) else { throw ValidationError("--connections must be 1 to 1000000") }
        guard (0...86_400).contains(holdSeconds) else { throw ValidationError("--hold-seconds must be 0 to 86400") }
        guard (1...10_000).contains(connectConcurrency) else {
            throw ValidationError("--connect-concurrency must be 1 to 10000")
        }
    }

    func run() async throws {
        let limits = try? FileDescriptorLimit.raise()
        let urls = try common.urls()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: common.threads)
        let client = try WebSocketClient(
            configuration: WebSocketClientConfiguration(
                caFilePath: common.caFile, connectTimeoutSeconds: 30,
                handshakeTimeoutSeconds: 30),
            eventLoopGroup: group
        )
        let tally = IdleTally()
        let run = UInt32.random(in: 0...UInt32.max)
        let relayRSSBefore = relayPid.flatMap(residentKiB)
        let connectStart = ContinuousClock.now
        let join = self.join
        let total = connections

        // Connect with a bounded number of handshakes in flight.
        let channels: [any Channel] = try await withThrowingTaskGroup(of: (any Channel)?.self) { group in
            var opened: [any Channel] = []
            opened.reserveCapacity(total)
            var next = 0
            func launch(_ index: Int) {
                group.addTask {
                    do {
                        let channel = try await client.connect(to: urls[index % urls.count]) { channel in
                            try channel.pipeline.syncOperations.addHandler(IdleClientHandler(tally: tally))
                            return channel
                        }
                        if join {
                            let room = roomCode(prefix: "IDLE", run: run, index: index / 2)
                            let frame = WebSocketFrame(
                                fin: true, opcode: .text, maskKey: .random(), data: BenchWire.join(room: room)
                            )
                            channel.writeAndFlush(frame, promise: nil)
                        }
                        return channel
                    } catch {
                        tally.failed(String(describing: error))
                        return nil
                    }
                }
            }
            while next < min(connectConcurrency, total) {
                launch(next)
                next += 1
            }
            while let result = try await group.next() {
                if let result { opened.append(result) }
                if next < total {
                    launch(next)
                    next += 1
                }
            }
            return opened
        }
        let connectSeconds = (ContinuousClock.now - connectStart).components.seconds
        let relayRSSOpen = relayPid.flatMap(residentKiB)
        try await Task.sleep(for: .seconds(holdSeconds))
        let relayRSSHeld = relayPid.flatMap(residentKiB)
        let closedEarly = tally.closed
        let closeCodes = tally.closeCodes
        let stillUp = channels.filter(\.isActive).count
        let failures = tally.failures
        for channel in channels { channel.close(promise: nil) }
        try await group.shutdownGracefully()

        let rss = { (kib: Int?) in kib.map { "\($0 / 1024) MiB" } ?? "n/a" }
        let closeCodesJSON = closeCodes.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }
            .joined(separator: ",")
        if common.json {
            print(
                """
                {"url":"\(common.urlText)","requested":\(total),"opened":\(channels.count),"still_up":\(stillUp),\
                "closed_early":\(closedEarly),"close_codes":{\(closeCodesJSON)},\
                "failed":\(failures.values.reduce(0, +)),"hold_seconds":\(holdSeconds),\
                "connect_seconds":\(connectSeconds),"relay_rss_kib_before":\(relayRSSBefore ?? -1),\
                "relay_rss_kib_open":\(relayRSSOpen ?? -1),"relay_rss_kib_held":\(relayRSSHeld ?? -1)}
                """
            )
        } else {
            print(
                """
                relay-bench idle: \(common.urlText)
                  requested \(total), opened \(channels.count) in \(connectSeconds) s, \
                still up after \(holdSeconds) s: \
                \(stillUp), closed early \(closedEarly)
                  relay RSS: before \(rss(relayRSSBefore)), all open \(rss(relayRSSOpen)), \
                after holding \(rss(relayRSSHeld))
                  open-files limit of the load generator: \(limits.map { "\($0.soft)" } ?? "unknown")
                """
            )
            for (code, count) in closeCodes.sorted(by: { $0.key < $1.key }) {
                print("  closed by the relay with code \(code): \(count)")
            }
            for (reason, count) in failures.sorted(by: { $0.key < $1.key }) {
                print("  failed: \(count) x \(reason)")
            }
        }
    }
}

/// Counts shared by the idle connections' handlers (several event loops).
final class IdleTally: Sendable {
    private let state = NIOLockedValueBox((closed: 0, failures: [String: Int](), closeCodes: [String: Int]()))

    func closedOne() { state.withLockedValue { $0.closed += 1 } }

    func closedBy(code: String) {
        state.withLockedValue { state in
            let key = state.closeCodes.count < 32 ? code : "other"
            state.closeCodes[key, default: 0] += 1
        }
    }

    var closeCodes: [String: Int] { state.withLockedValue { $0.closeCodes } }

    func failed(_ reason: String) {
        state.withLockedValue { state in
            // Bound the distinct reasons kept.
            let key = state.failures.count < 32 ? String(reason.prefix(120)) : "other"
            state.failures[key, default: 0] += 1
        }
    }

    var closed: Int { state.withLockedValue { $0.closed } }
    var failures: [String: Int] { state.withLockedValue { $0.failures } }
}

/// Holds an idle connection: answers pings, notes when the connection ends.
final class IdleClientHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let tally: IdleTally

    init(tally: IdleTally) {
        self.tally = tally
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .connectionClose:
            // The relay ended this connection (a cap, an idle timeout): note why, answer, close.
            tally.closedBy(code: frame.closeStatus.code.map { String(UInt16(webSocketErrorCode: $0)) } ?? "none")
            let answer = WebSocketFrame.close(code: frame.closeStatus.code ?? .normalClosure, masked: true)
            context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        tally.closedOne()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
