/* kernels/gemv_avx512.c - few-row products, AVX-512 F (kernels/gemv.h):
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // "mi,io->mo"
 * Two loop orders, both reading w in long contiguous runs of a few rows at
 * a time (on an Emerald Rapids core, register tiles walking 256 rows down
 * w, 128-192 bytes from each, ran at 0.5-0.6 of a stream: every row a
 * separate page and, with a row stride a multiple of 4 KiB, the same L1 set):
 *   M <= 3 (run_rows): w streamed in memory order, R rows at a time; for
 *     each vector of 16 columns the M partial sums are loaded from y,
 *     updated by the R rows (R loads of w, each row prefetched PF_AHEAD
 *     floats ahead: without it the rate drops by a third), and stored
 *     back; the columns go in blocks of 8192 / M floats so y stays in L1.
 *   M >= 4 (run_tiles): register tiles of M rows x NV vectors (up to 24
 *     accumulators, which run_rows would load and store for every vector
 *     of w), walked left to right across a block of TILE_CB columns for
 *     TILE_R rows of w at a time (TILE_R runs of 16 KiB in flight), each
 *     row prefetched TILE_PF tiles ahead; x[:, i] for those rows packed
 *     first so that each broadcast is one load at a fixed offset. The
 *     partial sums wait in y (TILE_CB x M floats, in L2) between row groups.
 * The last columns use masked vectors. Per element: the bias (or +0), then
 * an fma chain over i ascending, as gemv_generic.c. (Rates measured with
 * bench/gemv_bench.c, docs/threads.md.) */
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

enum {
    TILE_R = 16,    /* run_tiles: rows of w per pass over a column block */
    TILE_CB = 4096, /* run_tiles: columns per block (M x 16 KiB of y, in L2) */
    TILE_PF = 2,    /* run_tiles: each row prefetched this many tiles ahead */
};

/* Rows k0..k0+nr-1 of columns [c, c + 16 NV) (mask on the last vector);
 * xt[r][m] = x[m, k0 + r]. PF: prefetch the tiles ahead. */
AVX512 __attribute__((always_inline)) static inline void
tile(float *y, int64_t ldy, const float (*xt)[8], const float *w, int64_t ldw, int64_t k0,
     int64_t nr, int64_t c, __mmask16 last, const int M, const int NV, const int PF) {
    __m512 acc[8][4];
    for (int m = 0; m < M; m++)
        for (int v = 0; v < NV; v++)
            acc[m][v] =
                _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xffff, y + m * ldy + c + 16 * v);
    const float *wi = w + k0 * ldw + c; /* seek to w[k0, c] */
    for (int64_t r = 0; r < nr; r++, wi += ldw) {
        __m512 wv[4];
        for (int v = 0; v < NV; v++) {
            wv[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xffff, wi + 16 * v);
            if (PF)
                _mm_prefetch(attn__prefetch_addr(w, k0 + r, ldw, c + 16 * (v + NV * TILE_PF)),
                             _MM_HINT_T0);
        }
        for (int m = 0; m < M; m++) {
            const __m512 xb = _mm512_set1_ps(xt[r][m]);
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
    float xt[TILE_R][8] __attribute__((aligned(64)));
    for (int64_t c0 = 0; c0 < n; c0 += TILE_CB) {
        const int64_t c1 = c0 + TILE_CB < n ? c0 + TILE_CB : n;
        const int64_t full = c1 - (c1 - c0) % (16 * NV);
        for (int64_t k0 = 0; k0 < K; k0 += TILE_R) {
            const int64_t nr = K - k0 < TILE_R ? K - k0 : TILE_R;
            for (int64_t r = 0; r < nr; r++)
                for (int m = 0; m < M; m++)
                    xt[r][m] = x[m * xs0 + (k0 + r) * xs1];
            for (int64_t c = c0; c < full; c += 16 * NV)
                tile(y, ldy, xt, w, ldw, k0, nr, c, 0xffff, M, NV, 1);
            for (int64_t c = full; c < c1; c += 16) {
                const int64_t left = c1 - c;
                tile(y, ldy, xt, w, ldw, k0, nr, c,
                     left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u), M, 1, 0);
            }
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
        run_tiles(y, ldy, x, xs0, xs1, w, ldw, K, n, 4, 4);
        break;
    case 5:
        run_tiles(y, ldy, x, xs0, xs1, w, ldw, K, n, 5, 4);
        break;
    case 6:
        run_tiles(y, ldy, x, xs0, xs1, w, ldw, K, n, 6, 4);
        break;
    case 7:
        run_tiles(y, ldy, x, xs0, xs1, w, ldw, K, n, 7, 3);
        break;
    default:
        run_tiles(y, ldy, x, xs0, xs1, w, ldw, K, n, 8, 3);
        break;
    }
}
