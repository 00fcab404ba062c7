/* test_modifiers.c - the score modifiers (positions, sliding window, softcap,
 * ALiBi, sinks) on every path and ISA, against an independent float64
 * formulation: the full score matrix built in design.md's order
 *   s = scale q.k;  s = c tanh(s / c);  s -= slope |dist|;  s += mask
 * with hidden keys set to -inf, the sink appended as one more column of the
 * softmax and dropped afterwards.
 *
 * Tolerance: 2e-5 absolute on out (inputs in [-1, 1], so |out| <= 1) and
 * 2e-5 (1 + |lse|) on lse: test_flash.c's argument with a few more rounded
 * operations per score (tanh, one multiply-add for the bias). A key wrongly
 * shown or hidden moves out by ~1/Nkv >= 1e-2 here (Nkv <= 40, scores
 * bounded by ~|3| + slope*dist, and the tests pick slopes and sinks that keep
 * every visible weight above 1e-4). */
#include "testutil.h"

#include "internal.h"

#include <float.h>

typedef struct prob {
    int64_t B, H, Hkv, Nq, Nkv, d, dv;
    float *q, *k, *v, *mask; /* contiguous; mask (B, H, Nq, Nkv) or NULL */
    attn_opts o;             /* the options under test (views are filled by run) */
} prob;

static void prob_make(prob *p, int64_t B, int64_t H, int64_t Hkv, int64_t Nq, int64_t Nkv,
                      int64_t d, int64_t dv) {
    p->B = B, p->H = H, p->Hkv = Hkv, p->Nq = Nq, p->Nkv = Nkv, p->d = d, p->dv = dv;
    p->q = tu_rand(B * H * Nq * d, -1, 1);
    p->k = tu_rand(B * Hkv * Nkv * d, -1, 1);
    p->v = tu_rand(B * Hkv * Nkv * dv, -1, 1);
    p->mask = NULL;
    p->o = attn_opts_default();
}

static void prob_free(prob *p) {
    free(p->q), free(p->k), free(p->v), free(p->mask);
}

/* The float64 oracle. out (B, H, Nq, dv), lse (B, H, Nq). */
static void oracle(const prob *p, double *out, double *lse) {
    const attn_opts *o = &p->o;
    const int64_t G = p->H / p->Hkv;
    double *s = malloc((size_t)(p->Nkv + 1) * sizeof(double));
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t h = 0; h < p->H; h++)
            for (int64_t i = 0; i < p->Nq; i++) {
                const int64_t L = o->key_lengths ? o->key_lengths[b] : p->Nkv;
                const int64_t qoff = o->q_offset                         ? o->q_offset[b]
                                     : o->causal == ATTN_CAUSAL_TOP_LEFT ? 0
                                                                         : L - p->Nq;
                const float *qi = p->q + ((b * p->H + h) * p->Nq + i) * p->d;
                const double scale = isnan(o->scale) ? 1.0 / sqrt((double)p->d) : o->scale;
                for (int64_t j = 0; j < p->Nkv; j++) {
                    const int64_t dist = qoff + i - (o->k_offset + j);
                    const double mk =
                        p->mask ? p->mask[((b * p->H + h) * p->Nq + i) * p->Nkv + j] : 0.0;
                    bool vis = j < L && mk != -INFINITY;
                    if (o->causal != ATTN_CAUSAL_NONE && dist < 0) vis = false;
                    if (o->window_left >= 0 && dist > o->window_left) vis = false;
                    if (o->window_right >= 0 && -dist > o->window_right) vis = false;
                    if (!vis) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    const float *kj = p->k + ((b * p->Hkv + h / G) * p->Nkv + j) * p->d;
                    double dot = 0;
                    for (int64_t e = 0; e < p->d; e++)
                        dot += (double)qi[e] * kj[e];
                    double x = scale * dot;
                    if (o->softcap > 0) x = o->softcap * tanh(x / o->softcap);
                    if (o->alibi_slopes) x -= o->alibi_slopes[h] * fabs((double)dist);
                    s[j] = x + mk;
                }
                s[p->Nkv] = o->sinks ? o->sinks[h] : -INFINITY; /* the sink column */
                double m = -INFINITY, l = 0;
                for (int64_t j = 0; j <= p->Nkv; j++)
                    m = s[j] > m ? s[j] : m;
                double *orow = out + ((b * p->H + h) * p->Nq + i) * p->dv;
                for (int64_t f = 0; f < p->dv; f++)
                    orow[f] = 0;
                if (m == -INFINITY) {
                    lse[(b * p->H + h) * p->Nq + i] = -INFINITY;
                    continue;
                }
                for (int64_t j = 0; j <= p->Nkv; j++)
                    l += exp(s[j] - m);
                lse[(b * p->H + h) * p->Nq + i] = m + log(l);
                for (int64_t j = 0; j < p->Nkv; j++) { /* the sink column is dropped */
                    const double w = exp(s[j] - m) / l;
                    if (w == 0) continue;
                    const float *vj = p->v + ((b * p->Hkv + h / G) * p->Nkv + j) * p->dv;
                    for (int64_t f = 0; f < p->dv; f++)
                        orow[f] += w * vj[f];
                }
            }
    free(s);
}

/* Run attn_sdpa on p with algo and threads; out, lse are float arrays. */
static attn_status run(const prob *p, attn_algo algo, int threads, float *out, float *lse) {
    attn_view q = attn_view_4d(p->q, p->B, p->H, p->Nq, p->d);
    attn_view k = attn_view_4d(p->k, p->B, p->Hkv, p->Nkv, p->d);
    attn_view v = attn_view_4d(p->v, p->B, p->Hkv, p->Nkv, p->dv);
    attn_view ov = attn_view_4d(out, p->B, p->H, p->Nq, p->dv);
    attn_view lv = attn_view_3d(lse, p->B, p->H, p->Nq);
    attn_view mv = attn_view_4d(p->mask, p->B, p->H, p->Nq, p->Nkv);
    attn_opts o = p->o;
    o.algo = algo;
    o.num_threads = threads;
    o.lse = &lv;
    o.mask = p->mask ? &mv : NULL;
    return attn_sdpa(&q, &k, &v, &ov, &o);
}

static const attn_isa isas[] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
static const attn_algo algos[] = {ATTN_ALGO_REFERENCE, ATTN_ALGO_FLASH};
static double worst_out, worst_lse;

/* p on every ISA the CPU runs and both algorithms against the oracle. */
static void check_all(const prob *p, const char *what) {
    const int64_t no = p->B * p->H * p->Nq * p->dv, nl = p->B * p->H * p->Nq;
    double *ro = malloc((size_t)no * sizeof(double)), *rl = malloc((size_t)nl * sizeof(double));
    float *out = tu_zeros(no), *lse = tu_zeros(nl);
    oracle(p, ro, rl);
    for (size_t s = 0; s < sizeof isas / sizeof isas[0]; s++) {
        if (!attn_isa_supported(isas[s])) continue;
        attn_set_isa(isas[s]);
        for (size_t a = 0; a < 2; a++) {
            CHECK_OK(run(p, algos[a], 1 + (int)(s + a) % 3, out, lse));
            double eo = 0, el = 0;
            for (int64_t x = 0; x < no; x++)
                eo = fmax(eo, isnan(out[x]) ? INFINITY : fabs(out[x] - ro[x]));
            for (int64_t x = 0; x < nl; x++) {
                const double d = rl[x] == -INFINITY ? (lse[x] == -INFINITY ? 0 : INFINITY)
                                                    : fabs(lse[x] - rl[x]) / (1 + fabs(rl[x]));
                el = fmax(el, isnan(lse[x]) ? INFINITY : d);
            }
            worst_out = fmax(worst_out, eo);
            worst_lse = fmax(worst_lse, el);
            CHECK(eo <= 2e-5 && el <= 2e-5,
                  "%s: %s %s: out err %g, lse err %g (B=%lld H=%lld "
                  "Nq=%lld Nkv=%lld causal %d window %lld,%lld)",
                  what, attn_isa_name(isas[s]), a ? "flash" : "reference", eo, el, (long long)p->B,
                  (long long)p->H, (long long)p->Nq, (long long)p->Nkv, (int)p->o.causal,
                  (long long)p->o.window_left, (long long)p->o.window_right);
        }
    }
    attn_set_isa(ATTN_ISA_AUTO);
    free(ro), free(rl), free(out), free(lse);
}

/* Issue 13: left, right in {-1, 0, 1, W-1, W, W+1}; Nq in {1, 3}; Nkv in
 * {Nq, Nq + 5}; every causal value; with and without key lengths and
 * explicit offsets. */
static int quick(void) {
    return getenv("ATTN_TEST_QUICK") != NULL;
}

static void test_window_sweep(void) {
    const int64_t W = 3, vals[] = {-1, 0, 1, W - 1, W, W + 1};
    const size_t step = quick() ? 2 : 1; /* ATTN_TEST_QUICK: every other value */
    int cases = 0;
    for (int64_t nq = 1; nq <= 3; nq += 2)
        for (int extra = 0; extra <= 5; extra += 5)
            for (int c = 0; c < 3; c++)
                for (int variant = 0; variant < 3; variant++) {
                    prob p;
                    const int64_t Nkv = nq + extra;
                    prob_make(&p, 2, 2, 1, nq, Nkv, 4, 3);
                    int64_t kl[2] = {Nkv, Nkv > 2 ? Nkv - 2 : 1};
                    int64_t qo[2] = {2, -1};
                    p.o.causal = (attn_causal)c;
                    if (variant >= 1) p.o.key_lengths = kl;
                    if (variant == 2) p.o.q_offset = qo, p.o.k_offset = 1;
                    for (size_t a = 0; a < 6; a += step)
                        for (size_t b = 0; b < 6; b += step) {
                            p.o.window_left = vals[a];
                            p.o.window_right = vals[b];
                            check_all(&p, "window sweep");
                            cases++;
                        }
                    prob_free(&p);
                }
    printf("window sweep: %d cases\n", cases);
}

/* sliding_window = S is left = S - 1: a causal row at the diagonal sees S
 * keys (V = identity makes the output the weight row). */
static void test_sliding_window_count(void) {
    const int64_t N = 20, S = 5;
    prob p;
    prob_make(&p, 1, 1, 1, N, N, 4, N);
    for (int64_t j = 0; j < N; j++)
        for (int64_t f = 0; f < N; f++)
            p.v[j * N + f] = j == f ? 1.0f : 0.0f;
    p.o.causal = ATTN_CAUSAL_TOP_LEFT;
    p.o.window_left = S - 1;
    float *out = tu_zeros(N * N), *lse = tu_zeros(N);
    for (size_t a = 0; a < 2; a++) {
        CHECK_OK(run(&p, algos[a], 2, out, lse));
        for (int64_t i = 0; i < N; i++) {
            int64_t seen = 0, first = -1;
            for (int64_t j = 0; j < N; j++)
                if (out[i * N + j] > 0) seen++, first = first < 0 ? j : first;
            const int64_t want = i + 1 < S ? i + 1 : S;
            CHECK(seen == want && first == i + 1 - want, "row %lld sees %lld keys from %lld",
                  (long long)i, (long long)seen, (long long)first);
        }
    }
    check_all(&p, "sliding window");
    free(out), free(lse);
    prob_free(&p);
}

/* A window at least as wide as the keys is no window, bit for bit. */
static void test_wide_window(void) {
    prob p;
    prob_make(&p, 2, 2, 2, 7, 30, 8, 8);
    float *o1 = tu_zeros(2 * 2 * 7 * 8), *o2 = tu_zeros(2 * 2 * 7 * 8);
    float *l1 = tu_zeros(28), *l2 = tu_zeros(28);
    for (int c = 0; c < 3; c++)
        for (size_t a = 0; a < 2; a++) {
            p.o.causal = (attn_causal)c;
            p.o.window_left = p.o.window_right = -1;
            CHECK_OK(run(&p, algos[a], 2, o1, l1));
            p.o.window_left = 30, p.o.window_right = INT64_MAX;
            CHECK_OK(run(&p, algos[a], 2, o2, l2));
            CHECK(memcmp(o1, o2, 2 * 2 * 7 * 8 * sizeof(float)) == 0 &&
                      memcmp(l1, l2, 28 * sizeof(float)) == 0,
                  "window >= L changed the result (causal %d, %s)", c, a ? "flash" : "ref");
        }
    free(o1), free(o2), free(l1), free(l2);
    prob_free(&p);
}

/* Decode, Nq = 1, no causal rule, window W: the query sits at the newest key
 * and sees the W newest keys of its own length. */
static void test_decode_window(void) {
    const int64_t N = 40, W = 6;
    prob p;
    prob_make(&p, 2, 1, 1, 1, N, 4, N);
    for (int64_t b = 0; b < 2; b++)
        for (int64_t j = 0; j < N; j++)
            for (int64_t f = 0; f < N; f++)
                p.v[(b * N + j) * N + f] = j == f ? 1.0f : 0.0f;
    int64_t kl[2] = {N, 25};
    p.o.key_lengths = kl;
    p.o.window_left = W - 1;
    float *out = tu_zeros(2 * N), *lse = tu_zeros(2);
    for (size_t a = 0; a < 2; a++) {
        CHECK_OK(run(&p, algos[a], 3, out, lse));
        for (int64_t b = 0; b < 2; b++) {
            int64_t seen = 0, first = -1;
            for (int64_t j = 0; j < N; j++)
                if (out[b * N + j] > 0) seen++, first = first < 0 ? j : first;
            CHECK(seen == W && first == kl[b] - W, "decode batch %lld sees %lld keys from %lld",
                  (long long)b, (long long)seen, (long long)first);
        }
    }
    check_all(&p, "decode window");
    free(out), free(lse);
    prob_free(&p);
}

/* Softcap 1 with masked keys: the mask is added after the cap, so a key
 * with mask -1e4 keeps weight e^-1e4 = 0 (capping after the mask would give
 * it tanh(-1e4) = -1, a weight of order 1/Nkv). */
static void test_softcap_no_leak(void) {
    const int64_t N = 12;
    prob p;
    prob_make(&p, 1, 2, 1, 3, N, 8, 4);
    p.mask = tu_zeros(2 * 3 * N);
    for (int64_t x = 0; x < 2 * 3 * N; x++)
        p.mask[x] = x % 3 == 0 ? -1e4f : x % 3 == 1 ? -INFINITY : 0.0f;
    p.o.softcap = 1.0f;
    const int64_t no = 2 * 3 * 4;
    float *o1 = tu_zeros(no), *l1 = tu_zeros(6);
    float *o2 = tu_zeros(no), *l2 = tu_zeros(6);
    for (size_t a = 0; a < 2; a++) {
        CHECK_OK(run(&p, algos[a], 1, o1, l1));
        for (int64_t x = 0; x < 2 * 3 * N; x++) /* the same keys hidden outright */
            if (p.mask[x] != 0.0f) p.mask[x] = -INFINITY;
        CHECK_OK(run(&p, algos[a], 1, o2, l2));
        CHECK(tu_maxdiff(o1, o2, no) <= 1e-6, "softcap leaks masked keys: %g",
              tu_maxdiff(o1, o2, no));
        for (int64_t x = 0; x < 2 * 3 * N; x++)
            p.mask[x] = x % 3 == 0 ? -1e4f : x % 3 == 1 ? -INFINITY : 0.0f;
    }
    check_all(&p, "softcap with mask");
    p.o.softcap = 0.3f;
    check_all(&p, "softcap 0.3");
    free(o1), free(l1), free(o2), free(l2);
    prob_free(&p);
}

/* The ALiBi paper's rule, written recursively as in its code. */
static void paper_slopes(int64_t n, double *out) {
    double l = log2((double)n);
    if (l == floor(l)) {
        const double start = pow(2.0, -pow(2.0, -(l - 3)));
        for (int64_t i = 0; i < n; i++)
            out[i] = start * pow(start, (double)i);
        return;
    }
    const int64_t c = (int64_t)1 << (int64_t)floor(l);
    paper_slopes(c, out);
    double *twice = malloc((size_t)(2 * c) * sizeof(double));
    paper_slopes(2 * c, twice);
    for (int64_t t = 0; t < n - c; t++)
        out[c + t] = twice[2 * t];
    free(twice);
}

static void test_alibi(void) {
    double want[64];
    float got[64];
    for (int64_t H = 1; H <= 64; H++) {
        paper_slopes(H, want);
        CHECK_OK(attn_alibi_slopes(H, got));
        double err = 0;
        for (int64_t h = 0; h < H; h++)
            err = fmax(err, fabs(got[h] - want[h]) / want[h]);
        CHECK(err <= 6e-8, "attn_alibi_slopes(%lld): relative error %g", (long long)H, err);
    }
    CHECK_OK(attn_alibi_slopes(8, got));
    CHECK(got[0] == 0.5f && got[7] == 0.00390625f, "8 heads: %g .. %g", got[0], got[7]);
    CHECK_FAIL(attn_alibi_slopes(0, got), ATTN_ERR_ARG, "H=0");
    CHECK_FAIL(attn_alibi_slopes(4, NULL), ATTN_ERR_NULL, "out");

    /* Sign: with q = 0 every score is 0, so the weights fall with distance. */
    prob p;
    prob_make(&p, 1, 4, 2, 1, 9, 4, 9);
    memset(p.q, 0, 4 * 4 * sizeof(float));
    for (int64_t g = 0; g < 2; g++)
        for (int64_t j = 0; j < 9; j++)
            for (int64_t f = 0; f < 9; f++)
                p.v[(g * 9 + j) * 9 + f] = j == f ? 1.0f : 0.0f;
    float slopes[4];
    attn_alibi_slopes(4, slopes);
    p.o.alibi_slopes = slopes;
    float out[4 * 9], lse[4];
    for (size_t a = 0; a < 2; a++) {
        CHECK_OK(run(&p, algos[a], 1, out, lse));
        for (int64_t h = 0; h < 4; h++)
            for (int64_t j = 0; j + 1 < 9; j++)
                CHECK(out[h * 9 + j] < out[h * 9 + j + 1], "ALiBi sign: head %lld key %lld",
                      (long long)h, (long long)j);
    }
    check_all(&p, "alibi sign");
    prob_free(&p);

    /* Bottom-right alignment with Nq < Nkv, grouped heads, causal or not. */
    prob_make(&p, 2, 8, 2, 5, 23, 16, 8);
    float s8[8];
    attn_alibi_slopes(8, s8);
    p.o.alibi_slopes = s8;
    for (int c = 0; c < 3; c++) {
        p.o.causal = (attn_causal)c;
        check_all(&p, "alibi Nq < Nkv");
    }
    int64_t kl[2] = {23, 11};
    p.o.key_lengths = kl;
    check_all(&p, "alibi key lengths");
    prob_free(&p);
}

static void test_sinks(void) {
    prob p;
    prob_make(&p, 2, 4, 2, 3, 17, 8, 5);
    float sinks[4] = {-30.0f, 0.5f, 30.0f, -1.0f};
    p.o.sinks = sinks;
    for (int c = 0; c < 3; c++) {
        p.o.causal = (attn_causal)c;
        check_all(&p, "sinks");
    }
    /* A fully masked row with a sink: out 0, lse = sink. */
    int64_t kl[2] = {0, 17};
    p.o.key_lengths = kl;
    float out[2 * 4 * 3 * 5], lse[2 * 4 * 3];
    for (size_t a = 0; a < 2; a++) {
        CHECK_OK(run(&p, algos[a], 2, out, lse));
        for (int64_t h = 0; h < 4; h++)
            for (int64_t i = 0; i < 3; i++) {
                CHECK(lse[h * 3 + i] == sinks[h], "empty row with a sink: lse %g, want %g",
                      lse[h * 3 + i], sinks[h]);
                for (int64_t f = 0; f < 5; f++)
                    CHECK(out[(h * 3 + i) * 5 + f] == 0.0f, "empty row with a sink: out %g",
                          out[(h * 3 + i) * 5 + f]);
            }
    }
    check_all(&p, "sinks, empty rows");
    prob_free(&p);

    /* attn_merge: parts without sinks, the sink as one more part (out 0). */
    prob_make(&p, 1, 2, 1, 2, 20, 4, 3);
    float sk[2] = {1.5f, -2.0f};
    p.o.sinks = sk;
    float want_o[12], want_l[4];
    CHECK_OK(run(&p, ATTN_ALGO_REFERENCE, 1, want_o, want_l));
    p.o.sinks = NULL;
    float po[3][12], pl[3][4];
    attn_view pov[3], plv[3];
    for (int part = 0; part < 2; part++) { /* keys 0..9 and 10..19 */
        prob half = p;
        float *k = tu_zeros(10 * 4), *v = tu_zeros(10 * 3);
        memcpy(k, p.k + part * 10 * 4, 10 * 4 * sizeof(float));
        memcpy(v, p.v + part * 10 * 3, 10 * 3 * sizeof(float));
        half.k = k, half.v = v, half.Nkv = 10;
        CHECK_OK(run(&half, ATTN_ALGO_REFERENCE, 1, po[part], pl[part]));
        free(k), free(v);
    }
    for (int x = 0; x < 12; x++)
        po[2][x] = 0.0f;
    for (int x = 0; x < 4; x++)
        pl[2][x] = sk[x / 2];
    for (int part = 0; part < 3; part++) {
        pov[part] = attn_view_4d(po[part], 1, 2, 2, 3);
        plv[part] = attn_view_3d(pl[part], 1, 2, 2);
    }
    float mo[12], ml[4];
    attn_view mov = attn_view_4d(mo, 1, 2, 2, 3), mlv = attn_view_3d(ml, 1, 2, 2);
    CHECK_OK(attn_merge(pov, plv, 3, &mov, &mlv));
    CHECK(tu_maxdiff(mo, want_o, 12) <= 1e-6 && tu_maxdiff(ml, want_l, 4) <= 1e-6,
          "merge with the sink as a part: out %g, lse %g", tu_maxdiff(mo, want_o, 12),
          tu_maxdiff(ml, want_l, 4));
    prob_free(&p);
}

/* Everything at once, random shapes, explicit and default positions. */
static void test_all_at_once(void) {
    for (int t = 0; t < (quick() ? 10 : 40); t++) {
        prob p;
        const int64_t Hkv = tu_int(1, 2), H = Hkv * tu_int(1, 3), Nq = tu_int(1, 9);
        prob_make(&p, tu_int(1, 2), H, Hkv, Nq, tu_int(1, 40), tu_int(1, 9), tu_int(1, 6));
        float slopes[6], sinks[6];
        int64_t kl[2], qo[2];
        for (int64_t h = 0; h < H; h++)
            slopes[h] = tu_uniform(0.0f, 0.3f), sinks[h] = tu_uniform(-3.0f, 3.0f);
        for (int64_t b = 0; b < p.B; b++)
            kl[b] = tu_int(0, p.Nkv), qo[b] = tu_int(-5, p.Nkv + 5);
        p.o.causal = (attn_causal)tu_int(0, 2);
        p.o.window_left = tu_int(-1, 6);
        p.o.window_right = tu_int(-1, 6);
        p.o.softcap = tu_int(0, 1) ? tu_uniform(0.5f, 5.0f) : 0.0f;
        p.o.alibi_slopes = tu_int(0, 1) ? slopes : NULL;
        p.o.sinks = tu_int(0, 1) ? sinks : NULL;
        p.o.key_lengths = tu_int(0, 1) ? kl : NULL;
        if (tu_int(0, 1)) p.o.q_offset = qo, p.o.k_offset = tu_int(-3, 3);
        if (tu_int(0, 1)) {
            const int64_t n = p.B * p.H * p.Nq * p.Nkv;
            p.mask = tu_rand(n, -2, 2);
            for (int64_t x = 0; x < n; x++)
                if (tu_int(0, 4) == 0) p.mask[x] = -INFINITY;
        }
        check_all(&p, "all modifiers");
        prob_free(&p);
    }
}

/* Invalid values are errors naming the field; outputs stay untouched. */
static void test_validation(void) {
    prob p;
    prob_make(&p, 2, 2, 1, 3, 5, 4, 4);
    _Alignas(8) float out[2 * 2 * 3 * 4], lse[12];
    for (int x = 0; x < 48; x++)
        out[x] = 7.0f;
    p.o.window_left = -2;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_ARG, "opts.window_left=-2");
    p.o.window_left = -1, p.o.window_right = -5;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_ARG, "opts.window_right=-5");
    p.o.window_right = -1;
    const float bad_caps[] = {-1.0f, NAN, INFINITY};
    for (int x = 0; x < 3; x++) {
        p.o.softcap = bad_caps[x];
        CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_ARG, "opts.softcap=");
    }
    p.o.softcap = 0;
    float slopes[2] = {0.5f, NAN}, sinks[2] = {-INFINITY, 0};
    p.o.alibi_slopes = slopes;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_ARG, "opts.alibi_slopes[1]=nan");
    p.o.alibi_slopes = NULL, p.o.sinks = sinks;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_ARG, "opts.sinks[0]=-inf");
    p.o.sinks = NULL;
    int64_t qo[2] = {0, INT64_MAX - 1};
    p.o.q_offset = qo;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_ARG, "opts.q_offset[1]=");
    qo[1] = ((int64_t)1 << 61) - 1; /* the last query would be at 2^61 + 1 */
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_ARG, "opts.q_offset[1]=");
    qo[1] = ((int64_t)1 << 61) - 2; /* the last query at 2^61 */
    p.o.window_left = INT64_MAX;
    p.o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    p.o.k_offset = -((int64_t)1 << 61);
    CHECK_OK(run(&p, ATTN_ALGO_AUTO, 1, out, lse)); /* extreme but valid positions */
    p.o.q_offset = NULL, p.o.window_left = -1;
    p.o.k_offset = INT64_MIN;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_ARG, "opts.k_offset=");
    p.o.k_offset = 0;
    for (int x = 0; x < 48; x++)
        out[x] = 7.0f;
    /* Arrays the call reads must not overlap its outputs. */
    p.o.alibi_slopes = &out[3];
    out[3] = out[4] = 0.25f;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_STRIDE, "alibi_slopes");
    p.o.alibi_slopes = NULL;
    p.o.sinks = &lse[2];
    lse[2] = lse[3] = 0.0f;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_STRIDE, "sinks");
    p.o.sinks = NULL;
    int64_t *kl_in_out = (int64_t *)(void *)&out[8];
    kl_in_out[0] = kl_in_out[1] = 5;
    p.o.key_lengths = kl_in_out;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_STRIDE, "key_lengths");
    p.o.key_lengths = NULL;
    p.o.q_offset = (int64_t *)(void *)&out[12];
    kl_in_out[2] = kl_in_out[3] = 0;
    CHECK_FAIL(run(&p, ATTN_ALGO_AUTO, 1, out, lse), ATTN_ERR_STRIDE, "q_offset");
    prob_free(&p);
}

/* Modifiers that hold every determinism contract at once: a window that
 * spans several chunks, softcap, ALiBi, sinks and a mask. */
typedef struct big {
    prob p;
    float slopes[4], sinks[4];
    int64_t kl[2];
} big;

static void big_make(big *g, int64_t Nq, int64_t Nkv, int with_mask) {
    prob_make(&g->p, 2, 4, 2, Nq, Nkv, 24, 20);
    attn_alibi_slopes(4, g->slopes);
    for (int h = 0; h < 4; h++)
        g->slopes[h] *= 0.01f, g->sinks[h] = (float)h - 1.5f;
    g->kl[0] = Nkv, g->kl[1] = Nkv - Nkv / 3;
    attn_opts *o = &g->p.o;
    o->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    o->window_left = 700;
    o->softcap = 20.0f;
    o->alibi_slopes = g->slopes;
    o->sinks = g->sinks;
    o->key_lengths = g->kl;
    if (with_mask) {
        const int64_t n = 2 * 4 * Nq * Nkv;
        g->p.mask = tu_rand(n, -1, 1);
        for (int64_t x = 0; x < n; x += 7)
            g->p.mask[x] = -INFINITY;
    }
}

/* Threads 1, 2, 3 give the same bits, prefill (Nq = 130) and decode (Nq =
 * 1, where 2 and 3 threads split the keys in chunks: the sinks must not be
 * counted per chunk). */
static void test_threads_bits(void) {
    const int64_t nqs[2] = {130, 1};
    for (int t = 0; t < 2; t++)
        for (int mk = 0; mk < 2; mk++) {
            big g;
            big_make(&g, nqs[t], 1700, mk);
            const int64_t no = 2 * 4 * nqs[t] * 20, nl = 2 * 4 * nqs[t];
            float *o1 = tu_zeros(no), *l1 = tu_zeros(nl), *o2 = tu_zeros(no), *l2 = tu_zeros(nl);
            for (size_t s = 0; s < 3; s++) {
                if (!attn_isa_supported(isas[s])) continue;
                attn_set_isa(isas[s]);
                CHECK_OK(run(&g.p, ATTN_ALGO_FLASH, 1, o1, l1));
                for (int th = 2; th <= 3; th++) {
                    CHECK_OK(run(&g.p, ATTN_ALGO_FLASH, th, o2, l2));
                    CHECK(memcmp(o1, o2, (size_t)no * 4) == 0 &&
                              memcmp(l1, l2, (size_t)nl * 4) == 0,
                          "%s Nq=%lld mask %d: 1 vs %d threads differ", attn_isa_name(isas[s]),
                          (long long)nqs[t], mk, th);
                }
            }
            attn_set_isa(ATTN_ISA_AUTO);
            check_all(&g.p, t ? "decode, all modifiers" : "prefill, all modifiers");
            free(o1), free(l1), free(o2), free(l2);
            prob_free(&g.p);
        }
}

/* A row alone (B = H = Nq = 1, its own slope, sink, mask row and explicit
 * position; so also decode against prefill) equals the row in the batch. */
static void test_alone_vs_batch(void) {
    big g;
    const int64_t Nq = 70, Nkv = 1300;
    big_make(&g, Nq, Nkv, 1);
    const int64_t no = 2 * 4 * Nq * 20, nl = 2 * 4 * Nq;
    float *out = tu_zeros(no), *lse = tu_zeros(nl), o1[20], l1[1];
    for (size_t s = 0; s < 3; s++) {
        if (!attn_isa_supported(isas[s])) continue;
        attn_set_isa(isas[s]);
        CHECK_OK(run(&g.p, ATTN_ALGO_FLASH, 2, out, lse));
        int same = 1, rows = 0;
        for (int64_t b = 0; b < 2; b++)
            for (int64_t h = 0; h < 4; h++)
                for (int64_t i = 0; i < Nq; i += 9) {
                    prob a = g.p;
                    a.B = a.H = a.Hkv = a.Nq = 1;
                    a.q = g.p.q + ((b * 4 + h) * Nq + i) * 24;
                    a.k = g.p.k + (b * 2 + h / 2) * Nkv * 24;
                    a.v = g.p.v + (b * 2 + h / 2) * Nkv * 20;
                    a.mask = g.p.mask + ((b * 4 + h) * Nq + i) * Nkv;
                    int64_t qo = g.kl[b] - Nq + i; /* the bottom-right position in the batch */
                    a.o.q_offset = &qo;
                    a.o.key_lengths = &g.kl[b];
                    a.o.alibi_slopes = &g.slopes[h];
                    a.o.sinks = &g.sinks[h];
                    for (int th = 1; th <= 3; th += 2) {
                        CHECK_OK(run(&a, ATTN_ALGO_FLASH, th, o1, l1));
                        same &= memcmp(o1, out + ((b * 4 + h) * Nq + i) * 20, sizeof o1) == 0 &&
                                memcmp(l1, lse + (b * 4 + h) * Nq + i, sizeof l1) == 0;
                    }
                    rows++;
                }
        CHECK(same, "%s: a row alone differs from the row in a batch (%d rows)",
              attn_isa_name(isas[s]), rows);
    }
    attn_set_isa(ATTN_ISA_AUTO);
    free(out), free(lse);
    prob_free(&g.p);
}

int main(void) {
    test_validation();
    test_alibi();
    test_window_sweep();
    test_sliding_window_count();
    test_wide_window();
    test_decode_window();
    test_softcap_no_leak();
    test_sinks();
    test_all_at_once();
    test_threads_bits();
    test_alone_vs_batch();
    printf("largest differences: out %.3g, lse %.3g (relative)\n", worst_out, worst_lse);
    return tu_summary("test_modifiers");
}
