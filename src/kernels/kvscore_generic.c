/* kernels/kvscore_generic.c - scores over transposed 16-key tiles and row
 * conversion, portable C (the reference of kvscore_avx2.c, kvscore_avx512.c):
 *   st[c*ldr + r] = sum_e qt[e*ldr + r] * kt[c/16][e*16 + c%16]   // "er,ec->cr"
 * Each score is the chain of attn__score_generic: multiply, then add, over e
 * ascending from +0, with the key's exact float32 value. */
#include "kernels/half.h"
#include "kernels/kernels.h"
#include "kernels/kvscore.h"

static inline float f32_at(const void *p, int64_t i) {
    return ((const float *)p)[i];
}
static inline float f16_at(const void *p, int64_t i) {
    return attn__f16_to_f32(((const uint16_t *)p)[i]);
}
static inline float bf16_at(const void *p, int64_t i) {
    return attn__bf16_to_f32(((const uint16_t *)p)[i]);
}

#define KVSCORE_GENERIC(NAME, AT)                                                                  \
    static void NAME(float *st, const float *qt, int64_t ldr, const void *const *kt, int64_t nk,   \
                     int64_t nr, int64_t d) {                                                      \
        for (int64_t t = 0; t * ATTN_KV_TILE < nk; t++) {                                          \
            const int64_t nc =                                                                     \
                nk - t * ATTN_KV_TILE < ATTN_KV_TILE ? nk - t * ATTN_KV_TILE : ATTN_KV_TILE;       \
            float acc[ATTN_TILE_ROWS][ATTN_KV_TILE];                                               \
            for (int64_t r = 0; r < nr; r++)                                                       \
                for (int c = 0; c < ATTN_KV_TILE; c++)                                             \
                    acc[r][c] = 0.0f;                                                              \
            for (int64_t e = 0; e < d; e++) {                                                      \
                float kf[ATTN_KV_TILE]; /* column e of the tile: components e of 16 keys */        \
                for (int c = 0; c < ATTN_KV_TILE; c++)                                             \
                    kf[c] = AT(kt[t], e * ATTN_KV_TILE + c);                                       \
                for (int64_t r = 0; r < nr; r++) {                                                 \
                    const float q = qt[e * ldr + r];                                               \
                    for (int c = 0; c < ATTN_KV_TILE; c++)                                         \
                        acc[r][c] = q * kf[c] + acc[r][c];                                         \
                }                                                                                  \
            }                                                                                      \
            for (int64_t r = 0; r < nr; r++)                                                       \
                for (int64_t c = 0; c < nc; c++)                                                   \
                    st[(t * ATTN_KV_TILE + c) * ldr + r] = acc[r][c];                              \
        }                                                                                          \
    }
KVSCORE_GENERIC(score_f32, f32_at)
KVSCORE_GENERIC(score_f16, f16_at)
KVSCORE_GENERIC(score_bf16, bf16_at)

void attn__kvconvert_f32_generic(float *dst, const void *src, int64_t n);
void attn__kvconvert_f16_generic(float *dst, const void *src, int64_t n);
void attn__kvconvert_bf16_generic(float *dst, const void *src, int64_t n);

void attn__kvconvert_f32_generic(float *dst, const void *src, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}
void attn__kvconvert_f16_generic(float *dst, const void *src, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = attn__f16_to_f32(s[i]);
}
void attn__kvconvert_bf16_generic(float *dst, const void *src, int64_t n) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = attn__bf16_to_f32(s[i]);
}

const attn__kvkernels attn__kvkernels_generic = {
    "generic",
    ATTN_TILE_ROWS,
    {score_f32, score_f16, score_bf16},
    {attn__kvconvert_f32_generic, attn__kvconvert_f16_generic, attn__kvconvert_bf16_generic},
    NULL,
    0,
    {NULL, NULL, NULL},
};
