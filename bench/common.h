/* bench/common.h - what the benchmarks share: a clock, reproducible data,
 * a read-only memory stream, a median and a minimum, an allocator that
 * tracks attn's peak extra memory, and OpenBLAS's SGEMM rate. */
#ifndef ATTN_BENCH_COMMON_H
#define ATTN_BENCH_COMMON_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef BENCH_HAVE_BLAS
#include <cblas.h>
#endif

/* Seconds: the wall clock, or with cpu the process's CPU time (on a shared,
 * overloaded machine a call's wall time includes its waits for a core, its
 * CPU time does not; with more than one thread OpenMP's spinning counts). */
static inline double bench_clock(int cpu) {
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline double bench_now(void) {
    return bench_clock(0);
}

/* n floats uniform in [-scale, scale), from a seed (splitmix64). */
static inline float *bench_rand(int64_t n, uint64_t seed, float scale) {
    float *p = malloc((size_t)n * sizeof(float));
    if (!p) {
        fprintf(stderr, "attn bench: out of memory (%lld floats)\n", (long long)n);
        exit(1);
    }
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = s + (uint64_t)i * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        p[i] = scale * (float)((z >> 40) * (2.0 / 16777216.0) - 1.0);
    }
    return p;
}

/* ---- peak extra memory: an attn_allocator (attn_set_allocator) ----------- */

static _Atomic int64_t bench_cur_bytes, bench_peak_bytes;

static inline void *bench_track_alloc(size_t size, size_t align, void *ctx) {
    (void)ctx;
    const size_t hdr = align < 16 ? 16 : align;
    char *base = aligned_alloc(hdr, (size + 2 * hdr - 1) / hdr * hdr);
    if (!base) return NULL;
    char *p = base + hdr;
    ((size_t *)p)[-1] = hdr;
    ((size_t *)p)[-2] = size;
    const int64_t c = atomic_fetch_add(&bench_cur_bytes, (int64_t)size) + (int64_t)size;
    int64_t pk = atomic_load(&bench_peak_bytes);
    while (c > pk && !atomic_compare_exchange_weak(&bench_peak_bytes, &pk, c)) {
    }
    return p;
}

static inline void bench_track_free(void *ptr, void *ctx) {
    (void)ctx;
    if (!ptr) return;
    char *p = ptr;
    const size_t hdr = ((size_t *)p)[-1], size = ((size_t *)p)[-2];
    atomic_fetch_sub(&bench_cur_bytes, (int64_t)size);
    free(p - hdr);
}

/* OpenBLAS's SGEMM 2048^3 on nt threads, GFLOP/s: the best of reps - 1
 * calls after a warm-up; NaN without BLAS. Its idle threads spin for a
 * while afterwards: time nothing right after it. */
static inline double bench_sgemm_gflops(int nt, int reps) {
#ifdef BENCH_HAVE_BLAS
    const int n = 2048;
    float *a = bench_rand((int64_t)n * n, 21, 1.0f), *b = bench_rand((int64_t)n * n, 22, 1.0f),
          *c = bench_rand((int64_t)n * n, 23, 1.0f);
    openblas_set_num_threads(nt);
    double best = INFINITY;
    for (int rep = 0; rep < reps; rep++) {
        const double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        const double t = bench_now() - t0;
        if (rep > 0 && t < best) best = t;
    }
    free(a), free(b), free(c);
    return 2.0 * n * (double)n * n / best / 1e9;
#else
    (void)nt, (void)reps;
    return NAN;
#endif
}

static int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of t[0..n-1] (sorts t). */
static inline double bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof t[0], bench_cmp_double);
    return t[n / 2];
}

/* Smallest of t[0..n-1]: on a shared machine, the speed when the others
 * let us run (a pool fight slows every repetition, so it still shows). */
static inline double bench_min(const double *t, int n) {
    double m = t[0];
    for (int i = 1; i < n; i++)
        if (t[i] < m) m = t[i];
    return m;
}

/* A read-only stream over n floats split over nt threads (the same as
 * bench.c's): AVX2 loads into four accumulators, a checksum so the loads
 * stay. n must be a multiple of 1024 for the AVX2 loop. */
#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t bench_stream_avx2(const float *a, int64_t n,
                                                                  int nt) {
    uint64_t acc = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) reduction(^ : acc) schedule(static)
#endif
    for (int64_t blk = 0; blk < n / 1024; blk++) {
        const __m256i *p = (const __m256i *)(a + blk * 1024);
        __m256i x0 = _mm256_setzero_si256(), x1 = x0, x2 = x0, x3 = x0;
        for (int i = 0; i < 128; i += 4) {
            x0 = _mm256_xor_si256(x0, _mm256_loadu_si256(p + i));
            x1 = _mm256_xor_si256(x1, _mm256_loadu_si256(p + i + 1));
            x2 = _mm256_xor_si256(x2, _mm256_loadu_si256(p + i + 2));
            x3 = _mm256_xor_si256(x3, _mm256_loadu_si256(p + i + 3));
        }
        x0 = _mm256_xor_si256(_mm256_xor_si256(x0, x1), _mm256_xor_si256(x2, x3));
        acc ^= (uint64_t)_mm256_extract_epi64(x0, 0) ^ (uint64_t)_mm256_extract_epi64(x0, 3);
    }
    (void)nt;
    return acc;
}
#endif

static inline uint64_t bench_stream(const float *a, int64_t n, int nt) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && n % 1024 == 0) return bench_stream_avx2(a, n, nt);
#endif
    const uint64_t *w = (const uint64_t *)a;
    uint64_t acc = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) reduction(^ : acc) schedule(static)
#endif
    for (int64_t i = 0; i < n / 2; i++)
        acc ^= w[i];
    (void)nt;
    return acc;
}

#endif /* ATTN_BENCH_COMMON_H */
