/* test_modules.c - softmax, linear, layer norm and the attention modules
 * (S1-S7, S9): against formulas computed here, and against each other where
 * the article says two forms are the same computation. */
#include "testutil.h"

/* y = x @ W (+ b), x (n, in), W (in, out), computed here in double. */
static void naive_linear(const float *x, const float *W, const float *b, float *y, int64_t n,
                         int64_t in, int64_t out) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < in; i++)
                acc += (double)x[r * in + i] * W[i * out + o];
            y[r * out + o] = (float)acc;
        }
}

/* Single-head attention from projected q (Nq, e), k (Nkv, e), v (Nkv, f). */
static void naive_attention(const float *q, const float *k, const float *v, float *out, int64_t Nq,
                            int64_t Nkv, int64_t e, int64_t f, int causal) {
    double *s = malloc((size_t)Nkv * sizeof(double));
    for (int64_t i = 0; i < Nq; i++) {
        double m = -INFINITY, l = 0;
        int64_t end = causal ? i + 1 : Nkv;
        for (int64_t j = 0; j < end; j++) {
            double dot = 0;
            for (int64_t c = 0; c < e; c++)
                dot += (double)q[i * e + c] * k[j * e + c];
            s[j] = dot / sqrt((double)e);
            m = fmax(m, s[j]);
        }
        for (int64_t j = 0; j < end; j++)
            l += exp(s[j] - m);
        for (int64_t c = 0; c < f; c++) {
            double acc = 0;
            for (int64_t j = 0; j < end; j++)
                acc += exp(s[j] - m) / l * v[j * f + c];
            out[i * f + c] = (float)acc;
        }
    }
    free(s);
}

static void test_softmax(void) {
    /* Hand-worked: softmax(0, log 3) = (1/4, 3/4). */
    float x[2] = {0.0f, logf(3.0f)}, y[2];
    attn_view xv = attn_view_1d(x, 2), yv = attn_view_1d(y, 2);
    CHECK_OK(attn_softmax(&xv, &yv));
    CHECK(fabsf(y[0] - 0.25f) < 1e-7f && fabsf(y[1] - 0.75f) < 1e-7f, "%g %g", y[0], y[1]);

    /* Rank 4, rows sum to 1, invariant to adding a constant per row. */
    enum { A = 2, B = 3, C = 5, N = 17 };
    float *a = tu_rand(A * B * C * N, -30, 30), s1[A * B * C * N], s2[A * B * C * N];
    float shifted[A * B * C * N];
    for (int r = 0; r < A * B * C; r++)
        for (int j = 0; j < N; j++)
            shifted[r * N + j] = a[r * N + j] + 100.0f * (float)(r % 3);
    attn_view av = attn_view_4d(a, A, B, C, N), s1v = attn_view_4d(s1, A, B, C, N);
    attn_view shv = attn_view_4d(shifted, A, B, C, N), s2v = attn_view_4d(s2, A, B, C, N);
    CHECK_OK(attn_softmax(&av, &s1v));
    CHECK_OK(attn_softmax(&shv, &s2v));
    for (int r = 0; r < A * B * C; r++) {
        double sum = 0;
        for (int j = 0; j < N; j++)
            sum += s1[r * N + j];
        CHECK(fabs(sum - 1.0) < 1e-6, "row %d sums to %.9g", r, sum);
    }
    /* The shift is exact in float only up to rounding of x + 100k. */
    CHECK(tu_maxdiff(s1, s2, A * B * C * N) < 1e-5, "shift: %g", tu_maxdiff(s1, s2, A * B * C * N));

    /* Large magnitudes do not overflow; -inf rows give zeros; in place. */
    float big[4] = {1e30f, 1e30f, -INFINITY, -INFINITY};
    attn_view bv = attn_view_2d(big, 2, 2);
    CHECK_OK(attn_softmax(&bv, &bv));
    CHECK(big[0] == 0.5f && big[1] == 0.5f && big[2] == 0.0f && big[3] == 0.0f,
          "big/-inf rows: %g %g %g %g", big[0], big[1], big[2], big[3]);

    /* A transposed (strided) input: softmax over columns of a (3, 2) matrix. */
    float m[6] = {1, 2, 3, 4, 5, 6}, out[6];
    attn_view mt = attn_view_swap(attn_view_2d(m, 3, 2), 0, 1); /* (2, 3) */
    attn_view ov = attn_view_2d(out, 2, 3);
    CHECK_OK(attn_softmax(&mt, &ov));
    double e1 = exp(1), e3 = exp(3), e5 = exp(5);
    CHECK(fabs(out[0] - e1 / (e1 + e3 + e5)) < 1e-7, "strided softmax %g", out[0]);
    free(a);
}

static void test_linear_and_layer_norm(void) {
    enum { B = 3, N = 7, IN = 13, OUT = 5 };
    float *x = tu_rand(B * N * IN, -1, 1), *W = tu_rand(IN * OUT, -1, 1), *b = tu_rand(OUT, -1, 1);
    float y1[B * N * OUT], y2[B * N * OUT];
    naive_linear(x, W, b, y1, B * N, IN, OUT);
    attn_view xv = attn_view_3d(x, B, N, IN), Wv = attn_view_2d(W, IN, OUT),
              bv = attn_view_1d(b, OUT);
    attn_view yv = attn_view_3d(y2, B, N, OUT);
    CHECK_OK(attn_linear(&xv, &Wv, &bv, &yv, 0));
    CHECK(tu_maxdiff(y1, y2, B * N * OUT) < 1e-5, "linear: %g", tu_maxdiff(y1, y2, B * N * OUT));
    /* W stored as PyTorch's (out, in) and seen transposed. */
    float Wt[OUT * IN];
    for (int i = 0; i < IN; i++)
        for (int o = 0; o < OUT; o++)
            Wt[o * IN + i] = W[i * OUT + o];
    attn_view Wtv = attn_view_swap(attn_view_2d(Wt, OUT, IN), 0, 1);
    CHECK_OK(attn_linear(&xv, &Wtv, &bv, &yv, 1));
    CHECK(tu_maxdiff(y1, y2, B * N * OUT) < 1e-5, "linear, W transposed: %g",
          tu_maxdiff(y1, y2, B * N * OUT));
    /* Output with a non-unit column stride: y stored transposed. */
    float yt[OUT * B * N];
    attn_view ytv = attn_view_swap(attn_view_2d(yt, OUT, B * N), 0, 1);
    attn_view x2 = attn_view_2d(x, B * N, IN);
    CHECK_OK(attn_linear(&x2, &Wv, &bv, &ytv, 0));
    double worst = 0;
    for (int r = 0; r < B * N; r++)
        for (int o = 0; o < OUT; o++)
            worst = fmax(worst, fabs(yt[o * B * N + r] - y1[r * OUT + o]));
    CHECK(worst < 1e-5, "linear into a transposed y: %g", worst);
    CHECK_FAIL(attn_linear(&xv, &bv, NULL, &yv, 0), ATTN_ERR_SHAPE,
               "attn_linear: W.ndim=1 but must be 2");
    attn_view yb = attn_view_3d(y2, B, N, OUT - 1);
    CHECK_FAIL(attn_linear(&xv, &Wv, NULL, &yb, 0), ATTN_ERR_SHAPE,
               "attn_linear: y.shape[2]=4 but W.shape[1]=5 (W is (in, out))");

    /* Layer norm: against the formula, then mean 0 / variance 1 without gain. */
    float g[IN], be[IN], ln[B * N * IN], want[B * N * IN];
    for (int j = 0; j < IN; j++)
        g[j] = tu_uniform(0.5f, 2), be[j] = tu_uniform(-1, 1);
    for (int r = 0; r < B * N; r++) {
        double mu = 0, var = 0;
        for (int j = 0; j < IN; j++)
            mu += x[r * IN + j];
        mu /= IN;
        for (int j = 0; j < IN; j++)
            var += (x[r * IN + j] - mu) * (x[r * IN + j] - mu);
        var /= IN;
        for (int j = 0; j < IN; j++)
            want[r * IN + j] = (float)((x[r * IN + j] - mu) / sqrt(var + 1e-5) * g[j] + be[j]);
    }
    attn_view gv = attn_view_1d(g, IN), bev = attn_view_1d(be, IN),
              lnv = attn_view_3d(ln, B, N, IN);
    CHECK_OK(attn_layer_norm(&xv, &gv, &bev, 1e-5f, &lnv));
    CHECK(tu_maxdiff(ln, want, B * N * IN) < 1e-5, "layer norm: %g",
          tu_maxdiff(ln, want, B * N * IN));
    CHECK_OK(attn_layer_norm(&xv, NULL, NULL, 0.0f, &lnv));
    double mu = 0, var = 0;
    for (int j = 0; j < IN; j++)
        mu += ln[j];
    for (int j = 0; j < IN; j++)
        var += (ln[j] - mu / IN) * (ln[j] - mu / IN);
    CHECK(fabs(mu / IN) < 1e-6 && fabs(var / IN - 1) < 1e-5, "normalised row: mean %g var %g",
          mu / IN, var / IN);
    attn_view gb = attn_view_1d(g, IN - 1);
    CHECK_FAIL(attn_layer_norm(&xv, &gb, NULL, 1e-5f, &lnv), ATTN_ERR_SHAPE,
               "gamma.shape[0]=12 but x.shape[2]=13");
    CHECK_FAIL(attn_layer_norm(&xv, NULL, NULL, -1.0f, &lnv), ATTN_ERR_ARG, "eps=-1");
    free(x), free(W), free(b);
}

/* S2/S3: one function for one sequence and for a batch, against the formula. */
static void test_self_attention(void) {
    static const int64_t shapes[][4] = {{1, 1, 1, 1},   {2, 5, 8, 3}, {3, 13, 7, 1},
                                        {1, 31, 16, 8}, {2, 1, 5, 5}, {4, 17, 12, 6}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int64_t B = shapes[t][0], N = shapes[t][1], D = shapes[t][2], HS = shapes[t][3];
        float *x = tu_rand(B * N * D, -1, 1), *Wq = tu_rand(D * HS, -1, 1);
        float *Wk = tu_rand(D * HS, -1, 1), *Wv = tu_rand(D * HS, -1, 1);
        float *q = tu_zeros(N * HS), *k = tu_zeros(N * HS), *v = tu_zeros(N * HS);
        float *want = tu_zeros(B * N * HS), *got = tu_zeros(B * N * HS), *one = tu_zeros(N * HS);
        for (int causal = 0; causal <= 1; causal++) {
            for (int64_t b = 0; b < B; b++) {
                naive_linear(x + b * N * D, Wq, NULL, q, N, D, HS);
                naive_linear(x + b * N * D, Wk, NULL, k, N, D, HS);
                naive_linear(x + b * N * D, Wv, NULL, v, N, D, HS);
                naive_attention(q, k, v, want + b * N * HS, N, N, HS, HS, causal);
            }
            attn_view xv = attn_view_3d(x, B, N, D), ov = attn_view_3d(got, B, N, HS);
            attn_view wq = attn_view_2d(Wq, D, HS), wk = attn_view_2d(Wk, D, HS),
                      wv = attn_view_2d(Wv, D, HS);
            attn_opts o = attn_opts_default();
            o.causal = causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
            CHECK_OK(attn_self_attention(&xv, &wq, &wk, &wv, &ov, &o));
            CHECK(tu_maxdiff(want, got, B * N * HS) < 2e-5, "self B=%lld N=%lld D=%lld HS=%lld: %g",
                  (long long)B, (long long)N, (long long)D, (long long)HS,
                  tu_maxdiff(want, got, B * N * HS));
            /* The last sequence alone, as a rank-2 input, gives the same rows. */
            attn_view x1 = attn_view_2d(x + (B - 1) * N * D, N, D), o1 = attn_view_2d(one, N, HS);
            CHECK_OK(attn_self_attention(&x1, &wq, &wk, &wv, &o1, &o));
            CHECK(tu_maxdiff(one, got + (B - 1) * N * HS, N * HS) < 1e-6,
                  "single sequence differs from the batch: %g",
                  tu_maxdiff(one, got + (B - 1) * N * HS, N * HS));
        }
        free(x), free(Wq), free(Wk), free(Wv), free(q), free(k), free(v), free(want), free(got),
            free(one);
    }
}

/* S4/S5/S7: per-head lists vs the fused (D, 3D) matrix, 1 head vs the
 * single-head function, cross with xkv = x vs self, and the module against
 * the composition written out here. */
enum { B = 2, N = 9, D = 12, NH = 3, HS = D / NH, Nkv = 5 };

/* The module written out for the sizes above: per head project, attend,
 * concatenate, project. W[p] (NH, D, HS) and b[p] (NH, HS) for p = q, k, v. */
static void naive_mha(const float *x, const float *xkv, int64_t nq, int64_t nkv,
                      float W[3][NH * D * HS], float bias[3][NH * HS], const float *Wo,
                      const float *bo, float *out, int causal) {
    float q[N * HS], k[N * HS], v[N * HS], head[N * HS], cat[N * D];
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            naive_linear(x + b * nq * D, W[0] + h * D * HS, bias[0] + h * HS, q, nq, D, HS);
            naive_linear(xkv + b * nkv * D, W[1] + h * D * HS, bias[1] + h * HS, k, nkv, D, HS);
            naive_linear(xkv + b * nkv * D, W[2] + h * D * HS, bias[2] + h * HS, v, nkv, D, HS);
            naive_attention(q, k, v, head, nq, nkv, HS, HS, causal);
            for (int i = 0; i < nq; i++)
                for (int e = 0; e < HS; e++)
                    cat[i * D + h * HS + e] = head[i * HS + e];
        }
        naive_linear(cat, Wo, bo, out + b * nq * D, nq, D, D);
    }
}

static void test_mha(void) {
    float *x = tu_rand(B * N * D, -1, 1), *xkv = tu_rand(B * Nkv * D, -1, 1);
    float *W = tu_rand(D * 3 * D, -0.5f, 0.5f), *bqkv = tu_rand(3 * D, -0.5f, 0.5f);
    float *Wo = tu_rand(D * D, -0.5f, 0.5f), *bo = tu_rand(D, -0.5f, 0.5f);
    /* The same numbers as per-head lists: Wq[h] = W[:, h*HS:(h+1)*HS], etc. */
    float Wl[3][NH * D * HS], bl[3][NH * HS];
    for (int p = 0; p < 3; p++)
        for (int h = 0; h < NH; h++) {
            for (int i = 0; i < D; i++)
                for (int e = 0; e < HS; e++)
                    Wl[p][(h * D + i) * HS + e] = W[i * 3 * D + p * D + h * HS + e];
            for (int e = 0; e < HS; e++)
                bl[p][h * HS + e] = bqkv[p * D + h * HS + e];
        }
    attn_view Wv = attn_view_2d(W, D, 3 * D), bv = attn_view_1d(bqkv, 3 * D);
    attn_view Wov = attn_view_2d(Wo, D, D), bov = attn_view_1d(bo, D);
    attn_mha_params fused, lists = {0};
    CHECK_OK(attn_mha_from_fused(&Wv, &bv, NH, &Wov, &bov, &fused));
    lists.num_heads = NH;
    lists.Wq = attn_view_3d(Wl[0], NH, D, HS), lists.Wk = attn_view_3d(Wl[1], NH, D, HS);
    lists.Wv = attn_view_3d(Wl[2], NH, D, HS);
    lists.bq = attn_view_2d(bl[0], NH, HS), lists.bk = attn_view_2d(bl[1], NH, HS);
    lists.bv = attn_view_2d(bl[2], NH, HS);
    lists.Wo = Wov, lists.bo = bov;

    float o1[B * N * D], o2[B * N * D], want[B * N * D];
    attn_view xv = attn_view_3d(x, B, N, D), o1v = attn_view_3d(o1, B, N, D);
    attn_view o2v = attn_view_3d(o2, B, N, D);
    attn_opts op = attn_opts_default();
    op.causal = ATTN_CAUSAL_TOP_LEFT;
    CHECK_OK(attn_mha(&fused, &xv, NULL, &o1v, &op));
    CHECK_OK(attn_mha(&lists, &xv, NULL, &o2v, &op));
    CHECK(tu_maxdiff(o1, o2, B * N * D) < 1e-5, "fused vs lists: %g",
          tu_maxdiff(o1, o2, B * N * D));

    naive_mha(x, x, N, N, Wl, bl, Wo, bo, want, 1);
    CHECK(tu_maxdiff(o1, want, B * N * D) < 2e-5, "module vs composition: %g",
          tu_maxdiff(o1, want, B * N * D));

    /* Causal module: row i does not depend on tokens after i. */
    float x2[B * N * D];
    memcpy(x2, x, sizeof x2);
    for (int j = 5; j < N; j++)
        for (int c = 0; c < D; c++)
            x2[(N + j) * D + c] = 3.0f; /* batch 1, tokens 5.. */
    attn_view x2v = attn_view_3d(x2, B, N, D);
    CHECK_OK(attn_mha(&fused, &x2v, NULL, &o2v, &op));
    CHECK(memcmp(o1, o2, (size_t)(N + 5) * D * sizeof(float)) == 0,
          "causal rows changed with later tokens");

    /* Cross-attention with xkv = x equals self-attention. */
    CHECK_OK(attn_mha(&fused, &xv, &xv, &o2v, &op));
    CHECK(memcmp(o1, o2, sizeof o1) == 0, "cross(x, x) differs from self(x)");

    /* Cross-attention with Nq != Nkv against the composition. */
    op.causal = ATTN_CAUSAL_NONE;
    attn_view kvv = attn_view_3d(xkv, B, Nkv, D);
    CHECK_OK(attn_mha(&lists, &xv, &kvv, &o1v, &op));
    naive_mha(x, xkv, N, Nkv, Wl, bl, Wo, bo, want, 0);
    CHECK(tu_maxdiff(o1, want, B * N * D) < 2e-5, "cross vs composition: %g",
          tu_maxdiff(o1, want, B * N * D));

    /* One head, no biases, no Wo: equals attn_self_attention. */
    attn_mha_params one = {0};
    one.num_heads = 1;
    one.Wq = attn_view_3d(Wl[0], 1, D, HS), one.Wk = attn_view_3d(Wl[1], 1, D, HS);
    one.Wv = attn_view_3d(Wl[2], 1, D, HS);
    float h1[B * N * HS], h2[B * N * HS];
    attn_view h1v = attn_view_3d(h1, B, N, HS), h2v = attn_view_3d(h2, B, N, HS);
    attn_view wq = attn_view_2d(Wl[0], D, HS), wk = attn_view_2d(Wl[1], D, HS),
              wv = attn_view_2d(Wl[2], D, HS);
    CHECK_OK(attn_mha(&one, &xv, NULL, &h1v, NULL));
    CHECK_OK(attn_self_attention(&xv, &wq, &wk, &wv, &h2v, NULL));
    CHECK(memcmp(h1, h2, sizeof h1) == 0, "1-head module differs from attn_self_attention");
    attn_view c1 = attn_view_3d(xkv, B, Nkv, D);
    float hc[B * N * HS];
    attn_view hcv = attn_view_3d(hc, B, N, HS);
    CHECK_OK(attn_cross_attention(&xv, &c1, &wq, &wk, &wv, &hcv, NULL));
    CHECK(tu_maxdiff(hc, h1, B * N * HS) > 1e-3, "cross-attention ignored xkv");

    /* Errors name the argument. */
    attn_view bad = attn_view_3d(x, B, N, D - 1);
    CHECK_FAIL(attn_mha(&fused, &bad, NULL, &o1v, NULL), ATTN_ERR_SHAPE,
               "attn_mha: Wq.shape[1]=12 but xq's width=11");
    attn_view Wbad = attn_view_2d(W, D, 3 * D - 1);
    attn_mha_params tmp;
    CHECK_FAIL(attn_mha_from_fused(&Wbad, NULL, NH, NULL, NULL, &tmp), ATTN_ERR_SHAPE,
               "Wqkv.shape[1]=35 but must be 3*D=36");
    CHECK_FAIL(attn_mha_from_fused(&Wv, NULL, 5, NULL, NULL, &tmp), ATTN_ERR_SHAPE,
               "D=12 is not a multiple of num_heads=5");
    attn_view ob = attn_view_3d(o1, B, N, D + 1);
    CHECK_FAIL(attn_mha(&fused, &xv, NULL, &ob, NULL), ATTN_ERR_SHAPE,
               "out.shape[2]=13 but must be 12");
    CHECK_FAIL(attn_self_attention(&xv, &wq, &wk, &wv, &xv, NULL), ATTN_ERR_SHAPE,
               "attn_self_attention: out.shape[2]=12 but must be 4");
    CHECK_FAIL(attn_mha(NULL, &xv, NULL, &o1v, NULL), ATTN_ERR_NULL, "params is NULL");
    free(x), free(xkv), free(W), free(bqkv), free(Wo), free(bo);
}

int main(void) {
    test_softmax();
    test_linear_and_layer_norm();
    /* The modules once per instruction set this machine runs. */
    for (int isa = ATTN_ISA_GENERIC; isa <= ATTN_ISA_AVX512; isa++) {
        if (!attn_isa_supported((attn_isa)isa)) continue;
        CHECK_OK(attn_set_isa((attn_isa)isa));
        test_self_attention();
        test_mha();
    }
    return tu_summary("test_modules");
}
