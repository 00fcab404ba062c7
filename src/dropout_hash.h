/* dropout_hash.h - attn_dropout_keep (attn.h) split so a tile can hash each row
 * once: keep(seed, b, h, i, j, p) == attn__dropout_keep_at(
 *   attn__dropout_row(seed, b, h, i), j, attn__dropout_threshold(p)) for p in (0, 1). */
#ifndef ATTN_DROPOUT_H
#define ATTN_DROPOUT_H

#include <stdint.h>

static inline uint64_t attn__mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* mix(mix(mix(seed ^ b) ^ h) ^ i): the part of the hash shared by a row. */
static inline uint64_t attn__dropout_row(uint64_t seed, int64_t b, int64_t h, int64_t i) {
    return attn__mix64(attn__mix64(attn__mix64(seed ^ (uint64_t)b) ^ (uint64_t)h) ^ (uint64_t)i);
}

/* The 24-bit threshold of p in (0, 1): dropped iff u < threshold. */
static inline uint32_t attn__dropout_threshold(float p) {
    return (uint32_t)((double)p * 16777216.0);
}

/* 1 if weight (row, j) is kept. */
static inline int attn__dropout_keep_at(uint64_t row, int64_t j, uint32_t threshold) {
    return (uint32_t)(attn__mix64(row ^ (uint64_t)j) >> 40) >= threshold;
}

#endif /* ATTN_DROPOUT_H */
