/* kernels/gemv_avx2.c - few-row products, AVX2 + FMA (kernels/gemv.h):
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // "mi,io->mo"
 * As gemv_avx512.c with 8-column vectors and 16 registers: tiles of M rows
 * x NV vectors (M * NV <= 12 accumulators), chunks of KC rows, the tile
 * PF_TILES ahead prefetched row by row, masked loads for the last columns.
 * Per element: the bias (or +0), then an fma chain over i ascending. */
#include "kernels/gemv.h"
#include "kernels/impl.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

enum { KC = 256, PF_TILES = 4 };

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
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 1, 4);
        break;
    case 2:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 2, 4);
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
