#ifndef SECURECHAT_CSODIUM_SHIM_H
#define SECURECHAT_CSODIUM_SHIM_H

// libsodium 1.0.18 as Debian ships it (`libsodium-dev`).
//
// Swift 6 imports libsodium's functions directly. What it will not import cleanly are the
// size constants that are chained macros (`crypto_box_NONCEBYTES` expands to another macro),
// and it treats C globals as unsafe shared mutable state. The few values we need are
// re-exported here as `static inline` functions so that the Swift side never touches a C
// global and every size comes from the library's own headers, not from a copied literal.
#include <sodium.h>

static inline size_t sc_box_publickeybytes(void) { return crypto_box_PUBLICKEYBYTES; }
static inline size_t sc_box_secretkeybytes(void) { return crypto_box_SECRETKEYBYTES; }
static inline size_t sc_box_beforenmbytes(void) { return crypto_box_BEFORENMBYTES; }
static inline size_t sc_box_noncebytes(void) { return crypto_box_NONCEBYTES; }
static inline size_t sc_box_macbytes(void) { return crypto_box_MACBYTES; }
static inline size_t sc_secretbox_keybytes(void) { return crypto_secretbox_KEYBYTES; }
static inline size_t sc_secretbox_noncebytes(void) { return crypto_secretbox_NONCEBYTES; }
static inline size_t sc_secretbox_macbytes(void) { return crypto_secretbox_MACBYTES; }
static inline size_t sc_scalarmult_bytes(void) { return crypto_scalarmult_BYTES; }
static inline size_t sc_scalarmult_scalarbytes(void) { return crypto_scalarmult_SCALARBYTES; }
static inline size_t sc_generichash_bytes_max(void) { return crypto_generichash_BYTES_MAX; }
static inline size_t sc_generichash_keybytes_max(void) { return crypto_generichash_KEYBYTES_MAX; }
static inline size_t sc_kdf_keybytes(void) { return crypto_kdf_KEYBYTES; }
static inline size_t sc_kdf_contextbytes(void) { return crypto_kdf_CONTEXTBYTES; }
static inline size_t sc_auth_bytes(void) { return crypto_auth_BYTES; }
static inline size_t sc_auth_keybytes(void) { return crypto_auth_KEYBYTES; }
static inline size_t sc_hash_sha512_bytes(void) { return crypto_hash_sha512_BYTES; }
static inline size_t sc_ristretto255_bytes(void) { return crypto_core_ristretto255_BYTES; }
static inline size_t sc_ristretto255_hashbytes(void) { return crypto_core_ristretto255_HASHBYTES; }
static inline size_t sc_ristretto255_scalarbytes(void) { return crypto_core_ristretto255_SCALARBYTES; }
static inline size_t sc_ristretto255_nonreducedscalarbytes(void) {
    return crypto_core_ristretto255_NONREDUCEDSCALARBYTES;
}
static inline int sc_base64_variant_original(void) { return sodium_base64_VARIANT_ORIGINAL; }
static inline size_t sc_base64_encoded_len(size_t bin_len) {
    return sodium_base64_ENCODED_LEN(bin_len, sodium_base64_VARIANT_ORIGINAL);
}

#endif
