/* util.c - option parsing, timing, generated data and memory tracking. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "npy.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_error(int code, const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "attn %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int opt_value(int argc, char **argv, int *i, const char *name, const char **value) {
    const char *w = argv[*i];
    size_t n = strlen(name);
    if (strncmp(w, name, n) != 0) return 0;
    if (w[n] == '=') {
        *value = w + n + 1;
        return 1;
    }
    if (w[n] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *value = argv[++*i];
    return 1;
}

int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) return -1;
    *out = (int64_t)v;
    return 0;
}

int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (s[0] == '-') return -1;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end != '\0') return -1;
    *out = (uint64_t)v;
    return 0;
}

int parse_f32(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || fabs(v) > 3.0e38) return -1;
    *out = (float)v;
    return 0;
}

int parse_causal(const char *s, attn_causal *out) {
    if (strcmp(s, "none") == 0)
        *out = ATTN_CAUSAL_NONE;
    else if (strcmp(s, "top_left") == 0 || strcmp(s, "top-left") == 0 || strcmp(s, "tl") == 0)
        *out = ATTN_CAUSAL_TOP_LEFT;
    else if (strcmp(s, "bottom_right") == 0 || strcmp(s, "bottom-right") == 0 ||
             strcmp(s, "br") == 0)
        *out = ATTN_CAUSAL_BOTTOM_RIGHT;
    else
        return -1;
    return 0;
}

int parse_window(const char *s, int64_t *left, int64_t *right) {
    const char *comma = strchr(s, ',');
    if (!comma) return -1;
    size_t n = (size_t)(comma - s);
    char a[32];
    if (n == 0 || n >= sizeof a) return -1;
    memcpy(a, s, n);
    a[n] = '\0';
    const int64_t big = (int64_t)1 << 40;
    return parse_i64(a, -1, big, left) || parse_i64(comma + 1, -1, big, right) ? -1 : 0;
}

int cli_bare_causal(int argc, char **argv, int i) {
    return strcmp(argv[i], "--causal") == 0 && (i + 1 >= argc || argv[i + 1][0] == '-');
}

int resolve_causal(attn_causal *c, int64_t Nq, int64_t Nkv, int key_lengths, const char *cmd) {
    if (*c != CLI_CAUSAL_BARE) return 0;
    if (Nq == Nkv && !key_lengths) {
        *c = ATTN_CAUSAL_TOP_LEFT; /* j <= i: both alignments agree */
        return 0;
    }
    cli_error(EXIT_USAGE, cmd,
              "a bare --causal is ambiguous here (%s): choose --causal top_left (key j visible "
              "to query i iff j <= i, PyTorch's is_causal) or --causal bottom_right (j <= i + "
              "Nkv - Nq, FlashAttention's, for decoding with a cache)",
              key_lengths ? "key lengths make each batch's Nkv differ" : "Nq != Nkv");
    return -1;
}

const char *causal_name(attn_causal c) {
    return c == ATTN_CAUSAL_TOP_LEFT       ? "top_left"
           : c == ATTN_CAUSAL_BOTTOM_RIGHT ? "bottom_right"
           : c == CLI_CAUSAL_BARE          ? "causal"
                                           : "none";
}

int parse_algo(const char *s, attn_algo *out) {
    if (strcmp(s, "auto") == 0)
        *out = ATTN_ALGO_AUTO;
    else if (strcmp(s, "reference") == 0 || strcmp(s, "ref") == 0)
        *out = ATTN_ALGO_REFERENCE;
    else if (strcmp(s, "flash") == 0)
        *out = ATTN_ALGO_FLASH;
    else
        return -1;
    return 0;
}

const char *algo_name(attn_algo a) {
    return a == ATTN_ALGO_REFERENCE ? "reference" : a == ATTN_ALGO_FLASH ? "flash" : "auto";
}

int cli_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1 << 20 ? (int)n : 1;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t rng_next(cli_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float rng_uniform(cli_rng *r, float a) {
    double u = (double)(rng_next(r) >> 40) / 16777216.0; /* [0, 1) */
    return (float)((2.0 * u - 1.0) * a);
}

/* ---- memory tracking ------------------------------------------------------ */

/* Each block is preceded by a header of `align` bytes (at least 16) whose
 * last two words hold the block's size and the header length. */
static atomic_llong track_cur, track_max;

static void *track_alloc(size_t size, size_t align, void *ctx) {
    (void)ctx;
    if (align < 2 * sizeof(size_t)) align = 2 * sizeof(size_t);
    if (size > SIZE_MAX - 2 * align) return NULL;
    size_t total = (size + 2 * align - 1) / align * align;
    unsigned char *base = aligned_alloc(align, total);
    if (!base) return NULL;
    unsigned char *p = base + align;
    memcpy(p - sizeof(size_t), &size, sizeof(size_t));
    memcpy(p - 2 * sizeof(size_t), &align, sizeof(size_t));
    long long cur = atomic_fetch_add(&track_cur, (long long)size) + (long long)size;
    long long prev = atomic_load(&track_max);
    while (cur > prev && !atomic_compare_exchange_weak(&track_max, &prev, cur)) {
    }
    return p;
}

static void track_free(void *ptr, void *ctx) {
    (void)ctx;
    if (!ptr) return;
    unsigned char *p = ptr;
    size_t size, align;
    memcpy(&size, p - sizeof(size_t), sizeof(size_t));
    memcpy(&align, p - 2 * sizeof(size_t), sizeof(size_t));
    atomic_fetch_sub(&track_cur, (long long)size);
    free(p - align);
}

void track_install(void) {
    attn_allocator a = {track_alloc, track_free, NULL};
    attn_set_allocator(&a);
}

void track_reset(void) {
    atomic_store(&track_max, atomic_load(&track_cur));
}

int64_t track_peak(void) {
    return (int64_t)atomic_load(&track_max);
}

void track_uninstall(void) {
    attn_set_allocator(NULL);
}

const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    return npy_shape_str(ndim, shape, buf, len);
}

double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return d;
        if (d > m) m = d;
    }
    return m;
}

double max_abs(const float *a, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i]);
        if (d != d) return d;
        if (d > m) m = d;
    }
    return m;
}

double sdpa_flops(int64_t B, int64_t H, int64_t Nq, int64_t Nkv, int64_t d, int64_t dv,
                  attn_causal causal) {
    double pairs = 0.0;
    if (causal == ATTN_CAUSAL_NONE) {
        pairs = (double)Nq * (double)Nkv;
    } else {
        for (int64_t i = 0; i < Nq; i++) {
            int64_t end = causal == ATTN_CAUSAL_TOP_LEFT ? i + 1 : i + 1 + Nkv - Nq;
            if (end > Nkv) end = Nkv;
            if (end > 0) pairs += (double)end;
        }
    }
    return 2.0 * (double)B * (double)H * pairs * (double)(d + dv);
}
