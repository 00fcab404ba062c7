/* kernels/half.h - float16 and bfloat16 <-> float32, one value at a time,
 * in integer arithmetic (the definition the SIMD converters must match).
 *
 * To float16/bfloat16: round to nearest, ties to even, for every non-NaN
 * float32, subnormal results included (no flush to zero); magnitudes that
 * round past the largest finite value give infinity; NaN gives a quiet NaN.
 * Back to float32: exact (every float16 and bfloat16 value is a float32). */
#ifndef ATTN_KERNELS_HALF_H
#define ATTN_KERNELS_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t attn__f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float attn__bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static inline uint16_t attn__f32_to_bf16(float x) {
    const uint32_t u = attn__f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    /* add just under half an ulp of the result, plus its lowest bit: ties go to even */
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static inline float attn__bf16_to_f32(uint16_t h) {
    return attn__bits_f32((uint32_t)h << 16);
}

static inline uint16_t attn__f32_to_f16(float x) {
    const uint32_t u = attn__f32_bits(x);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x01FFu)); /* NaN */
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* >= 65520: rounds to inf */
    if (a >= 0x38800000u) {                                  /* >= 2^-14: normal float16 */
        const uint32_t r = a - 0x38000000u;                  /* exponent bias 127 -> 15 */
        return (uint16_t)(sign | ((r + 0x0FFFu + ((r >> 13) & 1u)) >> 13));
    }
    if (a <= 0x33000000u) return sign; /* <= 2^-25: rounds to zero (2^-25 is a tie, to even 0) */
    /* subnormal float16: units of 2^-24; a = m 2^(e-150), m with its leading bit */
    const uint32_t e = a >> 23, m = (a & 0x007FFFFFu) | 0x00800000u;
    const uint32_t shift = 126u - e; /* 14..24 */
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++; /* q = 0x400 is the smallest normal */
    return (uint16_t)(sign | q);
}

static inline float attn__f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1Fu;
    uint32_t m = h & 0x03FFu;
    if (e == 0x1Fu) return attn__bits_f32(sign | 0x7F800000u | (m << 13)); /* inf, NaN */
    if (e != 0) return attn__bits_f32(sign | ((e + 112u) << 23) | (m << 13));
    if (m == 0) return attn__bits_f32(sign);
    uint32_t sh = 0; /* subnormal m 2^-24: normalise */
    while (!(m & 0x0400u)) {
        m <<= 1;
        sh++;
    }
    return attn__bits_f32(sign | ((113u - sh) << 23) | ((m & 0x03FFu) << 13));
}

#endif /* ATTN_KERNELS_HALF_H */
