/// The session's place in the relay's room: whether the transport is up, the JOIN and its
/// retransmission, JOINED and PEER_FOUND, and how a ROOM_FULL is judged.
///
/// It decides only about the room; the coordinator (`SessionManager`) turns its decisions into
/// frames and lifecycle events. Its timer runs only while the lifecycle is SEARCHING (the
/// coordinator asks for it then), as a handshake started by the peer's hello before JOINED
/// arrived has no more use for the JOIN.
struct RoomMembership {
    enum State {
        /// No connection to the relay: before the first, between connections, after the end.
        case offline(Offline)
        /// Connected; our JOIN is out and is retransmitted until the relay answers it.
        case joining(JoinRetransmission)
        /// Connected, and the relay put us in the room (JOINED or PEER_FOUND).
        case joined(peerFoundAnnounced: Bool)
    }

    /// What an earlier connection leaves behind. Only frames that arrive after the transport went
    /// down read it (the shells never deliver those; the fuzz harness does), and the next
    /// connection starts afresh.
    struct Offline {
        /// JOINED announced the peer and the PEER_FOUND it stood for had not arrived yet.
        var peerFoundAnnounced = false
        /// A PEER_FOUND arrived after the transport went down: a ROOM_FULL is then stale.
        var admittedSinceDown = false
    }

    struct JoinRetransmission {
        var at: Instant
        var interval: Duration
    }

    /// How to take a relay's ROOM_FULL.
    enum RoomFullVerdict: Equatable {
        /// A stale answer to an earlier JOIN, or a refusal worth asking again after: carry on.
        case tolerated
        /// The room is taken: the session ends.
        case fatal
    }

    private(set) var state: State = .offline(Offline())
    /// The relay accepted us into the room at least once (on any connection): it said JOINED or
    /// PEER_FOUND, or a handshake through it completed.
    private(set) var admittedBefore = false
    /// ROOM_FULL answers to JOINs since we last joined; a rejoin tolerates a few.
    private var roomFullOnRejoin = 0
    /// The reconnect token of our seat, from the relay's last JOINED (nil when it sent none).
    /// Memory only; every JOIN presents it, so after a reconnect the relay gives the seat back at
    /// once, however fast someone else polls JOIN (docs/PROTOCOL.md, "Seat reservation").
    private(set) var reconnectToken: ReconnectToken?
    /// With the JOIN backoff (1, 2, 4, 8, 8, ... s) ten refusals span about a minute.
    static let roomFullOnRejoinMax = 10

    private let retransmitInitial: Duration
    private let retransmitMax: Duration

    init(retransmitInitial: Duration, retransmitMax: Duration) {
        self.retransmitInitial = retransmitInitial
        self.retransmitMax = retransmitMax
    }

    /// True while a connection to the relay is up (frames may be sent).
    var isConnected: Bool {
        if case .offline = state { false } else { true }
    }

    /// When the JOIN is next due, while one is unanswered.
    var joinRetransmitAt: Instant? {
        if case let .joining(retransmission) = state { retransmission.at } else { nil }
    }

    /// The transport came up: a JOIN goes out now (the caller sends it) and is retransmitted.
    mutating func connect(now: Instant) {
        state = .joining(JoinRetransmission(at: now.advanced(by: retransmitInitial), interval: retransmitInitial))
    }

    /// The transport went down (or the session ended).
    mutating func disconnect() {
        switch state {
        case .offline(var offline):
            offline.admittedSinceDown = false
            state = .offline(offline)
        case .joining:
            state = .offline(Offline())
        case let .joined(announced):
            state = .offline(Offline(peerFoundAnnounced: announced))
        }
    }

    /// True when the unanswered JOIN is due at `now`: it is to be sent again (the caller sends
    /// it) and the interval doubles, up to the cap.
    mutating func joinRetransmissionDue(now: Instant) -> Bool {
        guard case var .joining(retransmission) = state, retransmission.at <= now else { return false }
        retransmission.interval = min(retransmission.interval * 2, retransmitMax)
        retransmission.at = now.advanced(by: retransmission.interval)
        state = .joining(retransmission)
        return true
    }

    /// The JOIN to send for `room`, with our seat's reconnect token if the relay gave us one.
    func joinFrame(_ room: RoomCode) -> [UInt8] {
        WireCodec.encodeJoin(room, token: reconnectToken)
    }

    /// JOINED: false when it must be ignored (no connection it could answer). `announcesPeer`:
    /// it said the room is full and the caller starts the handshake on it, so the relay's
    /// PEER_FOUND that is still due stands for nothing new. `token`: the seat's reconnect token
    /// (nil from a relay that reserves no seats, which makes an earlier token useless).
    mutating func receiveJoined(announcesPeer: Bool, token: ReconnectToken?) -> Bool {
        let announcedBefore: Bool
        switch state {
        case .offline: return false
        case .joining: announcedBefore = false
        case let .joined(announced): announcedBefore = announced
        }
        state = .joined(peerFoundAnnounced: announcesPeer || announcedBefore)
        reconnectToken = token
        admittedBefore = true
        roomFullOnRejoin = 0
        return true
    }

    /// PEER_FOUND: true when it is the one an earlier JOINED already announced (nothing to do).
    mutating func receivePeerFound() -> Bool {
        let announced: Bool
        switch state {
        case var .offline(offline):
            announced = offline.peerFoundAnnounced
            offline.peerFoundAnnounced = false
            offline.admittedSinceDown = true
            state = .offline(offline)
        case .joining:
            announced = false
            state = .joined(peerFoundAnnounced: false)
        case let .joined(wasAnnounced):
            announced = wasAnnounced
            state = .joined(peerFoundAnnounced: false)
        }
        admittedBefore = true
        return announced
    }

    /// The relay refused a JOIN with ROOM_FULL.
    mutating func receiveRoomFull() -> RoomFullVerdict {
        if isJoined {
            // The relay has let this connection in since: this refusal answered an earlier JOIN on
            // it (the relay's answers to a JOIN and its retransmission can arrive in either order
            // over a path that reorders). Ending here stranded the peer (found by the simulator,
            // seed 1 with every fault kind).
            return .tolerated
        }
        guard admittedBefore, roomFullOnRejoin < Self.roomFullOnRejoinMax else { return .fatal }
        // We were in this room before: after a reconnect the relay may not yet have seen our
        // previous connection close and still counts it. Ask again (the JOIN retransmission is
        // running) before giving up; ending here stranded both peers (found by the simulator).
        roomFullOnRejoin += 1
        return .tolerated
    }

    /// A handshake through the relay completed: it put us with the peer, even if JOINED and
    /// PEER_FOUND were lost.
    mutating func handshakeCompleted() {
        admittedBefore = true
    }

    /// In the room on this connection, or told so by a PEER_FOUND after it went down.
    private var isJoined: Bool {
        switch state {
        case let .offline(offline): offline.admittedSinceDown
        case .joining: false
        case .joined: true
        }
    }
}
