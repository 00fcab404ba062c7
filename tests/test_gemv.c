/* test_gemv.c - the few-row product kernels (kernels/gemv.h) and their
 * driver against the reference loops, every ISA the machine runs:
 *   - each kernel bit for bit equal to ref/gemv_ref.c with its multiply-add,
 *     on awkward shapes (M = 1..8, K = 1 and primes, N = 1, primes, 16k +- 1),
 *     strided x (transposed, stride 0 broadcast, negative), padded w and y,
 *     with and without a strided bias, column ranges starting anywhere;
 *   - the same within 1e-5 relative of a double-precision sum (the
 *     reference itself checked against code nobody here wrote: plain double);
 *   - the driver: the same bits for 1, 2, 3 and 7 threads;
 *   - attn_linear with M <= 8 rows routes here: equal to the reference. */
#include "internal.h"
#include "kernels/gemv.h"
#include "kernels/kernels.h"
#include "testutil.h"

static const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};

/* One case: kernel vs reference bits, vs double within tolerance. */
static void one(attn_isa isa, int M, int64_t K, int64_t n, int xmode, int64_t wpad, int64_t ypad,
                int bmode) {
    const attn__kernels *kr = attn__kernels_for(isa);
    attn__gemv_fn kern = attn__gemv_for(isa);
    const int64_t ldw = n + wpad, ldy = n + ypad;
    /* x layouts: 0 row-major, 1 transposed (xs1 = M), 2 row broadcast
     * (xs0 = 0), 3 negative column stride. */
    const int64_t xn = (int64_t)M * K;
    float *xbuf = tu_rand(xn, -1.0f, 1.0f);
    const float *x = xbuf;
    int64_t xs0 = K, xs1 = 1;
    if (xmode == 1) xs0 = 1, xs1 = M;
    if (xmode == 2) xs0 = 0, xs1 = 1;
    if (xmode == 3) xs0 = K, xs1 = -1, x = xbuf + K - 1;
    float *w = tu_rand(K * ldw, -1.0f, 1.0f);
    float *bbuf = tu_rand(3 * n, -1.0f, 1.0f);
    const float *b = bmode ? bbuf : NULL;
    const int64_t bs = bmode == 2 ? 3 : 1;
    float *y = tu_rand((int64_t)M * ldy, 5.0f, 6.0f), *yr = tu_copy(y, (int64_t)M * ldy);
    kern(y, ldy, x, xs0, xs1, w, ldw, b, bs, M, K, n);
    attn__gemv_ref(yr, ldy, x, xs0, xs1, w, ldw, b, bs, M, K, n, kr->madd);
    int same = 1, close = 1, pad_kept = 1;
    for (int m = 0; m < M; m++) {
        for (int64_t o = 0; o < n; o++) {
            const float got = y[m * ldy + o];
            if (memcmp(&got, &yr[m * ldy + o], sizeof got) != 0) same = 0;
            double acc = b ? (double)b[o * bs] : 0.0, mag = fabs(acc);
            for (int64_t i = 0; i < K; i++) {
                const double p = (double)x[m * xs0 + i * xs1] * (double)w[i * ldw + o];
                acc += p, mag += fabs(p);
            }
            if (fabs((double)got - acc) > 1e-5 * mag + 1e-30) close = 0;
        }
        for (int64_t o = n; o < ldy; o++)
            if (y[m * ldy + o] != yr[m * ldy + o]) pad_kept = 0;
    }
    CHECK(same, "%s M=%d K=%lld n=%lld xmode=%d bias=%d: kernel differs from the reference",
          attn_isa_name(isa), M, (long long)K, (long long)n, xmode, bmode);
    CHECK(close, "%s M=%d K=%lld n=%lld: off the double-precision sum", attn_isa_name(isa), M,
          (long long)K, (long long)n);
    CHECK(pad_kept, "%s M=%d n=%lld: wrote past column n", attn_isa_name(isa), M, (long long)n);
    free(xbuf), free(w), free(bbuf), free(y), free(yr);
}

/* The driver: C = A @ B + bias through attn__gemv, the same bits for any
 * thread count and equal to the reference. */
static void driver(attn_isa isa, int M, int64_t K, int64_t N) {
    const attn__kernels *kr = attn__kernels_for(isa);
    float *a = tu_rand((int64_t)M * K, -1.0f, 1.0f), *w = tu_rand(K * N, -1.0f, 1.0f),
          *bias = tu_rand(N, -1.0f, 1.0f), *ref = tu_zeros((int64_t)M * N);
    attn_view A = attn_view_2d(a, M, K), B = attn_view_2d(w, K, N), bv = attn_view_1d(bias, N);
    attn__gemv_ref(ref, N, a, K, 1, w, N, bias, 1, M, K, N, kr->madd);
    const int threads[4] = {1, 2, 3, 7};
    for (int t = 0; t < 4; t++) {
        float *c = tu_zeros((int64_t)M * N);
        attn_view C = attn_view_2d(c, M, N);
        attn__gemv(attn__gemv_for(isa), &A, &B, &bv, &C, threads[t]);
        CHECK(memcmp(c, ref, (size_t)(M * N) * sizeof(float)) == 0,
              "%s M=%d K=%lld N=%lld threads=%d: driver differs from the reference",
              attn_isa_name(isa), M, (long long)K, (long long)N, threads[t]);
        free(c);
    }
    free(a), free(w), free(bias), free(ref);
}

/* attn_linear with few rows: the public entry point reaches the kernel
 * (x rank 3, rows flattened) and gives the reference's bits. */
static void linear(attn_isa isa) {
    const attn__kernels *kr = attn__kernels_for(isa);
    const int64_t P = 2, R = 3, K = 300, N = 517;
    float *x = tu_rand(P * R * K, -1.0f, 1.0f), *w = tu_rand(K * N, -1.0f, 1.0f),
          *b = tu_rand(N, -1.0f, 1.0f), *y = tu_zeros(P * R * N), *ref = tu_zeros(P * R * N);
    attn_view xv = attn_view_3d(x, P, R, K), wv = attn_view_2d(w, K, N), bv = attn_view_1d(b, N),
              yv = attn_view_3d(y, P, R, N);
    CHECK_OK(attn_linear(&xv, &wv, &bv, &yv, 2));
    attn__gemv_ref(ref, N, x, K, 1, w, N, b, 1, (int)(P * R), K, N, kr->madd);
    CHECK(memcmp(y, ref, (size_t)(P * R * N) * sizeof(float)) == 0,
          "%s: attn_linear (2, 3, %lld) differs from the GEMV reference", attn_isa_name(isa),
          (long long)K);
    free(x), free(w), free(b), free(y), free(ref);
}

int main(void) {
    const int quick = getenv("ATTN_TEST_QUICK") != NULL;
    const int64_t Ks[] = {1, 2, 7, 61, 256, 257, 600};
    const int64_t Ns[] = {1, 5, 15, 16, 17, 31, 33, 64, 127, 129, 257, 1031};
    for (int s = 0; s < 3; s++) {
        if (!attn_isa_supported(isas[s])) {
            printf("test_gemv: %s not supported here, not tested\n", attn_isa_name(isas[s]));
            continue;
        }
        CHECK_OK(attn_set_isa(isas[s]));
        for (int M = 1; M <= ATTN_GEMV_MAX_ROWS; M++)
            for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
                for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
                    if (quick && (ki + ni + (size_t)M) % 3) continue;
                    const int64_t K = Ks[ki], n = Ns[ni];
                    const int xmode = (int)((ki + ni) % 4), bmode = (int)((ki + 2 * ni + M) % 3);
                    one(isas[s], M, K, n, xmode, (int64_t)(ni % 3) * 7, (int64_t)(ki % 2) * 5,
                        bmode);
                }
        /* more columns than one AVX-512 tile block (4096): blocks, then a tail */
        one(isas[s], 4, 33, 2 * 4096 + 45, 1, 7, 5, 1);
        one(isas[s], 8, 17, 4096 + 3, 2, 0, 0, 2);
        driver(isas[s], 1, 513, 1000);
        driver(isas[s], 5, 64, 4099);
        driver(isas[s], 8, 3, 129);
        linear(isas[s]);
    }
    CHECK_OK(attn_set_isa(ATTN_ISA_AUTO));
    return tu_summary("test_gemv");
}
