#!/usr/bin/env python3
"""The crypto floor of a file transfer on this machine (BENCHMARKS.md, "File transfer"): libsodium's
BLAKE2b (crypto_generichash) and XSalsa20-Poly1305 (crypto_secretbox_easy) over 48 KiB buffers, the
clients' chunk size, through ctypes (the call overhead is under 1% at this size), and SHA-256
(hashlib, OpenSSL) for magic-wormhole's hash. Usage: python3 scripts/sodium-floor.py [MiB, default 1024]
"""
import ctypes
import hashlib
import os
import sys
import time

sodium = ctypes.CDLL("libsodium.so.23")
assert sodium.sodium_init() >= 0
chunk = os.urandom(48 * 1024)
rounds = int(sys.argv[1] if len(sys.argv) > 1 else 1024) * 1024 * 1024 // len(chunk)


def rate(label, step):
    start = time.perf_counter()
    for _ in range(rounds):
        step()
    seconds = time.perf_counter() - start
    print(f"{label:28} {rounds * len(chunk) / seconds / 1e6:7.0f} MB/s  ({seconds / (rounds * len(chunk)) * 2**30:.2f} s per GiB)")


state = ctypes.create_string_buffer(sodium.crypto_generichash_statebytes())
sodium.crypto_generichash_init(state, None, 0, 32)
rate("BLAKE2b-256 (libsodium)", lambda: sodium.crypto_generichash_update(state, chunk, ctypes.c_ulonglong(len(chunk))))
key, nonce = os.urandom(32), os.urandom(24)
sealed = ctypes.create_string_buffer(len(chunk) + 16)
rate("XSalsa20-Poly1305 (libsodium)",
     lambda: sodium.crypto_secretbox_easy(sealed, chunk, ctypes.c_ulonglong(len(chunk)), nonce, key))
sha = hashlib.sha256()
rate("SHA-256 (OpenSSL)", lambda: sha.update(chunk))
