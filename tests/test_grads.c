/* test_grads.c - the module gradients: attn_linear_backward,
 * attn_layer_norm_backward, attn_rms_norm_backward, attn_rope_backward and
 * attn_mha_backward against central finite differences of their forwards
 * (loss = sum y * dy), RoPE by the adjoint identity <R^T dy, x> = <dy, R x>,
 * the fused layout against the stacked one, and errors.
 *
 * Tolerance for finite differences: |fd - g| <= 3e-3 (1 + |fd|) with h = 1e-2
 * in float32 forwards of size ~1: the truncation error is O(h^2) ~ 1e-4 and
 * the rounding error ~ 1e-7 * (sum of |y dy|) / h ~ 1e-4; a wrong formula
 * (a missing term, a transposed weight) is off by O(1). */
#include "testutil.h"

typedef attn_status (*fwd_fn)(void *ctx, float *y);

/* loss(ctx) = sum_n y[n] * dy[n] with y from the forward. */
static double loss(fwd_fn f, void *ctx, float *y, const float *dy, int64_t ny) {
    CHECK_OK(f(ctx, y));
    double s = 0;
    for (int64_t n = 0; n < ny; n++)
        s += (double)y[n] * dy[n];
    return s;
}

static void fd_check(const char *what, fwd_fn f, void *ctx, float *x, int64_t nx, const float *grad,
                     float *y, const float *dy, int64_t ny) {
    for (int t = 0; t < 8; t++) {
        const int64_t e = tu_int(0, nx - 1);
        const float x0 = x[e], h = 1e-2f;
        x[e] = x0 + h;
        const double lp = loss(f, ctx, y, dy, ny);
        x[e] = x0 - h;
        const double lm = loss(f, ctx, y, dy, ny);
        x[e] = x0;
        const double fd = (lp - lm) / (2.0 * h);
        CHECK(fabs(fd - grad[e]) <= 3e-3 * (1 + fabs(fd)), "%s[%lld]: fd %g vs %g", what,
              (long long)e, fd, (double)grad[e]);
    }
}

/* ---- linear ----------------------------------------------------------------- */

typedef struct {
    attn_view x, W, b, y;
} lin;

static attn_status lin_fwd(void *ctx, float *y) {
    lin *c = ctx;
    (void)y;
    return attn_linear(&c->x, &c->W, &c->b, &c->y, 2);
}

static void test_linear(void) {
    enum { B = 3, N = 5, I = 7, O = 4 };
    float *x = tu_rand(B * N * I, -1, 1), *W = tu_rand(I * O, -1, 1), *b = tu_rand(O, -1, 1);
    float *y = tu_zeros(B * N * O), *dy = tu_rand(B * N * O, -1, 1);
    float *dx = tu_zeros(B * N * I), *dW = tu_zeros(I * O), *db = tu_zeros(O);
    lin c = {attn_view_3d(x, B, N, I), attn_view_2d(W, I, O), attn_view_1d(b, O),
             attn_view_3d(y, B, N, O)};
    attn_view vdy = attn_view_3d(dy, B, N, O), vdx = attn_view_3d(dx, B, N, I);
    attn_view vdW = attn_view_2d(dW, I, O), vdb = attn_view_1d(db, O);
    CHECK_OK(attn_linear_backward(&c.x, &c.W, &vdy, &vdx, &vdW, &vdb, 2));
    fd_check("linear dx", lin_fwd, &c, x, B * N * I, dx, y, dy, B * N * O);
    fd_check("linear dW", lin_fwd, &c, W, I * O, dW, y, dy, B * N * O);
    fd_check("linear db", lin_fwd, &c, b, O, db, y, dy, B * N * O);
    /* dW read transposed (strided output) gives the same numbers */
    float *dWt = tu_zeros(I * O);
    attn_view vt = attn_view_swap(attn_view_2d(dWt, O, I), 0, 1);
    CHECK_OK(attn_linear_backward(&c.x, &c.W, &vdy, NULL, &vt, NULL, 1));
    int same = 1;
    for (int i = 0; i < I; i++)
        for (int o = 0; o < O; o++)
            same &= dWt[o * I + i] == dW[i * O + o];
    CHECK(same, "a strided dW differs");
    CHECK_FAIL(attn_linear_backward(&c.x, &c.W, &vdy, &vdx, &vdx, NULL, 1), ATTN_ERR_SHAPE, "dW");
    CHECK_FAIL(attn_linear_backward(&c.x, &c.W, &vdy, &c.x, NULL, NULL, 1), ATTN_ERR_STRIDE, "dx");
    free(x), free(W), free(b), free(y), free(dy), free(dx), free(dW), free(db), free(dWt);
}

/* ---- norms ------------------------------------------------------------------ */

typedef struct {
    attn_view x, g, bt, y;
    int rms;
} nrm;

static attn_status nrm_fwd(void *ctx, float *y) {
    nrm *c = ctx;
    (void)y;
    return c->rms ? attn_rms_norm(&c->x, &c->g, 1e-5f, &c->y)
                  : attn_layer_norm(&c->x, &c->g, &c->bt, 1e-5f, &c->y);
}

static void test_norms(void) {
    enum { R = 6, D = 9 };
    for (int rms = 0; rms <= 1; rms++) {
        float *x = tu_rand(R * D, -2, 2), *g = tu_rand(D, 0.5f, 1.5f), *bt = tu_rand(D, -1, 1);
        float *y = tu_zeros(R * D), *dy = tu_rand(R * D, -1, 1);
        float *dx = tu_zeros(R * D), *dg = tu_zeros(D), *db = tu_zeros(D);
        nrm c = {attn_view_2d(x, R, D), attn_view_1d(g, D), attn_view_1d(bt, D),
                 attn_view_2d(y, R, D), rms};
        attn_view vdy = attn_view_2d(dy, R, D), vdx = attn_view_2d(dx, R, D);
        attn_view vdg = attn_view_1d(dg, D), vdb = attn_view_1d(db, D);
        if (rms)
            CHECK_OK(attn_rms_norm_backward(&c.x, &c.g, &vdy, 1e-5f, &vdx, &vdg));
        else
            CHECK_OK(attn_layer_norm_backward(&c.x, &c.g, &vdy, 1e-5f, &vdx, &vdg, &vdb));
        fd_check(rms ? "rms dx" : "ln dx", nrm_fwd, &c, x, R * D, dx, y, dy, R * D);
        fd_check(rms ? "rms dgamma" : "ln dgamma", nrm_fwd, &c, g, D, dg, y, dy, R * D);
        if (!rms) fd_check("ln dbeta", nrm_fwd, &c, bt, D, db, y, dy, R * D);
        CHECK_FAIL(attn_layer_norm_backward(&c.x, &c.g, &vdy, -1.0f, &vdx, NULL, NULL),
                   ATTN_ERR_ARG, "eps");
        free(x), free(g), free(bt), free(y), free(dy), free(dx), free(dg), free(db);
    }
}

/* ---- RoPE: the adjoint ---------------------------------------------------- */

static void test_rope(void) {
    enum { B = 2, H = 3, N = 5, d = 8 };
    float *x = tu_rand(B * H * N * d, -1, 1), *dy = tu_rand(B * H * N * d, -1, 1);
    float *y = tu_zeros(B * H * N * d), *dx = tu_zeros(B * H * N * d);
    int64_t pos[B * N];
    for (int i = 0; i < B * N; i++)
        pos[i] = tu_int(-50, 100000);
    const int64_t ps[3] = {N, 0, 1};
    for (int style = 0; style <= 1; style++) {
        attn_rope_params p = attn_rope_params_default();
        p.style = (attn_rope_style)style;
        p.rotary_dim = 6;
        p.mscale = 1.25;
        attn_view vx = attn_view_4d(x, B, H, N, d), vy = attn_view_4d(y, B, H, N, d);
        attn_view vdy = attn_view_4d(dy, B, H, N, d), vdx = attn_view_4d(dx, B, H, N, d);
        CHECK_OK(attn_rope(&vx, pos, ps, &vy, &p));
        CHECK_OK(attn_rope_backward(&vdy, pos, ps, &vdx, &p));
        double l = 0, r = 0, sl = 0;
        for (int n = 0; n < B * H * N * d; n++) {
            l += (double)dx[n] * x[n];
            r += (double)dy[n] * y[n];
            sl += fabs((double)dx[n] * x[n]);
        }
        CHECK(fabs(l - r) <= 1e-5 * sl, "rope adjoint: <R^T dy, x> = %.9g but <dy, R x> = %.9g", l,
              r);
        /* in place gives the same */
        float *dyc = tu_copy(dy, B * H * N * d);
        attn_view vc = attn_view_4d(dyc, B, H, N, d);
        CHECK_OK(attn_rope_backward(&vc, pos, ps, &vc, &p));
        CHECK(memcmp(dyc, dx, sizeof(float) * B * H * N * d) == 0, "in place differs");
        free(dyc);
    }
    int64_t bad[N] = {0, 1, INT64_MIN, 3, 4};
    attn_view vdy = attn_view_4d(dy, 1, 1, N, d), vdx = attn_view_4d(dx, 1, 1, N, d);
    attn_rope_params p = attn_rope_params_default();
    CHECK_FAIL(attn_rope_backward(&vdy, bad, NULL, &vdx, &p), ATTN_ERR_ARG, "negated");
    free(x), free(dy), free(y), free(dx);
}

/* ---- multi-head attention ------------------------------------------------- */

typedef struct {
    attn_mha_params p;
    attn_view xq, xkv, out;
    int cross;
    attn_opts o;
} mh;

static attn_status mh_fwd(void *ctx, float *y) {
    mh *c = ctx;
    (void)y;
    return attn_mha(&c->p, &c->xq, c->cross ? &c->xkv : NULL, &c->out, &c->o);
}

/* form: 0 self, 1 cross, 2 GQA self */
static void test_mha(int form) {
    enum { B = 2, N = 7, Nkv = 9, D = 8, H = 4, HS = 3 };
    const int64_t Hkv = form == 2 ? 2 : H, Nk = form == 1 ? Nkv : N;
    float *x = tu_rand(B * N * D, -1, 1), *xkv = tu_rand(B * Nk * D, -1, 1);
    float *Wq = tu_rand(H * D * HS, -1, 1), *Wk = tu_rand(Hkv * D * HS, -1, 1);
    float *Wv = tu_rand(Hkv * D * HS, -1, 1), *bq = tu_rand(H * HS, -1, 1);
    float *bk = tu_rand(Hkv * HS, -1, 1), *bv = tu_rand(Hkv * HS, -1, 1);
    float *Wo = tu_rand(H * HS * D, -1, 1), *bo = tu_rand(D, -1, 1);
    float *out = tu_zeros(B * N * D), *dout = tu_rand(B * N * D, -1, 1);
    mh c;
    memset(&c, 0, sizeof c);
    c.p.num_heads = H;
    c.p.num_kv_heads = Hkv;
    c.p.Wq = attn_view_3d(Wq, H, D, HS), c.p.Wk = attn_view_3d(Wk, Hkv, D, HS);
    c.p.Wv = attn_view_3d(Wv, Hkv, D, HS), c.p.bq = attn_view_2d(bq, H, HS);
    c.p.bk = attn_view_2d(bk, Hkv, HS), c.p.bv = attn_view_2d(bv, Hkv, HS);
    c.p.Wo = attn_view_2d(Wo, H * HS, D), c.p.bo = attn_view_1d(bo, D);
    c.xq = attn_view_3d(x, B, N, D);
    c.xkv = attn_view_3d(xkv, B, Nk, D);
    c.out = attn_view_3d(out, B, N, D);
    c.cross = form == 1;
    c.o = attn_opts_default();
    c.o.causal = form == 1 ? ATTN_CAUSAL_NONE : ATTN_CAUSAL_TOP_LEFT;
    float *g[10];
    const int64_t n[10] = {B * N * D, B * Nk * D, H * D * HS, Hkv * D * HS, Hkv * D * HS,
                           H * HS,    Hkv * HS,   Hkv * HS,   H * HS * D,   D};
    for (int i = 0; i < 10; i++)
        g[i] = tu_zeros(n[i]);
    attn_mha_params gp = {0};
    gp.Wq = attn_view_3d(g[2], H, D, HS), gp.Wk = attn_view_3d(g[3], Hkv, D, HS);
    gp.Wv = attn_view_3d(g[4], Hkv, D, HS), gp.bq = attn_view_2d(g[5], H, HS);
    gp.bk = attn_view_2d(g[6], Hkv, HS), gp.bv = attn_view_2d(g[7], Hkv, HS);
    gp.Wo = attn_view_2d(g[8], H * HS, D), gp.bo = attn_view_1d(g[9], D);
    attn_view vdout = attn_view_3d(dout, B, N, D), vdx = attn_view_3d(g[0], B, N, D);
    attn_view vdkv = attn_view_3d(g[1], B, Nk, D);
    CHECK_OK(attn_mha_backward(&c.p, &c.xq, c.cross ? &c.xkv : NULL, &vdout, &vdx,
                               c.cross ? &vdkv : NULL, &gp, &c.o));
    float *params[10] = {x, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo};
    static const char *const names[10] = {"dxq", "dxkv", "dWq", "dWk", "dWv",
                                          "dbq", "dbk",  "dbv", "dWo", "dbo"};
    for (int i = 0; i < 10; i++) {
        if (i == 1 && !c.cross) continue;
        fd_check(names[i], mh_fwd, &c, params[i], n[i], g[i], out, dout, B * N * D);
    }
    CHECK_FAIL(attn_mha_backward(&c.p, &c.xq, NULL, &vdout, &vdx, &vdkv, &gp, &c.o), ATTN_ERR_ARG,
               "dxkv");
    attn_mha_params bad = gp;
    bad.Wq = attn_view_3d(g[2], H, D, HS + 1);
    CHECK_FAIL(attn_mha_backward(&c.p, &c.xq, NULL, &vdout, &vdx, NULL, &bad, &c.o), ATTN_ERR_SHAPE,
               "Wq");
    free(x), free(xkv), free(Wq), free(Wk), free(Wv), free(bq), free(bk), free(bv), free(Wo);
    free(bo), free(out), free(dout);
    for (int i = 0; i < 10; i++)
        free(g[i]);
}

/* The fused layout: gradients through attn_mha_from_fused views of dWqkv
 * equal those of the stacked copy, bit for bit. */
static void test_mha_fused(void) {
    enum { B = 1, N = 6, D = 8, H = 2, HS = D / H };
    float *x = tu_rand(B * N * D, -1, 1), *W = tu_rand(D * 3 * D, -1, 1);
    float *b = tu_rand(3 * D, -1, 1), *dout = tu_rand(B * N * D, -1, 1);
    float *dW = tu_zeros(D * 3 * D), *db = tu_zeros(3 * D), *dx = tu_zeros(B * N * D);
    attn_view vW = attn_view_2d(W, D, 3 * D), vb = attn_view_1d(b, 3 * D);
    attn_view vdW = attn_view_2d(dW, D, 3 * D), vdb = attn_view_1d(db, 3 * D);
    attn_mha_params p, gp;
    CHECK_OK(attn_mha_from_fused(&vW, &vb, H, NULL, NULL, &p));
    CHECK_OK(attn_mha_from_fused(&vdW, &vdb, H, NULL, NULL, &gp));
    attn_view vx = attn_view_3d(x, B, N, D), vdout = attn_view_3d(dout, B, N, D);
    attn_view vdx = attn_view_3d(dx, B, N, D);
    CHECK_OK(attn_mha_backward(&p, &vx, NULL, &vdout, &vdx, NULL, &gp, NULL));
    /* the stacked copy */
    float *Ws = tu_zeros(3 * D * D), *bs = tu_zeros(3 * D), *gW = tu_zeros(3 * D * D),
          *gb = tu_zeros(3 * D), *dx2 = tu_zeros(B * N * D);
    for (int part = 0; part < 3; part++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < D; i++)
                for (int e = 0; e < HS; e++) {
                    Ws[((part * H + h) * D + i) * HS + e] = W[i * 3 * D + part * D + h * HS + e];
                    bs[(part * H + h) * HS + e] = b[part * D + h * HS + e];
                }
    attn_mha_params s = {0}, gs = {0};
    s.num_heads = H;
    s.Wq = attn_view_3d(Ws, H, D, HS), s.Wk = attn_view_3d(Ws + D * D, H, D, HS);
    s.Wv = attn_view_3d(Ws + 2 * D * D, H, D, HS), s.bq = attn_view_2d(bs, H, HS);
    s.bk = attn_view_2d(bs + D, H, HS), s.bv = attn_view_2d(bs + 2 * D, H, HS);
    gs.Wq = attn_view_3d(gW, H, D, HS), gs.Wk = attn_view_3d(gW + D * D, H, D, HS);
    gs.Wv = attn_view_3d(gW + 2 * D * D, H, D, HS), gs.bq = attn_view_2d(gb, H, HS);
    gs.bk = attn_view_2d(gb + D, H, HS), gs.bv = attn_view_2d(gb + 2 * D, H, HS);
    attn_view vdx2 = attn_view_3d(dx2, B, N, D);
    CHECK_OK(attn_mha_backward(&s, &vx, NULL, &vdout, &vdx2, NULL, &gs, NULL));
    int same = memcmp(dx, dx2, sizeof(float) * B * N * D) == 0;
    for (int part = 0; part < 3; part++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < D; i++)
                for (int e = 0; e < HS; e++) {
                    same &= gW[((part * H + h) * D + i) * HS + e] ==
                            dW[i * 3 * D + part * D + h * HS + e];
                    same &= gb[(part * H + h) * HS + e] == db[part * D + h * HS + e];
                }
    CHECK(same, "fused and stacked gradients differ");
    free(x), free(W), free(b), free(dout), free(dW), free(db), free(dx), free(Ws), free(bs);
    free(gW), free(gb), free(dx2);
}

int main(void) {
    test_linear();
    test_norms();
    test_rope();
    for (int form = 0; form < 3; form++)
        test_mha(form);
    test_mha_fused();
    return tu_summary("test_grads");
}
