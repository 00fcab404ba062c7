/* rmsnorm.c - root-mean-square normalisation over the last axis (Llama, T5):
 *   ms = mean_j x[..., j]^2
 *   y[..., j] = x[..., j] / sqrt(ms + eps) * gamma[j]
 * The mean of squares runs in double; no centring, no bias. */
#include "internal.h"

#include <float.h>

attn_status attn_rms_norm(const attn_view *x, const attn_view *gamma, float eps, attn_view *y) {
    const char *fn = "attn_rms_norm";
    attn_status s;
    if ((s = attn__isa_ready(fn))) return s;
    if ((s = attn__check_x_to_y(fn, x, y))) return s;
    const int last = x->ndim - 1;
    if (gamma &&
        ((s = attn__check_view(fn, "gamma", gamma, 1)) ||
         (s = attn__check_dim(fn, "gamma", gamma, 0, "x", x, last, "one gain per feature"))))
        return s;
    if (!(eps >= 0.0f) || !isfinite(eps))
        return attn__fail(ATTN_ERR_ARG, "%s: eps=%g must be finite and >= 0", fn, (double)eps);
    if (gamma && (s = attn__check_disjoint(fn, "y", y, "gamma", gamma))) return s;

    attn_view x4 = attn__as4(x), y4 = attn__as4(y);
    const int64_t n = x4.shape[3], xs = x4.stride[3], ys = y4.stride[3];
    for (int64_t a = 0; a < x4.shape[0]; a++)
        for (int64_t b = 0; b < x4.shape[1]; b++)
            for (int64_t c = 0; c < x4.shape[2]; c++) {
                const float *xr = attn__at4(&x4, a, b, c, 0);
                float *yr = attn__at4(&y4, a, b, c, 0);
                double ms = 0.0;
                for (int64_t j = 0; j < n; j++)
                    ms += (double)xr[j * xs] * (double)xr[j * xs];
                ms /= (double)n;
                /* A row of zeros with eps = 0 gives zeros, not 0/0. */
                const double den = sqrt(ms + (double)eps), inv = den == 0.0 ? 0.0 : 1.0 / den;
                for (int64_t j = 0; j < n; j++) {
                    const double g = gamma ? gamma->data[j * gamma->stride[0]] : 1.0;
                    const double v = (double)xr[j * xs] * inv * g;
                    yr[j * ys] = v > FLT_MAX ? INFINITY : v < -FLT_MAX ? -INFINITY : (float)v;
                }
            }
    return ATTN_OK;
}
