#!/usr/bin/env python3
"""Known answers for the parts of our crypto that no published vector covers, computed with
Python's hashlib/hmac: an implementation independent of libsodium, so the Swift tests compare two
implementations of the same written construction.

    python3 scripts/derived-crypto-vectors.py

1. CPace key confirmation (draft-irtf-cfrg-cpace-21 section 10.4) on the draft's ristretto255
   vector: mac_key = SHA-512("CPaceMac" || sid || ISK_SY), Ta = HMAC-SHA-512(mac_key,
   lv_cat(Ya, ADa)), Tb likewise over lv_cat(Yb, ADb). Pinned in Tests/Unit/CPaceTests.swift.
2. A safety number (Sources/ChatCore/Crypto/SafetyNumber.swift) for fixed inputs. Pinned in
   Tests/Unit/SafetyNumberTests.swift.
"""
import hashlib
import hmac
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cpace_encoding import lv_cat  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def cpace_confirmation() -> None:
    vectors = json.loads((ROOT / "Tests/Unit/Vectors/cpace-testvectors.json").read_text())["G_Coffee25519"]
    value = lambda key: bytes.fromhex(vectors[key])  # noqa: E731
    mac_key = hashlib.sha512(b"CPaceMac" + value("sid") + value("ISK_SY")).digest()
    ta = hmac.new(mac_key, lv_cat(value("Ya"), value("ADa")), hashlib.sha512).hexdigest()
    tb = hmac.new(mac_key, lv_cat(value("Yb"), value("ADb")), hashlib.sha512).hexdigest()
    print("CPace mac_key (sid, ISK_SY):", mac_key.hex())
    print("CPace Ta:", ta)
    print("CPace Tb:", tb)


def safety_number(room: bytes, a: tuple, b: tuple) -> str:
    first, second = sorted([lv_cat(*a), lv_cat(*b)], reverse=True)  # Larger first, as o_cat.
    digest = hashlib.sha512(lv_cat(b"securechat/v3/safety-number", room, first, second)).digest()
    groups = [int.from_bytes(digest[i * 5:i * 5 + 5], "big") % 100000 for i in range(12)]
    return " ".join(f"{g:05d}" for g in groups)


def main() -> None:
    cpace_confirmation()
    alice = (bytes(range(32)), b"\x01" + bytes(range(100, 116)) + (1).to_bytes(8, "big"))
    bob = (bytes(range(32, 64)), b"\x01" + bytes(range(200, 216)) + (1).to_bytes(8, "big"))
    print("Safety number (ROOM42, keys 00..1f / 20..3f):", safety_number(b"ROOM42", alice, bob))


if __name__ == "__main__":
    main()
