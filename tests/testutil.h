/* testutil.h - a small harness shared by the C tests: checks that count,
 * a seeded generator, and array comparison with a stated tolerance. */
#ifndef ATTN_TESTUTIL_H
#define ATTN_TESTUTIL_H

#include "attn.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tu_failed = 0, tu_passed = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            tu_passed++;                                                                           \
        } else {                                                                                   \
            tu_failed++;                                                                           \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
        }                                                                                          \
    } while (0)

/* A call that must succeed; prints attn_last_error() otherwise. */
#define CHECK_OK(call)                                                                             \
    do {                                                                                           \
        attn_status st_ = (call);                                                                  \
        CHECK(st_ == ATTN_OK, "%s -> %s: %s", #call, attn_status_string(st_), attn_last_error());  \
    } while (0)

/* A call that must fail with status `want` and a message containing `text`. */
#define CHECK_FAIL(call, want, text)                                                               \
    do {                                                                                           \
        attn_status st_ = (call);                                                                  \
        CHECK(st_ == (want) && strstr(attn_last_error(), (text)) != NULL,                          \
              "%s -> %s \"%s\", wanted %s with \"%s\"", #call, attn_status_string(st_),            \
              attn_last_error(), attn_status_string(want), (text));                                \
    } while (0)

/* Print the closing line ctest logs and return the exit code. */
static inline int tu_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, tu_passed, tu_failed);
    return tu_failed ? 1 : 0;
}

/* splitmix64: reproducible numbers for test data. */
static uint64_t tu_state = 0x1234567;
static inline uint64_t tu_next(void) {
    uint64_t z = (tu_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform in [lo, hi). */
static inline float tu_uniform(float lo, float hi) {
    return lo + (hi - lo) * (float)((tu_next() >> 40) * (1.0 / 16777216.0));
}
static inline int64_t tu_int(int64_t lo, int64_t hi) { /* inclusive */
    return lo + (int64_t)(tu_next() % (uint64_t)(hi - lo + 1));
}
static inline float *tu_rand(int64_t n, float lo, float hi) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        p[i] = tu_uniform(lo, hi);
    return p;
}
static inline float *tu_zeros(int64_t n) {
    return calloc((size_t)(n > 0 ? n : 1), sizeof(float));
}
static inline float *tu_copy(const float *a, int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(p, a, (size_t)n * sizeof(float));
    return p;
}

/* Largest |a - b| over n values; NaN if either side has a NaN where the other does not. */
static inline double tu_maxdiff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) return NAN;
        if (isnan(a[i])) continue;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m) m = d;
    }
    return m;
}

#endif
