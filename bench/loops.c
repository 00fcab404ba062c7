/* bench/loops.c - the loops users write, against the sum of their parts.
 *
 * attn_loops [--threads T] [--rounds R] [--seconds S] [--quick] [--only NAME] [--cold]
 *
 * A real model alternates projections and attention. Each loop below is one
 * step of such a model; it is timed as a whole (per iteration) and each of
 * its parts is timed alone, repeated back to back, in the same run. The
 * ratio iteration / (sum of the parts alone) is 1.0 when the parts do not
 * slow each other down; two thread pools spinning against each other on the
 * same cores make it several times that.
 *
 *   decode   attn_linear x (1, D) @ Wqkv (D, 6144), then attn_sdpa of one
 *            query (GQA 32/8, d = 128) over Nkv = 8192 cached keys (64 MiB of K and V,
 *            larger than the last-level cache, as a real cache is: attention alone
 *            is then not flattered by K and V left in cache by the previous call)
 *   prefill  attn_linear x (256, D) @ Wqkv (D, 6144) (a BLAS GEMM), then
 *            attn_sdpa causal over the 256 tokens (GQA 32/8, d = 128)
 *   module   attn_mha (B=1, N=256, D=768, 12 heads, causal: three GEMMs and
 *            attention inside), then attn_sdpa decode as above
 * D = 4096. Times: the best over R rounds of short interleaved bursts of
 * each kind (part 1 alone, part 2 alone, the iteration), ~S seconds of
 * iterations per round: on a shared machine, the speed when the others let
 * us run (a pool fight slows every iteration, so it still shows).
 * --cold: before every timed call (a part alone or an iteration), an untimed
 * read over twice the last-level cache, so that all three start from memory.
 * Where the last-level cache holds a part's data (W's 96 MiB, the 64 MiB of
 * K and V: an Emerald Rapids VM shows 260 MB of L3), parts repeated alone
 * run from cache and the iteration, whose two parts evict each other, does
 * not: the ratio then measures the cache, not the threads. */
#include "common.h"

#include "attn.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static void check(attn_status s, const char *what) {
    if (s != ATTN_OK) {
        fprintf(stderr, "attn_loops: %s: %s\n", what, attn_last_error());
        exit(1);
    }
}

enum { D = 4096, NQKV = 6144, H = 32, HKV = 8, HD = 128, NKV = 8192, NPRE = 256 };
enum { MD = 768, MH = 12, MN = 256 };

typedef struct data {
    int nt;
    float *x1, *xp, *w, *y1, *yp;
    float *q, *k, *v, *o;     /* decode attention */
    float *qp, *kp, *vp, *op; /* prefill attention */
    float *mx, *mw, *mb, *mo, *mob, *my;
    attn_view x1v, xpv, wv, y1v, ypv, qv, kv, vv, ov, qpv, kpv, vpv, opv, mxv, myv;
    attn_mha_params mp;
} data;

static void data_make(data *d, int nt) {
    memset(d, 0, sizeof *d);
    d->nt = nt;
    d->x1 = bench_rand(D, 1, 1.0f);
    d->xp = bench_rand((int64_t)NPRE * D, 2, 1.0f);
    d->w = bench_rand((int64_t)D * NQKV, 3, 0.02f);
    d->y1 = bench_rand(NQKV, 4, 1.0f);
    d->yp = bench_rand((int64_t)NPRE * NQKV, 5, 1.0f);
    d->x1v = attn_view_2d(d->x1, 1, D);
    d->xpv = attn_view_2d(d->xp, NPRE, D);
    d->wv = attn_view_2d(d->w, D, NQKV);
    d->y1v = attn_view_2d(d->y1, 1, NQKV);
    d->ypv = attn_view_2d(d->yp, NPRE, NQKV);
    d->q = bench_rand(H * HD, 6, 1.0f);
    d->k = bench_rand((int64_t)HKV * NKV * HD, 7, 1.0f);
    d->v = bench_rand((int64_t)HKV * NKV * HD, 8, 1.0f);
    d->o = bench_rand(H * HD, 9, 1.0f);
    d->qv = attn_view_4d(d->q, 1, H, 1, HD);
    d->kv = attn_view_4d(d->k, 1, HKV, NKV, HD);
    d->vv = attn_view_4d(d->v, 1, HKV, NKV, HD);
    d->ov = attn_view_4d(d->o, 1, H, 1, HD);
    d->qp = bench_rand((int64_t)H * NPRE * HD, 10, 1.0f);
    d->kp = bench_rand((int64_t)HKV * NPRE * HD, 11, 1.0f);
    d->vp = bench_rand((int64_t)HKV * NPRE * HD, 12, 1.0f);
    d->op = bench_rand((int64_t)H * NPRE * HD, 13, 1.0f);
    d->qpv = attn_view_4d(d->qp, 1, H, NPRE, HD);
    d->kpv = attn_view_4d(d->kp, 1, HKV, NPRE, HD);
    d->vpv = attn_view_4d(d->vp, 1, HKV, NPRE, HD);
    d->opv = attn_view_4d(d->op, 1, H, NPRE, HD);
    d->mx = bench_rand((int64_t)MN * MD, 14, 1.0f);
    d->mw = bench_rand((int64_t)MD * 3 * MD, 15, 0.05f);
    d->mb = bench_rand(3 * MD, 16, 1.0f);
    d->mo = bench_rand((int64_t)MD * MD, 17, 0.05f);
    d->mob = bench_rand(MD, 18, 1.0f);
    d->my = bench_rand((int64_t)MN * MD, 19, 1.0f);
    d->mxv = attn_view_3d(d->mx, 1, MN, MD);
    d->myv = attn_view_3d(d->my, 1, MN, MD);
    attn_view w = attn_view_2d(d->mw, MD, 3 * MD), b = attn_view_1d(d->mb, 3 * MD),
              wo = attn_view_2d(d->mo, MD, MD), bo = attn_view_1d(d->mob, MD);
    check(attn_mha_from_fused(&w, &b, MH, &wo, &bo, &d->mp), "attn_mha_from_fused");
}

static void data_free(data *d) {
    float *all[] = {d->x1, d->xp, d->w,  d->y1, d->yp, d->q,  d->k,  d->v,   d->o, d->qp,
                    d->kp, d->vp, d->op, d->mx, d->mw, d->mb, d->mo, d->mob, d->my};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* ---- the parts ---------------------------------------------------------- */

static void part_linear1(data *d) {
    check(attn_linear(&d->x1v, &d->wv, NULL, &d->y1v, d->nt), "attn_linear (1 row)");
}
static void part_linearp(data *d) {
    check(attn_linear(&d->xpv, &d->wv, NULL, &d->ypv, d->nt), "attn_linear (256 rows)");
}
static void part_sdpa1(data *d) {
    attn_opts o = attn_opts_default();
    o.num_threads = d->nt;
    check(attn_sdpa(&d->qv, &d->kv, &d->vv, &d->ov, &o), "attn_sdpa (decode)");
}
static void part_sdpap(data *d) {
    attn_opts o = attn_opts_default();
    o.num_threads = d->nt;
    o.causal = ATTN_CAUSAL_TOP_LEFT;
    check(attn_sdpa(&d->qpv, &d->kpv, &d->vpv, &d->opv, &o), "attn_sdpa (prefill)");
}
static void part_mha(data *d) {
    attn_opts o = attn_opts_default();
    o.num_threads = d->nt;
    o.causal = ATTN_CAUSAL_TOP_LEFT;
    check(attn_mha(&d->mp, &d->mxv, NULL, &d->myv, &o), "attn_mha");
}

typedef void (*part_fn)(data *);
typedef struct loop {
    const char *name, *what;
    part_fn parts[2];
    const char *part_names[2];
} loop;

static const loop loops[] = {
    {"decode",
     "attn_linear (1,4096)@(4096,6144) + attn_sdpa 1 query, GQA 32/8, Nkv 8192, d 128",
     {part_linear1, part_sdpa1},
     {"attn_linear M=1", "attn_sdpa decode"}},
    {"prefill",
     "attn_linear (256,4096)@(4096,6144) + attn_sdpa causal N=256, GQA 32/8, d 128",
     {part_linearp, part_sdpap},
     {"attn_linear M=256", "attn_sdpa prefill"}},
    {"module",
     "attn_mha B=1 N=256 D=768 H=12 causal + attn_sdpa decode as above",
     {part_mha, part_sdpa1},
     {"attn_mha", "attn_sdpa decode"}},
};

/* Best times of part 1 alone, part 2 alone and the iteration (part 1 then
 * part 2), in short interleaved bursts (4 calls, the first not counted: it
 * follows the other kind) until each kind has run about min_s, so that all
 * three see the same moments of a shared machine. */
static float *evict;    /* --cold: the buffer read before each timed call */
static int64_t evict_n; /* its floats */

static void time_loop(data *d, const loop *l, double min_s, double best[3]) {
    double total[3] = {0, 0, 0};
    volatile uint64_t sink = 0;
    for (int burst = 0; burst < 100000 && (burst < 3 || total[2] < min_s); burst++)
        for (int kind = 0; kind < 3; kind++)
            for (int rep = 0; rep < 4; rep++) {
                if (evict) sink ^= bench_stream(evict, evict_n, d->nt);
                const double t0 = bench_now();
                if (kind != 1) l->parts[0](d);
                if (kind != 0) l->parts[1](d);
                const double t = bench_now() - t0;
                if (rep == 0) continue;
                total[kind] += t;
                if (t < best[kind]) best[kind] = t;
            }
}

int main(int argc, char **argv) {
    int nt = 2, rounds = 3, cold = 0;
    double min_s = 0.3;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            nt = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            min_s = atof(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            rounds = 1, min_s = 0.1;
        else if (strcmp(argv[i], "--cold") == 0)
            cold = 1;
        else {
            fprintf(stderr, "usage: attn_loops [--threads T] [--rounds R] [--seconds S] [--quick] "
                            "[--only NAME] [--cold]\n");
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    if (cold) {
        long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
        if (llc < (32L << 20)) llc = 128L << 20; /* unknown or small: 256 MiB read */
        evict_n = (int64_t)(2 * llc / (long)sizeof(float)) / 1024 * 1024;
        evict = bench_rand(evict_n, 99, 1.0f);
    }
    printf("# attn_loops: %d threads", nt);
    if (cold) printf(", --cold: %lld MiB read before every timed call", (long long)(evict_n >> 18));
    printf(", %s\n", attn_build_info());
    data d;
    data_make(&d, nt);
    enum { NL = sizeof loops / sizeof loops[0] };
    double best[NL][3];
    for (int l = 0; l < NL; l++)
        best[l][0] = best[l][1] = best[l][2] = INFINITY;
    for (int r = 0; r < rounds; r++)
        for (int l = 0; l < NL; l++) {
            if (only && strcmp(only, loops[l].name) != 0) continue;
            time_loop(&d, &loops[l], min_s, best[l]);
        }
    printf("\n| loop | part 1 alone ms | part 2 alone ms | sum ms | iteration ms | iteration / sum "
           "|\n|---|---|---|---|---|---|\n");
    for (int l = 0; l < NL; l++) {
        if (only && strcmp(only, loops[l].name) != 0) continue;
        const double s = best[l][0] + best[l][1];
        printf("| %s: %s | %.3f | %.3f | %.3f | %.3f | %.2f |\n", loops[l].name, loops[l].what,
               best[l][0] * 1e3, best[l][1] * 1e3, s * 1e3, best[l][2] * 1e3, best[l][2] / s);
    }
    data_free(&d);
    free(evict);
    return 0;
}
