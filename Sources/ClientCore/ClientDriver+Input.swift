import ChatCore

/// The user's side: lines, commands, end of input.
extension ClientDriver {
    /// The interactive commands.
    public static let helpLines = [
        "Commands:",
        "  /help     this list",
        "  /verify   show the safety number to compare with your peer (out of band: phone, in person)",
        "  /verify N confirm that the number your peer read out is N (all 60 digits)",
        "  /status   the session, the room, the relay and how it is reached (direct, via Tor, via a proxy)",
        "  /clear    clear the screen",
        "  /send PATH      offer a file (end-to-end encrypted, checked by its BLAKE2b-256 hash)",
        "  /accept [DIR]   receive the file offered (into DIR, else --accept-files, else here)",
        "  /reject   refuse the file offered; /cancel stops the oldest transfer, either way",
        "  /quit     leave, saying goodbye (asks again if messages are not yet confirmed); also Ctrl-D, Ctrl-C",
        "  //text    send a message that starts with /",
        "Anything else is sent to the peer, end-to-end encrypted.",
    ]

    func userLine(_ text: String, now: Instant) {
        guard configuration.interactive else {
            if !text.isEmpty { send(text, now: now) }  // A blank line in a script is not a message.
            return
        }
        let line = text.trimmingASCIIWhitespace()
        if line.isEmpty { return }
        if line.hasPrefix("//") {
            // "//x" sends "/x": the first slash goes, the rest (leading blanks too) is sent as typed.
            var message = text
            if let slash = message.firstIndex(of: "/") { message.remove(at: slash) }
            send(message, now: now)
            return
        }
        guard line.hasPrefix("/") else {
            if case .running(quitAsked: true) = phase { phase = .running(quitAsked: false) }
            send(text, now: now)
            return
        }
        command(line, now: now)
    }

    private func command(_ line: String, now: Instant) {
        let words = line.split(separator: " ", maxSplits: 1)
        let command = words.first.map(String.init) ?? line
        switch command.lowercased() {
        case "/help":
            show(.info(Self.helpLines))
        case "/quit", "/exit":
            quitCommand(now: now)
        case "/verify":
            if words.count > 1 {
                compareSafetyNumber(String(words[1]))
            } else {
                show(.info(verificationReport()))
            }
        case "/clear":
            show(.clear)
        case "/status":
            show(.info(ClientNotice.statusReport(status)))
        case "/send":
            if words.count > 1 {
                offerFile(path: String(words[1]).trimmingASCIIWhitespace(), now: now)
            } else {
                notify(.fileProblem("/send needs a path: /send PATH"))
            }
        case "/accept":
            acceptCommand(words.count > 1 ? String(words[1]).trimmingASCIIWhitespace() : nil, now: now)
        case "/reject":
            rejectCommand(now: now)
        case "/cancel":
            cancelCommand(now: now)
        default:
            notify(.unknownCommand(command))
        }
    }

    /// `/quit`: with messages the peer has not confirmed, only the second one in a row leaves
    /// (at once); with none, the client says goodbye (briefly bounded) so that what the peer is
    /// sending still arrives.
    private func quitCommand(now: Instant) {
        let pending = session.pendingCount
        if pending > 0, case .running(quitAsked: false) = phase {
            phase = .running(quitAsked: true)
            notify(.confirmQuit(pending: pending))
            return
        }
        leaveInteractively(now: now)
    }

    /// Leave from the keyboard: goodbye when nothing of ours is pending, else at once.
    func leaveInteractively(now: Instant) {
        guard session.pendingCount == 0 else {
            quit(.userQuit, now: now)
            return
        }
        let bound = min(configuration.goodbyeTimeout, configuration.drainTimeout)
        leave(deadline: now.advanced(by: bound), now: now)
    }

    /// Hand a message to the session and report whether it was accepted.
    func send(_ text: String, now: Instant) {
        switch phase {
        case .running, .draining: break
        case .leaving, .ending, .ended, .exited:
            show(.refused("the session is ending; not sent"))
            return
        }
        let (answer, outputs) = sessionSend(text, now: now)
        switch answer {
        case let .success(id):
            pendingTexts[id] = text
            show(.sent(SentMessage(id: id, text: text), queued: session.state != .connected))
        case let .failure(refusal):
            show(.refused("not sent: \(refusal)"))
        }
        process(outputs, now: now)
    }

    /// The one call to the session's send: its answer, and what the session has to say after it
    /// (the frames it sealed, a state change).
    func sessionSend(_ text: String, now: Instant) -> (Result<MessageID, SendRefusal>, [SessionOutput]) {
        (session.send(text, now: now), session.drainOutputs())
    }

    func endOfInput(now: Instant) {
        guard !configuration.interactive else {
            leaveInteractively(now: now)  // Ctrl-D.
            return
        }
        guard case .running = phase else { return }
        phase = .draining(deadline: now.advanced(by: configuration.drainTimeout))
        let pending = session.pendingCount
        if pending > 0 { notify(.draining(pending: pending, timeout: configuration.drainTimeout)) }
    }

    /// The verification report for `/verify`: the safety number, and what comparing it proves.
    public func verificationReport() -> [String] {
        guard let number = session.safetyNumber else { return [ClientNotice.noSafetyNumberYet] }
        return ClientNotice.verificationReport(number, authentication: session.authentication)
    }

    /// `/verify NUMBER`: compare the number the peer read out with ours.
    private func compareSafetyNumber(_ typed: String) {
        guard let number = session.safetyNumber else {
            show(.info([ClientNotice.noSafetyNumberYet]))
            return
        }
        if number.matches(typed) {
            verifiedNumber = number
            notify(.verified)
        } else {
            verifiedNumber = nil
            notify(.verifyMismatch)
        }
    }
}
