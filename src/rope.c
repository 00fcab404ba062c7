/* rope.c - rotary position embedding on q/k views, and the inv_freq tables
 * of the common scalings.
 *
 * For a row x (d values) of token position p, pair t (0 <= t < r/2) holds
 *   NEOX: (x[t], x[t + r/2])      GPTJ: (x[2t], x[2t + 1])
 * and is rotated by the angle p * inv_freq[t] (in double):
 *   (a, b) -> (a cos - b sin, b cos + a sin) * mscale
 * Dims r..d-1 are copied unchanged. The products run in double and are
 * rounded once to float. */
#include "internal.h"

#include <float.h>
#include <inttypes.h>
#include <string.h>

static const double TWO_PI = 6.283185307179586476925286766559;

/* double -> float with overflow going to +-inf (no out-of-range cast). */
static inline float to_float(double v) {
    if (v > FLT_MAX) return INFINITY;
    if (v < -FLT_MAX) return -INFINITY;
    return (float)v;
}

attn_rope_params attn_rope_params_default(void) {
    attn_rope_params p;
    memset(&p, 0, sizeof p);
    p.style = ATTN_ROPE_NEOX;
    p.rotary_dim = 0;
    p.base = 10000.0;
    p.inv_freq = NULL;
    p.mscale = 1.0;
    return p;
}

static attn_status check_dim_base(const char *fn, int64_t r, double base) {
    if (r < 2 || r % 2 != 0)
        return attn__fail(ATTN_ERR_ARG, "%s: rotary_dim=%" PRId64 " must be even and >= 2", fn, r);
    if (r > ((int64_t)1 << 40))
        return attn__fail(ATTN_ERR_ARG, "%s: rotary_dim=%" PRId64 " is too large", fn, r);
    if (!(base > 1.0) || !isfinite(base))
        return attn__fail(ATTN_ERR_ARG, "%s: base=%g must be finite and > 1", fn, base);
    return ATTN_OK;
}

static attn_status check_factor(const char *fn, const char *name, double f) {
    if (!(f > 0.0) || !isfinite(f))
        return attn__fail(ATTN_ERR_ARG, "%s: %s=%g must be finite and > 0", fn, name, f);
    return ATTN_OK;
}

/* inv_freq[t] = base^(-2t/r) */
static void fill_default(int64_t r, double base, double *inv_freq) {
    for (int64_t t = 0; t < r / 2; t++)
        inv_freq[t] = 1.0 / pow(base, (double)(2 * t) / (double)r);
}

attn_status attn_rope_inv_freq(int64_t rotary_dim, double base, double *inv_freq) {
    const char *fn = "attn_rope_inv_freq";
    attn_status s;
    if ((s = check_dim_base(fn, rotary_dim, base))) return s;
    if (!inv_freq) return attn__fail(ATTN_ERR_NULL, "%s: inv_freq is NULL", fn);
    fill_default(rotary_dim, base, inv_freq);
    return ATTN_OK;
}

attn_status attn_rope_inv_freq_linear(int64_t rotary_dim, double base, double factor,
                                      double *inv_freq) {
    const char *fn = "attn_rope_inv_freq_linear";
    attn_status s;
    if ((s = check_dim_base(fn, rotary_dim, base)) || (s = check_factor(fn, "factor", factor)))
        return s;
    if (!inv_freq) return attn__fail(ATTN_ERR_NULL, "%s: inv_freq is NULL", fn);
    fill_default(rotary_dim, base, inv_freq);
    for (int64_t t = 0; t < rotary_dim / 2; t++)
        inv_freq[t] /= factor;
    return ATTN_OK;
}

attn_status attn_rope_inv_freq_ntk(int64_t rotary_dim, double base, double alpha,
                                   double *inv_freq) {
    const char *fn = "attn_rope_inv_freq_ntk";
    attn_status s;
    if ((s = check_dim_base(fn, rotary_dim, base)) || (s = check_factor(fn, "alpha", alpha)))
        return s;
    if (rotary_dim < 4)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: rotary_dim=%" PRId64 " must be >= 4 (the exponent is r/(r-2))", fn,
                          rotary_dim);
    if (!inv_freq) return attn__fail(ATTN_ERR_NULL, "%s: inv_freq is NULL", fn);
    const double r = (double)rotary_dim, nb = base * pow(alpha, r / (r - 2.0));
    if (!(nb > 1.0) || !isfinite(nb))
        return attn__fail(ATTN_ERR_ARG, "%s: the scaled base %g (base=%g, alpha=%g) must be > 1",
                          fn, nb, base, alpha);
    fill_default(rotary_dim, nb, inv_freq);
    return ATTN_OK;
}

attn_status attn_rope_inv_freq_llama3(int64_t rotary_dim, double base, double factor,
                                      double low_freq_factor, double high_freq_factor,
                                      int64_t original_max_position, double *inv_freq) {
    const char *fn = "attn_rope_inv_freq_llama3";
    attn_status s;
    if ((s = check_dim_base(fn, rotary_dim, base)) || (s = check_factor(fn, "factor", factor)) ||
        (s = check_factor(fn, "low_freq_factor", low_freq_factor)) ||
        (s = check_factor(fn, "high_freq_factor", high_freq_factor)))
        return s;
    if (!(high_freq_factor > low_freq_factor))
        return attn__fail(ATTN_ERR_ARG, "%s: high_freq_factor=%g must be > low_freq_factor=%g", fn,
                          high_freq_factor, low_freq_factor);
    if (original_max_position < 1)
        return attn__fail(ATTN_ERR_ARG, "%s: original_max_position=%" PRId64 " must be >= 1", fn,
                          original_max_position);
    if (!inv_freq) return attn__fail(ATTN_ERR_NULL, "%s: inv_freq is NULL", fn);
    const double L = (double)original_max_position;
    const double low_wavelen = L / low_freq_factor, high_wavelen = L / high_freq_factor;
    fill_default(rotary_dim, base, inv_freq);
    for (int64_t t = 0; t < rotary_dim / 2; t++) {
        const double f = inv_freq[t], wavelen = TWO_PI / f;
        if (wavelen > low_wavelen) {
            inv_freq[t] = f / factor; /* low frequencies: interpolated */
        } else if (!(wavelen < high_wavelen)) {
            /* between the two: a smooth blend */
            const double sm =
                (L / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            inv_freq[t] = (1.0 - sm) * f / factor + sm * f;
        } /* high frequencies: unchanged */
    }
    return ATTN_OK;
}

/* YaRN: the dimension whose wavelength turns n_rot times over L positions. */
static double yarn_correction_dim(double n_rot, double r, double base, double L) {
    return r * log(L / (n_rot * TWO_PI)) / (2.0 * log(base));
}

attn_status attn_rope_inv_freq_yarn(int64_t rotary_dim, double base, double factor,
                                    int64_t original_max_position, double beta_fast,
                                    double beta_slow, double *inv_freq, double *mscale) {
    const char *fn = "attn_rope_inv_freq_yarn";
    attn_status s;
    if ((s = check_dim_base(fn, rotary_dim, base)) || (s = check_factor(fn, "factor", factor)) ||
        (s = check_factor(fn, "beta_fast", beta_fast)) ||
        (s = check_factor(fn, "beta_slow", beta_slow)))
        return s;
    if (original_max_position < 1)
        return attn__fail(ATTN_ERR_ARG, "%s: original_max_position=%" PRId64 " must be >= 1", fn,
                          original_max_position);
    if (!inv_freq) return attn__fail(ATTN_ERR_NULL, "%s: inv_freq is NULL", fn);
    const double r = (double)rotary_dim, L = (double)original_max_position;
    double lo = floor(yarn_correction_dim(beta_fast, r, base, L));
    double hi = ceil(yarn_correction_dim(beta_slow, r, base, L));
    if (lo < 0.0) lo = 0.0;
    if (hi > r - 1.0) hi = r - 1.0;
    if (lo == hi) hi += 0.001; /* no division by zero in the ramp */
    for (int64_t t = 0; t < rotary_dim / 2; t++) {
        const double extra = 1.0 / pow(base, (double)(2 * t) / r), inter = extra / factor;
        double ramp = ((double)t - lo) / (hi - lo);
        ramp = ramp < 0.0 ? 0.0 : ramp > 1.0 ? 1.0 : ramp;
        const double keep = 1.0 - ramp; /* share of the extrapolated (original) frequency */
        inv_freq[t] = inter * (1.0 - keep) + extra * keep;
    }
    if (mscale) *mscale = factor <= 1.0 ? 1.0 : 0.1 * log(factor) + 1.0;
    return ATTN_OK;
}

/* The checks of attn_rope; on success *r4 is the rotary dim. */
static attn_status check_rope(const char *fn, const attn_view *x, const int64_t *positions,
                              const int64_t *pos_strides, const attn_view *y,
                              const attn_rope_params *p, int64_t *r4) {
    attn_status s;
    if ((s = attn__check_x_to_y(fn, x, y))) return s;
    if (!positions) return attn__fail(ATTN_ERR_NULL, "%s: positions is NULL", fn);
    if (!p) return attn__fail(ATTN_ERR_NULL, "%s: params is NULL", fn);
    if (x->ndim < 2)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: x.ndim=%d but must be 2..4 (..., N, d): positions index N", fn,
                          x->ndim);
    const int64_t d = x->shape[x->ndim - 1];
    if (p->style != ATTN_ROPE_NEOX && p->style != ATTN_ROPE_GPTJ)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: style=%d is not ATTN_ROPE_NEOX (0) or ATTN_ROPE_GPTJ (1)", fn,
                          (int)p->style);
    const int64_t r = p->rotary_dim == 0 ? d : p->rotary_dim;
    if (r < 2 || r % 2 != 0 || r > d)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: rotary_dim=%" PRId64
                          " must be even, >= 2 and <= d=x.shape[%d]=%" PRId64 " (0 means d)",
                          fn, p->rotary_dim, x->ndim - 1, d);
    if (!p->inv_freq && (!(p->base > 1.0) || !isfinite(p->base)))
        return attn__fail(ATTN_ERR_ARG, "%s: base=%g must be finite and > 1", fn, p->base);
    if (!isfinite(p->mscale))
        return attn__fail(ATTN_ERR_ARG, "%s: mscale=%g must be finite", fn, p->mscale);
    if (p->inv_freq)
        for (int64_t t = 0; t < r / 2; t++)
            if (!isfinite(p->inv_freq[t]))
                return attn__fail(ATTN_ERR_ARG, "%s: inv_freq[%" PRId64 "]=%g must be finite", fn,
                                  t, p->inv_freq[t]);
    if (pos_strides) {
        /* Offsets of positions must fit in int64 (the shape of x bounds them). */
        const attn_view x4 = attn__as4(x);
        int64_t span = 0, term;
        for (int i = 0; i < 3; i++) {
            const int64_t st = pos_strides[i];
            if (st == INT64_MIN ||
                __builtin_mul_overflow(x4.shape[i] - 1, st < 0 ? -st : st, &term) ||
                __builtin_add_overflow(span, term, &span) ||
                span > (int64_t)(PTRDIFF_MAX / sizeof(int64_t)))
                return attn__fail(ATTN_ERR_OVERFLOW,
                                  "%s: pos_strides[%d]=%" PRId64 " overflows the addressable size",
                                  fn, i, st);
        }
    }
    *r4 = r;
    return ATTN_OK;
}

attn_status attn_rope(const attn_view *x, const int64_t *positions, const int64_t *pos_strides,
                      attn_view *y, const attn_rope_params *p) {
    const char *fn = "attn_rope";
    attn_status s;
    int64_t r = 0;
    if ((s = attn__isa_ready(fn))) return s;
    if ((s = check_rope(fn, x, positions, pos_strides, y, p, &r))) return s;
    const int64_t half = r / 2;
    /* cos, sin of the current position (half values each) and the default table. */
    double *tab = attn__alloc((size_t)(p->inv_freq ? 2 : 3) * (size_t)half, sizeof(double));
    if (!tab) return attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate the cos/sin table", fn);
    double *cs = tab, *sn = tab + half;
    const double *inv = p->inv_freq;
    if (!inv) {
        fill_default(r, p->base, tab + 2 * half);
        inv = tab + 2 * half;
    }

    const attn_view x4 = attn__as4(x), y4 = attn__as4(y);
    const int64_t B = x4.shape[0], H = x4.shape[1], N = x4.shape[2], d = x4.shape[3];
    const int64_t ps0 = pos_strides ? pos_strides[0] : 0, ps1 = pos_strides ? pos_strides[1] : 0,
                  ps2 = pos_strides ? pos_strides[2] : 1;
    const int64_t xs = x4.stride[3], ys = y4.stride[3];
    /* Pair t is (t, t + r/2) or (2t, 2t + 1). */
    const int64_t a_step = p->style == ATTN_ROPE_NEOX ? 1 : 2;
    const int64_t b_off = p->style == ATTN_ROPE_NEOX ? half : 1;
    const bool in_place = x4.data == y4.data;
    bool have = false;
    int64_t cached = 0;
    /* Tokens outermost: with positions shared across batches and heads the
     * table is computed once per token. */
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                const int64_t pos = positions[b * ps0 + h * ps1 + n * ps2];
                if (!have || pos != cached) {
                    for (int64_t t = 0; t < half; t++) {
                        const double ang = (double)pos * inv[t];
                        cs[t] = p->mscale * cos(ang);
                        sn[t] = p->mscale * sin(ang);
                    }
                    have = true;
                    cached = pos;
                }
                const float *xr = attn__at4(&x4, b, h, n, 0);
                float *yr = attn__at4(&y4, b, h, n, 0);
                for (int64_t t = 0; t < half; t++) {
                    const int64_t ia = t * a_step, ib = ia + b_off;
                    const double va = xr[ia * xs], vb = xr[ib * xs];
                    yr[ia * ys] = to_float(va * cs[t] - vb * sn[t]);
                    yr[ib * ys] = to_float(vb * cs[t] + va * sn[t]);
                }
                if (!in_place)
                    for (int64_t e = r; e < d; e++)
                        yr[e * ys] = xr[e * xs];
            }
    attn__free(tab);
    return ATTN_OK;
}
