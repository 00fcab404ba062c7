/* softmax.c - S1: stable softmax over the last axis of any view.
 *   y[..., j] = exp(x[..., j] - m) / sum_k exp(x[..., k] - m),  m = max_k x[..., k]
 * Sums run in double; a row of -inf gives zeros. */
#include "internal.h"

static void softmax_row(const float *x, int64_t xs, float *y, int64_t ys, int64_t n) {
    double m = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        if (x[j * xs] > m) m = x[j * xs];
    if (m == -INFINITY) { /* all -inf (a NaN row keeps m = -inf only if all NaN) */
        int has_nan = 0;
        for (int64_t j = 0; j < n; j++)
            has_nan |= isnan(x[j * xs]);
        for (int64_t j = 0; j < n; j++)
            y[j * ys] = has_nan ? NAN : 0.0f;
        return;
    }
    double l = 0.0;
    for (int64_t j = 0; j < n; j++)
        l += exp((double)x[j * xs] - m);
    for (int64_t j = 0; j < n; j++)
        y[j * ys] = (float)(exp((double)x[j * xs] - m) / l);
}

attn_status attn_softmax(const attn_view *x, attn_view *y) {
    const char *fn = "attn_softmax";
    attn_status s;
    if ((s = attn__isa_ready(fn))) return s;
    if ((s = attn__check_x_to_y(fn, x, y))) return s;

    attn_view x4 = attn__as4(x), y4 = attn__as4(y);
    for (int64_t a = 0; a < x4.shape[0]; a++)
        for (int64_t b = 0; b < x4.shape[1]; b++)
            for (int64_t c = 0; c < x4.shape[2]; c++)
                softmax_row(attn__at4(&x4, a, b, c, 0), x4.stride[3], attn__at4(&y4, a, b, c, 0),
                            y4.stride[3], x4.shape[3]);
    return ATTN_OK;
}
