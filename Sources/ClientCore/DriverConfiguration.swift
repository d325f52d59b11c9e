import ChatCore

/// Settings of a `ClientDriver`. Everything the driver decides with comes from here, its inputs
/// and the injected entropy: it reads no environment variable, clock or terminal.
public struct DriverConfiguration: Sendable {
    /// The session's own settings (room, limits, retransmission).
    public var session: SessionConfiguration
    /// Interactive: lines starting with `/` are commands and `/quit` asks again when messages
    /// are pending. In pipe mode every line is a message.
    public var interactive: Bool
    /// The room was created by this client: tell the user the code and the peer's commands.
    public var invitation: Invitation?
    /// Give up on an attempt to open a connection after this long.
    public var connectTimeout: Duration
    /// Reconnect backoff: the first ceiling (`ReconnectBackoff.initialDelay`).
    public var reconnectInitialDelay: Duration
    /// Reconnect backoff: the largest ceiling (`ReconnectBackoff.maximumDelay`).
    public var reconnectMaximumDelay: Duration
    /// Give up (exit 3) when the relay has not accepted this client for this long: since the start,
    /// or since the link over which it last accepted it was lost.
    public var giveUpAfter: Duration
    /// After end of input (pipe mode), wait this long for pending messages to be confirmed and
    /// for the goodbye (what the peer sent before it learned that we leave).
    public var drainTimeout: Duration
    /// Interactively (/quit, Ctrl-D), wait at most this long (and at most `drainTimeout`) for the
    /// goodbye before leaving anyway.
    public var goodbyeTimeout: Duration
    /// Ping the relay after this long without any frame from it; as long again without one closes
    /// the link as dead (a relay or path that vanished without a FIN) and the client reconnects.
    public var keepalive: Duration
    /// Notices carry the raw detail after the words for people (`--verbose`): the relay's own
    /// error text and code, a rejected frame's reason.
    public var verbose: Bool
    /// How the shell reaches the relay (straight, through Tor or another proxy): shown in the
    /// status line, `/status` and the connection notices; through a proxy it also lengthens the
    /// first retransmission intervals and the goodbye's wait (set by `init`).
    public var route: RelayRoute
    /// File transfers: what to send, where to accept (set after `init`).
    public var files = FilePolicy()

    public init(
        session: SessionConfiguration,
        interactive: Bool,
        invitation: Invitation? = nil,
        connectTimeout: Duration = .seconds(25),
        reconnectInitialDelay: Duration = .milliseconds(500),
        reconnectMaximumDelay: Duration = .seconds(30),
        giveUpAfter: Duration = .seconds(300),
        drainTimeout: Duration = .seconds(30),
        keepalive: Duration = .seconds(15),
        goodbyeTimeout: Duration = .seconds(5),
        verbose: Bool = false,
        route: RelayRoute = .direct
    ) {
        precondition(connectTimeout > .zero && giveUpAfter > .zero && drainTimeout >= .zero && keepalive > .zero)
        // Through a proxy the session's first retransmissions and the goodbye's wait are made to
        // suit seconds-long round trips (RelayRoute.sessionConfiguration): the route decides them,
        // for the real client and for a simulation that gives the driver a proxied route alike.
        self.session = route.sessionConfiguration(session)
        self.interactive = interactive
        self.invitation = invitation
        self.connectTimeout = connectTimeout
        self.reconnectInitialDelay = reconnectInitialDelay
        self.reconnectMaximumDelay = reconnectMaximumDelay
        self.giveUpAfter = giveUpAfter
        self.drainTimeout = drainTimeout
        self.keepalive = keepalive
        self.goodbyeTimeout = route.goodbyeTimeout(goodbyeTimeout)
        self.verbose = verbose
        self.route = route
    }
}
