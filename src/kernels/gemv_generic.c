/* kernels/gemv_generic.c - few-row products in portable C (kernels/gemv.h):
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // "mi,io->mo"
 * Rows of w are read once, 64 columns at a time for all M rows of x, in
 * chunks of KC rows between which the partial sums wait in y. Multiply,
 * then add (attn__madd_generic), which the compiler vectorises. */
#include "kernels/gemv.h"

enum { COLS = 64, KC = 128 };

void attn__gemv_generic(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                        const float *w, int64_t ldw, const float *b, int64_t bs, int M, int64_t K,
                        int64_t n) {
    for (int m = 0; m < M; m++)
        for (int64_t o = 0; o < n; o++)
            y[m * ldy + o] = b ? b[o * bs] : 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t k1 = k0 + KC < K ? k0 + KC : K;
        for (int64_t c0 = 0; c0 < n; c0 += COLS) {
            const int64_t nc = c0 + COLS < n ? COLS : n - c0;
            for (int m = 0; m < M; m++) {
                float acc[COLS];
                float *ym = y + m * ldy + c0; /* seek to y[m, c0] */
                for (int64_t c = 0; c < nc; c++)
                    acc[c] = ym[c];
                for (int64_t i = k0; i < k1; i++) {
                    const float xi = x[m * xs0 + i * xs1];
                    const float *wi = w + i * ldw + c0; /* seek to w[i, c0] */
                    for (int64_t c = 0; c < nc; c++)
                        acc[c] = xi * wi[c] + acc[c];
                }
                for (int64_t c = 0; c < nc; c++)
                    ym[c] = acc[c];
            }
        }
    }
}
