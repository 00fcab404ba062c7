/* kernels/gemv_avx512.c - few-row products, AVX-512 F (kernels/gemv.h):
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // "mi,io->mo"
 * Register tiles of M rows x NV vectors of 16 columns (M * NV <= 16
 * accumulators), walked down KC rows of w at a time: per row of w, NV
 * loads, M broadcasts of x, M * NV fused multiply-adds. Between chunks of
 * KC rows the partial sums wait in y, so a chunk touches KC rows of the
 * column block (few pages: the TLB keeps up). The tile PF_TILES ahead is
 * prefetched row by row: the rows are far apart, and the hardware
 * prefetcher does not follow so many streams. The last columns use masked
 * vectors. Per element: the bias (or +0), then an fma chain over i
 * ascending, as gemv_generic.c with fused multiply-adds. */
#include "kernels/gemv.h"
#include "kernels/impl.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

enum { KC = 256, PF_TILES = 4 };

/* Rows k0..k1-1 of columns [c, c + 16 NV) (mask on the last vector). */
AVX512 __attribute__((always_inline)) static inline void
tile(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w, int64_t ldw,
     int64_t k0, int64_t k1, int64_t c, __mmask16 last, const int M, const int NV, const int PF) {
    __m512 acc[8][8];
    for (int m = 0; m < M; m++)
        for (int v = 0; v < NV; v++)
            acc[m][v] =
                _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xffff, y + m * ldy + c + 16 * v);
    for (int64_t i = k0; i < k1; i++) {
        const float *wi = w + i * ldw + c; /* seek to w[i, c] */
        __m512 wv[8];
        for (int v = 0; v < NV; v++) {
            wv[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xffff, wi + 16 * v);
            if (PF)
                _mm_prefetch(attn__prefetch_addr(w, i, ldw, c + 16 * (v + NV * PF_TILES)),
                             _MM_HINT_T0);
        }
        for (int m = 0; m < M; m++) {
            const __m512 xb = _mm512_set1_ps(x[m * xs0 + i * xs1]);
            for (int v = 0; v < NV; v++)
                acc[m][v] = _mm512_fmadd_ps(xb, wv[v], acc[m][v]);
        }
    }
    for (int m = 0; m < M; m++)
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_ps(y + m * ldy + c + 16 * v, v == NV - 1 ? last : 0xffff, acc[m][v]);
}

AVX512 __attribute__((always_inline)) static inline void run(float *y, int64_t ldy, const float *x,
                                                             int64_t xs0, int64_t xs1,
                                                             const float *w, int64_t ldw, int64_t K,
                                                             int64_t n, const int M, const int NV) {
    const int64_t full = n - n % (16 * NV);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t k1 = k0 + KC < K ? k0 + KC : K;
        for (int64_t c = 0; c < full; c += 16 * NV)
            tile(y, ldy, x, xs0, xs1, w, ldw, k0, k1, c, 0xffff, M, NV, 1);
        for (int64_t c = full; c < n; c += 16) {
            const int64_t r = n - c;
            tile(y, ldy, x, xs0, xs1, w, ldw, k0, k1, c,
                 r >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << r) - 1u), M, 1, 0);
        }
    }
}

AVX512 void attn__gemv_avx512(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                              const float *w, int64_t ldw, const float *b, int64_t bs, int M,
                              int64_t K, int64_t n) {
    for (int m = 0; m < M; m++)
        for (int64_t o = 0; o < n; o++)
            y[m * ldy + o] = b ? b[o * bs] : 0.0f;
    switch (M) {
    case 1:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 1, 8);
        break;
    case 2:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 2, 4);
        break;
    case 3:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 3, 4);
        break;
    case 4:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 4, 4);
        break;
    case 5:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 5, 2);
        break;
    case 6:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 6, 2);
        break;
    case 7:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 7, 2);
        break;
    default:
        run(y, ldy, x, xs0, xs1, w, ldw, K, n, 8, 2);
        break;
    }
}
