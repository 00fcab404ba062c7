/* bench/bench.c - the benchmark table of docs/performance.md.
 *
 * attn_bench [--threads T] [--py FILE] [--rounds R] [--no-ref] [--no-isa] [--quick]
 *            [--only NAME]
 *
 * For each case: best time of the flash path (ATTN_ALGO_AUTO), GFLOP/s,
 * peak extra memory (an allocator installed with attn_set_allocator counts
 * bytes), and the ratios to the reference path, to OpenBLAS SGEMM 2048^3
 * measured here with the same threads, and to NumPy / PyTorch timed by
 * bench_py.py on the same shapes (FILE: lines "NAME numpy_s torch_s").
 * FLOPs: 4 B H Nq Nkv d, halved when causal; M1 adds 2 B N D 3D + 2 B N D D.
 * Decode cases also run cold (a buffer larger than the last-level cache is
 * swept before each call) and are compared with a plain read-only stream
 * over the same K and V bytes in the same cache state. */
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
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef BENCH_HAVE_BLAS
#include <cblas.h>
#endif

/* ---- peak extra memory ---------------------------------------------------- */

/* ---- data ------------------------------------------------------------------- */

static float *rand_buf(int64_t n, uint64_t seed) {
    float *p = malloc((size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "attn_bench: out of memory (%lld floats)\n", (long long)n);
        exit(1);
    }
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
#ifdef _OPENMP
#pragma omp parallel for
#endif
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = s + (uint64_t)i * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        p[i] = (float)((z >> 40) * (2.0 / 16777216.0) - 1.0);
    }
    return p;
}

/* A buffer larger than the last-level cache, swept (written) to evict. */
#define SWEEP_BYTES ((size_t)256 << 20)
static unsigned char *sweep_buf;
static void sweep_cache(void) {
    const size_t n = SWEEP_BYTES / sizeof(uint64_t);
    uint64_t *p = (uint64_t *)sweep_buf;
#ifdef _OPENMP
#pragma omp parallel for
#endif
    for (size_t i = 0; i < n; i += 8)
        p[i] += 1;
}

/* ---- cases ------------------------------------------------------------------ */

enum kind { SDPA, DECODE, MODULE };

typedef struct bcase {
    const char *name;
    enum kind kind;
    int64_t B, H, Nq, Nkv, d; /* MODULE: d = D (model width), H heads */
    attn_causal causal;
    int ref; /* time the reference path too */
} bcase;

static const bcase cases[] = {
    {"S1", SDPA, 1, 12, 1024, 1024, 64, ATTN_CAUSAL_TOP_LEFT, 1},
    {"S2", SDPA, 1, 8, 4096, 4096, 64, ATTN_CAUSAL_NONE, 1},
    {"S2c", SDPA, 1, 8, 4096, 4096, 64, ATTN_CAUSAL_TOP_LEFT, 1},
    {"S3", SDPA, 8, 12, 256, 256, 64, ATTN_CAUSAL_NONE, 1},
    {"S4", DECODE, 1, 32, 1, 4096, 128, ATTN_CAUSAL_NONE, 1},
    {"S5", SDPA, 4, 8, 128, 512, 64, ATTN_CAUSAL_NONE, 1},
    {"S4L", DECODE, 1, 32, 1, 32768, 128, ATTN_CAUSAL_NONE, 1},
    {"M1", MODULE, 4, 12, 512, 512, 768, ATTN_CAUSAL_TOP_LEFT, 1},
    {"L1", SDPA, 1, 1, 65536, 65536, 64, ATTN_CAUSAL_TOP_LEFT, 0},
};

static double case_flops(const bcase *c) {
    if (c->kind == MODULE) {
        const double B = (double)c->B, N = (double)c->Nq, D = (double)c->d, hs = D / (double)c->H;
        return 4.0 * B * (double)c->H * N * N * hs / 2.0 + 2.0 * B * N * D * 3.0 * D +
               2.0 * B * N * D * D;
    }
    double f = 4.0 * (double)c->B * (double)c->H * (double)c->Nq * (double)c->Nkv * (double)c->d;
    return c->causal != ATTN_CAUSAL_NONE ? f / 2.0 : f;
}

typedef struct inputs {
    float *q, *k, *v, *out, *x, *w, *bw, *wo, *bo;
    attn_view qv, kv, vv, ov, xv, wv, bwv, wov, bov;
    attn_mha_params mp;
} inputs;

static void inputs_make(const bcase *c, inputs *in) {
    memset(in, 0, sizeof *in);
    if (c->kind == MODULE) {
        const int64_t B = c->B, N = c->Nq, D = c->d;
        in->x = rand_buf(B * N * D, 1);
        in->w = rand_buf(D * 3 * D, 2);
        in->bw = rand_buf(3 * D, 3);
        in->wo = rand_buf(D * D, 4);
        in->bo = rand_buf(D, 5);
        in->out = rand_buf(B * N * D, 6);
        for (int64_t i = 0; i < D * 3 * D; i++)
            in->w[i] *= 0.05f;
        for (int64_t i = 0; i < D * D; i++)
            in->wo[i] *= 0.05f;
        in->xv = attn_view_3d(in->x, B, N, D);
        in->wv = attn_view_2d(in->w, D, 3 * D);
        in->bwv = attn_view_1d(in->bw, 3 * D);
        in->wov = attn_view_2d(in->wo, D, D);
        in->bov = attn_view_1d(in->bo, D);
        in->ov = attn_view_3d(in->out, B, N, D);
        if (attn_mha_from_fused(&in->wv, &in->bwv, c->H, &in->wov, &in->bov, &in->mp)) {
            fprintf(stderr, "attn_bench: %s\n", attn_last_error());
            exit(1);
        }
        return;
    }
    in->q = rand_buf(c->B * c->H * c->Nq * c->d, 11);
    in->k = rand_buf(c->B * c->H * c->Nkv * c->d, 12);
    in->v = rand_buf(c->B * c->H * c->Nkv * c->d, 13);
    in->out = rand_buf(c->B * c->H * c->Nq * c->d, 14);
    in->qv = attn_view_4d(in->q, c->B, c->H, c->Nq, c->d);
    in->kv = attn_view_4d(in->k, c->B, c->H, c->Nkv, c->d);
    in->vv = attn_view_4d(in->v, c->B, c->H, c->Nkv, c->d);
    in->ov = attn_view_4d(in->out, c->B, c->H, c->Nq, c->d);
}

static void inputs_free(inputs *in) {
    free(in->q), free(in->k), free(in->v), free(in->out);
    free(in->x), free(in->w), free(in->bw), free(in->wo), free(in->bo);
}

static void run_once(const bcase *c, inputs *in, attn_algo algo, int nt) {
    attn_opts o = attn_opts_default();
    o.causal = c->causal;
    o.num_threads = nt;
    o.algo = algo;
    attn_status s = c->kind == MODULE ? attn_mha(&in->mp, &in->xv, NULL, &in->ov, &o)
                                      : attn_sdpa(&in->qv, &in->kv, &in->vv, &in->ov, &o);
    if (s) {
        fprintf(stderr, "attn_bench: %s: %s\n", c->name, attn_last_error());
        exit(1);
    }
}

/* Best time over repetitions lasting about min_s (at least one); cold
 * sweeps the cache before each. */
static double time_case(const bcase *c, inputs *in, attn_algo algo, int nt, double min_s,
                        int cold) {
    double best = INFINITY, total = 0.0;
    for (int rep = 0; rep < 1000 && (rep < 3 || total < min_s); rep++) {
        if (cold) sweep_cache();
        const double t0 = bench_now();
        run_once(c, in, algo, nt);
        const double t = bench_now() - t0;
        total += t;
        if (t < best) best = t;
        if (min_s == 0.0) break;
    }
    return best;
}

/* ---- NumPy / PyTorch results -------------------------------------------------- */

typedef struct pyres {
    char name[16];
    double numpy_s, torch_s;
} pyres;
static pyres py[32];
static int n_py;

static void read_py(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "attn_bench: cannot read %s (NumPy/PyTorch columns left empty)\n", path);
        return;
    }
    char line[512];
    while (fgets(line, sizeof line, f) && n_py < 32) {
        if (line[0] == '#') {
            printf("%s", line); /* the script's notes: versions, BLAS */
            continue;
        }
        char a[64], b[64];
        if (sscanf(line, "%15s %63s %63s", py[n_py].name, a, b) == 3) {
            py[n_py].numpy_s = strtod(a, NULL);
            py[n_py].torch_s = strtod(b, NULL);
            n_py++;
        }
    }
    fclose(f);
}

static const pyres *find_py(const char *name) {
    for (int i = 0; i < n_py; i++)
        if (strcmp(py[i].name, name) == 0) return &py[i];
    return NULL;
}

static void cpu_name(char *buf, size_t n) {
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) snprintf(buf, n, "%s", p + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    fclose(f);
}

static void fmt_ratio(char *buf, size_t n, double r) {
    if (isfinite(r) && r > 0)
        snprintf(buf, n, "%.2f", r);
    else
        snprintf(buf, n, "-");
}

/* Alternate calls of attn and passes of the stream so both see the same
 * conditions; best of each. */
static void time_decode(const bcase *c, inputs *in, int nt, int cold, double min_s, double *tf,
                        double *ts) {
    volatile uint64_t sink = 0;
    const int64_t n = c->B * c->H * c->Nkv * c->d;
    double total = 0.0;
    for (int rep = 0; rep < 200 && (rep < 5 || total < min_s); rep++) {
        if (cold) sweep_cache();
        double t0 = bench_now();
        run_once(c, in, ATTN_ALGO_AUTO, nt);
        double t = bench_now() - t0;
        total += t;
        if (t < *tf) *tf = t;
        if (cold) sweep_cache();
        t0 = bench_now();
        sink ^= bench_stream(in->k, n, nt) ^ bench_stream(in->v, n, nt);
        t = bench_now() - t0;
        if (t < *ts) *ts = t;
    }
    (void)sink;
}

enum { N_CASES = sizeof cases / sizeof cases[0], N_ISA = 3 };

typedef struct result {
    int run;
    double t, t_ref, peak_mib;
    double dec_t[2], dec_s[2]; /* decode: warm, cold */
    double isa_t[N_ISA];       /* avx512, avx2, generic (per-ISA table) */
} result;

static int in_isa_table(const bcase *c) {
    return c->kind != MODULE && strcmp(c->name, "S4L") != 0 && strcmp(c->name, "L1") != 0;
}

int main(int argc, char **argv) {
    int nt = 2, no_ref = 0, quick = 0, no_isa = 0, rounds = 3;
    const char *py_path = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            nt = atoi(argv[++i]);
        else if (strcmp(argv[i], "--py") == 0 && i + 1 < argc)
            py_path = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-ref") == 0)
            no_ref = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            quick = 1, rounds = 1;
        else if (strcmp(argv[i], "--no-isa") == 0)
            no_isa = 1;
        else {
            fprintf(stderr, "usage: attn_bench [--threads T] [--py FILE] [--rounds R] [--no-ref] "
                            "[--no-isa] [--quick] [--only NAME]\n");
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    const double min_s = quick ? 0.2 : 0.6;
    sweep_buf = calloc(1, SWEEP_BYTES);
    char cpu[128];
    cpu_name(cpu, sizeof cpu);
    printf("# attn_bench: %s, %d threads, %s\n", cpu, nt, attn_build_info());
    printf("# ISA: %s (ATTN_ISA to force); best of %d rounds over all cases\n",
           attn_isa_name(attn_get_isa()), rounds);
    if (py_path) read_py(py_path);
    const attn_isa default_isa = attn_get_isa();
    const attn_isa isas[N_ISA] = {ATTN_ISA_AVX512, ATTN_ISA_AVX2, ATTN_ISA_GENERIC};

    /* Rounds over every case, keeping the best time of each: the machine is
     * shared, and a busy moment then spoils one round, not the table. */
    static result R[N_CASES];
    double sgemm = 0.0;
    attn_allocator tracker = {bench_track_alloc, bench_track_free, NULL};
    for (int round = 0; round < rounds; round++) {
        const double sg = bench_sgemm_gflops(nt, 12);
        if (sg > sgemm || isnan(sg)) sgemm = sg;
        attn_set_allocator(&tracker);
        for (size_t ci = 0; ci < N_CASES; ci++) {
            const bcase *c = &cases[ci];
            result *res = &R[ci];
            if (only && strcmp(only, c->name) != 0) continue;
            inputs in;
            inputs_make(c, &in);
            if (round == 0) {
                res->run = 1;
                res->t = res->t_ref = INFINITY;
                for (int k = 0; k < 2; k++)
                    res->dec_t[k] = res->dec_s[k] = INFINITY;
                for (int k = 0; k < N_ISA; k++)
                    res->isa_t[k] = INFINITY;
                atomic_store(&bench_cur_bytes, 0);
                atomic_store(&bench_peak_bytes, 0);
                run_once(c, &in, ATTN_ALGO_AUTO, nt); /* warm-up, and the peak memory */
                res->peak_mib = (double)atomic_load(&bench_peak_bytes) / (1 << 20);
                if (c->ref && !no_ref)
                    res->t_ref = time_case(c, &in, ATTN_ALGO_REFERENCE, nt, 0.0, 0);
            }
            const double t = time_case(c, &in, ATTN_ALGO_AUTO, nt, min_s, 0);
            if (t < res->t) res->t = t;
            if (c->kind == DECODE)
                for (int cold = 0; cold <= 1; cold++)
                    time_decode(c, &in, nt, cold, min_s, &res->dec_t[cold], &res->dec_s[cold]);
            if (!no_isa && in_isa_table(c))
                for (int k = 0; k < N_ISA; k++) {
                    if (!attn_isa_supported(isas[k]) || attn_set_isa(isas[k]) != ATTN_OK) continue;
                    if (isas[k] == ATTN_ISA_GENERIC && (round > 0 || case_flops(c) > 2e9)) continue;
                    run_once(c, &in, ATTN_ALGO_AUTO, nt);
                    const double ti = time_case(c, &in, ATTN_ALGO_AUTO, nt, min_s / 2, 0);
                    if (ti < res->isa_t[k]) res->isa_t[k] = ti;
                }
            attn_set_isa(default_isa);
            inputs_free(&in);
        }
        attn_set_allocator(NULL);
        fprintf(stderr, "attn_bench: round %d of %d done\n", round + 1, rounds);
    }

    printf("# OpenBLAS SGEMM 2048^3, %d threads: %.1f GFLOP/s (best of the rounds)\n\n", nt, sgemm);
    printf("| case | shape | time ms | GFLOP/s | peak extra MiB | x reference | / SGEMM | x NumPy "
           "| x PyTorch |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (size_t ci = 0; ci < N_CASES; ci++) {
        const bcase *c = &cases[ci];
        const result *res = &R[ci];
        if (!res->run) continue;
        const double t = res->t, gf = case_flops(c) / t / 1e9;
        const pyres *p = find_py(c->name);
        char shape[96], r_ref[32], r_np[16], r_pt[16];
        if (c->kind == MODULE)
            snprintf(shape, sizeof shape, "B=%lld N=%lld D=%lld H=%lld causal, projections",
                     (long long)c->B, (long long)c->Nq, (long long)c->d, (long long)c->H);
        else
            snprintf(shape, sizeof shape, "B=%lld H=%lld Nq=%lld Nkv=%lld d=%lld%s",
                     (long long)c->B, (long long)c->H, (long long)c->Nq, (long long)c->Nkv,
                     (long long)c->d, c->causal ? " causal" : "");
        if (isfinite(res->t_ref))
            fmt_ratio(r_ref, sizeof r_ref, res->t_ref / t);
        else
            snprintf(r_ref, sizeof r_ref, "not run");
        fmt_ratio(r_np, sizeof r_np, p ? p->numpy_s / t : NAN);
        fmt_ratio(r_pt, sizeof r_pt, p ? p->torch_s / t : NAN);
        printf("| %s | %s | %.3f | %.1f | %.2f | %s | %.2f | %s | %s |\n", c->name, shape, t * 1e3,
               gf, res->peak_mib, r_ref, gf / sgemm, r_np, r_pt);
    }

    int any_isa = 0;
    for (size_t ci = 0; ci < N_CASES; ci++)
        any_isa |= R[ci].run && !no_isa && in_isa_table(&cases[ci]);
    if (any_isa) {
        printf("\nFlash path per instruction set, GFLOP/s (generic only on the small cases):\n\n");
        printf("| case | avx512 | avx2 | generic |\n|---|---|---|---|\n");
        for (size_t ci = 0; ci < N_CASES; ci++) {
            const bcase *c = &cases[ci];
            if (!R[ci].run || !in_isa_table(c)) continue;
            char a[N_ISA][32];
            for (int k = 0; k < N_ISA; k++)
                if (isfinite(R[ci].isa_t[k]))
                    snprintf(a[k], sizeof a[k], "%.1f", case_flops(c) / R[ci].isa_t[k] / 1e9);
                else
                    snprintf(a[k], sizeof a[k], "-");
            printf("| %s | %s | %s | %s |\n", c->name, a[0], a[1], a[2]);
        }
    }

    int any_decode = 0;
    for (size_t ci = 0; ci < N_CASES; ci++)
        any_decode |= R[ci].run && cases[ci].kind == DECODE;
    if (any_decode) {
        printf("\nDecode against a read-only stream over the same K and V bytes, same threads, "
               "same cache state (calls alternated):\n\n");
        printf("| case | cache | attn ms | attn GB/s | stream ms | stream GB/s | attn / stream "
               "|\n|---|---|---|---|---|---|---|\n");
        for (size_t ci = 0; ci < N_CASES; ci++) {
            const bcase *c = &cases[ci];
            if (!R[ci].run || c->kind != DECODE) continue;
            const double bytes = 2.0 * (double)(c->B * c->H * c->Nkv * c->d) * sizeof(float);
            for (int cold = 0; cold <= 1; cold++) {
                const double tf = R[ci].dec_t[cold], ts = R[ci].dec_s[cold];
                printf("| %s | %s | %.3f | %.1f | %.3f | %.1f | %.2f |\n", c->name,
                       cold ? "cold" : "warm", tf * 1e3, bytes / tf / 1e9, ts * 1e3,
                       bytes / ts / 1e9, ts / tf);
            }
        }
    }
    free(sweep_buf);
    return 0;
}
