/* test_fold.c - the resumable fold (attn_fold_*): folding chunk-aligned key
 * shards in ascending order equals attn_sdpa bit for bit (memcmp of out and
 * lse), per ISA, for random shapes, causal rules, GQA, masks, key lengths,
 * positions, window, softcap, ALiBi, sinks (entering once, in the initial
 * state), thread counts and shard cuts; rows with no visible key, NaN
 * propagation, skipped invisible shards; every argument error leaves the
 * state untouched. */
#include "testutil.h"

#include "internal.h"

static int quick(void) {
    return getenv("ATTN_TEST_QUICK") != NULL;
}

static const int64_t sizes_nq[] = {1, 2, 3, 7, 16, 17, 33, 64, 65, 100};
static const int64_t sizes_nkv[] = {1,    5,    64,   511,  512,  513, 700,
                                    1024, 1100, 1536, 1537, 2049, 2500};
static const int64_t sizes_d[] = {1, 3, 8, 16, 40, 64, 72};
#define PICK(a) a[tu_int(0, (int64_t)(sizeof a / sizeof a[0]) - 1)]

typedef struct config {
    int64_t B, H, Hkv, Nq, Nkv, d, dv;
    attn_causal causal;
    int mask, kl, pos, nan_q, strided;
    int64_t wl, wr; /* window_left, window_right (-1: unbounded) */
    float softcap;
    int alibi, sinks;
    int64_t mshape[4];
    float scale;
} config;

static void config_random(config *c) {
    for (;;) {
        c->B = tu_int(1, 2);
        c->Hkv = tu_int(1, 2);
        c->H = c->Hkv * tu_int(1, 3);
        c->Nq = PICK(sizes_nq);
        c->Nkv = PICK(sizes_nkv);
        c->d = PICK(sizes_d);
        c->dv = tu_int(0, 2) == 0 ? PICK(sizes_d) : c->d;
        if ((double)c->B * c->H * c->Nq * c->Nkv * (c->d + c->dv) < 4e6) break;
    }
    c->causal = (attn_causal)tu_int(0, 2);
    c->mask = tu_int(0, 2) == 0;
    const int64_t full[4] = {c->B, c->H, c->Nq, c->Nkv};
    for (int i = 0; i < 4; i++)
        c->mshape[i] = tu_int(0, 1) ? full[i] : 1;
    c->kl = tu_int(0, 2) == 0;
    c->pos = tu_int(0, 3) == 0; /* explicit q_offset / k_offset */
    c->nan_q = tu_int(0, 5) == 0;
    c->strided = (int)tu_int(0, 1);
    c->scale = tu_int(0, 3) == 0 ? tu_uniform(0.05f, 0.6f) : NAN;
    c->wl = tu_int(0, 2) == 0 ? tu_int(0, 1200) : -1;
    c->wr = tu_int(0, 3) == 0 ? tu_int(0, 700) : -1;
    c->softcap = tu_int(0, 3) == 0 ? tu_uniform(0.5f, 5.0f) : 0.0f;
    c->alibi = tu_int(0, 3) == 0;
    c->sinks = tu_int(0, 3) == 0;
}

/* A (n0, n1, n2, n3) view; strided: memory (n0, n2, n1, n3). */
static attn_view make4(float *mem, int64_t n0, int64_t n1, int64_t n2, int64_t n3, int strided) {
    attn_view a = attn_view_4d(mem, n0, n1, n2, n3);
    if (strided) {
        a.stride[1] = n3;
        a.stride[2] = n1 * n3;
    }
    return a;
}

/* Fold c's keys in random chunk-aligned shards (ascending), each step with
 * its own thread count, and compare with attn_sdpa by memcmp. */
static void check_config(const config *c, const char *isa) {
    const int64_t nq = c->B * c->H * c->Nq * c->d, nk = c->B * c->Hkv * c->Nkv * c->d,
                  nv = c->B * c->Hkv * c->Nkv * c->dv, no = c->B * c->H * c->Nq * c->dv,
                  nl = c->B * c->H * c->Nq;
    float *qm = tu_rand(nq, -1, 1), *km = tu_rand(nk, -1, 1), *vm = tu_rand(nv, -1, 1);
    attn_view q = make4(qm, c->B, c->H, c->Nq, c->d, c->strided);
    attn_view k = make4(km, c->B, c->Hkv, c->Nkv, c->d, c->strided);
    attn_view v = make4(vm, c->B, c->Hkv, c->Nkv, c->dv, c->strided);
    if (c->nan_q) *attn__at4(&q, c->B - 1, c->H - 1, c->Nq / 2, 0) = NAN;
    int64_t mn = c->mshape[0] * c->mshape[1] * c->mshape[2] * c->mshape[3];
    float *mm = tu_rand(mn, -2, 2);
    for (int64_t t = 0; t < mn; t++) {
        if (tu_int(0, 4) == 0) mm[t] = -INFINITY;
        if (tu_int(0, 9) == 0) mm[t] -= 1e9f; /* offsets that need the shift */
    }
    attn_view mask = attn_view_4d(mm, c->mshape[0], c->mshape[1], c->mshape[2], c->mshape[3]);
    int64_t kl[2], qo[2];
    for (int64_t b = 0; b < c->B; b++) {
        kl[b] = tu_int(0, 5) == 0 ? 0 : tu_int(0, c->Nkv);
        qo[b] = tu_int(-5, c->Nkv + 5);
    }

    float *out_ref = tu_zeros(no), *lse_ref = tu_zeros(nl);
    float *out_f = tu_rand(no, -9, 9), *lse_f = tu_rand(nl, -9, 9);
    attn_view o_ref = attn_view_4d(out_ref, c->B, c->H, c->Nq, c->dv);
    attn_view l_ref = attn_view_3d(lse_ref, c->B, c->H, c->Nq);
    attn_view o_f = attn_view_4d(out_f, c->B, c->H, c->Nq, c->dv);
    attn_view l_f = attn_view_3d(lse_f, c->B, c->H, c->Nq);
    attn_opts o = attn_opts_default();
    o.scale = c->scale;
    o.causal = c->causal;
    o.mask = c->mask ? &mask : NULL;
    o.key_lengths = c->kl ? kl : NULL;
    if (c->pos) {
        o.q_offset = qo;
        o.k_offset = tu_int(-3, 3);
    }
    o.window_left = c->wl;
    o.window_right = c->wr;
    o.softcap = c->softcap;
    float slopes[6], sinks[6];
    attn_alibi_slopes(c->H, slopes);
    for (int64_t h = 0; h < c->H; h++)
        sinks[h] = tu_uniform(-3, 3);
    o.alibi_slopes = c->alibi ? slopes : NULL;
    o.sinks = c->sinks ? sinks : NULL;
    o.num_threads = (int)tu_int(1, 3);
    o.lse = &l_ref;
    CHECK_OK(attn_sdpa(&q, &k, &v, &o_ref, &o));
    o.lse = NULL;

    float *mem = tu_rand(attn_fold_floats(c->B, c->H, c->Nq, c->dv), -5, 5);
    attn_fold f;
    CHECK_OK(attn_fold_bind(&f, mem, c->B, c->H, c->Nq, c->dv));
    CHECK_OK(attn_fold_init(&f, &q, c->Nkv, &o));
    int steps = 0;
    for (int64_t j0 = 0; j0 < c->Nkv;) {
        int64_t j1 = j0 + ATTN_KEY_CHUNK * tu_int(1, 3);
        if (j1 > c->Nkv) j1 = c->Nkv;
        attn_view ks = k, vs = v;
        ks.data += j0 * k.stride[2];
        vs.data += j0 * v.stride[2];
        ks.shape[2] = vs.shape[2] = j1 - j0;
        o.num_threads = (int)tu_int(1, 3);
        CHECK_OK(attn_fold_step(&f, &q, &ks, &vs, j0, &o));
        steps++;
        j0 = j1;
    }
    o.num_threads = (int)tu_int(1, 3);
    CHECK_OK(attn_fold_finish(&f, &o_f, &l_f, &o));
    const int same = memcmp(out_ref, out_f, (size_t)no * sizeof(float)) == 0 &&
                     memcmp(lse_ref, lse_f, (size_t)nl * sizeof(float)) == 0;
    CHECK(same,
          "%s: fold of %d shards != attn_sdpa: B=%lld H=%lld Hkv=%lld Nq=%lld Nkv=%lld d=%lld "
          "dv=%lld causal=%d mask=%d (%lld,%lld,%lld,%lld) kl=%d pos=%d nan=%d strided=%d "
          "window=(%lld,%lld) softcap=%g alibi=%d sinks=%d max |diff| %g",
          isa, steps, (long long)c->B, (long long)c->H, (long long)c->Hkv, (long long)c->Nq,
          (long long)c->Nkv, (long long)c->d, (long long)c->dv, (int)c->causal, c->mask,
          (long long)c->mshape[0], (long long)c->mshape[1], (long long)c->mshape[2],
          (long long)c->mshape[3], c->kl, c->pos, c->nan_q, c->strided, (long long)c->wl,
          (long long)c->wr, (double)c->softcap, c->alibi, c->sinks, tu_maxdiff(out_ref, out_f, no));
    free(qm);
    free(km);
    free(vm);
    free(mm);
    free(out_ref);
    free(lse_ref);
    free(out_f);
    free(lse_f);
    free(mem);
}

/* Causal self-attention whose last shard is invisible to every query: the
 * fold may skip it and still equal attn_sdpa; rows with no visible key
 * (key length 0) give zeros and -inf; the state of a row no step reaches
 * is left bit for bit. */
static void test_skip_and_empty(void) {
    const int64_t Nq = 40, Nkv = 1500, d = 16;
    float *qm = tu_rand(2 * Nq * d, -1, 1), *km = tu_rand(2 * Nkv * d, -1, 1),
          *vm = tu_rand(2 * Nkv * d, -1, 1);
    attn_view q = attn_view_4d(qm, 2, 1, Nq, d), k = attn_view_4d(km, 2, 1, Nkv, d),
              v = attn_view_4d(vm, 2, 1, Nkv, d);
    int64_t qo[2] = {600, 700}, kl[2] = {Nkv, 0};
    attn_opts o = attn_opts_default();
    o.causal = ATTN_CAUSAL_TOP_LEFT;
    o.q_offset = qo;
    o.key_lengths = kl;
    float *ref = tu_zeros(2 * Nq * d), *got = tu_zeros(2 * Nq * d), lr[80], lg[80];
    attn_view orf = attn_view_4d(ref, 2, 1, Nq, d), og = attn_view_4d(got, 2, 1, Nq, d);
    attn_view lrv = attn_view_3d(lr, 2, 1, Nq), lgv = attn_view_3d(lg, 2, 1, Nq);
    o.lse = &lrv;
    CHECK_OK(attn_sdpa(&q, &k, &v, &orf, &o));
    o.lse = NULL;
    float *mem = tu_zeros(attn_fold_floats(2, 1, Nq, d));
    attn_fold f;
    CHECK_OK(attn_fold_bind(&f, mem, 2, 1, Nq, d));
    CHECK_OK(attn_fold_init(&f, &q, Nkv, &o));
    attn_view ks = k, vs = v;
    ks.shape[2] = vs.shape[2] = 1024;
    CHECK_OK(attn_fold_step(&f, &q, &ks, &vs, 0, &o)); /* keys 1024.. are above every query */
    CHECK_OK(attn_fold_finish(&f, &og, &lgv, NULL));
    CHECK(memcmp(ref, got, sizeof(float) * 2 * Nq * d) == 0 && memcmp(lr, lg, sizeof lr) == 0,
          "skipping an invisible shard changes nothing");
    int empty = 1;
    for (int64_t i = 0; i < Nq; i++) {
        empty &= lg[Nq + i] == -INFINITY;
        for (int64_t e = 0; e < d; e++)
            empty &= got[(Nq + i) * d + e] == 0.0f;
    }
    CHECK(empty, "batch 1 (key length 0): zeros and lse -inf");

    /* A fresh state finishes as empty rows. */
    CHECK_OK(attn_fold_init(&f, &q, Nkv, &o));
    CHECK_OK(attn_fold_finish(&f, &og, NULL, NULL));
    int zeros = 1;
    for (int64_t t = 0; t < 2 * Nq * d; t++)
        zeros &= got[t] == 0.0f;
    CHECK(zeros, "a fold with no step gives zeros");
    free(qm);
    free(km);
    free(vm);
    free(ref);
    free(got);
    free(mem);
}

/* Every failing call leaves the state (and outputs) untouched. */
static void test_errors(void) {
    const int64_t Nq = 8, Nkv = 1100, d = 4;
    float *qm = tu_rand(Nq * d, -1, 1), *km = tu_rand(Nkv * d, -1, 1),
          *vm = tu_rand(Nkv * d, -1, 1);
    attn_view q = attn_view_4d(qm, 1, 1, Nq, d), k = attn_view_4d(km, 1, 1, Nkv, d),
              v = attn_view_4d(vm, 1, 1, Nkv, d);
    const int64_t nf = attn_fold_floats(1, 1, Nq, d);
    CHECK(nf == Nq * (3 + d), "attn_fold_floats = B*H*Nq*(3+dv): %lld", (long long)nf);
    CHECK(attn_fold_floats(1, 0, 1, 1) == -1 && attn_fold_floats(INT64_MAX, 2, 1, 1) == -1,
          "attn_fold_floats rejects sizes < 1 and overflow");
    CHECK(attn_key_chunk() == ATTN_KEY_CHUNK, "attn_key_chunk() = %lld",
          (long long)attn_key_chunk());
    float *mem = tu_zeros(nf), *snap = tu_zeros(nf);
    attn_fold f;
    CHECK_FAIL(attn_fold_bind(&f, NULL, 1, 1, Nq, d), ATTN_ERR_NULL, "mem");
    CHECK_FAIL(attn_fold_bind(&f, mem, 1, 0, Nq, d), ATTN_ERR_SHAPE, "H=0");
    CHECK_OK(attn_fold_bind(&f, mem, 1, 1, Nq, d));
    attn_opts o = attn_opts_default();
    CHECK_FAIL(attn_fold_step(&f, &q, &k, &v, 0, &o), ATTN_ERR_ARG, "attn_fold_init first");
    CHECK_FAIL(attn_fold_init(&f, &q, 0, &o), ATTN_ERR_SHAPE, "nkv=0");
    CHECK_OK(attn_fold_init(&f, &q, Nkv, &o));
    memcpy(snap, mem, (size_t)nf * sizeof(float));
    attn_view ks = k, vs = v;
    ks.shape[2] = vs.shape[2] = 600;
    CHECK_FAIL(attn_fold_step(&f, &q, &ks, &vs, 0, &o), ATTN_ERR_ARG,
               "k_offset + k.shape[2] = 0 + 600");
    ks.data += 100 * d;
    vs.data += 100 * d;
    ks.shape[2] = vs.shape[2] = 412;
    CHECK_FAIL(attn_fold_step(&f, &q, &ks, &vs, 100, &o), ATTN_ERR_ARG, "k_offset=100");
    ks.shape[2] = vs.shape[2] = 600;
    CHECK_FAIL(attn_fold_step(&f, &q, &ks, &vs, 1024, &o), ATTN_ERR_ARG, "1024 + 600");
    CHECK_FAIL(attn_fold_step(&f, &q, &k, &v, -512, &o), ATTN_ERR_ARG, "k_offset=-512");
    attn_view q2 = attn_view_4d(qm, 1, 1, Nq / 2, d);
    CHECK_FAIL(attn_fold_step(&f, &q2, &k, &v, 0, &o), ATTN_ERR_SHAPE, "f->max.shape[2]=8");
    o.dropout_p = 0.5f;
    CHECK_FAIL(attn_fold_step(&f, &q, &k, &v, 0, &o), ATTN_ERR_ARG, "dropout");
    o.dropout_p = 0.0f;
    o.algo = ATTN_ALGO_REFERENCE;
    CHECK_FAIL(attn_fold_step(&f, &q, &k, &v, 0, &o), ATTN_ERR_ARG, "REFERENCE");
    o.algo = ATTN_ALGO_AUTO;
    int64_t kl[1] = {Nkv + 1};
    o.key_lengths = kl;
    CHECK_FAIL(attn_fold_step(&f, &q, &k, &v, 0, &o), ATTN_ERR_ARG, "key_lengths[0]=1101");
    o.key_lengths = NULL;
    float mm[2] = {0, 0};
    attn_view mask = attn_view_4d(mm, 1, 1, 1, 2);
    o.mask = &mask;
    CHECK_FAIL(attn_fold_step(&f, &q, &k, &v, 0, &o), ATTN_ERR_SHAPE, "mask.shape[3]=2");
    o.mask = NULL;
    attn_fold g = f;
    g.sum = g.max; /* overlapping state views */
    CHECK_FAIL(attn_fold_step(&g, &q, &k, &v, 0, &o), ATTN_ERR_STRIDE, "f->sum");
    g = f;
    g.acc.data = km; /* the state may not overlap an input */
    CHECK_FAIL(attn_fold_step(&g, &q, &k, &v, 0, &o), ATTN_ERR_STRIDE, "f->acc");
    CHECK(memcmp(snap, mem, (size_t)nf * sizeof(float)) == 0,
          "failed steps leave the state untouched");
    float out[32], ref[32];
    for (int t = 0; t < 32; t++)
        out[t] = ref[t] = (float)t;
    attn_view ov = attn_view_4d(out, 1, 1, Nq, d + 1);
    CHECK_FAIL(attn_fold_finish(&f, &ov, NULL, NULL), ATTN_ERR_SHAPE, "out.shape[3]=5");
    ov = attn_view_4d(mem, 1, 1, Nq, d);
    CHECK_FAIL(attn_fold_finish(&f, &ov, NULL, NULL), ATTN_ERR_STRIDE, "out");
    CHECK(memcmp(out, ref, sizeof out) == 0 && memcmp(snap, mem, (size_t)nf * sizeof(float)) == 0,
          "failed finishes write nothing");
    free(qm);
    free(km);
    free(vm);
    free(mem);
    free(snap);
}

/* A mask broadcast over the keys (stride 0) of a fold over 2^40 keys: the
 * init looks once per row, not 2^40 times (a fuzz_api timeout), and the
 * state's shift is that value. */
static void test_broadcast_mask_huge_nkv(void) {
    const int64_t Nq = 3, d = 4;
    float *qm = tu_rand(Nq * d, -1, 1), mval[Nq];
    for (int64_t i = 0; i < Nq; i++)
        mval[i] = -2.0f + (float)i;
    float *mem = tu_zeros(attn_fold_floats(1, 1, Nq, d));
    attn_fold f;
    CHECK_OK(attn_fold_bind(&f, mem, 1, 1, Nq, d));
    attn_view q = attn_view_4d(qm, 1, 1, Nq, d);
    attn_view m = attn_view_4d(mval, 1, 1, Nq, (int64_t)1 << 40);
    m.stride[2] = 1, m.stride[3] = 0; /* mask[0, 0, i, j] = mval[i] */
    attn_opts o = attn_opts_default();
    o.mask = &m;
    CHECK_OK(attn_fold_init(&f, &q, (int64_t)1 << 40, &o));
    int same = 1;
    for (int64_t i = 0; i < Nq; i++)
        same &= *attn__at3(&f.shift, 0, 0, i) == mval[i];
    CHECK(same, "broadcast mask: the shift is the row's mask value");
    free(qm);
    free(mem);
}

int main(void) {
    test_errors();
    test_skip_and_empty();
    test_broadcast_mask_huge_nkv();
    const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    const int n = quick() ? 25 : 120;
    for (int s = 0; s < 3; s++) {
        if (!attn_isa_supported(isas[s])) {
            printf("test_fold: %s not supported here, not run\n", attn_isa_name(isas[s]));
            continue;
        }
        CHECK_OK(attn_set_isa(isas[s]));
        const int before = tu_failed;
        for (int t = 0; t < n; t++) {
            config c;
            config_random(&c);
            check_config(&c, attn_isa_name(isas[s]));
        }
        printf("test_fold: %s: %d configurations, %s\n", attn_isa_name(isas[s]), n,
               tu_failed == before ? "all bit-identical" : "MISMATCHES");
    }
    attn_set_isa(ATTN_ISA_AUTO);
    return tu_summary("test_fold");
}
