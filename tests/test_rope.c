/* test_rope.c - attn_rope and the inv_freq helpers, against formulas written
 * here in other forms: Hugging Face's x*cos + rotate_half(x)*sin (NEOX),
 * Meta's complex multiply (GPTJ), long double at large positions, the
 * published scaling formulas written out as their authors vectorise them. */
#include "testutil.h"

#include <complex.h>

/* NEOX, the HF way: cos/sin tables of width r (freqs concatenated twice),
 * y = x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x2, x1). double. */
static void hf_rotate_half(const float *x, int64_t d, int64_t r, int64_t pos, const double *inv,
                           double mscale, double *y) {
    double cosw[512], sinw[512], rh[512];
    for (int64_t e = 0; e < r; e++) {
        double ang = (double)pos * inv[e % (r / 2)];
        cosw[e] = cos(ang) * mscale;
        sinw[e] = sin(ang) * mscale;
    }
    for (int64_t e = 0; e < r; e++)
        rh[e] = e < r / 2 ? -(double)x[e + r / 2] : (double)x[e - r / 2];
    for (int64_t e = 0; e < r; e++)
        y[e] = x[e] * cosw[e] + rh[e] * sinw[e];
    for (int64_t e = r; e < d; e++)
        y[e] = x[e];
}

/* GPTJ, Meta's way: view pairs as complex numbers, multiply by e^{i theta}. */
static void meta_complex(const float *x, int64_t d, int64_t r, int64_t pos, const double *inv,
                         double mscale, double *y) {
    for (int64_t t = 0; t < r / 2; t++) {
        double complex z = x[2 * t] + I * (double)x[2 * t + 1];
        double complex w = z * cexp(I * ((double)pos * inv[t])) * mscale;
        y[2 * t] = creal(w);
        y[2 * t + 1] = cimag(w);
    }
    for (int64_t e = r; e < d; e++)
        y[e] = x[e];
}

/* Against both written-out forms, all shapes, partial rotary dims, strided
 * x and y (x read through a transposed (B, N, H, d) buffer). */
static void test_forms(void) {
    static const int64_t shapes[][5] = {/* B, H, N, d, r */
                                        {1, 1, 1, 2, 0},    {2, 3, 5, 8, 0},  {1, 4, 7, 64, 0},
                                        {3, 2, 11, 80, 32}, {1, 1, 13, 6, 4}, {2, 5, 3, 128, 64},
                                        {1, 2, 17, 10, 2},  {2, 1, 4, 96, 96}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int64_t B = shapes[c][0], H = shapes[c][1], N = shapes[c][2], d = shapes[c][3];
        const int64_t r = shapes[c][4] ? shapes[c][4] : d, n = B * H * N * d;
        float *buf = tu_rand(n, -2, 2), *y = tu_zeros(n), *yi = tu_zeros(n);
        int64_t *pos = malloc((size_t)(B * N) * sizeof *pos);
        for (int64_t i = 0; i < B * N; i++)
            pos[i] = tu_int(-50, 5000);
        double inv[256], *want = malloc((size_t)d * sizeof *want);
        for (int64_t t = 0; t < r / 2; t++)
            inv[t] = pow(10000.0, -2.0 * (double)t / (double)r);
        /* x[b,h,n,e] lives at buf[((b*N + n)*H + h)*d + e]: (B, N, H, d) transposed. */
        attn_view x = {buf, 4, {B, H, N, d}, {N * H * d, d, H * d, 1}};
        attn_view yv = attn_view_4d(y, B, H, N, d);
        for (int style = 0; style <= 1; style++)
            for (int ms = 0; ms <= 1; ms++) {
                attn_rope_params p = attn_rope_params_default();
                p.style = (attn_rope_style)style;
                p.rotary_dim = shapes[c][4];
                p.mscale = ms ? 1.2345 : 1.0;
                if (ms) p.inv_freq = inv; /* the table equals the default: same numbers */
                const int64_t ps[3] = {N, 0, 1};
                CHECK_OK(attn_rope(&x, pos, ps, &yv, &p));
                double worst = 0, worst_abs = 0;
                for (int64_t b = 0; b < B; b++)
                    for (int64_t h = 0; h < H; h++)
                        for (int64_t t = 0; t < N; t++) {
                            const float *xr = buf + ((b * N + t) * H + h) * d;
                            const float *yr = y + ((b * H + h) * N + t) * d;
                            if (style == ATTN_ROPE_NEOX)
                                hf_rotate_half(xr, d, r, pos[b * N + t], inv, p.mscale, want);
                            else
                                meta_complex(xr, d, r, pos[b * N + t], inv, p.mscale, want);
                            for (int64_t e = 0; e < d; e++) {
                                double err = fabs(yr[e] - want[e]);
                                worst_abs = fmax(worst_abs, err);
                                /* one rounding of a value of size <= |a|+|b| */
                                double bound = 2.4e-7 * (fabs(want[e]) + 4.0 * p.mscale) + 1e-12;
                                worst = fmax(worst, err / bound);
                            }
                            for (int64_t e = r; e < d; e++)
                                CHECK(yr[e] == xr[e], "dim %lld beyond r=%lld changed",
                                      (long long)e, (long long)r);
                        }
                CHECK(worst <= 1.0, "case %zu style %d mscale %d: max error %g (%.2f of bound)", c,
                      style, ms, worst_abs, worst);
                /* In place on a copy of x (the same strided view) equals out of place. */
                float *copy = tu_copy(buf, n);
                attn_view xc = x;
                xc.data = copy;
                CHECK_OK(attn_rope(&xc, pos, ps, &xc, &p));
                for (int64_t b = 0; b < B; b++)
                    for (int64_t h = 0; h < H; h++)
                        for (int64_t t = 0; t < N; t++)
                            memcpy(yi + ((b * H + h) * N + t) * d, copy + ((b * N + t) * H + h) * d,
                                   (size_t)d * sizeof(float));
                CHECK(memcmp(yi, y, (size_t)n * sizeof(float)) == 0,
                      "case %zu: in place differs from out of place", c);
                free(copy);
            }
        free(buf), free(y), free(yi), free(pos), free(want);
    }
}

/* GPTJ is NEOX on the interleaved dims permuted to halves: pair t is
 * (2t, 2t+1) in one and (t, t + r/2) in the other. */
static void test_styles_are_a_permutation(void) {
    enum { N = 9, d = 24, r = 16 };
    float *x = tu_rand(N * d, -3, 3), xp[N * d], yg[N * d], yn[N * d];
    int64_t pos[N];
    for (int i = 0; i < N; i++)
        pos[i] = 1000 * i + 7;
    for (int i = 0; i < N; i++) {
        for (int t = 0; t < r / 2; t++) {
            xp[i * d + t] = x[i * d + 2 * t];
            xp[i * d + t + r / 2] = x[i * d + 2 * t + 1];
        }
        for (int e = r; e < d; e++)
            xp[i * d + e] = x[i * d + e];
    }
    attn_view xv = attn_view_2d(x, N, d), xpv = attn_view_2d(xp, N, d);
    attn_view ygv = attn_view_2d(yg, N, d), ynv = attn_view_2d(yn, N, d);
    attn_rope_params p = attn_rope_params_default();
    p.rotary_dim = r;
    p.style = ATTN_ROPE_GPTJ;
    CHECK_OK(attn_rope(&xv, pos, NULL, &ygv, &p));
    p.style = ATTN_ROPE_NEOX;
    CHECK_OK(attn_rope(&xpv, pos, NULL, &ynv, &p));
    int same = 1;
    for (int i = 0; i < N; i++)
        for (int t = 0; t < r / 2; t++)
            same &= yg[i * d + 2 * t] == yn[i * d + t] &&
                    yg[i * d + 2 * t + 1] == yn[i * d + t + r / 2];
    CHECK(same, "GPTJ differs from NEOX on permuted dims");
    free(x);
}

/* Large positions: the angle comes from the integer in double, so position
 * 1e6 is as accurate as position 1. Checked against long double. */
static void test_large_positions(void) {
    enum { d = 128 };
    static const int64_t P[] = {0, 1, 4095, 65536, 131071, 999999, 1000000, -1000000};
    float *x = tu_rand(d, -1, 1), y[d];
    attn_view xv = attn_view_2d(x, 1, d), yv = attn_view_2d(y, 1, d);
    for (size_t k = 0; k < sizeof P / sizeof P[0]; k++) {
        attn_rope_params p = attn_rope_params_default();
        p.base = 500000.0;
        CHECK_OK(attn_rope(&xv, &P[k], NULL, &yv, &p));
        double worst = 0;
        for (int t = 0; t < d / 2; t++) {
            long double inv = powl(500000.0L, -2.0L * t / d);
            long double ang = (long double)P[k] * inv;
            long double a = x[t], b = x[t + d / 2];
            long double wa = a * cosl(ang) - b * sinl(ang), wb = b * cosl(ang) + a * sinl(ang);
            worst = fmax(worst, fabs((double)(y[t] - wa)));
            worst = fmax(worst, fabs((double)(y[t + d / 2] - wb)));
        }
        /* float rounding of values <= sqrt(2): 1.2e-7 ulp/2 plus angle error ~1e-10 */
        CHECK(worst < 2e-7, "position %lld: max error %g", (long long)P[k], worst);
    }
    /* Position 0 is the identity. */
    int64_t zero = 0;
    attn_rope_params p = attn_rope_params_default();
    CHECK_OK(attn_rope(&xv, &zero, NULL, &yv, &p));
    CHECK(memcmp(x, y, sizeof y) == 0, "position 0 is not the identity");
    free(x);
}

/* Prefill (all N tokens at once) equals rotating each token alone, bit for
 * bit: decode rotates keys one by one and must agree with a prefill. */
static void test_prefill_equals_tokens(void) {
    enum { B = 2, H = 3, N = 37, d = 40 };
    float *x = tu_rand(B * H * N * d, -1, 1), *all = tu_zeros(B * H * N * d);
    float *one = tu_zeros(B * H * N * d);
    int64_t pos[B * N];
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++)
            pos[b * N + n] = 100000 + 3 * b + n;
    attn_rope_params p = attn_rope_params_default();
    p.style = ATTN_ROPE_GPTJ;
    p.rotary_dim = 32;
    const int64_t ps[3] = {N, 0, 1};
    attn_view xv = attn_view_4d(x, B, H, N, d), av = attn_view_4d(all, B, H, N, d);
    CHECK_OK(attn_rope(&xv, pos, ps, &av, &p));
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++) {
            /* token n of batch b, all heads: (1, H, 1, d) */
            attn_view xt = {x + b * H * N * d + n * d, 4, {1, H, 1, d}, {0, N * d, d, 1}};
            attn_view yt = {one + b * H * N * d + n * d, 4, {1, H, 1, d}, {0, N * d, d, 1}};
            CHECK_OK(attn_rope(&xt, &pos[b * N + n], NULL, &yt, &p));
        }
    CHECK(memcmp(all, one, (size_t)(B * H * N * d) * sizeof(float)) == 0,
          "prefill rotation differs from per-token rotation");
    /* Per-head positions (ps[1] != 0) and a negative token stride. */
    int64_t hpos[H * N];
    for (int i = 0; i < H * N; i++)
        hpos[i] = tu_int(0, 1 << 20);
    const int64_t hs[3] = {0, N, 1};
    attn_view x1 = attn_view_4d(x, 1, H, N, d), y1 = attn_view_4d(all, 1, H, N, d);
    CHECK_OK(attn_rope(&x1, hpos, hs, &y1, &p));
    int ok = 1;
    for (int h = 0; h < H; h++)
        for (int n = 0; n < N; n++) {
            attn_view xt = attn_view_2d(x + (h * N + n) * d, 1, d);
            attn_view yt = attn_view_2d(one, 1, d);
            CHECK_OK(attn_rope(&xt, &hpos[h * N + n], NULL, &yt, &p));
            ok &= memcmp(one, all + (h * N + n) * d, d * sizeof(float)) == 0;
        }
    CHECK(ok, "per-head positions differ from single rows");
    free(x), free(all), free(one);
}

/* The published scaling formulas, written as their reference code does
 * (float64 here), against the helpers. */
static void test_tables(void) {
    enum { r = 128, half = r / 2 };
    double got[half], want[half], f0[half];
    const double base = 500000.0;
    for (int t = 0; t < half; t++)
        f0[t] = 1.0 / pow(base, (double)(2 * t) / r);

    CHECK_OK(attn_rope_inv_freq(r, base, got));
    CHECK(memcmp(got, f0, sizeof got) == 0, "default table");
    CHECK(fabs(got[1] - pow(base, -2.0 / r)) < 1e-18, "default table [1]");

    CHECK_OK(attn_rope_inv_freq_linear(r, base, 4.0, got));
    double w = 0;
    for (int t = 0; t < half; t++)
        w = fmax(w, fabs(got[t] - f0[t] / 4.0) / f0[t]);
    CHECK(w < 1e-15, "linear: %g", w);

    /* NTK-aware: base * alpha^(dim/(dim-2)) */
    CHECK_OK(attn_rope_inv_freq_ntk(r, 10000.0, 8.0, got));
    w = 0;
    for (int t = 0; t < half; t++) {
        double nb = 10000.0 * pow(8.0, (double)r / (r - 2));
        w = fmax(w, fabs(got[t] - pow(nb, -(double)(2 * t) / r)) * pow(nb, (double)(2 * t) / r));
    }
    CHECK(w < 1e-13, "ntk: %g", w);
    CHECK(got[0] == 1.0, "ntk: the first frequency stays 1, got %.17g", got[0]);

    /* Llama 3.1: factor 8, low 1, high 4, original context 8192. */
    CHECK_OK(attn_rope_inv_freq_llama3(r, base, 8.0, 1.0, 4.0, 8192, got));
    int n_low = 0, n_high = 0, n_mid = 0;
    w = 0;
    for (int t = 0; t < half; t++) {
        const double wl = 2 * 3.14159265358979323846 / f0[t];
        double v = wl > 8192.0 ? f0[t] / 8.0 : f0[t];
        const double smooth = (8192.0 / wl - 1.0) / (4.0 - 1.0);
        const double smoothed = (1 - smooth) * v / 8.0 + smooth * v;
        const int medium = !(wl < 8192.0 / 4.0) && !(wl > 8192.0 / 1.0);
        if (medium)
            v = smoothed, n_mid++;
        else if (wl > 8192.0)
            n_low++;
        else
            n_high++;
        want[t] = v;
        w = fmax(w, fabs(got[t] - want[t]) / want[t]);
    }
    CHECK(w < 1e-14, "llama3: %g", w);
    CHECK(n_low > 0 && n_mid > 0 && n_high > 0, "llama3 table misses a band: %d %d %d", n_low,
          n_mid, n_high);
    /* Published values (Llama 3.1 8B, head_dim 128): f[0] = 1, f[63] = f0[63]/8. */
    CHECK(got[0] == 1.0 && fabs(got[63] - f0[63] / 8) < 1e-20, "llama3 ends: %g %g", got[0],
          got[63]);

    /* YaRN (Peng et al. 2023; HF _compute_yarn_parameters): factor 4,
     * original context 4096, beta_fast 32, beta_slow 1, base 10000. */
    double ms = 0;
    CHECK_OK(attn_rope_inv_freq_yarn(r, 10000.0, 4.0, 4096, 32.0, 1.0, got, &ms));
    {
        const double b = 10000.0, pi = 3.14159265358979323846;
        double lo = floor(r * log(4096 / (32 * 2 * pi)) / (2 * log(b)));
        double hi = ceil(r * log(4096 / (1 * 2 * pi)) / (2 * log(b)));
        lo = fmax(lo, 0), hi = fmin(hi, r - 1);
        w = 0;
        for (int t = 0; t < half; t++) {
            double pf = pow(b, (double)(2 * t) / r);
            double extrap = 1 / pf, interp = 1 / (4.0 * pf);
            double lin = fmin(fmax((t - lo) / (hi - lo), 0), 1);
            double ef = 1 - lin;
            want[t] = interp * (1 - ef) + extrap * ef;
            w = fmax(w, fabs(got[t] - want[t]) / want[t]);
        }
        CHECK(w < 1e-14, "yarn: %g (lo %g hi %g)", w, lo, hi);
        CHECK(fabs(ms - (0.1 * log(4.0) + 1)) < 1e-15, "yarn mscale %.17g", ms);
        CHECK(got[0] == 1.0 && fabs(got[half - 1] - 1 / (4.0 * pow(b, (r - 2.0) / r))) < 1e-20,
              "yarn ends");
    }
    CHECK_OK(attn_rope_inv_freq_yarn(r, 10000.0, 0.5, 4096, 32.0, 1.0, got, &ms));
    CHECK(ms == 1.0, "yarn mscale for factor <= 1: %g", ms);

    /* Errors name the value and write nothing. */
    for (int t = 0; t < half; t++)
        got[t] = -7;
    CHECK_FAIL(attn_rope_inv_freq(7, base, got), ATTN_ERR_ARG, "rotary_dim=7 must be even");
    CHECK_FAIL(attn_rope_inv_freq(0, base, got), ATTN_ERR_ARG, "rotary_dim=0");
    CHECK_FAIL(attn_rope_inv_freq(r, 1.0, got), ATTN_ERR_ARG, "base=1 must be finite and > 1");
    CHECK_FAIL(attn_rope_inv_freq_linear(r, base, 0.0, got), ATTN_ERR_ARG, "factor=0");
    CHECK_FAIL(attn_rope_inv_freq_ntk(2, base, 2.0, got), ATTN_ERR_ARG,
               "rotary_dim=2 must be >= 4");
    CHECK_FAIL(attn_rope_inv_freq_ntk(r, base, NAN, got), ATTN_ERR_ARG, "alpha=nan");
    CHECK_FAIL(attn_rope_inv_freq_llama3(r, base, 8, 4, 1, 8192, got), ATTN_ERR_ARG,
               "high_freq_factor=1 must be > low_freq_factor=4");
    CHECK_FAIL(attn_rope_inv_freq_llama3(r, base, 8, 1, 4, 0, got), ATTN_ERR_ARG,
               "original_max_position=0");
    CHECK_FAIL(attn_rope_inv_freq_yarn(r, base, 4, 4096, -1, 1, got, NULL), ATTN_ERR_ARG,
               "beta_fast=-1");
    CHECK_FAIL(attn_rope_inv_freq_yarn(r, base, 4, 4096, 32, 1, NULL, NULL), ATTN_ERR_NULL,
               "inv_freq is NULL");
    int untouched = 1;
    for (int t = 0; t < half; t++)
        untouched &= got[t] == -7;
    CHECK(untouched, "a failed helper wrote its table");
}

static void test_rope_errors(void) {
    enum { N = 4, d = 8 };
    float x[N * d], y[N * d];
    for (int i = 0; i < N * d; i++)
        x[i] = (float)i, y[i] = -1.0f;
    int64_t pos[N] = {0, 1, 2, 3};
    attn_view xv = attn_view_2d(x, N, d), yv = attn_view_2d(y, N, d);
    attn_rope_params p = attn_rope_params_default();
    p.rotary_dim = 5;
    CHECK_FAIL(attn_rope(&xv, pos, NULL, &yv, &p), ATTN_ERR_ARG,
               "attn_rope: rotary_dim=5 must be even, >= 2 and <= d=x.shape[1]=8");
    p.rotary_dim = 10;
    CHECK_FAIL(attn_rope(&xv, pos, NULL, &yv, &p), ATTN_ERR_ARG, "rotary_dim=10");
    p = attn_rope_params_default();
    p.style = (attn_rope_style)2;
    CHECK_FAIL(attn_rope(&xv, pos, NULL, &yv, &p), ATTN_ERR_ARG, "style=2");
    p = attn_rope_params_default();
    p.base = 0.5;
    CHECK_FAIL(attn_rope(&xv, pos, NULL, &yv, &p), ATTN_ERR_ARG, "base=0.5");
    p = attn_rope_params_default();
    p.mscale = INFINITY;
    CHECK_FAIL(attn_rope(&xv, pos, NULL, &yv, &p), ATTN_ERR_ARG, "mscale=inf");
    double bad[4] = {1, NAN, 1, 1};
    p = attn_rope_params_default();
    p.inv_freq = bad;
    CHECK_FAIL(attn_rope(&xv, pos, NULL, &yv, &p), ATTN_ERR_ARG, "inv_freq[1]=nan");
    p = attn_rope_params_default();
    CHECK_FAIL(attn_rope(&xv, NULL, NULL, &yv, &p), ATTN_ERR_NULL, "positions is NULL");
    CHECK_FAIL(attn_rope(&xv, pos, NULL, &yv, NULL), ATTN_ERR_NULL, "params is NULL");
    attn_view x1 = attn_view_1d(x, d), y1 = attn_view_1d(y, d);
    CHECK_FAIL(attn_rope(&x1, pos, NULL, &y1, &p), ATTN_ERR_SHAPE, "x.ndim=1 but must be 2..4");
    attn_view yb = attn_view_2d(y, N - 1, d);
    CHECK_FAIL(attn_rope(&xv, pos, NULL, &yb, &p), ATTN_ERR_SHAPE, "y.shape[0]=3 but x.shape[0]=4");
    attn_view ov = attn_view_2d(x + 1, N - 1, d);
    attn_view xs = attn_view_2d(x, N - 1, d);
    CHECK_FAIL(attn_rope(&xs, pos, NULL, &ov, &p), ATTN_ERR_STRIDE, "overlaps input x");
    const int64_t huge[3] = {0, 0, INT64_MAX / 2};
    CHECK_FAIL(attn_rope(&xv, pos, huge, &yv, &p), ATTN_ERR_OVERFLOW, "pos_strides[2]");
    int untouched = 1;
    for (int i = 0; i < N * d; i++)
        untouched &= y[i] == -1.0f && x[i] == (float)i;
    CHECK(untouched, "a failed attn_rope wrote an output");
    /* Overflow goes to inf, not UB: mscale 4 on 1e38. */
    float big[2] = {3e38f, 3e38f}, out[2];
    attn_view bv = attn_view_2d(big, 1, 2), obv = attn_view_2d(out, 1, 2);
    p.mscale = 4;
    CHECK_OK(attn_rope(&bv, pos, NULL, &obv, &p));
    CHECK(isinf(out[0]) && isinf(out[1]), "overflow: %g %g", out[0], out[1]);
}

int main(void) {
    test_forms();
    test_styles_are_a_permutation();
    test_large_positions();
    test_prefill_equals_tokens();
    test_tables();
    test_rope_errors();
    return tu_summary("test_rope");
}
