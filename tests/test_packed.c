/* test_packed.c - packed weights (attn_weight_pack, attn_linear_packed,
 * kernels/panel.h) against the reference loops, every ISA the machine runs:
 *   - the packed layout: Wp[p, i, c] = W[i, 48 p + c], zero past out, from
 *     a W with any strides (transposed, padded);
 *   - each panel kernel bit for bit equal to ref/gemv_ref.c with its
 *     multiply-add on the unpacked W, M = 1..8, awkward K and column counts,
 *     strided x and bias; within 1e-5 of a double-precision sum;
 *   - attn_linear_packed: any row count (1..8, 9, 17, 40), 1-D x, a y with
 *     a column stride, the same bits for 1, 2, 3 and 7 threads, equal to
 *     attn_linear on the unpacked W for <= 8 rows;
 *   - errors name the argument and the shape expected; nothing is written. */
#include "internal.h"
#include "kernels/gemv.h"
#include "kernels/kernels.h"
#include "kernels/panel.h"
#include "testutil.h"

static const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};

static int64_t panels_of(int64_t out) {
    return (out + ATTN_PANEL - 1) / ATTN_PANEL;
}

/* W (K, N) in a buffer with row stride ldw (or transposed: column-major). */
static float *pack(const float *w, int64_t K, int64_t N, int64_t ws0, int64_t ws1) {
    float *wp = tu_rand(panels_of(N) * K * ATTN_PANEL, 7.0f, 8.0f); /* garbage to overwrite */
    attn_view W = {(float *)w, 2, {K, N}, {ws0, ws1}};
    attn_view Wp = attn_view_3d(wp, panels_of(N), K, ATTN_PANEL);
    CHECK_OK(attn_weight_pack(&W, &Wp));
    return wp;
}

static void layout(void) {
    const int64_t K = 5, N = 101, ld = 110;
    float *w = tu_rand(N * ld, -1.0f, 1.0f);
    for (int tr = 0; tr < 2; tr++) {
        float *wp = tr ? pack(w, K, N, 1, ld) : pack(w, K, N, ld, 1);
        int ok = 1;
        for (int64_t p = 0; p < panels_of(N); p++)
            for (int64_t i = 0; i < K; i++)
                for (int64_t c = 0; c < ATTN_PANEL; c++) {
                    const int64_t o = p * ATTN_PANEL + c;
                    const float want = o < N ? (tr ? w[o * ld + i] : w[i * ld + o]) : 0.0f;
                    if (wp[(p * K + i) * ATTN_PANEL + c] != want) ok = 0;
                }
        CHECK(ok, "attn_weight_pack (%s W): Wp[p, i, c] != W[i, 48 p + c] (or 0 past out)",
              tr ? "transposed" : "padded");
        free(wp);
    }
    free(w);
}

/* One panel kernel case against the reference and a double sum. */
static void kernel(attn_isa isa, int M, int64_t K, int n, int xmode, int bmode) {
    const attn__kernels *kr = attn__kernels_for(isa);
    const int64_t xn = (int64_t)M * K;
    float *xbuf = tu_rand(xn, -1.0f, 1.0f);
    const float *x = xbuf;
    int64_t xs0 = K, xs1 = 1;
    if (xmode == 1) xs0 = 1, xs1 = M;                    /* transposed */
    if (xmode == 2) xs0 = 0, xs1 = 1;                    /* one row broadcast */
    if (xmode == 3) xs0 = K, xs1 = -1, x = xbuf + K - 1; /* reversed */
    float *w = tu_rand(K * n, -1.0f, 1.0f), *wp = pack(w, K, n, n, 1);
    float *bbuf = tu_rand(3 * n, -1.0f, 1.0f);
    const float *b = bmode ? bbuf : NULL;
    const int64_t bs = bmode == 2 ? 3 : 1, ldy = n + 3;
    float *y = tu_rand(M * ldy, 5.0f, 6.0f), *yr = tu_copy(y, M * ldy);
    attn__panel_for(isa)(y, ldy, x, xs0, xs1, wp, K, b, bs, M, n);
    attn__gemv_ref(yr, ldy, x, xs0, xs1, w, n, b, bs, M, K, n, kr->madd);
    int same = 1, close = 1;
    for (int m = 0; m < M; m++)
        for (int64_t o = 0; o < ldy; o++) {
            const float got = y[m * ldy + o];
            if (memcmp(&got, &yr[m * ldy + o], sizeof got) != 0) same = 0;
            if (o >= n) continue;
            double acc = b ? (double)b[o * bs] : 0.0, mag = fabs(acc);
            for (int64_t i = 0; i < K; i++) {
                const double p = (double)x[m * xs0 + i * xs1] * (double)w[i * n + o];
                acc += p, mag += fabs(p);
            }
            if (fabs((double)got - acc) > 1e-5 * mag + 1e-30) close = 0;
        }
    CHECK(same, "%s M=%d K=%lld n=%d xmode=%d bias=%d: panel kernel differs from the reference",
          attn_isa_name(isa), M, (long long)K, n, xmode, bmode);
    CHECK(close, "%s M=%d K=%lld n=%d: off the double-precision sum", attn_isa_name(isa), M,
          (long long)K, n);
    free(xbuf), free(w), free(wp), free(bbuf), free(y), free(yr);
}

/* The public call: rows of any count, threads, against the reference and
 * against attn_linear (<= 8 rows). ycs: y's column stride. */
static void linear(attn_isa isa, int64_t R, int64_t K, int64_t N, int64_t ycs) {
    const attn__kernels *kr = attn__kernels_for(isa);
    float *x = tu_rand(R * K, -1.0f, 1.0f), *w = tu_rand(K * N, -1.0f, 1.0f),
          *b = tu_rand(N, -1.0f, 1.0f), *ref = tu_zeros(R * N), *wp = pack(w, K, N, N, 1);
    attn__gemv_ref(ref, N, x, K, 1, w, N, b, 1, (int)R, K, N, kr->madd);
    attn_view xv = attn_view_2d(x, R, K), bv = attn_view_1d(b, N),
              Wp = attn_view_3d(wp, panels_of(N), K, ATTN_PANEL);
    const int threads[4] = {1, 2, 3, 7};
    for (int t = 0; t < 4; t++) {
        float *y = tu_rand(R * N * ycs, 9.0f, 10.0f);
        attn_view yv = {y, 2, {R, N}, {N * ycs, ycs}};
        CHECK_OK(attn_linear_packed(&xv, &Wp, &bv, &yv, threads[t]));
        int same = 1, kept = 1;
        for (int64_t r = 0; r < R; r++)
            for (int64_t o = 0; o < N * ycs; o++) {
                const float got = y[r * N * ycs + o];
                if (o % ycs) {
                    if (got < 9.0f) kept = 0;
                } else if (memcmp(&got, &ref[r * N + o / ycs], sizeof got) != 0)
                    same = 0;
            }
        CHECK(same, "%s rows=%lld K=%lld N=%lld ycs=%lld threads=%d: differs from the reference",
              attn_isa_name(isa), (long long)R, (long long)K, (long long)N, (long long)ycs,
              threads[t]);
        CHECK(kept, "%s rows=%lld N=%lld ycs=%lld: wrote between y's columns", attn_isa_name(isa),
              (long long)R, (long long)N, (long long)ycs);
        free(y);
    }
    if (R <= ATTN_GEMV_MAX_ROWS) {
        float *y1 = tu_zeros(R * N), *y2 = tu_zeros(R * N);
        attn_view W = attn_view_2d(w, K, N), v1 = attn_view_2d(y1, R, N),
                  v2 = attn_view_2d(y2, R, N);
        CHECK_OK(attn_linear(&xv, &W, &bv, &v1, 2));
        CHECK_OK(attn_linear_packed(&xv, &Wp, &bv, &v2, 2));
        CHECK(memcmp(y1, y2, (size_t)(R * N) * sizeof(float)) == 0,
              "%s rows=%lld: attn_linear_packed differs from attn_linear", attn_isa_name(isa),
              (long long)R);
        free(y1), free(y2);
    }
    free(x), free(w), free(b), free(ref), free(wp);
}

/* A 1-D x (one row) and no bias. */
static void one_row(void) {
    const int64_t K = 70, N = 97;
    float *x = tu_rand(K, -1.0f, 1.0f), *w = tu_rand(K * N, -1.0f, 1.0f), *y = tu_zeros(N),
          *ref = tu_zeros(N), *wp = pack(w, K, N, N, 1);
    attn_view xv = attn_view_1d(x, K), W = attn_view_2d(w, K, N), yv = attn_view_1d(y, N),
              rv = attn_view_1d(ref, N), Wp = attn_view_3d(wp, panels_of(N), K, ATTN_PANEL);
    CHECK_OK(attn_linear_packed(&xv, &Wp, NULL, &yv, 0));
    CHECK_OK(attn_linear(&xv, &W, NULL, &rv, 0));
    CHECK(memcmp(y, ref, (size_t)N * sizeof(float)) == 0,
          "1-D x: attn_linear_packed differs from attn_linear");
    free(x), free(w), free(y), free(ref), free(wp);
}

static void errors(void) {
    const int64_t K = 8, N = 50; /* two panels */
    float *x = tu_rand(2 * K, -1.0f, 1.0f), *w = tu_rand(K * N, -1.0f, 1.0f),
          *wp = tu_zeros(2 * K * ATTN_PANEL), *y = tu_rand(2 * N, 3.0f, 4.0f),
          *b = tu_rand(N, -1.0f, 1.0f);
    float *y0 = tu_copy(y, 2 * N);
    attn_view xv = attn_view_2d(x, 2, K), W = attn_view_2d(w, K, N), yv = attn_view_2d(y, 2, N),
              Wp = attn_view_3d(wp, 2, K, ATTN_PANEL), bv = attn_view_1d(b, N);
    attn_view bad = attn_view_3d(wp, 1, K, ATTN_PANEL);
    CHECK_FAIL(attn_weight_pack(&W, &bad), ATTN_ERR_SHAPE,
               "Wp is (1, 8, 48) but must be (2, 8, 48)");
    CHECK_FAIL(attn_linear_packed(&xv, &bad, NULL, &yv, 1), ATTN_ERR_SHAPE,
               "out=50 from y.shape[1]");
    attn_view wrong_in = attn_view_3d(wp, 2, K - 1, ATTN_PANEL);
    CHECK_FAIL(attn_linear_packed(&xv, &wrong_in, NULL, &yv, 1), ATTN_ERR_SHAPE,
               "in=8 from x.shape[1]");
    attn_view strided = Wp;
    strided.stride[0] += 1;
    CHECK_FAIL(attn_linear_packed(&xv, &strided, NULL, &yv, 1), ATTN_ERR_STRIDE,
               "Wp must be contiguous");
    CHECK_FAIL(attn_weight_pack(&W, &strided), ATTN_ERR_STRIDE, "Wp must be contiguous");
    attn_view b3 = attn_view_1d(b, N - 1);
    CHECK_FAIL(attn_linear_packed(&xv, &Wp, &b3, &yv, 1), ATTN_ERR_SHAPE, "bias.shape[0]=49");
    attn_view x3 = attn_view_3d(x, 1, 2, K), y3 = attn_view_3d(y, 1, 2, N);
    CHECK_FAIL(attn_linear_packed(&x3, &Wp, NULL, &y3, 1), ATTN_ERR_SHAPE, "x.ndim=3");
    attn_view y1 = attn_view_2d(y, 1, N);
    CHECK_FAIL(attn_linear_packed(&xv, &Wp, NULL, &y1, 1), ATTN_ERR_SHAPE, "y.shape[0]=1");
    CHECK_FAIL(attn_linear_packed(NULL, &Wp, NULL, &yv, 1), ATTN_ERR_NULL, "x");
    attn_view over = attn_view_2d(x, 2, N); /* y on top of x */
    CHECK_FAIL(attn_linear_packed(&xv, &Wp, NULL, &over, 1), ATTN_ERR_STRIDE, "y");
    attn_view onw = attn_view_3d(w, 2, K, ATTN_PANEL); /* Wp on top of W */
    CHECK_FAIL(attn_weight_pack(&W, &onw), ATTN_ERR_STRIDE, "Wp");
    CHECK(memcmp(y, y0, (size_t)(2 * N) * sizeof(float)) == 0, "a failed call wrote y");
    (void)bv;
    free(x), free(w), free(wp), free(y), free(y0), free(b);
}

int main(void) {
    const int quick = getenv("ATTN_TEST_QUICK") != NULL;
    const int64_t Ks[] = {1, 2, 7, 8, 9, 61, 64, 65, 257};
    const int ns[] = {1, 5, 15, 16, 17, 31, 32, 33, 47, 48};
    layout();
    errors();
    for (int s = 0; s < 3; s++) {
        if (!attn_isa_supported(isas[s])) {
            printf("test_packed: %s not supported here, not tested\n", attn_isa_name(isas[s]));
            continue;
        }
        CHECK_OK(attn_set_isa(isas[s]));
        for (int M = 1; M <= ATTN_GEMV_MAX_ROWS; M++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
                for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                    if (quick && (ki + ni + (size_t)M) % 3) continue;
                    kernel(isas[s], M, Ks[ki], ns[ni], (int)((ki + ni) % 4),
                           (int)((ki + 2 * ni + (size_t)M) % 3));
                }
        linear(isas[s], 1, 300, 517, 1);
        linear(isas[s], 5, 64, 4099, 1);
        linear(isas[s], 8, 3, 49, 2);
        linear(isas[s], 9, 33, 96, 1);
        linear(isas[s], 17, 129, 145, 3);
        linear(isas[s], 40, 16, 200, 1);
        one_row();
    }
    CHECK_OK(attn_set_isa(ATTN_ISA_AUTO));
    return tu_summary("test_packed");
}
