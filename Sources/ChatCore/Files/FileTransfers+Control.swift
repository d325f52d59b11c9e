/// File control messages from the peer (session records of type 2).
extension FileTransfers {
    /// A file control record from the peer, at `now`.
    public mutating func receiveControl(_ bytes: [UInt8], now: Instant) {
        guard let message = FileControl.decode(bytes) else {
            statistics.messagesRejected += 1
            return
        }
        switch message {
        case let .offer(info, chunkBytes, key):
            receiveOffer(info, chunkBytes: chunkBytes, key: key)
        case let .accept(id, startChunk, prefixHash):
            receiveAccept(id, startChunk: startChunk, prefixHash: prefixHash, now: now)
        case let .restart(id):
            receiveRestart(id, now: now)
        case let .fileHash(id, hash):
            receiveFileHash(id, hash: hash)
        case let .reject(id, refusal):
            guard let index = index(of: id, .outgoing), transfers[index].phase == .offered else {
                statistics.messagesRejected += 1
                return
            }
            end(at: index, .rejected(refusal))
        case let .cancel(id, code):
            receiveCancel(id, code: code)
        case let .done(id, hash):
            // Also while chunks still move: the last acknowledgement travels outside the reliable
            // channel and may be lost, but `DONE` (a record) says the receiver stored every chunk.
            guard let index = index(of: id, .outgoing), transfers[index].phase != .offered else {
                statistics.messagesRejected += 1
                return
            }
            // A `DONE` before this side knows its own hash (it follows the offer) is no match.
            if transfers[index].info.hashKnown, hash == transfers[index].info.hash {
                succeed(at: index)
            } else {
                end(at: index, .hashMismatch)
            }
        }
    }

    private mutating func receiveOffer(_ info: FileOfferInfo, chunkBytes: Int, key: [UInt8]) {
        var key = key
        defer { Sodium.memzero(&key) }
        guard transfers.allSatisfy({ $0.info.id != info.id }) else {
            statistics.messagesRejected += 1  // The same id twice: never a second transfer.
            return
        }
        guard !isLeaving else {
            // Numbered by the peer before it read our goodbye: it ends its side once it has all we
            // sent, so accepting would wait for chunks that never come. Said, never accepted.
            pending.append(.event(.failed(info, .incoming, .sessionEnded)))
            return
        }
        guard transfers.count < configuration.transfersMax else {
            pending.append(.control(FileControl.reject(info.id, .busy).encode()))
            return
        }
        transfers.append(Transfer(
            info: info, direction: .incoming, chunkBytes: chunkBytes, key: FileKey(copying: key)))
        pending.append(.event(.offered(info, .incoming)))
    }

    private mutating func receiveCancel(_ id: FileID, code: UInt8) {
        // Either direction: the sender cancels what it sends, the receiver what it receives.
        if let index = index(of: id, .incoming) {
            end(at: index, FileFailure.fromCancel(code))
        } else if let index = index(of: id, .outgoing) {
            // Code 5 is the sender's word about the relay: from a receiver it means nothing more.
            end(at: index, code == 5 ? .cancelledByPeer : FileFailure.fromCancel(code))
        } else {
            statistics.messagesRejected += 1
        }
    }
}
