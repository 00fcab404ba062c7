/* kernels/panel_generic.c - one packed panel in portable C (kernels/panel.h):
 *   y[m, c] = b[c] + sum_i x[m, i] wp[i, c]
 * The M x ATTN_PANEL partial sums stay in a local array while the rows of
 * the panel go by in memory order; multiply, then add (as gemv_generic.c),
 * which the compiler vectorises. */
#include "kernels/panel.h"

#include <string.h>

void attn__panel_generic(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                         const float *wp, int64_t K, const float *b, int64_t bs, int M, int n) {
    float acc[8][ATTN_PANEL];
    attn__panel_bias(acc[0], b, bs, n);
    for (int m = 1; m < M; m++)
        memcpy(acc[m], acc[0], sizeof acc[0]);
    for (int64_t i = 0; i < K; i++) {
        const float *wi = wp + i * ATTN_PANEL; /* seek to wp[i, 0] */
        for (int m = 0; m < M; m++) {
            const float xi = x[m * xs0 + i * xs1];
            for (int c = 0; c < ATTN_PANEL; c++)
                acc[m][c] = xi * wi[c] + acc[m][c];
        }
    }
    for (int m = 0; m < M; m++)
        for (int c = 0; c < n; c++)
            y[m * ldy + c] = acc[m][c];
}
