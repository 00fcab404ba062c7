/* test_faults.c - allocation-failure injection and the fast path's memory.
 *
 * 1. A counting allocator, installed with attn_set_allocator, fails the N-th
 *    allocation of a call. For every public entry point that allocates, and
 *    for N = 1, 2, ... until the call succeeds, each failing call must
 *      - return ATTN_ERR_NOMEM,
 *      - leave no allocation live (the allocator counts them),
 *      - leave every output byte as it was (outputs are filled with a
 *        sentinel pattern first and compared with memcmp).
 *    The successful call must leave nothing live either, and its result
 *    must equal the one computed without injection.
 * 2. Peak scratch memory of ATTN_ALGO_FLASH, measured through the same
 *    allocator, must not grow with Nq x Nkv.
 *
 * ATTN_TEST_QUICK=1 shrinks the sizes of part 2. */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <stdatomic.h>
#include <time.h>

/* ---- the counting allocator -------------------------------------------- */

/* A header before each block keeps its size, so the allocator can count
 * bytes. Headers are 64 bytes so the user pointer stays aligned to any
 * align <= 64; larger alignments get a header of `align` bytes. */
typedef struct {
    atomic_long calls;    /* allocations attempted since reset */
    atomic_long live;     /* blocks allocated and not yet freed */
    atomic_long bytes;    /* bytes live */
    atomic_long peak;     /* highest `bytes` since reset */
    atomic_long fail_at;  /* 1-based index of the allocation to fail; 0: never */
    atomic_long failures; /* injected failures since reset */
    atomic_long bad_align;
} counter;

static counter C;

static void counter_reset(long fail_at) {
    atomic_store(&C.calls, 0);
    atomic_store(&C.bytes, 0);
    atomic_store(&C.peak, 0);
    atomic_store(&C.failures, 0);
    atomic_store(&C.fail_at, fail_at);
    /* live is not reset: a leak from an earlier call stays visible. */
}

static void *count_alloc(size_t size, size_t align, void *ctx) {
    (void)ctx;
    long n = atomic_fetch_add(&C.calls, 1) + 1;
    if (n == atomic_load(&C.fail_at)) {
        atomic_fetch_add(&C.failures, 1);
        return NULL;
    }
    if (align == 0 || (align & (align - 1)) != 0 || align > 4096) {
        atomic_fetch_add(&C.bad_align, 1);
        return NULL;
    }
    size_t head = align < 64 ? 64 : align;
    size_t total = head + size;
    if (total < size) return NULL;
    total = (total + head - 1) / head * head;
    unsigned char *base = aligned_alloc(head, total);
    if (!base) return NULL;
    memcpy(base, &size, sizeof size);
    memcpy(base + sizeof size, &head, sizeof head);
    /* The user part starts `head` bytes in; its size and the header size sit
     * just before it as well, for count_free. */
    unsigned char *user = base + head;
    memcpy(user - 2 * sizeof(size_t), &size, sizeof size);
    memcpy(user - sizeof(size_t), &head, sizeof head);
    atomic_fetch_add(&C.live, 1);
    long now = atomic_fetch_add(&C.bytes, (long)size) + (long)size;
    long pk = atomic_load(&C.peak);
    while (now > pk && !atomic_compare_exchange_weak(&C.peak, &pk, now)) {
    }
    return user;
}

static void count_free(void *p, void *ctx) {
    (void)ctx;
    if (!p) return;
    unsigned char *user = p;
    size_t size, head;
    memcpy(&size, user - 2 * sizeof(size_t), sizeof size);
    memcpy(&head, user - sizeof(size_t), sizeof head);
    atomic_fetch_sub(&C.live, 1);
    atomic_fetch_sub(&C.bytes, (long)size);
    free(user - head);
}

static const attn_allocator counting = {count_alloc, count_free, NULL};

/* ---- one fault-injection sweep ----------------------------------------- */

/* An output buffer the calls write into: compared byte for byte. */
typedef struct {
    float *p;
    int64_t n;
} outbuf;

#define SENTINEL_BYTE 0xA5 /* 0xA5A5A5A5 is a float of about -2.9e-16 */

static void fill_sentinel(const outbuf *o, int n) {
    for (int i = 0; i < n; i++)
        memset(o[i].p, SENTINEL_BYTE, (size_t)o[i].n * sizeof(float));
}

static int untouched(const outbuf *o, int n) {
    for (int i = 0; i < n; i++) {
        const unsigned char *b = (const unsigned char *)o[i].p;
        for (size_t j = 0; j < (size_t)o[i].n * sizeof(float); j++)
            if (b[j] != SENTINEL_BYTE) return 0;
    }
    return 1;
}

typedef attn_status (*call_fn)(void *ctx);

/* Totals for the report. */
static long total_points = 0, total_cases = 0;

/* Run `call` with the N-th allocation failing for N = 1, 2, ... until it
 * succeeds; outputs o[0..no-1]. min_points: allocations the call must make
 * at least (1 wherever scratch is unavoidable: projections, score rows; exact
 * counts are the implementation's business), so a sweep that never injects
 * a failure is caught. */
static void sweep(const char *name, call_fn call, void *ctx, const outbuf *o, int no,
                  long min_points) {
    /* The result without injection, to compare the final success with. */
    float **want = malloc((size_t)no * sizeof *want);
    fill_sentinel(o, no);
    counter_reset(0);
    attn_status s = call(ctx);
    CHECK(s == ATTN_OK, "%s without injection: %s: %s", name, attn_status_string(s),
          attn_last_error());
    const long allocs = atomic_load(&C.calls);
    for (int i = 0; i < no; i++)
        want[i] = tu_copy(o[i].p, o[i].n);

    long n = 1, bad = 0;
    for (; n <= allocs + 1; n++) {
        fill_sentinel(o, no);
        const long live0 = atomic_load(&C.live);
        counter_reset(n);
        s = call(ctx);
        const long leaked = atomic_load(&C.live) - live0;
        CHECK(leaked == 0, "%s, allocation %ld failing: %ld blocks leaked", name, n, leaked);
        if (atomic_load(&C.failures) == 0) {
            /* Allocation n never happened: the call must have succeeded. */
            CHECK(s == ATTN_OK, "%s, no failure injected: %s: %s", name, attn_status_string(s),
                  attn_last_error());
            break;
        }
        if (s != ATTN_ERR_NOMEM || !untouched(o, no)) bad++;
        CHECK(s == ATTN_ERR_NOMEM, "%s, allocation %ld failing: got %s: %s", name, n,
              attn_status_string(s), attn_last_error());
        CHECK(untouched(o, no), "%s, allocation %ld failing: an output was written", name, n);
    }
    CHECK(n == allocs + 1, "%s: %ld allocations without injection but %ld with", name, allocs,
          n - 1);
    CHECK(allocs >= min_points, "%s: only %ld allocations, expected at least %ld", name, allocs,
          min_points);
    for (int i = 0; i < no; i++) {
        CHECK(memcmp(want[i], o[i].p, (size_t)o[i].n * sizeof(float)) == 0,
              "%s: output %d after the sweep differs from the first run", name, i);
        free(want[i]);
    }
    free(want);
    printf("  %-44s %2ld allocation points, %s\n", name, allocs, bad ? "VIOLATIONS" : "all held");
    total_points += allocs;
    total_cases++;
}

/* ---- the calls --------------------------------------------------------- */

typedef struct {
    attn_view q, k, v, out, lse, weights, mask;
    int64_t key_lengths[4];
    attn_opts o;
} sdpa_case;

static attn_status call_sdpa(void *ctx) {
    sdpa_case *c = ctx;
    return attn_sdpa(&c->q, &c->k, &c->v, &c->out, &c->o);
}

static void sdpa_sweeps(void) {
    /* Prefill, grouped-query, strided k (the head dimension not innermost),
     * lse requested, a mask and key lengths. */
    enum { B = 2, H = 4, Hkv = 2, Nq = 70, Nkv = 130, d = 16, dv = 12 };
    float *q = tu_rand(B * H * Nq * d, -1, 1), *kbuf = tu_rand(B * Hkv * Nkv * d, -1, 1);
    float *v = tu_rand(B * Hkv * Nkv * dv, -1, 1), *mask = tu_rand(Nq * Nkv, -2, 2);
    float *out = tu_zeros(B * H * Nq * dv), *lse = tu_zeros(B * H * Nq);
    float *w = tu_zeros(B * H * Nq * Nkv);
    for (int64_t i = 0; i < Nq * Nkv; i += 7)
        mask[i] = -INFINITY;
    sdpa_case c;
    c.q = attn_view_4d(q, B, H, Nq, d);
    /* k stored as (B, Hkv, d, Nkv) and seen as (B, Hkv, Nkv, d). */
    c.k = attn_view_swap(attn_view_4d(kbuf, B, Hkv, d, Nkv), 2, 3);
    c.v = attn_view_4d(v, B, Hkv, Nkv, dv);
    c.out = attn_view_4d(out, B, H, Nq, dv);
    c.lse = attn_view_3d(lse, B, H, Nq);
    c.weights = attn_view_4d(w, B, H, Nq, Nkv);
    c.mask = attn_view_4d(mask, 1, 1, Nq, Nkv);
    c.key_lengths[0] = Nkv;
    c.key_lengths[1] = 77;
    const outbuf ob[3] = {{out, B * H * Nq * dv}, {lse, B * H * Nq}, {w, B * H * Nq * Nkv}};

    static const attn_algo algos[3] = {ATTN_ALGO_REFERENCE, ATTN_ALGO_FLASH, ATTN_ALGO_AUTO};
    static const char *const names[3] = {"reference", "flash", "auto"};
    char label[96];
    for (int a = 0; a < 3; a++) {
        for (int threads = 1; threads <= 2; threads++) {
            c.o = attn_opts_default();
            c.o.algo = algos[a];
            c.o.num_threads = threads;
            c.o.lse = &c.lse;
            c.o.mask = &c.mask;
            c.o.key_lengths = c.key_lengths;
            c.o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
            snprintf(label, sizeof label, "attn_sdpa %s prefill, %d thr", names[a], threads);
            sweep(label, call_sdpa, &c, ob, 2, 1);
        }
    }
    /* Every score modifier at once, both paths (since 0.2.0). */
    float slopes[H] = {0.5f, 0.25f, 0.125f, 0.0625f}, sinks[H] = {-1.0f, 0.0f, 1.0f, 2.0f};
    for (int a = 0; a < 2; a++) {
        c.o = attn_opts_default();
        c.o.algo = algos[a];
        c.o.num_threads = 2;
        c.o.lse = &c.lse;
        c.o.mask = &c.mask;
        c.o.key_lengths = c.key_lengths;
        c.o.causal = ATTN_CAUSAL_TOP_LEFT;
        c.o.window_left = 40;
        c.o.softcap = 5.0f;
        c.o.alibi_slopes = slopes;
        c.o.sinks = sinks;
        snprintf(label, sizeof label, "attn_sdpa %s prefill, modifiers", names[a]);
        sweep(label, call_sdpa, &c, ob, 2, 1);
    }
    /* Dropout and the weights output: the reference path, whatever algo says. */
    c.o = attn_opts_default();
    c.o.algo = ATTN_ALGO_FLASH;
    c.o.dropout_p = 0.25f;
    c.o.dropout_seed = 7;
    c.o.weights = &c.weights;
    c.o.lse = &c.lse;
    c.o.num_threads = 2;
    sweep("attn_sdpa dropout + weights", call_sdpa, &c, ob, 3, 1);
    free(q), free(kbuf), free(v), free(mask), free(out), free(lse), free(w);

    /* Decode: one query, many keys, split across threads. */
    {
        enum { DB = 1, DH = 8, DHkv = 2, DNkv = 5000, Dd = 32 };
        float *dq = tu_rand(DB * DH * Dd, -1, 1), *dk = tu_rand(DB * DHkv * DNkv * Dd, -1, 1);
        float *dvv = tu_rand(DB * DHkv * DNkv * Dd, -1, 1), *dout = tu_zeros(DB * DH * Dd);
        float *dlse = tu_zeros(DB * DH);
        sdpa_case e;
        e.q = attn_view_4d(dq, DB, DH, 1, Dd);
        e.k = attn_view_4d(dk, DB, DHkv, DNkv, Dd);
        e.v = attn_view_4d(dvv, DB, DHkv, DNkv, Dd);
        e.out = attn_view_4d(dout, DB, DH, 1, Dd);
        e.lse = attn_view_3d(dlse, DB, DH, 1);
        const outbuf eb[2] = {{dout, DB * DH * Dd}, {dlse, DB * DH}};
        for (int a = 0; a < 3; a++) {
            for (int threads = 1; threads <= 3; threads += 2) {
                e.o = attn_opts_default();
                e.o.algo = algos[a];
                e.o.num_threads = threads;
                e.o.lse = &e.lse;
                snprintf(label, sizeof label, "attn_sdpa %s decode, %d thr", names[a], threads);
                sweep(label, call_sdpa, &e, eb, 2, 1);
            }
        }
        /* Split decode with a window and sinks (the sink joins the fold once). */
        float dsinks[DH] = {0.5f, -0.5f, 1, 2, 3, -3, 0, 0};
        e.o = attn_opts_default();
        e.o.algo = ATTN_ALGO_FLASH;
        e.o.num_threads = 3;
        e.o.lse = &e.lse;
        e.o.window_left = 2000;
        e.o.sinks = dsinks;
        e.o.softcap = 30.0f;
        sweep("attn_sdpa flash decode, window + sinks", call_sdpa, &e, eb, 2, 1);
        free(dq), free(dk), free(dvv), free(dout), free(dlse);
    }
}

/* attn_sdpa_backward: both paths, the fast one with dmask, dsinks, dropout
 * and every option; then its peak scratch against N (no N x N). */
typedef struct {
    attn_view q, k, v, out, lse, dout, dq, dk, dv, mask, dmask, dsinks;
    attn_opts o;
    attn_backward_extras x;
} bwd_case;

static attn_status call_backward(void *ctx) {
    bwd_case *c = ctx;
    return attn_sdpa_backward(&c->q, &c->k, &c->v, &c->out, &c->lse, &c->dout, &c->dq, &c->dk,
                              &c->dv, &c->o, &c->x);
}

static void backward_sweeps(void) {
    enum { B = 2, H = 4, Hkv = 2, Nq = 70, Nkv = 90, d = 16, dv = 12 };
    float *q = tu_rand(B * H * Nq * d, -1, 1), *k = tu_rand(B * Hkv * Nkv * d, -1, 1);
    float *v = tu_rand(B * Hkv * Nkv * dv, -1, 1), *mask = tu_rand(Nq * Nkv, -2, 2);
    float *out = tu_zeros(B * H * Nq * dv), *lse = tu_zeros(B * H * Nq);
    float *dout = tu_rand(B * H * Nq * dv, -1, 1), sinks[H] = {0.5f, -1.0f, 0.0f, 2.0f};
    float *dq = tu_zeros(B * H * Nq * d), *dk = tu_zeros(B * Hkv * Nkv * d);
    float *dvv = tu_zeros(B * Hkv * Nkv * dv), *dmask = tu_zeros(Nq * Nkv), dsinks[H];
    for (int64_t i = 0; i < Nq * Nkv; i += 5)
        mask[i] = -INFINITY;
    bwd_case c;
    c.q = attn_view_4d(q, B, H, Nq, d);
    c.k = attn_view_4d(k, B, Hkv, Nkv, d);
    c.v = attn_view_4d(v, B, Hkv, Nkv, dv);
    c.out = attn_view_4d(out, B, H, Nq, dv);
    c.lse = attn_view_3d(lse, B, H, Nq);
    c.dout = attn_view_4d(dout, B, H, Nq, dv);
    c.dq = attn_view_4d(dq, B, H, Nq, d);
    c.dk = attn_view_4d(dk, B, Hkv, Nkv, d);
    c.dv = attn_view_4d(dvv, B, Hkv, Nkv, dv);
    c.mask = attn_view_4d(mask, 1, 1, Nq, Nkv);
    c.dmask = attn_view_4d(dmask, 1, 1, Nq, Nkv);
    c.dsinks = attn_view_1d(dsinks, H);
    const outbuf ob[5] = {{dq, B * H * Nq * d},
                          {dk, B * Hkv * Nkv * d},
                          {dvv, B * Hkv * Nkv * dv},
                          {dmask, Nq * Nkv},
                          {dsinks, H}};
    static const attn_algo algos[2] = {ATTN_ALGO_REFERENCE, ATTN_ALGO_FLASH};
    char label[96];
    for (int a = 0; a < 2; a++)
        for (int threads = 1; threads <= 2; threads++) {
            c.o = attn_opts_default();
            c.o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
            c.o.mask = &c.mask;
            c.o.sinks = sinks;
            c.o.softcap = 2.0f;
            c.o.window_left = 40;
            c.o.dropout_p = 0.1f;
            c.o.dropout_seed = 3;
            c.o.num_threads = threads;
            attn_opts fo = c.o;
            fo.lse = &c.lse;
            attn_set_allocator(NULL);
            CHECK_OK(attn_sdpa(&c.q, &c.k, &c.v, &c.out, &fo));
            attn_set_allocator(&counting);
            c.o.algo = algos[a];
            c.x = attn_backward_extras_default();
            c.x.dmask = &c.dmask;
            c.x.dsinks = &c.dsinks;
            snprintf(label, sizeof label, "attn_sdpa_backward %s, %d thr",
                     a ? "flash" : "reference", threads);
            sweep(label, call_backward, &c, ob, 5, 1);
        }
    free(q), free(k), free(v), free(mask), free(out), free(lse), free(dout), free(dq), free(dk);
    free(dvv), free(dmask);
}

/* Peak scratch of the fast backward at B = H = 1, d = 64, causal: the
 * per-thread tiles plus N floats of D, never N x N. */
static long backward_peak(int64_t N) {
    float *q = tu_rand(N * 64, -1, 1), *k = tu_rand(N * 64, -1, 1), *v = tu_rand(N * 64, -1, 1);
    float *out = tu_zeros(N * 64), *lse = tu_zeros(N), *g = tu_zeros(3 * N * 64);
    attn_view vq = attn_view_4d(q, 1, 1, N, 64), vk = attn_view_4d(k, 1, 1, N, 64);
    attn_view vv = attn_view_4d(v, 1, 1, N, 64), vo = attn_view_4d(out, 1, 1, N, 64);
    attn_view vl = attn_view_3d(lse, 1, 1, N), vdq = attn_view_4d(g, 1, 1, N, 64);
    attn_view vdk = attn_view_4d(g + N * 64, 1, 1, N, 64);
    attn_view vdv = attn_view_4d(g + 2 * N * 64, 1, 1, N, 64);
    attn_opts o = attn_opts_default();
    o.causal = ATTN_CAUSAL_TOP_LEFT;
    o.num_threads = 2;
    o.lse = &vl;
    CHECK_OK(attn_sdpa(&vq, &vk, &vv, &vo, &o));
    o.lse = NULL;
    counter_reset(0);
    CHECK_OK(attn_sdpa_backward(&vq, &vk, &vv, &vo, &vl, &vo, &vdq, &vdk, &vdv, &o, NULL));
    const long peak = atomic_load(&C.peak);
    free(q), free(k), free(v), free(out), free(lse), free(g);
    return peak;
}

static void backward_memory(int quick) {
    const int64_t n1 = quick ? 512 : 1024, n2 = 4 * n1;
    const long p1 = backward_peak(n1), p2 = backward_peak(n2);
    printf("  attn_sdpa_backward peak scratch: N=%lld %ld bytes, N=%lld %ld bytes\n", (long long)n1,
           p1, (long long)n2, p2);
    /* 4 N bytes of D more, nothing that grows with N^2 */
    CHECK(p2 - p1 <= 4 * (n2 - n1) + 4096, "backward scratch grows with N: %ld -> %ld", p1, p2);
    CHECK(p2 < (1l << 20) + 4 * n2, "backward scratch %ld bytes is not O(threads x tile)", p2);
}

/* The module gradients: every one that allocates, through the same sweep. */
typedef struct {
    attn_view x, W, dy, dx, dW, db, g, xr, dyr, dxr;
    attn_mha_params p, gp;
    attn_view mx, mdout, mdx;
    int64_t pos[6];
    int which;
} grads_case;

static attn_status call_grads(void *ctx) {
    grads_case *c = ctx;
    attn_rope_params rp = attn_rope_params_default();
    switch (c->which) {
    case 0:
        return attn_linear_backward(&c->x, &c->W, &c->dy, &c->dx, &c->dW, &c->db, 2);
    case 1:
        return attn_layer_norm_backward(&c->x, &c->g, &c->dx, 1e-5f, &c->dy, &c->db, NULL);
    case 2:
        return attn_rms_norm_backward(&c->x, &c->g, &c->dx, 1e-5f, &c->dy, &c->db);
    case 3:
        return attn_rope_backward(&c->xr, c->pos, NULL, &c->dxr, &rp);
    default:
        return attn_mha_backward(&c->p, &c->mx, NULL, &c->mdout, &c->mdx, NULL, &c->gp, NULL);
    }
}

static void grads_sweeps(void) {
    enum { N = 6, I = 8, O = 5, D = 8, H = 2, HS = 4 };
    float *x = tu_rand(N * I, -1, 1), *W = tu_rand(I * O, -1, 1), *dy = tu_rand(N * O, -1, 1);
    float *dx = tu_zeros(N * I), *dW = tu_zeros(I * O), *db = tu_zeros(O > I ? O : I);
    float *g = tu_rand(I, 0.5f, 1.5f), *dyn = tu_zeros(N * I);
    float *Wqkv = tu_rand(D * 3 * D, -1, 1), *Wo = tu_rand(D * D, -1, 1);
    float *gW = tu_zeros(D * 3 * D), *gWo = tu_zeros(D * D);
    float *mx = tu_rand(N * D, -1, 1), *mdout = tu_rand(N * D, -1, 1), *mdx = tu_zeros(N * D);
    grads_case c;
    memset(&c, 0, sizeof c);
    c.x = attn_view_2d(x, N, I);
    c.W = attn_view_2d(W, I, O);
    c.dy = attn_view_2d(dy, N, O);
    c.dx = attn_view_2d(dx, N, I);
    c.dW = attn_view_2d(dW, I, O);
    c.db = attn_view_1d(db, O);
    c.g = attn_view_1d(g, I);
    c.xr = attn_view_4d(x, 1, 1, N, I);
    c.dxr = attn_view_4d(dx, 1, 1, N, I);
    for (int i = 0; i < N; i++)
        c.pos[i] = 3 * i + 1;
    attn_view vW = attn_view_2d(Wqkv, D, 3 * D), vWo = attn_view_2d(Wo, D, D);
    attn_view vgW = attn_view_2d(gW, D, 3 * D), vgWo = attn_view_2d(gWo, D, D);
    CHECK_OK(attn_mha_from_fused(&vW, NULL, H, &vWo, NULL, &c.p));
    CHECK_OK(attn_mha_from_fused(&vgW, NULL, H, &vgWo, NULL, &c.gp));
    (void)HS;
    c.mx = attn_view_2d(mx, N, D);
    c.mdout = attn_view_2d(mdout, N, D);
    c.mdx = attn_view_2d(mdx, N, D);
    const outbuf lin_out[3] = {{dx, N * I}, {dW, I * O}, {db, O}};
    c.which = 0;
    sweep("attn_linear_backward", call_grads, &c, lin_out, 3, 1);
    /* norms: dx is the input dy here, outputs dy (as dx) and db (as dgamma) */
    c.dx = attn_view_2d(dx, N, I);
    c.dy = attn_view_2d(dyn, N, I);
    c.db = attn_view_1d(db, I);
    const outbuf nrm_out[2] = {{dyn, N * I}, {db, I}};
    c.which = 1;
    sweep("attn_layer_norm_backward", call_grads, &c, nrm_out, 2, 1);
    c.which = 2;
    sweep("attn_rms_norm_backward", call_grads, &c, nrm_out, 2, 1);
    const outbuf rope_out[1] = {{dx, N * I}};
    c.which = 3;
    sweep("attn_rope_backward", call_grads, &c, rope_out, 1, 1);
    const outbuf mha_out[3] = {{mdx, N * D}, {gW, D * 3 * D}, {gWo, D * D}};
    c.which = 4;
    sweep("attn_mha_backward fused, Wo", call_grads, &c, mha_out, 3, 1);
    free(x), free(W), free(dy), free(dx), free(dW), free(db), free(g), free(dyn), free(Wqkv);
    free(Wo), free(gW), free(gWo), free(mx), free(mdout), free(mdx);
}

typedef struct {
    attn_mha_params p;
    attn_view xq, xkv, out;
    int cross;
    attn_opts o;
} mha_case;

static attn_status call_mha(void *ctx) {
    mha_case *c = ctx;
    return attn_mha(&c->p, &c->xq, c->cross ? &c->xkv : NULL, &c->out, &c->o);
}

static void mha_sweeps(void) {
    enum { B = 2, N = 19, Nkv = 23, D = 24, NH = 4, HS = D / NH, Dout = 10 };
    float *x = tu_rand(B * N * D, -1, 1), *xkv = tu_rand(B * Nkv * D, -1, 1);
    float *Wqkv = tu_rand(D * 3 * D, -0.3f, 0.3f), *bqkv = tu_rand(3 * D, -0.1f, 0.1f);
    float *Wo = tu_rand(D * Dout, -0.3f, 0.3f), *bo = tu_rand(Dout, -0.1f, 0.1f);
    float *WoT = tu_rand(Dout * 3 * D, -0.3f, 0.3f);
    float *out = tu_zeros(B * N * 3 * D);
    mha_case c;
    memset(&c, 0, sizeof c);
    char label[96];

    /* Fused weights with biases and an output projection, causal. */
    attn_view wv = attn_view_2d(Wqkv, D, 3 * D), bv = attn_view_1d(bqkv, 3 * D);
    attn_view wov = attn_view_2d(Wo, D, Dout), bov = attn_view_1d(bo, Dout);
    CHECK_OK(attn_mha_from_fused(&wv, &bv, NH, &wov, &bov, &c.p));
    c.xq = attn_view_3d(x, B, N, D);
    c.out = attn_view_3d(out, B, N, Dout);
    outbuf ob = {out, B * N * Dout};
    for (int a = 1; a <= 2; a++) {
        c.o = attn_opts_default();
        c.o.causal = ATTN_CAUSAL_TOP_LEFT;
        c.o.algo = (attn_algo)a;
        c.o.num_threads = 2;
        snprintf(label, sizeof label, "attn_mha fused+Wo, %s", a == 1 ? "reference" : "flash");
        sweep(label, call_mha, &c, &ob, 1, 1);
    }

    /* Per-head weights that are not side by side (one GEMM per head),
     * cross-attention, no Wo: heads written straight into out. */
    float *Wq = tu_rand(NH * D * HS, -0.3f, 0.3f), *Wk = tu_rand(NH * D * HS, -0.3f, 0.3f);
    float *Wv = tu_rand(NH * D * HS, -0.3f, 0.3f), *bq = tu_rand(NH * HS, -0.1f, 0.1f);
    memset(&c.p, 0, sizeof c.p);
    c.p.num_heads = NH;
    c.p.Wq = attn_view_3d(Wq, NH, D, HS);
    c.p.Wk = attn_view_3d(Wk, NH, D, HS);
    c.p.Wv = attn_view_3d(Wv, NH, D, HS);
    c.p.bq = attn_view_2d(bq, NH, HS);
    c.xkv = attn_view_3d(xkv, B, Nkv, D);
    c.cross = 1;
    c.out = attn_view_3d(out, B, N, NH * HS);
    ob.n = B * N * NH * HS;
    c.o = attn_opts_default();
    c.o.num_threads = 2;
    sweep("attn_mha per-head, cross, no Wo", call_mha, &c, &ob, 1, 1);

    /* An output projection stored transposed in a wider buffer (neither
     * stride is 1) and an output with a non-unit last stride. */
    /* Wo[i, o] = WoT[o * 2*NH*HS + 2*i]: WoT is (Dout, 2*NH*HS). */
    c.p.Wo = (attn_view){WoT, 2, {NH * HS, Dout}, {2, 2 * NH * HS}};
    c.p.bo = attn_view_1d(bo, Dout);
    c.out = (attn_view){out, 3, {B, N, Dout}, {N * Dout * 2, Dout * 2, 2}};
    ob.n = B * N * Dout * 2;
    sweep("attn_mha per-head, strided Wo and out", call_mha, &c, &ob, 1, 1);
    free(x), free(xkv), free(Wqkv), free(bqkv), free(Wo), free(bo), free(WoT), free(out);
    free(Wq), free(Wk), free(Wv), free(bq);
}

typedef struct {
    attn_view x, W, b, y;
    int has_bias, threads;
} linear_case;

static attn_status call_linear(void *ctx) {
    linear_case *c = ctx;
    return attn_linear(&c->x, &c->W, c->has_bias ? &c->b : NULL, &c->y, c->threads);
}

typedef struct {
    attn_view xq, xkv, Wq, Wk, Wv, out;
    int cross;
    attn_opts o;
} single_case;

static attn_status call_single(void *ctx) {
    single_case *c = ctx;
    if (c->cross)
        return attn_cross_attention(&c->xq, &c->xkv, &c->Wq, &c->Wk, &c->Wv, &c->out, &c->o);
    return attn_self_attention(&c->xq, &c->Wq, &c->Wk, &c->Wv, &c->out, &c->o);
}

static void module_sweeps(void) {
    enum { B = 3, N = 11, IN = 9, OUT = 7 };
    /* x (B, N, IN) read with strides (2*N*IN, 2*IN, 2): every other float;
     * W (IN, OUT) stored as (OUT, 2*IN) and read transposed with stride 2;
     * y (B, N, OUT) written with a last stride of 3. */
    float *x = tu_rand(B * N * IN * 2, -1, 1), *W = tu_rand(OUT * IN * 2, -1, 1);
    float *b = tu_rand(OUT, -1, 1), *y = tu_zeros(B * N * OUT * 3);
    linear_case lc;
    lc.x = (attn_view){x, 3, {B, N, IN}, {2 * N * IN, 2 * IN, 2}};
    lc.W = (attn_view){W, 2, {IN, OUT}, {2, 2 * IN}};
    lc.b = attn_view_1d(b, OUT);
    lc.y = (attn_view){y, 3, {B, N, OUT}, {3 * N * OUT, 3 * OUT, 3}};
    lc.has_bias = 1;
    lc.threads = 2;
    outbuf ob = {y, B * N * OUT * 3};
    sweep("attn_linear strided x, W, y", call_linear, &lc, &ob, 1, 1);
    /* Contiguous y: nothing needs a temporary; a sweep of 0 points. */
    lc.y = attn_view_3d(y, B, N, OUT);
    ob.n = B * N * OUT;
    sweep("attn_linear strided x, W; contiguous y", call_linear, &lc, &ob, 1, 0);
    free(x), free(W), free(b), free(y);

    enum { SB = 2, SN = 13, SNkv = 17, D = 10, HS = 6 };
    float *xs = tu_rand(SB * SN * D, -1, 1), *xk = tu_rand(SB * SNkv * D, -1, 1);
    float *Wq = tu_rand(D * HS, -1, 1), *Wk = tu_rand(D * HS, -1, 1), *Wv = tu_rand(D * HS, -1, 1);
    float *o = tu_zeros(SB * SN * HS);
    single_case sc;
    sc.xq = attn_view_3d(xs, SB, SN, D);
    sc.xkv = attn_view_3d(xk, SB, SNkv, D);
    sc.Wq = attn_view_2d(Wq, D, HS);
    sc.Wk = attn_view_2d(Wk, D, HS);
    sc.Wv = attn_view_2d(Wv, D, HS);
    sc.out = attn_view_3d(o, SB, SN, HS);
    outbuf so = {o, SB * SN * HS};
    for (int cross = 0; cross <= 1; cross++) {
        for (int a = 1; a <= 2; a++) {
            sc.cross = cross;
            sc.o = attn_opts_default();
            sc.o.algo = (attn_algo)a;
            sc.o.causal = cross ? ATTN_CAUSAL_NONE : ATTN_CAUSAL_TOP_LEFT;
            sc.o.num_threads = 2;
            char label[96];
            snprintf(label, sizeof label, "%s, %s",
                     cross ? "attn_cross_attention" : "attn_self_attention",
                     a == 1 ? "reference" : "flash");
            sweep(label, call_single, &sc, &so, 1, 1);
        }
    }
    free(xs), free(xk), free(Wq), free(Wk), free(Wv), free(o);
}

typedef struct {
    attn_view x, y;
    int64_t pos[64], ps[3];
    attn_rope_params p;
} rope_case;

static attn_status call_rope(void *ctx) {
    rope_case *c = ctx;
    return attn_rope(&c->x, c->pos, c->ps, &c->y, &c->p);
}

/* RoPE (its cos/sin table) and a grouped-query module (fused and per-head). */
static void decoder_sweeps(void) {
    enum { B = 2, H = 3, N = 5, d = 12 };
    float *x = tu_rand(B * N * H * d, -1, 1), *y = tu_zeros(B * H * N * d);
    rope_case rc;
    memset(&rc, 0, sizeof rc);
    rc.x = (attn_view){x, 4, {B, H, N, d}, {N * H * d, d, H * d, 1}};
    rc.y = attn_view_4d(y, B, H, N, d);
    for (int i = 0; i < B * N; i++)
        rc.pos[i] = 1000 * i + 3;
    rc.ps[0] = N, rc.ps[1] = 0, rc.ps[2] = 1;
    rc.p = attn_rope_params_default();
    rc.p.rotary_dim = 8;
    outbuf ob = {y, B * H * N * d};
    sweep("attn_rope partial, strided x", call_rope, &rc, &ob, 1, 1);
    /* In place: x is the output. */
    rc.y = rc.x;
    rc.p.style = ATTN_ROPE_GPTJ;
    ob = (outbuf){x, B * N * H * d};
    sweep("attn_rope in place, GPTJ", call_rope, &rc, &ob, 1, 1);

    enum { D = 16, NH = 4, G = 2, HS = 4, W = (NH + 2 * G) * HS };
    float *xs = tu_rand(B * N * D, -1, 1), *Wqkv = tu_rand(D * W, -0.3f, 0.3f);
    float *bqkv = tu_rand(W, -0.1f, 0.1f), *Wo = tu_rand(NH * HS * D, -0.3f, 0.3f);
    float *out = tu_zeros(B * N * D);
    mha_case c;
    memset(&c, 0, sizeof c);
    attn_view wv = attn_view_2d(Wqkv, D, W), bv = attn_view_1d(bqkv, W);
    attn_view wov = attn_view_2d(Wo, NH * HS, D);
    CHECK_OK(attn_mha_from_fused_gqa(&wv, &bv, NH, G, &wov, NULL, &c.p));
    c.xq = attn_view_3d(xs, B, N, D);
    c.out = attn_view_3d(out, B, N, D);
    ob = (outbuf){out, B * N * D};
    c.o = attn_opts_default();
    c.o.causal = ATTN_CAUSAL_TOP_LEFT;
    c.o.num_threads = 2;
    sweep("attn_mha GQA fused (H=4, Hkv=2)", call_mha, &c, &ob, 1, 1);
    /* The same weights as per-head stacks (strided views, not side by side
     * after swapping k and v), cross-attention. */
    attn_view k = c.p.Wk;
    c.p.Wk = c.p.Wv, c.p.Wv = k;
    c.xkv = attn_view_3d(xs, B, N, D);
    c.cross = 1;
    sweep("attn_mha GQA per-head, cross", call_mha, &c, &ob, 1, 1);
    free(x), free(y), free(xs), free(Wqkv), free(bqkv), free(Wo), free(out);
}

/* Entry points documented as allocation-free must not call the allocator. */
static void no_alloc_calls(void) {
    float x[24], y[24], g[6], lse2[8], out2[2 * 4 * 3];
    for (int i = 0; i < 24; i++)
        x[i] = tu_uniform(-1, 1);
    for (int i = 0; i < 6; i++)
        g[i] = 1.0f;
    for (int i = 0; i < 8; i++)
        lse2[i] = tu_uniform(-1, 1);
    attn_view xv = attn_view_2d(x, 4, 6), yv = attn_view_2d(y, 4, 6), gv = attn_view_1d(g, 6);
    counter_reset(1); /* the first allocation, if any, fails */
    CHECK_OK(attn_softmax(&xv, &yv));
    CHECK_OK(attn_layer_norm(&xv, &gv, NULL, 1e-5f, &yv));
    CHECK_OK(attn_rms_norm(&xv, &gv, 1e-5f, &yv));
    attn_view qkv = attn_view_3d(x, 1, 2, 12), sq, sk, sv;
    CHECK_OK(attn_split_qkv_gqa(&qkv, 2, 1, &sq, &sk, &sv));
    /* Merge of two parts of (1, 1, 4, 3) outputs. */
    attn_view po[2] = {attn_view_4d(x, 1, 1, 4, 3), attn_view_4d(x + 12, 1, 1, 4, 3)};
    attn_view pl[2] = {attn_view_3d(lse2, 1, 1, 4), attn_view_3d(lse2 + 4, 1, 1, 4)};
    attn_view mo = attn_view_4d(out2, 1, 1, 4, 3);
    CHECK_OK(attn_merge(po, pl, 2, &mo, NULL));
    /* W (6, 4) packed into one panel, then y (4, 4) = x (4, 6) @ W, with a
     * y column stride that takes the per-thread buffer path. */
    float wp[6 * ATTN_PANEL], yp[4 * 4 * 2];
    attn_view wv = attn_view_2d(x, 6, 4), wpv = attn_view_3d(wp, 1, 6, ATTN_PANEL),
              ypv = {yp, 2, {4, 4}, {8, 2}};
    CHECK_OK(attn_weight_pack(&wv, &wpv));
    CHECK_OK(attn_linear_packed(&xv, &wpv, NULL, &ypv, 2));
    CHECK(atomic_load(&C.calls) == 0,
          "softmax/layer_norm/rms_norm/split_qkv_gqa/merge/weight_pack/linear_packed allocated "
          "%ld times",
          atomic_load(&C.calls));
    printf("  %-44s  0 allocation points (checked)\n",
           "attn_softmax, attn_layer_norm, attn_rms_norm, attn_split_qkv_gqa, attn_merge, "
           "attn_weight_pack, attn_linear_packed");
}

/* ---- the KV cache -------------------------------------------------------- */

typedef struct {
    attn_kv_cache *c;
    attn_view q, out, lse;
    int32_t tables[3 * 8];
    int64_t lengths[3], q_lengths[3];
    int use_qlen;
    attn_opts o;
} kv_case;

static attn_status call_kv_attend(void *ctx) {
    kv_case *c = ctx;
    return attn_kv_attend(c->c, &c->q, c->tables, 8, c->lengths, c->use_qlen ? c->q_lengths : NULL,
                          &c->out, &c->o);
}

static void kv_sweeps(void) {
    /* attn_kv_create: every allocation failing in turn gives NOMEM, a NULL
     * handle and nothing live. */
    long n = 1;
    for (;; n++) {
        const long live0 = atomic_load(&C.live);
        attn_kv_cache *c = (attn_kv_cache *)&n;
        counter_reset(n);
        const attn_status s = attn_kv_create(24, 32, 2, 16, 12, ATTN_KV_FLOAT16, &c);
        if (atomic_load(&C.failures) == 0) {
            CHECK(s == ATTN_OK, "attn_kv_create without failure: %s", attn_last_error());
            attn_kv_destroy(c);
            break;
        }
        CHECK(s == ATTN_ERR_NOMEM && c == NULL, "attn_kv_create, allocation %ld failing: %s", n,
              attn_status_string(s));
        CHECK(atomic_load(&C.live) == live0, "attn_kv_create, allocation %ld failing: a leak", n);
    }
    printf("  %-44s %2ld allocation points, all held\n", "attn_kv_create", n - 1);
    total_points += n - 1;
    total_cases++;

    enum { B = 3, H = 4, Hkv = 2, Nq = 5, d = 16, dv = 12, bs = 32 };
    kv_case kc;
    memset(&kc, 0, sizeof kc);
    counter_reset(0);
    CHECK_OK(attn_kv_create(24, bs, Hkv, d, dv, ATTN_KV_BFLOAT16, &kc.c));
    for (int i = 0; i < B * 8; i++)
        kc.tables[i] = (int32_t)((i * 7) % 24);
    const int64_t L[B] = {200, 1, 130};
    float *k = tu_rand(B * Hkv * 256 * d, -1, 1), *v = tu_rand(B * Hkv * 256 * dv, -1, 1);
    const int64_t starts[B] = {0, 0, 0};
    attn_view kv = attn_view_4d(k, B, Hkv, 256, d), vv = attn_view_4d(v, B, Hkv, 256, dv);
    counter_reset(1); /* append, read and copy must not allocate */
    CHECK_OK(attn_kv_append(kc.c, kc.tables, 8, starts, L, &kv, &vv));
    float *rk = tu_zeros(Hkv * 200 * d);
    attn_view rkv = attn_view_3d(rk, Hkv, 200, d);
    CHECK_OK(attn_kv_read(kc.c, kc.tables, 200, &rkv, NULL));
    const int32_t src = 23, dst = 22;
    CHECK_OK(attn_kv_copy_blocks(kc.c, &src, &dst, 1));
    CHECK(atomic_load(&C.calls) == 0, "append/read/copy_blocks allocated %ld times",
          atomic_load(&C.calls));
    printf("  %-44s  0 allocation points (checked)\n",
           "attn_kv_append, attn_kv_read, attn_kv_copy_blocks");
    float *q = tu_rand(B * H * Nq * d, -1, 1), *out = tu_zeros(B * H * Nq * dv),
          *lse = tu_zeros(B * H * Nq);
    kc.q = attn_view_4d(q, B, H, Nq, d);
    kc.out = attn_view_4d(out, B, H, Nq, dv);
    kc.lse = attn_view_3d(lse, B, H, Nq);
    memcpy(kc.lengths, L, sizeof L);
    kc.q_lengths[0] = 1, kc.q_lengths[1] = 1, kc.q_lengths[2] = 5;
    const outbuf ob[2] = {{out, B * H * Nq * dv}, {lse, B * H * Nq}};
    static const char *const labels[4] = {
        "attn_kv_attend mixed batch, flash",
        "attn_kv_attend mixed batch, window (reference)",
        "attn_kv_attend one sequence, decode",
        "attn_kv_attend mixed batch, algo reference",
    };
    for (int variant = 0; variant < 4; variant++) {
        kc.o = attn_opts_default();
        kc.o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
        kc.o.num_threads = 3;
        kc.o.lse = &kc.lse;
        kc.use_qlen = 1;
        if (variant == 1) kc.o.window_left = 50;
        if (variant == 2)
            kc.q = attn_view_4d(q, 1, H, 1, d), kc.out = attn_view_4d(out, 1, H, 1, dv),
            kc.lse = attn_view_3d(lse, 1, H, 1), kc.use_qlen = 0;
        if (variant == 3) {
            kc.q = attn_view_4d(q, B, H, Nq, d), kc.out = attn_view_4d(out, B, H, Nq, dv);
            kc.lse = attn_view_3d(lse, B, H, Nq), kc.use_qlen = 1;
            kc.o.algo = ATTN_ALGO_REFERENCE;
        }
        sweep(labels[variant], call_kv_attend, &kc, ob, 2, 1);
    }
    attn_kv_destroy(kc.c);
    free(k), free(v), free(rk), free(q), free(out), free(lse);
}

/* ---- peak scratch memory of the flash path ------------------------------ */

static long flash_peak(int64_t N, int64_t d, int threads, double *seconds) {
    float *q = tu_rand(N * d, -1, 1), *k = tu_rand(N * d, -1, 1), *v = tu_rand(N * d, -1, 1);
    float *out = tu_zeros(N * d);
    attn_view qv = attn_view_4d(q, 1, 1, N, d), kv = attn_view_4d(k, 1, 1, N, d),
              vv = attn_view_4d(v, 1, 1, N, d), ov = attn_view_4d(out, 1, 1, N, d);
    attn_opts o = attn_opts_default();
    o.algo = ATTN_ALGO_FLASH;
    o.num_threads = threads;
    o.causal = ATTN_CAUSAL_TOP_LEFT;
    counter_reset(0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &o));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    long peak = atomic_load(&C.peak);
    free(q), free(k), free(v), free(out);
    return peak;
}

/* The bound: flash scratch is O(threads x tile) plus O(d): for d = 64 and 2
 * threads it must stay below 1 MiB at any N, while the N x N scores alone
 * would be 4 N^2 bytes (64 MiB at N = 4096). */
#define FLASH_PEAK_BOUND (1L << 20)

static void flash_memory(int quick) {
    const int64_t small = 512, large = quick ? 2048 : 4096, d = 64;
    double ts, tl;
    long ps = flash_peak(small, d, 2, &ts), pl = flash_peak(large, d, 2, &tl);
    printf("  flash peak scratch: N=%lld: %ld bytes (%.3f s), N=%lld: %ld bytes (%.3f s); "
           "N^2 scores would be %lld bytes\n",
           (long long)small, ps, ts, (long long)large, pl, tl, (long long)(4 * large * large));
    CHECK(ps > 0, "the flash path allocated nothing at N=%lld", (long long)small);
    CHECK(pl <= FLASH_PEAK_BOUND, "flash peak %ld bytes at N=%lld exceeds %ld", pl,
          (long long)large, FLASH_PEAK_BOUND);
    CHECK(ps <= FLASH_PEAK_BOUND, "flash peak %ld bytes at N=%lld exceeds %ld", ps,
          (long long)small, FLASH_PEAK_BOUND);
    /* Growing N by 4-8x must not grow the scratch like N^2 (16-64x); a fixed
     * bound is the contract, linear growth would be tolerated here. */
    CHECK((double)pl <= (double)ps * (double)(large / small),
          "flash peak grew from %ld to %ld bytes for N %lld -> %lld", ps, pl, (long long)small,
          (long long)large);
    /* Decode with a long cache: the split partials are capped, not O(Nkv). */
    {
        const int64_t Nkv = quick ? 20000 : 100000;
        float *q = tu_rand(8 * d, -1, 1), *k = tu_rand(Nkv * d, -1, 1),
              *v = tu_rand(Nkv * d, -1, 1);
        float out[8 * 64];
        attn_view qv = attn_view_4d(q, 1, 8, 1, d), kv = attn_view_4d(k, 1, 1, Nkv, d),
                  vv = attn_view_4d(v, 1, 1, Nkv, d), ov = attn_view_4d(out, 1, 8, 1, d);
        attn_opts o = attn_opts_default();
        o.algo = ATTN_ALGO_FLASH;
        o.num_threads = 2;
        counter_reset(0);
        CHECK_OK(attn_sdpa(&qv, &kv, &vv, &ov, &o));
        long peak = atomic_load(&C.peak);
        printf("  flash decode peak scratch: Nq=1, H=8, Nkv=%lld: %ld bytes\n", (long long)Nkv,
               peak);
        /* Partials: one (m, l, o) per 512-key chunk; K and V are 2*4*Nkv*d bytes. */
        CHECK(peak <= (long)(2 * 4 * Nkv * d) / 8, "decode peak %ld bytes is not small", peak);
        free(q), free(k), free(v);
    }
}

/* The resumable fold: a step's allocations (its shard's key lengths and
 * the flash scratch) and finish's scratch. The step sweep's output is the
 * state itself (it starts from the sentinel pattern, finite floats), the
 * finish sweep's the results. */
typedef struct {
    attn_view q, k, v, out, lse;
    attn_fold f;
    attn_opts o;
} fold_case;

static attn_status call_fold_step(void *ctx) {
    fold_case *c = ctx;
    c->f.nkv = c->k.shape[2];
    return attn_fold_step(&c->f, &c->q, &c->k, &c->v, 0, &c->o);
}

static attn_status call_fold_finish(void *ctx) {
    fold_case *c = ctx;
    return attn_fold_finish(&c->f, &c->out, &c->lse, &c->o);
}

static void fold_sweeps(void) {
    enum { B = 2, H = 4, Hkv = 2, Nq = 70, Nkv = 600, d = 16, dv = 12 };
    float *q = tu_rand(B * H * Nq * d, -1, 1), *k = tu_rand(B * Hkv * Nkv * d, -1, 1);
    float *v = tu_rand(B * Hkv * Nkv * dv, -1, 1), *out = tu_zeros(B * H * Nq * dv);
    float *lse = tu_zeros(B * H * Nq);
    const int64_t nf = attn_fold_floats(B, H, Nq, dv);
    float *mem = tu_zeros(nf);
    int64_t kl[B] = {Nkv, 300};
    fold_case c;
    c.q = attn_view_4d(q, B, H, Nq, d);
    c.k = attn_view_4d(k, B, Hkv, Nkv, d);
    c.v = attn_view_4d(v, B, Hkv, Nkv, dv);
    c.out = attn_view_4d(out, B, H, Nq, dv);
    c.lse = attn_view_3d(lse, B, H, Nq);
    c.o = attn_opts_default();
    c.o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    c.o.key_lengths = kl;
    c.o.num_threads = 3;
    CHECK_OK(attn_fold_bind(&c.f, mem, B, H, Nq, dv));
    const outbuf state = {mem, nf};
    sweep("attn_fold_step", call_fold_step, &c, &state, 1, 2);
    counter_reset(0);
    CHECK_OK(attn_fold_init(&c.f, &c.q, Nkv, &c.o));
    CHECK_OK(attn_fold_step(&c.f, &c.q, &c.k, &c.v, 0, &c.o));
    const outbuf res[2] = {{out, B * H * Nq * dv}, {lse, B * H * Nq}};
    sweep("attn_fold_finish", call_fold_finish, &c, res, 2, 1);
    free(q), free(k), free(v), free(out), free(lse), free(mem);
}

int main(void) {
    const char *qenv = getenv("ATTN_TEST_QUICK");
    const int quick = qenv && *qenv && strcmp(qenv, "0") != 0;
    attn_set_allocator(&counting);
    printf("fault injection (N-th allocation fails, N = 1.. until success):\n");
    sdpa_sweeps();
    backward_sweeps();
    grads_sweeps();
    mha_sweeps();
    module_sweeps();
    fold_sweeps();
    decoder_sweeps();
    no_alloc_calls();
    kv_sweeps();
    printf("  total: %ld calls swept, %ld injection points\n", total_cases, total_points);
    flash_memory(quick);
    backward_memory(quick);
    CHECK(atomic_load(&C.live) == 0, "%ld blocks still live at exit", atomic_load(&C.live));
    CHECK(atomic_load(&C.bad_align) == 0, "%ld requests with a bad alignment",
          atomic_load(&C.bad_align));
    attn_set_allocator(NULL);
    return tu_summary("test_faults");
}
