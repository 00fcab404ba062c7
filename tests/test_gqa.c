/* test_gqa.c - grouped-query attention through the modules: attn_mha with
 * num_kv_heads (per-head stacks and the fused (D, (H + 2*Hkv)*HS) layout),
 * attn_mha_from_fused_gqa and attn_split_qkv_gqa. References: the module
 * written out here in double, and the same module with K/V heads expanded
 * (np.repeat) to plain multi-head attention. */
#include "testutil.h"

/* The module in double: x (B, Nq, D), xkv (B, Nkv, D), W[p] stacked
 * (heads, D, HS), Wo (H*HS, Dout) or NULL; out (B, Nq, Dout or H*HS). */
static void naive_gqa(const float *x, const float *xkv, int64_t B, int64_t Nq, int64_t Nkv,
                      int64_t D, int64_t H, int64_t Hkv, int64_t HS, const float *Wq,
                      const float *Wk, const float *Wv, const float *bq, const float *bk,
                      const float *bv, const float *Wo, int64_t Dout, int causal, float *out) {
    double *q = malloc((size_t)(Nq * HS) * sizeof *q), *k = malloc((size_t)(Nkv * HS) * sizeof *k);
    double *v = malloc((size_t)(Nkv * HS) * sizeof *v), *s = malloc((size_t)Nkv * sizeof *s);
    double *cat = malloc((size_t)(Nq * H * HS) * sizeof *cat);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / (H / Hkv);
            for (int64_t i = 0; i < Nq; i++)
                for (int64_t e = 0; e < HS; e++) {
                    double a = bq ? bq[h * HS + e] : 0;
                    for (int64_t c = 0; c < D; c++)
                        a += (double)x[(b * Nq + i) * D + c] * Wq[(h * D + c) * HS + e];
                    q[i * HS + e] = a;
                }
            for (int64_t j = 0; j < Nkv; j++)
                for (int64_t e = 0; e < HS; e++) {
                    double a = bk ? bk[g * HS + e] : 0, c2 = bv ? bv[g * HS + e] : 0;
                    for (int64_t c = 0; c < D; c++) {
                        a += (double)xkv[(b * Nkv + j) * D + c] * Wk[(g * D + c) * HS + e];
                        c2 += (double)xkv[(b * Nkv + j) * D + c] * Wv[(g * D + c) * HS + e];
                    }
                    k[j * HS + e] = a, v[j * HS + e] = c2;
                }
            for (int64_t i = 0; i < Nq; i++) {
                const int64_t end = causal ? i + 1 : Nkv;
                double m = -INFINITY, l = 0;
                for (int64_t j = 0; j < end; j++) {
                    double dot = 0;
                    for (int64_t e = 0; e < HS; e++)
                        dot += q[i * HS + e] * k[j * HS + e];
                    s[j] = dot / sqrt((double)HS);
                    m = fmax(m, s[j]);
                }
                for (int64_t j = 0; j < end; j++)
                    l += exp(s[j] - m);
                for (int64_t e = 0; e < HS; e++) {
                    double a = 0;
                    for (int64_t j = 0; j < end; j++)
                        a += exp(s[j] - m) / l * v[j * HS + e];
                    cat[i * H * HS + h * HS + e] = a;
                }
            }
        }
        for (int64_t i = 0; i < Nq; i++)
            if (Wo) {
                for (int64_t o = 0; o < Dout; o++) {
                    double a = 0;
                    for (int64_t c = 0; c < H * HS; c++)
                        a += cat[i * H * HS + c] * Wo[c * Dout + o];
                    out[(b * Nq + i) * Dout + o] = (float)a;
                }
            } else {
                for (int64_t c = 0; c < H * HS; c++)
                    out[(b * Nq + i) * H * HS + c] = (float)cat[i * H * HS + c];
            }
    }
    free(q), free(k), free(v), free(s), free(cat);
}

/* Stacked (heads, D, HS) from the fused matrix's columns [start, start + heads*HS). */
static float *stack_from(const float *W, int64_t D, int64_t C, int64_t start, int64_t heads,
                         int64_t HS) {
    float *r = malloc((size_t)(heads * D * HS) * sizeof *r);
    for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < D; i++)
            for (int64_t e = 0; e < HS; e++)
                r[(h * D + i) * HS + e] = W[i * C + start + h * HS + e];
    return r;
}

/* Repeat each of Hkv stacked heads G times (np.repeat on axis 0). */
static float *repeat_heads(const float *W, int64_t Hkv, int64_t per_head, int64_t G) {
    float *r = malloc((size_t)(Hkv * G * per_head) * sizeof *r);
    for (int64_t g = 0; g < Hkv; g++)
        for (int64_t k = 0; k < G; k++)
            memcpy(r + (g * G + k) * per_head, W + g * per_head, (size_t)per_head * sizeof *r);
    return r;
}

static void test_module(void) {
    static const int64_t cfg[][7] = {/* B, N, Nkv, D, H, Hkv, HS */
                                     {1, 1, 1, 8, 2, 1, 4},    {2, 9, 5, 16, 4, 2, 4},
                                     {1, 13, 13, 24, 6, 3, 8}, {2, 7, 11, 12, 4, 1, 3},
                                     {1, 17, 6, 32, 8, 4, 4},  {3, 5, 5, 10, 5, 5, 2}};
    for (size_t t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
        const int64_t B = cfg[t][0], N = cfg[t][1], Nkv = cfg[t][2], D = cfg[t][3];
        const int64_t H = cfg[t][4], Hkv = cfg[t][5], HS = cfg[t][6], G = H / Hkv;
        const int64_t C = (H + 2 * Hkv) * HS, Dout = D + 1;
        float *x = tu_rand(B * N * D, -1, 1), *xkv = tu_rand(B * Nkv * D, -1, 1);
        float *W = tu_rand(D * C, -0.5f, 0.5f), *bqkv = tu_rand(C, -0.2f, 0.2f);
        float *Wo = tu_rand(H * HS * Dout, -0.5f, 0.5f);
        float *Wq = stack_from(W, D, C, 0, H, HS), *Wk = stack_from(W, D, C, H * HS, Hkv, HS);
        float *Wv = stack_from(W, D, C, (H + Hkv) * HS, Hkv, HS);
        const float *bq = bqkv, *bk = bqkv + H * HS, *bv = bqkv + (H + Hkv) * HS;
        float *want = tu_zeros(B * N * Dout), *got = tu_zeros(B * N * Dout);
        float *got2 = tu_zeros(B * N * Dout);
        attn_view xv = attn_view_3d(x, B, N, D), kvv = attn_view_3d(xkv, B, Nkv, D);
        attn_view ov = attn_view_3d(got, B, N, Dout), o2v = attn_view_3d(got2, B, N, Dout);
        attn_view Wv2 = attn_view_2d(W, D, C), bv2 = attn_view_1d(bqkv, C);
        attn_view Wov = attn_view_2d(Wo, H * HS, Dout);

        attn_mha_params fused, lists = {0};
        CHECK_OK(attn_mha_from_fused_gqa(&Wv2, &bv2, H, Hkv, &Wov, NULL, &fused));
        CHECK(fused.Wk.shape[0] == Hkv && fused.Wq.shape[0] == H && fused.Wq.shape[2] == HS,
              "fused views: %lld %lld", (long long)fused.Wk.shape[0], (long long)fused.Wq.shape[2]);
        lists.num_heads = H;
        lists.num_kv_heads = Hkv;
        lists.Wq = attn_view_3d(Wq, H, D, HS), lists.Wk = attn_view_3d(Wk, Hkv, D, HS);
        lists.Wv = attn_view_3d(Wv, Hkv, D, HS);
        lists.bq = attn_view_2d((float *)bq, H, HS), lists.bk = attn_view_2d((float *)bk, Hkv, HS);
        lists.bv = attn_view_2d((float *)bv, Hkv, HS);
        lists.Wo = Wov;
        for (int algo = 1; algo <= 2; algo++)
            for (int causal = 0; causal <= 1; causal++) {
                attn_opts o = attn_opts_default();
                o.algo = (attn_algo)algo;
                o.causal = causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
                /* self-attention: fused (one GEMM) and lists */
                naive_gqa(x, x, B, N, N, D, H, Hkv, HS, Wq, Wk, Wv, bq, bk, bv, Wo, Dout, causal,
                          want);
                CHECK_OK(attn_mha(&fused, &xv, NULL, &ov, &o));
                CHECK_OK(attn_mha(&lists, &xv, NULL, &o2v, &o));
                double e1 = tu_maxdiff(got, want, B * N * Dout),
                       e2 = tu_maxdiff(got2, want, B * N * Dout);
                CHECK(e1 < 3e-5 && e2 < 3e-5, "cfg %zu algo %d causal %d: fused %g lists %g", t,
                      algo, causal, e1, e2);
                /* cross-attention */
                naive_gqa(x, xkv, B, N, Nkv, D, H, Hkv, HS, Wq, Wk, Wv, bq, bk, bv, Wo, Dout,
                          causal && N == Nkv, want);
                o.causal = causal && N == Nkv ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
                CHECK_OK(attn_mha(&fused, &xv, &kvv, &ov, &o));
                e1 = tu_maxdiff(got, want, B * N * Dout);
                CHECK(e1 < 3e-5, "cfg %zu cross: %g", t, e1);
            }
        /* Expanded to H kv heads (np.repeat), plain MHA gives the same. */
        float *Wke = repeat_heads(Wk, Hkv, D * HS, G), *Wve = repeat_heads(Wv, Hkv, D * HS, G);
        float *bke = repeat_heads(bk, Hkv, HS, G), *bve = repeat_heads(bv, Hkv, HS, G);
        attn_mha_params ex = lists;
        ex.num_kv_heads = 0;
        ex.Wk = attn_view_3d(Wke, H, D, HS), ex.Wv = attn_view_3d(Wve, H, D, HS);
        ex.bk = attn_view_2d(bke, H, HS), ex.bv = attn_view_2d(bve, H, HS);
        attn_opts o = attn_opts_default();
        o.causal = ATTN_CAUSAL_TOP_LEFT;
        CHECK_OK(attn_mha(&lists, &xv, NULL, &ov, &o));
        CHECK_OK(attn_mha(&ex, &xv, NULL, &o2v, &o));
        CHECK(tu_maxdiff(got, got2, B * N * Dout) < 1e-5, "cfg %zu: GQA vs expanded MHA %g", t,
              tu_maxdiff(got, got2, B * N * Dout));
        free(Wke), free(Wve), free(bke), free(bve);
        /* Wrong head counts are named. */
        attn_mha_params bad = lists;
        bad.num_kv_heads = H + 1;
        CHECK_FAIL(attn_mha(&bad, &xv, NULL, &ov, NULL), ATTN_ERR_SHAPE, "num_kv_heads=");
        if (Hkv < H) {
            bad = lists;
            bad.num_kv_heads = 0; /* Wk has Hkv heads, not H */
            char msg[128];
            snprintf(msg, sizeof msg, "attn_mha: Wk.shape[0]=%lld but num_heads=%lld",
                     (long long)Hkv, (long long)H);
            CHECK_FAIL(attn_mha(&bad, &xv, NULL, &ov, NULL), ATTN_ERR_SHAPE, msg);
        }
        free(x), free(xkv), free(W), free(bqkv), free(Wo), free(Wq), free(Wk), free(Wv);
        free(want), free(got), free(got2);
    }
}

static int same(const attn_view *a, const attn_view *b) {
    if (a->data != b->data || a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i] || a->stride[i] != b->stride[i]) return 0;
    return 1;
}

static int same_params(const attn_mha_params *a, const attn_mha_params *b) {
    return a->num_heads == b->num_heads && a->num_kv_heads == b->num_kv_heads &&
           same(&a->Wq, &b->Wq) && same(&a->Wk, &b->Wk) && same(&a->Wv, &b->Wv) &&
           same(&a->bq, &b->bq) && same(&a->bk, &b->bk) && same(&a->bv, &b->bv) &&
           same(&a->Wo, &b->Wo) && same(&a->bo, &b->bo);
}

static void test_fused_and_split(void) {
    enum { B = 2, N = 5, D = 12, H = 6, Hkv = 2, HS = 3, C = (H + 2 * Hkv) * HS };
    float *W = tu_rand(D * 3 * D, -1, 1), *qkv = tu_rand(B * N * C, -1, 1);
    /* With Hkv = H and HS = D/H the GQA form equals the old one exactly. */
    attn_view W3 = attn_view_2d(W, D, 3 * D);
    attn_mha_params a, b;
    CHECK_OK(attn_mha_from_fused(&W3, NULL, 4, NULL, NULL, &a));
    CHECK_OK(attn_mha_from_fused_gqa(&W3, NULL, 4, 0, NULL, NULL, &b));
    CHECK(same_params(&a, &b), "from_fused_gqa(Hkv = H) differs from from_fused");
    CHECK_OK(attn_mha_from_fused_gqa(&W3, NULL, 4, 4, NULL, NULL, &b));
    CHECK(same_params(&a, &b), "from_fused_gqa(Hkv = 4 = H) differs");
    /* A head size other than D / H: Wqkv (D, (H + 2*Hkv)*HS) with H*HS != D. */
    attn_view Wg = attn_view_2d(W, D, 20); /* H = 2, Hkv = 1, HS = 5 */
    CHECK_OK(attn_mha_from_fused_gqa(&Wg, NULL, 2, 1, NULL, NULL, &b));
    CHECK(b.Wq.shape[2] == 5 && b.Wk.shape[0] == 1 && b.Wv.data == W + 15,
          "HS != D/H: HS %lld, v at %td", (long long)b.Wq.shape[2], b.Wv.data - W);

    attn_view qv = attn_view_3d(qkv, B, N, C), q, k, v;
    CHECK_OK(attn_split_qkv_gqa(&qv, H, Hkv, &q, &k, &v));
    CHECK(q.shape[1] == H && k.shape[1] == Hkv && v.shape[1] == Hkv && q.shape[3] == HS,
          "split shapes");
    int ok = 1;
    for (int bb = 0; bb < B; bb++)
        for (int n = 0; n < N; n++)
            for (int e = 0; e < HS; e++) {
                for (int h = 0; h < H; h++)
                    ok &= *(q.data + bb * q.stride[0] + h * q.stride[1] + n * q.stride[2] +
                            e * q.stride[3]) == qkv[(bb * N + n) * C + h * HS + e];
                for (int g = 0; g < Hkv; g++) {
                    ok &= *(k.data + bb * k.stride[0] + g * k.stride[1] + n * k.stride[2] +
                            e * k.stride[3]) == qkv[(bb * N + n) * C + H * HS + g * HS + e];
                    ok &= *(v.data + bb * v.stride[0] + g * v.stride[1] + n * v.stride[2] +
                            e * v.stride[3]) == qkv[(bb * N + n) * C + (H + Hkv) * HS + g * HS + e];
                }
            }
    CHECK(ok, "split_qkv_gqa element mapping");
    /* Hkv = H: equals attn_split_qkv. */
    attn_view q2, k2, v2;
    attn_view q3 = attn_view_3d(qkv, B, N, 30);
    CHECK_OK(attn_split_qkv(&q3, 5, &q, &k, &v));
    CHECK_OK(attn_split_qkv_gqa(&q3, 5, 0, &q2, &k2, &v2));
    CHECK(same(&q, &q2) && same(&k, &k2) && same(&v, &v2),
          "split_qkv_gqa(Hkv = H) differs from split_qkv");
    /* The split parts run attn_sdpa as GQA directly. */
    float out[B * H * N * HS];
    attn_view ov = attn_view_4d(out, B, H, N, HS);
    CHECK_OK(attn_split_qkv_gqa(&qv, H, Hkv, &q, &k, &v));
    CHECK_OK(attn_sdpa(&q, &k, &v, &ov, NULL));

    CHECK_FAIL(attn_split_qkv_gqa(&qv, H, 4, &q, &k, &v), ATTN_ERR_SHAPE,
               "attn_split_qkv_gqa: num_kv_heads=4 must divide num_heads=6");
    CHECK_FAIL(attn_split_qkv_gqa(&qv, 4, 2, &q, &k, &v), ATTN_ERR_SHAPE,
               "qkv.shape[2]=30 is not a multiple of num_heads + 2*num_kv_heads=8");
    CHECK_FAIL(attn_split_qkv_gqa(&qv, INT64_MAX, 1, &q, &k, &v), ATTN_ERR_SHAPE,
               "num_heads=9223372036854775807 must be 1..qkv.shape[2]=30");
    CHECK_FAIL(attn_split_qkv_gqa(&qv, H, -1, &q, &k, &v), ATTN_ERR_SHAPE, "num_kv_heads=-1");
    CHECK_FAIL(attn_split_qkv_gqa(&qv, H, Hkv, NULL, &k, &v), ATTN_ERR_NULL, "must not be NULL");
    CHECK_FAIL(attn_mha_from_fused_gqa(&Wg, NULL, 4, 1, NULL, NULL, &b), ATTN_ERR_SHAPE,
               "attn_mha_from_fused_gqa: Wqkv.shape[1]=20 is not a multiple of num_heads + "
               "2*num_kv_heads=6");
    CHECK_FAIL(attn_mha_from_fused_gqa(&Wg, NULL, 0, 0, NULL, NULL, &b), ATTN_ERR_SHAPE,
               "num_heads=0 must be 1..");
    CHECK_FAIL(attn_mha_from_fused_gqa(&Wg, NULL, 2, 1, NULL, NULL, NULL), ATTN_ERR_NULL,
               "p is NULL");
    attn_view bb = attn_view_1d(W, 19);
    CHECK_FAIL(attn_mha_from_fused_gqa(&Wg, &bb, 2, 1, NULL, NULL, &b), ATTN_ERR_SHAPE,
               "bqkv.shape[0]=19 but Wqkv.shape[1]=20");
    free(W), free(qkv);
}

int main(void) {
    for (int isa = ATTN_ISA_GENERIC; isa <= ATTN_ISA_AVX512; isa++) {
        if (!attn_isa_supported((attn_isa)isa)) continue;
        CHECK_OK(attn_set_isa((attn_isa)isa));
        test_module();
    }
    test_fused_and_split();
    return tu_summary("test_gqa");
}
