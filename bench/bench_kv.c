/* bench/bench_kv.c - decode and chunked prefill over the paged KV cache
 * (docs/performance.md "KV cache").
 *
 * attn_bench_kv [--threads T] [--block-size BS] [--quick] [--only NAME] [--cpu]
 *
 * Decode cases S4 (H=32 Nkv=4096 d=128), S4L (Nkv=32768) and S4g (H=32
 * Hkv=8 Nkv=32768), each storage dtype, block table shuffled, warm and cold
 * (a 256 MiB buffer swept before each call). Each is compared with
 *   bound = max(bytes / (0.85 x stream), FLOPs / (0.6 x SGEMM))
 * where stream is a read-only pass over buffers laid out as the cache's K
 * and V pools, reading the same (head, block) pieces in block-table order
 * as attend does, in the same cache state (calls alternated), and SGEMM
 * the OpenBLAS 2048^3 rate measured in the same run. FLOPs = 4 H Nkv d.
 * The same decode over plain float32 views (attn_sdpa, today's path) is
 * timed beside it. C1 (H=1 Nkv=1024, in L2) shows the kernels' own cost.
 * Chunked prefill: B=1 H=32 Hkv=8 d=128, Nq=512 new tokens at the end of a
 * 32768-token cache, BOTTOM_RIGHT; FLOPs over visible pairs
 * 4 H d (Nq (L - Nq) + Nq (Nq + 1) / 2), against 0.7 x SGEMM. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include "attn.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef BENCH_HAVE_BLAS
#include <cblas.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* --cpu: process CPU time instead of wall time (on a loaded machine, with
 * --threads 1, the time this process ran, stalls on memory included). */
static clockid_t clock_kind = CLOCK_MONOTONIC;

static void die(const char *what) {
    fprintf(stderr, "attn_bench_kv: %s: %s\n", what, attn_last_error());
    exit(1);
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t next(void) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float *rand_buf(int64_t n) {
    float *p = malloc((size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "attn_bench_kv: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)((next() >> 40) * (2.0 / 16777216.0) - 1.0);
    return p;
}

#define SWEEP_BYTES ((size_t)256 << 20)
static unsigned char *sweep_buf;
static void sweep_cache(void) {
    uint64_t *p = (uint64_t *)sweep_buf;
#ifdef _OPENMP
#pragma omp parallel for
#endif
    for (size_t i = 0; i < SWEEP_BYTES / 8; i += 8)
        p[i] += 1;
}

/* Read n bytes (a multiple of 128) at p: 32-byte loads, four accumulators. */
#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t read_piece(const unsigned char *p, int64_t n) {
    const __m256i *v = (const __m256i *)p;
    __m256i x0 = _mm256_setzero_si256(), x1 = x0, x2 = x0, x3 = x0;
    for (int64_t i = 0; i < n / 32; i += 4) {
        x0 = _mm256_xor_si256(x0, _mm256_loadu_si256(v + i));
        x1 = _mm256_xor_si256(x1, _mm256_loadu_si256(v + i + 1));
        x2 = _mm256_xor_si256(x2, _mm256_loadu_si256(v + i + 2));
        x3 = _mm256_xor_si256(x3, _mm256_loadu_si256(v + i + 3));
    }
    x0 = _mm256_xor_si256(_mm256_xor_si256(x0, x1), _mm256_xor_si256(x2, x3));
    return (uint64_t)_mm256_extract_epi64(x0, 0) ^ (uint64_t)_mm256_extract_epi64(x0, 3);
}
#else
static uint64_t read_piece(const unsigned char *p, int64_t n) {
    const uint64_t *w = (const uint64_t *)p;
    uint64_t acc = 0;
    for (int64_t i = 0; i < n / 8; i++)
        acc ^= w[i];
    return acc;
}
#endif

/* The stream over pools laid out as the cache's: per kv head (spread over
 * the threads as attend spreads its tiles), the K then V piece of each
 * block in table order. piece_k, piece_v: bytes of one (block, head). */
static uint64_t stream_pools(const unsigned char *kp, const unsigned char *vp, const int32_t *table,
                             int64_t nb, int64_t hkv, int64_t piece_k, int64_t piece_v, int nt) {
    uint64_t acc = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) reduction(^ : acc) schedule(dynamic, 1)
#endif
    for (int64_t g = 0; g < hkv; g++)
        for (int64_t t = 0; t < nb; t++) {
            const int64_t blk = table[t];
            acc ^= read_piece(kp + (blk * hkv + g) * piece_k, piece_k);
            acc ^= read_piece(vp + (blk * hkv + g) * piece_v, piece_v);
        }
    (void)nt;
    return acc;
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

static const char *const DT_NAME[3] = {"float32", "float16", "bfloat16"};
static const size_t DT_SIZE[3] = {4, 2, 2};

/* A cache of L tokens for one sequence, table shuffled; keys and values
 * appended in pieces of 4096 tokens from random float32 data. */
typedef struct seq {
    attn_kv_cache *c;
    int32_t *table;
    int64_t nb, L, hkv, d;
} seq;

static void seq_make(seq *s, attn_kv_dtype dt, int64_t L, int64_t hkv, int64_t d, int64_t bs) {
    s->L = L, s->hkv = hkv, s->d = d;
    s->nb = (L + bs - 1) / bs;
    if (attn_kv_create(s->nb, bs, hkv, d, d, dt, &s->c)) die("attn_kv_create");
    s->table = malloc((size_t)s->nb * sizeof(int32_t));
    for (int64_t i = 0; i < s->nb; i++)
        s->table[i] = (int32_t)i;
    for (int64_t i = s->nb - 1; i > 0; i--) {
        const int64_t j = (int64_t)(next() % (uint64_t)(i + 1));
        const int32_t x = s->table[i];
        s->table[i] = s->table[j], s->table[j] = x;
    }
    const int64_t piece = 4096;
    float *k = rand_buf(hkv * piece * d), *v = rand_buf(hkv * piece * d);
    for (int64_t p0 = 0; p0 < L; p0 += piece) {
        const int64_t n = L - p0 < piece ? L - p0 : piece;
        attn_view kv = {k, 4, {1, hkv, n, d}, {0, piece * d, d, 1}};
        attn_view vv = {v, 4, {1, hkv, n, d}, {0, piece * d, d, 1}};
        if (attn_kv_append(s->c, s->table, s->nb, &p0, NULL, &kv, &vv)) die("attn_kv_append");
    }
    free(k), free(v);
}

static void seq_free(seq *s) {
    attn_kv_destroy(s->c);
    free(s->table);
}

typedef struct dcase {
    const char *name;
    int64_t H, hkv, L, d;
} dcase;

static const dcase dcases[] = {
    {"S4", 32, 32, 4096, 128},
    {"S4L", 32, 32, 32768, 128},
    {"S4g", 32, 8, 32768, 128},
    {"C1", 1, 1, 1024, 128}, /* 1 MiB of float32 K+V: in L2, the kernels' own speed */
};

int main(int argc, char **argv) {
    int nt = 2, quick = 0;
    int64_t bs = 64;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            nt = atoi(argv[++i]);
        else if (strcmp(argv[i], "--block-size") == 0 && i + 1 < argc)
            bs = atoll(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--cpu") == 0)
            clock_kind = CLOCK_PROCESS_CPUTIME_ID;
        else {
            fprintf(stderr, "usage: attn_bench_kv [--threads T] [--block-size BS] [--quick] "
                            "[--only NAME] [--cpu]\n");
            return 2;
        }
    }
    const double min_s = quick ? 0.2 : 0.6;
    sweep_buf = calloc(1, SWEEP_BYTES);
    char cpu[128];
    cpu_name(cpu, sizeof cpu);
    const double sgemm = bench_sgemm_gflops(nt, 8);
    printf("\n# attn_bench_kv: %s, %d threads, %s\n", cpu, nt, attn_build_info());
    printf("# KV cache: block_size %lld, block tables shuffled; OpenBLAS SGEMM 2048^3 in this "
           "run: %.1f GFLOP/s. The machine is shared: timings are best-of%s.\n\n",
           (long long)bs, sgemm,
           clock_kind == CLOCK_MONOTONIC ? "" : ", in process CPU time (--cpu)");
    printf("Decode over the cache (B=1, Nq=1) against bound = max(bytes / (0.85 x stream), FLOPs "
           "/ (0.6 x SGEMM)); stream = the same (head, block) pieces read in table order; "
           "strided = attn_sdpa over float32 views of the same shape:\n\n");
    printf("| case | dtype | cache | attend ms | stream ms | bound ms | attend / bound | met | "
           "attend GB/s | strided f32 ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t ci = 0; ci < sizeof dcases / sizeof dcases[0]; ci++) {
        const dcase *c = &dcases[ci];
        if (only && strcmp(only, c->name) != 0) continue;
        const int64_t H = c->H, hkv = c->hkv, L = c->L, d = c->d;
        float *q = rand_buf(H * d), *out = rand_buf(H * d);
        attn_view qv = attn_view_4d(q, 1, H, 1, d), ov = attn_view_4d(out, 1, H, 1, d);
        attn_opts o = attn_opts_default();
        o.num_threads = nt;
        /* today's path on float32 views, for the last column */
        double t_strided[2] = {INFINITY, INFINITY};
        {
            float *k = rand_buf(hkv * L * d), *v = rand_buf(hkv * L * d);
            attn_view kv = attn_view_4d(k, 1, hkv, L, d), vv = attn_view_4d(v, 1, hkv, L, d);
            for (int cold = 0; cold <= 1; cold++) {
                double total = 0.0;
                for (int rep = 0; rep < 100 && (rep < 5 || total < min_s); rep++) {
                    if (cold) sweep_cache();
                    const double t0 = bench_now();
                    if (attn_sdpa(&qv, &kv, &vv, &ov, &o)) die("attn_sdpa");
                    const double t = bench_now() - t0;
                    total += t;
                    if (t < t_strided[cold]) t_strided[cold] = t;
                }
            }
            free(k), free(v);
        }
        for (int dt = 0; dt < 3; dt++) {
            seq s;
            seq_make(&s, (attn_kv_dtype)dt, L, hkv, d, bs);
            const int64_t piece = bs * d * (int64_t)DT_SIZE[dt];
            unsigned char *kp = malloc((size_t)(s.nb * hkv * piece));
            unsigned char *vp = malloc((size_t)(s.nb * hkv * piece));
            memset(kp, 1, (size_t)(s.nb * hkv * piece));
            memset(vp, 2, (size_t)(s.nb * hkv * piece));
            const double bytes = 2.0 * (double)(hkv * L * d) * (double)DT_SIZE[dt];
            const double flops = 4.0 * (double)(H * L * d);
            volatile uint64_t sink = 0;
            for (int cold = 0; cold <= 1; cold++) {
                double ta = INFINITY, ts = INFINITY, total = 0.0;
                for (int rep = 0; rep < 100 && (rep < 5 || total < min_s); rep++) {
                    if (cold) sweep_cache();
                    double t0 = bench_now();
                    if (attn_kv_attend(s.c, &qv, s.table, s.nb, &L, NULL, &ov, &o))
                        die("attn_kv_attend");
                    double t = bench_now() - t0;
                    total += t;
                    if (t < ta) ta = t;
                    if (cold) sweep_cache();
                    t0 = bench_now();
                    sink ^= stream_pools(kp, vp, s.table, s.nb, hkv, piece, piece, nt);
                    t = bench_now() - t0;
                    if (t < ts) ts = t;
                }
                const double bound_mem = ts / 0.85, bound_fl = flops / (0.6 * sgemm * 1e9);
                const double bound = bound_mem > bound_fl ? bound_mem : bound_fl;
                printf("| %s | %s | %s | %.3f | %.3f | %.3f | %.2f | %s | %.1f | %.3f |\n", c->name,
                       DT_NAME[dt], cold ? "cold" : "warm", ta * 1e3, ts * 1e3, bound * 1e3,
                       ta / bound, ta <= bound ? "yes" : "no", bytes / ta / 1e9,
                       t_strided[cold] * 1e3);
                fflush(stdout);
            }
            (void)sink;
            free(kp), free(vp);
            seq_free(&s);
        }
        free(q), free(out);
    }

    if (!only || strcmp(only, "P1") == 0) {
        const int64_t H = 32, hkv = 8, d = 128, L = quick ? 8192 : 32768, Nq = 512;
        const double flops =
            4.0 * (double)(H * d) * ((double)Nq * (double)(L - Nq) + (double)Nq * (Nq + 1) / 2.0);
        printf("\nChunked prefill over the cache: B=1 H=32 Hkv=8 d=128, Nq=%lld new tokens at the "
               "end of a %lld-token cache, BOTTOM_RIGHT (FLOPs over visible pairs), against 0.7 x "
               "SGEMM:\n\n",
               (long long)Nq, (long long)L);
        printf(
            "| case | dtype | time ms | GFLOP/s | / SGEMM | met (>= 0.7) |\n|---|---|---|---|---|"
            "---|\n");
        float *q = rand_buf(H * Nq * d), *out = rand_buf(H * Nq * d);
        attn_view qv = attn_view_4d(q, 1, H, Nq, d), ov = attn_view_4d(out, 1, H, Nq, d);
        attn_opts o = attn_opts_default();
        o.num_threads = nt;
        o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
        {
            /* the engine on plain float32 views of the same problem */
            float *k = rand_buf(hkv * L * d), *v = rand_buf(hkv * L * d);
            attn_view kv = attn_view_4d(k, 1, hkv, L, d), vv = attn_view_4d(v, 1, hkv, L, d);
            double best = INFINITY;
            for (int rep = 0; rep < (quick ? 1 : 3); rep++) {
                const double t0 = bench_now();
                if (attn_sdpa(&qv, &kv, &vv, &ov, &o)) die("attn_sdpa");
                const double t = bench_now() - t0;
                if (t < best) best = t;
            }
            const double gf = flops / best / 1e9;
            printf("| P1 strided (attn_sdpa, float32 views) | - | %.1f | %.1f | %.2f | %s |\n",
                   best * 1e3, gf, gf / sgemm, gf >= 0.7 * sgemm ? "yes" : "no");
            free(k), free(v);
        }
        static const int dts[3] = {ATTN_KV_FLOAT32, ATTN_KV_BFLOAT16, ATTN_KV_FLOAT16};
        for (int di = 0; di < 3; di++) {
            const int dt = dts[di];
            seq s;
            seq_make(&s, (attn_kv_dtype)dt, L, hkv, d, bs);
            double best = INFINITY;
            for (int rep = 0; rep < (quick ? 1 : 3); rep++) {
                const double t0 = bench_now();
                if (attn_kv_attend(s.c, &qv, s.table, s.nb, &L, NULL, &ov, &o))
                    die("attn_kv_attend");
                const double t = bench_now() - t0;
                if (t < best) best = t;
            }
            const double gf = flops / best / 1e9;
            printf("| P1 | %s | %.1f | %.1f | %.2f | %s |\n", DT_NAME[dt], best * 1e3, gf,
                   gf / sgemm, gf >= 0.7 * sgemm ? "yes" : "no");
            fflush(stdout);
            seq_free(&s);
        }
        free(q), free(out);
    }
    free(sweep_buf);
    return 0;
}
