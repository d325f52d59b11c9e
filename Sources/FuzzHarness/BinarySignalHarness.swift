import ChatCore
import ChatTesting
@_spi(Simulation) import RelayCore

// Binary SIGNALs (docs/PROTOCOL.md, "Binary SIGNALs") in the codec harnesses: every input is also
// read as a binary frame, by the relay's engine on a connection that negotiated binary SIGNALs and
// by a client.

/// One arbitrary binary frame from a connection that negotiated binary SIGNALs, through a real
/// `RelayEngine` that pairs it with a binary peer and, in a second room, a text-only one: a frame
/// `BinarySignal.inspect` accepts reaches the binary peer byte for byte and the text-only one as its
/// text form, which decodes on a client to the same kind and payload and converts back to the same
/// bytes; any other gets exactly one `ERROR` naming the inspection's error, and nothing is forwarded;
/// one whose text form (or, malformed, itself) is over the frame cap closes the connection (1009).
public func fuzzBinaryRelayFrame(_ data: UnsafeRawBufferPointer) {
    let frame = Array(data)
    let overCap = (BinarySignal.textCount(data) ?? data.count) > RelayLimits.defaults.frameSizeMaxBytes
    let unlimited = WireLimits(frameSizeMaxBytes: Int.max)
    let inspected = Result { () throws(WireError) in try BinarySignal.inspect(data, limits: unlimited) }
    for binaryPeer in [true, false] {
        var engine = RelayEngine<[UInt8]>(uncheckedLimits: .defaults, now: .zero)
        let sender = engine.accept(from: .ipv4(0x0A00_0001), now: .zero).id
        let peer = engine.accept(from: .ipv4(0x0A00_0002), now: .zero).id
        engine.upgraded(sender, binarySignals: true, now: .zero)
        engine.upgraded(peer, binarySignals: binaryPeer, now: .zero)
        let join = WireCodec.encodeJoin(try! RoomCode("FUZZ"), token: nil)  // A constant, valid room.
        engine.receive(.text(join), from: sender, now: .zero)
        engine.receive(.text(join), from: peer, now: .zero)
        while engine.nextAction() != nil {}
        engine.receive(.binary(frame), from: sender, now: .zero)
        var actions: [RelayAction<[UInt8]>] = []
        while let action = engine.nextAction() { actions.append(action) }
        if overCap {
            let closed = RelayAction<[UInt8]>.close(
                sender, .messageTooLarge, error: .frameTooLarge, disconnectWhenWritten: false)
            require(actions.first == closed, "a binary SIGNAL over the cap was answered with \(actions)")
            continue
        }
        checkBinaryAnswer(frame, inspected, actions, sender: sender, peer: peer, binaryPeer: binaryPeer)
    }
}

/// What the engine did with one binary frame, against what `inspect` says of it.
private func checkBinaryAnswer(
    _ frame: [UInt8], _ inspected: Result<Int, WireError>, _ actions: [RelayAction<[UInt8]>],
    sender: ConnectionID, peer: ConnectionID, binaryPeer: Bool
) {
    switch inspected {
    case let .failure(error):
        guard actions.count == 1, case let .send(to, .error(code, message)) = actions[0] else {
            fatalError("a malformed binary SIGNAL (\(error)) was answered with \(actions)")
        }
        require(to == sender && code == error.relayErrorCode && message == error.description,
                "the relay's refusal does not name the error")
    case .success:
        guard actions.count == 1 else { fatalError("one binary SIGNAL made \(actions)") }
        switch actions[0] {
        case let .forwardBinary(to, bytes):
            require(binaryPeer && to == peer && bytes == frame, "a binary SIGNAL was not forwarded as it is")
        case let .forward(to, text):
            require(!binaryPeer && to == peer, "a text form went to a binary peer")
            checkTextForm(frame, text)
        default:
            fatalError("a well-formed binary SIGNAL was answered with \(actions[0])")
        }
    }
}

/// The text form of a binary SIGNAL decodes to its kind and payload, and converts back to it.
private func checkTextForm(_ frame: [UInt8], _ text: [UInt8]) {
    guard case let .signal(signal)? = try? WireCodec.decodeClientMessage(text) else {
        fatalError("the text form does not decode: \(String(decoding: text, as: UTF8.self))")
    }
    let kindCount = Int(frame[0])
    require(Array(signal.kind.rawValue.utf8) == Array(frame[1...kindCount]), "the text form changed the kind")
    require(signal.payload == Array(frame[(1 + kindCount)...]) && signal.key == nil,
            "the text form changed the payload")
    require(BinarySignal.binary(fromText: text) == frame, "the text form does not convert back")
    require((try? WireCodec.inspectClientFrame(text)) == .signal, "the relay refuses its own text form")
}

/// One arbitrary binary frame as a client reads it: a SIGNAL re-encodes to the same bytes, and a
/// refusal is typed, with a description, the same the relay's inspection gives (but `unknownKind`).
public func fuzzBinaryClientFrame(_ data: UnsafeRawBufferPointer) {
    let inspected = Result { () throws(WireError) in try BinarySignal.inspect(data) }
    switch Result(catching: { () throws(WireError) in try BinarySignal.decodeRelayMessage(data) }) {
    case let .success(.signal(signal)):
        require(BinarySignal.encode(signal)?.elementsEqual(data) == true, "a binary SIGNAL does not re-encode")
        require((try? inspected.get()) != nil, "the client accepts what the relay refuses")
    case .success:
        fatalError("a binary frame decoded to something other than a SIGNAL")
    case let .failure(error):
        require(!error.description.isEmpty, "an empty error description")
        if case .unknownKind = error {
            require((try? inspected.get()) != nil, "an unknown kind the relay would refuse")
        } else {
            require(inspected == .failure(error), "client and relay refuse a binary frame differently")
        }
    }
}
