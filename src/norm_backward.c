/* norm_backward.c - the gradients of layernorm.c and rmsnorm.c, row by row,
 * in double; dgamma and dbeta summed over the rows in ascending order.
 *
 * Layer norm, per row of n features (xh = (x - mu) * inv, inv = 1/sqrt(var + eps)):
 *   forward  y = xh * gamma + beta
 *   backward dxh = dy * gamma
 *            dx  = inv * (dxh - mean(dxh) - xh * mean(dxh * xh))
 *            dgamma += dy * xh;   dbeta += dy
 * RMS norm (inv = 1/sqrt(mean(x^2) + eps)):
 *   forward  y = x * inv * gamma
 *   backward dxh = dy * gamma
 *            dx  = inv * (dxh - x * inv^2 * mean(dxh * x))
 *            dgamma += dy * x * inv
 * (inv = 0 for a zero row with eps = 0, where the forward gives zeros.) */
#include "internal.h"

#include "grad_util.h"

static attn_status check_norm(const char *fn, const attn_view *x, const attn_view *gamma,
                              const attn_view *beta, const attn_view *dy, float eps, attn_view *dx,
                              attn_view *dgamma, attn_view *dbeta) {
    attn_status s;
    if ((s = attn__isa_ready(fn))) return s;
    if ((s = attn__check_view(fn, "x", x, 0)) || (s = attn__grad_check_like(fn, "dy", dy, "x", x)))
        return s;
    const int last = x->ndim - 1;
    const attn_view *vecs[2] = {gamma, beta};
    static const char *const vn[2] = {"gamma", "beta"};
    for (int a = 0; a < 2; a++)
        if (vecs[a] &&
            ((s = attn__check_view(fn, vn[a], vecs[a], 1)) ||
             (s = attn__check_dim(fn, vn[a], vecs[a], 0, "x", x, last, "one value per feature"))))
            return s;
    if (!(eps >= 0.0f) || !isfinite(eps))
        return attn__fail(ATTN_ERR_ARG, "%s: eps=%g must be finite and >= 0", fn, (double)eps);
    if (dx && (s = attn__grad_check_like(fn, "dx", dx, "x", x))) return s;
    const attn_view gv = attn_view_1d(NULL, x->shape[last]);
    if (dgamma && (s = attn__grad_check_like(fn, "dgamma", dgamma, "x's last dim", &gv))) return s;
    if (dbeta && (s = attn__grad_check_like(fn, "dbeta", dbeta, "x's last dim", &gv))) return s;
    attn_view *outs[3] = {dx, dgamma, dbeta};
    static const char *const on[3] = {"dx", "dgamma", "dbeta"};
    const attn_view *ins[4] = {x, dy, gamma, beta};
    static const char *const in_names[4] = {"x", "dy", "gamma", "beta"};
    return attn__grad_check_outputs(fn, outs, on, 3, ins, in_names, 4);
}

/* rms = 0: layer norm; 1: RMS norm. */
static attn_status norm_backward(const char *fn, int rms, const attn_view *x,
                                 const attn_view *gamma, const attn_view *dy, float eps,
                                 attn_view *dx, attn_view *dgamma, attn_view *dbeta) {
    const attn_view x4 = attn__as4(x), g4 = attn__as4(dy);
    const int64_t n = x4.shape[3];
    attn_view dx4 = dx ? attn__as4(dx) : x4;
    double *acc = attn__alloc((size_t)(3 * n), sizeof(double)); /* dgamma, dbeta, dxh */
    if (!acc)
        return attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate %lld doubles", fn,
                          (long long)(3 * n));
    double *dg = acc, *dbt = acc + n, *dxh = acc + 2 * n;
    for (int64_t j = 0; j < 2 * n; j++)
        acc[j] = 0.0;
    for (int64_t a = 0; a < x4.shape[0]; a++)
        for (int64_t b = 0; b < x4.shape[1]; b++)
            for (int64_t c = 0; c < x4.shape[2]; c++) {
                const float *xr = attn__at4(&x4, a, b, c, 0), *gr = attn__at4(&g4, a, b, c, 0);
                const int64_t xs = x4.stride[3], gs = g4.stride[3];
                double mu = 0.0, var = 0.0;
                if (!rms) {
                    for (int64_t j = 0; j < n; j++)
                        mu += xr[j * xs];
                    mu /= (double)n;
                }
                for (int64_t j = 0; j < n; j++)
                    var += ((double)xr[j * xs] - mu) * ((double)xr[j * xs] - mu);
                var /= (double)n;
                const double den = sqrt(var + (double)eps), inv = den == 0.0 ? 0.0 : 1.0 / den;
                double m1 = 0.0, m2 = 0.0; /* mean(dxh), mean(dxh * xh) */
                for (int64_t j = 0; j < n; j++) {
                    const double xh = ((double)xr[j * xs] - mu) * inv, go = gr[j * gs];
                    dxh[j] = go * (gamma ? gamma->data[j * gamma->stride[0]] : 1.0);
                    m1 += dxh[j];
                    m2 += dxh[j] * xh;
                    dg[j] += go * xh;
                    dbt[j] += go;
                }
                m1 /= (double)n;
                m2 /= (double)n;
                if (!dx) continue;
                float *dr = attn__at4(&dx4, a, b, c, 0);
                for (int64_t j = 0; j < n; j++) {
                    const double xh = ((double)xr[j * xs] - mu) * inv;
                    dr[j * dx4.stride[3]] = (float)(inv * (dxh[j] - (rms ? 0.0 : m1) - xh * m2));
                }
            }
    for (int64_t j = 0; j < n; j++) {
        if (dgamma) dgamma->data[j * dgamma->stride[0]] = (float)dg[j];
        if (dbeta) dbeta->data[j * dbeta->stride[0]] = (float)dbt[j];
    }
    attn__free(acc);
    return ATTN_OK;
}

attn_status attn_layer_norm_backward(const attn_view *x, const attn_view *gamma,
                                     const attn_view *dy, float eps, attn_view *dx,
                                     attn_view *dgamma, attn_view *dbeta) {
    const char *fn = "attn_layer_norm_backward";
    attn_status s = check_norm(fn, x, gamma, NULL, dy, eps, dx, dgamma, dbeta);
    return s ? s : norm_backward(fn, 0, x, gamma, dy, eps, dx, dgamma, dbeta);
}

attn_status attn_rms_norm_backward(const attn_view *x, const attn_view *gamma, const attn_view *dy,
                                   float eps, attn_view *dx, attn_view *dgamma) {
    const char *fn = "attn_rms_norm_backward";
    attn_status s = check_norm(fn, x, gamma, NULL, dy, eps, dx, dgamma, NULL);
    return s ? s : norm_backward(fn, 1, x, gamma, dy, eps, dx, dgamma, NULL);
}
