/* bench/gemv_bench.c - decode-shaped projections against the memory.
 *
 * attn_gemv_bench [--threads T] [--rounds R] [--seconds S] [--py FILE] [--cpu] [--quick]
 *                 [--columns N]
 *
 * attn_linear(x (M, 4096), W (4096, 6144)) for M = 1..8: bound by reading
 * W's 96 MiB once; and attn_linear_packed on the same W packed
 * (attn_weight_pack), which reads it in memory order. Each call alternates
 * with a read-only stream over the same bytes (same threads, same cache
 * state: on most machines W is far larger than the last-level cache;
 * --columns N makes W (4096, N), e.g. 49152 for 768 MiB where the cache
 * holds 96 MiB, and drops NumPy's column), and with NumPy's x @ W timed by
 * bench_py.py on the same shapes (FILE: lines "G<M> numpy_s torch_s"), and
 * with OpenBLAS itself (attn's copy, the same build as NumPy's: sgemv for
 * M = 1, sgemm above), timed after all attn calls: its idle threads spin.
 * --cpu times in process CPU time (with --threads 1: what one core does
 * when it runs, whatever the load of a shared machine). Times: best of R rounds of
 * the best of ~0.3 s of repetitions. */
#include "common.h"

#include "attn.h"

#include <math.h>
#include <string.h>
#ifdef BENCH_HAVE_BLAS
#include <cblas.h>
#endif

static int use_cpu_clock; /* --cpu: process CPU time instead of wall time */
static double clock_s(void) {
    return bench_clock(use_cpu_clock);
}

/* OpenBLAS (attn's copy: the same build and kernels as NumPy's) on the same
 * product, with the same threads: sgemv for one row, as NumPy calls it,
 * sgemm above. */
static void openblas_product(const float *x, const float *w, float *y, int m, int K, int N,
                             int nt) {
#ifdef BENCH_HAVE_BLAS
    openblas_set_num_threads(nt);
    if (m == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, K, N, 1.0f, w, N, x, 1, 0.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, N, K, 1.0f, x, K, w, N, 0.0f, y,
                    N);
#else
    (void)x, (void)w, (void)y, (void)m, (void)K, (void)N, (void)nt;
#endif
}

enum { K = 4096, N_DEFAULT = 6144, MAXM = 8 }; /* bench_py.py times NumPy at N_DEFAULT */

int main(int argc, char **argv) {
    int nt = 2, rounds = 3;
    int64_t N = N_DEFAULT;
    double min_s = 0.3;
    const char *py = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            nt = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--py") == 0 && i + 1 < argc)
            py = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            min_s = atof(argv[++i]);
        else if (strcmp(argv[i], "--cpu") == 0)
            use_cpu_clock = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            rounds = 1, min_s = 0.1;
        else if (strcmp(argv[i], "--columns") == 0 && i + 1 < argc && atoll(argv[i + 1]) > 0)
            N = atoll(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: attn_gemv_bench [--threads T] [--rounds R] [--seconds S] [--py FILE] "
                    "[--cpu] [--quick] [--columns N]\n");
            return 2;
        }
    }
    double np_s[MAXM + 1];
    for (int m = 0; m <= MAXM; m++)
        np_s[m] = NAN;
    if (py && N == N_DEFAULT) {
        FILE *f = fopen(py, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f)) {
            int m;
            double a, b;
            if (sscanf(line, "G%d %lf %lf", &m, &a, &b) == 3 && m >= 1 && m <= MAXM) np_s[m] = a;
        }
        if (f) fclose(f);
    }
    float *w = bench_rand((int64_t)K * N, 1, 0.02f), *x = bench_rand(MAXM * K, 2, 1.0f),
          *y = bench_rand(MAXM * N, 3, 1.0f);
    attn_view wv = attn_view_2d(w, K, N);
    const int64_t panels = (N + ATTN_PANEL - 1) / ATTN_PANEL;
    float *wp = bench_rand(panels * K * ATTN_PANEL, 4, 0.0f);
    attn_view wpv = attn_view_3d(wp, panels, K, ATTN_PANEL);
    if (attn_weight_pack(&wv, &wpv) != ATTN_OK) {
        fprintf(stderr, "attn_gemv_bench: %s\n", attn_last_error());
        return 1;
    }
    double best_a[MAXM + 1], best_s[MAXM + 1], best_o[MAXM + 1], best_p[MAXM + 1];
    for (int m = 0; m <= MAXM; m++)
        best_a[m] = best_s[m] = best_o[m] = best_p[m] = INFINITY;
    volatile uint64_t sink = 0;
    static double ta[2000], ts[2000], to[2000], tp[2000];
    /* attn and the stream alternate; OpenBLAS runs after all of them: with
     * more than one thread its own workers keep spinning after each call and
     * would slow whatever runs next on these cores (docs/threads.md). */
    for (int phase = 0; phase < 2; phase++)
        for (int r = 0; r < rounds; r++)
            for (int m = 1; m <= MAXM; m++) {
                attn_view xv = attn_view_2d(x, m, K), yv = attn_view_2d(y, m, N);
                int reps = 0;
                double total = 0.0;
                while (reps < 2000 && (reps < 5 || total < min_s)) {
                    if (phase == 0) {
                        double t0 = clock_s();
                        if (attn_linear(&xv, &wv, NULL, &yv, nt) != ATTN_OK) {
                            fprintf(stderr, "attn_gemv_bench: %s\n", attn_last_error());
                            return 1;
                        }
                        ta[reps] = clock_s() - t0;
                        t0 = clock_s();
                        sink ^= bench_stream(w, (int64_t)K * N, nt);
                        ts[reps] = clock_s() - t0;
                        t0 = clock_s();
                        if (attn_linear_packed(&xv, &wpv, NULL, &yv, nt) != ATTN_OK) {
                            fprintf(stderr, "attn_gemv_bench: %s\n", attn_last_error());
                            return 1;
                        }
                        tp[reps] = clock_s() - t0;
                        total += ta[reps] + ts[reps] + tp[reps];
                    } else {
                        const double t0 = clock_s();
                        openblas_product(x, w, y, m, K, (int)N, nt);
                        to[reps] = clock_s() - t0;
                        total += to[reps];
                    }
                    reps++;
                }
                if (phase == 0) {
                    const double a = bench_min(ta, reps), s = bench_min(ts, reps),
                                 pk = bench_min(tp, reps);
                    if (pk < best_p[m]) best_p[m] = pk;
                    if (a < best_a[m]) best_a[m] = a;
                    if (s < best_s[m]) best_s[m] = s;
                } else {
                    const double o = bench_min(to, reps);
                    if (o < best_o[m]) best_o[m] = o;
                }
            }
    (void)sink;
    const double bytes = (double)K * N * sizeof(float);
    printf("# attn_gemv_bench: W (%d, %lld), %d threads, %s time, %s\n\n", (int)K, (long long)N, nt,
           use_cpu_clock ? "process CPU" : "wall", attn_build_info());
    printf("| M | attn_linear ms | GB/s | stream ms | stream GB/s | attn / stream | "
           "packed ms | packed / stream | OpenBLAS ms | x OpenBLAS | NumPy ms | x NumPy |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int m = 1; m <= MAXM; m++) {
        char npm[32] = "-", npr[32] = "-";
        if (isfinite(np_s[m])) {
            snprintf(npm, sizeof npm, "%.3f", np_s[m] * 1e3);
            snprintf(npr, sizeof npr, "%.2f", np_s[m] / best_a[m]);
        }
        printf("| %d | %.3f | %.1f | %.3f | %.1f | %.2f | %.3f | %.2f | %.3f | %.2f | %s | %s |\n",
               m, best_a[m] * 1e3, bytes / best_a[m] / 1e9, best_s[m] * 1e3,
               bytes / best_s[m] / 1e9, best_s[m] / best_a[m], best_p[m] * 1e3,
               best_s[m] / best_p[m], best_o[m] * 1e3, best_o[m] / best_a[m], npm, npr);
    }
    free(w), free(wp), free(x), free(y);
    return 0;
}
