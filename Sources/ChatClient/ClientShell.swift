import CClientSupport
import ChatCore
import ClientCore

#if canImport(Glibc)
import Glibc
#endif

/// The client's event loop: one thread, one `poll(2)` over stdin, the mailbox (network events)
/// and a signalfd, with the driver's next deadline as the timeout.
///
/// Everything that is not Sendable (the session, libedit, the terminal) lives on this thread,
/// so no lock guards them; the network runs on SwiftNIO's threads and reaches this one only
/// through the `Mailbox`. Signals arrive through the signalfd as ordinary events, never in a
/// handler, so quitting on SIGTERM runs the same code as `/quit`: the session wipes its keys,
/// the terminal is restored, and only then does the process exit.
final class ClientShell {
    private let driver: ClientDriver
    private let renderer: any ClientRenderer
    private let terminal: TerminalUI?
    private let lineReader: LineReader?
    private let connector: any RelayConnector
    private let mailbox: Mailbox
    private let signalFD: Int32
    private let lockedMemory: LockedMemoryWatch
    private var links: [(id: ConnectionID, link: any RelayLink)] = []
    private var exitStatus: ClientExitStatus?
    private var inputOpen = true
    /// Links asked to close whose end has not been reported yet (bounded: every open link is in
    /// `links`, at most `linksMax`, and each closing one leaves this list when its end arrives).
    private var closingLinks: [ConnectionID] = []
    /// The last links whose end was reported (a link can end before the driver asks to close it).
    private var endedLinks: [ConnectionID] = []
    private static let endedLinksKept = 16

    /// At exit, how long to let closing links finish their WebSocket closing handshake (each
    /// gives up after `RelayFrameHandler.closingHandshakeSeconds`), so the last frames reach the
    /// relay before the process ends.
    static let exitLingerMilliseconds: Int64 = 5_500

    /// Most links kept at once: the current one and one being closed.
    private static let linksMax = 4

    init(driver: ClientDriver, renderer: any ClientRenderer, terminal: TerminalUI?, lineReader: LineReader?,
         connector: any RelayConnector, mailbox: Mailbox, signalFD: Int32, lockedMemory: LockedMemoryWatch) {
        precondition((terminal == nil) != (lineReader == nil), "exactly one input source")
        self.driver = driver
        self.renderer = renderer
        self.terminal = terminal
        self.lineReader = lineReader
        self.connector = connector
        self.mailbox = mailbox
        self.signalFD = signalFD
        self.lockedMemory = lockedMemory
    }

    /// Run until the driver exits; returns the exit status. The terminal is restored on return.
    func run() -> ClientExitStatus {
        driver.handle(.start, now: MonotonicClock.now())
        perform()
        // Bounded by the session's lifetime: each round either handles an event or a deadline,
        // and the driver exits on /quit, end of input, a signal, or after giving up.
        while exitStatus == nil {
            let inputFD = terminal != nil ? Int32(0) : lineReader!.fd
            var descriptors = [
                pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: mailbox.readFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inputOpen ? inputFD : -1, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&descriptors, nfds_t(descriptors.count), timeoutMilliseconds())
            if ready < 0 && errno != EINTR {
                driver.handle(.signal(SIGTERM), now: MonotonicClock.now())
                perform()
                break
            }
            if descriptors[0].revents != 0 { handleSignals() }
            if descriptors[1].revents != 0 {
                for event in mailbox.take() {
                    noteLinkEnd(event)
                    driver.handle(event, now: MonotonicClock.now())
                    perform()
                }
                mailbox.processed()
            }
            if inputOpen && descriptors[2].revents != 0 { readInput() }
            driver.handleTimeout(now: MonotonicClock.now())
            perform()
            if exitStatus == nil, let warning = lockedMemory.check() {
                renderer.render(.notice(warning), status: driver.status)
            }
            if exitStatus == nil { renderer.refreshStatus(driver.status) }
        }
        for entry in links { close(entry) }
        links.removeAll()
        let status = exitStatus ?? .internalFailure
        renderer.close(exitStatus: status)
        lingerForClosingLinks()
        return status
    }

    private func close(_ entry: (id: ConnectionID, link: any RelayLink)) {
        entry.link.close()
        if !closingLinks.contains(entry.id) && !endedLinks.contains(entry.id) { closingLinks.append(entry.id) }
    }

    /// A link's end (closed, or failed to open) was reported: it is no longer closing.
    private func noteLinkEnd(_ event: ClientEvent) {
        switch event {
        case let .transportClosed(id, _), let .transportFailed(id, _):
            closingLinks.removeAll { $0 == id }
            endedLinks.append(id)
            if endedLinks.count > Self.endedLinksKept { endedLinks.removeFirst() }
        default: break
        }
    }

    /// Wait (bounded) until every closing link has ended. The terminal is already restored and
    /// the keys wiped; this only lets the last frames and the close frame leave cleanly.
    private func lingerForClosingLinks() {
        let deadline = MonotonicClock.now().advanced(by: .milliseconds(Self.exitLingerMilliseconds))
        // Bounded by the deadline.
        while !closingLinks.isEmpty {
            let now = MonotonicClock.now()
            guard deadline > now else { return }
            var descriptor = pollfd(fd: mailbox.readFD, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(clamping: (deadline.nanoseconds - now.nanoseconds + 999_999) / 1_000_000)
            if poll(&descriptor, 1, milliseconds) < 0 && errno != EINTR { return }
            for event in mailbox.take() { noteLinkEnd(event) }
            mailbox.processed()
        }
    }

    private func timeoutMilliseconds() -> Int32 {
        guard let deadline = driver.pollTimeout() else { return -1 }
        let now = MonotonicClock.now()
        guard deadline > now else { return 0 }
        // Round up so a timer is never run early (and then re-polled at 0 ms in a loop).
        let milliseconds = (deadline.nanoseconds - now.nanoseconds + 999_999) / 1_000_000
        return Int32(clamping: milliseconds)
    }

    private func handleSignals() {
        // Bounded: a handful of signals can be pending at once.
        for _ in 0..<64 {
            let number = scl_signalfd_read(signalFD)
            guard number > 0 else { return }
            if number == SIGWINCH {
                terminal?.resized()
            } else {
                driver.handle(.signal(number), now: MonotonicClock.now())
                perform()
            }
        }
    }

    private func readInput() {
        let events: [ClientEvent]
        if let terminal {
            events = terminal.readInput()
        } else {
            events = lineReader!.readAvailable()
        }
        for event in events {
            if event == .endOfInput { inputOpen = false }
            driver.handle(event, now: MonotonicClock.now())
            perform()
        }
    }

    /// Carry out what the driver asked for, in order.
    private func perform() {
        // Bounded: the driver produces a finite batch per input.
        while let action = driver.pollAction() {
            switch action {
            case let .connect(id):
                if links.count >= Self.linksMax {
                    close(links.removeFirst())
                }
                links.append((id, connector.open(id, mailbox: mailbox)))
            case let .send(id, frame):
                links.first { $0.id == id }?.link.send(frame)
            case let .sendBinary(id, frame):
                links.first { $0.id == id }?.link.sendBinary(frame)
            case let .sendFileSignal(id, frame, binary):
                links.first { $0.id == id }?.link.sendFileSignal(frame, binary: binary)
            case let .ping(id):
                links.first { $0.id == id }?.link.ping()
            case let .pong(id, payload):
                links.first { $0.id == id }?.link.pong(payload)
            case let .close(id):
                if let index = links.firstIndex(where: { $0.id == id }) {
                    close(links.remove(at: index))
                }
            case let .display(event):
                renderer.render(event, status: driver.status)
            case let .exit(status):
                exitStatus = status
            }
        }
    }
}
