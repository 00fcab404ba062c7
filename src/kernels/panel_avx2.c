/* kernels/panel_avx2.c - one packed panel, AVX2 + FMA (kernels/panel.h):
 *   y[m, c] = b[c] + sum_i x[m, i] wp[i, c]
 * Sixteen registers hold 2 rows x 48 columns of sums (12 vectors), one
 * vector of the panel's row and the two broadcasts, so every pass reads
 * whole panel rows, in memory order. The panel goes by in chunks of KC rows
 * (12 KiB, in L1), each chunk once per pair of rows of x, the sums waiting
 * in a local array between chunks. The passes over a chunk share the
 * prefetching of the next chunk's rows, every P-th row each, so that the
 * reads from memory run during all of them, not only the first (on a Zen 5
 * with ATTN_ISA=avx2: M = 4 at 0.95 of a stream with, 0.89-0.92 without;
 * docs/threads.md, "Packed weights"). */
#include "kernels/panel.h"

#include <string.h>

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

enum { KC = 64, NV = ATTN_PANEL / 8 };

_Static_assert(ATTN_PANEL == 48, "panel_avx2.c holds a panel row in six vectors");

/* Rows k0..k1-1 of the panel for rows m0..m0+R-1 of x (R = 1, 2), pass j
 * of P over the chunk: prefetches rows j, j + P, ... of the next chunk. */
AVX2 __attribute__((always_inline)) static inline void
pass(float (*acc)[ATTN_PANEL], const float *x, int64_t xs0, int64_t xs1, const float *wp, int64_t K,
     int64_t k0, int64_t k1, int m0, const int R, int j, int P) {
    __m256 s[2][NV];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++)
            s[r][v] = _mm256_loadu_ps(acc[m0 + r] + 8 * v);
    int countdown = j; /* rows until this pass's next prefetch */
    for (int64_t i = k0; i < k1; i++) {
        const float *wi = wp + i * ATTN_PANEL; /* seek to wp[i, 0] */
        if (countdown-- == 0) {
            countdown = P - 1;
            if (i + KC < K) { /* the row a chunk on: its three lines */
                const char *ahead = (const char *)(wi + KC * ATTN_PANEL);
                _mm_prefetch(ahead, _MM_HINT_T0);
                _mm_prefetch(ahead + 64, _MM_HINT_T0);
                _mm_prefetch(ahead + 128, _MM_HINT_T0);
            }
        }
        __m256 xb[2];
        for (int r = 0; r < R; r++)
            xb[r] = _mm256_set1_ps(x[(m0 + r) * xs0 + i * xs1]);
        for (int v = 0; v < NV; v++) {
            const __m256 w = _mm256_loadu_ps(wi + 8 * v);
            for (int r = 0; r < R; r++)
                s[r][v] = _mm256_fmadd_ps(xb[r], w, s[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++)
            _mm256_storeu_ps(acc[m0 + r] + 8 * v, s[r][v]);
}

AVX2 void attn__panel_avx2(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                           const float *wp, int64_t K, const float *b, int64_t bs, int M, int n) {
    float acc[8][ATTN_PANEL];
    attn__panel_bias(acc[0], b, bs, n);
    for (int m = 1; m < M; m++)
        memcpy(acc[m], acc[0], sizeof acc[0]);
    const int P = (M + 1) / 2; /* passes over each chunk */
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t k1 = k0 + KC < K ? k0 + KC : K;
        for (int m0 = 0; m0 < M; m0 += 2) {
            if (M - m0 >= 2)
                pass(acc, x, xs0, xs1, wp, K, k0, k1, m0, 2, m0 / 2, P);
            else
                pass(acc, x, xs0, xs1, wp, K, k0, k1, m0, 1, m0 / 2, P);
        }
    }
    for (int m = 0; m < M; m++)
        for (int c = 0; c < n; c++)
            y[m * ldy + c] = acc[m][c];
}
