import ChatCore

/// Opens connections to the relay. The shell calls `open` on its own thread; the connection
/// reports `transportUp`, `transportFrame`, `transportPing`, `transportPong`, `transportClosed`
/// or `transportFailed` (tagged with `id`) through the mailbox, from any thread.
public protocol RelayConnector: Sendable {
    func open(_ id: ConnectionID, mailbox: Mailbox) -> any RelayLink
}

/// One connection to the relay. It carries out the driver's actions and decides nothing.
public protocol RelayLink: AnyObject, Sendable {
    /// Send one text frame (dropped if the connection is not open; the session retransmits).
    func send(_ frame: [UInt8])
    /// Send one binary frame, a binary SIGNAL (dropped as `send`).
    func sendBinary(_ frame: [UInt8])
    /// Send one file chunk, a binary frame or a text one, queued even over the high watermark (the
    /// driver stops sending chunks on `transportWritable(false)`; see `ClientAction.sendFileSignal`).
    func sendFileSignal(_ frame: [UInt8], binary: Bool)
    /// Send a ping (dropped if the connection is not open).
    func ping()
    /// Answer a ping with its payload (dropped if the connection is not open).
    func pong(_ payload: [UInt8])
    /// Close the connection. Idempotent.
    func close()
}
