/* bench/gemv_patterns.c - why few-row projections fall short of the stream:
 * the order W is read in, measured against a read-only stream.
 *
 * attn_gemv_patterns [--rounds R] [--columns N]
 *
 * W is (4096, N) floats (N = 6144: 96 MiB), split over two OpenMP threads.
 * Every timed call follows a read-only stream over W's bytes (bench_stream,
 * the one attn_gemv_bench uses), and the table gives the median over R
 * rounds of stream time / call time for each pair: the memory's speed
 * changes by a factor two within seconds on a shared machine, two adjacent
 * calls see the same. Rows, for M = 1, 4, 8 rows of x:
 *   ordered     no product: each thread reads its contiguous half of W in
 *               memory order and does the M x 16 multiply-adds per 64 bytes
 *               that a product does, into registers (M = 8: 24 sums). The
 *               most any kernel reading W once can get, at this arithmetic.
 *   row runs    the same arithmetic, but each thread reads its half of the
 *               columns, one row at a time (runs of N / 2 floats): the order
 *               a kernel that gives each thread whole columns (the
 *               determinism rule of src/kernels/gemv.h) must read in.
 *   attn_linear attn_linear(x (M, 4096), W (4096, N)): its row-major kernel,
 *               register tiles over 16 rows at a time.
 *   packed      attn_linear_packed on the same W packed (attn_weight_pack):
 *               48-column panels, each (4096, 48) contiguous, each thread a
 *               contiguous range of panels read in memory order.
 * AVX-512 only (the ordered and row-run loops are AVX-512 code): elsewhere
 * it says so and exits 0. docs/threads.md reads its output. */
#include "common.h"

#include "attn.h"

#include <string.h>

#if defined(__x86_64__) && defined(_OPENMP)
#include <immintrin.h>
#include <omp.h>

enum { K = 4096, PANEL = 48, MAXR = 101 };

static int64_t N = 6144;
static float *W, *WP, *X, *Y; /* WP: W packed */
static volatile float sink;

#define AVX512 __attribute__((target("avx512f")))

/* M x 3 register sums over 48-float pieces p[0..47] of a thread's reads. */
#define PIECE(M, p)                                                                                \
    do {                                                                                           \
        const __m512 w0 = _mm512_loadu_ps(p), w1 = _mm512_loadu_ps((p) + 16),                      \
                     w2 = _mm512_loadu_ps((p) + 32);                                               \
        for (int m = 0; m < (M); m++) {                                                            \
            acc[m][0] = _mm512_fmadd_ps(xb[m], w0, acc[m][0]);                                     \
            acc[m][1] = _mm512_fmadd_ps(xb[m], w1, acc[m][1]);                                     \
            acc[m][2] = _mm512_fmadd_ps(xb[m], w2, acc[m][2]);                                     \
        }                                                                                          \
    } while (0)

/* One thread's share: ordered (its contiguous half) or row runs (its half
 * of every row). Returns a sum so that nothing is optimized away. */
AVX512 __attribute__((always_inline)) static inline float share(int t, const int M,
                                                                const int ordered) {
    __m512 acc[8][3], xb[8];
    for (int m = 0; m < M; m++) {
        xb[m] = _mm512_set1_ps(1.0f + 0.001f * (float)m);
        acc[m][0] = acc[m][1] = acc[m][2] = _mm512_setzero_ps();
    }
    if (ordered) {
        const int64_t n = (int64_t)K * N, a = n * t / 2 / PANEL * PANEL,
                      b = n * (t + 1) / 2 / PANEL * PANEL;
        for (int64_t i = a; i < b; i += PANEL)
            PIECE(M, W + i);
    } else {
        const int64_t np = N / PANEL, c0 = np * t / 2 * PANEL, c1 = np * (t + 1) / 2 * PANEL;
        for (int64_t k = 0; k < K; k++)
            for (int64_t c = c0; c < c1; c += PANEL)
                PIECE(M, W + k * N + c);
    }
    __m512 s = _mm512_setzero_ps();
    for (int m = 0; m < M; m++)
        s = _mm512_add_ps(s, _mm512_add_ps(acc[m][0], _mm512_add_ps(acc[m][1], acc[m][2])));
    return _mm512_reduce_add_ps(s);
}

#define SHARE_FN(M, ordered)                                                                       \
    AVX512 static void share_##M##_##ordered(void) {                                               \
        float tot = 0.0f;                                                                          \
        _Pragma("omp parallel num_threads(2) reduction(+ : tot)") tot +=                           \
            share(omp_get_thread_num(), M, ordered);                                               \
        sink = tot;                                                                                \
    }
SHARE_FN(1, 1)
SHARE_FN(4, 1)
SHARE_FN(8, 1)
SHARE_FN(1, 0)
SHARE_FN(4, 0)
SHARE_FN(8, 0)

static void fail(void) {
    fprintf(stderr, "attn_gemv_patterns: %s\n", attn_last_error());
    exit(1);
}

static void attn_rowmajor(int M) {
    attn_view xv = attn_view_2d(X, M, K), wv = attn_view_2d(W, K, N), yv = attn_view_2d(Y, M, N);
    if (attn_linear(&xv, &wv, NULL, &yv, 2) != ATTN_OK) fail();
}

static void attn_packed(int M) {
    const int64_t panels = (N + ATTN_PANEL - 1) / ATTN_PANEL;
    attn_view xv = attn_view_2d(X, M, K), wv = attn_view_3d(WP, panels, K, ATTN_PANEL),
              yv = attn_view_2d(Y, M, N);
    if (attn_linear_packed(&xv, &wv, NULL, &yv, 2) != ATTN_OK) fail();
}

int main(int argc, char **argv) {
    int rounds = 25;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--columns") == 0 && i + 1 < argc &&
                 atoll(argv[i + 1]) >= 2 * PANEL)
            N = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: attn_gemv_patterns [--rounds R] [--columns N (>= 96)]\n");
            return 2;
        }
    }
    if (rounds > MAXR) rounds = MAXR;
    if (!__builtin_cpu_supports("avx512f")) {
        printf("# attn_gemv_patterns: this CPU has no AVX-512; nothing measured\n");
        return 0;
    }
    N = N / PANEL * PANEL; /* whole 48-float pieces for the ordered and row-run loops */
    W = bench_rand((int64_t)K * N, 1, 0.02f), X = bench_rand(8 * K, 2, 1.0f);
    Y = bench_rand(8 * N, 3, 1.0f);
    const int64_t panels = (N + ATTN_PANEL - 1) / ATTN_PANEL;
    WP = bench_rand(panels * K * ATTN_PANEL, 4, 0.0f);
    attn_view wv = attn_view_2d(W, K, N), wpv = attn_view_3d(WP, panels, K, ATTN_PANEL);
    if (attn_weight_pack(&wv, &wpv) != ATTN_OK) fail();
    static const int Ms[3] = {1, 4, 8};
    static const char *names[4] = {"ordered", "row runs", "attn_linear", "attn_linear_packed"};
    static double ratio[4][3][MAXR];
    uint64_t acc = 0;
    for (int r = 0; r < rounds; r++)
        for (int mi = 0; mi < 3; mi++)
            for (int v = 0; v < 4; v++) {
                const int M = Ms[mi];
                double t0 = bench_now();
                acc ^= bench_stream(W, (int64_t)K * N, 2);
                const double t1 = bench_now();
                if (v == 0)
                    M == 1 ? share_1_1() : M == 4 ? share_4_1() : share_8_1();
                else if (v == 1)
                    M == 1 ? share_1_0() : M == 4 ? share_4_0() : share_8_0();
                else if (v == 2)
                    attn_rowmajor(M);
                else
                    attn_packed(M);
                ratio[v][mi][r] = (t1 - t0) / (bench_now() - t1);
            }
    printf("# attn_gemv_patterns: W (%d, %lld), 2 threads, %d rounds, %s (stream xor %llx)\n\n", K,
           (long long)N, rounds, attn_build_info(), (unsigned long long)(acc & 0xff));
    printf(
        "| stream / call (median of paired rounds) | M = 1 | M = 4 | M = 8 |\n|---|---|---|---|\n");
    for (int v = 0; v < 4; v++) {
        printf("| %s |", names[v]);
        for (int mi = 0; mi < 3; mi++) {
            printf(" %.2f |", bench_median(ratio[v][mi], rounds));
        }
        printf("\n");
    }
    free(W), free(WP), free(X), free(Y);
    return 0;
}
#else
int main(void) {
    printf("# attn_gemv_patterns: needs x86-64 and OpenMP; nothing measured\n");
    return 0;
}
#endif
