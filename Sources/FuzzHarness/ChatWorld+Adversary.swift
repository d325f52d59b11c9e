import ChatCore
import ChatTesting

/// The fuzz world's hostile steps: a relay or network that drops, duplicates, reorders, alters,
/// truncates, injects and replays frames. Any of them makes the run adversarial (liveness is then
/// not owed); the safety invariants still hold.
extension ChatWorld {
    /// Which link of a side an adversarial step acts on.
    public enum Link: Int, Sendable {
        case up = 0
        case down = 1

        var direction: World.Direction { self == .up ? .toRelay : .toClient }
    }

    private func hostile(_ body: () -> Void) {
        checker.isAdversarial = true
        body()
        checker.checkAccounting()
    }

    public func drop(_ side: Int, _ link: Link, index: Int) {
        hostile { world.dropHeld(side, link.direction, index: index) }
    }

    public func duplicate(_ side: Int, _ link: Link, index: Int) {
        hostile { world.alterHeld(side, link.direction, index: index, duplicate: true) { $0 } }
    }

    /// Move one frame to the back of its queue.
    public func reorder(_ side: Int, _ link: Link, index: Int) {
        hostile { world.moveHeldToBack(side, link.direction, index: index) }
    }

    /// XOR one byte of a frame's text.
    public func tamperBytes(_ side: Int, _ link: Link, index: Int, position: Int, mask: UInt8) {
        hostile {
            world.alterHeld(side, link.direction, index: index) { bytes in
                guard !bytes.isEmpty else { return nil }
                var altered = bytes
                altered[position % altered.count] ^= mask
                return altered
            }
        }
    }

    /// XOR one byte inside a SIGNAL's decoded `payload` (or `key`) and re-encode it, so the change
    /// reaches the session's handshake and decryption code instead of its JSON parser.
    public func tamperSignal(_ side: Int, _ link: Link, index: Int, position: Int, mask: UInt8, key: Bool) {
        hostile {
            world.alterHeld(side, link.direction, index: index) { bytes in
                Self.tamperedSignal(bytes, toRelay: link == .up, position: position, mask: mask, key: key)
            }
        }
    }

    private static func tamperedSignal(_ bytes: [UInt8], toRelay: Bool, position: Int, mask: UInt8, key: Bool)
        -> [UInt8]?
    {
        let decoded: Signal
        if toRelay {
            guard case let .signal(signal)? = try? WireCodec.decodeClientMessage(bytes) else { return nil }
            decoded = signal
        } else {
            guard case let .signal(signal)? = try? WireCodec.decodeRelayMessage(bytes) else { return nil }
            decoded = signal
        }
        var changed = decoded
        if key {
            guard var field = changed.key, !field.isEmpty else { return nil }
            field[position % field.count] ^= mask
            changed.key = field
        } else {
            guard var field = changed.payload, !field.isEmpty else { return nil }
            field[position % field.count] ^= mask
            changed.payload = field
        }
        return toRelay ? WireCodec.encode(ClientMessage.signal(changed)) : WireCodec.encode(RelayMessage.signal(changed))
    }

    public func truncate(_ side: Int, _ link: Link, index: Int, length: Int) {
        hostile { world.alterHeld(side, link.direction, index: index) { Array($0.prefix(length)) } }
    }

    /// Hand side `side` arbitrary bytes as if from the relay.
    public func inject(_ side: Int, _ frame: [UInt8]) {
        hostile { world.injectToClient(side, frame) }
    }

    /// Hand side `side` a frame seen earlier on any relay → client link.
    public func replay(_ side: Int, index: Int) {
        guard !history.isEmpty else { return }
        inject(side, history[index % history.count])
    }
}
