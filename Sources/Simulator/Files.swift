import ChatCore
import ChatTesting
import ClientCore

/// Files in the workload (`--files`): a share of the rooms (drawn from the seed) send small files
/// one way or both ways beside the chat, through every fault. Each client of a file room has an
/// in-memory disk (`InMemoryFileStore`, which persists across its process restarts, as a disk
/// does) with its files in `/src`, offers them as `--send` does when its process starts (a process
/// restarted offers them again: a new transfer) and accepts every offer into `/dl`
/// (`--accept-files`).
///
/// The disks keep what a transfer cut short left (`.part`s, found again as the real store finds
/// them), so a process restarted offers its files again and the receiver resumes from its kept
/// prefix. Besides the random crashes, the workload kills each file room's sender once, in the
/// fault phase, when its receiver shows it has stored whole chunks of a file (and more than one
/// chunk is left), and starts it again a second later: the same file is offered again.
///
/// The checker watches the disks (every open, read, write, commit, resume and truncation, as it
/// happens) and what each client shows (offers, progress, resumes, done, failed), and holds the
/// transfers to docs/PROTOCOL.md ("File transfer"): `file-integrity`, `file-writes`,
/// `file-progress`, `file-no-restart`, `file-resume` and `file-liveness` (ChatTesting's `Invariant`).
final class FileWorkload {
    /// The clients' chunk size here: the protocol's smallest (1 KiB), so that a file of a few
    /// hundred KiB spans many windows and the faults land in the middle of transfers.
    static let chunkBytes = 1024
    /// The window the checker holds senders to: the shipped one (a planted bug may give the
    /// clients another).
    static let windowChunks = FileTransferConfiguration().windowChunks
    static let sourceDirectory = "/src"
    static let downloadDirectory = "/dl"
    static let filesPerSenderMax = 2
    /// Files longer than this are offered before they are hashed (their hash follows): about half.
    static let hashSliceBytes = 16 * chunkBytes
    static let sizeMax = 256 * 1024
    /// Sizes on the edges: empty, one byte, around a chunk, an acknowledgement interval, a window.
    static let edgeSizes = [0, 1, chunkBytes - 1, chunkBytes, chunkBytes + 1, 4 * chunkBytes,
                            windowChunks * chunkBytes, windowChunks * chunkBytes + 1]
    /// Every file starts with this (when it is long enough): the relay-blind scan looks for it.
    static let marker: [UInt8] = Array("SIMFILE-PLAINTEXT:".utf8)

    /// How much longer than the chat's liveness bound the transfers may take after the heal: one
    /// stall timeout (a window whose chunks were lost just before the heal), then every file of a
    /// sender, window by window, with room for the offer, the answer and `DONE`.
    static func livenessExtra(delayMaxMilliseconds: UInt64) -> UInt64 {
        let roundTrip = 2 * max(delayMaxMilliseconds, 1)
        let windows = UInt64((sizeMax / chunkBytes + windowChunks - 1) / windowChunks)
        let stall = FileTransferConfiguration().stallTimeout.wholeMilliseconds
        return stall + 2 * UInt64(filesPerSenderMax) * (windows + 8) * roundTrip
    }

    /// A transfer as one process saw it.
    struct Key: Hashable {
        let client: Int
        let incarnation: Int32
        let direction: FileDirection
        let id: FileID
    }

    enum Outcome: Equatable {
        case open
        case done
        case failed(FileFailure)
        /// Its process crashed: nobody is left to report it.
        case lostWithProcess
    }

    struct Tracked {
        let info: FileOfferInfo
        /// The peer slot's process when the offer was shown (a later one explains `peer_changed`).
        let peerIncarnation: Int32
        var outcome = Outcome.open
        var progress: UInt64 = 0
        /// Outgoing: chunks the receiver acknowledged (as the sender's progress said), and the
        /// highest and the latest chunk the sender read to send.
        var acknowledgedChunks: UInt64 = 0
        var highestSent: Int64 = -1
        var lastSent: Int64 = -1
        /// The bytes the transfer showed kept from a `.part` (`resumed`), if it resumed.
        var resumedBytes: UInt64?
    }

    /// A file opened on a disk: for reading (a file offered) or a `.part` (a file accepted).
    struct Opened {
        let path: String
        var key: Key?
        /// Byte ranges written, merged (a `.part`).
        var written: [Range<UInt64>] = []
        /// A `.part` opened to resume: its size then, and the bytes of it the transfer must keep
        /// (the whole chunks proposed, when they are the offered file's: set when it is bound).
        var kept: UInt64 = 0
        var floor: UInt64 = 0
    }

    /// Every file offered, by name (names are unique: they name the client and the file), and
    /// the client slot that offers it.
    var sources: [String: [UInt8]] = [:]
    var owner: [String: Int] = [:]
    var stores: [InMemoryFileStore?]
    var tracked: [Key: Tracked] = [:]
    /// The transfers in the order first seen (what the final check walks: never a dictionary's order).
    var order: [Key] = []
    /// Per client: files its disk opened, by store handle, and those not yet tied to a transfer.
    var opened: [[Int: Opened]]
    var unbound: [[Int]]
    /// Paths of stored files whose content was checked, per client.
    var verified: [Set<String>]
    var storedIDs: Set<FileID> = []
    var totals = SimulationReport.Files()
    /// File rooms whose sender the workload already killed mid-transfer (once each).
    var killedRooms: Set<Int> = []
    /// A killed sender starts again this much later.
    static let resumeKillDowntime = Duration.seconds(1)

    init(peers: Int) {
        stores = Array(repeating: nil, count: peers)
        opened = Array(repeating: [:], count: peers)
        unbound = Array(repeating: [], count: peers)
        verified = Array(repeating: [], count: peers)
    }

    static func drawSize(_ random: inout Xoshiro256) -> Int {
        switch random.below(4) {
        case 0: random.pick(edgeSizes)
        case 1: Int(random.inRange(1...UInt64(16 * chunkBytes)))
        case 2: Int(random.inRange(1...UInt64(sizeMax)))
        default: chunkBytes * Int(random.inRange(1...UInt64(sizeMax / chunkBytes)))  // On a chunk boundary.
        }
    }

    static func content(_ size: Int, _ random: inout Xoshiro256) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(size + 8)
        bytes += marker.prefix(size)
        // Bounded by `size`, eight bytes a round.
        while bytes.count < size {
            let word = random.next()
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: word >> shift)) }
        }
        return Array(bytes.prefix(size))
    }

    /// How a transfer's outcome reads in the report.
    static func failureName(_ failure: FileFailure) -> String { failure.eventName }
}

// MARK: Setting up

extension Simulation {
    /// Give the clients of the file rooms their disks, files and file policy (before any starts).
    func setUpFiles() {
        guard settings.files else { return }
        let workload = FileWorkload(peers: settings.peers)
        var random = Xoshiro256(seed: settings.seed, stream: .workload, index: 1)
        let bug = options.plantedBug
        var transfer = FileTransferConfiguration()
        transfer.chunkBytes = FileWorkload.chunkBytes
        if bug == .fileRestartFromZero {
            transfer.windowChunks = 1 << 20
            transfer.ackEveryChunks = 1 << 20
        }
        for room in 0..<settings.rooms where random.chance(settings.fileRoomShare) {
            workload.totals.rooms += 1
            let senders = random.below(3)  // Side 0 sends, side 1 sends, or both.
            for side in 0..<RoomCode.peersMax {
                let index = room * RoomCode.peersMax + side
                let store = InMemoryFileStore()
                var policy = FilePolicy()
                policy.acceptDirectory = FileWorkload.downloadDirectory
                policy.hashSliceBytes = FileWorkload.hashSliceBytes
                policy.transfer = transfer
                if senders == 2 || senders == UInt64(side) {
                    for file in 0...Int(random.below(UInt64(FileWorkload.filesPerSenderMax))) {
                        let size = FileWorkload.drawSize(&random)
                        let name = "c\(index)-f\(file)-\(size).bin"
                        let content = FileWorkload.content(size, &random)
                        store.files[FileWorkload.sourceDirectory + "/" + name] = content
                        workload.sources[name] = content
                        workload.owner[name] = index
                        policy.sendPaths.append(FileWorkload.sourceDirectory + "/" + name)
                    }
                }
                if bug == .fileWriteTwice { store.plantedBugs.insert(.writeTwice) }
                if bug == .fileCommitTruncates { store.plantedBugs.insert(.commitDropsLastByte) }
                if bug == .fileResumeFromZero { store.plantedBugs.insert(.resumeSeesEmptyPart) }
                store.onOperation = { [unowned self] in self.fileOperation($0, client: index) }
                world.clients[index].fileStore = store
                world.clients[index].driverConfiguration.files = policy
                workload.stores[index] = store
            }
            secrets[room].add(FileWorkload.marker, name: "a file's plaintext")
        }
        files = workload
    }
}

// MARK: What the disks do

extension Simulation {
    func fileOperation(_ operation: FileStoreOperation, client: Int) {
        guard violation == nil, let files else { return }
        switch operation {
        case let .openForReading(file, path), let .createPart(file, path):
            files.opened[client][file.rawValue] = FileWorkload.Opened(path: path)
            files.unbound[client].append(file.rawValue)
        case let .resumePart(file, path, sizeBytes):
            files.opened[client][file.rawValue] = FileWorkload.Opened(path: path, kept: sizeBytes)
            files.unbound[client].append(file.rawValue)
        case let .truncate(file):
            truncated(file.rawValue, client: client)
        case let .read(file, offset, count):
            // A chunk to send (hashing reads with `readToHash`).
            guard let key = files.opened[client][file.rawValue]?.key, key.direction == .outgoing else { return }
            chunkRead(key, index: Int64(offset / UInt64(FileWorkload.chunkBytes)), count: count)
        case .readToHash:
            break
        case let .write(file, offset, count):
            written(file.rawValue, client: client, range: offset..<(offset + UInt64(count)))
        case .commit:
            // Checked when the client shows the file done (`storedFile`); the final check finds a
            // file stored without it.
            break
        }
    }

    /// `file-no-restart`: the sender reads chunk `index` to send it.
    private func chunkRead(_ key: FileWorkload.Key, index: Int64, count: Int) {
        guard let files, var transfer = files.tracked[key] else { return }
        let name = transfer.info.name
        if index < Int64(transfer.acknowledgedChunks) {
            return fail(.fileNoRestart, "client \(key.client) sent chunk \(index) of \(name) again after the receiver "
                + "had acknowledged \(transfer.acknowledgedChunks) chunks")
        }
        if index <= transfer.lastSent {
            // A go-back: from the last acknowledged chunk, so at most a window is sent again.
            let again = transfer.highestSent - index + 1
            files.totals.goBacks += 1
            files.totals.longestGoBackChunks = max(files.totals.longestGoBackChunks, Int(again))
            if again > Int64(FileWorkload.windowChunks) {
                return fail(.fileNoRestart, "client \(key.client) went back from chunk \(transfer.highestSent) to "
                    + "\(index) of \(name) (\(transfer.info.sizeBytes) bytes): \(again) chunks sent again, more than "
                    + "the window of \(FileWorkload.windowChunks)")
            }
        }
        if index <= transfer.highestSent { files.totals.chunksResent += 1 }
        transfer.lastSent = index
        transfer.highestSent = max(transfer.highestSent, index)
        files.tracked[key] = transfer
    }

    /// `file-resume`: a `.part` is emptied. Only a kept prefix that is not the file's may be.
    private func truncated(_ handle: Int, client: Int) {
        guard let files, let opened = files.opened[client][handle] else { return }
        if opened.floor > 0 {
            return fail(.fileResume, "client \(client) emptied \(opened.path), whose first \(opened.floor) bytes "
                + "it kept were the offered file's: the transfer went back to zero")
        }
        files.opened[client][handle]?.written = []
    }

    /// `file-writes`: a `.part` is written at `range`; `file-resume`: never inside its kept prefix.
    private func written(_ handle: Int, client: Int, range: Range<UInt64>) {
        guard let files, var opened = files.opened[client][handle] else {
            return fail(.fileWrites, "client \(client) wrote \(range.count) bytes to a file it never opened")
        }
        if range.lowerBound < opened.floor {
            return fail(.fileResume, "client \(client) wrote bytes \(range.lowerBound)..<\(range.upperBound) of "
                + "\(opened.path), a .part resumed with its first \(opened.floor) bytes kept: it started over")
        }
        if let overlap = opened.written.first(where: { $0.overlaps(range) }) {
            return fail(.fileWrites, "client \(client) wrote bytes \(range.lowerBound)..<\(range.upperBound) of "
                + "\(opened.path), which were written before (\(overlap.lowerBound)..<\(overlap.upperBound))")
        }
        if let key = opened.key, let size = files.tracked[key]?.info.sizeBytes, range.upperBound > size {
            return fail(.fileWrites, "client \(client) wrote up to byte \(range.upperBound) of \(opened.path), "
                + "beyond the offered \(size) bytes")
        }
        if let last = opened.written.last, last.upperBound == range.lowerBound {
            opened.written[opened.written.count - 1] = last.lowerBound..<range.upperBound
        } else {
            opened.written.append(range)
        }
        files.opened[client][handle] = opened
    }
}

// MARK: What the clients show

extension Simulation {
    func fileDisplayed(_ event: FileEvent, savedAs: String?, client: Int) {
        guard let files else { return }
        let incarnation = world.clients[client].incarnation
        switch event {
        case let .offered(info, direction):
            offered(info, direction, client: client, incarnation: incarnation)
        case let .progress(info, direction, bytes):
            let key = FileWorkload.Key(client: client, incarnation: incarnation, direction: direction, id: info.id)
            guard var transfer = files.tracked[key] else { return }
            guard bytes >= transfer.progress, bytes <= info.sizeBytes else {
                return fail(.fileProgress, "client \(client) showed \(direction) progress \(bytes) of \(info.name) "
                    + "(\(info.sizeBytes) bytes) after \(transfer.progress)")
            }
            transfer.progress = bytes
            if direction == .incoming { considerResumeKill(key, info, bytes: bytes) }
            if direction == .outgoing {
                let chunk = UInt64(FileWorkload.chunkBytes)
                transfer.acknowledgedChunks = bytes == info.sizeBytes ? (bytes + chunk - 1) / chunk : bytes / chunk
            }
            files.tracked[key] = transfer
        case let .done(info, direction, _):
            let key = FileWorkload.Key(client: client, incarnation: incarnation, direction: direction, id: info.id)
            files.tracked[key]?.outcome = .done
            if direction == .incoming {
                if let floor = files.opened[client].values.first(where: { $0.key == key })?.floor, floor > 0,
                   files.tracked[key]?.resumedBytes == nil {
                    return fail(.fileResume, "client \(client) stored \(info.name) without showing it resumed "
                        + "from the \(floor) bytes its .part kept")
                }
                storedFile(info, savedAs: savedAs, client: client)
            } else if !files.storedIDs.contains(info.id) {
                fail(.fileIntegrity, "client \(client) was told \(info.name) was stored, which its peer never stored")
            } else {
                files.totals.confirmed += 1
            }
        case let .hashed(info, direction):
            // The hash that followed an offer is the offered file's (the final check relies on it).
            guard let content = files.sources[info.name], Self.blake2b(content) == info.hash else {
                return fail(.fileIntegrity, "client \(client) showed a \(direction) hash of \(info.name) that is not "
                    + "the hash of the file offered")
            }
        case let .resumed(info, direction, bytes):
            let key = FileWorkload.Key(client: client, incarnation: incarnation, direction: direction, id: info.id)
            files.tracked[key]?.resumedBytes = bytes
            if direction == .incoming { resumed(key, info, bytes: bytes) }
            // A resume from a kept `.part` starts the progress at what the `.part` held.
            fileDisplayed(.progress(info, direction, bytes: bytes), savedAs: savedAs, client: client)
        case let .failed(info, direction, failure):
            let key = FileWorkload.Key(client: client, incarnation: incarnation, direction: direction, id: info.id)
            files.tracked[key]?.outcome = .failed(failure)
            files.totals.failed[failure.eventName, default: 0] += 1
            transferFailed(info, direction, failure, key: key)
        }
    }

    private func offered(_ info: FileOfferInfo, _ direction: FileDirection, client: Int, incarnation: Int32) {
        guard let files else { return }
        let key = FileWorkload.Key(client: client, incarnation: incarnation, direction: direction, id: info.id)
        let sender = direction == .outgoing ? client : world.peer(of: client)
        guard let content = files.sources[info.name], files.owner[info.name] == sender,
            info.sizeBytes == UInt64(content.count)
        else {
            return fail(.fileIntegrity, "client \(client) saw a \(direction) offer of \(info.name) "
                + "(\(info.sizeBytes) bytes) that client \(sender) never made")
        }
        if direction == .outgoing {
            files.totals.offered += 1
            if info.hashFollows { files.totals.hashFollowed += 1 }
        }
        files.tracked[key] = FileWorkload.Tracked(
            info: info, peerIncarnation: world.clients[world.peer(of: client)].incarnation)
        files.order.append(key)
        // Tie the disk's file to the transfer: the file read for the offer, or the `.part` made
        // for it (the disk acted first, while the client handled the input that shows this).
        let stem = String(info.name.dropLast(".bin".count))
        let wanted = direction == .outgoing
            ? FileWorkload.sourceDirectory + "/" + info.name : FileWorkload.downloadDirectory + "/" + stem
        guard let position = files.unbound[client].firstIndex(where: {
            files.opened[client][$0]?.path.hasPrefix(wanted) == true
        }) else {
            return fail(.fileWrites, "client \(client) accepted or offered \(info.name) without a file on its disk")
        }
        let handle = files.unbound[client].remove(at: position)
        files.opened[client][handle]?.key = key
        if direction == .incoming { owedResume(handle, info, client: client) }
        if let end = files.opened[client][handle]?.written.last?.upperBound, end > info.sizeBytes {
            fail(.fileWrites, "client \(client) wrote up to byte \(end) of \(info.name), beyond its \(info.sizeBytes)")
        }
    }

    /// `file-integrity`: the file stored is byte for byte the one the peer offered.
    private func storedFile(_ info: FileOfferInfo, savedAs: String?, client: Int) {
        guard let files, let path = savedAs, let store = files.stores[client] else {
            return fail(.fileIntegrity, "client \(client) showed \(info.name) stored without a place on its disk")
        }
        guard settings.attack == nil || !(attackerPlaysPeer || attackerBlocksConnection) else {
            return fail(.authentication, "client \(client) stored \(info.name) with a relay in the middle")
        }
        let stored = store.files[path]
        guard let stored, stored == files.sources[info.name], Self.blake2b(stored) == info.hash else {
            return fail(.fileIntegrity, "client \(client) stored \(info.name) as \(path) with "
                + "\(stored.map { "\($0.count)" } ?? "no") bytes that differ from the \(info.sizeBytes) bytes "
                + "client \(world.peer(of: client)) offered")
        }
        files.verified[client].insert(path)
        files.storedIDs.insert(info.id)
        files.totals.stored += 1
        files.totals.bytesStored += stored.count
    }

    /// A failure must be one the faults explain, at either side.
    private func transferFailed(
        _ info: FileOfferInfo, _ direction: FileDirection, _ failure: FileFailure, key: FileWorkload.Key
    ) {
        switch failure {
        case .sessionEnded, .unconfirmed:
            break  // The process exited (it left, or its authentication failed): it says so.
        case .peerChanged:
            let peer = world.clients[world.peer(of: key.client)]
            let restarted = files?.tracked[key].map { peer.incarnation != $0.peerIncarnation } ?? true
            if !restarted && settings.attack == nil {
                fail(.fileLiveness, "client \(key.client)'s \(direction) \(info.name) failed (peer_changed), "
                    + "but its peer's process never changed")
            }
        case .peerLeft:
            // The peer's user ended the chat (a random leaver) before the transfer ended.
            if !users[world.peer(of: key.client)].inputEnded {
                fail(.fileLiveness, "client \(key.client)'s \(direction) \(info.name) failed (peer_left), "
                    + "but its peer's user never ended the chat")
            }
        case .hashMismatch:
            fail(.fileIntegrity, "client \(key.client)'s \(direction) \(info.name) failed its hash check")
        default:
            fail(.fileLiveness, "client \(key.client)'s \(direction) \(info.name) failed (\(failure.eventName)), "
                + "which no fault of this run explains")
        }
    }
}

// MARK: Resume after a process exit

extension Simulation {
    /// An incoming offer took a kept `.part` (`resumablePart`): what the receiver proposes is
    /// docs/PROTOCOL.md's k = min(⌊L / chunk⌋, chunks − 1) whole chunks, and when those bytes are
    /// the offered file's (they always are through an honest relay: the `.part` is named for the
    /// file's hash), the transfer owes keeping them (`file-resume`).
    private func owedResume(_ handle: Int, _ info: FileOfferInfo, client: Int) {
        guard let files, let opened = files.opened[client][handle], opened.kept > 0,
              let source = files.sources[info.name], let part = files.stores[client]?.files[opened.path] else { return }
        let chunk = UInt64(FileWorkload.chunkBytes)
        let chunks = (info.sizeBytes + chunk - 1) / chunk
        let keep = min(opened.kept / chunk, chunks > 0 ? chunks - 1 : 0) * chunk
        guard keep > 0, part.count >= Int(keep), part.prefix(Int(keep)) == source.prefix(Int(keep)) else { return }
        files.opened[client][handle]?.floor = keep
        files.totals.resumesOwed += 1
    }

    /// The receiver showed `resumed`: from exactly the prefix it owed.
    private func resumed(_ key: FileWorkload.Key, _ info: FileOfferInfo, bytes: UInt64) {
        guard let files else { return }
        let floor = files.opened[key.client].values.first(where: { $0.key == key })?.floor ?? 0
        guard bytes == floor else {
            return fail(.fileResume, "client \(key.client) resumed \(info.name) from byte \(bytes), but its .part "
                + "kept \(floor) bytes of the file")
        }
        files.totals.resumed += 1
        files.totals.bytesKept += Int(bytes)
    }

    /// The workload's kill: once per file room, in the fault phase, when the receiver has stored
    /// at least two whole chunks of a file with at least two left, its sender's process dies (and
    /// starts again `resumeKillDowntime` later, offering the same file again).
    private func considerResumeKill(_ key: FileWorkload.Key, _ info: FileOfferInfo, bytes: UInt64) {
        guard let files, adversary == nil, healedAt == nil, goodbye == nil else { return }
        let chunk = UInt64(FileWorkload.chunkBytes)
        let room = key.client / RoomCode.peersMax
        let sender = world.peer(of: key.client)
        guard bytes >= 2 * chunk, bytes + 2 * chunk <= info.sizeBytes, !files.killedRooms.contains(room),
              world.clients[sender].isRunning, users[sender].restartAt == nil else { return }
        files.killedRooms.insert(room)
        world.schedule(SimEvent.resumeKill.rawValue, client: Int32(sender), at: world.now)
    }

    /// `SimEvent.resumeKill`: the sender dies mid-transfer (if nothing ended it meanwhile).
    func resumeKill(_ index: Int) {
        guard let files, healedAt == nil, goodbye == nil, world.clients[index].isRunning else { return }
        files.totals.resumeKills += 1
        processCrash(index, restartAfter: FileWorkload.resumeKillDowntime)
    }
}

// MARK: Crashes, convergence and the end

extension Simulation {
    /// The process crashed: its transfers end unreported (nobody is left to tell).
    func fileProcessCrashed(_ index: Int) {
        guard let files else { return }
        let incarnation = world.clients[index].incarnation
        for key in files.order where key.client == index && key.incarnation == incarnation {
            if files.tracked[key]?.outcome == .open {
                files.tracked[key]?.outcome = .lostWithProcess
                files.totals.lostWithProcess += 1
            }
        }
        files.unbound[index].removeAll()
    }

    /// No transfer under way (part of convergence with files; a relay whose endpoints play the
    /// peers never answers an offer, so there it is not asked).
    func filesIdle(_ index: Int) -> Bool {
        guard files != nil, !attackerPlaysPeer, let driver = world.clients[index].driver else { return true }
        return driver.status.transfers.isEmpty
    }

    /// The process's exit 8 (files failed) counts as a clean exit when every failure it showed was
    /// its peer changing (a peer restart in the fault phase) or its peer's user leaving at random
    /// (an offer it made again after a restart met the goodbye), never the goodbye cutting a
    /// transfer both sides had time for.
    func fileFailuresExplainExit(_ index: Int, _ status: ClientExitStatus) -> Bool {
        guard status == .filesFailed, let files else { return false }
        let incarnation = world.clients[index].incarnation
        var seen = 0
        for key in files.order where key.client == index && key.incarnation == incarnation {
            guard case let .failed(failure) = files.tracked[key]?.outcome else { continue }
            guard failure == .peerChanged || (failure == .peerLeft && users[world.peer(of: index)].leaves) else {
                return false
            }
            seen += 1
        }
        return seen > 0
    }

    /// At the end: every transfer of every process that lived ended (stored and confirmed, or
    /// failed with a typed reason), and every file on a disk's download directory was checked.
    func finalFileCheck() {
        guard let files else { return }
        if !attackerPlaysPeer {
            for key in files.order where files.tracked[key]?.outcome == .open {
                let name = files.tracked[key]?.info.name ?? "?"
                return fail(.fileLiveness, "client \(key.client)'s \(key.direction) \(name) never ended: "
                    + "neither stored and confirmed nor failed")
            }
        }
        for (index, store) in files.stores.enumerated() {
            guard let store else { continue }
            let unchecked = store.files.keys.filter {
                $0.hasPrefix(FileWorkload.downloadDirectory + "/") && !$0.hasSuffix(".part")
                    && !files.verified[index].contains($0)
            }
            if let path = unchecked.min() {
                return fail(.fileIntegrity, "client \(index)'s disk holds \(path), which it never showed stored")
            }
        }
    }

    static func blake2b(_ bytes: [UInt8]) -> [UInt8] {
        let hasher = FileHasher()
        hasher.update(bytes)
        return hasher.finish()
    }

    func filesReport() -> SimulationReport.Files? {
        files?.totals
    }
}

extension SimulationReport {
    /// Files in the workload (`--files`).
    public struct Files: Sendable, Codable {
        /// Rooms whose clients send files.
        public var rooms = 0
        /// Offers made (each process of a sender offers its files when it starts).
        public var offered = 0
        /// Of them, offers made before the file was hashed, whose hash followed (`FHASH`).
        public var hashFollowed = 0
        /// Files stored and checked against the sent bytes, and of them confirmed to the sender.
        public var stored = 0
        public var bytesStored = 0
        public var confirmed = 0
        /// Transfer ends by failure, counted at each side that showed it.
        public var failed: [String: Int] = [:]
        /// Transfer ends nobody could show: the process crashed.
        public var lostWithProcess = 0
        /// Chunks sent again after going back (a reconnect, a stall), how many go-backs, and the
        /// longest (at most the window).
        public var chunksResent = 0
        public var goBacks = 0
        public var longestGoBackChunks = 0
        /// Senders the workload killed mid-transfer; offers that found a kept `.part` whose whole
        /// chunks were the file's (a resume owed), resumes shown by receivers, and the bytes kept.
        public var resumeKills = 0
        public var resumesOwed = 0
        public var resumed = 0
        public var bytesKept = 0
    }
}
