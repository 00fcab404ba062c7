/* layernorm.c - S9: layer normalisation over the last axis.
 *   mu = mean_j x[..., j];  var = mean_j (x[..., j] - mu)^2
 *   y[..., j] = (x[..., j] - mu) / sqrt(var + eps) * gamma[j] + beta[j]
 * Statistics in double, two passes (no E[x^2] - E[x]^2 cancellation). */
#include "internal.h"

attn_status attn_layer_norm(const attn_view *x, const attn_view *gamma, const attn_view *beta,
                            float eps, attn_view *y) {
    const char *fn = "attn_layer_norm";
    attn_status s;
    if ((s = attn__isa_ready(fn))) return s;
    if ((s = attn__check_x_to_y(fn, x, y))) return s;
    const int last = x->ndim - 1;
    if (gamma) {
        if ((s = attn__check_view(fn, "gamma", gamma, 1)) ||
            (s = attn__check_dim(fn, "gamma", gamma, 0, "x", x, last, "one gain per feature")))
            return s;
    }
    if (beta) {
        if ((s = attn__check_view(fn, "beta", beta, 1)) ||
            (s = attn__check_dim(fn, "beta", beta, 0, "x", x, last, "one bias per feature")))
            return s;
    }
    if (!(eps >= 0.0f) || !isfinite(eps))
        return attn__fail(ATTN_ERR_ARG, "%s: eps=%g must be finite and >= 0", fn, (double)eps);
    if (gamma && (s = attn__check_disjoint(fn, "y", y, "gamma", gamma))) return s;
    if (beta && (s = attn__check_disjoint(fn, "y", y, "beta", beta))) return s;

    attn_view x4 = attn__as4(x), y4 = attn__as4(y);
    const int64_t n = x4.shape[3];
    for (int64_t a = 0; a < x4.shape[0]; a++)
        for (int64_t b = 0; b < x4.shape[1]; b++)
            for (int64_t c = 0; c < x4.shape[2]; c++) {
                const float *xr = attn__at4(&x4, a, b, c, 0);
                float *yr = attn__at4(&y4, a, b, c, 0);
                const int64_t xs = x4.stride[3], ys = y4.stride[3];
                double mu = 0.0, var = 0.0;
                for (int64_t j = 0; j < n; j++)
                    mu += xr[j * xs];
                mu /= (double)n;
                for (int64_t j = 0; j < n; j++)
                    var += ((double)xr[j * xs] - mu) * ((double)xr[j * xs] - mu);
                var /= (double)n;
                const double inv = 1.0 / sqrt(var + (double)eps);
                for (int64_t j = 0; j < n; j++) {
                    double g = gamma ? gamma->data[j * gamma->stride[0]] : 1.0;
                    double bt = beta ? beta->data[j * beta->stride[0]] : 0.0;
                    yr[j * ys] = (float)(((double)xr[j * xs] - mu) * inv * g + bt);
                }
            }
    return ATTN_OK;
}
