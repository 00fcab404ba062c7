/* test_extremes.c - issue 9's reproducers for the core, each a check on every
 * path (reference, flash prefill, flash decode split) and ISA:
 *
 *   overflow       a visible key whose float32 dot product or scaled score
 *                  is beyond FLT_MAX makes its row NaN (out and lse), never a
 *                  number from the double reference, never an "empty row"
 *                  (zeros, lse -inf) from the fast path; the same key hidden
 *                  changes nothing (item 1)
 *   huge masks     a finite mask of -1e20, -1e38, -FLT_MAX on every key, or
 *                  FLT_MAX on even keys, leaves the softmax of the scores
 *                  exact on every path, weights output included (item 2)
 *   overlap        key_lengths (and the other arrays the call reads) must not
 *                  overlap out, lse or weights (item 3)
 *   split_qkv      the last stride of qkv must be 1, as documented (item 13)
 *   padding        a row's bits do not depend on Nkv beyond its visible keys:
 *                  K/V sliced to L keys equals K/V of Nkv > L keys with
 *                  key_lengths = L (and garbage, NaN included, beyond L),
 *                  every path, ISA, causal rule and thread count (item 14) */
#include "testutil.h"

#include <float.h>
#include <stdbool.h>

static const attn_isa isas[] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
static const attn_algo algos[] = {ATTN_ALGO_REFERENCE, ATTN_ALGO_FLASH};

/* One small call: q (1,1,Nq,d), k (1,1,Nkv,d), v (1,1,Nkv,dv). */
typedef struct small {
    int64_t Nq, Nkv, d, dv;
    float *q, *k, *v, *mask; /* mask (1,1,Nq,Nkv) or NULL */
    float scale;
    int64_t *kl;
    attn_causal causal;
} small;

static attn_status small_run(const small *c, attn_algo algo, int threads, float *out, float *lse,
                             float *weights) {
    attn_view q = attn_view_4d(c->q, 1, 1, c->Nq, c->d), k = attn_view_4d(c->k, 1, 1, c->Nkv, c->d);
    attn_view v = attn_view_4d(c->v, 1, 1, c->Nkv, c->dv);
    attn_view o = attn_view_4d(out, 1, 1, c->Nq, c->dv), l = attn_view_3d(lse, 1, 1, c->Nq);
    attn_view m = attn_view_4d(c->mask, 1, 1, c->Nq, c->Nkv);
    attn_view w = attn_view_4d(weights, 1, 1, c->Nq, c->Nkv);
    attn_opts op = attn_opts_default();
    op.scale = c->scale;
    op.algo = algo;
    op.num_threads = threads;
    op.lse = &l;
    op.mask = c->mask ? &m : NULL;
    op.weights = weights ? &w : NULL;
    op.key_lengths = c->kl;
    op.causal = c->causal;
    return attn_sdpa(&q, &k, &v, &o, &op);
}

/* Each row of c must be NaN (every output value and lse) on every path. */
static void expect_nan(const small *c, const char *what) {
    float out[8], lse[2];
    for (size_t s = 0; s < 3; s++) {
        if (!attn_isa_supported(isas[s])) continue;
        attn_set_isa(isas[s]);
        for (size_t a = 0; a < 2; a++)
            for (int th = 1; th <= 3; th += 2) {
                CHECK_OK(small_run(c, algos[a], th, out, lse, NULL));
                bool nan = true;
                for (int64_t x = 0; x < c->Nq * c->dv; x++)
                    nan &= isnan(out[x]) != 0;
                for (int64_t x = 0; x < c->Nq; x++)
                    nan &= isnan(lse[x]) != 0;
                CHECK(nan, "%s: %s %s %d threads: out %g lse %g, want NaN", what,
                      attn_isa_name(isas[s]), a ? "flash" : "reference", th, out[0], lse[0]);
            }
    }
    attn_set_isa(ATTN_ISA_AUTO);
}

static void test_overflow(void) {
    float q[4] = {1e20f}, k[4] = {1e20f, 1e19f}, v[4] = {1, 2}, mask[2] = {0, 0};
    small c = {1, 2, 1, 1, q, k, v, NULL, NAN, NULL, ATTN_CAUSAL_NONE};
    expect_nan(&c, "q=1e20, k=(1e20, 1e19)"); /* scores 1e40, 1e39: +inf in float */
    k[0] = -1e20f, k[1] = -1e19f;
    expect_nan(&c, "q=1e20, k=(-1e20, -1e19)"); /* -inf scores: not an empty row */
    k[0] = 1e20f, k[1] = 0.5f;                  /* one key overflows, the other is fine */
    expect_nan(&c, "one overflowing key among finite ones");

    /* d = 2, q = k = 2e19: each product 4e38 is finite, their sum is not. */
    float q2[2] = {2e19f, 2e19f}, k2[2] = {2e19f, 2e19f}, v2[1] = {1};
    small c2 = {1, 1, 2, 1, q2, k2, v2, NULL, 1.0f, NULL, ATTN_CAUSAL_NONE};
    expect_nan(&c2, "d=2, q=k=2e19");

    /* scale +-1e30 on scores near 1e9 */
    float q3[1] = {3e4f}, k3[2] = {3e4f, 2e4f}, v3[2] = {1, 2};
    small c3 = {1, 2, 1, 1, q3, k3, v3, NULL, 1e30f, NULL, ATTN_CAUSAL_NONE};
    expect_nan(&c3, "scale=1e30");
    c3.scale = -1e30f;
    expect_nan(&c3, "scale=-1e30");

    /* The overflowing key hidden (mask -inf, or key length): the row is the
     * softmax of the other key alone, out = v exactly. */
    float out[2], lse[2];
    k[0] = 1e20f, k[1] = 1e-20f;
    c.mask = mask;
    mask[0] = -INFINITY;
    float kk[2] = {1e-20f, 1e20f}, vv[2] = {2, 1};
    int64_t kl1 = 1;
    small h = {1, 2, 1, 1, q, kk, vv, NULL, NAN, &kl1, ATTN_CAUSAL_NONE};
    for (size_t a = 0; a < 2; a++) {
        CHECK_OK(small_run(&c, algos[a], 1, out, lse, NULL));
        CHECK(out[0] == 2.0f && isfinite(lse[0]), "overflowing key hidden by mask: out %g", out[0]);
        CHECK_OK(small_run(&h, algos[a], 1, out, lse, NULL));
        CHECK(out[0] == 2.0f, "overflowing key hidden by key length: out %g", out[0]);
    }
}

/* Issue 9 item 2: q = 1, k = (2, 0), v = (1, 0), scale 1, every key masked
 * by the same huge finite value: out = e^2 / (e^2 + 1) = 0.8808. */
static void test_huge_masks(void) {
    const float big[] = {-1e20f, -1e38f, -FLT_MAX, 1e20f, FLT_MAX};
    const double want = exp(2.0) / (exp(2.0) + 1.0);
    float q[1] = {1}, k[2] = {2, 0}, v[2] = {1, 0}, mask[2], out[1], lse[1], w[2];
    small c = {1, 2, 1, 1, q, k, v, mask, 1.0f, NULL, ATTN_CAUSAL_NONE};
    for (size_t b = 0; b < sizeof big / sizeof big[0]; b++) {
        mask[0] = mask[1] = big[b];
        for (size_t s = 0; s < 3; s++) {
            if (!attn_isa_supported(isas[s])) continue;
            attn_set_isa(isas[s]);
            for (size_t a = 0; a < 2; a++) {
                CHECK_OK(small_run(&c, algos[a], 1, out, lse, NULL));
                CHECK(fabs(out[0] - want) < 1e-6,
                      "mask %g on every key, %s %s: out %.7g, want %.7g", big[b],
                      attn_isa_name(isas[s]), a ? "flash" : "reference", out[0], want);
                const double wl = (double)big[b] + 2.0 + log1p(exp(-2.0));
                CHECK(fabs(lse[0] - wl) <= 1e-6 * fabs(wl), "mask %g: lse %.9g, want %.9g", big[b],
                      lse[0], wl);
            }
        }
        attn_set_isa(ATTN_ISA_AUTO);
        CHECK_OK(small_run(&c, ATTN_ALGO_REFERENCE, 1, out, lse, w)); /* weights: the reference */
        CHECK(fabs(w[0] - want) < 1e-6 && fabs(w[1] - (1 - want)) < 1e-6,
              "mask %g: weights (%g, %g)", big[b], w[0], w[1]);
    }
    /* FLT_MAX on even keys, 0 on odd: the even keys take all the weight. */
    enum { N = 6 };
    float q6[1] = {1}, k6[N], v6[N], m6[N], o6[1], l6[1], w6[N];
    for (int j = 0; j < N; j++)
        k6[j] = (float)j * 0.5f, v6[j] = (float)j, m6[j] = j % 2 ? 0.0f : FLT_MAX;
    const double e0 = exp(0.0), e2 = exp(1.0), e4 = exp(2.0); /* scores 0, 1, 2 of keys 0, 2, 4 */
    const double want6 = (0 * e0 + 2 * e2 + 4 * e4) / (e0 + e2 + e4);
    small c6 = {1, N, 1, 1, q6, k6, v6, m6, 1.0f, NULL, ATTN_CAUSAL_NONE};
    for (size_t a = 0; a < 2; a++) {
        CHECK_OK(small_run(&c6, algos[a], 1, o6, l6, NULL));
        CHECK(fabs(o6[0] - want6) < 1e-5, "FLT_MAX on even keys, %s: out %.7g, want %.7g",
              a ? "flash" : "reference", o6[0], want6);
        CHECK(l6[0] == FLT_MAX, "FLT_MAX on even keys: lse %g", l6[0]);
    }
    CHECK_OK(small_run(&c6, ATTN_ALGO_REFERENCE, 1, o6, l6, w6));
    CHECK(w6[1] == 0.0f && w6[3] == 0.0f && fabs(w6[4] - e4 / (e0 + e2 + e4)) < 1e-6,
          "FLT_MAX on even keys: weights %g %g %g", w6[1], w6[3], w6[4]);
}

/* Issue 9 item 3: key_lengths inside out (batch 1 would see keys it should
 * not once batch 0 is written). Refused before anything is written. */
static void test_overlap(void) {
    enum { B = 2, N = 4, D = 2 };
    _Alignas(8) float out[B * N * D];
    float *q = tu_rand(B * N * D, -1, 1), *k = tu_rand(B * N * D, -1, 1);
    attn_view qv = attn_view_4d(q, B, 1, N, D), kv = attn_view_4d(k, B, 1, N, D);
    attn_view ov = attn_view_4d(out, B, 1, N, D);
    int64_t *kl = (int64_t *)(void *)&out[B * N * D - 4]; /* the last 16 bytes of out */
    kl[0] = 1, kl[1] = 2;
    attn_opts o = attn_opts_default();
    o.key_lengths = kl;
    CHECK_FAIL(attn_sdpa(&qv, &kv, &kv, &ov, &o), ATTN_ERR_STRIDE,
               "output out overlaps input key_lengths");
    CHECK(kl[0] == 1 && kl[1] == 2, "a refused call wrote out");
    float lse[B * N + 4];
    attn_view lv = attn_view_3d(lse, B, 1, N);
    int64_t kl2[B] = {1, 2};
    o.key_lengths = kl2;
    o.lse = &lv;
    CHECK_OK(attn_sdpa(&qv, &kv, &kv, &ov, &o));
    free(q), free(k);
}

static void test_split_qkv_stride(void) {
    float buf[2 * 3 * 12];
    attn_view qkv = attn_view_3d(buf, 1, 3, 6), q, k, v;
    qkv.stride[1] = 12, qkv.stride[2] = 2; /* every other element */
    CHECK_FAIL(attn_split_qkv(&qkv, 1, &q, &k, &v), ATTN_ERR_STRIDE, "qkv.stride[2]=2");
    qkv.stride[2] = 1;
    CHECK_OK(attn_split_qkv(&qkv, 1, &q, &k, &v));
}

/* Item 14: K/V padded with keys beyond the key length (garbage, NaN) equals
 * K/V sliced to exactly those keys, bit for bit. */
static void test_padding(void) {
    const int64_t Ls[] = {1, 7, 64, 65, 600, 1100}, pads[] = {1, 13, 512};
    const int64_t Nqs[] = {1, 5, 70};
    int cases = 0;
    const int q = getenv("ATTN_TEST_QUICK") != NULL; /* every other size */
    for (size_t li = 0; li < 6; li += 1 + q)
        for (size_t pi = 0; pi < 3; pi += 1 + q)
            for (size_t qi = 0; qi < 3; qi += 1 + q) {
                const int64_t L = Ls[li], Np = L + pads[pi], Nq = Nqs[qi], H = 2, d = 8, dv = 5;
                if (L > 600 && Nq > 5) continue;
                float *q = tu_rand(H * Nq * d, -1, 1);
                float *kp = tu_rand(H * Np * d, -1, 1), *vp = tu_rand(H * Np * dv, -1, 1);
                float *mp = tu_rand(H * Nq * Np, -1, 1);
                float *ks = tu_zeros(H * L * d), *vs = tu_zeros(H * L * dv),
                      *ms = tu_zeros(H * Nq * L);
                for (int64_t h = 0; h < H; h++) {
                    for (int64_t j = L; j < Np; j++) { /* garbage beyond L */
                        kp[(h * Np + j) * d] = j % 2 ? NAN : 1e30f;
                        vp[(h * Np + j) * dv] = INFINITY;
                    }
                    memcpy(ks + h * L * d, kp + h * Np * d, (size_t)(L * d) * 4);
                    memcpy(vs + h * L * dv, vp + h * Np * dv, (size_t)(L * dv) * 4);
                    for (int64_t i = 0; i < Nq; i++)
                        memcpy(ms + (h * Nq + i) * L, mp + (h * Nq + i) * Np, (size_t)L * 4);
                }
                attn_view qv = attn_view_4d(q, 1, H, Nq, d);
                attn_view kpv = attn_view_4d(kp, 1, 1, Np, d), vpv = attn_view_4d(vp, 1, 1, Np, dv);
                attn_view ksv = attn_view_4d(ks, 1, 1, L, d), vsv = attn_view_4d(vs, 1, 1, L, dv);
                /* H = 2 query heads over one kv head: the view's head stride skips the second
                 * kv head's data, which is never read (grouped-query) */
                attn_view mpv = attn_view_4d(mp, 1, H, Nq, Np), msv = attn_view_4d(ms, 1, H, Nq, L);
                float *o1 = tu_zeros(H * Nq * dv), *o2 = tu_zeros(H * Nq * dv);
                float *l1 = tu_zeros(H * Nq), *l2 = tu_zeros(H * Nq);
                attn_view o1v = attn_view_4d(o1, 1, H, Nq, dv),
                          o2v = attn_view_4d(o2, 1, H, Nq, dv);
                attn_view l1v = attn_view_3d(l1, 1, H, Nq), l2v = attn_view_3d(l2, 1, H, Nq);
                for (size_t s = 0; s < 3; s++) {
                    if (!attn_isa_supported(isas[s])) continue;
                    attn_set_isa(isas[s]);
                    for (size_t a = 0; a < 2; a++)
                        for (int c = 0; c < 3; c++)
                            for (int mk = 0; mk < 2; mk++) {
                                attn_opts o = attn_opts_default();
                                o.algo = algos[a];
                                o.causal = (attn_causal)c;
                                o.num_threads = 1 + (int)((s + a + c) % 3);
                                o.mask = mk ? &msv : NULL;
                                o.lse = &l1v;
                                CHECK_OK(attn_sdpa(&qv, &ksv, &vsv, &o1v, &o));
                                int64_t kl = L;
                                o.key_lengths = &kl;
                                o.mask = mk ? &mpv : NULL;
                                o.lse = &l2v;
                                CHECK_OK(attn_sdpa(&qv, &kpv, &vpv, &o2v, &o));
                                const bool same = memcmp(o1, o2, (size_t)(H * Nq * dv) * 4) == 0 &&
                                                  memcmp(l1, l2, (size_t)(H * Nq) * 4) == 0;
                                CHECK(same,
                                      "%s %s causal %d mask %d: L=%lld sliced vs padded to %lld "
                                      "(Nq=%lld) differ",
                                      attn_isa_name(isas[s]), a ? "flash" : "reference", c, mk,
                                      (long long)L, (long long)Np, (long long)Nq);
                                cases++;
                            }
                }
                attn_set_isa(ATTN_ISA_AUTO);
                free(q), free(kp), free(vp), free(mp), free(ks), free(vs), free(ms);
                free(o1), free(o2), free(l1), free(l2);
            }
    printf("padding: %d cases\n", cases);
}

int main(void) {
    test_overflow();
    test_huge_masks();
    test_overlap();
    test_split_qkv_stride();
    test_padding();
    return tu_summary("test_extremes");
}
