/* kernels/gemv_avx512.c - few-row products, AVX-512 F (kernels/gemv.h):
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // "mi,io->mo"
 * Two loop orders, both bound by reading w once:
 *   M <= 4 (run_rows): w streamed in memory order, R rows at a time; for
 *     each vector of 16 columns the M partial sums are loaded from y,
 *     updated by the R rows (R loads of w, each row prefetched PF_AHEAD
 *     floats ahead: without it the rate drops by a third), and stored
 *     back; the columns go in blocks of 8192 / M floats so y stays in L1.
 *   M >= 5 (run_tiles): register tiles of M rows x NV vectors, walked down
 *     KC rows of w, the partial sums waiting in y between chunks, the tile
 *     PF_TILES ahead prefetched row by row (fewer loads and stores of y per
 *     multiply-add, which many rows need).
 * The last columns use masked vectors. Per element: the bias (or +0), then
 * an fma chain over i ascending, as gemv_generic.c. */
#include "kernels/gemv.h"
#include "kernels/impl.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

#define PF_AHEAD 256 /* floats: run_rows prefetches each row 1 KiB ahead */

/* Rows i0..i0+R-1 over columns [c0, c1) of one column block. */
AVX512 __attribute__((always_inline)) static inline void
rows(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w, int64_t ldw,
     int64_t i0, int64_t c0, int64_t c1, const int M, const int R) {
    __m512 xb[8][8];
    for (int m = 0; m < M; m++)
        for (int r = 0; r < R; r++)
            xb[m][r] = _mm512_set1_ps(x[m * xs0 + (i0 + r) * xs1]);
    const float *wi = w + i0 * ldw; /* seek to w[i0, 0] */
    int64_t c = c0;
    for (; c + 16 <= c1; c += 16) {
        __m512 acc[8];
        for (int m = 0; m < M; m++)
            acc[m] = _mm512_loadu_ps(y + m * ldy + c);
        for (int r = 0; r < R; r++) {
            const __m512 wv = _mm512_loadu_ps(wi + r * ldw + c);
            _mm_prefetch(attn__prefetch_addr(w, i0 + r, ldw, c + PF_AHEAD), _MM_HINT_T0);
            for (int m = 0; m < M; m++)
                acc[m] = _mm512_fmadd_ps(xb[m][r], wv, acc[m]);
        }
        for (int m = 0; m < M; m++)
            _mm512_storeu_ps(y + m * ldy + c, acc[m]);
    }
    if (c < c1) {
        const __mmask16 k = (__mmask16)((1u << (c1 - c)) - 1u);
        __m512 acc[8];
        for (int m = 0; m < M; m++)
            acc[m] = _mm512_maskz_loadu_ps(k, y + m * ldy + c);
        for (int r = 0; r < R; r++) {
            const __m512 wv = _mm512_maskz_loadu_ps(k, wi + r * ldw + c);
            for (int m = 0; m < M; m++)
                acc[m] = _mm512_fmadd_ps(xb[m][r], wv, acc[m]);
        }
        for (int m = 0; m < M; m++)
            _mm512_mask_storeu_ps(y + m * ldy + c, k, acc[m]);
    }
}

AVX512 __attribute__((always_inline)) static inline void
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

AVX512 __attribute__((always_inline)) static inline void
run_tiles(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w,
          int64_t ldw, int64_t K, int64_t n, const int M, const int NV) {
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
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 1, 8);
        break;
    case 2:
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 2, 8);
        break;
    case 3:
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 3, 8);
        break;
    case 4:
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 4, 8);
        break;
    case 5:
        run_tiles(y, ldy, x, xs0, xs1, w, ldw, K, n, 5, 2);
        break;
    case 6:
        run_tiles(y, ldy, x, xs0, xs1, w, ldw, K, n, 6, 2);
        break;
    case 7:
        run_tiles(y, ldy, x, xs0, xs1, w, ldw, K, n, 7, 2);
        break;
    default:
        run_tiles(y, ldy, x, xs0, xs1, w, ldw, K, n, 8, 2);
        break;
    }
}
