/* kernels/kvscore_avx512.c - scores over transposed 16-key tiles, AVX-512 F:
 *   st[c*ldr + r] = sum_e qt[e*ldr + r] * kt[c/16][e*16 + c%16]   // "er,ec->cr"
 * Keys lie across the 16 lanes as stored, so per e: NT vector loads (float16
 * widened by VCVTPH2PS, bfloat16 by a 16-bit shift, both exact), NR
 * broadcasts of q, NT*NR fused multiply-adds - no transpose. Each score is
 * one fma chain over e ascending from +0, the chain of attn__score_avx512.
 * Up to 6 rows, all 4 tiles of a block run at once (24 independent chains);
 * 7 or 8 rows, two tiles at a time. */
#include "kernels/half.h"
#include "kernels/impl.h"
#include "kernels/kvscore.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

AVX512 __attribute__((always_inline)) static inline __m512 load16(const void *p, int64_t i,
                                                                  const int DT) {
    if (DT == ATTN_KV_FLOAT32) return _mm512_loadu_ps((const float *)p + i);
    const __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
    if (DT == ATTN_KV_FLOAT16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512 __attribute__((always_inline)) static inline void tiles(float *st, const float *qt,
                                                               int64_t ldr, const void *const *kt,
                                                               int64_t nk, int64_t d, const int NT,
                                                               const int NR, const int DT) {
    __m512 acc[4][8];
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < NR; r++)
            acc[t][r] = _mm512_setzero_ps();
    for (int64_t e = 0; e < d; e++) {
        __m512 kv[4];
        for (int t = 0; t < NT; t++)
            kv[t] = load16(kt[t], e * ATTN_KV_TILE, DT);
        for (int r = 0; r < NR; r++) {
            const __m512 qb = _mm512_set1_ps(qt[e * ldr + r]);
            for (int t = 0; t < NT; t++)
                acc[t][r] = _mm512_fmadd_ps(qb, kv[t], acc[t][r]);
        }
    }
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)ldr));
    for (int t = 0; t < NT; t++) {
        const int64_t left = nk - t * ATTN_KV_TILE;
        if (left <= 0) break;
        const __mmask16 keys = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        for (int r = 0; r < NR; r++)
            _mm512_mask_i32scatter_ps(st + t * ATTN_KV_TILE * ldr + r, keys, idx, acc[t][r], 4);
    }
}

/* Tiles past nk read tile 0 again (a valid address) and are not stored. */
#define KVSCORE(NR, DT, SUFFIX)                                                                    \
    AVX512 static void score_##SUFFIX##_##NR(float *st, const float *qt, int64_t ldr,              \
                                             const void *const *kt, int64_t nk, int64_t d) {       \
        const void *p[4];                                                                          \
        for (int t = 0; t < 4; t++)                                                                \
            p[t] = t * ATTN_KV_TILE < nk ? kt[t] : kt[0];                                          \
        if (NR <= 6) {                                                                             \
            tiles(st, qt, ldr, p, nk, d, 4, NR, DT);                                               \
        } else {                                                                                   \
            tiles(st, qt, ldr, p, nk, d, 2, NR, DT);                                               \
            if (nk > 2 * ATTN_KV_TILE)                                                             \
                tiles(st + 2 * ATTN_KV_TILE * ldr, qt, ldr, p + 2, nk - 2 * ATTN_KV_TILE, d, 2,    \
                      NR, DT);                                                                     \
        }                                                                                          \
    }
#define KVSCORE_ROWS(DT, SUFFIX)                                                                   \
    KVSCORE(1, DT, SUFFIX)                                                                         \
    KVSCORE(2, DT, SUFFIX)                                                                         \
    KVSCORE(3, DT, SUFFIX)                                                                         \
    KVSCORE(4, DT, SUFFIX)                                                                         \
    KVSCORE(5, DT, SUFFIX)                                                                         \
    KVSCORE(6, DT, SUFFIX)                                                                         \
    KVSCORE(7, DT, SUFFIX)                                                                         \
    KVSCORE(8, DT, SUFFIX)                                                                         \
    AVX512 static void score_##SUFFIX(float *st, const float *qt, int64_t ldr,                     \
                                      const void *const *kt, int64_t nk, int64_t nr, int64_t d) {  \
        typedef void (*fn)(float *, const float *, int64_t, const void *const *, int64_t,          \
                           int64_t);                                                               \
        static const fn by_rows[9] = {NULL,                                                        \
                                      score_##SUFFIX##_1,                                          \
                                      score_##SUFFIX##_2,                                          \
                                      score_##SUFFIX##_3,                                          \
                                      score_##SUFFIX##_4,                                          \
                                      score_##SUFFIX##_5,                                          \
                                      score_##SUFFIX##_6,                                          \
                                      score_##SUFFIX##_7,                                          \
                                      score_##SUFFIX##_8};                                         \
        by_rows[nr](st, qt, ldr, kt, nk, d);                                                       \
    }
KVSCORE_ROWS(ATTN_KV_FLOAT32, f32)
KVSCORE_ROWS(ATTN_KV_FLOAT16, f16)
KVSCORE_ROWS(ATTN_KV_BFLOAT16, bf16)

void attn__kvconvert_f32_generic(float *dst, const void *src, int64_t n);

AVX512 static void convert_f16(float *dst, const void *src, int64_t n) {
    const uint16_t *s = src;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
    for (; i < n; i++)
        dst[i] = attn__f16_to_f32(s[i]);
}

AVX512 static void convert_bf16(float *dst, const void *src, int64_t n) {
    const uint16_t *s = src;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)(s + i));
        _mm512_storeu_ps(dst + i,
                         _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
    for (; i < n; i++)
        dst[i] = attn__bf16_to_f32(s[i]);
}

const attn__kvkernels attn__kvkernels_avx512 = {
    "avx512",
    8,
    {score_f32, score_f16, score_bf16},
    {attn__kvconvert_f32_generic, convert_f16, convert_bf16},
};
