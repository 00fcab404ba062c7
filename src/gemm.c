/* gemm.c - the projections' matrix product, C = A @ B (+ bias).
 *   C[m, n] = sum_k A[m, k] B[k, n] + bias[n]      // einsum "mk,kn->mn"
 * With BLAS: CBLAS sgemm whenever each operand has a unit stride in one
 * dimension (A or B transposed by strides is fine). Otherwise, and without
 * BLAS: a plain loop, rows in parallel, the inner loop along rows of B and C.
 * Nothing is allocated, so this cannot fail half-way through an output. */
#include "internal.h"

#ifdef ATTN_HAVE_BLAS
#include <cblas.h>
#endif

#ifdef ATTN_HAVE_BLAS
/* BLAS form of a rank-2 view: row-major with leading dimension ld, maybe
 * transposed. Returns 0 if the strides do not allow it. */
static int blas_form(const attn_view *a, int *trans, int64_t *ld) {
    int64_t rows = a->shape[0], cols = a->shape[1];
    if (a->stride[1] == 1 || cols == 1) {
        *trans = 0;
        *ld = rows == 1 ? cols : a->stride[0];
        return *ld >= cols && *ld <= INT32_MAX;
    }
    if (a->stride[0] == 1 || rows == 1) {
        *trans = 1;
        *ld = cols == 1 ? rows : a->stride[1];
        return *ld >= rows && *ld <= INT32_MAX;
    }
    return 0;
}
#endif

void attn__gemm(const attn_view *A, const attn_view *B, const attn_view *bias, attn_view *C,
                int threads) {
    const int64_t M = A->shape[0], K = A->shape[1], N = B->shape[1];
    (void)threads; /* unused when built without BLAS and OpenMP */
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++)
            C->data[m * C->stride[0] + n] = bias ? bias->data[n * bias->stride[0]] : 0.0f;

#ifdef ATTN_HAVE_BLAS
    int ta = 0, tb = 0;
    int64_t lda = 0, ldb = 0, ldc = M == 1 ? N : C->stride[0];
    if (blas_form(A, &ta, &lda) && blas_form(B, &tb, &ldb) && M <= INT32_MAX && N <= INT32_MAX &&
        K <= INT32_MAX && ldc <= INT32_MAX) {
        if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)M, (int)N, (int)K, 1.0f, A->data, (int)lda, B->data, (int)ldb, 1.0f,
                    C->data, (int)ldc);
        return;
    }
#endif
    /* Plain loop: c[m, :] += a[m, k] * b[k, :], k ascending. */
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t m = 0; m < M; m++) {
        float *c = C->data + m * C->stride[0];
        for (int64_t k = 0; k < K; k++) {
            const float a = A->data[m * A->stride[0] + k * A->stride[1]];
            const float *b = B->data + k * B->stride[0];
            for (int64_t n = 0; n < N; n++)
                c[n] += a * b[n * B->stride[1]];
        }
    }
}
