import CClientSupport
import ChatCore

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
    private var links: [(id: ConnectionID, link: any RelayLink)] = []
    private var exitStatus: ClientExitStatus?
    private var inputOpen = true

    /// Most links kept at once: the current one and one being closed.
    private static let linksMax = 4

    init(driver: ClientDriver, renderer: any ClientRenderer, terminal: TerminalUI?, lineReader: LineReader?,
         connector: any RelayConnector, mailbox: Mailbox, signalFD: Int32) {
        precondition((terminal == nil) != (lineReader == nil), "exactly one input source")
        self.driver = driver
        self.renderer = renderer
        self.terminal = terminal
        self.lineReader = lineReader
        self.connector = connector
        self.mailbox = mailbox
        self.signalFD = signalFD
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
                    driver.handle(event, now: MonotonicClock.now())
                    perform()
                }
            }
            if inputOpen && descriptors[2].revents != 0 { readInput() }
            driver.handleTimeout(now: MonotonicClock.now())
            perform()
            if exitStatus == nil { renderer.refreshStatus(driver.status) }
        }
        for entry in links { entry.link.close() }
        links.removeAll()
        let status = exitStatus ?? .internalFailure
        renderer.close(exitStatus: status)
        return status
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
                    links.removeFirst().link.close()
                }
                links.append((id, connector.open(id, mailbox: mailbox)))
            case let .send(id, frame):
                links.first { $0.id == id }?.link.send(frame)
            case let .close(id):
                if let index = links.firstIndex(where: { $0.id == id }) {
                    links.remove(at: index).link.close()
                }
            case let .display(event):
                renderer.render(event, status: driver.status)
            case let .exit(status):
                exitStatus = status
            }
        }
    }
}
