/* kernels/panel_avx2.c - one packed panel, AVX2 + FMA (kernels/panel.h):
 *   y[m, c] = b[c] + sum_i x[m, i] wp[i, c]
 * Sixteen registers hold 4 rows x 24 columns of sums (12 vectors), half a
 * panel row (3) and a broadcast: the panel goes by in chunks of KC rows
 * (12 KiB, in L1), each chunk once per group of 4 rows of x and half of
 * the columns, the sums waiting in a local array between chunks. The first
 * pass over a chunk prefetches the next chunk's rows in memory order. */
#include "kernels/panel.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

enum { KC = 64, HALF = ATTN_PANEL / 2 };

_Static_assert(ATTN_PANEL == 48, "panel_avx2.c holds half a panel row in three vectors");

/* Rows k0..k1-1 of the panel for rows m0..m0+R-1 of x, columns h..h+23. */
AVX2 __attribute__((always_inline)) static inline void
pass(float (*acc)[ATTN_PANEL], const float *x, int64_t xs0, int64_t xs1, const float *wp, int64_t K,
     int64_t k0, int64_t k1, int m0, const int R, int h, int prefetch) {
    __m256 s[4][3];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 3; v++)
            s[r][v] = _mm256_loadu_ps(acc[m0 + r] + h + 8 * v);
    for (int64_t i = k0; i < k1; i++) {
        const float *wi = wp + i * ATTN_PANEL + h; /* seek to wp[i, h] */
        const __m256 w0 = _mm256_loadu_ps(wi), w1 = _mm256_loadu_ps(wi + 8),
                     w2 = _mm256_loadu_ps(wi + 16);
        if (prefetch && i + KC < K) { /* the row a chunk on: its three lines */
            const char *ahead = (const char *)(wp + (i + KC) * ATTN_PANEL);
            _mm_prefetch(ahead, _MM_HINT_T0);
            _mm_prefetch(ahead + 64, _MM_HINT_T0);
            _mm_prefetch(ahead + 128, _MM_HINT_T0);
        }
        for (int r = 0; r < R; r++) {
            const __m256 xb = _mm256_set1_ps(x[(m0 + r) * xs0 + i * xs1]);
            s[r][0] = _mm256_fmadd_ps(xb, w0, s[r][0]);
            s[r][1] = _mm256_fmadd_ps(xb, w1, s[r][1]);
            s[r][2] = _mm256_fmadd_ps(xb, w2, s[r][2]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 3; v++)
            _mm256_storeu_ps(acc[m0 + r] + h + 8 * v, s[r][v]);
}

AVX2 void attn__panel_avx2(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                           const float *wp, int64_t K, const float *b, int64_t bs, int M, int n) {
    float acc[8][ATTN_PANEL];
    for (int m = 0; m < M; m++)
        for (int c = 0; c < ATTN_PANEL; c++)
            acc[m][c] = b && c < n ? b[c * bs] : 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t k1 = k0 + KC < K ? k0 + KC : K;
        int first = 1;
        for (int m0 = 0; m0 < M; m0 += 4)
            for (int h = 0; h < ATTN_PANEL; h += HALF, first = 0) {
                switch (M - m0 < 4 ? M - m0 : 4) {
                case 1:
                    pass(acc, x, xs0, xs1, wp, K, k0, k1, m0, 1, h, first);
                    break;
                case 2:
                    pass(acc, x, xs0, xs1, wp, K, k0, k1, m0, 2, h, first);
                    break;
                case 3:
                    pass(acc, x, xs0, xs1, wp, K, k0, k1, m0, 3, h, first);
                    break;
                default:
                    pass(acc, x, xs0, xs1, wp, K, k0, k1, m0, 4, h, first);
                    break;
                }
            }
    }
    for (int m = 0; m < M; m++)
        for (int c = 0; c < n; c++)
            y[m * ldy + c] = acc[m][c];
}
