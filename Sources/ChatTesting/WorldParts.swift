@_spi(Simulation) import ChatCore
import ClientCore
import RelayCore

/// Everything that happens in a world, as queued. Frames carry their bytes; the scenario's own
/// events (the workload, the fault schedule, checks) ride as `.scenario`, which the world hands
/// back to whoever runs it.
public enum WorldEvent: Sendable {
    /// A client's connect reaches the relay.
    case connectArrives(LinkID)
    /// The relay's answer to a connect (the finished upgrade) reaches the client.
    case upgradeArrives(LinkID)
    /// A connect found no relay listening: the client learns it.
    case connectRefused(LinkID)
    case toRelay(LinkID, WireFrame)
    case toClient(LinkID, WireFrame)
    /// The client's end of the connection closed (a close, a reset, a crashed process): the relay
    /// learns it.
    case relaySeesClose(LinkID)
    /// The relay's end closed (or the connection broke): the client learns it.
    case clientSeesClose(LinkID)
    /// The client's shell reports its outbound buffer crossed a watermark (`ClientWatermark`).
    case clientWritable(LinkID, Bool)
    case clientTimer(client: Int32)
    case relayTimer
    /// A cluster world's own event (`World+Cluster.swift`).
    case cluster(ClusterEvent)
    /// The scenario's own event: a kind and a client (or -1), both its to interpret.
    case scenario(kind: UInt8, client: Int32)
}

/// One virtual connection between a client process and the relay, as each end sees it.
struct Link {
    let client: Int32
    /// The client process (incarnation) that opened it.
    let incarnation: Int32
    /// The driver's name for it.
    let clientID: ConnectionID
    /// The relay's name for it, once a relay accepted it, and which relay process that was.
    var relayID: ConnectionID?
    var relayGeneration: Int32 = -1
    /// The client side still has it open.
    var clientOpen = true
    /// The upgrade selected `securechat.binary` (`WorldConfiguration.binarySignals`).
    var binarySignals = false
    /// The client closed it with a close frame (1000: the driver's own close), which reaches the
    /// relay with the FIN; a crash or a reset closes without one.
    var closedByClientFrame = false
    /// The relay side has it open (accepted and not yet reported closed).
    var relayOpen = false
    /// Reset or cut off by a crash: nothing more gets through; the closes are on their way.
    var broken = false
    /// When the relay's finished upgrade reaches the client: nothing the relay writes arrives
    /// there before it.
    var upgradeDue: Instant?
    /// The upgrade reached the client (it may send).
    var clientUp = false
    /// The relay stopped reading it: frames wait in its `LinkBuffers`, in order (TCP's receive
    /// buffer).
    var readPaused = false
    /// Bytes the relay wrote that have not yet reached the client, and whether the relay was told
    /// the connection is not writable (its outbound queue over the high watermark).
    var bytesToClient = 0
    var toldUnwritable = false
    /// Bytes the client sent that the relay has not read yet (on their way, or waiting while the
    /// relay does not read: a real client's socket buffer), and whether it is over its watermark.
    var bytesFromClient = 0
    var clientOverMark = false
    /// With an in-order network: when the latest frame each way is due (the next is not earlier).
    var lastDueToRelay = Instant.zero
    var lastDueToClient = Instant.zero

    init(client: Int32, incarnation: Int32, clientID: ConnectionID) {
        self.client = client
        self.incarnation = incarnation
        self.clientID = clientID
    }
}

/// The frames a link holds back: kept apart from `Link` so that a `Link` is plain data (reading
/// one on every frame then costs no reference counting).
struct LinkBuffers {
    /// Frames that reached a relay that stopped reading the connection, oldest first.
    var waitingAtRelay: [WireFrame] = []
    /// With a held network: frames on their way, oldest first, in each direction.
    var heldToRelay: [WireFrame] = []
    var heldToClient: [WireFrame] = []
}

/// The relay's connections by its name for them (its `ConnectionID`s count up from 1 in each relay
/// process): an array, not a dictionary, because it is read on every frame.
struct RelayConnectionTable {
    private var links: [LinkID?] = []

    subscript(id: ConnectionID) -> LinkID? {
        get { id.value < UInt64(links.count) ? links[Int(id.value)] : nil }
        set {
            let index = Int(id.value)
            if index >= links.count {
                guard newValue != nil else { return }
                links.append(contentsOf: repeatElement(nil, count: index - links.count + 1))
            }
            links[index] = newValue
        }
    }

    /// Every connection held, in the relay's order.
    var all: [LinkID] { links.compactMap { $0 } }

    mutating func removeAll() {
        links.removeAll()
    }
}

/// One client slot: the process running in it now (the real `ClientDriver`), and what the world
/// needs to wire it.
public final class WorldClient {
    public let index: Int
    public let room: RoomCode
    /// The address the relay's admission sees (each client its own, as on the internet).
    public let address: RelayAddress
    /// The process running now, or the one that exited; nil before the start and between a crash
    /// and the restart.
    public internal(set) var driver: ClientDriver?
    /// Which process this is (0, then 1 after the first restart, ...).
    public internal(set) var incarnation: Int32 = 0
    var started = false
    /// How the current process exited, once it did.
    public internal(set) var exitStatus: ClientExitStatus?
    /// The link is cut (everything to and from the client is lost) until then.
    public internal(set) var cutUntil: Instant = .zero
    /// The current process's open links, by the driver's name.
    var links: [(id: ConnectionID, link: LinkID)] = []
    /// Links of this slot the relay accepted and may still hold (pruned when it lets go).
    var relayLinks: [LinkID] = []
    var armedTimer: Instant?

    /// How this slot's processes are configured (a scenario may change it before a process
    /// starts: the simulator gives file rooms their file policy), and their password (nil: none).
    public var driverConfiguration: DriverConfiguration
    let password: Password?
    /// The disk the client's file transfers use (nil: none; the simulator gives one to the clients
    /// of its file rooms, `--files`).
    public var fileStore: (any FileStore)?
    /// The current process's input ended (pipe mode's end of input).
    public internal(set) var inputEnded = false
    /// Pings the current and earlier processes sent (each answered unless the relay is frozen).
    public internal(set) var pingsSent = 0
    /// A squatter's slot (`World.addSquatter`): no process, only JOIN attempts.
    public internal(set) var isSquatter = false

    init(index: Int, room: RoomCode, address: RelayAddress, driver: DriverConfiguration, password: Password?) {
        self.index = index
        self.room = room
        self.address = address
        self.driverConfiguration = driver
        self.password = password
    }

    /// The process is running (started, not crashed, not exited).
    public var isRunning: Bool { driver != nil && exitStatus == nil }

    func link(for id: ConnectionID) -> LinkID? {
        links.first { $0.id == id }?.link
    }
}

/// What a scenario (the simulator, a test) learns from the world as it runs, and where it may
/// intervene. Every call happens synchronously, in the world's deterministic order.
public protocol WorldObserver: AnyObject {
    /// `client` put `frame` on its link, before the network decides its fate.
    func world(_ world: World, clientSent frame: [UInt8], client: Int)
    /// A text frame from `client` reached the relay (before the relay handles it).
    func world(_ world: World, relayReceives frame: [UInt8], from client: Int)
    /// The relay is about to send `message` to `client`. Return false to suppress it (a malicious
    /// relay's choice).
    func world(_ world: World, relayWillSend message: RelayMessage, to client: Int, link: LinkID) -> Bool
    /// The relay is about to forward a SIGNAL from `source` to `client`. Return false to suppress it.
    func world(_ world: World, relayWillForward frame: [UInt8], from source: Int, to client: Int, link: LinkID)
        -> Bool
    /// The relay learned that `client`'s connection `link` closed.
    func world(_ world: World, relayClosed link: LinkID, client: Int)
    /// `client`'s process shows `event`.
    func world(_ world: World, client: Int, displays event: DisplayEvent)
    /// `client`'s process exited with `status`.
    func world(_ world: World, client: Int, exited status: ClientExitStatus)
}

/// Deliberate bugs in the world's shells (not in shipped code), for the checker's self-tests: the
/// scenario names the invariant each must break.
public struct WorldPlantedBugs: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16

    public init(rawValue: UInt16) {
        self.rawValue = rawValue
    }

    /// The relay's shell writes one forwarded SIGNAL in eight to a connection of the next room too.
    public static let forwardIntoNextRoom = WorldPlantedBugs(rawValue: 1 << 0)
    /// The client's display drops every fourth message its session delivered (and acknowledged).
    public static let hideEveryFourthMessage = WorldPlantedBugs(rawValue: 1 << 1)
    /// The client's display shows two consecutive messages in swapped order, now and then.
    public static let swapMessages = WorldPlantedBugs(rawValue: 1 << 2)
    /// The client's status display reports CONNECTED → SEARCHING where the session went through
    /// DISCONNECTED (a transition the lifecycle does not have).
    public static let misreportTransition = WorldPlantedBugs(rawValue: 1 << 3)
    /// The client's shell sends each typed line in the clear, base64-encoded in a SIGNAL's payload
    /// (what a record format that authenticated but did not encrypt would put on the wire).
    public static let leakTypedText = WorldPlantedBugs(rawValue: 1 << 4)
    /// The relay's shell answers a squatter's refused JOIN (ROOM_FULL, SEAT_RESERVED) with JOINED:
    /// a third peer in a full room.
    public static let thirdPeerJoins = WorldPlantedBugs(rawValue: 1 << 5)
    /// The client's shell sends, with each typed line, one of the session's current record keys
    /// in the clear (base64 in a SIGNAL's payload).
    public static let leakSessionKey = WorldPlantedBugs(rawValue: 1 << 6)
    /// The client's shell walks away once the user's input ended and its own messages are
    /// confirmed: it interrupts the process (Ctrl-C), whose goodbye then ends at once, whatever the
    /// peer still has in flight (pipe mode's leave before issue 13's goodbye).
    public static let leaveWhenOwnConfirmed = WorldPlantedBugs(rawValue: 1 << 7)
    /// The client's progress display keeps the bytes in 16 bits: past 64 KiB it wraps to a
    /// smaller number (progress that goes backwards).
    public static let progressIn16Bits = WorldPlantedBugs(rawValue: 1 << 8)
    /// The client's shell never sends the file acknowledgements (`FACK`) its process asks it to
    /// (a shell filtering what it takes for control noise): no sender learns what arrived.
    public static let dropFileAcks = WorldPlantedBugs(rawValue: 1 << 9)
}

/// Counts of what the world did, for a report.
public struct WorldCounters: Sendable {
    public var framesSent: UInt64 = 0
    public var framesDropped: UInt64 = 0
    public var framesDuplicated: UInt64 = 0
    /// Frames that arrived on a closed or broken connection, or a cut link.
    public var framesLost: UInt64 = 0
    public var connections: UInt64 = 0
    public var connectFailures: UInt64 = 0
    public var resets: UInt64 = 0
    public var partitions: UInt64 = 0
    public var relayCrashes: UInt64 = 0
    public var processCrashes: UInt64 = 0
    /// Frames a client's shell dropped because its link was over its watermark.
    public var framesDroppedOverMark: UInt64 = 0
    /// Times a client's link went over its watermark (its driver told).
    public var linksOverMark: UInt64 = 0
}

/// Which of the world's connections negotiate binary SIGNALs at their upgrade.
public enum BinarySignalMix: Hashable, Sendable {
    /// None: every client speaks JSON text only (an old client, or an old relay).
    case none
    /// Every connection.
    case all
    /// Each connection by a draw from the seed and the connection's number: about half.
    case seeded

    /// The draw for connection `link` of a world seeded with `seed` (no random stream is drawn
    /// from, so every other choice of a run stays as it was).
    func negotiates(seed: UInt64, link: UInt32) -> Bool {
        switch self {
        case .none: return false
        case .all: return true
        case .seeded:
            var mixed = seed ^ (UInt64(link) &* 0x9E37_79B9_7F4A_7C15)
            mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
            mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
            return (mixed ^ (mixed >> 31)) & 1 == 1
        }
    }
}

/// How the world is built.
public struct WorldConfiguration {
    /// Client slots; `RoomCode.peersMax` per room, in order (clients 0 and 1 share room 0, ...).
    public var clients: Int
    /// The driver's settings for a client of `room` (the shipped defaults unless a scenario says
    /// otherwise).
    public var driver: (RoomCode) -> DriverConfiguration
    /// Each room's password (nil: none), by room index. The world wipes nothing: the caller owns it.
    public var password: (Int) -> Password?
    /// Every connect fails with this (an untrusted certificate, say), when set.
    public var connectFailure: TransportFailure?
    /// The relay's limits, validated unless `uncheckedRelayLimits` (a planted relay bug).
    public var relayLimits: RelayLimits
    public var uncheckedRelayLimits = false
    /// Seed of every client process's entropy.
    public var seed: UInt64
    public var faults: NetworkFaults
    /// Bugs planted in the world's shells (none unless a self-test asks).
    public var plantedBugs: WorldPlantedBugs = []
    /// Which connections negotiate binary SIGNALs (`securechat.binary`): by default a seeded half,
    /// so the relay converts between the forms under every fault.
    public var binarySignals: BinarySignalMix = .seeded
    /// The clients' outbound watermarks (nil: never over, as in the tests that hold frames).
    /// Over `high` a client's shell drops every frame but file chunks and tells its driver,
    /// which sends no chunk until the bytes the relay has not read fall under `low`.
    public var clientWatermark: ClientWatermark?
    /// Several relay nodes sharing a virtual Redis (nil, or one node: the single relay).
    public var cluster: ClusterConfiguration?
    /// Bugs planted in every client process's session (ChatCore's `PlantedBugs`).
    @_spi(Simulation) public var sessionPlantedBugs: PlantedBugs = []

    public init(
        clients: Int, seed: UInt64, faults: NetworkFaults,
        driver: @escaping (RoomCode) -> DriverConfiguration = {
            DriverConfiguration(session: SessionConfiguration(room: $0), interactive: false)
        },
        password: @escaping (Int) -> Password? = { _ in nil }, relayLimits: RelayLimits = .defaults
    ) {
        self.clients = clients
        self.seed = seed
        self.faults = faults
        self.driver = driver
        self.password = password
        self.relayLimits = relayLimits
    }
}

extension RoomCode {
    /// The room of simulated room number `index`.
    public static func simulated(_ index: Int) -> RoomCode {
        try! RoomCode("SIM\(index)")  // `SIM` + digits always matches ^[A-Z0-9]+$ within the cap
    }
}

/// A client shell's outbound watermarks, in bytes (`WorldConfiguration.clientWatermark`): the
/// shipped client's are 512 KiB and 2 MiB; a world's files are small, so it uses its own.
public struct ClientWatermark: Hashable, Sendable {
    public var low: Int
    public var high: Int

    public init(low: Int, high: Int) {
        precondition(low >= 0 && low < high, "need 0 <= low < high")
        self.low = low
        self.high = high
    }
}
