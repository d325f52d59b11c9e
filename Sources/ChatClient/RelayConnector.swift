import ChatCore

/// Opens connections to the relay. The shell calls `open` on its own thread; the connection
/// reports `transportUp`, `transportFrame`, `transportClosed` or `transportFailed` (tagged with
/// `id`) through the mailbox, from any thread.
public protocol RelayConnector: Sendable {
    func open(_ id: ConnectionID, mailbox: Mailbox) -> any RelayLink
}

/// One connection to the relay.
public protocol RelayLink: AnyObject, Sendable {
    /// Send one text frame (dropped if the connection is not open; the session retransmits).
    func send(_ frame: [UInt8])
    /// Close the connection. Idempotent.
    func close()
}
