import ChatNetworking
import NIOCore
import NIOPosix
import NIOWebSocket
import Synchronization

/// Messages from a connection with one waiting consumer (whose waits can time out).
final class TestInbox<Element: Sendable>: Sendable {
    private struct State {
        var messages: [Element] = []
        var ended = false
        var failure: (any Error)?
        var waiter: CheckedContinuation<Element?, Never>?
        /// Calls of `next` numbered in order (one consumer), the last that got the lock, and
        /// calls cancelled before they got it.
        var nextCallID = 0
        var lastEnteredCallID = 0
        var cancelledCallIDs: Set<Int> = []
    }

    /// Inbound messages a test may leave unread.
    static var messagesMax: Int { 1_000_000 }
    private let state = Mutex(State())

    func push(_ message: Element) {
        let waiter = state.withLock { state -> CheckedContinuation<Element?, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            precondition(state.messages.count < Self.messagesMax, "test client inbox overflow")
            state.messages.append(message)
            return nil
        }
        waiter?.resume(returning: message)
    }

    func end(_ failure: (any Error)?) {
        let waiter = state.withLock { state -> CheckedContinuation<Element?, Never>? in
            state.ended = true
            state.failure = failure
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    var failure: (any Error)? { state.withLock { $0.failure } }

    func next() async -> Element? {
        let id = state.withLock { state in
            state.nextCallID += 1
            return state.nextCallID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let immediate: Element?? = state.withLock { state in
                    state.lastEnteredCallID = id
                    if state.cancelledCallIDs.remove(id) != nil { return .some(nil) }
                    if !state.messages.isEmpty { return .some(state.messages.removeFirst()) }
                    if state.ended { return .some(nil) }
                    precondition(state.waiter == nil, "one consumer at a time")
                    state.waiter = continuation
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Element?, Never>? in
                guard let waiter = state.waiter else {
                    // Not yet waiting: make the call return at once when it gets the lock.
                    if state.lastEnteredCallID < id { state.cancelledCallIDs.insert(id) }
                    return nil
                }
                state.waiter = nil
                return waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}

/// A WebSocket test client on ChatNetworking's `WebSocketClient`: it buffers inbound messages so
/// a test can await them one at a time, each wait with a timeout.
final class TestWebSocket: Sendable {
    /// The connection ended before the expected message.
    struct Ended: Error, CustomStringConvertible {
        var expected: String
        var description: String { "connection ended while waiting for \(expected)" }
    }

    /// A message of another kind than expected arrived.
    struct Unexpected: Error, CustomStringConvertible {
        var expected: String
        var got: String
        var description: String { "expected \(expected), got \(got)" }
    }

    let url: WebSocketURL
    private let connection: WebSocketConnection
    private let inbox: TestInbox<WebSocketMessage>
    private let task: Task<Void, Never>

    private init(
        url: WebSocketURL, connection: WebSocketConnection, inbox: TestInbox<WebSocketMessage>, task: Task<Void, Never>
    ) {
        self.url = url
        self.connection = connection
        self.inbox = inbox
        self.task = task
    }

    deinit {
        task.cancel()
    }

    private struct ClientKey: Hashable {
        let caFile: String?
        let frameSizeMaxBytes: Int
        let timeoutSeconds: Double
        let subprotocols: [String]
    }

    /// One client per configuration for the whole test process (bounded by the configurations the
    /// tests use): each `WebSocketClient` loads the system trust store, about 18 ms of a debug
    /// build on the cooperative pool, and the JOIN race alone opens a thousand connections.
    private static let clients = Mutex<[ClientKey: WebSocketClient]>([:])

    private static func client(
        caFile: String?, frameSizeMaxBytes: Int, timeoutSeconds: Double, subprotocols: [String]
    ) throws -> WebSocketClient {
        let key = ClientKey(
            caFile: caFile, frameSizeMaxBytes: frameSizeMaxBytes, timeoutSeconds: timeoutSeconds,
            subprotocols: subprotocols)
        return try clients.withLock { clients in
            if let client = clients[key] { return client }
            let client = try WebSocketClient(
                configuration: WebSocketClientConfiguration(
                    caFilePath: caFile, handshakeTimeoutSeconds: Int64(timeoutSeconds),
                    frameSizeMaxBytes: frameSizeMaxBytes, subprotocols: subprotocols
                )
            )
            clients[key] = client
            return client
        }
    }

    /// The subprotocol the relay selected (nil: none).
    var subprotocol: String? { connection.subprotocol }

    /// Connect to `url` (trusting `caFile` too, for wss://), offering `subprotocols`.
    static func connect(
        _ url: String, caFile: String? = nil, frameSizeMaxBytes: Int = 1 << 20, timeoutSeconds: Double = 10,
        subprotocols: [String] = []
    ) async throws -> TestWebSocket {
        let parsed = try WebSocketURL(url)
        let client = try Self.client(
            caFile: caFile, frameSizeMaxBytes: frameSizeMaxBytes, timeoutSeconds: timeoutSeconds,
            subprotocols: subprotocols)
        let inbox = TestInbox<WebSocketMessage>()
        let (ready, readyContinuation) = AsyncThrowingStream<WebSocketConnection, any Error>.makeStream()
        let task = Task {
            do {
                try await client.withConnection(to: parsed) { connection in
                    readyContinuation.yield(connection)
                    for try await message in connection.inbound {
                        inbox.push(message)
                    }
                }
                inbox.end(nil)
                readyContinuation.finish()
            } catch {
                inbox.end(error)
                readyContinuation.finish(throwing: error)
            }
        }
        do {
            let connection = try await withTimeout(timeoutSeconds, "connection to \(url)") {
                var iterator = ready.makeAsyncIterator()
                guard let connection = try await iterator.next() else { throw Ended(expected: "the upgrade") }
                return connection
            }
            return TestWebSocket(url: parsed, connection: connection, inbox: inbox, task: task)
        } catch {
            task.cancel()
            throw error
        }
    }

    /// Send one text frame.
    func send(_ text: String) async throws {
        try await connection.send(text: text)
    }

    /// Send one binary frame.
    func send(binary bytes: [UInt8]) async throws {
        try await connection.send(binary: ByteBuffer(bytes: bytes))
    }

    /// Start the close handshake with `code`.
    func close(code: WebSocketErrorCode = .normalClosure) async throws {
        try await connection.close(code: code)
    }

    /// Drop the connection without a close handshake.
    func abort() {
        task.cancel()
    }

    /// The next inbound message; nil when the connection has ended.
    func next(timeoutSeconds: Double = 10) async throws -> WebSocketMessage? {
        try await withTimeout(timeoutSeconds, "a message on \(url)") { await self.inbox.next() }
    }

    /// The next inbound message, which must be text.
    func nextText(timeoutSeconds: Double = 10) async throws -> String {
        switch try await next(timeoutSeconds: timeoutSeconds) {
        case let .text(buffer)?: return String(buffer: buffer)
        case nil: throw Ended(expected: "a text frame")
        case let other?: throw Unexpected(expected: "a text frame", got: "\(other)")
        }
    }

    /// The next inbound message, which must be binary; its bytes.
    func nextBinary(timeoutSeconds: Double = 10) async throws -> [UInt8] {
        switch try await next(timeoutSeconds: timeoutSeconds) {
        case let .binary(buffer)?: return Array(buffer.readableBytesView)
        case nil: throw Ended(expected: "a binary frame")
        case let .text(buffer)?: throw Unexpected(expected: "a binary frame", got: "text \(String(buffer: buffer).prefix(200))")
        case let other?: throw Unexpected(expected: "a binary frame", got: "\(other)")
        }
    }

    /// Read until the close frame; returns its code and the text frames before it.
    func untilClose(timeoutSeconds: Double = 10) async throws -> (code: WebSocketErrorCode?, texts: [String]) {
        var texts: [String] = []
        for _ in 0..<100_000 {
            switch try await next(timeoutSeconds: timeoutSeconds) {
            case let .text(buffer)?: texts.append(String(buffer: buffer))
            case .binary?: continue
            case let .close(code, _)?: return (code, texts)
            case nil: throw Ended(expected: "a close frame (after \(texts.count) text frames)")
            }
        }
        throw Unexpected(expected: "a close frame", got: "100000 other frames")
    }

    /// Wait until the connection has ended (after a close frame or a TCP close).
    func waitUntilEnded(timeoutSeconds: Double = 10) async throws {
        for _ in 0..<100_000 {
            if try await next(timeoutSeconds: timeoutSeconds) == nil { return }
        }
    }
}

/// `GET path` over plain HTTP/1.1 on loopback; returns the status code and the body.
func httpGet(host: String, port: Int, path: String) async throws -> (status: Int, body: String) {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let response = try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(
            ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n\r\n")
        )
        var response = ByteBuffer()
        for try await var chunk in inbound {
            response.writeBuffer(&chunk)
            precondition(response.readableBytes < 16 << 20, "HTTP response too large for a test")
        }
        return String(buffer: response)
    }
    guard let statusLine = response.split(separator: "\r\n", maxSplits: 1).first,
        let status = statusLine.split(separator: " ").dropFirst().first.flatMap({ Int($0) }),
        let bodyStart = response.range(of: "\r\n\r\n")
    else { return (0, response) }
    return (status, String(response[bodyStart.upperBound...]))
}

/// A raw TCP connection, for tests that must misbehave below the WebSocket layer (slowloris).
/// Returns when the server closes the connection; throws `TestTimeout` if it does not.
func holdRawConnection(host: String, port: Int, sending bytes: String, timeoutSeconds: Double) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    return try await withTimeout(timeoutSeconds, "the server to close a raw connection") {
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: bytes))
            var received = ByteBuffer()
            for try await var chunk in inbound {
                received.writeBuffer(&chunk)
            }
            return String(buffer: received)
        }
    }
}
