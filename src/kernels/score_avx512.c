/* kernels/score_avx512.c - score tile, AVX-512 F, register tiles of
 * MR keys x NV vectors of 16 rows:
 *   st[c*ldr + r] = sum_e qt[e*ldr + r] * k[c*ks + e]     // "er,ce->cr"
 * Per e: NV loads of Q^T, MR broadcasts of k[c, e], MR*NV fused multiply-adds.
 * Each score is one fma chain over e ascending from +0 (as score_generic.c). */
#include "kernels/impl.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

AVX512 __attribute__((always_inline)) static inline void tile(float *st, const float *qt,
                                                              int64_t ldr, const float *k,
                                                              int64_t ks, int64_t d, const int MR,
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
            const __m512 kb = _mm512_set1_ps(k[a * ks + e]);
            for (int v = 0; v < NV; v++)
                acc[a][v] = _mm512_fmadd_ps(q[v], kb, acc[a][v]);
        }
    }
    for (int a = 0; a < MR; a++)
        for (int v = 0; v < NV; v++)
            _mm512_store_ps(st + a * ldr + 16 * v, acc[a][v]);
}

/* MR keys at a time while they last, then one. */
#define SCORE_NV(NV, MR)                                                                           \
    AVX512 static void score_nv##NV(float *st, const float *qt, int64_t ldr, const float *k,       \
                                    int64_t ks, int64_t nk, int64_t d) {                           \
        int64_t c = 0;                                                                             \
        for (; c + MR <= nk; c += MR)                                                              \
            tile(st + c * ldr, qt, ldr, k + c * ks, ks, d, MR, NV);                                \
        for (; c < nk; c++)                                                                        \
            tile(st + c * ldr, qt, ldr, k + c * ks, ks, d, 1, NV);                                 \
    }
SCORE_NV(1, 8)
SCORE_NV(2, 8)
SCORE_NV(3, 6)
SCORE_NV(4, 6)

/* ---- few rows (decode): keys across the lanes ----------------------------
 * With nr <= 8 rows most lanes of the key-major tile would idle; instead 16
 * keys go across the lanes: K[c0..c0+15, e0..e0+15] is transposed in
 * registers and each row's scores accumulate as
 *   acc[c] = fma(q[r, e], k[c, e], acc[c])   for e ascending from +0,
 * the very chain of the key-major tile, so the bits are the same. */

/* In: r[i] = row i. Out: r[j] = column j. */
AVX512 __attribute__((always_inline)) static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j */
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {
        const __m512 a = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        const __m512 b = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        const __m512 c = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        const __m512 e = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(a, c, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(a, c, 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(b, e, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(b, e, 0xDD);
    }
}

AVX512 __attribute__((always_inline)) static inline void keys16(float *st, const float *qt,
                                                                int64_t ldr, const float *k,
                                                                int64_t ks, int64_t nk, int64_t d,
                                                                const int NR) {
    __m512 acc[8];
    for (int r = 0; r < NR; r++)
        acc[r] = _mm512_setzero_ps();
    for (int64_t e0 = 0; e0 < d; e0 += 16) {
        const int64_t ne = d - e0 < 16 ? d - e0 : 16;
        const __mmask16 cols = (__mmask16)((1u << ne) - 1);
        __m512 x[16];
        for (int c = 0; c < 16; c++) {
            /* rows past nk: zeros, memory untouched */
            x[c] = c < nk ? _mm512_maskz_loadu_ps(cols, k + c * ks + e0) : _mm512_setzero_ps();
            /* the same line 16 keys on: K streams from memory in decode */
            _mm_prefetch(attn__prefetch_addr(k, c + 16, ks, e0), _MM_HINT_T0);
        }
        transpose16(x);
        for (int e = 0; e < ne; e++)
            for (int r = 0; r < NR; r++)
                acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(qt[(e0 + e) * ldr + r]), x[e], acc[r]);
    }
    const __m512i idx =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)ldr));
    const __mmask16 keys = nk >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nk) - 1);
    for (int r = 0; r < NR; r++)
        _mm512_mask_i32scatter_ps(st + r, keys, idx, acc[r], 4);
}

#define SCORE_FEW(NR)                                                                              \
    AVX512 static void score_few##NR(float *st, const float *qt, int64_t ldr, const float *k,      \
                                     int64_t ks, int64_t nk, int64_t d) {                          \
        for (int64_t c = 0; c < nk; c += 16)                                                       \
            keys16(st + c * ldr, qt, ldr, k + c * ks, ks, nk - c, d, NR);                          \
    }
SCORE_FEW(1)
SCORE_FEW(2)
SCORE_FEW(3)
SCORE_FEW(4)
SCORE_FEW(5)
SCORE_FEW(6)
SCORE_FEW(7)
SCORE_FEW(8)

AVX512 void attn__score_avx512(float *st, const float *qt, int64_t ldr, const float *k, int64_t ks,
                               int64_t nk, int64_t nr, int64_t d) {
    typedef void (*few_fn)(float *, const float *, int64_t, const float *, int64_t, int64_t,
                           int64_t);
    static const few_fn few[9] = {NULL,       score_few1, score_few2, score_few3, score_few4,
                                  score_few5, score_few6, score_few7, score_few8};
    if (nr <= 8) {
        few[nr](st, qt, ldr, k, ks, nk, d);
        return;
    }
    switch (ldr / 16) {
    case 1:
        score_nv1(st, qt, ldr, k, ks, nk, d);
        break;
    case 2:
        score_nv2(st, qt, ldr, k, ks, nk, d);
        break;
    case 3:
        score_nv3(st, qt, ldr, k, ks, nk, d);
        break;
    default:
        score_nv4(st, qt, ldr, k, ks, nk, d);
        break;
    }
}
