/* kernels/kvscore_avx2.c - scores over transposed 16-key tiles, AVX2 + FMA
 * (+ F16C for float16 storage, checked at run time in kvscore.c):
 *   st[c*ldr + r] = sum_e qt[e*ldr + r] * kt[c/16][e*16 + c%16]   // "er,ec->cr"
 * A tile is two vectors of 8 keys; per e: NS vector loads of 8 keys, NR
 * broadcasts of q, NS*NR fused multiply-adds, no transpose. Each score is
 * one fma chain over e ascending from +0, the chain of attn__score_avx2. */
#include "kernels/half.h"
#include "kernels/impl.h"
#include "kernels/kvscore.h"

#include <immintrin.h>

#define AVX2  __attribute__((target("avx2,fma")))
#define AVX2H __attribute__((target("avx2,fma,f16c")))

/* 8 keys: components e of keys 8s..8s+7 of the block, s = 2t + (0 or 1). */
AVX2H __attribute__((always_inline)) static inline __m256 load8(const void *p, int64_t i,
                                                                const int DT) {
    if (DT == ATTN_KV_FLOAT32) return _mm256_loadu_ps((const float *)p + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (DT == ATTN_KV_FLOAT16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Sub-tiles s0..s0+NS-1 (8 keys each) of the block. */
AVX2H __attribute__((always_inline)) static inline void
subtiles(float *st, const float *qt, int64_t ldr, const void *const *kt, int64_t nk, int64_t d,
         int64_t s0, const int NS, const int NR, const int DT) {
    __m256 acc[4][4];
    for (int s = 0; s < NS; s++)
        for (int r = 0; r < NR; r++)
            acc[s][r] = _mm256_setzero_ps();
    for (int64_t e = 0; e < d; e++) {
        __m256 kv[4];
        for (int s = 0; s < NS; s++)
            kv[s] = load8(kt[(s0 + s) / 2], e * ATTN_KV_TILE + 8 * ((s0 + s) % 2), DT);
        for (int r = 0; r < NR; r++) {
            const __m256 qb = _mm256_broadcast_ss(qt + e * ldr + r);
            for (int s = 0; s < NS; s++)
                acc[s][r] = _mm256_fmadd_ps(qb, kv[s], acc[s][r]);
        }
    }
    for (int s = 0; s < NS; s++) {
        const int64_t c0 = (s0 + s) * 8;
        for (int r = 0; r < NR; r++) {
            float o[8];
            _mm256_storeu_ps(o, acc[s][r]);
            for (int64_t c = 0; c < 8 && c0 + c < nk; c++)
                st[(c0 + c) * ldr + r] = o[c];
        }
    }
}

/* Sub-tiles past nk read tile 0 again (a valid address) and are not stored. */
#define KVSCORE(NR, DT, SUFFIX)                                                                    \
    AVX2H static void score_##SUFFIX##_##NR(float *st, const float *qt, int64_t ldr,               \
                                            const void *const *kt, int64_t nk, int64_t d) {        \
        const void *p[4];                                                                          \
        for (int t = 0; t < 4; t++)                                                                \
            p[t] = t * ATTN_KV_TILE < nk ? kt[t] : kt[0];                                          \
        const int NS = NR <= 2 ? 4 : 2;                                                            \
        for (int64_t s0 = 0; s0 * 8 < nk; s0 += NS)                                                \
            subtiles(st, qt, ldr, p, nk, d, s0, NS, NR, DT);                                       \
    }
#define KVSCORE_ROWS(DT, SUFFIX)                                                                   \
    KVSCORE(1, DT, SUFFIX)                                                                         \
    KVSCORE(2, DT, SUFFIX)                                                                         \
    KVSCORE(3, DT, SUFFIX)                                                                         \
    KVSCORE(4, DT, SUFFIX)                                                                         \
    AVX2H static void score_##SUFFIX(float *st, const float *qt, int64_t ldr,                      \
                                     const void *const *kt, int64_t nk, int64_t nr, int64_t d) {   \
        typedef void (*fn)(float *, const float *, int64_t, const void *const *, int64_t,          \
                           int64_t);                                                               \
        static const fn by_rows[5] = {NULL, score_##SUFFIX##_1, score_##SUFFIX##_2,                \
                                      score_##SUFFIX##_3, score_##SUFFIX##_4};                     \
        by_rows[nr](st, qt, ldr, kt, nk, d);                                                       \
    }
KVSCORE_ROWS(ATTN_KV_FLOAT32, f32)
KVSCORE_ROWS(ATTN_KV_FLOAT16, f16)
KVSCORE_ROWS(ATTN_KV_BFLOAT16, bf16)

void attn__kvconvert_f32_generic(float *dst, const void *src, int64_t n);
void attn__kvconvert_f16_generic(float *dst, const void *src, int64_t n);

AVX2H static void convert_f16(float *dst, const void *src, int64_t n) {
    const uint16_t *s = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++)
        dst[i] = attn__f16_to_f32(s[i]);
}

AVX2 static void convert_bf16(float *dst, const void *src, int64_t n) {
    const uint16_t *s = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
        _mm256_storeu_ps(dst + i,
                         _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    }
    for (; i < n; i++)
        dst[i] = attn__bf16_to_f32(s[i]);
}

const attn__kvkernels attn__kvkernels_avx2 = {
    "avx2",
    4,
    {score_f32, score_f16, score_bf16},
    {attn__kvconvert_f32_generic, convert_f16, convert_bf16},
    NULL,
    0,
    {NULL, NULL, NULL},
};

/* The same without F16C: float16 storage scores through float32 copies. */
const attn__kvkernels attn__kvkernels_avx2_nof16c = {
    "avx2",
    4,
    {score_f32, NULL, score_bf16},
    {attn__kvconvert_f32_generic, attn__kvconvert_f16_generic, convert_bf16},
    NULL,
    0,
    {NULL, NULL, NULL},
};
