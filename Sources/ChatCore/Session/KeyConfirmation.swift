/// A KEY_CONFIRM (protocol v3): which pairing it confirms, and the proof.
///
/// Payload: run id (16) ‖ the receiver's opening (instance 16, epoch 8) ‖ the sender's opening
/// (instance 16, epoch 8) ‖ proof. The two references let the receiver tell, from public bytes, a
/// confirmation of the pairing it made (then the run id and proof must match: anything else is
/// tampering, `HandshakeMachine.receiveConfirmation`) from a delayed copy of another pairing
/// (dropped) or one that overtook the hello it answers (held). The references are not trusted:
/// the run id (a hash of the whole public transcript) and the proof are what the receiver checks.
struct KeyConfirmation: Hashable {
    static let runIDByteCount = 16
    static let headerByteCount = runIDByteCount + 2 * HelloReference.byteCount
    /// The largest proof: a sealed 64-byte CPace sid_output (80 bytes); a tag is 64.
    static let proofByteCountMax = 128

    let runID: [UInt8]
    /// The opening of the side this confirmation is sent to.
    let receiver: HelloReference
    /// The opening of the side that sent it.
    let sender: HelloReference
    let proof: [UInt8]

    init(runID: [UInt8], receiver: HelloReference, sender: HelloReference, proof: [UInt8]) {
        precondition(runID.count == Self.runIDByteCount)
        self.runID = runID
        self.receiver = receiver
        self.sender = sender
        self.proof = proof
    }

    init(payload: [UInt8]?) throws(HandshakeError) {
        guard let payload, payload.count > Self.headerByteCount,
              payload.count <= Self.headerByteCount + Self.proofByteCountMax
        else { throw .confirmationFailed }
        func reference(at offset: Int) -> HelloReference? {
            guard let instance = InstanceID(payload[offset..<(offset + InstanceID.byteCount)]) else { return nil }
            return HelloReference(instance: instance, epoch: BigEndian.uint64(payload, at: offset + InstanceID.byteCount))
        }
        guard let receiver = reference(at: Self.runIDByteCount),
              let sender = reference(at: Self.runIDByteCount + HelloReference.byteCount)
        else { throw .confirmationFailed }
        self.runID = Array(payload[0..<Self.runIDByteCount])
        self.receiver = receiver
        self.sender = sender
        self.proof = Array(payload[Self.headerByteCount...])
    }

    var payload: [UInt8] {
        var bytes = runID
        bytes.reserveCapacity(Self.headerByteCount + proof.count)
        receiver.append(to: &bytes)
        sender.append(to: &bytes)
        bytes.append(contentsOf: proof)
        return bytes
    }

    var frame: [UInt8] {
        WireCodec.encode(ClientMessage.signal(Signal(kind: .keyConfirm, payload: payload)))
    }
}
