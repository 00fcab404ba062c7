/* test_edge.c - attn_sdpa on hostile numbers, with the behaviour each case
 * documents (docs/reliability.md repeats it):
 *
 *   large scores    scores 1e4 + N(0,1) (and 1e4 + 0.01 j + N(0,1), whose
 *                   max moves through the key blocks), Nkv = 1000:
 *                   |out - oracle| <= EDGE_C * max|score| * 2^-24 * max|v|
 *                   with EDGE_C = 8, the oracle in float64 on the same inputs
 *   -inf mask       hidden keys take no part; result as the oracle
 *   NaN/Inf hidden  NaN or Inf in keys and values hidden by key lengths, the
 *                   causal rule or a -inf mask never reach the output: it is
 *                   bit-identical to the run with those entries zero
 *   NaN visible     NaN in q row i makes out row i NaN; NaN in a visible key
 *                   makes every row that sees it NaN; NaN in v[j, f] makes
 *                   column f of every row that sees j NaN; other rows stay
 *                   finite and unchanged
 *   subnormals      q, k subnormal: weights uniform, out = mean of v; v
 *                   subnormal: out within Nkv * 2^-149 of the oracle
 *   fully masked    a row with no visible key (mask, key length 0, causal
 *                   bottom-right with Nq > Nkv) is +0.0 everywhere, lse -inf
 *   single key      out = v[0] exactly, lse = the score
 *   head size 1     d = dv = 1, as the oracle
 *   long decode     Nq = 1, Nkv = 100000 (20000 with ATTN_TEST_QUICK=1)
 *
 * Every case runs for ATTN_ALGO_REFERENCE and ATTN_ALGO_FLASH under every
 * instruction set this CPU supports (attn_set_isa). Last, attn_set_error: the
 * status returned, the message per thread, cut when too long. */
#include "testutil.h"

#include <threads.h>

#define EDGE_C 8.0

static int quick = 0;

/* ---- a problem, contiguous arrays, and a float64 oracle ----------------- */

typedef struct {
    int64_t B, H, Hkv, Nq, Nkv, d, dv;
    float scale; /* NaN: 1/sqrt(d) */
    attn_causal causal;
    float *q, *k, *v; /* (B,H,Nq,d) (B,Hkv,Nkv,d) (B,Hkv,Nkv,dv) */
    float *mask;      /* (B,H,Nq,Nkv) or NULL */
    int64_t *key_lengths;
} prob;

static void prob_alloc(prob *p) {
    p->q = tu_rand(p->B * p->H * p->Nq * p->d, -1, 1);
    p->k = tu_rand(p->B * p->Hkv * p->Nkv * p->d, -1, 1);
    p->v = tu_rand(p->B * p->Hkv * p->Nkv * p->dv, -1, 1);
}

static void prob_free(prob *p) {
    free(p->q), free(p->k), free(p->v), free(p->mask);
    p->q = p->k = p->v = p->mask = NULL;
}

static float *Q(const prob *p, int64_t b, int64_t h, int64_t i) {
    return p->q + ((b * p->H + h) * p->Nq + i) * p->d;
}
static float *K(const prob *p, int64_t b, int64_t g, int64_t j) {
    return p->k + ((b * p->Hkv + g) * p->Nkv + j) * p->d;
}
static float *V(const prob *p, int64_t b, int64_t g, int64_t j) {
    return p->v + ((b * p->Hkv + g) * p->Nkv + j) * p->dv;
}
static float *M(const prob *p, int64_t b, int64_t h, int64_t i) {
    return p->mask + ((b * p->H + h) * p->Nq + i) * p->Nkv;
}

static int visible(const prob *p, int64_t b, int64_t h, int64_t i, int64_t j) {
    int64_t L = p->key_lengths ? p->key_lengths[b] : p->Nkv;
    if (j >= L) return 0;
    if (p->causal == ATTN_CAUSAL_TOP_LEFT && j > i) return 0;
    if (p->causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + L - p->Nq) return 0;
    if (p->mask && M(p, b, h, i)[j] == -INFINITY) return 0;
    return 1;
}

static double eff_scale(const prob *p) {
    return isnan(p->scale) ? 1.0 / sqrt((double)p->d) : (double)p->scale;
}

/* out (B,H,Nq,dv), lse (B,H,Nq) in double; also the largest |score|. */
static void oracle(const prob *p, double *out, double *lse, double *max_abs_score) {
    double *s = malloc((size_t)p->Nkv * sizeof(double));
    double big = 0;
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t h = 0; h < p->H; h++)
            for (int64_t i = 0; i < p->Nq; i++) {
                const int64_t g = h / (p->H / p->Hkv);
                double m = -INFINITY;
                for (int64_t j = 0; j < p->Nkv; j++) {
                    if (!visible(p, b, h, i, j)) continue;
                    double dot = 0;
                    for (int64_t e = 0; e < p->d; e++)
                        dot += (double)Q(p, b, h, i)[e] * (double)K(p, b, g, j)[e];
                    s[j] = eff_scale(p) * dot + (p->mask ? (double)M(p, b, h, i)[j] : 0.0);
                    if (fabs(s[j]) > big) big = fabs(s[j]);
                    if (s[j] > m) m = s[j];
                }
                double l = 0;
                for (int64_t j = 0; j < p->Nkv; j++)
                    if (visible(p, b, h, i, j)) l += exp(s[j] - m);
                const int64_t row = (b * p->H + h) * p->Nq + i;
                for (int64_t f = 0; f < p->dv; f++) {
                    double acc = 0;
                    for (int64_t j = 0; j < p->Nkv; j++)
                        if (visible(p, b, h, i, j))
                            acc += exp(s[j] - m) / l * (double)V(p, b, g, j)[f];
                    out[row * p->dv + f] = m == -INFINITY ? 0.0 : acc;
                }
                lse[row] = m == -INFINITY ? -INFINITY : m + log(l);
            }
    if (max_abs_score) *max_abs_score = big;
    free(s);
}

/* Run attn_sdpa with algo; out and lse allocated here. */
static attn_status run(const prob *p, attn_algo algo, float **out, float **lse) {
    const int64_t no = p->B * p->H * p->Nq * p->dv, nl = p->B * p->H * p->Nq;
    *out = malloc((size_t)no * sizeof(float));
    *lse = malloc((size_t)nl * sizeof(float));
    for (int64_t x = 0; x < no; x++)
        (*out)[x] = 12345.0f; /* anything but the answer */
    attn_view qv = attn_view_4d(p->q, p->B, p->H, p->Nq, p->d);
    attn_view kv = attn_view_4d(p->k, p->B, p->Hkv, p->Nkv, p->d);
    attn_view vv = attn_view_4d(p->v, p->B, p->Hkv, p->Nkv, p->dv);
    attn_view ov = attn_view_4d(*out, p->B, p->H, p->Nq, p->dv);
    attn_view lv = attn_view_3d(*lse, p->B, p->H, p->Nq);
    attn_view mv = attn_view_4d(p->mask ? p->mask : p->q, p->B, p->H, p->Nq, p->Nkv);
    attn_opts o = attn_opts_default();
    o.scale = p->scale;
    o.causal = p->causal;
    o.algo = algo;
    o.lse = &lv;
    o.mask = p->mask ? &mv : NULL;
    o.key_lengths = p->key_lengths;
    o.num_threads = 2;
    return attn_sdpa(&qv, &kv, &vv, &ov, &o);
}

static double max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs((double)a[i]) > m) m = fabs((double)a[i]);
    return m;
}

/* Largest |got - want|; infinite if a NaN or Inf appears on one side only. */
static double err_vs(const float *got, const double *want, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) != isnan(want[i])) return INFINITY;
        if (isnan(got[i])) continue;
        if (isinf(got[i]) || isinf(want[i])) {
            if ((double)got[i] != want[i]) return INFINITY;
            continue;
        }
        double x = fabs((double)got[i] - want[i]);
        if (x > e) e = x;
    }
    return e;
}

static const char *algo_name(attn_algo a) {
    return a == ATTN_ALGO_FLASH ? "flash" : "reference";
}

/* Compare against the oracle: |out - oracle| <= tol, lse within ltol. */
static void check_oracle(const char *what, const prob *p, attn_algo algo, double tol, double ltol,
                         double *worst_out) {
    const int64_t no = p->B * p->H * p->Nq * p->dv, nl = p->B * p->H * p->Nq;
    double *want = malloc((size_t)no * sizeof(double)), *wl = malloc((size_t)nl * sizeof(double));
    oracle(p, want, wl, NULL);
    float *out, *lse;
    CHECK_OK(run(p, algo, &out, &lse));
    double e = err_vs(out, want, no), el = err_vs(lse, wl, nl);
    CHECK(e <= tol, "%s, %s, %s: out error %g > %g", what, algo_name(algo),
          attn_isa_name(attn_get_isa()), e, tol);
    CHECK(el <= ltol, "%s, %s, %s: lse error %g > %g", what, algo_name(algo),
          attn_isa_name(attn_get_isa()), el, ltol);
    if (worst_out && e > *worst_out) *worst_out = e;
    free(want), free(wl), free(out), free(lse);
}

/* ---- the cases ------------------------------------------------------------ */

/* Scores 1e4 + N(0,1) (+ a ramp): q = (1e4, 1, 0..), k_j = (1, z_j, small..),
 * scale 1, so score_j = 1e4 + z_j (+ 0.01 j) up to rounding. */
static double gauss(void) {
    double u1 = tu_uniform(1e-7f, 1.0f), u2 = tu_uniform(0.0f, 1.0f);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void large_scores(attn_algo algo, double *ratio_out) {
    for (int ramp = 0; ramp <= 1; ramp++)
        for (int sign = -1; sign <= 1; sign += 2) {
            prob p = {.B = 1, .H = 2, .Hkv = 1, .Nq = 3, .Nkv = 1000, .d = 4, .dv = 8};
            p.scale = 1.0f;
            prob_alloc(&p);
            for (int64_t h = 0; h < p.H; h++)
                for (int64_t i = 0; i < p.Nq; i++) {
                    float *q = Q(&p, 0, h, i);
                    q[0] = (float)sign * 1e4f;
                    q[1] = 1.0f;
                    q[2] = (float)(i + 1) * 0.5f;
                    q[3] = (float)h;
                }
            for (int64_t j = 0; j < p.Nkv; j++) {
                float *k = K(&p, 0, 0, j);
                k[0] = 1.0f;
                k[1] = (float)(gauss() + (ramp ? 0.01 * (double)j : 0.0));
                k[2] = tu_uniform(-0.5f, 0.5f);
                k[3] = tu_uniform(-0.5f, 0.5f);
            }
            const int64_t no = p.B * p.H * p.Nq * p.dv, nl = p.B * p.H * p.Nq;
            double *want = malloc((size_t)no * sizeof(double));
            double *wl = malloc((size_t)nl * sizeof(double)), smax;
            oracle(&p, want, wl, &smax);
            float *out, *lse;
            CHECK_OK(run(&p, algo, &out, &lse));
            const double vmax = max_abs(p.v, p.B * p.Hkv * p.Nkv * p.dv);
            const double unit = smax * ldexp(1.0, -24) * vmax;
            const double e = err_vs(out, want, no);
            /* lse ~ 1e4: its own float rounding is 2^-11; allow 4 ulp. */
            const double el = err_vs(lse, wl, nl);
            CHECK(e <= EDGE_C * unit, "large scores (ramp %d, sign %d), %s, %s: error %g > %g",
                  ramp, sign, algo_name(algo), attn_isa_name(attn_get_isa()), e, EDGE_C * unit);
            CHECK(el <= 4 * ldexp(1.0, -10) * (smax / 8192.0), "large scores, %s: lse error %g",
                  algo_name(algo), el);
            if (e / unit > *ratio_out) *ratio_out = e / unit;
            free(want), free(wl), free(out), free(lse);
            prob_free(&p);
        }
}

static void inf_mask(attn_algo algo) {
    prob p = {.B = 2, .H = 2, .Hkv = 1, .Nq = 37, .Nkv = 300, .d = 16, .dv = 8};
    p.scale = NAN;
    prob_alloc(&p);
    const int64_t nm = p.B * p.H * p.Nq * p.Nkv;
    p.mask = malloc((size_t)nm * sizeof(float));
    for (int64_t x = 0; x < nm; x++)
        p.mask[x] = tu_uniform(0, 1) < 0.6f ? -INFINITY : tu_uniform(-3, 3);
    /* Whole blocks hidden for some rows, only the last key visible for others. */
    for (int64_t j = 0; j < 200; j++)
        M(&p, 0, 0, 5)[j] = -INFINITY;
    for (int64_t j = 0; j < p.Nkv - 1; j++)
        M(&p, 1, 1, 9)[j] = -INFINITY;
    M(&p, 1, 1, 9)[p.Nkv - 1] = 0.0f;
    check_oracle("-inf mask", &p, algo, 2e-6, 2e-6, NULL);
    /* -1e9 is not -inf: such keys stay visible. Beside ordinary keys they
     * weigh exp(-1e9) = 0; a row of only -1e9 keys sees them all: in float
     * -1e9 + s rounds to -1e9 (ulp 64), so the weights may be uniform where
     * float64 still tells the scores apart. That row is checked for what
     * float can promise: finite, a convex combination of v, lse near -1e9. */
    for (int64_t x = 0; x < nm; x++)
        if (p.mask[x] == -INFINITY) p.mask[x] = -1e9f;
    for (int64_t j = 0; j < p.Nkv; j++)
        M(&p, 1, 1, 9)[j] = -1e9f;
    {
        const int64_t no = p.B * p.H * p.Nq * p.dv, nl = p.B * p.H * p.Nq;
        double *want = malloc((size_t)no * sizeof(double)),
               *wl = malloc((size_t)nl * sizeof(double));
        oracle(&p, want, wl, NULL);
        float *out, *lse;
        CHECK_OK(run(&p, algo, &out, &lse));
        const int64_t lone = (1 * p.H + 1) * p.Nq + 9;
        double e = 0;
        int ok = 1;
        for (int64_t r = 0; r < nl; r++) {
            for (int64_t f = 0; f < p.dv; f++) {
                const double got = out[r * p.dv + f];
                if (r != lone) {
                    e = fmax(e, isfinite(got) ? fabs(got - want[r * p.dv + f]) : INFINITY);
                    continue;
                }
                double lo = INFINITY, hi = -INFINITY;
                for (int64_t j = 0; j < p.Nkv; j++) {
                    lo = fmin(lo, V(&p, 1, 0, j)[f]);
                    hi = fmax(hi, V(&p, 1, 0, j)[f]);
                }
                ok &= got >= lo && got <= hi;
            }
            ok &= fabs((double)lse[r] - wl[r]) <= (r == lone ? 256.0 : 2e-6);
        }
        CHECK(e <= 2e-6 && ok, "-1e9 mask, %s, %s: error %g, all -1e9 row ok %d", algo_name(algo),
              attn_isa_name(attn_get_isa()), e, ok);
        free(want), free(wl), free(out), free(lse);
    }
    prob_free(&p);
}

/* Fill every hidden (k, v) entry, run, and compare bitwise with zeros there. */
static void poison_hidden(attn_algo algo) {
    static const char *const how[3] = {"key lengths", "causal", "-inf mask"};
    for (int mode = 0; mode < 3; mode++)
        for (int poison = 0; poison < 3; poison++) {
            prob p = {.B = 2, .H = 4, .Hkv = 2, .Nq = 70, .Nkv = 200, .d = 8, .dv = 5};
            p.scale = NAN;
            prob_alloc(&p);
            int64_t kl[2] = {130, 3};
            unsigned char *hid = calloc((size_t)(p.B * p.Hkv * p.Nkv), 1); /* key hidden from all */
            if (mode == 0) {
                p.key_lengths = kl;
                for (int64_t b = 0; b < p.B; b++)
                    for (int64_t j = kl[b]; j < p.Nkv; j++)
                        for (int64_t g = 0; g < p.Hkv; g++)
                            hid[(b * p.Hkv + g) * p.Nkv + j] = 1;
            } else if (mode == 1) {
                p.causal = ATTN_CAUSAL_TOP_LEFT; /* keys j >= Nq are never seen */
                for (int64_t x = 0; x < p.B * p.Hkv; x++)
                    for (int64_t j = p.Nq; j < p.Nkv; j++)
                        hid[x * p.Nkv + j] = 1;
            } else {
                const int64_t nm = p.B * p.H * p.Nq * p.Nkv;
                p.mask = calloc((size_t)nm, sizeof(float));
                for (int64_t b = 0; b < p.B; b++)
                    for (int64_t j = 0; j < p.Nkv; j++)
                        if (j % 3 == 1 || (j >= 64 && j < 128)) {
                            for (int64_t g = 0; g < p.Hkv; g++)
                                hid[(b * p.Hkv + g) * p.Nkv + j] = 1;
                            for (int64_t h = 0; h < p.H; h++)
                                for (int64_t i = 0; i < p.Nq; i++)
                                    M(&p, b, h, i)[j] = -INFINITY;
                        }
            }
            const float bad = poison == 0 ? NAN : poison == 1 ? INFINITY : -INFINITY;
            float *out0, *lse0, *out1, *lse1;
            for (int64_t x = 0; x < p.B * p.Hkv * p.Nkv; x++)
                if (hid[x]) {
                    memset(p.k + x * p.d, 0, (size_t)p.d * sizeof(float));
                    memset(p.v + x * p.dv, 0, (size_t)p.dv * sizeof(float));
                }
            CHECK_OK(run(&p, algo, &out0, &lse0));
            for (int64_t x = 0; x < p.B * p.Hkv * p.Nkv; x++)
                if (hid[x]) {
                    for (int64_t e = 0; e < p.d; e++)
                        p.k[x * p.d + e] = bad;
                    for (int64_t f = 0; f < p.dv; f++)
                        p.v[x * p.dv + f] = (f & 1) ? bad : -bad;
                }
            CHECK_OK(run(&p, algo, &out1, &lse1));
            const int64_t no = p.B * p.H * p.Nq * p.dv, nl = p.B * p.H * p.Nq;
            int finite = 1;
            for (int64_t x = 0; x < no; x++)
                finite &= isfinite(out1[x]) != 0;
            CHECK(finite, "%s hides %s, %s, %s: non-finite output", how[mode],
                  poison == 0 ? "NaN" : "Inf", algo_name(algo), attn_isa_name(attn_get_isa()));
            CHECK(memcmp(out0, out1, (size_t)no * sizeof(float)) == 0 &&
                      memcmp(lse0, lse1, (size_t)nl * sizeof(float)) == 0,
                  "%s, poison %d, %s, %s: output depends on hidden entries (max diff %g)",
                  how[mode], poison, algo_name(algo), attn_isa_name(attn_get_isa()),
                  tu_maxdiff(out0, out1, no));
            free(out0), free(lse0), free(out1), free(lse1), free(hid);
            prob_free(&p);
        }
}

static void nan_visible(attn_algo algo) {
    prob p = {.B = 1, .H = 2, .Hkv = 1, .Nq = 80, .Nkv = 80, .d = 8, .dv = 6};
    p.scale = NAN;
    p.causal = ATTN_CAUSAL_TOP_LEFT;
    prob_alloc(&p);
    float *base, *bl;
    CHECK_OK(run(&p, algo, &base, &bl));
    const int64_t dv = p.dv;
    /* 1. NaN in q[0, 1, 30, 2]: row (h=1, i=30) NaN, every other row unchanged. */
    {
        float keep = Q(&p, 0, 1, 30)[2];
        Q(&p, 0, 1, 30)[2] = NAN;
        float *out, *lse;
        CHECK_OK(run(&p, algo, &out, &lse));
        int ok = 1;
        for (int64_t h = 0; h < p.H; h++)
            for (int64_t i = 0; i < p.Nq; i++)
                for (int64_t f = 0; f < dv; f++) {
                    const int64_t x = (h * p.Nq + i) * dv + f;
                    ok &= (h == 1 && i == 30) ? isnan(out[x]) != 0 : out[x] == base[x];
                }
        /* Every score of that row is NaN: the row must come out NaN, not be
         * taken for a row that sees no key (zeros, lse -inf). */
        CHECK(ok && isnan(lse[p.Nq + 30]),
              "NaN in q, %s, %s: row (h=1, i=30) gives out %g, lse %g (want NaN; other rows "
              "unchanged: see the line above)",
              algo_name(algo), attn_isa_name(attn_get_isa()), out[(p.Nq + 30) * dv],
              lse[p.Nq + 30]);
        Q(&p, 0, 1, 30)[2] = keep;
        free(out), free(lse);
    }
    /* 2. NaN in k[0, 0, 50, 0]: rows i >= 50 (which see key 50) NaN. */
    {
        float keep = K(&p, 0, 0, 50)[0];
        K(&p, 0, 0, 50)[0] = NAN;
        float *out, *lse;
        CHECK_OK(run(&p, algo, &out, &lse));
        int ok = 1;
        for (int64_t h = 0; h < p.H; h++)
            for (int64_t i = 0; i < p.Nq; i++)
                for (int64_t f = 0; f < dv; f++) {
                    const int64_t x = (h * p.Nq + i) * dv + f;
                    ok &= i >= 50 ? isnan(out[x]) != 0 : out[x] == base[x];
                }
        CHECK(ok, "NaN in a visible key, %s, %s: wrong rows NaN", algo_name(algo),
              attn_isa_name(attn_get_isa()));
        K(&p, 0, 0, 50)[0] = keep;
        free(out), free(lse);
    }
    /* 3. NaN in v[0, 0, 20, 4]: column 4 of rows i >= 20 NaN, the rest unchanged. */
    {
        V(&p, 0, 0, 20)[4] = NAN;
        float *out, *lse;
        CHECK_OK(run(&p, algo, &out, &lse));
        int ok = 1;
        for (int64_t h = 0; h < p.H; h++)
            for (int64_t i = 0; i < p.Nq; i++)
                for (int64_t f = 0; f < dv; f++) {
                    const int64_t x = (h * p.Nq + i) * dv + f;
                    ok &= (i >= 20 && f == 4) ? isnan(out[x]) != 0 : out[x] == base[x];
                }
        CHECK(ok && memcmp(lse, bl, (size_t)(p.H * p.Nq) * sizeof(float)) == 0,
              "NaN in a visible value, %s, %s: wrong elements NaN", algo_name(algo),
              attn_isa_name(attn_get_isa()));
        free(out), free(lse);
    }
    free(base), free(bl);
    prob_free(&p);
}

static void subnormals(attn_algo algo) {
    prob p = {.B = 1, .H = 2, .Hkv = 2, .Nq = 19, .Nkv = 150, .d = 16, .dv = 8};
    p.scale = NAN;
    prob_alloc(&p);
    const int64_t nq = p.B * p.H * p.Nq * p.d, nk = p.B * p.Hkv * p.Nkv * p.d;
    const int64_t nv = p.B * p.Hkv * p.Nkv * p.dv;
    /* q, k subnormal: every score underflows to 0 or a subnormal, weights uniform. */
    for (int64_t x = 0; x < nq; x++)
        p.q[x] = tu_uniform(-1, 1) * 1e-39f;
    for (int64_t x = 0; x < nk; x++)
        p.k[x] = tu_uniform(-1, 1) * 1e-39f;
    check_oracle("subnormal q, k", &p, algo, 2e-6, 1e-5, NULL);
    /* v subnormal too: the answer is a subnormal mean; absolute error
     * bounded by the rounding of Nkv subnormal products. */
    for (int64_t x = 0; x < nv; x++)
        p.v[x] = tu_uniform(-1, 1) * 1e-38f;
    check_oracle("subnormal q, k, v", &p, algo, (double)p.Nkv * ldexp(1.0, -149), 1e-5, NULL);
    /* Normal q, k and subnormal v. */
    for (int64_t x = 0; x < nq; x++)
        p.q[x] = tu_uniform(-1, 1);
    for (int64_t x = 0; x < nk; x++)
        p.k[x] = tu_uniform(-1, 1);
    check_oracle("subnormal v", &p, algo, (double)p.Nkv * ldexp(1.0, -149), 2e-6, NULL);
    prob_free(&p);
}

static void fully_masked(attn_algo algo) {
    for (int mode = 0; mode < 3; mode++) {
        prob p = {.B = 2, .H = 2, .Hkv = 1, .Nq = 9, .Nkv = 70, .d = 8, .dv = 4};
        p.scale = NAN;
        int64_t kl[2] = {0, 70};
        if (mode == 2) p.Nq = 80; /* bottom-right, Nq > Nkv: the first 10 rows see nothing */
        prob_alloc(&p);
        if (mode == 0) {
            p.mask = calloc((size_t)(p.B * p.H * p.Nq * p.Nkv), sizeof(float));
            for (int64_t j = 0; j < p.Nkv; j++)
                M(&p, 1, 0, 4)[j] = M(&p, 0, 1, 0)[j] = -INFINITY;
        } else if (mode == 1) {
            p.key_lengths = kl; /* batch 0 sees nothing */
        } else {
            p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
        }
        float *out, *lse;
        CHECK_OK(run(&p, algo, &out, &lse));
        int64_t empty_rows = 0;
        int ok = 1;
        for (int64_t b = 0; b < p.B; b++)
            for (int64_t h = 0; h < p.H; h++)
                for (int64_t i = 0; i < p.Nq; i++) {
                    int any = 0;
                    for (int64_t j = 0; j < p.Nkv; j++)
                        any |= visible(&p, b, h, i, j);
                    const int64_t row = (b * p.H + h) * p.Nq + i;
                    if (any) {
                        ok &= isfinite(lse[row]) != 0;
                        continue;
                    }
                    empty_rows++;
                    ok &= lse[row] == -INFINITY;
                    for (int64_t f = 0; f < p.dv; f++)
                        ok &= out[row * p.dv + f] == 0.0f && !signbit(out[row * p.dv + f]);
                }
        CHECK(ok && empty_rows > 0, "fully masked rows (mode %d), %s, %s: not +0 / -inf", mode,
              algo_name(algo), attn_isa_name(attn_get_isa()));
        free(out), free(lse);
        check_oracle("fully masked rows", &p, algo, 2e-6, 2e-6, NULL);
        prob_free(&p);
    }
}

static void single_key(attn_algo algo) {
    prob p = {.B = 2, .H = 3, .Hkv = 3, .Nq = 5, .Nkv = 1, .d = 7, .dv = 9};
    p.scale = 0.3f;
    prob_alloc(&p);
    float *out, *lse;
    CHECK_OK(run(&p, algo, &out, &lse));
    int ok = 1;
    for (int64_t b = 0; b < p.B; b++)
        for (int64_t h = 0; h < p.H; h++)
            for (int64_t i = 0; i < p.Nq; i++)
                for (int64_t f = 0; f < p.dv; f++)
                    ok &= out[((b * p.H + h) * p.Nq + i) * p.dv + f] == V(&p, b, h, 0)[f];
    CHECK(ok, "single key, %s, %s: out != v[0] exactly", algo_name(algo),
          attn_isa_name(attn_get_isa()));
    free(out), free(lse);
    check_oracle("single key", &p, algo, 0.0, 1e-6, NULL);
    prob_free(&p);
}

static void head_size_one(attn_algo algo) {
    prob p = {.B = 2, .H = 4, .Hkv = 2, .Nq = 67, .Nkv = 131, .d = 1, .dv = 1};
    p.scale = NAN;
    p.causal = ATTN_CAUSAL_TOP_LEFT;
    prob_alloc(&p);
    check_oracle("head size 1", &p, algo, 2e-6, 2e-6, NULL);
    prob_free(&p);
}

static void long_decode(attn_algo algo, double *worst) {
    prob p = {.B = 1, .H = 4, .Hkv = 1, .Nq = 1, .Nkv = quick ? 20000 : 100000, .d = 64, .dv = 64};
    p.scale = NAN;
    prob_alloc(&p);
    /* Scores spread over a few units so the softmax is not flat. */
    for (int64_t x = 0; x < p.H * p.d; x++)
        p.q[x] *= 3.0f;
    check_oracle("Nq=1, long Nkv", &p, algo, 2e-6, 2e-5, worst);
    prob_free(&p);
}

/* attn_set_error (for libraries layered on attn): the status comes back, the
 * message is this thread's attn_last_error(), cut at the buffer's end with
 * its NUL kept, NULL is an empty message, and another thread's message is
 * its own. */
static int other_thread(void *arg) {
    *(int *)arg = strcmp(attn_last_error(), "set by main") != 0;
    attn_set_error(ATTN_ERR_ARG, "set by the other thread");
    return 0;
}

static void set_error(void) {
    CHECK(attn_set_error(ATTN_ERR_SHAPE, "layered: x.shape[0]=3") == ATTN_ERR_SHAPE,
          "attn_set_error returns its status");
    CHECK(strcmp(attn_last_error(), "layered: x.shape[0]=3") == 0, "message recorded: %s",
          attn_last_error());
    CHECK(attn_set_error(ATTN_OK, NULL) == ATTN_OK && attn_last_error()[0] == '\0',
          "NULL records an empty message");
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    attn_set_error(ATTN_ERR_ARG, big);
    const size_t n = strlen(attn_last_error());
    CHECK(n > 100 && n < sizeof big - 1, "a long message is cut (%zu characters kept)", n);
    attn_set_error(ATTN_ERR_ARG, "set by main");
    int other_saw_another = 0;
    thrd_t t;
    CHECK(thrd_create(&t, other_thread, &other_saw_another) == thrd_success &&
              thrd_join(t, NULL) == thrd_success,
          "thread start");
    CHECK(other_saw_another, "a new thread does not see main's message");
    CHECK(strcmp(attn_last_error(), "set by main") == 0, "main's message kept: %s",
          attn_last_error());
}

int main(void) {
    const char *qenv = getenv("ATTN_TEST_QUICK");
    quick = qenv && *qenv && strcmp(qenv, "0") != 0;
    const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    const attn_algo algos[2] = {ATTN_ALGO_REFERENCE, ATTN_ALGO_FLASH};
    int n_isa = 0;
    for (int a = 0; a < 3; a++) {
        if (!attn_isa_supported(isas[a])) {
            printf("  %s: not supported here, skipped\n", attn_isa_name(isas[a]));
            continue;
        }
        CHECK_OK(attn_set_isa(isas[a]));
        n_isa++;
        for (int g = 0; g < 2; g++) {
            tu_state = 0x5eed + (uint64_t)a; /* the same data for both algorithms */
            double ratio = 0, worst_decode = 0;
            large_scores(algos[g], &ratio);
            inf_mask(algos[g]);
            poison_hidden(algos[g]);
            nan_visible(algos[g]);
            subnormals(algos[g]);
            fully_masked(algos[g]);
            single_key(algos[g]);
            head_size_one(algos[g]);
            long_decode(algos[g], &worst_decode);
            printf("  %-8s %-9s large scores: worst error %.2f x max|score| 2^-24 max|v| "
                   "(bound %.0f); long decode error %.2e\n",
                   attn_isa_name(isas[a]), algo_name(algos[g]), ratio, EDGE_C, worst_decode);
        }
    }
    CHECK(n_isa >= 1, "no instruction set ran");
    CHECK_OK(attn_set_isa(ATTN_ISA_AUTO));
    set_error();
    return tu_summary("test_edge");
}
