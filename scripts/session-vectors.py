#!/usr/bin/env python3
"""Known answers for securechat's session layer, computed from docs/PROTOCOL.md alone.

A second implementation: it follows the words of docs/PROTOCOL.md ("Session layer") with Python's
hashlib (BLAKE2b, SHA-512) and PyNaCl (X25519, XSalsa20-Poly1305), and nothing from the Swift
sources. Tests/Unit/SessionVectorTests.swift checks the Swift code against what it writes:

    pip install pynacl            (or: apt-get install python3-nacl)
    python3 scripts/session-vectors.py > Tests/Unit/Vectors/securechat-session-vectors.json

Three groups of answers:

1. `master_keys`: master = BLAKE2b-256(key: handshake secret, message: "securechat/v3/session-master"
   || transcript id), for the password mode's sizes (ISK 64, sid_output 64) and the no-password
   mode's (X25519 secret 32, transcript hash 32); and the four keys crypto_kdf_derive_from_key
   makes from each master (libsodium's documented construction, rebuilt here with hashlib:
   BLAKE2b-256 keyed with the master, salt = subkey id as 8 bytes little-endian || 8 zeros,
   personal = the 8-byte context || 8 zeros, empty message).
2. `safety_numbers`: SHA-512 over lv_cat(label, room, first, second), 12 groups of 5 digits.
3. `x25519_session`: a whole no-password conversation, byte for byte: two sessions whose entropy
   source returns one constant byte (0x11 for alice, 0x22 for bob), so that every random value a
   session draws (its instance ID, its X25519 secret key) is that byte repeated, whatever order
   they are drawn in. From that, PROTOCOL.md fixes every frame: each side's KEY_EXCHANGE (key and
   hello), KEY_CONFIRM, alice's first two MSG records, bob's ACKs for them, and the safety number.
4. `x25519_continued`: the same two sessions after bob reconnects: the retained secret and its id
   from the first handshake's master key, both hellos of the continued handshake (epoch 2, the
   conversation remembered, the id listed), both KEY_CONFIRMs under the continued master key,
   alice's third record and bob's ACK under the new keys, and the goodbye when alice leaves: her
   BYE request, bob's answer and her last BYE.
"""
import hashlib
import json
import pathlib
import sys

from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base, crypto_secretbox_easy

# CPace's encodings (PROTOCOL.md "Password mode: CPace", draft-irtf-cfrg-cpace Appendix A.1.1, A.3.2).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cpace_encoding import lexicographically_larger, lv_cat  # noqa: E402

# ---- PROTOCOL.md "Session keys" -----------------------------------------------------------------

def master_key(handshake_secret: bytes, transcript_id: bytes) -> bytes:
    message = b"securechat/v3/session-master" + transcript_id
    return hashlib.blake2b(message, digest_size=32, key=handshake_secret).digest()


def continued_master(base: bytes, retained: bytes) -> bytes:
    return hashlib.blake2b(b"securechat/v3/continued-master" + base, digest_size=32, key=retained).digest()


# ---- PROTOCOL.md "Key continuity" ---------------------------------------------------------------

def retained_secret(master: bytes) -> tuple:
    """(R', id) kept from a handshake whose master key is `master`."""
    secret = hashlib.blake2b(b"securechat/v3/retained-secret", digest_size=32, key=master).digest()
    return secret, hashlib.blake2b(b"securechat/v3/retained-id", digest_size=16, key=secret).digest()


def kdf(key: bytes, subkey_id: int, context: bytes) -> bytes:
    """crypto_kdf_derive_from_key(32, subkey_id, context, key), as libsodium documents it."""
    assert len(context) == 8 and len(key) == 32
    salt = subkey_id.to_bytes(8, "little") + bytes(8)
    person = context + bytes(8)
    return hashlib.blake2b(b"", digest_size=32, key=key, salt=salt, person=person).digest()


LOW_TO_HIGH, HIGH_TO_LOW = 1, 2


def session_keys(master: bytes) -> dict:
    return {
        "chain_low_to_high": kdf(master, LOW_TO_HIGH, b"SC_CHAIN"),
        "chain_high_to_low": kdf(master, HIGH_TO_LOW, b"SC_CHAIN"),
        "control_low_to_high": kdf(master, LOW_TO_HIGH, b"SC_CTRL_"),
        "control_high_to_low": kdf(master, HIGH_TO_LOW, b"SC_CTRL_"),
    }


PURPOSE_RECORD, PURPOSE_CONFIRM, PURPOSE_ACK, PURPOSE_GOODBYE = 1, 2, 3, 4
SIDE_LOW, SIDE_HIGH = 0, 1


def nonce(purpose: int, side: int, counter: int) -> bytes:
    return bytes([purpose, side]) + bytes(14) + counter.to_bytes(8, "big")


def record(text: str) -> bytes:
    """type 0x01 || text length (2) || UTF-8 text || zero padding to a multiple of 32 bytes."""
    body = text.encode()
    unpadded = bytes([1]) + len(body).to_bytes(2, "big") + body
    return unpadded + bytes(-len(unpadded) % 32)


# ---- PROTOCOL.md "Safety numbers" ---------------------------------------------------------------

def safety_number(room: bytes, local: tuple, peer: tuple) -> str:
    a, b = lv_cat(*local), lv_cat(*peer)
    first, second = (a, b) if lexicographically_larger(a, b) else (b, a)
    digest = hashlib.sha512(lv_cat(b"securechat/v3/safety-number", room, first, second)).digest()
    groups = [int.from_bytes(digest[5 * i:5 * i + 5], "big") % 100000 for i in range(12)]
    return " ".join(f"{group:05d}" for group in groups)


# ---- PROTOCOL.md "Kinds" (the hello) and "No-password mode: X25519" -----------------------------

def hello(instance: bytes, epoch: int, known_peer: bytes = bytes(16), next_expected: int = 1,
          retained_ids: tuple = ()) -> bytes:
    return (bytes([3]) + instance + epoch.to_bytes(8, "big") + known_peer + next_expected.to_bytes(8, "big")
            + bytes([len(retained_ids)]) + b"".join(retained_ids))


def opening(hello_bytes: bytes) -> bytes:
    """An opening's reference in a KEY_CONFIRM: its instance and epoch (hello bytes 1..25)."""
    return hello_bytes[1:25]


def transcript_hash(room: bytes, low: tuple, high: tuple) -> bytes:
    data = b"securechat/v3/transcript"
    for part in (room, low[0], low[1], high[0], high[1]):
        data += len(part).to_bytes(2, "big") + part
    return hashlib.blake2b(data, digest_size=32).digest()


def x25519_session(room: str, texts: list) -> dict:
    parties = {}
    for name, byte in (("alice", 0x11), ("bob", 0x22)):
        secret = bytes([byte]) * 32
        public = crypto_scalarmult_base(secret)
        # The first handshake: epoch 1; no peer remembered yet (zeros), next expected 1.
        parties[name] = {"secret": secret, "key": public, "hello": hello(bytes([byte]) * 16, 1)}
    alice, bob = parties["alice"], parties["bob"]
    alice["side"] = SIDE_LOW if alice["key"] < bob["key"] else SIDE_HIGH
    bob["side"] = 1 - alice["side"]
    low, high = (alice, bob) if alice["side"] == SIDE_LOW else (bob, alice)
    room_bytes = room.encode()
    transcript = transcript_hash(room_bytes, (low["key"], low["hello"]), (high["key"], high["hello"]))
    shared = crypto_scalarmult(alice["secret"], bob["key"])
    assert shared == crypto_scalarmult(bob["secret"], alice["key"])
    keys = session_keys(master_key(shared, transcript))

    def direction(party: dict, kind: str) -> bytes:
        return keys[f"{kind}_low_to_high" if party["side"] == SIDE_LOW else f"{kind}_high_to_low"]

    for party, peer in ((alice, bob), (bob, alice)):
        box = crypto_secretbox_easy(transcript, nonce(PURPOSE_CONFIRM, party["side"], 0), direction(party, "control"))
        party["key_confirm"] = transcript[:16] + opening(peer["hello"]) + opening(party["hello"]) + box

    # Alice's records 1, 2, ... under the ratchet; bob acknowledges each (cumulative, in order).
    chain = direction(alice, "chain")
    messages, acks = [], []
    for sequence, text in enumerate(texts, start=1):
        message_key = kdf(chain, 1, b"SC_RATCH")
        chain = kdf(chain, 2, b"SC_RATCH")
        box = crypto_secretbox_easy(record(text), nonce(PURPOSE_RECORD, alice["side"], sequence), message_key)
        messages.append(sequence.to_bytes(8, "big") + box)
        counter = sequence  # Bob's first ack has counter 1, the next 2, ...
        ack = crypto_secretbox_easy(
            sequence.to_bytes(8, "big"), nonce(PURPOSE_ACK, bob["side"], counter), direction(bob, "control"))
        acks.append(counter.to_bytes(8, "big") + ack)

    number = safety_number(room_bytes, (alice["key"], alice["hello"]), (bob["key"], bob["hello"]))
    assert number == safety_number(room_bytes, (bob["key"], bob["hello"]), (alice["key"], alice["hello"]))
    describe = lambda party: {  # noqa: E731
        "entropy_byte": party["secret"][0],
        "key": party["key"].hex(),
        "hello": party["hello"].hex(),
        "side": "low" if party["side"] == SIDE_LOW else "high",
        "key_confirm_payload": party["key_confirm"].hex(),
    }
    parties["master"] = master_key(shared, transcript)
    parties["number"] = number
    return parties, {
        "room": room,
        "alice": describe(alice),
        "bob": describe(bob),
        "transcript_hash": transcript.hex(),
        "alice_texts": texts,
        "alice_msg_payloads": [payload.hex() for payload in messages],
        "bob_ack_payloads": [payload.hex() for payload in acks],
        "safety_number": number,
    }


def x25519_continued(room: str, parties: dict, texts: list, text: str) -> dict:
    """Bob reconnects: both open again (epoch 2) and continue with the secret kept from the first."""
    alice, bob = parties["alice"], parties["bob"]
    retained, retained_id = retained_secret(parties["master"])
    # Each remembers the other; alice expects bob's record 1 (he sent none), bob alice's next.
    alice["hello2"] = hello(bytes([0x11]) * 16, 2, bytes([0x22]) * 16, 1, (retained_id,))
    bob["hello2"] = hello(bytes([0x22]) * 16, 2, bytes([0x11]) * 16, len(texts) + 1, (retained_id,))
    low, high = (alice, bob) if alice["side"] == SIDE_LOW else (bob, alice)
    room_bytes = room.encode()
    # The entropy is one byte repeated, so the key pairs are those of the first handshake.
    transcript = transcript_hash(room_bytes, (low["key"], low["hello2"]), (high["key"], high["hello2"]))
    shared = crypto_scalarmult(alice["secret"], bob["key"])
    keys = session_keys(continued_master(master_key(shared, transcript), retained))

    def direction(party: dict, kind: str) -> bytes:
        return keys[f"{kind}_low_to_high" if party["side"] == SIDE_LOW else f"{kind}_high_to_low"]

    for party, peer in ((alice, bob), (bob, alice)):
        box = crypto_secretbox_easy(transcript, nonce(PURPOSE_CONFIRM, party["side"], 0), direction(party, "control"))
        party["key_confirm2"] = transcript[:16] + opening(peer["hello2"]) + opening(party["hello2"]) + box

    # The conversation resumes: alice's next record is number len(texts) + 1, sealed with the first
    # step of the new chain; bob's first ack under the new keys has counter 1.
    sequence = len(texts) + 1
    chain = direction(alice, "chain")
    box = crypto_secretbox_easy(record(text), nonce(PURPOSE_RECORD, alice["side"], sequence), kdf(chain, 1, b"SC_RATCH"))
    message = sequence.to_bytes(8, "big") + box
    ack = (1).to_bytes(8, "big") + crypto_secretbox_easy(
        sequence.to_bytes(8, "big"), nonce(PURPOSE_ACK, bob["side"], 1), direction(bob, "control"))

    def bye(party: dict, counter: int, flags: int, received: int, sent: int, confirmed: int) -> bytes:
        body = bytes([flags]) + received.to_bytes(8, "big") + sent.to_bytes(8, "big") + confirmed.to_bytes(8, "big")
        sealed = crypto_secretbox_easy(body, nonce(PURPOSE_GOODBYE, party["side"], counter), direction(party, "control"))
        return counter.to_bytes(8, "big") + sealed

    # Alice leaves: her request (leaving, answer requested; her first control message under these
    # keys), bob's answer (his ack above was counter 1), and her last BYE once everything is in.
    goodbye = [
        bye(alice, 1, 3, 0, sequence, sequence),
        bye(bob, 2, 0, sequence, 0, 0),
        bye(alice, 2, 1, 0, sequence, sequence),
    ]
    return {
        "retained_secret": retained.hex(),
        "retained_id": retained_id.hex(),
        "alice_hello": alice["hello2"].hex(),
        "bob_hello": bob["hello2"].hex(),
        "transcript_hash": transcript.hex(),
        "alice_key_confirm_payload": alice["key_confirm2"].hex(),
        "bob_key_confirm_payload": bob["key_confirm2"].hex(),
        "alice_text": text,
        "alice_msg_payload": message.hex(),
        "bob_ack_payload": ack.hex(),
        "alice_bye_payloads": [goodbye[0].hex(), goodbye[2].hex()],
        "bob_bye_payloads": [goodbye[1].hex()],
        "safety_number": parties["number"],
    }


def master_key_case(secret: bytes, transcript_id: bytes, mode: str) -> dict:
    master = master_key(secret, transcript_id)
    keys = session_keys(master)
    return {"mode": mode, "handshake_secret": secret.hex(), "transcript_id": transcript_id.hex(),
            "master": master.hex(), **{name: value.hex() for name, value in keys.items()}}


def main() -> None:
    master_keys = [
        # Password mode: ISK (64) and sid_output (64).
        master_key_case(bytes(range(64)), bytes(range(64, 128)), "password"),
        # No password: the X25519 secret (32) and the transcript hash (32).
        master_key_case(bytes(range(0xA0, 0xC0)), bytes(range(0x20, 0x40)), "no-password"),
    ]
    alice = (bytes(range(32)), hello(bytes(range(100, 116)), 1))
    bob = (bytes(range(32, 64)), hello(bytes(range(200, 216)), 7, bytes(range(100, 116)), 3))
    safety_numbers = [
        {"room": "ROOM42", "local_key": alice[0].hex(), "local_hello": alice[1].hex(),
         "peer_key": bob[0].hex(), "peer_hello": bob[1].hex(), "number": safety_number(b"ROOM42", alice, bob)},
    ]
    texts = ["hello, known answer", "a second record, " + "x" * 40]
    parties, session = x25519_session("KAT7ROOM", texts)
    vectors = {
        "source": "scripts/session-vectors.py, from docs/PROTOCOL.md (hashlib + PyNaCl)",
        "master_keys": master_keys,
        "safety_numbers": safety_numbers,
        "x25519_session": session,
        "x25519_continued": x25519_continued("KAT7ROOM", parties, texts, "after the reconnect"),
    }
    json.dump(vectors, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
