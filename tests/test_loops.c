/* test_loops.c - the loops users write give the same results as the calls
 * made one at a time (not timed: bench/loops.c times them):
 *   - a decode step and a prefill step, each alternating attn_linear (few
 *     rows: GEMV; many rows: BLAS GEMM split over attn's threads), attn_mha
 *     and attn_sdpa, repeated, bit for bit equal to each call made alone on
 *     fresh outputs;
 *   - the same calls from inside the program's own OpenMP parallel region
 *     (as from PyTorch's intra-op pool): with num_threads = 0 each call
 *     runs on its calling thread only and equals the 1-thread call made
 *     outside. */
#include "internal.h"
#include "testutil.h"

#ifdef _OPENMP
#include <omp.h>
#endif

enum { D = 256, NOUT = 384, H = 8, HKV = 2, HD = 32, NKV = 300, NPRE = 40, MD = 96, MH = 4 };

typedef struct step {
    float *x1, *xp, *w, *bias, *q, *k, *v, *qp, *mx;
    attn_mha_params mp;
    float *mw, *mb, *mo, *mob;
} step;

typedef struct outs {
    float *y1, *yp, *o, *op, *my;
} outs;

static void outs_make(outs *r) {
    r->y1 = tu_zeros(NOUT), r->yp = tu_zeros(NPRE * NOUT), r->o = tu_zeros(H * HD);
    r->op = tu_zeros(H * NPRE * HD), r->my = tu_zeros(NPRE * MD);
}
static void outs_free(outs *r) {
    free(r->y1), free(r->yp), free(r->o), free(r->op), free(r->my);
}

/* Which of the five calls: 0 linear 1 row, 1 linear NPRE rows, 2 sdpa
 * decode, 3 sdpa prefill causal, 4 mha causal. */
static attn_status call(const step *s, outs *r, int which, int nt) {
    attn_view w = attn_view_2d(s->w, D, NOUT), b = attn_view_1d(s->bias, NOUT);
    attn_opts o = attn_opts_default();
    o.num_threads = nt;
    switch (which) {
    case 0: {
        attn_view x = attn_view_2d(s->x1, 1, D), y = attn_view_2d(r->y1, 1, NOUT);
        return attn_linear(&x, &w, &b, &y, nt);
    }
    case 1: {
        attn_view x = attn_view_2d(s->xp, NPRE, D), y = attn_view_2d(r->yp, NPRE, NOUT);
        return attn_linear(&x, &w, &b, &y, nt);
    }
    case 2: {
        attn_view q = attn_view_4d(s->q, 1, H, 1, HD), k = attn_view_4d(s->k, 1, HKV, NKV, HD),
                  v = attn_view_4d(s->v, 1, HKV, NKV, HD), out = attn_view_4d(r->o, 1, H, 1, HD);
        return attn_sdpa(&q, &k, &v, &out, &o);
    }
    case 3: {
        attn_view q = attn_view_4d(s->qp, 1, H, NPRE, HD), k = attn_view_4d(s->k, 1, HKV, NPRE, HD),
                  v = attn_view_4d(s->v, 1, HKV, NPRE, HD),
                  out = attn_view_4d(r->op, 1, H, NPRE, HD);
        o.causal = ATTN_CAUSAL_TOP_LEFT;
        return attn_sdpa(&q, &k, &v, &out, &o);
    }
    default: {
        attn_view x = attn_view_3d(s->mx, 1, NPRE, MD), y = attn_view_3d(r->my, 1, NPRE, MD);
        o.causal = ATTN_CAUSAL_TOP_LEFT;
        return attn_mha(&s->mp, &x, NULL, &y, &o);
    }
    }
}

static const int64_t sizes[5] = {NOUT, NPRE *NOUT, H *HD, H *NPRE *HD, NPRE *MD};
static float *out_of(outs *r, int which) {
    float *p[5] = {r->y1, r->yp, r->o, r->op, r->my};
    return p[which];
}

static int same(outs *a, outs *b, int which) {
    return memcmp(out_of(a, which), out_of(b, which), (size_t)sizes[which] * sizeof(float)) == 0;
}

/* Alone: each call on fresh outputs. Loop: decode (0, 2) and prefill (1, 4,
 * 3) steps interleaved, five times, the outputs compared every time. */
static void alternating(const step *s, int nt) {
    outs alone;
    outs_make(&alone);
    for (int c = 0; c < 5; c++)
        CHECK_OK(call(s, &alone, c, nt));
    const int order[5] = {0, 2, 1, 4, 3};
    outs loop;
    outs_make(&loop);
    int equal = 1;
    for (int it = 0; it < 5; it++)
        for (int j = 0; j < 5; j++) {
            CHECK_OK(call(s, &loop, order[j], nt));
            if (!same(&alone, &loop, order[j])) equal = 0;
        }
    CHECK(equal, "threads=%d: alternating calls differ from the calls made alone", nt);
    outs_free(&alone), outs_free(&loop);
}

/* From inside a parallel region of the program: num_threads = 0 means the
 * calling thread only, and gives the 1-thread results. */
static void inside_parallel(const step *s) {
    outs one;
    outs_make(&one);
    for (int c = 0; c < 5; c++)
        CHECK_OK(call(s, &one, c, 1));
#ifdef _OPENMP
    enum { T = 3 };
    outs mine[T];
    int ok[T] = {0}, eq[T] = {0}, inner[T] = {0};
    for (int t = 0; t < T; t++)
        outs_make(&mine[t]);
#pragma omp parallel num_threads(T)
    {
        const int t = omp_get_thread_num();
        inner[t] = attn__threads(0);
        ok[t] = eq[t] = 1;
        for (int rep = 0; rep < 2; rep++)
            for (int c = 0; c < 5; c++) {
                if (call(s, &mine[t], c, 0) != ATTN_OK) ok[t] = 0;
                if (!same(&one, &mine[t], c)) eq[t] = 0;
            }
    }
    for (int t = 0; t < T; t++) {
        CHECK(inner[t] == 1, "thread %d: attn__threads(0) = %d inside a parallel region", t,
              inner[t]);
        CHECK(ok[t] && eq[t], "thread %d: calls inside a parallel region differ (ok %d)", t, ok[t]);
        outs_free(&mine[t]);
    }
    CHECK(attn__threads(0) >= 1, "outside: %d threads", attn__threads(0));
#endif
    outs_free(&one);
}

int main(void) {
    step s;
    s.x1 = tu_rand(D, -1, 1), s.xp = tu_rand(NPRE * D, -1, 1), s.w = tu_rand(D * NOUT, -0.1f, 0.1f);
    s.bias = tu_rand(NOUT, -1, 1), s.q = tu_rand(H * HD, -1, 1);
    s.k = tu_rand(HKV * NKV * HD, -1, 1), s.v = tu_rand(HKV * NKV * HD, -1, 1);
    s.qp = tu_rand(H * NPRE * HD, -1, 1), s.mx = tu_rand(NPRE * MD, -1, 1);
    s.mw = tu_rand(MD * 3 * MD, -0.1f, 0.1f), s.mb = tu_rand(3 * MD, -1, 1);
    s.mo = tu_rand(MD * MD, -0.1f, 0.1f), s.mob = tu_rand(MD, -1, 1);
    attn_view w = attn_view_2d(s.mw, MD, 3 * MD), b = attn_view_1d(s.mb, 3 * MD),
              wo = attn_view_2d(s.mo, MD, MD), bo = attn_view_1d(s.mob, MD);
    CHECK_OK(attn_mha_from_fused(&w, &b, MH, &wo, &bo, &s.mp));
    const int threads[3] = {1, 2, 3};
    for (int i = 0; i < 3; i++)
        alternating(&s, threads[i]);
    inside_parallel(&s);
    float *all[] = {s.x1, s.xp, s.w, s.bias, s.q, s.k, s.v, s.qp, s.mx, s.mw, s.mb, s.mo, s.mob};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    return tu_summary("test_loops");
}
