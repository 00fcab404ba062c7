/* bench/decode_cpu.c - attn_sdpa decode over plain float32 views, best
 * process CPU time of 30 calls, to compare two builds of the library on a
 * loaded machine (docs/performance.md "KV cache"):
 *   cc -O2 -fopenmp -I<tree>/include bench/decode_cpu.c <build>/src/libattn*.a -lopenblas -lm
 *   ./a.out H Hkv Nkv threads      (d = 128, Nq = 1; prints milliseconds) */
#define _POSIX_C_SOURCE 200809L
#include "attn.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: decode_cpu H Hkv Nkv threads\n");
        return 2;
    }
    const int64_t H = atoll(argv[1]), Hkv = atoll(argv[2]), L = atoll(argv[3]), d = 128;
    float *k = malloc((size_t)(Hkv * L * d) * sizeof(float));
    float *v = malloc((size_t)(Hkv * L * d) * sizeof(float));
    float *q = malloc((size_t)(H * d) * sizeof(float)),
          *o = malloc((size_t)(H * d) * sizeof(float));
    if (!k || !v || !q || !o) return 1;
    for (int64_t i = 0; i < Hkv * L * d; i++)
        k[i] = v[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (int64_t i = 0; i < H * d; i++)
        q[i] = 0.01f * (float)i;
    attn_view qv = attn_view_4d(q, 1, H, 1, d), ov = attn_view_4d(o, 1, H, 1, d);
    attn_view kv = attn_view_4d(k, 1, Hkv, L, d), vv = attn_view_4d(v, 1, Hkv, L, d);
    attn_opts op = attn_opts_default();
    op.num_threads = atoi(argv[4]);
    double best = 1e30;
    for (int r = 0; r < 30; r++) {
        const double t0 = cpu_now();
        if (attn_sdpa(&qv, &kv, &vv, &ov, &op)) {
            fprintf(stderr, "%s\n", attn_last_error());
            return 1;
        }
        const double e = cpu_now() - t0;
        if (e < best) best = e;
    }
    printf("%.3f\n", best * 1e3);
    free(k), free(v), free(q), free(o);
    return 0;
}
