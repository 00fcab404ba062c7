/* kernels/score_avx2.c - score tile, AVX2 + FMA, register tiles of MR keys x
 * NV vectors of 8 rows (at most 13 of the 16 ymm registers):
 *   st[c*ldr + r] = sum_e qt[e*ldr + r] * k[c*ks + e]     // "er,ce->cr"
 * Each score is one fma chain over e ascending from +0 (as score_generic.c);
 * tiles of 1-4 rows put keys across the lanes instead (below). */
#include "kernels/impl.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 __attribute__((always_inline)) static inline void tile(float *st, const float *qt, int64_t ldr,
                                                            const float *k, int64_t ks, int64_t d,
                                                            const int MR, const int NV) {
    __m256 acc[4][4];
    for (int a = 0; a < MR; a++)
        for (int v = 0; v < NV; v++)
            acc[a][v] = _mm256_setzero_ps();
    for (int64_t e = 0; e < d; e++) {
        __m256 q[4];
        for (int v = 0; v < NV; v++)
            q[v] = _mm256_load_ps(qt + e * ldr + 8 * v);
        for (int a = 0; a < MR; a++) {
            const __m256 kb = _mm256_broadcast_ss(k + a * ks + e);
            for (int v = 0; v < NV; v++)
                acc[a][v] = _mm256_fmadd_ps(q[v], kb, acc[a][v]);
        }
    }
    for (int a = 0; a < MR; a++)
        for (int v = 0; v < NV; v++)
            _mm256_store_ps(st + a * ldr + 8 * v, acc[a][v]);
}

#define SCORE_NV(NV, MR)                                                                           \
    AVX2 static void score_nv##NV(float *st, const float *qt, int64_t ldr, const float *k,         \
                                  int64_t ks, int64_t nk, int64_t d) {                             \
        int64_t c = 0;                                                                             \
        for (; c + MR <= nk; c += MR)                                                              \
            tile(st + c * ldr, qt, ldr, k + c * ks, ks, d, MR, NV);                                \
        for (; c < nk; c++)                                                                        \
            tile(st + c * ldr, qt, ldr, k + c * ks, ks, d, 1, NV);                                 \
    }
SCORE_NV(2, 4)
SCORE_NV(4, 2)

/* ---- few rows (decode): keys across the lanes ----------------------------
 * With nr <= 4 rows most lanes of the key-major tile would idle; instead 8
 * keys go across the lanes: K[c0..c0+7, e0..e0+7] is transposed in
 * registers and each row's scores accumulate as
 *   acc[c] = fma(q[r, e], k[c, e], acc[c])   for e ascending from +0,
 * the very chain of the key-major tile, so the bits are the same. */

/* In: r[i] = row i. Out: r[j] = column j. */
AVX2 __attribute__((always_inline)) static inline void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j */
    for (int i = 0; i < 2; i++) {
        u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

AVX2 static inline __m256i lanes_below(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? (n < 0 ? 0 : n) : 8)), idx);
}

AVX2 __attribute__((always_inline)) static inline void keys8(float *st, const float *qt,
                                                             int64_t ldr, const float *k,
                                                             int64_t ks, int64_t nk, int64_t d,
                                                             const int NR) {
    __m256 acc[4];
    for (int r = 0; r < NR; r++)
        acc[r] = _mm256_setzero_ps();
    for (int64_t e0 = 0; e0 < d; e0 += 8) {
        const int64_t ne = d - e0 < 8 ? d - e0 : 8;
        const __m256i cols = lanes_below(ne);
        __m256 x[8];
        for (int c = 0; c < 8; c++) {
            x[c] = c >= nk   ? _mm256_setzero_ps()
                   : ne == 8 ? _mm256_loadu_ps(k + c * ks + e0)
                             : _mm256_maskload_ps(k + c * ks + e0, cols);
            /* the same line 8 keys on: K streams from memory in decode */
            _mm_prefetch(attn__prefetch_addr(k, c + 8, ks, e0), _MM_HINT_T0);
        }
        transpose8(x);
        for (int e = 0; e < ne; e++)
            for (int r = 0; r < NR; r++)
                acc[r] =
                    _mm256_fmadd_ps(_mm256_broadcast_ss(qt + (e0 + e) * ldr + r), x[e], acc[r]);
    }
    for (int r = 0; r < NR; r++) {
        float out[8];
        _mm256_storeu_ps(out, acc[r]);
        for (int c = 0; c < 8 && c < nk; c++)
            st[c * ldr + r] = out[c];
    }
}

#define SCORE_FEW(NR)                                                                              \
    AVX2 static void score_few##NR(float *st, const float *qt, int64_t ldr, const float *k,        \
                                   int64_t ks, int64_t nk, int64_t d) {                            \
        for (int64_t c = 0; c < nk; c += 8)                                                        \
            keys8(st + c * ldr, qt, ldr, k + c * ks, ks, nk - c, d, NR);                           \
    }
SCORE_FEW(1)
SCORE_FEW(2)
SCORE_FEW(3)
SCORE_FEW(4)

/* Rows in slices of 32 (4 vectors) and 16 (2 vectors); ldr is a multiple of 16. */
AVX2 void attn__score_avx2(float *st, const float *qt, int64_t ldr, const float *k, int64_t ks,
                           int64_t nk, int64_t nr, int64_t d) {
    switch (nr) {
    case 1:
        score_few1(st, qt, ldr, k, ks, nk, d);
        return;
    case 2:
        score_few2(st, qt, ldr, k, ks, nk, d);
        return;
    case 3:
        score_few3(st, qt, ldr, k, ks, nk, d);
        return;
    case 4:
        score_few4(st, qt, ldr, k, ks, nk, d);
        return;
    default:
        break;
    }
    int64_t r = 0;
    for (; r + 32 <= ldr; r += 32)
        score_nv4(st + r, qt + r, ldr, k, ks, nk, d);
    if (r < ldr) score_nv2(st + r, qt + r, ldr, k, ks, nk, d);
}
