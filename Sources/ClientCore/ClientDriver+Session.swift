import ChatCore

/// What the session reports, turned into actions and display events.
extension ClientDriver {
    func process(_ outputs: [SessionOutput], now: Instant) {
        for output in outputs {
            switch output {
            case let .transmit(frame):
                if case let .up(id, _, _) = link { transmit(frame, on: id) }
            case let .stateChanged(from, to):
                switch to {
                case .userFound, .keySetup, .connected: peer = .present
                case .initial, .searching, .disconnected, .destroyed: break
                }
                show(.state(from: from, to: to))
            case let .received(message):
                show(.message(message))
            case let .delivered(allIDs):
                let ids = allIDs.filter { fileControls.removeValue(forKey: $0) == nil }
                for id in ids { pendingTexts[id] = nil }
                if !ids.isEmpty { show(.delivered(ids)) }
            case let .undeliverable(allIDs, reason):
                let ids = allIDs.filter { id in
                    guard let control = fileControls.removeValue(forKey: id) else { return true }
                    // The session's end and a peer change end every transfer themselves. Lost to the
                    // peer's goodbye: its transfer would wait for an answer for ever. (One that may
                    // have reached the leaving peer is safe to end too: it waits for nothing.)
                    if reason == .peerLeft { files.controlUndeliverable(control) }
                    return false
                }
                if ids.isEmpty { continue }
                let lost = ids.map { SentMessage(id: $0, text: pendingTexts.removeValue(forKey: $0) ?? "") }
                // Lost for good: the exit status says so (a peer restart is the peer's doing).
                if reason == .sessionEnded || reason == .peerLeft { undeliveredAtEnd += ids.count }
                show(.undeliverable(lost, reason))
            case let .notice(notice):
                sessionNotice(notice, now: now)
            case .closeTransport:
                closeLink()
            case let .file(message):
                receiveFileMessage(message, now: now)
            }
        }
        // The peer is leaving and has said all it will (its answers numbered before its goodbye
        // arrived): it ended its transfers as it began the goodbye, so ours wait for nothing.
        if session.peerHasSaidAll, !files.isIdle { files.failAll(.peerLeft) }
    }

    /// A session's frame to the relay: a SIGNAL without a key in binary form where the relay
    /// selected binary SIGNALs, anything else as the text it is.
    private func transmit(_ frame: [UInt8], on id: ConnectionID) {
        if binaryLink == id, let binary = BinarySignal.binary(fromText: frame) {
            act(.sendBinary(id, binary))
        } else {
            act(.send(id, frame))
        }
    }

    /// A file chunk or acknowledgement, now if the session is CONNECTED (false otherwise): in binary
    /// form where the relay selected binary SIGNALs, made from the signal directly (a chunk is never
    /// base64-encoded and decoded again), after whatever the session had to say first.
    func transmitFileSignal(_ signal: Signal, now: Instant) -> Bool {
        guard session.mayTransmitFileSignal else { return false }
        process(session.drainOutputs(), now: now)
        guard case let .up(id, _, _) = link else { return true }  // Lost with the link: the transfers resend.
        let binary = binaryLink == id ? BinarySignal.encode(signal) : nil
        let frame = binary ?? WireCodec.encode(ClientMessage.signal(signal))
        // Only a chunk is queued over the watermark (the window bounds chunks), as text too: a
        // window's tail dropped there cost a stall timeout per window. An acknowledgement is dropped
        // there like any other frame: it answers the relay's frames, so a relay that replays chunks
        // and reads nothing must not make this side queue answers without end.
        if signal.kind == .fileChunk {
            act(.sendFileSignal(id, frame, binary: binary != nil))
        } else {
            act(binary != nil ? .sendBinary(id, frame) : .send(id, frame))
        }
        return true
    }

    private func sessionNotice(_ notice: SessionNotice, now: Instant) {
        switch notice {
        case let .joined(_, peersPresent):
            admitted()
            peer = peersPresent >= 2 ? .present : .absent
            notify(.joined(peerPresent: peersPresent >= 2))
        case .peerFound:
            peer = .present
            notify(.peerFound)
        case .peerLeft:
            peer = .absent
            notify(peerSaidGoodbye ? .peerLeftForGood : .peerLeft)
        case .peerRestarted:
            peerSaidGoodbye = false
            notify(.peerRestarted(authentication: session.authentication, interactive: configuration.interactive))
        case let .reauthenticating(attempt, budget):
            notify(.reauthenticating(attempt: attempt, of: budget))
        case let .handshakeRefused(failure):
            notify(.handshakeRefused(failure))
        case .peerLeaving:
            peerSaidGoodbye = true
            notify(.peerLeaving)
        case .handshakeRetransmitted:
            break  // Routine on a lossy link; the state shows KEY_SETUP meanwhile.
        case let .secured(resumed, authentication, safetyNumber):
            filesSecured(now: now)
            peer = .present
            let first = session.statistics.handshakesCompleted <= 1
            notify(.secured(first: first, resumed: resumed, authentication: authentication,
                            interactive: configuration.interactive))
            show(.safetyNumber(safetyNumber, authentication: authentication))
        case let .relayError(code, message):
            notify(.relayError(code, message, verbose: configuration.verbose))
            // A chunk over the relay's frame cap: every chunk would be refused again, the link
            // closed each time (1009), the chat cut with it.
            if code == .frameTooLarge { files.failSending(.relayFrameLimit) }
        case let .frameRejected(rejection):
            // Ordinary network effects (duplicates, reordering) are routine; only what points at
            // tampering is worth the user's attention.
            if rejection.isSuspicious { notify(.suspiciousFrame(rejection, verbose: configuration.verbose)) }
        case let .ended(reason):
            files.failAll(.sessionEnded)
            pumpFiles(now: now)
            sessionEnded(reason)
        }
    }

    /// The session's last notice: say why, and decide the exit status (`settle` sends it).
    private func sessionEnded(_ reason: SessionEndReason) {
        switch reason {
        case let .authenticationFailed(failure):
            notify(.authenticationFailed(failure))  // It says that the code is spent.
        case let .incompatiblePeer(version):
            notify(.incompatiblePeer(version: version))
        case .userQuit, .relayRefused:
            // A password tag never confirmed may have been a relay's guess: re-running the code
            // would give it more (issue 12: a relay ERROR after collecting tags invited that).
            if session.passwordRunsUnconfirmed > 0 { notify(.codeSpent) }
        }
        let cause: EndCause? = if case let .ending(cause) = phase { cause } else { nil }
        notify(.ended(reason, cause: cause))
        phase = .ended(exitStatus(reason, cause: cause))
    }
}
