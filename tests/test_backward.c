/* test_backward.c - attn_sdpa_backward: the reference against finite
 * differences, the fast path against the reference on random configurations
 * of every option, per ISA; bit-identity over 1, 2, 3 threads; GQA against
 * expanded heads; rows with no visible key; NaN/Inf in hidden keys; stride-0
 * and strided dout; dmask; errors.
 *
 * Tolerance, fast vs reference: |a - r| <= 2e-4 * (1 + max|r|) per output.
 * The fast path recomputes P from the forward's float lse (relative error
 * ~1e-6 in P), sums dk and dv over up to G*Nq ~ 400 rows in float and dq over
 * up to ~1100 keys; inputs in [-1, 1] keep |dS| small, so the rounding
 * walk stays near 1e-5 (the largest seen is printed). One key mishandled
 * (wrong visibility, wrong dropout factor) moves a gradient by ~1/Nkv times
 * |dout| ~ 1e-3, well above the tolerance at these sizes (checked by breaking
 * the causal rule on purpose while writing it). */
#include "testutil.h"

#include "internal.h"

static double worst;

static int quick(void) {
    return getenv("ATTN_TEST_QUICK") != NULL;
}

typedef struct prob {
    int64_t B, H, Hkv, Nq, Nkv, d, dv;
    float *q, *k, *v, *out, *lse, *dout, *mask;
    int64_t mshape[4];
    int64_t *kl;
    attn_view vq, vk, vv, vout, vlse, vdout, vmask;
    attn_opts o;
} prob;

static void prob_free(prob *p) {
    free(p->q), free(p->k), free(p->v), free(p->out), free(p->lse), free(p->dout);
    free(p->mask), free(p->kl);
}

/* Random problem; the forward runs with opts o (its lse kept). */
static void prob_make(prob *p, int64_t B, int64_t H, int64_t Hkv, int64_t Nq, int64_t Nkv,
                      int64_t d, int64_t dv, attn_opts o, int mask_kind, int with_kl) {
    memset(p, 0, sizeof *p);
    p->B = B, p->H = H, p->Hkv = Hkv, p->Nq = Nq, p->Nkv = Nkv, p->d = d, p->dv = dv;
    p->q = tu_rand(B * H * Nq * d, -1, 1);
    p->k = tu_rand(B * Hkv * Nkv * d, -1, 1);
    p->v = tu_rand(B * Hkv * Nkv * dv, -1, 1);
    p->out = tu_zeros(B * H * Nq * dv);
    p->lse = tu_zeros(B * H * Nq);
    p->dout = tu_rand(B * H * Nq * dv, -1, 1);
    p->vq = attn_view_4d(p->q, B, H, Nq, d);
    p->vk = attn_view_4d(p->k, B, Hkv, Nkv, d);
    p->vv = attn_view_4d(p->v, B, Hkv, Nkv, dv);
    p->vout = attn_view_4d(p->out, B, H, Nq, dv);
    p->vlse = attn_view_3d(p->lse, B, H, Nq);
    p->vdout = attn_view_4d(p->dout, B, H, Nq, dv);
    p->o = o;
    if (mask_kind) {
        /* shapes: 1 full, 2 (1, 1, Nq, Nkv), 3 (B, 1, 1, Nkv), 4 (1, H, Nq, 1) */
        const int64_t full[4] = {B, H, Nq, Nkv};
        static const int keep[5][4] = {{0}, {1, 1, 1, 1}, {0, 0, 1, 1}, {1, 0, 0, 1}, {0, 1, 1, 0}};
        int64_t n = 1;
        for (int a = 0; a < 4; a++)
            n *= p->mshape[a] = keep[mask_kind][a] ? full[a] : 1;
        p->mask = tu_rand(n, -2, 2);
        for (int64_t e = 0; e < n; e++)
            if (tu_int(0, 5) == 0) p->mask[e] = -INFINITY;
        p->vmask = attn_view_contiguous(p->mask, 4, p->mshape);
        p->o.mask = &p->vmask;
    }
    if (with_kl) {
        p->kl = malloc((size_t)B * sizeof(int64_t));
        for (int64_t b = 0; b < B; b++)
            p->kl[b] = tu_int(0, Nkv);
        p->kl[0] = Nkv;
        p->o.key_lengths = p->kl;
    }
    attn_opts fo = p->o;
    fo.lse = &p->vlse;
    CHECK_OK(attn_sdpa(&p->vq, &p->vk, &p->vv, &p->vout, &fo));
}

typedef struct grads {
    float *dq, *dk, *dv, *dm, *ds;
    attn_view vdq, vdk, vdv, vdm, vds;
} grads;

static void grads_make(grads *g, const prob *p) {
    g->dq = tu_rand(p->B * p->H * p->Nq * p->d, 5, 6); /* overwritten, never accumulated */
    g->dk = tu_rand(p->B * p->Hkv * p->Nkv * p->d, 5, 6);
    g->dv = tu_rand(p->B * p->Hkv * p->Nkv * p->dv, 5, 6);
    g->vdq = attn_view_4d(g->dq, p->B, p->H, p->Nq, p->d);
    g->vdk = attn_view_4d(g->dk, p->B, p->Hkv, p->Nkv, p->d);
    g->vdv = attn_view_4d(g->dv, p->B, p->Hkv, p->Nkv, p->dv);
    g->ds = tu_rand(p->H, 5, 6);
    g->vds = attn_view_1d(g->ds, p->H);
    g->dm = NULL;
    if (p->mask) {
        int64_t n = p->mshape[0] * p->mshape[1] * p->mshape[2] * p->mshape[3];
        g->dm = tu_rand(n, 5, 6);
        g->vdm = attn_view_contiguous(g->dm, 4, p->mshape);
    }
}

static void grads_free(grads *g) {
    free(g->dq), free(g->dk), free(g->dv), free(g->dm), free(g->ds);
}

static attn_status run(const prob *p, grads *g, attn_algo algo, int threads, int want_dmask) {
    attn_opts o = p->o;
    o.algo = algo;
    o.num_threads = threads;
    attn_backward_extras x = attn_backward_extras_default();
    if (want_dmask && g->dm) x.dmask = &g->vdm;
    if (p->o.sinks) x.dsinks = &g->vds;
    return attn_sdpa_backward(&p->vq, &p->vk, &p->vv, &p->vout, &p->vlse, &p->vdout, &g->vdq,
                              &g->vdk, &g->vdv, &o, &x);
}

static double maxabs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

static int close_to(const char *what, const float *a, const float *r, int64_t n, double tol) {
    double lim = tol * (1.0 + maxabs(r, n)), dif = tu_maxdiff(a, r, n);
    if (dif > worst) worst = dif / (1.0 + maxabs(r, n));
    CHECK(dif <= lim, "%s differs by %g (limit %g)", what, dif, lim);
    return dif <= lim;
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* Random score modifiers on o (arrays with static storage, H <= 16, B <= 4). */
static float sinks_buf[16], slopes_buf[16];
static int64_t qoff_buf[4];
static void random_modifiers(attn_opts *o, int64_t B, int64_t H, int64_t Nq, int64_t Nkv) {
    if (tu_int(0, 2) == 0) o->window_left = tu_int(0, Nkv);
    if (tu_int(0, 3) == 0) o->window_right = tu_int(0, Nkv);
    if (tu_int(0, 2) == 0) o->softcap = tu_uniform(0.5f, 3.0f);
    if (tu_int(0, 2) == 0) {
        for (int64_t h = 0; h < H; h++)
            slopes_buf[h] = tu_uniform(0.0f, 0.3f);
        o->alibi_slopes = slopes_buf;
    }
    if (tu_int(0, 2) == 0) {
        for (int64_t h = 0; h < H; h++)
            sinks_buf[h] = tu_uniform(-1.0f, 2.0f);
        o->sinks = sinks_buf;
    }
    if (tu_int(0, 3) == 0) {
        for (int64_t b = 0; b < B; b++)
            qoff_buf[b] = tu_int(-Nq, Nkv);
        o->q_offset = qoff_buf;
    }
    if (tu_int(0, 3) == 0) o->k_offset = tu_int(-5, 5);
}

/* ---- 1. the reference against central finite differences ----------------- */

/* loss = sum out * dout, with the forward on the reference path. */
static double loss(prob *p) {
    attn_opts o = p->o;
    o.algo = ATTN_ALGO_REFERENCE;
    CHECK_OK(attn_sdpa(&p->vq, &p->vk, &p->vv, &p->vout, &o));
    double s = 0;
    for (int64_t n = 0; n < p->B * p->H * p->Nq * p->dv; n++)
        s += (double)p->out[n] * p->dout[n];
    return s;
}

static void fd_one(prob *p, float *x, int64_t n, const float *grad, const char *what) {
    const float h = 1e-2f;
    for (int t = 0; t < 6; t++) {
        int64_t e = tu_int(0, n - 1);
        const float x0 = x[e];
        x[e] = x0 + h;
        double lp = loss(p);
        x[e] = x0 - h;
        double lm = loss(p);
        x[e] = x0;
        double fd = (lp - lm) / (2.0 * h);
        CHECK(fabs(fd - grad[e]) <= 2e-3 * (1 + fabs(fd)), "%s[%lld]: fd %g vs %g", what,
              (long long)e, fd, (double)grad[e]);
    }
}

static void test_finite_differences(void) {
    for (int c = 0; c < 8; c++) {
        attn_opts o = attn_opts_default();
        o.causal = (attn_causal)(c % 3);
        if (c >= 4) random_modifiers(&o, 2, 4, 5 + c, 7 + 2 * c);
        if (c == 7) o.softcap = 1.5f, o.sinks = sinks_buf, sinks_buf[1] = 0.7f;
        prob p;
        prob_make(&p, 2, 4, 2, 5 + c, 7 + 2 * c, 6, 5, o, c % 5, c % 2);
        grads g;
        grads_make(&g, &p);
        CHECK_OK(run(&p, &g, ATTN_ALGO_REFERENCE, 1, 1));
        fd_one(&p, p.q, p.B * p.H * p.Nq * p.d, g.dq, "dq");
        fd_one(&p, p.k, p.B * p.Hkv * p.Nkv * p.d, g.dk, "dk");
        fd_one(&p, p.v, p.B * p.Hkv * p.Nkv * p.dv, g.dv, "dv");
        if (p.mask) {
            /* only finite mask entries have a derivative */
            int64_t n = p.mshape[0] * p.mshape[1] * p.mshape[2] * p.mshape[3];
            for (int t = 0; t < 6; t++) {
                int64_t e = tu_int(0, n - 1);
                if (!isfinite(p.mask[e])) {
                    CHECK(g.dm[e] == 0.0f, "dmask of a hidden entry is %g", (double)g.dm[e]);
                    continue;
                }
                const float m0 = p.mask[e], h = 1e-2f;
                p.mask[e] = m0 + h;
                double lp = loss(&p);
                p.mask[e] = m0 - h;
                double lm = loss(&p);
                p.mask[e] = m0;
                double fd = (lp - lm) / (2.0 * h);
                CHECK(fabs(fd - g.dm[e]) <= 2e-3 * (1 + fabs(fd)), "dmask[%lld]: fd %g vs %g",
                      (long long)e, fd, (double)g.dm[e]);
            }
        }
        if (p.o.sinks)
            for (int64_t h = 0; h < p.H; h++) {
                const float s0 = sinks_buf[h], h_ = 1e-2f;
                sinks_buf[h] = s0 + h_;
                double lp = loss(&p);
                sinks_buf[h] = s0 - h_;
                double lm = loss(&p);
                sinks_buf[h] = s0;
                double fd = (lp - lm) / (2.0 * h_);
                CHECK(fabs(fd - g.ds[h]) <= 2e-3 * (1 + fabs(fd)), "dsinks[%lld]: fd %g vs %g",
                      (long long)h, fd, (double)g.ds[h]);
            }
        grads_free(&g);
        prob_free(&p);
    }
}

/* ---- 2. fast vs reference, random configurations; 3. threads ------------- */

static const int64_t sizes_n[] = {1, 2, 3, 5, 13, 16, 17, 31, 63, 64, 65, 75, 113, 130};
static const int64_t sizes_d[] = {1, 3, 8, 16, 40, 64, 72, 80};
#define PICK(a) a[tu_int(0, (int64_t)(sizeof a / sizeof a[0]) - 1)]

static void test_random(int cases) {
    for (int c = 0; c < cases; c++) {
        attn_opts o = attn_opts_default();
        o.causal = (attn_causal)tu_int(0, 2);
        if (tu_int(0, 3) == 0) o.dropout_p = 0.2f, o.dropout_seed = tu_next();
        if (tu_int(0, 3) == 0) o.scale = tu_uniform(0.05f, 0.5f);
        const int64_t Hkv = tu_int(1, 2), H = Hkv * tu_int(1, 3), Nq = PICK(sizes_n);
        const int64_t Nkv = tu_int(0, 2) == 0 ? Nq : PICK(sizes_n) * tu_int(1, 3);
        const int64_t d = PICK(sizes_d), dv = tu_int(0, 1) ? d : PICK(sizes_d);
        const int64_t B = tu_int(1, 2);
        if (tu_int(0, 1)) random_modifiers(&o, B, H, Nq, Nkv);
        prob p;
        prob_make(&p, B, H, Hkv, Nq, Nkv, d, dv, o, (int)tu_int(0, 4), (int)tu_int(0, 1));
        /* strided or broadcast dout */
        const int dl = (int)tu_int(0, 2);
        float *dmem = NULL;
        if (dl == 1) { /* dout[b,h,i,f] at a (B, Nq, H, dv*2) buffer */
            dmem = tu_rand(p.B * Nq * H * dv * 2, -1, 1);
            p.vdout = attn_view_4d(dmem, p.B, H, Nq, dv);
            p.vdout.stride[0] = Nq * H * dv * 2, p.vdout.stride[1] = dv * 2;
            p.vdout.stride[2] = H * dv * 2, p.vdout.stride[3] = 2;
        } else if (dl == 2) { /* one row broadcast by stride 0 */
            dmem = tu_rand(dv, -1, 1);
            p.vdout = attn_view_4d(dmem, p.B, H, Nq, dv);
            p.vdout.stride[0] = p.vdout.stride[1] = p.vdout.stride[2] = 0;
        }
        grads r, f1, f2, f3;
        grads_make(&r, &p), grads_make(&f1, &p), grads_make(&f2, &p), grads_make(&f3, &p);
        CHECK_OK(run(&p, &r, ATTN_ALGO_REFERENCE, 2, 1));
        CHECK_OK(run(&p, &f1, ATTN_ALGO_FLASH, 1, 1));
        CHECK_OK(run(&p, &f2, ATTN_ALGO_FLASH, 2, 1));
        CHECK_OK(run(&p, &f3, ATTN_ALGO_FLASH, 3, 1));
        const int64_t nq = p.B * H * Nq * d, nk = p.B * Hkv * Nkv * d, nv = p.B * Hkv * Nkv * dv;
        int ok = close_to("dq", f1.dq, r.dq, nq, 2e-4) & close_to("dk", f1.dk, r.dk, nk, 2e-4) &
                 close_to("dv", f1.dv, r.dv, nv, 2e-4);
        int64_t nm = 0;
        if (p.mask) {
            nm = p.mshape[0] * p.mshape[1] * p.mshape[2] * p.mshape[3];
            ok &= close_to("dmask", f1.dm, r.dm, nm, 2e-4);
        }
        if (o.sinks) {
            ok &= close_to("dsinks", f1.ds, r.ds, H, 2e-4);
            CHECK(same_bits(f1.ds, f2.ds, H) && same_bits(f1.ds, f3.ds, H),
                  "dsinks depend on the thread count");
        }
        if (!ok)
            fprintf(stderr,
                    "  case %d: B=%lld H=%lld Hkv=%lld Nq=%lld Nkv=%lld d=%lld dv=%lld causal=%d "
                    "mask=%lld,%lld,%lld,%lld kl=%d p=%g dout=%d win=%lld,%lld cap=%g alibi=%d "
                    "sinks=%d qoff=%d koff=%lld\n",
                    c, (long long)p.B, (long long)H, (long long)Hkv, (long long)Nq, (long long)Nkv,
                    (long long)d, (long long)dv, (int)o.causal, (long long)p.mshape[0],
                    (long long)p.mshape[1], (long long)p.mshape[2], (long long)p.mshape[3],
                    p.kl != NULL, (double)o.dropout_p, dl, (long long)o.window_left,
                    (long long)o.window_right, (double)o.softcap, o.alibi_slopes != NULL,
                    o.sinks != NULL, o.q_offset != NULL, (long long)o.k_offset);
        CHECK(same_bits(f1.dq, f2.dq, nq) && same_bits(f1.dq, f3.dq, nq) &&
                  same_bits(f1.dk, f2.dk, nk) && same_bits(f1.dk, f3.dk, nk) &&
                  same_bits(f1.dv, f2.dv, nv) && same_bits(f1.dv, f3.dv, nv) &&
                  (!nm || (same_bits(f1.dm, f2.dm, nm) && same_bits(f1.dm, f3.dm, nm))),
              "case %d: the fast path's bits depend on the thread count", c);
        grads_free(&r), grads_free(&f1), grads_free(&f2), grads_free(&f3);
        free(dmem);
        prob_free(&p);
    }
}

/* ---- 4. GQA against expanded heads --------------------------------------- */

static void test_gqa_expanded(attn_algo algo) {
    const int64_t B = 2, H = 6, Hkv = 2, G = H / Hkv, Nq = 37, Nkv = 70, d = 16;
    attn_opts o = attn_opts_default();
    o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    prob p;
    prob_make(&p, B, H, Hkv, Nq, Nkv, d, d, o, 0, 0);
    grads g;
    grads_make(&g, &p);
    CHECK_OK(run(&p, &g, algo, 2, 0));
    /* K and V repeated per query head: np.repeat(k, G, axis=1) */
    prob e = p;
    e.Hkv = H;
    e.k = malloc((size_t)(B * H * Nkv * d) * sizeof(float));
    e.v = malloc((size_t)(B * H * Nkv * d) * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t n = 0; n < Nkv * d; n++) {
                e.k[(b * H + h) * Nkv * d + n] = p.k[(b * Hkv + h / G) * Nkv * d + n];
                e.v[(b * H + h) * Nkv * d + n] = p.v[(b * Hkv + h / G) * Nkv * d + n];
            }
    e.vk = attn_view_4d(e.k, B, H, Nkv, d);
    e.vv = attn_view_4d(e.v, B, H, Nkv, d);
    grads ge;
    grads_make(&ge, &e);
    CHECK_OK(run(&e, &ge, algo, 2, 0));
    close_to("gqa dq", g.dq, ge.dq, B * H * Nq * d, 1e-5);
    float *sk = tu_zeros(B * Hkv * Nkv * d), *sv = tu_zeros(B * Hkv * Nkv * d);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t n = 0; n < Nkv * d; n++) {
                sk[(b * Hkv + h / G) * Nkv * d + n] += ge.dk[(b * H + h) * Nkv * d + n];
                sv[(b * Hkv + h / G) * Nkv * d + n] += ge.dv[(b * H + h) * Nkv * d + n];
            }
    close_to("gqa dk", g.dk, sk, B * Hkv * Nkv * d, 1e-5);
    close_to("gqa dv", g.dv, sv, B * Hkv * Nkv * d, 1e-5);
    free(sk), free(sv), free(e.k), free(e.v);
    grads_free(&g), grads_free(&ge);
    prob_free(&p);
}

/* ---- 5. rows with no visible key; NaN/Inf in hidden keys ----------------- */

static void test_empty_and_hidden_nan(attn_algo algo) {
    const int64_t B = 2, H = 2, Nq = 70, Nkv = 90, d = 8;
    attn_opts o = attn_opts_default();
    o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    prob p;
    prob_make(&p, B, H, H, Nq, Nkv, d, d, o, 0, 1);
    /* key length 30 < Nq with bottom-right causality: rows i < 40 see nothing */
    p.kl[0] = Nkv;
    p.kl[1] = 30;
    attn_opts fo = p.o;
    fo.lse = &p.vlse;
    CHECK_OK(attn_sdpa(&p.vq, &p.vk, &p.vv, &p.vout, &fo));
    grads g;
    grads_make(&g, &p);
    CHECK_OK(run(&p, &g, algo, 2, 0));
    int zero = 1;
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < 40; i++)
            for (int64_t e = 0; e < d; e++)
                zero &= g.dq[((1 * H + h) * Nq + i) * d + e] == 0.0f;
    CHECK(zero, "rows without a visible key must give zero dq");
    zero = 1;
    for (int64_t j = 30; j < Nkv; j++)
        for (int64_t e = 0; e < d; e++)
            zero &= g.dk[((1 * H + 0) * Nkv + j) * d + e] == 0.0f &&
                    g.dv[((1 * H + 1) * Nkv + j) * d + e] == 0.0f;
    CHECK(zero, "keys beyond the key length must give zero dk, dv");

    /* Poison what no row may see: keys >= 30 of batch 1, in k and v, and the
     * q and dout rows of batch 1 that see nothing. Gradients must not change. */
    for (int64_t h = 0; h < H; h++) {
        for (int64_t j = 30; j < Nkv; j++)
            for (int64_t e = 0; e < d; e++) {
                p.k[((1 * H + h) * Nkv + j) * d + e] = (j % 2) ? NAN : INFINITY;
                p.v[((1 * H + h) * Nkv + j) * d + e] = (j % 2) ? -INFINITY : NAN;
            }
        for (int64_t i = 0; i < 40; i++)
            for (int64_t e = 0; e < d; e++) {
                p.q[((1 * H + h) * Nq + i) * d + e] = NAN;
                p.dout[((1 * H + h) * Nq + i) * d + e] = INFINITY;
            }
    }
    grads g2;
    grads_make(&g2, &p);
    CHECK_OK(run(&p, &g2, algo, 3, 0));
    int same = 1;
    for (int64_t n = 0; n < B * H * Nq * d; n++)
        same &= g2.dq[n] == g.dq[n];
    for (int64_t n = 0; n < B * H * Nkv * d; n++)
        same &= g2.dk[n] == g.dk[n] && g2.dv[n] == g.dv[n];
    CHECK(same, "NaN/Inf in hidden keys or rows reached a gradient (algo %d)", (int)algo);

    /* A hidden mask entry (-inf) over a NaN key, inside a visible range. */
    grads_free(&g), grads_free(&g2);
    prob_free(&p);
}

static void test_mask_hides_nan(attn_algo algo) {
    const int64_t Nq = 20, Nkv = 100, d = 16;
    attn_opts o = attn_opts_default();
    prob p;
    prob_make(&p, 1, 1, 1, Nq, Nkv, d, d, o, 3, 0); /* mask (B, 1, 1, Nkv) */
    for (int64_t j = 0; j < Nkv; j++)
        p.mask[j] = (j % 7 == 3) ? -INFINITY : 0.5f;
    attn_opts fo = p.o;
    fo.lse = &p.vlse;
    CHECK_OK(attn_sdpa(&p.vq, &p.vk, &p.vv, &p.vout, &fo));
    grads g;
    grads_make(&g, &p);
    CHECK_OK(run(&p, &g, algo, 2, 1));
    for (int64_t j = 3; j < Nkv; j += 7)
        for (int64_t e = 0; e < d; e++)
            p.k[j * d + e] = NAN, p.v[j * d + e] = INFINITY;
    grads g2;
    grads_make(&g2, &p);
    CHECK_OK(run(&p, &g2, algo, 2, 1));
    int same = 1;
    for (int64_t n = 0; n < Nq * d; n++)
        same &= g2.dq[n] == g.dq[n];
    for (int64_t n = 0; n < Nkv * d; n++)
        same &= (g2.dk[n] == g.dk[n] && g2.dv[n] == g.dv[n]) || (n / d % 7 == 3);
    for (int64_t j = 0; j < Nkv; j++)
        same &= g2.dm[j] == g.dm[j];
    CHECK(same, "NaN/Inf in masked keys reached a gradient (algo %d)", (int)algo);
    grads_free(&g), grads_free(&g2);
    prob_free(&p);
}

/* ---- 6. errors: checks before writing ------------------------------------- */

static void test_errors(void) {
    attn_opts o = attn_opts_default();
    prob p;
    prob_make(&p, 1, 2, 1, 4, 6, 8, 8, o, 0, 0);
    grads g;
    grads_make(&g, &p);
    float *before = tu_copy(g.dq, 2 * 4 * 8);
    attn_view bad = p.vlse;
    bad.shape[2] = 5;
    CHECK_FAIL(attn_sdpa_backward(&p.vq, &p.vk, &p.vv, &p.vout, &bad, &p.vdout, &g.vdq, &g.vdk,
                                  &g.vdv, NULL, NULL),
               ATTN_ERR_SHAPE, "lse.shape[2]=5");
    CHECK_FAIL(attn_sdpa_backward(&p.vq, &p.vk, &p.vv, &p.vout, NULL, &p.vdout, &g.vdq, &g.vdk,
                                  &g.vdv, NULL, NULL),
               ATTN_ERR_NULL, "lse");
    attn_view badk = g.vdk;
    badk.shape[1] = 2;
    CHECK_FAIL(attn_sdpa_backward(&p.vq, &p.vk, &p.vv, &p.vout, &p.vlse, &p.vdout, &g.vdq, &badk,
                                  &g.vdv, NULL, NULL),
               ATTN_ERR_SHAPE, "dk.shape[1]=2");
    CHECK_FAIL(attn_sdpa_backward(&p.vq, &p.vk, &p.vv, &p.vout, &p.vlse, &p.vdout, &p.vq, &g.vdk,
                                  &g.vdv, NULL, NULL),
               ATTN_ERR_STRIDE, "dq");
    attn_view alias = g.vdq;
    alias.data = g.dk; /* dq's span is larger than dk's: they overlap */
    CHECK_FAIL(attn_sdpa_backward(&p.vq, &p.vk, &p.vv, &p.vout, &p.vlse, &p.vdout, &alias, &g.vdk,
                                  &g.vdv, NULL, NULL),
               ATTN_ERR_STRIDE, "dk");
    attn_view b0 = g.vdv;
    b0.stride[2] = 0;
    CHECK_FAIL(attn_sdpa_backward(&p.vq, &p.vk, &p.vv, &p.vout, &p.vlse, &p.vdout, &g.vdq, &g.vdk,
                                  &b0, NULL, NULL),
               ATTN_ERR_STRIDE, "dv");
    attn_backward_extras x = attn_backward_extras_default();
    x.dmask = &g.vdq;
    CHECK_FAIL(attn_sdpa_backward(&p.vq, &p.vk, &p.vv, &p.vout, &p.vlse, &p.vdout, &g.vdq, &g.vdk,
                                  &g.vdv, NULL, &x),
               ATTN_ERR_ARG, "opts.mask is NULL");
    o.dropout_p = 1.0f;
    CHECK_FAIL(attn_sdpa_backward(&p.vq, &p.vk, &p.vv, &p.vout, &p.vlse, &p.vdout, &g.vdq, &g.vdk,
                                  &g.vdv, &o, NULL),
               ATTN_ERR_ARG, "dropout_p");
    CHECK(memcmp(before, g.dq, 2 * 4 * 8 * sizeof(float)) == 0, "a failed call wrote dq");
    free(before);
    grads_free(&g);
    prob_free(&p);
}

int main(void) {
    test_finite_differences();
    test_errors();
    const attn_isa isas[] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    for (int a = 0; a < 3; a++) {
        if (!attn_isa_supported(isas[a])) {
            printf("ISA %s not supported here: not tested\n", attn_isa_name(isas[a]));
            continue;
        }
        CHECK_OK(attn_set_isa(isas[a]));
        worst = 0;
        test_random(quick() ? 15 : 60);
        for (int algo = ATTN_ALGO_REFERENCE; algo <= ATTN_ALGO_FLASH; algo++) {
            test_gqa_expanded((attn_algo)algo);
            test_empty_and_hidden_nan((attn_algo)algo);
            test_mask_hides_nan((attn_algo)algo);
        }
        printf("ISA %s: largest relative difference fast vs reference %.3g\n",
               attn_isa_name(isas[a]), worst);
    }
    CHECK_OK(attn_set_isa(ATTN_ISA_AUTO));
    return tu_summary("test_backward");
}
