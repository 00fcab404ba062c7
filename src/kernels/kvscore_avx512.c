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

/* ---- many rows (prefill): rows across the lanes ---------------------------
 * As score_avx512.c's key-major tile, reading key a's component e at
 * kt[e*16 + a] of a float32 tile: per e, NV loads of Q^T, MR broadcasts,
 * MR*NV fmas; each score one fma chain over e ascending from +0. */
AVX512 __attribute__((always_inline)) static inline void rows_tile(float *st, const float *qt,
                                                                   int64_t ldr, const float *kt,
                                                                   int64_t d, const int MR,
                                                                   const int NV) {
    __m512 acc[8][4];
    for (int a = 0; a < MR; a++)
        for (int v = 0; v < NV; v++)
            acc[a][v] = _mm512_setzero_ps();
    for (int64_t e = 0; e < d; e++) {
        __m512 q[4];
        for (int v = 0; v < NV; v++)
            q[v] = _mm512_load_ps(qt + e * ldr + 16 * v);
        for (int a = 0; a < MR; a++) {
            const __m512 kb = _mm512_set1_ps(kt[e * ATTN_KV_TILE + a]);
            for (int v = 0; v < NV; v++)
                acc[a][v] = _mm512_fmadd_ps(q[v], kb, acc[a][v]);
        }
    }
    for (int a = 0; a < MR; a++)
        for (int v = 0; v < NV; v++)
            _mm512_store_ps(st + a * ldr + 16 * v, acc[a][v]);
}

#define ROWS_NV(NV, MR)                                                                            \
    AVX512 static void rows_nv##NV(float *st, const float *qt, int64_t ldr, const void *const *kt, \
                                   int64_t nk, int64_t d) {                                        \
        for (int64_t t = 0; t * ATTN_KV_TILE < nk; t++) {                                          \
            const int64_t c0 = t * ATTN_KV_TILE;                                                   \
            const int64_t nc = nk - c0 < ATTN_KV_TILE ? nk - c0 : ATTN_KV_TILE;                    \
            const float *k = kt[t];                                                                \
            int64_t a = 0;                                                                         \
            for (; a + MR <= nc; a += MR)                                                          \
                rows_tile(st + (c0 + a) * ldr, qt, ldr, k + a, d, MR, NV);                         \
            for (; a < nc; a++)                                                                    \
                rows_tile(st + (c0 + a) * ldr, qt, ldr, k + a, d, 1, NV);                          \
        }                                                                                          \
    }
ROWS_NV(1, 8)
ROWS_NV(2, 8)
ROWS_NV(3, 6)
ROWS_NV(4, 6)

AVX512 static void score_rows(float *st, const float *qt, int64_t ldr, const void *const *kt,
                              int64_t nk, int64_t nr, int64_t d) {
    (void)nr; /* every lane of ldr is computed */
    switch (ldr / 16) {
    case 1:
        rows_nv1(st, qt, ldr, kt, nk, d);
        break;
    case 2:
        rows_nv2(st, qt, ldr, kt, nk, d);
        break;
    case 3:
        rows_nv3(st, qt, ldr, kt, nk, d);
        break;
    default:
        rows_nv4(st, qt, ldr, kt, nk, d);
        break;
    }
}

/* ---- output update with widening loads (as pv_avx512.c's tile) ----------
 * Register tiles of MR rows x NF vectors of 16 columns; per key c: NF
 * widening loads of V[c, :], MR broadcasts of p[c, r], MR*NF fmas; per
 * element one multiply by alpha, then the fma chain over c ascending. */
AVX512 __attribute__((always_inline)) static inline void
pv_tile(float *o, int64_t ldo, const float *alpha, const float *p, int64_t ldr, const uint16_t *v,
        int64_t vs, int64_t nk, const __mmask16 *mk, const int MR, const int NF, const int DT) {
    __m512 acc[4][4];
    for (int a = 0; a < MR; a++) {
        const __m512 al = _mm512_set1_ps(alpha[a]);
        for (int j = 0; j < NF; j++)
            acc[a][j] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[j], o + a * ldo + 16 * j), al);
    }
    for (int64_t c = 0; c < nk; c++) {
        __m512 vv[4];
        for (int j = 0; j < NF; j++) {
            /* the row's last vector may run past dv into the next row or
             * the pool's 64 bytes of padding (kv/cache.c): those lanes are
             * masked on store */
            const __m256i h = _mm256_loadu_si256((const __m256i *)(v + c * vs + 16 * j));
            vv[j] = DT == ATTN_KV_FLOAT16
                        ? _mm512_cvtph_ps(h)
                        : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        }
        for (int a = 0; a < MR; a++) {
            const __m512 pb = _mm512_set1_ps(p[c * ldr + a]);
            for (int j = 0; j < NF; j++)
                acc[a][j] = _mm512_fmadd_ps(pb, vv[j], acc[a][j]);
        }
    }
    for (int a = 0; a < MR; a++)
        for (int j = 0; j < NF; j++)
            _mm512_mask_storeu_ps(o + a * ldo + 16 * j, mk[j], acc[a][j]);
}

#define PV_CASES(DT)                                                                               \
    switch (mr * 8 + nf) {                                                                         \
    case 9:                                                                                        \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 1, 1, DT);                                   \
        break;                                                                                     \
    case 10:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 1, 2, DT);                                   \
        break;                                                                                     \
    case 11:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 1, 3, DT);                                   \
        break;                                                                                     \
    case 12:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 1, 4, DT);                                   \
        break;                                                                                     \
    case 17:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 2, 1, DT);                                   \
        break;                                                                                     \
    case 18:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 2, 2, DT);                                   \
        break;                                                                                     \
    case 19:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 2, 3, DT);                                   \
        break;                                                                                     \
    case 20:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 2, 4, DT);                                   \
        break;                                                                                     \
    case 25:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 3, 1, DT);                                   \
        break;                                                                                     \
    case 26:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 3, 2, DT);                                   \
        break;                                                                                     \
    case 27:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 3, 3, DT);                                   \
        break;                                                                                     \
    case 28:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 3, 4, DT);                                   \
        break;                                                                                     \
    case 33:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 4, 1, DT);                                   \
        break;                                                                                     \
    case 34:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 4, 2, DT);                                   \
        break;                                                                                     \
    case 35:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 4, 3, DT);                                   \
        break;                                                                                     \
    default:                                                                                       \
        pv_tile(of, ldo, al, pr, ldr, vf, vs, nk, mk, 4, 4, DT);                                   \
        break;                                                                                     \
    }

/* Columns in passes of up to 64 (4 vectors), rows in groups of up to 4. */
#define KVPV(DT, SUFFIX)                                                                           \
    AVX512 static void pv_##SUFFIX(float *o, int64_t ldo, const float *alpha, const float *p,      \
                                   int64_t ldr, const void *v, int64_t vs, int64_t nk, int64_t nr, \
                                   int64_t dv) {                                                   \
        for (int64_t f0 = 0; f0 < dv; f0 += 64) {                                                  \
            const int64_t nf = (dv - f0 + 15) / 16 < 4 ? (dv - f0 + 15) / 16 : 4;                  \
            __mmask16 mk[4];                                                                       \
            for (int j = 0; j < 4; j++) {                                                          \
                const int64_t left = dv - f0 - 16 * j;                                             \
                mk[j] = left >= 16 ? (__mmask16)0xFFFF                                             \
                        : left > 0 ? (__mmask16)((1u << left) - 1)                                 \
                                   : (__mmask16)0;                                                 \
            }                                                                                      \
            for (int64_t r = 0; r < nr; r += 4) {                                                  \
                const int64_t mr = nr - r < 4 ? nr - r : 4;                                        \
                float *of = o + r * ldo + f0;                                                      \
                const float *al = alpha + r, *pr = p + r;                                          \
                const uint16_t *vf = (const uint16_t *)v + f0;                                     \
                PV_CASES(DT)                                                                       \
            }                                                                                      \
        }                                                                                          \
    }
KVPV(ATTN_KV_FLOAT16, f16)
KVPV(ATTN_KV_BFLOAT16, bf16)

const attn__kvkernels attn__kvkernels_avx512 = {
    "avx512",
    8,
    {score_f32, score_f16, score_bf16},
    {attn__kvconvert_f32_generic, convert_f16, convert_bf16},
    score_rows,
    8,
    {NULL, pv_f16, pv_bf16},
};
