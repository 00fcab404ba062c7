/* kernels/gemv_avx2.c - few-row products, AVX2 + FMA (kernels/gemv.h):
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // "mi,io->mo"
 * As gemv_avx512.c with 8-column vectors and 16 registers: M <= 2 streams
 * w in memory order (run_rows, R rows at a time); more rows use tiles of M
 * rows x NV vectors (M * NV <= 12 accumulators), chunks of KC rows, the tile
 * PF_TILES ahead prefetched row by row. Masked loads for the last columns.
 * Per element: the bias (or +0), then an fma chain over i ascending. */
#include "kernels/gemv.h"
#include "kernels/impl.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

enum { KC = 256, PF_TILES = 4 };

#define PF_AHEAD 256 /* floats: run_rows prefetches each row 1 KiB ahead */

/* Rows i0..i0+R-1 over columns [c0, c1), w read left to right (as
 * gemv_avx512.c's run_rows), each row prefetched PF_AHEAD floats ahead. */
AVX2 __attribute__((always_inline)) static inline void
rows(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w, int64_t ldw,
     int64_t i0, int64_t c0, int64_t c1, const int M, const int R) {
    __m256 xb[2][8];
    for (int m = 0; m < M; m++)
        for (int r = 0; r < R; r++)
            xb[m][r] = _mm256_broadcast_ss(x + m * xs0 + (i0 + r) * xs1);
    const float *wi = w + i0 * ldw; /* seek to w[i0, 0] */
    int64_t c = c0;
    for (; c + 8 <= c1; c += 8) {
        __m256 acc[2];
        for (int m = 0; m < M; m++)
            acc[m] = _mm256_loadu_ps(y + m * ldy + c);
        for (int r = 0; r < R; r++) {
            const __m256 wv = _mm256_loadu_ps(wi + r * ldw + c);
            if (c % 16 == 0)
                _mm_prefetch(attn__prefetch_addr(w, i0 + r, ldw, c + PF_AHEAD), _MM_HINT_T0);
            for (int m = 0; m < M; m++)
                acc[m] = _mm256_fmadd_ps(xb[m][r], wv, acc[m]);
        }
        for (int m = 0; m < M; m++)
            _mm256_storeu_ps(y + m * ldy + c, acc[m]);
    }
    if (c < c1) {
        const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(c1 - c)),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 acc[2];
        for (int m = 0; m < M; m++)
            acc[m] = _mm256_maskload_ps(y + m * ldy + c, k);
        for (int r = 0; r < R; r++) {
            const __m256 wv = _mm256_maskload_ps(wi + r * ldw + c, k);
            for (int m = 0; m < M; m++)
                acc[m] = _mm256_fmadd_ps(xb[m][r], wv, acc[m]);
        }
        for (int m = 0; m < M; m++)
            _mm256_maskstore_ps(y + m * ldy + c, k, acc[m]);
    }
}

AVX2 __attribute__((always_inline)) static inline void
run_rows(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w,
         int64_t ldw, int64_t K, int64_t n, const int M, const int R) {
    const int64_t cb = 8192 / M / 16 * 16;
    for (int64_t c0 = 0; c0 < n; c0 += cb) {
        const int64_t c1 = c0 + cb < n ? c0 + cb : n;
        int64_t i = 0;
        for (; i + R <= K; i += R)
            rows(y, ldy, x, xs0, xs1, w, ldw, i, c0, c1, M, R);
        for (; i < K; i++)
            rows(y, ldy, x, xs0, xs1, w, ldw, i, c0, c1, M, 1);
    }
}

AVX2 __attribute__((always_inline)) static inline void
tile(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w, int64_t ldw,
     int64_t k0, int64_t k1, int64_t c, __m256i last, const int M, const int NV, const int PF) {
    const __m256i all = _mm256_set1_epi32(-1);
    __m256 acc[8][4];
    for (int m = 0; m < M; m++)
        for (int v = 0; v < NV; v++)
            acc[m][v] = _mm256_maskload_ps(y + m * ldy + c + 8 * v, v == NV - 1 ? last : all);
    for (int64_t i = k0; i < k1; i++) {
        const float *wi = w + i * ldw + c; /* seek to w[i, c] */
        __m256 wv[4];
        for (int v = 0; v < NV; v++) {
            wv[v] = _mm256_maskload_ps(wi + 8 * v, v == NV - 1 ? last : all);
            if (PF && v % 2 == 0)
                _mm_prefetch(attn__prefetch_addr(w, i, ldw, c + 8 * (v + NV * PF_TILES)),
                             _MM_HINT_T0);
        }
        for (int m = 0; m < M; m++) {
            const __m256 xb = _mm256_broadcast_ss(x + m * xs0 + i * xs1);
            for (int v = 0; v < NV; v++)
                acc[m][v] = _mm256_fmadd_ps(xb, wv[v], acc[m][v]);
        }
    }
    for (int m = 0; m < M; m++)
        for (int v = 0; v < NV; v++)
            _mm256_maskstore_ps(y + m * ldy + c + 8 * v, v == NV - 1 ? last : all, acc[m][v]);
}

AVX2 __attribute__((always_inline)) static inline void run(float *y, int64_t ldy, const float *x,
                                                           int64_t xs0, int64_t xs1, const float *w,
                                                           int64_t ldw, int64_t K, int64_t n,
                                                           const int M, const int NV) {
    const int64_t full = n - n % (8 * NV);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t k1 = k0 + KC < K ? k0 + KC : K;
        for (int64_t c = 0; c < full; c += 8 * NV)
            tile(y, ldy, x, xs0, xs1, w, ldw, k0, k1, c, _mm256_set1_epi32(-1), M, NV, 1);
        for (int64_t c = full; c < n; c += 8) {
            const int r = n - c >= 8 ? 8 : (int)(n - c);
            tile(y, ldy, x, xs0, xs1, w, ldw, k0, k1, c,
                 _mm256_cmpgt_epi32(_mm256_set1_epi32(r), lane), M, 1, 0);
        }
    }
}

AVX2 void attn__gemv_avx2(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                          const float *w, int64_t ldw, const float *b, int64_t bs, int M, int64_t K,
                          int64_t n) {
    for (int m = 0; m < M; m++)
        for (int64_t o = 0; o < n; o++)
            y[m * ldy + o] = b ? b[o * bs] : 0.0f;
    switch (M) {
    case 1:
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 1, 8);
        break;
    case 2:
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 2, 4);
        break;
    case 3:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 3, 3);
        break;
    case 4:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 4, 3);
        break;
    case 5:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 5, 2);
        break;
    case 6:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 6, 2);
        break;
    case 7:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 7, 1);
        break;
    default:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 8, 1);
        break;
    }
}
