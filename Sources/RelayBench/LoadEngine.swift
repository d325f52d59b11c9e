import Foundation
import SeededRandom
import Histogram
import NIOCore
import NIOWebSocket

/// Counts and latencies of one measurement window (merged across event loops at the end).
struct LoadStats: Sendable {
    var sent: UInt64 = 0
    var received: UInt64 = 0
    var receivedBytes: UInt64 = 0
    var errorFrames: UInt64 = 0
    var unexpectedCloses: UInt64 = 0
    var outOfOrder: UInt64 = 0
    /// Nanoseconds from a message's intended send time to its arrival at the peer.
    var latencyNanoseconds = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three
    )

    mutating func merge(_ other: LoadStats) {
        sent += other.sent
        received += other.received
        receivedBytes += other.receivedBytes
        errorFrames += other.errorFrames
        unexpectedCloses += other.unexpectedCloses
        outOfOrder += other.outOfOrder
        latencyNanoseconds.add(other.latencyNanoseconds)
    }
}

/// How clients decide when to send.
enum LoadMode: Sendable {
    /// Each client sends on a fixed schedule at this many messages per second; latency is measured
    /// from the scheduled time, so a stalled relay cannot hide its stall (no coordinated omission).
    case openLoop(perClientMessagesPerSecond: Double)
    /// Each client keeps up to `window` messages in flight to its peer, as fast as the relay takes them.
    case closedLoop(window: Int)
}

/// The state of one event loop's share of the clients; confined to that loop.
final class LoadWorker {
    enum Phase {
        case setup, warmup, measuring, done
    }

    let eventLoop: any EventLoop
    let mode: LoadMode
    let filler: [UInt8]
    private(set) var phase: Phase = .setup
    var stats = LoadStats()
    var maskGenerator: SplitMix64
    private var clients: [BenchClientHandler] = []
    private var dirty: [BenchClientHandler] = []
    private var timer: RepeatedTask?
    private var nextSend: Scheduled<Void>?
    private(set) var startNanoseconds: UInt64 = 0

    init(eventLoop: any EventLoop, mode: LoadMode, frameBytes: Int, seed: UInt64) {
        self.eventLoop = eventLoop
        self.mode = mode
        self.filler = BenchWire.filler(frameBytes: frameBytes)
        self.maskGenerator = SplitMix64(seed: seed)
    }

    func add(_ client: BenchClientHandler) {
        clients.append(client)
    }

    /// Start sending (warm-up first).
    func start() {
        eventLoop.preconditionInEventLoop()
        phase = .warmup
        startNanoseconds = NIODeadline.now().uptimeNanoseconds
        // Open loop: stagger the clients' schedules evenly over one message interval, so the
        // total rate arrives as an even stream rather than as bursts of every client at once
        // (which would measure queueing behind the burst, not the relay).
        var spacingNanoseconds = 0.0
        if case let .openLoop(rate) = mode, !clients.isEmpty {
            spacingNanoseconds = 1e9 / rate / Double(clients.count)
        }
        for (index, client) in clients.enumerated() {
            client.startSending(at: startNanoseconds &+ UInt64(Double(index) * spacingNanoseconds))
        }
        if case .closedLoop = mode {
            // Arrivals drive a closed loop; a 1 ms tick only restarts clients that stalled.
            let worker = NIOLoopBound(self, eventLoop: eventLoop)
            timer = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(1), delay: .milliseconds(1)) { _ in
                worker.value.tick()
            }
        }
        tick()
    }

    func beginMeasuring() {
        stats = LoadStats()
        phase = .measuring
    }

    func finish() -> LoadStats {
        phase = .done
        timer?.cancel()
        nextSend?.cancel()
        return stats
    }

    func closeAll() {
        for client in clients { client.closeChannel() }
        clients.removeAll()
    }

    private func tick() {
        guard phase == .warmup || phase == .measuring else { return }
        let now = NIODeadline.now().uptimeNanoseconds
        for client in clients { client.pump(now: now) }
        flushDirty()
        if case .openLoop = mode { scheduleNextSend(after: now) }
    }

    /// Open loop: wake exactly when the earliest client's next message is due, so a message
    /// leaves at its intended time (a fixed tick would add up to one tick to every latency).
    private func scheduleNextSend(after now: UInt64) {
        let nextDue = clients.lazy.compactMap(\.nextIntendedNanoseconds).min() ?? (now + 1_000_000)
        let worker = NIOLoopBound(self, eventLoop: eventLoop)
        nextSend = eventLoop.scheduleTask(deadline: .uptimeNanoseconds(max(nextDue, now + 20_000))) {
            worker.value.tick()
        }
    }

    func markDirty(_ client: BenchClientHandler) {
        guard !client.isDirty else { return }
        client.isDirty = true
        dirty.append(client)
    }

    func flushDirty() {
        guard !dirty.isEmpty else { return }
        for client in dirty {
            client.isDirty = false
            client.flush()
        }
        dirty.removeAll(keepingCapacity: true)
    }

    var isSending: Bool { phase == .warmup || phase == .measuring }
}

/// One benchmark client: joins its room, sends SIGNALs to its peer, times the peer's SIGNALs.
final class BenchClientHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let worker: LoadWorker
    /// Succeeds with the nanoseconds from the JOIN to PEER_FOUND.
    private let peerFound: EventLoopPromise<UInt64>
    private var peerFoundSeen = false
    private var joinSentNanoseconds: UInt64 = 0
    private var context: ChannelHandlerContext?
    /// The other client of the room (set once both are connected; same event loop).
    var peer: BenchClientHandler?
    var isDirty = false

    private var sequence: UInt64 = 0
    private var scheduleStartNanoseconds: UInt64 = 0
    /// Messages sent whose arrival at the peer has not been seen yet.
    var inFlight = 0
    private var nextExpectedFromPeer: UInt64 = 0

    /// The most messages one pump writes (bounds the time spent before reads are served).
    static let pumpBatchMax = 256

    init(worker: LoadWorker, peerFound: EventLoopPromise<UInt64>) {
        self.worker = worker
        self.peerFound = peerFound
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func join(room: String) {
        guard let context else { return }
        let frame = WebSocketFrame(
            fin: true, opcode: .text, maskKey: .random(using: &worker.maskGenerator), data: BenchWire.join(room: room)
        )
        joinSentNanoseconds = NIODeadline.now().uptimeNanoseconds
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(Self.pairingTimeoutSeconds)) {
            handler.value.pairingTimedOut()
        }
    }

    /// Seconds a client waits for PEER_FOUND after its JOIN.
    static let pairingTimeoutSeconds: Int64 = 30

    private func pairingTimedOut() {
        guard !peerFoundSeen else { return }
        peerFoundSeen = true
        peerFound.fail(ChannelError.connectTimeout(.seconds(Self.pairingTimeoutSeconds)))
    }

    func startSending(at nanoseconds: UInt64) {
        scheduleStartNanoseconds = nanoseconds
    }

    /// Open loop: when this client's next message is due (nil in closed loop, or while unwritable).
    var nextIntendedNanoseconds: UInt64? {
        guard case let .openLoop(rate) = worker.mode, let context, context.channel.isWritable else { return nil }
        return scheduleStartNanoseconds &+ UInt64(Double(sequence) * 1e9 / rate)
    }

    /// Send what the mode allows now.
    func pump(now: UInt64) {
        guard let context, worker.isSending else { return }
        switch worker.mode {
        case let .openLoop(rate):
            // A staggered schedule may start after `now`: `now &- start` would wrap to a huge
            // elapsed time, and the first pump would send a whole batch at once (which the
            // relay's rate limit then held, and every latency measured after it was the backlog's).
            guard now >= scheduleStartNanoseconds else { return }
            // Message k is due at start + k / rate (message 0 at the start itself).
            let elapsed = Double(now &- scheduleStartNanoseconds)
            let due = UInt64(elapsed * rate / 1e9) + 1
            var written = 0
            while sequence < due && written < Self.pumpBatchMax && context.channel.isWritable {
                let intended = scheduleStartNanoseconds &+ UInt64(Double(sequence) * 1e9 / rate)
                send(intended: intended, context: context)
                written += 1
            }
        case let .closedLoop(window):
            var written = 0
            while inFlight < window && written < Self.pumpBatchMax && context.channel.isWritable {
                send(intended: now, context: context)
                written += 1
            }
        }
    }

    private func send(intended: UInt64, context: ChannelHandlerContext) {
        let buffer = BenchWire.signal(
            sequence: sequence, intendedNanoseconds: intended, filler: worker.filler,
            allocator: context.channel.allocator
        )
        sequence += 1
        inFlight += 1
        if worker.phase == .measuring { worker.stats.sent += 1 }
        let frame = WebSocketFrame(
            fin: true, opcode: .text, maskKey: .random(using: &worker.maskGenerator), data: buffer)
        context.write(wrapOutboundOut(frame), promise: nil)
        worker.markDirty(self)
    }

    func flush() {
        context?.flush()
    }

    func closeChannel() {
        context?.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            received(frame.unmaskedData)
        case .ping:
            let pong = WebSocketFrame(
                fin: true, opcode: .pong, maskKey: .random(using: &worker.maskGenerator), data: frame.unmaskedData
            )
            context.write(wrapOutboundOut(pong), promise: nil)
            worker.markDirty(self)
        case .connectionClose:
            if worker.phase != .done { worker.stats.unexpectedCloses += 1 }
            context.close(promise: nil)
        default:
            break
        }
    }

    private func received(_ buffer: ByteBuffer) {
        switch BenchWire.classify(buffer) {
        case let .signal(sequence, intended):
            let now = NIODeadline.now().uptimeNanoseconds
            if worker.phase == .measuring {
                worker.stats.received += 1
                worker.stats.receivedBytes += UInt64(buffer.readableBytes)
                _ = worker.stats.latencyNanoseconds.record(now &- intended)
                if sequence != nextExpectedFromPeer { worker.stats.outOfOrder += 1 }
            }
            nextExpectedFromPeer = sequence + 1
            if let peer {
                peer.inFlight -= 1
                if case .closedLoop = worker.mode { peer.pump(now: now) }
            }
        case .peerFound:
            if !peerFoundSeen {
                peerFoundSeen = true
                peerFound.succeed(NIODeadline.now().uptimeNanoseconds &- joinSentNanoseconds)
            }
        case .error:
            worker.stats.errorFrames += 1
            // The first few, so that a run with errors says which (bench traffic only: no secret).
            if worker.stats.errorFrames <= 5 {
                let text = String(decoding: buffer.readableBytesView.prefix(200), as: UTF8.self)
                FileHandle.standardError.write(Data("relay-bench: ERROR frame received: \(text)\n".utf8))
            }
        case .other:
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        worker.flushDirty()
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            pump(now: NIODeadline.now().uptimeNanoseconds)
            worker.flushDirty()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if worker.phase != .done { worker.stats.unexpectedCloses += 1 }
        if !peerFoundSeen {
            peerFoundSeen = true
            peerFound.fail(ChannelError.alreadyClosed)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
