/* test_flash.c - the flash path against the reference, per ISA, and its
 * determinism (threads, a row alone vs in a batch, decode vs prefill).
 *
 * Tolerance (fast vs reference): 1e-5 absolute on out, 1e-5 relative on lse.
 * The reference sums in double; the flash path in float, with scores from a
 * d-term fma chain, a 2-ulp exponential, running sums over up to ~1500 keys
 * and one rescale per 64-key block. With inputs in [-1, 1] (so |out| <= 1)
 * these rounding errors behave as a random walk of a few thousand steps of
 * relative size 2^-24 ~ 6e-8, i.e. a few 1e-6 at most; observed maxima are
 * printed (about 1.4e-6). 1e-5 leaves room for that yet is far below the
 * effect of one mishandled key: with scores bounded by |s| <= ~6 (d-scaled
 * dot products plus masks in [-2, 2]) every visible key has weight
 * >= e^-12 / Nkv and typically ~1/Nkv ~ 1e-3, moving the output by ~1e-4 or
 * more, so a wrong visibility rule fails the test (checked by breaking the
 * rule on purpose while writing it). */
#include "testutil.h"

#include "flash/flash.h"
#include "internal.h"

static double worst_out, worst_lse; /* largest differences seen, printed per ISA */

static int quick(void) {
    return getenv("ATTN_TEST_QUICK") != NULL;
}

/* A rank-4 array of logical shape (n0, n1, n2, n3) stored in one of three
 * layouts: 0 contiguous, 1 dims 1 and 2 swapped in memory ((n0, n2, n1, n3),
 * as q/k/v read from a (B, N, H, d) buffer), 2 last dim strided (memory
 * (n0, n1, n3, n2), a transposed K). */
typedef struct arr {
    float *mem;
    int64_t n;
    attn_view v;
} arr;

static arr arr_make(int64_t n0, int64_t n1, int64_t n2, int64_t n3, int layout, float lo,
                    float hi) {
    arr a;
    a.n = n0 * n1 * n2 * n3;
    a.mem = tu_rand(a.n, lo, hi);
    a.v = attn_view_4d(a.mem, n0, n1, n2, n3);
    if (layout == 1) {
        a.v.stride[0] = n1 * n2 * n3;
        a.v.stride[1] = n3;
        a.v.stride[2] = n1 * n3;
        a.v.stride[3] = 1;
    } else if (layout == 2) {
        a.v.stride[0] = n1 * n2 * n3;
        a.v.stride[1] = n2 * n3;
        a.v.stride[2] = 1;
        a.v.stride[3] = n2;
    }
    return a;
}

static const int64_t sizes_n[] = {1, 2, 3, 5, 7, 13, 16, 17, 31, 63, 64, 65, 75, 113, 128, 130};
static const int64_t sizes_nkv[] = {1,   2,   3,   7,   16,  17,  31,  64,  65,  75,
                                    113, 127, 128, 129, 300, 511, 512, 513, 700, 1100};
static const int64_t sizes_d[] = {1, 2, 3, 8, 16, 40, 64, 72, 80, 128, 256};

#define PICK(a) a[tu_int(0, (int64_t)(sizeof a / sizeof a[0]) - 1)]

typedef struct config {
    int64_t B, H, Hkv, Nq, Nkv, d, dv;
    attn_causal causal;
    int mask_kind; /* 0 none, 1 broadcast pattern with -inf entries */
    int64_t mshape[4];
    int has_kl, has_lse, layout_q, layout_k, layout_v, threads;
    float scale;
} config;

static void config_random(config *c) {
    for (;;) {
        c->B = tu_int(1, 3);
        c->Hkv = tu_int(1, 3);
        c->H = c->Hkv * tu_int(1, 3);
        c->Nq = PICK(sizes_n);
        c->Nkv = tu_int(0, 3) == 0 ? c->Nq : PICK(sizes_nkv);
        c->d = PICK(sizes_d);
        c->dv = tu_int(0, 2) == 0 ? PICK(sizes_d) : c->d;
        /* bound the reference's work so 300 configs per ISA stay quick */
        if ((double)c->B * c->H * c->Nq * c->Nkv * (c->d + c->dv) < 6e6) break;
    }
    c->causal = (attn_causal)tu_int(0, 2);
    c->mask_kind = tu_int(0, 2) == 0;
    const int64_t full[4] = {c->B, c->H, c->Nq, c->Nkv};
    for (int i = 0; i < 4; i++)
        c->mshape[i] = tu_int(0, 1) ? full[i] : 1;
    c->has_kl = tu_int(0, 2) == 0;
    c->has_lse = tu_int(0, 1);
    c->layout_q = (int)tu_int(0, 1);
    c->layout_k = (int)tu_int(0, 2);
    c->layout_v = (int)tu_int(0, 2);
    c->threads = (int)tu_int(1, 3);
    c->scale = tu_int(0, 3) == 0 ? tu_uniform(0.05f, 0.6f) : NAN;
}

/* Run one configuration through both paths and compare. */
static void check_config(const config *c, const char *isa) {
    arr q = arr_make(c->B, c->H, c->Nq, c->d, c->layout_q, -1, 1);
    arr k = arr_make(c->B, c->Hkv, c->Nkv, c->d, c->layout_k, -1, 1);
    arr v = arr_make(c->B, c->Hkv, c->Nkv, c->dv, c->layout_v, -1, 1);
    arr mask = arr_make(c->mshape[0], c->mshape[1], c->mshape[2], c->mshape[3], 0, -2, 2);
    for (int64_t t = 0; t < mask.n; t++)
        if (tu_int(0, 4) == 0) mask.mem[t] = -INFINITY;
    int64_t *kl = malloc((size_t)c->B * sizeof(int64_t));
    for (int64_t b = 0; b < c->B; b++)
        kl[b] = tu_int(0, 5) == 0 ? 0 : tu_int(0, c->Nkv);
    /* Hidden values may hold NaN: keys past the key length never reach out. */
    if (c->has_kl)
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t g = 0; g < c->Hkv; g++)
                for (int64_t j = kl[b]; j < c->Nkv; j++) {
                    *attn__at4(&k.v, b, g, j, 0) = NAN;
                    *attn__at4(&v.v, b, g, j, c->dv - 1) = INFINITY;
                }

    const int64_t no = c->B * c->H * c->Nq * c->dv, nl = c->B * c->H * c->Nq;
    float *out_ref = tu_zeros(no), *out_fl = tu_zeros(no);
    float *lse_ref = tu_zeros(nl), *lse_fl = tu_zeros(nl);
    attn_view o_ref = attn_view_4d(out_ref, c->B, c->H, c->Nq, c->dv);
    attn_view o_fl = attn_view_4d(out_fl, c->B, c->H, c->Nq, c->dv);
    attn_view l_ref = attn_view_3d(lse_ref, c->B, c->H, c->Nq);
    attn_view l_fl = attn_view_3d(lse_fl, c->B, c->H, c->Nq);

    attn_opts o = attn_opts_default();
    o.scale = c->scale;
    o.causal = c->causal;
    o.mask = c->mask_kind ? &mask.v : NULL;
    o.key_lengths = c->has_kl ? kl : NULL;
    o.num_threads = c->threads;
    o.algo = ATTN_ALGO_REFERENCE;
    o.lse = c->has_lse ? &l_ref : NULL;
    CHECK_OK(attn_sdpa(&q.v, &k.v, &v.v, &o_ref, &o));
    o.algo = ATTN_ALGO_FLASH;
    o.lse = c->has_lse ? &l_fl : NULL;
    CHECK_OK(attn_sdpa(&q.v, &k.v, &v.v, &o_fl, &o));

    const double diff = tu_maxdiff(out_ref, out_fl, no);
    double ldiff = 0.0;
    if (c->has_lse)
        for (int64_t t = 0; t < nl; t++) {
            const double a = lse_ref[t], b = lse_fl[t];
            if (a == b) continue; /* both -inf included */
            const double dd = fabs(a - b) / (1.0 + fabs(a));
            if (!(dd <= ldiff)) ldiff = dd; /* NaN sticks */
        }
    if (diff > worst_out) worst_out = diff;
    if (ldiff > worst_lse) worst_lse = ldiff;
    CHECK(diff <= 1e-5 && ldiff <= 1e-5,
          "%s: B=%lld H=%lld Hkv=%lld Nq=%lld Nkv=%lld d=%lld dv=%lld causal=%d mask=%d "
          "(%lld,%lld,%lld,%lld) kl=%d lse=%d layouts=%d%d%d threads=%d: max |out diff| = %g, "
          "lse rel diff = %g",
          isa, (long long)c->B, (long long)c->H, (long long)c->Hkv, (long long)c->Nq,
          (long long)c->Nkv, (long long)c->d, (long long)c->dv, (int)c->causal, c->mask_kind,
          (long long)c->mshape[0], (long long)c->mshape[1], (long long)c->mshape[2],
          (long long)c->mshape[3], c->has_kl, c->has_lse, c->layout_q, c->layout_k, c->layout_v,
          c->threads, diff, ldiff);
    free(q.mem);
    free(k.mem);
    free(v.mem);
    free(mask.mem);
    free(kl);
    free(out_ref);
    free(out_fl);
    free(lse_ref);
    free(lse_fl);
}

/* Hidden keys with NaN/Inf in K and V do not reach rows that cannot see
 * them, even inside a block other rows see (causal diagonal, mask). */
static void test_hidden_nonfinite(void) {
    const int64_t N = 100, d = 24;
    arr q = arr_make(1, 2, N, d, 0, -1, 1), k = arr_make(1, 2, N, d, 0, -1, 1),
        v = arr_make(1, 2, N, d, 0, -1, 1);
    for (int64_t h = 0; h < 2; h++) {
        *attn__at4(&k.v, 0, h, 70, 3) = NAN;
        *attn__at4(&v.v, 0, h, 70, 5) = INFINITY;
        *attn__at4(&v.v, 0, h, 71, 0) = NAN;
    }
    float *out = tu_zeros(2 * N * d);
    attn_view ov = attn_view_4d(out, 1, 2, N, d);
    attn_opts o = attn_opts_default();
    o.causal = ATTN_CAUSAL_TOP_LEFT;
    o.algo = ATTN_ALGO_FLASH;
    CHECK_OK(attn_sdpa(&q.v, &k.v, &v.v, &ov, &o));
    int ok = 1;
    for (int64_t h = 0; h < 2; h++)
        for (int64_t i = 0; i < N; i++)
            for (int64_t f = 0; f < d; f++) {
                const float x = *attn__at4(&ov, 0, h, i, f);
                if (i < 70 && !isfinite(x)) ok = 0; /* keys 70, 71 are hidden */
                if (i >= 70 && !isnan(x)) ok = 0;   /* NaN in a visible key propagates */
            }
    CHECK(ok, "causal rows before key 70 finite, rows from 70 on NaN");

    /* A mask hiding key 70 from even rows only. */
    float *mk = tu_zeros(N * N);
    for (int64_t i = 0; i < N; i++)
        mk[i * N + 70] = mk[i * N + 71] = i % 2 ? 0.0f : -INFINITY;
    attn_view mv = attn_view_4d(mk, 1, 1, N, N);
    o.causal = ATTN_CAUSAL_NONE;
    o.mask = &mv;
    CHECK_OK(attn_sdpa(&q.v, &k.v, &v.v, &ov, &o));
    ok = 1;
    for (int64_t i = 0; i < N; i++)
        for (int64_t f = 0; f < d; f++) {
            const float x = *attn__at4(&ov, 0, 1, i, f);
            if (i % 2 == 0 && !isfinite(x)) ok = 0;
            if (i % 2 == 1 && !isnan(x)) ok = 0;
        }
    CHECK(ok, "masked rows finite, the others NaN");

    /* A NaN query: every visible score of its row is NaN, and so is the row. */
    o.mask = NULL;
    o.causal = ATTN_CAUSAL_TOP_LEFT; /* rows 4 and 5 never see keys 70, 71 */
    *attn__at4(&q.v, 0, 0, 5, 0) = NAN;
    float lse[200];
    attn_view lv = attn_view_3d(lse, 1, 2, N);
    o.lse = &lv;
    CHECK_OK(attn_sdpa(&q.v, &k.v, &v.v, &ov, &o));
    CHECK(isnan(*attn__at4(&ov, 0, 0, 5, 0)) && isnan(lse[5]) &&
              isfinite(*attn__at4(&ov, 0, 0, 4, 0)),
          "a NaN query row gives NaN (out %g, lse %g)", (double)*attn__at4(&ov, 0, 0, 5, 0),
          (double)lse[5]);
    free(q.mem);
    free(k.mem);
    free(v.mem);
    free(out);
    free(mk);
}

/* Rows with no visible key give zeros and lse -inf; all-masked blocks too. */
static void test_empty_rows(void) {
    const int64_t Nq = 70, Nkv = 600, d = 16;
    arr q = arr_make(2, 1, Nq, d, 0, -1, 1), k = arr_make(2, 1, Nkv, d, 0, -1, 1),
        v = arr_make(2, 1, Nkv, d, 0, -1, 1);
    float *out = tu_rand(2 * Nq * d, 5, 6), *lse = tu_zeros(2 * Nq);
    attn_view ov = attn_view_4d(out, 2, 1, Nq, d), lv = attn_view_3d(lse, 2, 1, Nq);
    int64_t kl[2] = {0, 600};
    attn_opts o = attn_opts_default();
    o.key_lengths = kl;
    o.causal = ATTN_CAUSAL_BOTTOM_RIGHT; /* batch 1: row i sees j <= i + 530 */
    o.lse = &lv;
    o.algo = ATTN_ALGO_FLASH;
    CHECK_OK(attn_sdpa(&q.v, &k.v, &v.v, &ov, &o));
    int ok = 1;
    for (int64_t i = 0; i < Nq; i++) {
        for (int64_t f = 0; f < d; f++)
            ok &= out[i * d + f] == 0.0f;
        ok &= lse[i] == -INFINITY;
        ok &= isfinite(lse[Nq + i]);
    }
    CHECK(ok, "key length 0 gives zeros and lse -inf");
    free(q.mem);
    free(k.mem);
    free(v.mem);
    free(out);
    free(lse);
}

/* Bits of out for the same problem at 1, 2 and 3 threads. */
static void test_threads(void) {
    const int n_cfg = quick() ? 6 : 20;
    for (int t = 0; t < n_cfg; t++) {
        config c;
        config_random(&c);
        arr q = arr_make(c.B, c.H, c.Nq, c.d, 0, -1, 1),
            k = arr_make(c.B, c.Hkv, c.Nkv, c.d, 0, -1, 1),
            v = arr_make(c.B, c.Hkv, c.Nkv, c.dv, 0, -1, 1);
        const int64_t no = c.B * c.H * c.Nq * c.dv;
        float *o1 = tu_zeros(no), *o2 = tu_zeros(no);
        attn_view v1 = attn_view_4d(o1, c.B, c.H, c.Nq, c.dv),
                  v2 = attn_view_4d(o2, c.B, c.H, c.Nq, c.dv);
        attn_opts o = attn_opts_default();
        o.causal = c.causal;
        o.algo = ATTN_ALGO_FLASH;
        o.num_threads = 1;
        CHECK_OK(attn_sdpa(&q.v, &k.v, &v.v, &v1, &o));
        for (int nt = 2; nt <= 3; nt++) {
            o.num_threads = nt;
            CHECK_OK(attn_sdpa(&q.v, &k.v, &v.v, &v2, &o));
            CHECK(memcmp(o1, o2, (size_t)no * sizeof(float)) == 0,
                  "threads 1 vs %d differ (Nq=%lld Nkv=%lld d=%lld)", nt, (long long)c.Nq,
                  (long long)c.Nkv, (long long)c.d);
        }
        free(q.mem);
        free(k.mem);
        free(v.mem);
        free(o1);
        free(o2);
    }
}

/* A row alone (Nq = 1, B = 1, H = 1: decode, keys split over threads) equals
 * the same row inside a batch (B = 2, H = 4, Hkv = 2, Nq = 300: prefill), bit
 * for bit. Causal rows are reproduced alone with key_lengths = i + 1 and the
 * bottom-right rule, which give the same visible keys j <= i. */
static void test_alone_vs_batched(void) {
    const int64_t B = 2, H = 4, Hkv = 2, Nq = 300, d = 64;
    const int64_t nkvs[2] = {300, 1500};
    for (int ci = 0; ci < 2; ci++) {
        const int64_t Nkv = nkvs[ci];
        arr q = arr_make(B, H, Nq, d, 1, -2, 2), k = arr_make(B, Hkv, Nkv, d, 0, -2, 2),
            v = arr_make(B, Hkv, Nkv, d, 0, -1, 1);
        const int64_t no = B * H * Nq * d;
        float *ob = tu_zeros(no), *lb = tu_zeros(B * H * Nq);
        attn_view obv = attn_view_4d(ob, B, H, Nq, d), lbv = attn_view_3d(lb, B, H, Nq);
        for (int causal = 0; causal < 2; causal++) {
            if (causal && Nkv != Nq) continue;
            attn_opts o = attn_opts_default();
            o.algo = ATTN_ALGO_FLASH;
            o.causal = causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
            o.num_threads = 2;
            o.lse = &lbv;
            CHECK_OK(attn_sdpa(&q.v, &k.v, &v.v, &obv, &o));
            const int64_t rows[] = {0, 1, 15, 16, 63, 64, 65, 150, 298, 299};
            for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++)
                for (int nt = 1; nt <= 3; nt++) {
                    const int64_t i = rows[ri], b = 1, h = 3, g = h / (H / Hkv);
                    attn_view q1 = q.v, k1 = k.v, v1 = v.v;
                    q1.data = attn__at4(&q.v, b, h, i, 0);
                    q1.shape[0] = q1.shape[1] = q1.shape[2] = 1;
                    k1.data = attn__at4(&k.v, b, g, 0, 0);
                    k1.shape[0] = k1.shape[1] = 1;
                    v1.data = attn__at4(&v.v, b, g, 0, 0);
                    v1.shape[0] = v1.shape[1] = 1;
                    float out1[64], lse1;
                    attn_view o1 = attn_view_4d(out1, 1, 1, 1, d),
                              l1 = attn_view_3d(&lse1, 1, 1, 1);
                    int64_t kl = i + 1;
                    attn_opts oa = attn_opts_default();
                    oa.algo = ATTN_ALGO_FLASH;
                    oa.num_threads = nt;
                    oa.lse = &l1;
                    if (causal) {
                        oa.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
                        oa.key_lengths = &kl;
                    }
                    CHECK_OK(attn_sdpa(&q1, &k1, &v1, &o1, &oa));
                    const float *row = attn__at4(&obv, b, h, i, 0);
                    const float lrow = *attn__at3(&lbv, b, h, i);
                    CHECK(memcmp(out1, row, sizeof(float) * (size_t)d) == 0 &&
                              memcmp(&lse1, &lrow, sizeof lse1) == 0,
                          "row %lld alone (threads %d) != in batch (Nkv=%lld causal=%d)",
                          (long long)i, nt, (long long)Nkv, causal);
                }
        }
        free(q.mem);
        free(k.mem);
        free(v.mem);
        free(ob);
        free(lb);
    }
}

/* Decode (split keys) against the reference and against itself at other
 * thread counts, with Nkv spanning many chunks. */
/* The reference, then flash on 1 thread (one thread folds every chunk) and on
 * 3 (chunks split across threads): flash within 1e-5 of the reference, and
 * the two flash runs bit for bit equal. n: elements of each output. */
static void decode_three_ways(const attn_view *q, const attn_view *k, const attn_view *v,
                              attn_opts *o, attn_view *ref, attn_view *o1, attn_view *o3, int64_t n,
                              const char *what) {
    o->algo = ATTN_ALGO_REFERENCE;
    CHECK_OK(attn_sdpa(q, k, v, ref, o));
    o->algo = ATTN_ALGO_FLASH;
    o->num_threads = 1;
    CHECK_OK(attn_sdpa(q, k, v, o1, o));
    o->num_threads = 3;
    CHECK_OK(attn_sdpa(q, k, v, o3, o));
    CHECK(tu_maxdiff(ref->data, o1->data, n) <= 1e-5, "%s vs reference: %g", what,
          tu_maxdiff(ref->data, o1->data, n));
    CHECK(memcmp(o1->data, o3->data, (size_t)n * sizeof(float)) == 0, "%s 1 vs 3 threads differ",
          what);
}

static void test_decode(void) {
    const int64_t B = 1, H = 8, Hkv = 2, Nkv = 5000, d = 128;
    arr q = arr_make(B, H, 1, d, 0, -1, 1), k = arr_make(B, Hkv, Nkv, d, 1, -1, 1),
        v = arr_make(B, Hkv, Nkv, d, 1, -1, 1);
    float ref[8 * 128], o1[8 * 128], o2[8 * 128];
    attn_view rv = attn_view_4d(ref, B, H, 1, d), v1 = attn_view_4d(o1, B, H, 1, d),
              v2 = attn_view_4d(o2, B, H, 1, d);
    attn_opts o = attn_opts_default();
    decode_three_ways(&q.v, &k.v, &v.v, &o, &rv, &v1, &v2, H * d, "decode");

    /* With a mask shifted by -1e9 (a constant per row: no effect) and some
     * -inf entries, through prefill (1 thread) and split decode (3). */
    float *mk = tu_rand(H * Nkv, -2, 2);
    for (int64_t t = 0; t < H * Nkv; t++)
        mk[t] = tu_int(0, 9) == 0 ? -INFINITY : mk[t] - 1e9f;
    attn_view mv = attn_view_4d(mk, 1, H, 1, Nkv);
    o.mask = &mv;
    decode_three_ways(&q.v, &k.v, &v.v, &o, &rv, &v1, &v2, H * d, "masked decode");
    free(mk);
    free(q.mem);
    free(k.mem);
    free(v.mem);
}

static void *fail_alloc(size_t size, size_t align, void *ctx) {
    (void)size, (void)align, (void)ctx;
    return NULL;
}
static void plain_free(void *p, void *ctx) {
    (void)ctx;
    free(p);
}

static void test_nomem(void) {
    arr q = arr_make(1, 1, 20, 8, 0, -1, 1), k = arr_make(1, 1, 20, 8, 0, -1, 1),
        v = arr_make(1, 1, 20, 8, 0, -1, 1);
    float out[160];
    for (int t = 0; t < 160; t++)
        out[t] = 7.0f;
    attn_view ov = attn_view_4d(out, 1, 1, 20, 8);
    attn_allocator a = {fail_alloc, plain_free, NULL};
    attn_set_allocator(&a);
    attn_opts o = attn_opts_default();
    o.algo = ATTN_ALGO_FLASH;
    CHECK_FAIL(attn_sdpa(&q.v, &k.v, &v.v, &ov, &o), ATTN_ERR_NOMEM, "flash");
    attn_set_allocator(NULL);
    int same = 1;
    for (int t = 0; t < 160; t++)
        same &= out[t] == 7.0f;
    CHECK(same, "out untouched after NOMEM");
    free(q.mem);
    free(k.mem);
    free(v.mem);
}

int main(void) {
    const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    const int n_cfg = quick() ? 60 : 300;
    for (int s = 0; s < 3; s++) {
        if (!attn_isa_supported(isas[s])) {
            printf("test_flash: %s not supported here, not tested\n", attn_isa_name(isas[s]));
            continue;
        }
        CHECK_OK(attn_set_isa(isas[s]));
        const int before = tu_failed;
        for (int t = 0; t < n_cfg; t++) {
            config c;
            config_random(&c);
            check_config(&c, attn_isa_name(isas[s]));
            if (tu_failed - before > 10) break; /* enough to diagnose */
        }
        test_hidden_nonfinite();
        test_empty_rows();
        test_threads();
        test_alone_vs_batched();
        test_decode();
        printf("test_flash: %s: %d configurations against the reference, max |out diff| %.3g, "
               "max lse rel diff %.3g\n",
               attn_isa_name(isas[s]), n_cfg, worst_out, worst_lse);
        worst_out = worst_lse = 0.0;
    }
    test_nomem();
    attn_set_isa(ATTN_ISA_AUTO);
    return tu_summary("test_flash");
}
