import ChatCore
import Testing

@Suite("Safety numbers: 60 digits from the whole handshake transcript")
struct SafetyNumberTests {
    static func hello(instanceStart: UInt8, epoch: UInt64) -> [UInt8] {
        var bytes: [UInt8] = [1] + (0..<16).map { instanceStart &+ UInt8($0) }
        withUnsafeBytes(of: epoch.bigEndian) { bytes += $0 }
        return bytes
    }

    let room = try! RoomCode("ROOM42")
    let alice = SafetyNumber.Party(key: Array(0..<32), hello: hello(instanceStart: 100, epoch: 1))
    let bob = SafetyNumber.Party(key: Array(32..<64), hello: hello(instanceStart: 200, epoch: 1))

    @Test("Known answer, pinned against an independent Python computation")
    func knownAnswer() {
        // scripts/derived-crypto-vectors.py (hashlib), same inputs.
        let number = SafetyNumber(room: room, local: alice, peer: bob)
        #expect(number.description == "96291 32342 10663 13529 19271 02128 78698 61996 99543 55269 07070 67882")
        #expect(number.displayLines
            == ["96291 32342 10663 13529", "19271 02128 78698 61996", "99543 55269 07070 67882"])
    }

    @Test("Both sides compute the same number: 60 digits in 12 groups of 5")
    func bothSides() {
        let atAlice = SafetyNumber(room: room, local: alice, peer: bob)
        let atBob = SafetyNumber(room: room, local: bob, peer: alice)
        #expect(atAlice == atBob)
        #expect(atAlice.digits.count == 60)
        #expect(atAlice.digits.allSatisfy(\.isASCII) && atAlice.digits.allSatisfy(\.isNumber))
        #expect(atAlice.groups.count == 12 && atAlice.groups.allSatisfy { $0.count == 5 })
        #expect(atAlice.groups.joined() == atAlice.digits)
    }

    @Test("Any change to either key, either hello or the room changes the number")
    func everyInputCounts() throws {
        let reference = SafetyNumber(room: room, local: alice, peer: bob)
        for party in 0..<2 {
            for index in 0..<32 {
                var changedAlice = alice
                var changedBob = bob
                if party == 0 { changedAlice.key[index] ^= 0x01 } else { changedBob.key[index] ^= 0x80 }
                #expect(SafetyNumber(room: room, local: changedAlice, peer: changedBob) != reference,
                        "key \(party) byte \(index)")
            }
            for index in 0..<alice.hello.count {
                var changedAlice = alice
                var changedBob = bob
                if party == 0 { changedAlice.hello[index] ^= 0x01 } else { changedBob.hello[index] ^= 0x01 }
                #expect(SafetyNumber(room: room, local: changedAlice, peer: changedBob) != reference,
                        "hello \(party) byte \(index)")
            }
        }
        #expect(SafetyNumber(room: try RoomCode("ROOM43"), local: alice, peer: bob) != reference)
        // Moving a byte from the key to the hello changes the encoding, so the number too.
        let shifted = SafetyNumber.Party(key: Array(alice.key.dropLast()), hello: [alice.key.last!] + alice.hello)
        #expect(SafetyNumber(room: room, local: shifted, peer: bob) != reference)
    }

    @Test("A relay in the middle: each user sees a different number")
    func manInTheMiddle() {
        // The relay swaps keys: Alice talks to M1, Bob to M2.
        let m1 = SafetyNumber.Party(key: (0..<32).map { UInt8(255 - $0) }, hello: bob.hello)
        let m2 = SafetyNumber.Party(key: (0..<32).map { UInt8(128 + $0) }, hello: alice.hello)
        let atAlice = SafetyNumber(room: room, local: alice, peer: m1)
        let atBob = SafetyNumber(room: room, local: bob, peer: m2)
        #expect(atAlice != atBob)
        #expect(atAlice != SafetyNumber(room: room, local: alice, peer: bob))
    }

    @Test("matches: all 60 digits, spacing ignored; a prefix is not a match")
    func matching() {
        let number = SafetyNumber(room: room, local: alice, peer: bob)
        #expect(number.matches(number.description))
        #expect(number.matches(number.digits))
        #expect(number.matches(number.displayLines.joined(separator: "\n")))
        #expect(!number.matches(String(number.digits.prefix(55))))
        var wrong = Array(number.digits)
        wrong[59] = wrong[59] == "0" ? "1" : "0"
        #expect(!number.matches(String(wrong)))
    }
}
