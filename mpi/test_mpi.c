/* test_mpi.c - attn_mpi_sdpa under mpirun (any -np): every rank builds the
 * same whole problem from one seed, computes single-process attn_sdpa
 * itself, and compares its own rows with what the collective call gave it:
 * memcmp in exact mode, 1e-5 in ring mode. Configurations: causal or not,
 * GQA, B > 1, contiguous, zigzag and uneven random shards (many runs, any
 * order), key positions starting above 0 (queries before every key: rows
 * with no visible key), window, softcap, ALiBi and sinks, NaN propagation, 1 and 2 threads per
 * rank, both ISAs. Then mismatched arguments: every rank must return the same status and message,
 * outputs untouched. */
#include "attn_mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size, failed, passed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            fprintf(stderr, "FAIL rank %d/%d %s:%d: %s: ", rank, size, __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* splitmix64, the same stream on every rank */
static uint64_t rng = 1;
static uint64_t next(void) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int64_t irand(int64_t lo, int64_t hi) {
    return lo + (int64_t)(next() % (uint64_t)(hi - lo + 1));
}
static float frand(void) {
    return (float)((next() >> 40) * (2.0 / 16777216.0) - 1.0);
}

typedef struct cfg {
    int64_t B, H, Hkv, N, Nq, d, dv;
    int64_t qbase, k0; /* query i at qbase + i, key j at k0 + j */
    int causal, qlayout, klayout, threads, nan, ring;
    int64_t wl, wr;
    float softcap;
    int alibi, sinks;
    attn_isa isa;
} cfg;

/* Random uneven shards of n tokens: pieces of random weights, 1..4 per
 * rank on average (at most 13 on a rank for np <= 4), any order. */
static void uneven(int64_t n, attn_mpi_positions *all) {
    int m = (int)irand(1, 4) * size;
    if (m > n) m = (int)n;
    int64_t *len = malloc((size_t)m * sizeof(int64_t)), wsum = 0, given = 0;
    int *owner = malloc((size_t)m * sizeof(int));
    for (int t = 0; t < m; t++)
        wsum += len[t] = irand(1, 10);
    for (int t = 0; t < m; t++) {
        len[t] = t == m - 1 ? n - given : 1 + (n - m) * len[t] / wsum;
        given += len[t];
    }
    for (int t = 0; t < m; t++) /* every rank one piece at least */
        owner[t] = t < size ? t : (int)irand(0, size - 1);
    for (int t = m - 1; t > 0; t--) { /* shuffle */
        const int u = (int)irand(0, t), x = owner[t];
        owner[t] = owner[u];
        owner[u] = x;
    }
    for (int p = 0; p < size; p++)
        all[p].n_runs = 0;
    int64_t start = 0;
    for (int t = 0; t < m; start += len[t], t++) {
        attn_mpi_positions *p = &all[owner[t]];
        const int at = (int)irand(0, p->n_runs); /* insert at a random place: any order */
        for (int u = p->n_runs; u > at; u--) {
            p->start[u] = p->start[u - 1];
            p->len[u] = p->len[u - 1];
        }
        p->start[at] = start;
        p->len[at] = len[t];
        p->n_runs++;
    }
    free(len);
    free(owner);
}

static void layout(int kind, int64_t n, int64_t base, attn_mpi_positions *all) {
    if (kind == 2)
        uneven(n, all);
    else
        for (int p = 0; p < size; p++)
            attn_mpi_shard(kind == 1 ? ATTN_MPI_ZIGZAG : ATTN_MPI_CONTIGUOUS, n, p, size, &all[p]);
    for (int p = 0; p < size; p++)
        for (int u = 0; u < all[p].n_runs; u++)
            all[p].start[u] += base;
}

static int64_t count(const attn_mpi_positions *p) {
    int64_t n = 0;
    for (int u = 0; u < p->n_runs; u++)
        n += p->len[u];
    return n;
}

/* dst (B, Hh, n_local, e) = the rows of src (B, Hh, n, e) at the positions of p. */
static void gather(float *dst, const float *src, int64_t B, int64_t Hh, int64_t n, int64_t e,
                   const attn_mpi_positions *p, int64_t base) {
    const int64_t nl = count(p);
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hh; h++) {
            int64_t row = 0;
            for (int u = 0; u < p->n_runs; u++)
                for (int64_t t = 0; t < p->len[u]; t++, row++)
                    memcpy(dst + ((b * Hh + h) * nl + row) * e,
                           src + ((b * Hh + h) * n + (p->start[u] - base + t)) * e,
                           (size_t)e * sizeof(float));
        }
}

static void run_config(const cfg *c) {
    const int64_t B = c->B, H = c->H, Hkv = c->Hkv, N = c->N, Nq = c->Nq, d = c->d, dv = c->dv;
    float *q = malloc(sizeof(float) * (size_t)(B * H * Nq * d));
    float *k = malloc(sizeof(float) * (size_t)(B * Hkv * N * d));
    float *v = malloc(sizeof(float) * (size_t)(B * Hkv * N * dv));
    for (int64_t t = 0; t < B * H * Nq * d; t++)
        q[t] = frand();
    for (int64_t t = 0; t < B * Hkv * N * d; t++)
        k[t] = frand();
    for (int64_t t = 0; t < B * Hkv * N * dv; t++)
        v[t] = frand();
    if (c->nan) {
        q[(((B - 1) * H + 0) * Nq + Nq / 2) * d] = NAN;   /* that row is NaN */
        k[(((0) * Hkv + Hkv - 1) * N + N - 1) * d] = NAN; /* seen by the last rows only */
        v[(((B - 1) * Hkv + 0) * N + N / 3) * dv + dv - 1] = INFINITY; /* Inf in a visible value */
    }
    attn_set_isa(c->isa);
    float *ref = malloc(sizeof(float) * (size_t)(B * H * Nq * dv));
    float *rlse = malloc(sizeof(float) * (size_t)(B * H * Nq));
    attn_view qv = attn_view_4d(q, B, H, Nq, d), kv = attn_view_4d(k, B, Hkv, N, d),
              vv = attn_view_4d(v, B, Hkv, N, dv), rv = attn_view_4d(ref, B, H, Nq, dv),
              rl = attn_view_3d(rlse, B, H, Nq);
    int64_t *qo = malloc(sizeof(int64_t) * (size_t)B);
    for (int64_t b = 0; b < B; b++)
        qo[b] = c->qbase;
    attn_opts o = attn_opts_default();
    o.causal = c->causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
    o.q_offset = qo;
    o.k_offset = c->k0;
    o.num_threads = 2;
    o.window_left = c->wl;
    o.window_right = c->wr;
    o.softcap = c->softcap;
    float slopes[8], sinks[8];
    attn_alibi_slopes(H, slopes);
    for (int64_t h = 0; h < H; h++)
        sinks[h] = frand() * 2.0f;
    o.alibi_slopes = c->alibi ? slopes : NULL;
    o.sinks = c->sinks ? sinks : NULL;
    o.lse = &rl;
    attn_status st = attn_sdpa(&qv, &kv, &vv, &rv, &o);
    CHECK(st == ATTN_OK, "reference: %s", attn_last_error());

    attn_mpi_positions *qp = calloc((size_t)size, sizeof *qp),
                       *kp = calloc((size_t)size, sizeof *kp);
    layout(c->qlayout, Nq, c->qbase, qp);
    layout(c->klayout, N, c->k0, kp);
    const int64_t nq = count(&qp[rank]), nk = count(&kp[rank]);
    float *lq = malloc(sizeof(float) * (size_t)(B * H * nq * d));
    float *lk = malloc(sizeof(float) * (size_t)(B * Hkv * nk * d));
    float *lv = malloc(sizeof(float) * (size_t)(B * Hkv * nk * dv));
    float *lo = malloc(sizeof(float) * (size_t)(B * H * nq * dv));
    float *ll = malloc(sizeof(float) * (size_t)(B * H * nq));
    float *want = malloc(sizeof(float) * (size_t)(B * H * nq * dv));
    float *wantl = malloc(sizeof(float) * (size_t)(B * H * nq));
    gather(lq, q, B, H, Nq, d, &qp[rank], c->qbase);
    gather(lk, k, B, Hkv, N, d, &kp[rank], c->k0);
    gather(lv, v, B, Hkv, N, dv, &kp[rank], c->k0);
    gather(want, ref, B, H, Nq, dv, &qp[rank], c->qbase);
    gather(wantl, rlse, B, H, Nq, 1, &qp[rank], c->qbase);
    attn_view lqv = attn_view_4d(lq, B, H, nq, d), lkv = attn_view_4d(lk, B, Hkv, nk, d),
              lvv = attn_view_4d(lv, B, Hkv, nk, dv), lov = attn_view_4d(lo, B, H, nq, dv),
              llv = attn_view_3d(ll, B, H, nq);
    attn_opts mo = attn_opts_default();
    mo.causal = o.causal;
    mo.num_threads = c->threads;
    mo.window_left = c->wl;
    mo.window_right = c->wr;
    mo.softcap = c->softcap;
    mo.alibi_slopes = o.alibi_slopes;
    mo.sinks = o.sinks;
    attn_mpi_opts mp = attn_mpi_opts_default();
    mp.mode = c->ring ? ATTN_MPI_RING : ATTN_MPI_EXACT;
    st =
        attn_mpi_sdpa(MPI_COMM_WORLD, &lqv, &qp[rank], &lkv, &lvv, &kp[rank], &lov, &llv, &mo, &mp);
    CHECK(st == ATTN_OK, "attn_mpi_sdpa: %s", attn_last_error());
    const char *what = c->ring ? "ring" : "exact";
    if (!c->ring) {
        const int same = memcmp(lo, want, sizeof(float) * (size_t)(B * H * nq * dv)) == 0 &&
                         memcmp(ll, wantl, sizeof(float) * (size_t)(B * H * nq)) == 0;
        CHECK(same,
              "%s B=%lld H=%lld Hkv=%lld N=%lld Nq=%lld d=%lld dv=%lld qbase=%lld k0=%lld "
              "causal=%d layouts=%d,%d threads=%d nan=%d isa=%s window=(%lld,%lld) softcap=%g "
              "alibi=%d sinks=%d: not bit-identical",
              what, (long long)B, (long long)H, (long long)Hkv, (long long)N, (long long)Nq,
              (long long)d, (long long)dv, (long long)c->qbase, (long long)c->k0, c->causal,
              c->qlayout, c->klayout, c->threads, c->nan, attn_isa_name(c->isa), (long long)c->wl,
              (long long)c->wr, (double)c->softcap, c->alibi, c->sinks);
    } else {
        double worst = 0.0;
        int nan_ok = 1;
        for (int64_t t = 0; t < B * H * nq * dv; t++) {
            if (isnan(lo[t]) != isnan(want[t])) nan_ok = 0;
            if (isnan(lo[t])) continue;
            const double e = fabs((double)lo[t] - want[t]);
            if (e > worst) worst = e;
        }
        for (int64_t t = 0; t < B * H * nq; t++) {
            if (isnan(ll[t]) != isnan(wantl[t]) || isinf(ll[t]) != isinf(wantl[t])) nan_ok = 0;
            if (!isfinite(ll[t]) || !isfinite(wantl[t])) continue;
            const double e = fabs((double)ll[t] - wantl[t]) / (1.0 + fabs((double)wantl[t]));
            if (e > worst) worst = e;
        }
        CHECK(nan_ok && worst <= 1e-5,
              "ring N=%lld causal=%d layouts=%d,%d: max difference %g (NaN pattern %s)",
              (long long)N, c->causal, c->qlayout, c->klayout, worst, nan_ok ? "same" : "differs");
    }
    free(q), free(k), free(v), free(ref), free(rlse), free(qo), free(qp), free(kp);
    free(lq), free(lk), free(lv), free(lo), free(ll), free(want), free(wantl);
    attn_set_isa(ATTN_ISA_AUTO);
}

/* ---- mismatched arguments ---- */

typedef struct bad {
    const char *name;
    attn_status want;
    const char *text;
    int cross; /* needs two ranks */
} bad;

static void run_bad(int which, const bad *b) {
    const int64_t B = 1, H = 4, Hkv = 2, N = 700, d = 8, dv = 8;
    const int last = rank == size - 1;
    attn_mpi_positions qp, kp;
    attn_mpi_shard(ATTN_MPI_ZIGZAG, N, rank, size, &qp);
    kp = qp;
    const int64_t n = count(&qp);
    int64_t Hq = H, dq = d;
    if (which == 0 && last) Hq = 2;
    if (which == 1 && last) dq = 4;
    float *q = calloc((size_t)(B * Hq * n * dq), sizeof(float));
    float *k = calloc((size_t)(B * Hkv * n * dq), sizeof(float));
    float *v = calloc((size_t)(B * Hkv * n * dv), sizeof(float));
    float *o = malloc(sizeof(float) * (size_t)(B * Hq * n * dv));
    for (int64_t t = 0; t < B * Hq * n * dv; t++)
        o[t] = 42.0f;
    attn_view qv = attn_view_4d(q, B, Hq, n, dq), kv = attn_view_4d(k, B, Hkv, n, dq),
              vv = attn_view_4d(v, B, Hkv, n, dv), ov = attn_view_4d(o, B, Hq, n, dv);
    attn_opts op = attn_opts_default();
    op.causal = ATTN_CAUSAL_TOP_LEFT;
    attn_mpi_opts mo = attn_mpi_opts_default();
    float mask = 0.0f;
    attn_view mv = attn_view_4d(&mask, 1, 1, 1, 1);
    if (last) {
        if (which == 2) op.scale = 0.5f;
        if (which == 3) op.causal = ATTN_CAUSAL_NONE;
        if (which == 4) mo.mode = ATTN_MPI_RING;
        if (which == 5) kp.start[0] = 0;              /* overlaps rank 0's keys (a gap elsewhere) */
        if (which == 6) kp.start[kp.n_runs - 1] += 1; /* total length disagrees: a gap */
        if (which == 8) op.mask = &mv;
        if (which == 9) ov.shape[2] = n + 1;
        if (which == 10) mo.mode = (attn_mpi_mode)7;
        if (which == 11) op.window_left = 100;
    }
    const attn_view *qarg = which == 7 && last ? NULL : &qv;
    attn_status st = attn_mpi_sdpa(MPI_COMM_WORLD, qarg, &qp, &kv, &vv, &kp, &ov, NULL, &op, &mo);
    char msg[256] = {0}, *all = malloc(256 * (size_t)size);
    snprintf(msg, sizeof msg, "%s", attn_last_error());
    int sts = (int)st, *allst = malloc(sizeof(int) * (size_t)size);
    MPI_Allgather(msg, 256, MPI_CHAR, all, 256, MPI_CHAR, MPI_COMM_WORLD);
    MPI_Allgather(&sts, 1, MPI_INT, allst, 1, MPI_INT, MPI_COMM_WORLD);
    int same = 1;
    for (int p = 0; p < size; p++)
        same &= allst[p] == sts && strcmp(all + 256 * p, msg) == 0;
    CHECK(st == b->want && strstr(msg, b->text) != NULL, "%s: got %s \"%s\", wanted %s with \"%s\"",
          b->name, attn_status_string(st), msg, attn_status_string(b->want), b->text);
    CHECK(same, "%s: every rank returns the same status and message", b->name);
    int untouched = 1;
    for (int64_t t = 0; t < B * Hq * n * dv; t++)
        untouched &= o[t] == 42.0f;
    CHECK(untouched, "%s: out untouched", b->name);
    free(q), free(k), free(v), free(o), free(all), free(allst);
}

static void test_bad(void) {
    const bad cases[] = {
        {"H differs", ATTN_ERR_SHAPE, "has H=2 but rank 0 has H=4", 1},
        {"d differs", ATTN_ERR_SHAPE, "has d=4 but rank 0 has d=8", 1},
        {"scale differs", ATTN_ERR_ARG, "scale bits", 1},
        {"causal differs", ATTN_ERR_ARG, "causal=0 but rank 0 has causal=1", 1},
        {"mode differs", ATTN_ERR_ARG, "mode=1 but rank 0 has mode=0", 1},
        {"keys overlap", ATTN_ERR_ARG, "key positions must cover", 1},
        {"total length", ATTN_ERR_ARG, "key positions must cover", 1},
        {"NULL q", ATTN_ERR_NULL, ": q (or its data) is NULL", 0},
        {"mask", ATTN_ERR_ARG, "opts.mask", 0},
        {"out shape", ATTN_ERR_SHAPE, "out.shape[2] (Nq_local)", 0},
        {"mode value", ATTN_ERR_ARG, "mopts.mode=7", 0},
        {"window differs", ATTN_ERR_ARG, "has window_left=100 but rank 0 has window_left=-1", 1},
    };
    for (int t = 0; t < (int)(sizeof cases / sizeof cases[0]); t++) {
        if (cases[t].cross && size < 2) continue;
        run_bad(t, &cases[t]);
    }
}

static void test_shard(void) {
    attn_mpi_positions p;
    CHECK(attn_mpi_shard(ATTN_MPI_ZIGZAG, 10, 1, 2, &p) == ATTN_OK && p.n_runs == 2 &&
              p.start[0] == 2 && p.len[0] == 3 && p.start[1] == 5 && p.len[1] == 2,
          "zigzag 10 over 2, rank 1: chunks 1 and 2 = [2,5) and [5,7)");
    CHECK(attn_mpi_shard(ATTN_MPI_CONTIGUOUS, 10, 2, 3, &p) == ATTN_OK && p.n_runs == 1 &&
              p.start[0] == 6 && p.len[0] == 4,
          "contiguous 10 over 3, rank 2: [6,10)");
    CHECK(attn_mpi_shard(ATTN_MPI_ZIGZAG, 3, 0, 2, &p) == ATTN_ERR_SHAPE &&
              strstr(attn_last_error(), "n=3") != NULL,
          "zigzag needs n >= 2P: %s", attn_last_error());
    CHECK(attn_mpi_shard(ATTN_MPI_CONTIGUOUS, 10, 3, 3, &p) == ATTN_ERR_ARG, "rank range");
    CHECK(attn_mpi_shard((attn_mpi_layout)5, 10, 0, 3, &p) == ATTN_ERR_ARG, "layout value");
    CHECK(attn_mpi_shard(ATTN_MPI_CONTIGUOUS, 10, 0, 3, NULL) == ATTN_ERR_NULL, "NULL pos");
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    test_shard();
    test_bad();
    const int n = getenv("ATTN_TEST_QUICK") ? 12 : 30;
    for (int t = 0; t < n; t++) {
        rng = 1000 + (uint64_t)t; /* the same configuration on every rank */
        cfg c;
        c.B = irand(1, 2);
        c.Hkv = irand(1, 2);
        c.H = c.Hkv * irand(1, 3);
        c.N = t % 3 == 0 ? irand(2 * size, 40) : irand(500, 1800);
        c.Nq = c.N;
        c.d = irand(0, 1) ? 16 : irand(1, 40);
        c.dv = irand(0, 2) ? c.d : irand(1, 24);
        c.causal = t % 2 == 0;
        c.qlayout = (int)irand(0, 2);
        c.klayout = (int)irand(0, 2);
        c.threads = (int)irand(1, 2);
        c.nan = t % 5 == 4;
        c.ring = t % 4 == 3 && !c.nan;
        c.k0 = t % 6 == 5 ? irand(1, 300) : 0; /* keys after the first queries */
        c.qbase = 0;
        c.isa = t % 7 == 6 && attn_isa_supported(ATTN_ISA_AVX2) ? ATTN_ISA_AVX2 : ATTN_ISA_AUTO;
        if (c.N < 2 * size) c.N = c.Nq = 2 * size;
        c.wl = t % 4 == 1 ? irand(0, 700) : -1; /* sliding windows: chunks before them skipped */
        c.wr = t % 8 == 2 ? irand(0, 300) : -1;
        c.softcap = t % 5 == 2 ? 2.5f : 0.0f;
        c.alibi = t % 6 == 1;
        c.sinks = t % 3 == 1;
        run_config(&c);
    }
    int f = failed, p = passed, tf, tp;
    MPI_Allreduce(&f, &tf, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&p, &tp, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("test_mpi np=%d: %d passed, %d failed (all ranks)\n", size, tp, tf);
    MPI_Finalize();
    return tf ? 1 : 0;
}
