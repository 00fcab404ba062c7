/* kernels/panel_avx512.c - one packed panel, AVX-512 F (kernels/panel.h):
 *   y[m, c] = b[c] + sum_i x[m, i] wp[i, c]
 * The panel's 48 columns are three vectors; M rows of x make up to 24
 * accumulators, in registers from the first row of the panel to the last.
 * Each row of the panel (192 bytes) is three loads, the M broadcasts of
 * x[:, i] and 3 M fused multiply-adds; the row PF_ROWS ahead is prefetched
 * (on a Zen 5, 8 rows ahead read W at the stream's rate for M = 1..8,
 * bench/gemv_patterns.c). */
#include "kernels/panel.h"

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

enum { PF_ROWS = 8 };

_Static_assert(ATTN_PANEL == 48, "panel_avx512.c holds a panel row in three vectors");

AVX512 __attribute__((always_inline)) static inline void
panel(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *wp, int64_t K,
      const float *b, int64_t bs, const int M, int n) {
    float b48[ATTN_PANEL];
    attn__panel_bias(b48, b, bs, n);
    __m512 acc[8][3];
    for (int v = 0; v < 3; v++) {
        const __m512 bv = _mm512_loadu_ps(b48 + 16 * v);
        for (int m = 0; m < M; m++)
            acc[m][v] = bv;
    }
    for (int64_t i = 0; i < K; i++, wp += ATTN_PANEL) {
        const __m512 w0 = _mm512_loadu_ps(wp), w1 = _mm512_loadu_ps(wp + 16),
                     w2 = _mm512_loadu_ps(wp + 32);
        if (i + PF_ROWS < K) { /* the three lines of the row PF_ROWS on, within the panel */
            const char *ahead = (const char *)(wp + PF_ROWS * ATTN_PANEL);
            _mm_prefetch(ahead, _MM_HINT_T0);
            _mm_prefetch(ahead + 64, _MM_HINT_T0);
            _mm_prefetch(ahead + 128, _MM_HINT_T0);
        }
        for (int m = 0; m < M; m++) {
            const __m512 xb = _mm512_set1_ps(x[m * xs0 + i * xs1]);
            acc[m][0] = _mm512_fmadd_ps(xb, w0, acc[m][0]);
            acc[m][1] = _mm512_fmadd_ps(xb, w1, acc[m][1]);
            acc[m][2] = _mm512_fmadd_ps(xb, w2, acc[m][2]);
        }
    }
    for (int v = 0; v < 3; v++) {
        const int left = n - 16 * v;
        const __mmask16 k = left >= 16 ? (__mmask16)0xffff
                            : left > 0 ? (__mmask16)((1u << left) - 1u)
                                       : (__mmask16)0;
        for (int m = 0; m < M; m++)
            _mm512_mask_storeu_ps(y + m * ldy + 16 * v, k, acc[m][v]);
    }
}

AVX512 void attn__panel_avx512(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                               const float *wp, int64_t K, const float *b, int64_t bs, int M,
                               int n) {
    switch (M) {
    case 1:
        panel(y, ldy, x, xs0, xs1, wp, K, b, bs, 1, n);
        break;
    case 2:
        panel(y, ldy, x, xs0, xs1, wp, K, b, bs, 2, n);
        break;
    case 3:
        panel(y, ldy, x, xs0, xs1, wp, K, b, bs, 3, n);
        break;
    case 4:
        panel(y, ldy, x, xs0, xs1, wp, K, b, bs, 4, n);
        break;
    case 5:
        panel(y, ldy, x, xs0, xs1, wp, K, b, bs, 5, n);
        break;
    case 6:
        panel(y, ldy, x, xs0, xs1, wp, K, b, bs, 6, n);
        break;
    case 7:
        panel(y, ldy, x, xs0, xs1, wp, K, b, bs, 7, n);
        break;
    default:
        panel(y, ldy, x, xs0, xs1, wp, K, b, bs, 8, n);
        break;
    }
}
