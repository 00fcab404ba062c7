/* bench/bench_backward.c - the backward rows of docs/performance.md.
 *
 * attn_bench_backward [--threads T] [--rounds R] [--only NAME]
 *
 * Per case, in one run, alternating so all see the same machine: the fast
 * forward (with lse), the fast backward, the forward with dropout 0.1, and
 * OpenBLAS SGEMM 2048^3 with the same threads. Best times of the rounds.
 * FLOPs counted: forward 4 B H Nq Nkv d (halved when causal), backward 2.5x
 * that (five products). The backward computes seven products (two passes)
 * over every pair of the 64 x 64 blocks it visits; "computed GFLOP/s" is the
 * rate over those. Peak extra memory through a counting allocator. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include "attn.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef BENCH_HAVE_BLAS
#include <cblas.h>
#endif

typedef struct bcase {
    const char *name;
    int64_t B, H, N, d;
    attn_causal causal;
    int dropout_row; /* time the forward with dropout too */
} bcase;

static const bcase cases[] = {
    {"S1", 1, 12, 1024, 64, ATTN_CAUSAL_TOP_LEFT, 1}, {"S2", 1, 8, 4096, 64, ATTN_CAUSAL_NONE, 1},
    {"S2c", 1, 8, 4096, 64, ATTN_CAUSAL_TOP_LEFT, 1}, {"S3", 8, 12, 256, 64, ATTN_CAUSAL_NONE, 1},
    {"L1", 1, 1, 65536, 64, ATTN_CAUSAL_TOP_LEFT, 0},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

static double fwd_flops(const bcase *c) {
    const double f = 4.0 * (double)c->B * (double)c->H * (double)c->N * (double)c->N * (double)c->d;
    return c->causal ? f / 2.0 : f;
}

/* Pairs in the 64 x 64 (query, key) blocks the backward visits. */
static double visited_pairs(const bcase *c) {
    double pairs = 0;
    for (int64_t i0 = 0; i0 < c->N; i0 += 64)
        for (int64_t j0 = 0; j0 < c->N; j0 += 64)
            if (!c->causal || j0 <= i0 + 63) pairs += 64.0 * 64.0;
    return pairs * (double)c->B * (double)c->H;
}

typedef struct io {
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    attn_view vq, vk, vv, vout, vlse, vdout, vdq, vdk, vdv;
} io;

static void io_make(const bcase *c, io *x) {
    const int64_t n = c->B * c->H * c->N * c->d;
    x->q = bench_rand(n, 1, 1.0f), x->k = bench_rand(n, 2, 1.0f), x->v = bench_rand(n, 3, 1.0f);
    x->out = bench_rand(n, 4, 1.0f), x->dout = bench_rand(n, 5, 1.0f),
    x->lse = bench_rand(c->B * c->H * c->N, 6, 1.0f);
    x->dq = bench_rand(n, 7, 1.0f), x->dk = bench_rand(n, 8, 1.0f), x->dv = bench_rand(n, 9, 1.0f);
    x->vq = attn_view_4d(x->q, c->B, c->H, c->N, c->d);
    x->vk = attn_view_4d(x->k, c->B, c->H, c->N, c->d);
    x->vv = attn_view_4d(x->v, c->B, c->H, c->N, c->d);
    x->vout = attn_view_4d(x->out, c->B, c->H, c->N, c->d);
    x->vdout = attn_view_4d(x->dout, c->B, c->H, c->N, c->d);
    x->vdq = attn_view_4d(x->dq, c->B, c->H, c->N, c->d);
    x->vdk = attn_view_4d(x->dk, c->B, c->H, c->N, c->d);
    x->vdv = attn_view_4d(x->dv, c->B, c->H, c->N, c->d);
    x->vlse = attn_view_3d(x->lse, c->B, c->H, c->N);
}

static void io_free(io *x) {
    free(x->q), free(x->k), free(x->v), free(x->out), free(x->lse), free(x->dout);
    free(x->dq), free(x->dk), free(x->dv);
}

static void check(attn_status s) {
    if (s) {
        fprintf(stderr, "attn_bench_backward: %s\n", attn_last_error());
        exit(1);
    }
}

/* what: 0 forward with lse, 1 backward, 2 forward with dropout 0.1 */
static double time_one(const bcase *c, io *x, int what, int nt) {
    attn_opts o = attn_opts_default();
    o.causal = c->causal;
    o.num_threads = nt;
    if (what == 2) o.dropout_p = 0.1f, o.dropout_seed = 42;
    if (what != 1) o.lse = &x->vlse;
    const double t0 = bench_now();
    if (what == 1)
        check(attn_sdpa_backward(&x->vq, &x->vk, &x->vv, &x->vout, &x->vlse, &x->vdout, &x->vdq,
                                 &x->vdk, &x->vdv, &o, NULL));
    else
        check(attn_sdpa(&x->vq, &x->vk, &x->vv, &x->vout, &o));
    return bench_now() - t0;
}

int main(int argc, char **argv) {
    int nt = 2, rounds = 3;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            nt = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr,
                    "usage: attn_bench_backward [--threads T] [--rounds R] [--only NAME]\n");
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    printf("# attn_bench_backward: %d threads, %s; best of %d rounds\n", nt, attn_build_info(),
           rounds);
    double t[N_CASES][3], peak_bwd[N_CASES], sgemm = 0.0;
    int ran[N_CASES] = {0};
    attn_allocator tracker = {bench_track_alloc, bench_track_free, NULL};
    for (int r = 0; r < rounds; r++) {
        const double sg = bench_sgemm_gflops(nt, 6);
        if (sg > sgemm || isnan(sg)) sgemm = sg;
        for (int ci = 0; ci < N_CASES; ci++) {
            const bcase *c = &cases[ci];
            if (only && strcmp(only, c->name) != 0) continue;
            io x;
            io_make(c, &x);
            if (r == 0) {
                ran[ci] = 1;
                for (int w = 0; w < 3; w++)
                    t[ci][w] = INFINITY;
                time_one(c, &x, 0, nt); /* out and lse for the backward */
                attn_set_allocator(&tracker);
                atomic_store(&bench_cur_bytes, 0);
                atomic_store(&bench_peak_bytes, 0);
                time_one(c, &x, 1, nt);
                peak_bwd[ci] = (double)atomic_load(&bench_peak_bytes) / (1 << 20);
                attn_set_allocator(NULL);
            }
            /* repetitions alternate forward, backward, dropout forward */
            const int reps = fwd_flops(c) > 1e11 ? 1 : 3;
            for (int rep = 0; rep < reps; rep++)
                for (int w = 0; w < 3; w++) {
                    if (w == 2 && !c->dropout_row) continue;
                    const double tw = time_one(c, &x, w, nt);
                    if (tw < t[ci][w]) t[ci][w] = tw;
                }
            time_one(c, &x, 0, nt); /* leave out and lse of the dropout-free forward */
            io_free(&x);
        }
        fprintf(stderr, "attn_bench_backward: round %d of %d done\n", r + 1, rounds);
    }
    printf("# OpenBLAS SGEMM 2048^3, %d threads: %.1f GFLOP/s\n\n", nt, sgemm);
    printf("| case | shape | forward ms | forward GFLOP/s | backward ms | backward GFLOP/s (2.5x "
           "FLOPs) | bwd / fwd rate | bwd / SGEMM | computed GFLOP/s | backward peak MiB | fwd "
           "dropout 0.1 ms | dropout / plain |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int ci = 0; ci < N_CASES; ci++) {
        const bcase *c = &cases[ci];
        if (!ran[ci]) continue;
        const double ff = fwd_flops(c), gf = ff / t[ci][0] / 1e9, gb = 2.5 * ff / t[ci][1] / 1e9;
        const double comp = 14.0 * (double)c->d * visited_pairs(c) / t[ci][1] / 1e9;
        char drop[64] = "-", ratio[32] = "-";
        if (c->dropout_row) {
            snprintf(drop, sizeof drop, "%.3f", t[ci][2] * 1e3);
            snprintf(ratio, sizeof ratio, "%.2f", t[ci][2] / t[ci][0]);
        }
        printf("| %s | B=%lld H=%lld N=%lld d=%lld%s | %.3f | %.1f | %.3f | %.1f | %.2f | %.2f | "
               "%.1f | %.2f | %s | %s |\n",
               c->name, (long long)c->B, (long long)c->H, (long long)c->N, (long long)c->d,
               c->causal ? " causal" : "", t[ci][0] * 1e3, gf, t[ci][1] * 1e3, gb, gb / gf,
               gb / sgemm, comp, peak_bwd[ci], drop, ratio);
    }
    return 0;
}
