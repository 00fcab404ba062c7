/* kernels/gemv_avx2.c - few-row products, AVX2 + FMA (kernels/gemv.h):
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // "mi,io->mo"
 * Two loop orders, both reading w row by row in long contiguous runs (short
 * strided pieces of w starve the memory system: on a Zen 3 core, register
 * tiles walking 8-column strips down w ran at half the rate of a stream):
 *   M <= 4 (run_rows): R rows of w at a time over a column block (CB_FLOATS
 *     / M columns, so y stays in L2), each 8-column vector's M partial
 *     sums loaded from y, updated by R rows, stored back; each row is
 *     prefetched PF_AHEAD floats ahead.
 *   M >= 5 (run_lanes): one vector holds the M rows of one column, so each
 *     w element costs one broadcast and one fma whatever M (run_rows loads
 *     and stores M partial sums per vector of w, too many for 16 registers);
 *     the partial sums of LANE_CB columns wait in a packed block on the
 *     stack while LANE_R rows of w stream through, x[:, i] for those rows in
 *     registers.
 * Masked loads for the last columns. Per element: the bias (or +0), then an
 * fma chain over i ascending, as gemv_generic.c. (Rates measured with
 * bench/gemv_bench.c, docs/threads.md.) */
#include "kernels/gemv.h"
#include "kernels/impl.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

enum {
    PF_AHEAD = 128,    /* floats: run_rows prefetches each row 512 bytes ahead */
    CB_FLOATS = 65536, /* run_rows: floats of y per column block (256 KiB, in L2) */
    LANE_CB = 2048,    /* run_lanes: columns per packed block (64 KiB, in L2) */
    LANE_R = 6,        /* run_lanes: rows of w per pass over the block */
    LANE_JU = 8,       /* run_lanes: columns (independent fma chains) per step */
};

/* Rows i0..i0+R-1 over columns [c0, c1), w read left to right (as
 * gemv_avx512.c's run_rows), each row prefetched PF_AHEAD floats ahead. */
AVX2 __attribute__((always_inline)) static inline void
rows(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w, int64_t ldw,
     int64_t i0, int64_t c0, int64_t c1, const int M, const int R) {
    __m256 xb[8][8];
    for (int m = 0; m < M; m++)
        for (int r = 0; r < R; r++)
            xb[m][r] = _mm256_broadcast_ss(x + m * xs0 + (i0 + r) * xs1);
    const float *wi = w + i0 * ldw; /* seek to w[i0, 0] */
    int64_t c = c0;
    for (; c + 8 <= c1; c += 8) {
        __m256 acc[8];
        for (int m = 0; m < M; m++)
            acc[m] = _mm256_loadu_ps(y + m * ldy + c);
        for (int r = 0; r < R; r++) {
            const __m256 wv = _mm256_loadu_ps(wi + r * ldw + c);
            if (c % 16 == 0)
                _mm_prefetch(attn__prefetch_addr(w, i0 + r, ldw, c + PF_AHEAD), _MM_HINT_T0);
            for (int m = 0; m < M; m++)
                acc[m] = _mm256_fmadd_ps(xb[m][r], wv, acc[m]);
        }
        for (int m = 0; m < M; m++)
            _mm256_storeu_ps(y + m * ldy + c, acc[m]);
    }
    if (c < c1) {
        const __m256i k = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(c1 - c)),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 acc[8];
        for (int m = 0; m < M; m++)
            acc[m] = _mm256_maskload_ps(y + m * ldy + c, k);
        for (int r = 0; r < R; r++) {
            const __m256 wv = _mm256_maskload_ps(wi + r * ldw + c, k);
            for (int m = 0; m < M; m++)
                acc[m] = _mm256_fmadd_ps(xb[m][r], wv, acc[m]);
        }
        for (int m = 0; m < M; m++)
            _mm256_maskstore_ps(y + m * ldy + c, k, acc[m]);
    }
}

AVX2 __attribute__((always_inline)) static inline void
run_rows(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w,
         int64_t ldw, int64_t K, int64_t n, const int M, const int R) {
    const int64_t cb = CB_FLOATS / M / 16 * 16;
    for (int64_t c0 = 0; c0 < n; c0 += cb) {
        const int64_t c1 = c0 + cb < n ? c0 + cb : n;
        int64_t i = 0;
        for (; i + R <= K; i += R)
            rows(y, ldy, x, xs0, xs1, w, ldw, i, c0, c1, M, R);
        for (; i < K; i++)
            rows(y, ldy, x, xs0, xs1, w, ldw, i, c0, c1, M, 1);
    }
}

/* Columns [j0, j0 + JU) of the block: JU independent fma chains (one per
 * column), each R long. */
AVX2 __attribute__((always_inline)) static inline void lanes_cols(float (*pk)[8], const __m256 *xv,
                                                                  const float *wi, int64_t ldw,
                                                                  int64_t j0, const int R,
                                                                  const int JU) {
    __m256 acc[8];
    for (int u = 0; u < JU; u++)
        acc[u] = _mm256_load_ps(pk[j0 + u]);
    for (int r = 0; r < R; r++)
        for (int u = 0; u < JU; u++)
            acc[u] = _mm256_fmadd_ps(xv[r], _mm256_broadcast_ss(wi + r * ldw + j0 + u), acc[u]);
    for (int u = 0; u < JU; u++)
        _mm256_store_ps(pk[j0 + u], acc[u]);
}

AVX2 __attribute__((always_inline)) static inline void lanes_rows(float (*pk)[8], const __m256 *xv,
                                                                  const float *w, int64_t ldw,
                                                                  int64_t i0, int64_t c0,
                                                                  int64_t nb, const int R) {
    const float *wi = w + i0 * ldw + c0; /* seek to w[i0, c0] */
    int64_t j = 0;
    for (; j + LANE_JU <= nb; j += LANE_JU) {
        if (j % 16 == 0)
            for (int r = 0; r < R; r++)
                _mm_prefetch(attn__prefetch_addr(w, i0 + R + r, ldw, c0 + j), _MM_HINT_T0);
        lanes_cols(pk, xv, wi, ldw, j, R, LANE_JU);
    }
    for (; j < nb; j++)
        lanes_cols(pk, xv, wi, ldw, j, R, 1);
}

AVX2 static void run_lanes(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                           const float *w, int64_t ldw, int64_t K, int64_t n, const int M) {
    float pk[LANE_CB][8] __attribute__((aligned(32)));
    for (int64_t c0 = 0; c0 < n; c0 += LANE_CB) {
        const int64_t nb = n - c0 < LANE_CB ? n - c0 : LANE_CB;
        for (int64_t j = 0; j < nb; j++)
            for (int m = 0; m < 8; m++)
                pk[j][m] = m < M ? y[m * ldy + c0 + j] : 0.0f;
        int64_t i = 0;
        __m256 xv[LANE_R];
        for (; i + LANE_R <= K; i += LANE_R) {
            for (int r = 0; r < LANE_R; r++) {
                float col[8] = {0};
                for (int m = 0; m < M; m++)
                    col[m] = x[m * xs0 + (i + r) * xs1];
                xv[r] = _mm256_loadu_ps(col);
            }
            lanes_rows(pk, xv, w, ldw, i, c0, nb, LANE_R);
        }
        for (; i < K; i++) {
            float col[8] = {0};
            for (int m = 0; m < M; m++)
                col[m] = x[m * xs0 + i * xs1];
            xv[0] = _mm256_loadu_ps(col);
            lanes_rows(pk, xv, w, ldw, i, c0, nb, 1);
        }
        for (int64_t j = 0; j < nb; j++)
            for (int m = 0; m < M; m++)
                y[m * ldy + c0 + j] = pk[j][m];
    }
}

AVX2 void attn__gemv_avx2(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                          const float *w, int64_t ldw, const float *b, int64_t bs, int M, int64_t K,
                          int64_t n) {
    for (int m = 0; m < M; m++)
        for (int64_t o = 0; o < n; o++)
            y[m * ldy + o] = b ? b[o * bs] : 0.0f;
    switch (M) {
    case 1:
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 1, 8);
        break;
    case 2:
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 2, 4);
        break;
    case 3:
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 3, 6);
        break;
    case 4:
        run_rows(y, ldy, x, xs0, xs1, w, ldw, K, n, 4, 6);
        break;
    default:
        run_lanes(y, ldy, x, xs0, xs1, w, ldw, K, n, M);
        break;
    }
}
