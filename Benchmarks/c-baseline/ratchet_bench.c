/*
 * The C baseline of the crypto benchmark: MessageRatchet's seal + open loop written directly
 * against libsodium, so that `scripts/bench-crypto.sh` can print the cost of the Swift layer as a
 * ratio of throughputs.
 *
 * It does exactly the cryptographic work of Sources/ChatCore/Crypto/MessageRatchet.swift, call for
 * call, and nothing more:
 *   - init: the two chain keys from a master key, crypto_kdf_derive_from_key(id 1 and 2, "SC_CHAIN");
 *   - seal record n: message key = KDF(chain, 1, "SC_RATCH"), next chain = KDF(chain, 2, "SC_RATCH"),
 *     chain := next chain, crypto_secretbox_easy under the message key with the counter nonce
 *     (purpose 1 = record, side, 14 zero bytes, n big-endian), message key wiped;
 *   - open record n: the same two KDF calls on the receive chain, crypto_secretbox_open_easy, and the
 *     chain moves only if the box authenticated; both derived keys wiped.
 * Keys live in sodium_malloc'd (guarded, locked) memory allocated once, as a careful C program
 * would keep them; the ciphertext and plaintext buffers are allocated once and reused. A
 * plaintext byte is checked after every open, so the compiler cannot drop the work.
 *
 * Output, one line per size (the Swift twin, CryptoThroughput, prints the same format):
 *   size=<bytes> messages=<n> wall_s=<s> cpu_s=<s> mb_per_s_cpu=<MB/s> ns_per_message_cpu=<ns>
 * MB/s counts plaintext bytes (10^6 per MB) of one seal + one open; the figures use the process's
 * CPU time (user + system, CLOCK_PROCESS_CPUTIME_ID), which the other tenants of a shared machine
 * disturb less than wall time.
 *
 * Build: cc -O2 -o ratchet-bench ratchet_bench.c $(pkg-config --cflags --libs libsodium)
 * Run:   ./ratchet-bench SECONDS SIZE...      e.g. ./ratchet-bench 2 64 1024 65536
 */
#include <sodium.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    KEY_BYTES = 32,
    SIDE_LOW = 0,
    PURPOSE_RECORD = 1,
    LOW_TO_HIGH_ID = 1,
    MESSAGE_KEY_ID = 1,
    NEXT_CHAIN_ID = 2,
    SIZE_MAX_BYTES = 1 << 20,
    /* Iterations between clock readings: small enough to stop close to the deadline. */
    BATCH = 16,
};

static const char CHAIN_CONTEXT[crypto_kdf_CONTEXTBYTES] = {'S', 'C', '_', 'C', 'H', 'A', 'I', 'N'};
static const char STEP_CONTEXT[crypto_kdf_CONTEXTBYTES] = {'S', 'C', '_', 'R', 'A', 'T', 'C', 'H'};

static double seconds(clockid_t clock) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static void record_nonce(unsigned char nonce[crypto_secretbox_NONCEBYTES], unsigned side, uint64_t counter) {
    memset(nonce, 0, crypto_secretbox_NONCEBYTES);
    nonce[0] = PURPOSE_RECORD;
    nonce[1] = (unsigned char)side;
    for (int index = 0; index < 8; index++) {
        nonce[16 + index] = (unsigned char)(counter >> (56 - 8 * index));
    }
}

/* Guarded key storage, one allocation for the whole run (as MessageRatchet's own keys). */
struct keys {
    unsigned char send_chain[KEY_BYTES];
    unsigned char receive_chain[KEY_BYTES];
    unsigned char message_key[KEY_BYTES];
    unsigned char next_chain[KEY_BYTES];
};

static void step(struct keys *keys, const unsigned char *chain) {
    if (crypto_kdf_derive_from_key(keys->message_key, KEY_BYTES, MESSAGE_KEY_ID, STEP_CONTEXT, chain) != 0 ||
        crypto_kdf_derive_from_key(keys->next_chain, KEY_BYTES, NEXT_CHAIN_ID, STEP_CONTEXT, chain) != 0) {
        abort();
    }
}

static void seal(struct keys *keys, uint64_t sequence, const unsigned char *plaintext, size_t length,
                 unsigned char *ciphertext) {
    unsigned char nonce[crypto_secretbox_NONCEBYTES];
    step(keys, keys->send_chain);
    memcpy(keys->send_chain, keys->next_chain, KEY_BYTES);
    sodium_memzero(keys->next_chain, KEY_BYTES);
    record_nonce(nonce, SIDE_LOW, sequence);
    if (crypto_secretbox_easy(ciphertext, plaintext, length, nonce, keys->message_key) != 0) abort();
    sodium_memzero(keys->message_key, KEY_BYTES);
}

static int open_record(struct keys *keys, uint64_t sequence, const unsigned char *ciphertext, size_t length,
                       unsigned char *plaintext) {
    unsigned char nonce[crypto_secretbox_NONCEBYTES];
    step(keys, keys->receive_chain);
    record_nonce(nonce, SIDE_LOW, sequence);
    int status = crypto_secretbox_open_easy(plaintext, ciphertext, length, nonce, keys->message_key);
    if (status == 0) memcpy(keys->receive_chain, keys->next_chain, KEY_BYTES);
    sodium_memzero(keys->message_key, KEY_BYTES);
    sodium_memzero(keys->next_chain, KEY_BYTES);
    return status;
}

static void run(size_t size, double duration_seconds) {
    /* One direction, both ends in one process: the sender's send chain is the receiver's
     * receive chain (both derived with the low-to-high id from one master key). */
    struct keys *keys = sodium_malloc(sizeof *keys);
    unsigned char *master = sodium_malloc(KEY_BYTES);
    unsigned char *plaintext = malloc(size);
    unsigned char *ciphertext = malloc(size + crypto_secretbox_MACBYTES);
    unsigned char *opened = malloc(size > 0 ? size : 1);
    if (keys == NULL || master == NULL || plaintext == NULL || ciphertext == NULL || opened == NULL) abort();
    randombytes_buf(master, KEY_BYTES);
    if (crypto_kdf_derive_from_key(keys->send_chain, KEY_BYTES, LOW_TO_HIGH_ID, CHAIN_CONTEXT, master) != 0) abort();
    memcpy(keys->receive_chain, keys->send_chain, KEY_BYTES);
    sodium_free(master);
    memset(plaintext, 0x5A, size);

    uint64_t sequence = 1;
    double wall_start = seconds(CLOCK_MONOTONIC);
    double cpu_start = seconds(CLOCK_PROCESS_CPUTIME_ID);
    double cpu_now = cpu_start;
    unsigned long checksum = 0;
    while (cpu_now - cpu_start < duration_seconds) {
        for (int batch = 0; batch < BATCH; batch++) {
            seal(keys, sequence, plaintext, size, ciphertext);
            if (open_record(keys, sequence, ciphertext, size + crypto_secretbox_MACBYTES, opened) != 0) {
                fprintf(stderr, "open failed at sequence %llu\n", (unsigned long long)sequence);
                exit(1);
            }
            checksum += size > 0 ? opened[size - 1] : 1;
            sodium_memzero(opened, size);
            sequence += 1;
        }
        cpu_now = seconds(CLOCK_PROCESS_CPUTIME_ID);
    }
    double wall = seconds(CLOCK_MONOTONIC) - wall_start;
    double cpu = cpu_now - cpu_start;
    uint64_t messages = sequence - 1;
    if (checksum != messages * (size > 0 ? 0x5A : 1)) {
        fprintf(stderr, "plaintext mismatch\n");
        exit(1);
    }
    printf("size=%zu messages=%llu wall_s=%.3f cpu_s=%.3f mb_per_s_cpu=%.2f ns_per_message_cpu=%.0f\n", size,
           (unsigned long long)messages, wall, cpu, (double)size * (double)messages / cpu / 1e6,
           cpu * 1e9 / (double)messages);
    fflush(stdout);
    sodium_free(keys);
    free(plaintext);
    free(ciphertext);
    free(opened);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SECONDS SIZE...\n", argv[0]);
        return 2;
    }
    if (sodium_init() < 0) return 1;
    double duration_seconds = atof(argv[1]);
    if (!(duration_seconds > 0 && duration_seconds <= 600)) {
        fprintf(stderr, "SECONDS must be in (0, 600]\n");
        return 2;
    }
    for (int index = 2; index < argc; index++) {
        long size = atol(argv[index]);
        if (size < 0 || size > SIZE_MAX_BYTES) {
            fprintf(stderr, "SIZE must be in [0, %d]\n", SIZE_MAX_BYTES);
            return 2;
        }
        run((size_t)size, duration_seconds);
    }
    return 0;
}
