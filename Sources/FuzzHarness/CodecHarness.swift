import ChatCore
import RelayCore

// The codec harnesses. Each takes arbitrary bytes and checks, with `precondition` (so that
// libFuzzer records a crash), much more than "no crash":
//
// - the relay's zero-copy validator and the full decoder agree on every input, error for error;
// - whatever decodes re-encodes to canonical bytes that decode to the same value, and encoding is
//   a fixed point (encode ∘ decode ∘ encode = encode);
// - every refusal the relay sends back is itself a frame that a client decodes to the same value,
//   within the protocol's limits (so a hostile frame cannot make the relay emit garbage).

/// The relay's parser fed one arbitrary client frame: `WireCodec.inspectClientFrame` (what the
/// relay runs) against `WireCodec.decodeClientMessage`, round trips, and the relay's reply.
public func fuzzRelayFrame(_ data: UnsafeRawBufferPointer) {
    let inspected = Result { () throws(WireError) in try WireCodec.inspectClientFrame(data) }
    let decoded = Result { () throws(WireError) in try WireCodec.decodeClientMessage(data) }
    switch (inspected, decoded) {
    case let (.failure(inspectError), .failure(decodeError)):
        require(inspectError == decodeError, "validator and decoder disagree: \(inspectError) vs \(decodeError)")
    case let (.success(frame), .success(message)):
        switch (frame, message) {
        case let (.join(room, token), .join(decodedRoom)):
            require(room == decodedRoom, "validator and decoder read different rooms")
            checkJoinRoundTrip(room, token: token)
        case (.signal, .signal):
            break
        default:
            fatalError("validator and decoder disagree on the message type")
        }
        checkRoundTrip(message)
    case let (.success(frame), .failure(error)):
        fatalError("the relay accepts a frame (\(frame)) that fails to decode: \(error)")
    case let (.failure(error), .success(message)):
        fatalError("the relay refuses a frame (\(error)) that decodes to \(message)")
    }

    // What the relay answers, on a fresh connection: a refusal for anything malformed, JOINED for
    // a JOIN, NOT_JOINED for a SIGNAL. Every answer must be a frame a client accepts.
    var rooms = RelayRooms<Int>(limits: .init(roomsMax: 1))
    let actions = rooms.receive(frame: data, from: 1)
    require(!actions.isEmpty, "the relay ignored a frame without answering")
    for action in actions {
        guard case let .send(to, reply) = action else {
            fatalError("the relay forwarded a frame from a connection that has not joined")
        }
        require(to == 1, "the relay answered another connection")
        checkRelayReply(reply)
        if case let .failure(error) = decoded {
            require(reply == .error(code: error.relayErrorCode, message: error.description),
                         "the relay's refusal does not name the decoding error")
        }
    }
    checkRoomsInvariants(rooms)
    // The same bytes as a binary frame, on a connection that negotiated binary SIGNALs.
    fuzzBinaryRelayFrame(data)
}

/// The client's parser fed one arbitrary relay frame: decode strictly, then round trip.
public func fuzzClientFrame(_ data: UnsafeRawBufferPointer) {
    let decoded = Result { () throws(WireError) in try WireCodec.decodeRelayMessage(data) }
    switch decoded {
    case let .success(message):
        checkRoundTrip(message)
    case let .failure(error):
        // Typed by construction (`throws(WireError)`); every error maps to a stable relay code
        // and a bounded, non-empty description.
        require(!error.description.isEmpty, "an empty error description")
        _ = error.relayErrorCode
    }
    // The same bytes seen as a client frame must not disturb the relay either.
    _ = try? WireCodec.inspectClientFrame(data)
    // And as a binary frame from a relay that negotiated binary SIGNALs.
    fuzzBinaryClientFrame(data)
}

/// A JOIN with its reconnect token (which `ClientMessage` leaves out) re-encodes to a frame the
/// relay reads as the same room and token, and encoding is a fixed point.
public func checkJoinRoundTrip(_ room: RoomCode, token: ReconnectToken?) {
    let encoded = WireCodec.encodeJoin(room, token: token)
    let inspected = try? WireCodec.inspectClientFrame(encoded)
    require(
        inspected == .join(room, token: token), "a re-encoded JOIN reads differently: \(String(describing: inspected))")
    if case let .join(again, againToken)? = inspected {
        require(WireCodec.encodeJoin(again, token: againToken) == encoded, "JOIN encoding is not a fixed point")
    }
    require((try? WireCodec.decodeClientMessage(encoded)) == .join(room), "a re-encoded JOIN does not decode")
}

/// `encode(message)` decodes to `message`, and encoding is a fixed point.
public func checkRoundTrip(_ message: ClientMessage) {
    let encoded = WireCodec.encode(message)
    let again: ClientMessage
    do {
        again = try WireCodec.decodeClientMessage(encoded)
    } catch {
        fatalError("re-encoded client message does not decode: \(error) \(String(decoding: encoded, as: UTF8.self))")
    }
    require(again == message, "client message round trip changed the value")
    require(WireCodec.encode(again) == encoded, "client message encoding is not a fixed point")
    require((try? WireCodec.inspectClientFrame(encoded)) != nil, "the relay refuses a canonical frame")
}

/// `encode(message)` decodes to `message`, and encoding is a fixed point.
public func checkRoundTrip(_ message: RelayMessage) {
    let encoded = WireCodec.encode(message)
    let again: RelayMessage
    do {
        again = try WireCodec.decodeRelayMessage(encoded)
    } catch {
        fatalError("re-encoded relay message does not decode: \(error) \(String(decoding: encoded, as: UTF8.self))")
    }
    require(again == message, "relay message round trip changed the value")
    require(WireCodec.encode(again) == encoded, "relay message encoding is not a fixed point")
}

/// A message the relay sends must be one that a client decodes to the same value.
public func checkRelayReply(_ reply: RelayMessage) {
    let encoded = WireCodec.encode(reply)
    require(encoded.count <= WireLimits.default.frameSizeMaxBytes, "the relay sent an oversized frame")
    let decoded: RelayMessage
    do {
        decoded = try WireCodec.decodeRelayMessage(encoded)
    } catch {
        fatalError("a client cannot decode the relay's reply \(reply): \(error)")
    }
    require(decoded == reply, "a client reads the relay's reply differently: \(reply) vs \(decoded)")
}
