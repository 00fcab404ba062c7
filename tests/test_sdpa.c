/* test_sdpa.c - attn_sdpa's contract: hand-worked cases, properties that need
 * no reference, an independent oracle written here from the formulas, and
 * every error path. */
#include "testutil.h"

/* ---- an oracle written from design.md, contiguous arrays, double ---------- */

typedef struct {
    int64_t B, H, Hkv, Nq, Nkv, d, dv;
    double scale;
    attn_causal causal;
    const float *mask; /* full (B, H, Nq, Nkv) or NULL */
    const int64_t *key_lengths;
} spec;

static int visible(const spec *c, int64_t b, int64_t h, int64_t i, int64_t j) {
    int64_t L = c->key_lengths ? c->key_lengths[b] : c->Nkv;
    if (j >= L) return 0;
    if (c->causal == ATTN_CAUSAL_TOP_LEFT && j > i) return 0;
    if (c->causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + L - c->Nq) return 0;
    if (c->mask && c->mask[((b * c->H + h) * c->Nq + i) * c->Nkv + j] == -INFINITY) return 0;
    return 1;
}

static void oracle(const spec *c, const float *q, const float *k, const float *v, float *out,
                   float *lse) {
    double *w = malloc((size_t)c->Nkv * sizeof(double));
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t i = 0; i < c->Nq; i++) {
                int64_t g = h / (c->H / c->Hkv);
                const float *qi = q + ((b * c->H + h) * c->Nq + i) * c->d;
                double m = -INFINITY;
                for (int64_t j = 0; j < c->Nkv; j++) {
                    if (!visible(c, b, h, i, j)) continue;
                    const float *kj = k + ((b * c->Hkv + g) * c->Nkv + j) * c->d;
                    double s = 0;
                    for (int64_t e = 0; e < c->d; e++)
                        s += (double)qi[e] * kj[e];
                    s *= c->scale;
                    if (c->mask) s += c->mask[((b * c->H + h) * c->Nq + i) * c->Nkv + j];
                    w[j] = s;
                    if (s > m) m = s;
                }
                double l = 0;
                for (int64_t j = 0; j < c->Nkv; j++)
                    if (visible(c, b, h, i, j)) l += exp(w[j] - m);
                float *o = out + ((b * c->H + h) * c->Nq + i) * c->dv;
                for (int64_t f = 0; f < c->dv; f++) {
                    double acc = 0;
                    for (int64_t j = 0; j < c->Nkv; j++)
                        if (visible(c, b, h, i, j))
                            acc +=
                                exp(w[j] - m) / l * v[((b * c->Hkv + g) * c->Nkv + j) * c->dv + f];
                    o[f] = m == -INFINITY ? 0.0f : (float)acc;
                }
                if (lse)
                    lse[(b * c->H + h) * c->Nq + i] =
                        m == -INFINITY ? -INFINITY : (float)(m + log(l));
            }
    free(w);
}

/* Run attn_sdpa on contiguous arrays described by c. */
static attn_status run(const spec *c, const float *q, const float *k, const float *v, float *out,
                       float *lse, attn_opts o) {
    attn_view qv = attn_view_4d((float *)q, c->B, c->H, c->Nq, c->d);
    attn_view kv = attn_view_4d((float *)k, c->B, c->Hkv, c->Nkv, c->d);
    attn_view vv = attn_view_4d((float *)v, c->B, c->Hkv, c->Nkv, c->dv);
    attn_view ov = attn_view_4d(out, c->B, c->H, c->Nq, c->dv);
    attn_view lv = attn_view_3d(lse, c->B, c->H, c->Nq);
    attn_view mv = attn_view_4d((float *)c->mask, c->B, c->H, c->Nq, c->Nkv);
    o.scale = (float)c->scale;
    o.causal = c->causal;
    o.key_lengths = c->key_lengths;
    if (c->mask) o.mask = &mv;
    if (lse) o.lse = &lv;
    return attn_sdpa(&qv, &kv, &vv, &ov, &o);
}

/* ---- hand-worked cases --------------------------------------------------- */

static void test_hand_worked(void) {
    /* Two tokens, d = dv = 1, scale 1: q = k = (1, 0), v = (1, 3).
     * Row 0: scores (1, 0), weights (e/(e+1), 1/(e+1)) = (0.7310586, 0.2689414)
     *        out = 0.7310586 + 3 * 0.2689414 = 1.5378828, lse = log(e + 1) = 1.3132617
     * Row 1: scores (0, 0), weights (0.5, 0.5), out = 2, lse = log 2 = 0.6931472
     * Causal (top-left): row 0 sees key 0 only: out = 1, lse = 1. */
    float q[2] = {1, 0}, k[2] = {1, 0}, v[2] = {1, 3}, out[2], lse[2];
    spec c = {1, 1, 1, 2, 2, 1, 1, 1.0, ATTN_CAUSAL_NONE, NULL, NULL};
    CHECK_OK(run(&c, q, k, v, out, lse, attn_opts_default()));
    CHECK(fabsf(out[0] - 1.5378828f) < 1e-6f && fabsf(out[1] - 2.0f) < 1e-6f, "out %g %g", out[0],
          out[1]);
    CHECK(fabsf(lse[0] - 1.3132617f) < 1e-6f && fabsf(lse[1] - 0.6931472f) < 1e-6f, "lse %g %g",
          lse[0], lse[1]);
    c.causal = ATTN_CAUSAL_TOP_LEFT;
    CHECK_OK(run(&c, q, k, v, out, lse, attn_opts_default()));
    CHECK(out[0] == 1.0f && lse[0] == 1.0f && fabsf(out[1] - 2.0f) < 1e-6f, "causal %g %g %g",
          out[0], lse[0], out[1]);

    /* Default scale is 1/sqrt(d): d = 4, q = k0 = (1,1,1,1), k1 = 0, so the
     * scores are (4/2, 0) = (2, 0); v = (0, 1): out = 1/(e^2+1) = 0.1192029. */
    float q4[4] = {1, 1, 1, 1}, k4[8] = {1, 1, 1, 1, 0, 0, 0, 0}, v2[2] = {0, 1};
    attn_view qv = attn_view_4d(q4, 1, 1, 1, 4), kv = attn_view_4d(k4, 1, 1, 2, 4);
    attn_view vv = attn_view_4d(v2, 1, 1, 2, 1), ov = attn_view_4d(out, 1, 1, 1, 1);
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, NULL));
    CHECK(fabsf(out[0] - 0.1192029f) < 1e-6f, "default scale: out %g", out[0]);

    /* A finite mask (-1e9) keeps a key visible: on every key it is a shift
     * the softmax ignores, so the row equals the unmasked one; -inf on every
     * key instead hides the row: zeros and lse -inf. */
    float mask[4] = {-1e9f, -1e9f, -1e9f, -1e9f}, plain[2];
    c.causal = ATTN_CAUSAL_NONE;
    CHECK_OK(run(&c, q, k, v, plain, NULL, attn_opts_default()));
    c.mask = mask;
    CHECK_OK(run(&c, q, k, v, out, lse, attn_opts_default()));
    CHECK(fabsf(out[0] - plain[0]) < 1e-6f && fabsf(out[1] - plain[1]) < 1e-6f,
          "finite mask changed the row: %g vs %g", out[0], plain[0]);
    for (int i = 0; i < 4; i++)
        mask[i] = -INFINITY;
    CHECK_OK(run(&c, q, k, v, out, lse, attn_opts_default()));
    CHECK(out[0] == 0.0f && out[1] == 0.0f && lse[0] == -INFINITY && lse[1] == -INFINITY,
          "fully masked: out %g lse %g", out[0], lse[0]);
    /* -1e9 on key 0 only: key 1 takes all the weight, but key 0 is still seen. */
    mask[0] = -1e9f, mask[1] = 0, mask[2] = 0, mask[3] = 0;
    CHECK_OK(run(&c, q, k, v, out, lse, attn_opts_default()));
    CHECK(out[0] == 3.0f && fabsf(lse[0] - (float)log(exp(0) + exp(1 - 1e9))) < 1e-6f,
          "-1e9 on key 0: out %g", out[0]);
}

/* ---- the oracle on random configurations --------------------------------- */

static void test_random_against_oracle(void) {
    static const int64_t sizes[] = {1, 2, 3, 5, 7, 13, 17, 31, 64};
    static const int64_t heads[] = {1, 2, 3, 4, 6};
    int cases = getenv("ATTN_TEST_QUICK") ? 60 : 200;
    for (int t = 0; t < cases; t++) {
        spec c = {0};
        c.B = tu_int(1, 3);
        c.Hkv = heads[tu_int(0, 2)];
        c.H = c.Hkv * heads[tu_int(0, 2)];
        c.Nq = sizes[tu_int(0, 8)];
        c.Nkv = tu_int(0, 3) == 0 ? c.Nq : sizes[tu_int(0, 8)];
        c.d = sizes[tu_int(0, 8)];
        c.dv = tu_int(0, 1) ? c.d : sizes[tu_int(0, 8)];
        c.scale = 1.0 / sqrt((double)c.d);
        c.causal = (attn_causal)tu_int(0, 2);
        int64_t kl[3];
        if (tu_int(0, 2) == 0) {
            for (int b = 0; b < 3; b++)
                kl[b] = tu_int(0, c.Nkv);
            c.key_lengths = kl;
        }
        int64_t nm = c.B * c.H * c.Nq * c.Nkv;
        float *mask = NULL;
        if (tu_int(0, 2) == 0) {
            mask = tu_rand(nm, -2, 2);
            for (int64_t x = 0; x < nm; x++)
                if (tu_int(0, 4) == 0) mask[x] = -INFINITY;
            c.mask = mask;
        }
        float *q = tu_rand(c.B * c.H * c.Nq * c.d, -2, 2);
        float *k = tu_rand(c.B * c.Hkv * c.Nkv * c.d, -2, 2);
        float *v = tu_rand(c.B * c.Hkv * c.Nkv * c.dv, -2, 2);
        int64_t no = c.B * c.H * c.Nq * c.dv, nl = c.B * c.H * c.Nq;
        float *o1 = tu_zeros(no), *o2 = tu_zeros(no), *l1 = tu_zeros(nl), *l2 = tu_zeros(nl);
        oracle(&c, q, k, v, o1, l1);
        attn_opts o = attn_opts_default();
        o.algo = ATTN_ALGO_REFERENCE;
        o.num_threads = (int)tu_int(1, 3);
        CHECK_OK(run(&c, q, k, v, o2, l2, o));
        /* Both sum in double; float rounding of the stored results only. */
        double dout = tu_maxdiff(o1, o2, no), dl = tu_maxdiff(l1, l2, nl);
        CHECK(dout < 2e-6 && dl < 2e-6,
              "case %d B=%lld H=%lld Hkv=%lld Nq=%lld Nkv=%lld d=%lld dv=%lld causal=%d: out %g "
              "lse %g",
              t, (long long)c.B, (long long)c.H, (long long)c.Hkv, (long long)c.Nq,
              (long long)c.Nkv, (long long)c.d, (long long)c.dv, c.causal, dout, dl);
        free(q), free(k), free(v), free(o1), free(o2), free(l1), free(l2), free(mask);
    }
}

/* ---- properties ------------------------------------------------------------ */

/* Permuting the queries permutes the output rows; permuting keys together
 * with their values leaves the output unchanged. */
static void test_permutation(void) {
    enum { N = 11, D = 8 };
    float *q = tu_rand(N * D, -1, 1), *k = tu_rand(N * D, -1, 1), *v = tu_rand(N * D, -1, 1);
    float qp[N * D], kp[N * D], vp[N * D], o1[N * D], o2[N * D];
    int perm[N];
    for (int i = 0; i < N; i++)
        perm[i] = (i * 7 + 3) % N; /* 7 is coprime to 11 */
    for (int i = 0; i < N; i++)
        for (int e = 0; e < D; e++) {
            qp[i * D + e] = q[perm[i] * D + e];
            kp[i * D + e] = k[perm[i] * D + e];
            vp[i * D + e] = v[perm[i] * D + e];
        }
    spec c = {1, 1, 1, N, N, D, D, 0.3, ATTN_CAUSAL_NONE, NULL, NULL};
    CHECK_OK(run(&c, q, k, v, o1, NULL, attn_opts_default()));
    CHECK_OK(run(&c, qp, k, v, o2, NULL, attn_opts_default()));
    double worst = 0;
    for (int i = 0; i < N; i++)
        for (int e = 0; e < D; e++)
            worst = fmax(worst, fabs(o2[i * D + e] - o1[perm[i] * D + e]));
    CHECK(worst == 0.0, "query permutation: %g", worst);
    CHECK_OK(run(&c, q, kp, vp, o2, NULL, attn_opts_default()));
    CHECK(tu_maxdiff(o1, o2, N * D) < 1e-6, "key permutation: %g", tu_maxdiff(o1, o2, N * D));
    free(q), free(k), free(v);
}

/* Causal: row i does not change when keys/values after i change. */
static void test_causal_prefix(void) {
    enum { N = 9, D = 5 };
    float *q = tu_rand(N * D, -1, 1), *k = tu_rand(N * D, -1, 1), *v = tu_rand(N * D, -1, 1);
    float o1[N * D], o2[N * D];
    spec c = {1, 1, 1, N, N, D, D, 0.5, ATTN_CAUSAL_TOP_LEFT, NULL, NULL};
    for (int i = 0; i < N - 1; i++) {
        CHECK_OK(run(&c, q, k, v, o1, NULL, attn_opts_default()));
        for (int j = i + 1; j < N; j++)
            for (int e = 0; e < D; e++) {
                k[j * D + e] = tu_uniform(-1, 1);
                v[j * D + e] = (j == N - 1) ? NAN : tu_uniform(-1, 1); /* never seen by i < N-1 */
            }
        CHECK_OK(run(&c, q, k, v, o2, NULL, attn_opts_default()));
        CHECK(memcmp(o1, o2, (size_t)(i + 1) * D * sizeof(float)) == 0,
              "rows 0..%d changed when later tokens changed", i);
    }
    free(q), free(k), free(v);
}

/* GQA: Hkv = H equals plain multi-head; Hkv < H equals K/V repeated per group. */
static void test_gqa(void) {
    enum { B = 2, H = 6, Hkv = 2, N = 7, D = 4 };
    float *q = tu_rand(B * H * N * D, -1, 1), *k = tu_rand(B * Hkv * N * D, -1, 1);
    float *v = tu_rand(B * Hkv * N * D, -1, 1);
    float kr[B * H * N * D], vr[B * H * N * D], o1[B * H * N * D], o2[B * H * N * D];
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) /* np.repeat(k, H // Hkv, axis=1) */
            memcpy(kr + (b * H + h) * N * D, k + (b * Hkv + h / (H / Hkv)) * N * D, N * D * 4),
                memcpy(vr + (b * H + h) * N * D, v + (b * Hkv + h / (H / Hkv)) * N * D, N * D * 4);
    spec g = {B, H, Hkv, N, N, D, D, 0.5, ATTN_CAUSAL_BOTTOM_RIGHT, NULL, NULL};
    spec full = g;
    full.Hkv = H;
    CHECK_OK(run(&g, q, k, v, o1, NULL, attn_opts_default()));
    CHECK_OK(run(&full, q, kr, vr, o2, NULL, attn_opts_default()));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "GQA differs from repeated K/V: %g",
          tu_maxdiff(o1, o2, B * H * N * D));
    free(q), free(k), free(v);
}

/* A (Nq, Nkv) mask broadcast over B and H by stride 0 equals the same mask
 * copied out in full; key lengths equal the equivalent -inf mask. */
static void test_mask_broadcast_and_key_lengths(void) {
    enum { B = 3, H = 2, Nq = 5, Nkv = 6, D = 3 };
    float *q = tu_rand(B * H * Nq * D, -1, 1), *k = tu_rand(B * H * Nkv * D, -1, 1);
    float *v = tu_rand(B * H * Nkv * D, -1, 1), *small = tu_rand(Nq * Nkv, -1, 1);
    small[3] = -INFINITY;
    float full[B * H * Nq * Nkv], o1[B * H * Nq * D], o2[B * H * Nq * D];
    for (int bh = 0; bh < B * H; bh++)
        memcpy(full + bh * Nq * Nkv, small, sizeof(float) * Nq * Nkv);
    spec c = {B, H, H, Nq, Nkv, D, D, 0.5, ATTN_CAUSAL_NONE, full, NULL};
    CHECK_OK(run(&c, q, k, v, o1, NULL, attn_opts_default()));
    attn_view qv = attn_view_4d(q, B, H, Nq, D), kv = attn_view_4d(k, B, H, Nkv, D);
    attn_view vv = attn_view_4d(v, B, H, Nkv, D), ov = attn_view_4d(o2, B, H, Nq, D);
    attn_view mv = attn_view_4d(small, 1, 1, Nq, Nkv);
    attn_opts o = attn_opts_default();
    o.scale = 0.5f;
    o.mask = &mv;
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &o));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "broadcast mask differs: %g",
          tu_maxdiff(o1, o2, B * H * Nq * D));
    /* The same small mask with stride 0 given explicitly on a size-B dimension. */
    mv.shape[0] = B, mv.stride[0] = 0, mv.shape[1] = H, mv.stride[1] = 0;
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &o));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "stride-0 mask differs");

    int64_t kl[B] = {6, 2, 0};
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Nq; i++)
                for (int j = 0; j < Nkv; j++)
                    full[((b * H + h) * Nq + i) * Nkv + j] = j < kl[b] ? 0.0f : -INFINITY;
    CHECK_OK(run(&c, q, k, v, o1, NULL, attn_opts_default()));
    spec ck = c;
    ck.mask = NULL;
    ck.key_lengths = kl;
    CHECK_OK(run(&ck, q, k, v, o2, NULL, attn_opts_default()));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "key_lengths differ from the -inf mask");
    for (int x = 2 * H * Nq * D; x < B * H * Nq * D; x++)
        CHECK(o2[x] == 0.0f, "batch with key length 0 is not zeros at %d", x);
    free(q), free(k), free(v), free(small);
}

/* Top-left and bottom-right differ exactly as documented when Nq != Nkv, and
 * bottom-right follows key lengths: j <= i + L_b - Nq. */
static void test_causal_kinds(void) {
    enum { B = 2, Nq = 3, Nkv = 5, D = 4 };
    float *q = tu_rand(B * Nq * D, -1, 1), *k = tu_rand(B * Nkv * D, -1, 1);
    float *v = tu_rand(B * Nkv * D, -1, 1);
    float mask[B * Nq * Nkv], o1[B * Nq * D], o2[B * Nq * D];
    int64_t kl[B] = {5, 4};
    for (int kind = 1; kind <= 2; kind++) {
        for (int b = 0; b < B; b++)
            for (int i = 0; i < Nq; i++)
                for (int j = 0; j < Nkv; j++) {
                    int64_t lim = kind == 1 ? i : i + kl[b] - Nq; /* written out per the header */
                    mask[(b * Nq + i) * Nkv + j] = (j <= lim && j < kl[b]) ? 0.0f : -INFINITY;
                }
        spec m = {B, 1, 1, Nq, Nkv, D, D, 0.5, ATTN_CAUSAL_NONE, mask, NULL};
        spec c = {B, 1, 1, Nq, Nkv, D, D, 0.5, (attn_causal)kind, NULL, kl};
        CHECK_OK(run(&m, q, k, v, o1, NULL, attn_opts_default()));
        CHECK_OK(run(&c, q, k, v, o2, NULL, attn_opts_default()));
        CHECK(memcmp(o1, o2, sizeof o1) == 0, "causal kind %d differs from its mask", kind);
    }
    /* With Nq = 3, Nkv = 5 and no key lengths, row 0 sees 1 key top-left but
     * 3 keys bottom-right: the weights say so. */
    float w[Nq * Nkv];
    attn_view qv = attn_view_4d(q, 1, 1, Nq, D), kv = attn_view_4d(k, 1, 1, Nkv, D);
    attn_view vv = attn_view_4d(v, 1, 1, Nkv, D), ov = attn_view_4d(o1, 1, 1, Nq, D);
    attn_view wv = attn_view_4d(w, 1, 1, Nq, Nkv);
    attn_opts o = attn_opts_default();
    o.weights = &wv;
    o.causal = ATTN_CAUSAL_TOP_LEFT;
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &o));
    CHECK(w[0] == 1.0f && w[1] == 0.0f && w[2] == 0.0f, "top-left row 0: %g %g %g", w[0], w[1],
          w[2]);
    o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &o));
    CHECK(w[2] > 0.0f && w[3] == 0.0f && w[4] == 0.0f, "bottom-right row 0: %g %g %g", w[2], w[3],
          w[4]);
    free(q), free(k), free(v);
}

/* Dropout: p = 0 is the identity; with V = identity the output is the weight
 * matrix, dropped by the hash recomputed here from the header's definition. */
static uint64_t my_mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int my_keep(uint64_t seed, uint64_t b, uint64_t h, uint64_t i, uint64_t j, float p) {
    uint64_t x = my_mix(my_mix(my_mix(my_mix(seed ^ b) ^ h) ^ i) ^ j);
    return (uint32_t)(x >> 40) >= (uint32_t)((double)p * 16777216.0);
}

static void test_dropout(void) {
    enum { B = 2, H = 3, N = 40, D = 8 };
    float *q = tu_rand(B * H * N * D, -1, 1), *k = tu_rand(B * H * N * D, -1, 1);
    float *eye = tu_zeros(B * H * N * N), *w = tu_zeros(B * H * N * N),
          *o = tu_zeros(B * H * N * N);
    float *o0 = tu_zeros(B * H * N * N);
    for (int bh = 0; bh < B * H; bh++)
        for (int j = 0; j < N; j++)
            eye[(bh * N + j) * N + j] = 1.0f;
    attn_view qv = attn_view_4d(q, B, H, N, D), kv = attn_view_4d(k, B, H, N, D);
    attn_view vv = attn_view_4d(eye, B, H, N, N), ov = attn_view_4d(o, B, H, N, N);
    attn_view wv = attn_view_4d(w, B, H, N, N), o0v = attn_view_4d(o0, B, H, N, N);
    attn_opts op = attn_opts_default();
    op.causal = ATTN_CAUSAL_TOP_LEFT;
    op.algo = ATTN_ALGO_REFERENCE; /* bit-for-bit comparisons below: one algorithm */
    op.weights = &wv;              /* undropped weights */
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &o0v, &op));
    op.weights = NULL;
    op.dropout_seed = 99;
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &op)); /* p = 0 */
    CHECK(memcmp(o, o0, sizeof(float) * B * H * N * N) == 0, "dropout p=0 is not the identity");

    const float p = 0.3f;
    op.dropout_p = p;
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &op));
    int64_t kept = 0, total = 0;
    double worst = 0;
    int mismatch = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < N; i++)
                for (int j = 0; j <= i; j++) {
                    int64_t x = ((b * H + h) * N + i) * N + j;
                    int keep = my_keep(99, b, h, i, j, p);
                    mismatch += keep != attn_dropout_keep(99, b, h, i, j, p);
                    float want = keep ? w[x] / (1.0f - p) : 0.0f;
                    worst = fmax(worst, fabs(o[x] - want));
                    if (!keep)
                        CHECK(o[x] == 0.0f, "dropped weight (%d,%d,%d,%d) is %g", b, h, i, j, o[x]);
                    kept += keep, total++;
                }
    CHECK(mismatch == 0, "attn_dropout_keep disagrees with the documented hash %d times", mismatch);
    CHECK(worst < 1e-6, "dropped weights: %g", worst);
    /* Binomial: mean 0.7 * 2460, sd ~ 22.7; 5 sd either way. */
    double frac = (double)kept / (double)total;
    CHECK(fabs(frac - (1.0 - p)) < 5 * sqrt(p * (1 - p) / (double)total), "kept %g of weights",
          frac);
    free(q), free(k), free(eye), free(w), free(o), free(o0);
}

/* Merging the partials over two halves of the keys equals the whole. */
static void test_merge_halves(void) {
    enum { B = 2, H = 2, Nq = 5, Nkv = 13, D = 6, half = 7 };
    float *q = tu_rand(B * H * Nq * D, -2, 2), *k = tu_rand(B * H * Nkv * D, -2, 2);
    float *v = tu_rand(B * H * Nkv * D, -2, 2);
    float o[B * H * Nq * D], l[B * H * Nq], po[2][B * H * Nq * D], pl[2][B * H * Nq];
    float mo[B * H * Nq * D], ml[B * H * Nq];
    attn_view qv = attn_view_4d(q, B, H, Nq, D), kv = attn_view_4d(k, B, H, Nkv, D);
    attn_view vv = attn_view_4d(v, B, H, Nkv, D), ov = attn_view_4d(o, B, H, Nq, D);
    attn_view lv = attn_view_3d(l, B, H, Nq);
    attn_opts op = attn_opts_default();
    op.lse = &lv;
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &op));
    attn_view pov[2], plv[2];
    for (int p = 0; p < 2; p++) {
        /* Keys [0, half) and [half, Nkv) as strided slices of k and v. */
        attn_view ks = kv, vs = vv;
        ks.data += p * half * D, vs.data += p * half * D;
        ks.shape[2] = vs.shape[2] = p ? Nkv - half : half;
        pov[p] = attn_view_4d(po[p], B, H, Nq, D);
        plv[p] = attn_view_3d(pl[p], B, H, Nq);
        op.lse = &plv[p];
        CHECK_OK(attn_sdpa(&qv, &ks, &vs, &pov[p], &op));
    }
    attn_view mov = attn_view_4d(mo, B, H, Nq, D), mlv = attn_view_3d(ml, B, H, Nq);
    CHECK_OK(attn_merge(pov, plv, 2, &mov, &mlv));
    CHECK(tu_maxdiff(o, mo, B * H * Nq * D) < 2e-6, "merged out: %g",
          tu_maxdiff(o, mo, B * H * Nq * D));
    CHECK(tu_maxdiff(l, ml, B * H * Nq) < 2e-6, "merged lse: %g", tu_maxdiff(l, ml, B * H * Nq));
    /* In place into part 0. */
    CHECK_OK(attn_merge(pov, plv, 2, &pov[0], &plv[0]));
    CHECK(memcmp(po[0], mo, sizeof mo) == 0, "in-place merge differs");
    /* All parts empty: zeros and -inf. */
    for (int x = 0; x < B * H * Nq; x++)
        pl[0][x] = pl[1][x] = -INFINITY;
    po[1][0] = NAN; /* an empty part's output is never read */
    CHECK_OK(attn_merge(pov, plv, 2, &mov, &mlv));
    CHECK(mo[0] == 0.0f && ml[0] == -INFINITY, "empty merge: %g %g", mo[0], ml[0]);
    free(q), free(k), free(v);
}

/* Masked-out keys and values may hold NaN or Inf: they never reach the
 * output. A NaN in a visible value does. Rows sum to 1. Threads do not change
 * the reference's bits. */
static void test_invisible_nan_and_identities(void) {
    enum { N = 8, D = 4 };
    float *q = tu_rand(N * D, -1, 1), *k = tu_rand(N * D, -1, 1), *v = tu_rand(N * D, -1, 1);
    float o1[N * D], o2[N * D], w[N * N];
    int64_t kl[1] = {5};
    spec c = {1, 1, 1, N, N, D, D, 0.5, ATTN_CAUSAL_NONE, NULL, kl};
    CHECK_OK(run(&c, q, k, v, o1, NULL, attn_opts_default()));
    for (int j = 5; j < N; j++)
        for (int e = 0; e < D; e++)
            k[j * D + e] = NAN, v[j * D + e] = INFINITY;
    CHECK_OK(run(&c, q, k, v, o2, NULL, attn_opts_default()));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "NaN/Inf in invisible keys changed the output");
    v[0] = NAN;
    CHECK_OK(run(&c, q, k, v, o2, NULL, attn_opts_default()));
    CHECK(isnan(o2[0]) && isnan(o2[(N - 1) * D]), "NaN in a visible value did not propagate");
    /* A NaN query makes its own row NaN (lse too), even though every score is NaN. */
    float l2[N];
    q[D] = NAN;
    CHECK_OK(run(&c, q, k, v, o2, l2, attn_opts_default()));
    CHECK(isnan(o2[D]) && isnan(l2[1]) && !isnan(l2[0]) && !isnan(l2[2]),
          "NaN query: out %g lse %g (rows 0, 2: %g %g)", o2[D], l2[1], l2[0], l2[2]);
    q[D] = 0.5f;

    attn_view qv = attn_view_4d(q, 1, 1, N, D), kv = attn_view_4d(k, 1, 1, N, D);
    attn_view vv = attn_view_4d(v, 1, 1, N, D), ov = attn_view_4d(o2, 1, 1, N, D);
    attn_view wv = attn_view_4d(w, 1, 1, N, N);
    attn_opts o = attn_opts_default();
    o.key_lengths = kl;
    o.weights = &wv;
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &o));
    for (int i = 0; i < N; i++) {
        double sum = 0;
        for (int j = 0; j < N; j++)
            sum += w[i * N + j];
        CHECK(fabs(sum - 1.0) < 1e-6, "weights row %d sums to %.9g", i, sum);
    }

    enum { B = 2, H = 3, M = 37 };
    float *q3 = tu_rand(B * H * M * D, -1, 1), *k3 = tu_rand(B * H * M * D, -1, 1);
    float *v3 = tu_rand(B * H * M * D, -1, 1), t1[B * H * M * D], t3[B * H * M * D];
    spec s3 = {B, H, H, M, M, D, D, 0.5, ATTN_CAUSAL_TOP_LEFT, NULL, NULL};
    attn_opts one = attn_opts_default(), three = attn_opts_default();
    one.num_threads = 1, three.num_threads = 3;
    one.algo = three.algo = ATTN_ALGO_REFERENCE;
    CHECK_OK(run(&s3, q3, k3, v3, t1, NULL, one));
    CHECK_OK(run(&s3, q3, k3, v3, t3, NULL, three));
    CHECK(memcmp(t1, t3, sizeof t1) == 0, "1 and 3 threads differ");
    free(q), free(k), free(v), free(q3), free(k3), free(v3);
}

/* Inputs of any strides: q, k, v read from one (B, N, 3, H, d) buffer via
 * attn_split_qkv, and a transposed k. */
static void test_strided_inputs(void) {
    enum { B = 2, N = 5, H = 3, d = 4, C = 3 * H * d };
    float *qkv = tu_rand(B * N * C, -1, 1);
    float q[B * H * N * d], k[B * H * N * d], v[B * H * N * d], o1[B * H * N * d],
        o2[B * H * N * d];
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++)
                for (int e = 0; e < d; e++) {
                    int dst = ((b * H + h) * N + n) * d + e;
                    q[dst] = qkv[(b * N + n) * C + 0 * H * d + h * d + e];
                    k[dst] = qkv[(b * N + n) * C + 1 * H * d + h * d + e];
                    v[dst] = qkv[(b * N + n) * C + 2 * H * d + h * d + e];
                }
    spec c = {B, H, H, N, N, d, d, 0.5, ATTN_CAUSAL_TOP_LEFT, NULL, NULL};
    CHECK_OK(run(&c, q, k, v, o1, NULL, attn_opts_default()));
    attn_view all = attn_view_3d(qkv, B, N, C), qv, kv, vv;
    CHECK_OK(attn_split_qkv(&all, H, &qv, &kv, &vv));
    attn_view ov = attn_view_4d(o2, B, H, N, d);
    attn_opts o = attn_opts_default();
    o.scale = 0.5f;
    o.causal = ATTN_CAUSAL_TOP_LEFT;
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &o));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "split views differ from copies");
    /* k stored as (B, H, d, N) and swapped back to (B, H, N, d). */
    float kt[B * H * d * N];
    for (int bh = 0; bh < B * H; bh++)
        for (int n = 0; n < N; n++)
            for (int e = 0; e < d; e++)
                kt[(bh * d + e) * N + n] = k[(bh * N + n) * d + e];
    attn_view ktv = attn_view_swap(attn_view_4d(kt, B, H, d, N), 2, 3);
    attn_view qc = attn_view_4d(q, B, H, N, d), vc = attn_view_4d(v, B, H, N, d);
    CHECK_OK(attn_sdpa(&qc, &ktv, &vc, &ov, &o));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "transposed k differs");
    free(qkv);
}

/* ---- errors: status, message, and outputs untouched ------------------------ */

static void test_errors(void) {
    float q[2 * 64], k[2 * 80], v[2 * 64], out[2 * 64], lse[2];
    for (int i = 0; i < 2 * 64; i++)
        q[i] = v[i] = 0.5f;
    for (int i = 0; i < 2 * 80; i++)
        k[i] = 0.5f;
    for (int i = 0; i < 2 * 64; i++)
        out[i] = 42.0f;
    attn_view qv = attn_view_4d(q, 1, 1, 2, 64), kv = attn_view_4d(k, 1, 1, 2, 80);
    attn_view vv = attn_view_4d(v, 1, 1, 2, 64), ov = attn_view_4d(out, 1, 1, 2, 64);
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &ov, NULL), ATTN_ERR_SHAPE,
               "attn_sdpa: k.shape[3]=80 but q.shape[3]=64 (head size must match)");
    kv = attn_view_4d(k, 1, 1, 2, 64);
    CHECK_FAIL(attn_sdpa(NULL, &kv, &vv, &ov, NULL), ATTN_ERR_NULL, "attn_sdpa: q is NULL");
    attn_view bad = qv;
    bad.data = NULL;
    CHECK_FAIL(attn_sdpa(&bad, &kv, &vv, &ov, NULL), ATTN_ERR_NULL, "q.data is NULL");
    bad = qv;
    bad.ndim = 3;
    CHECK_FAIL(attn_sdpa(&bad, &kv, &vv, &ov, NULL), ATTN_ERR_SHAPE, "q.ndim=3 but must be 4");
    bad = qv;
    bad.shape[2] = 0;
    CHECK_FAIL(attn_sdpa(&bad, &kv, &vv, &ov, NULL), ATTN_ERR_SHAPE, "q.shape[2]=0 must be >= 1");
    bad.shape[2] = -3;
    CHECK_FAIL(attn_sdpa(&bad, &kv, &vv, &ov, NULL), ATTN_ERR_SHAPE, "q.shape[2]=-3");
    bad = qv;
    bad.shape[0] = INT64_MAX / 2, bad.stride[0] = 1 << 20;
    CHECK_FAIL(attn_sdpa(&bad, &kv, &vv, &ov, NULL), ATTN_ERR_OVERFLOW, "q.shape[0]");
    /* H = 3 query heads over Hkv = 2 kv heads. */
    float big[3 * 2 * 64] = {0}, big_o[3 * 2 * 64];
    attn_view q3 = attn_view_4d(big, 1, 3, 2, 64), o3 = attn_view_4d(big_o, 1, 3, 2, 64);
    attn_view k2 = attn_view_4d(k, 1, 2, 1, 64), v2 = attn_view_4d(v, 1, 2, 1, 64);
    CHECK_FAIL(attn_sdpa(&q3, &k2, &v2, &o3, NULL), ATTN_ERR_SHAPE,
               "q.shape[1]=3 query heads is not a multiple of k.shape[1]=2");
    attn_view vb = attn_view_4d(v, 1, 1, 1, 64);
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vb, &ov, NULL), ATTN_ERR_SHAPE,
               "v.shape[2]=1 but k.shape[2]=2");
    attn_view ob = attn_view_4d(out, 1, 1, 2, 32);
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &ob, NULL), ATTN_ERR_SHAPE,
               "out.shape[3]=32 but v.shape[3]=64");
    /* Outputs: stride 0 and overlap with an input. */
    ob = ov;
    ob.stride[2] = 0;
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &ob, NULL), ATTN_ERR_STRIDE, "out.stride[2]=0");
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &qv, NULL), ATTN_ERR_STRIDE, "output out overlaps input q");
    /* Options. */
    attn_opts o = attn_opts_default();
    o.dropout_p = 1.0f;
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &ov, &o), ATTN_ERR_ARG,
               "opts.dropout_p=1 must be in [0, 1)");
    o = attn_opts_default();
    o.causal = (attn_causal)7;
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &ov, &o), ATTN_ERR_ARG, "opts.causal=7");
    o = attn_opts_default();
    o.scale = INFINITY;
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &ov, &o), ATTN_ERR_ARG, "opts.scale=inf");
    o = attn_opts_default();
    int64_t kl[1] = {3};
    o.key_lengths = kl;
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &ov, &o), ATTN_ERR_ARG,
               "key_lengths[0]=3 must be in 0..Nkv=2");
    o = attn_opts_default();
    float m[2 * 3];
    attn_view mv = attn_view_4d(m, 1, 1, 2, 3);
    o.mask = &mv;
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &ov, &o), ATTN_ERR_SHAPE,
               "mask.shape[3]=3 but must be Nkv=2 or 1");
    o = attn_opts_default();
    attn_view lv = attn_view_3d(lse, 1, 2, 1);
    o.lse = &lv;
    CHECK_FAIL(attn_sdpa(&qv, &kv, &vv, &ov, &o), ATTN_ERR_SHAPE, "lse.shape[1]=2 but must be 1");
    for (int i = 0; i < 2 * 64; i++)
        CHECK(out[i] == 42.0f, "a failed call wrote out[%d]", i);

    /* Hostile values that must not reach undefined behaviour or the OpenMP runtime. */
    attn_view qkv = attn_view_3d(q, 1, 2, 48), s1, s2, s3;
    CHECK_FAIL(attn_split_qkv(&qkv, INT64_MAX / 2, &s1, &s2, &s3), ATTN_ERR_SHAPE,
               "is not a multiple of 3*num_heads");
    CHECK(attn_dropout_keep(1, 0, 0, 0, 0, INFINITY) == 0 &&
              attn_dropout_keep(1, 0, 0, 0, 0, NAN) == 1 &&
              attn_dropout_keep(1, 0, 0, 0, 0, 300.0f) == 0,
          "dropout_keep outside [0, 1)");
    o = attn_opts_default();
    o.num_threads = INT32_MAX; /* capped at ATTN_MAX_THREADS */
    o.algo = ATTN_ALGO_REFERENCE;
    float ok_out[2 * 64];
    attn_view okv = attn_view_4d(ok_out, 1, 1, 2, 64);
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &okv, &o));

    /* Merge, softmax. */
    CHECK_FAIL(attn_merge(&ov, &lv, 0, &ov, NULL), ATTN_ERR_ARG, "n_parts=0");
    attn_view x = attn_view_2d(q, 2, 3), y = attn_view_2d(out, 3, 2);
    CHECK_FAIL(attn_softmax(&x, &y), ATTN_ERR_SHAPE, "y.shape[0]=3 but x.shape[0]=2");
    CHECK(strcmp(attn_status_string(ATTN_ERR_NOMEM), "ATTN_ERR_NOMEM") == 0, "status string");
    CHECK(strcmp(attn_status_string((attn_status)99), "unknown status") == 0, "unknown status");
}

/* A failing allocator: attn_sdpa returns NOMEM and leaves out untouched. */
static void *no_alloc(size_t size, size_t align, void *ctx) {
    (void)size, (void)align, (void)ctx;
    return NULL;
}
static void plain_free(void *p, void *ctx) {
    (void)ctx;
    free(p);
}

static void test_nomem(void) {
    float q[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
    for (int i = 0; i < 8; i++)
        out[i] = 7.0f;
    attn_view qv = attn_view_4d(q, 1, 1, 2, 4), ov = attn_view_4d(out, 1, 1, 2, 4);
    attn_allocator a = {no_alloc, plain_free, NULL};
    attn_set_allocator(&a);
    attn_opts o = attn_opts_default();
    o.algo = ATTN_ALGO_REFERENCE;
    CHECK_FAIL(attn_sdpa(&qv, &qv, &qv, &ov, &o), ATTN_ERR_NOMEM, "attn_sdpa: cannot allocate");
    attn_set_allocator(NULL);
    for (int i = 0; i < 8; i++)
        CHECK(out[i] == 7.0f, "NOMEM wrote out[%d]", i);
    CHECK_OK(attn_sdpa(&qv, &qv, &qv, &ov, &o));
}

int main(void) {
    test_hand_worked();
    test_random_against_oracle();
    test_permutation();
    test_causal_prefix();
    test_gqa();
    test_mask_broadcast_and_key_lengths();
    test_causal_kinds();
    test_dropout();
    test_merge_halves();
    test_invisible_nan_and_identities();
    test_strided_inputs();
    test_errors();
    test_nomem();
    return tu_summary("test_sdpa");
}
