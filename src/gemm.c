/* gemm.c - the projections' matrix product, C = A @ B (+ bias).
 *   C[m, n] = sum_k A[m, k] B[k, n] + bias[n]      // einsum "mk,kn->mn"
 * Few rows (M <= ATTN_GEMV_MAX_ROWS, decoding) and B with unit column
 * stride: the GEMV kernels of kernels/gemv.h, bound by reading B once.
 * With BLAS: CBLAS sgemm whenever each operand has a unit stride in one
 * dimension (A or B transposed by strides is fine), split by attn over its
 * own OpenMP threads, each calling a single-threaded sgemm on its block (see
 * "Threads" in include/attn.h). Otherwise, and without BLAS: a plain loop,
 * rows in parallel, the inner loop along rows of B and C.
 * Nothing is allocated, so this cannot fail half-way through an output. */
#include "internal.h"
#include "kernels/gemv.h"

#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

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

/* At most this many threads call sgemm at once from one attn call: OpenBLAS
 * keeps a fixed number of buffers for concurrent callers. */
#define ATTN_GEMM_MAX_SPLIT 32

/* Split GEMMs over attn's threads, OpenBLAS single-threaded in each: with
 * attn's private copy (made single-threaded here, every call: a program
 * linking attn's static library may share that copy), or with the OpenMP
 * build (single-threaded by itself inside a parallel region). Otherwise
 * the system's OpenBLAS runs the whole GEMM on its own threads. */
static int blas_split(int threads) {
#if defined(ATTN_BLAS_PRIVATE)
    (void)threads;
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
    return 1;
#else
    if (openblas_get_parallel() == 2) return 1;
    if (openblas_get_num_threads() != threads) openblas_set_num_threads(threads);
    return 0;
#endif
}

/* C[m0:m1, n0:n1] += A[m0:m1, :] @ B[:, n0:n1] by one single-threaded sgemm. */
static void blas_block(const attn_view *A, int ta, int64_t lda, const attn_view *B, int tb,
                       int64_t ldb, attn_view *C, int64_t ldc, int64_t m0, int64_t m1, int64_t n0,
                       int64_t n1) {
    const int64_t K = A->shape[1];
    if (m1 <= m0 || n1 <= n0) return;
    const float *a = A->data + m0 * A->stride[0];
    const float *b = B->data + n0 * B->stride[1];
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)(m1 - m0), (int)(n1 - n0), (int)K, 1.0f, a, (int)lda, b, (int)ldb, 1.0f,
                C->data + m0 * C->stride[0] + n0, (int)ldc);
}
#endif

void attn__gemm(const attn_view *A, const attn_view *B, const attn_view *bias, attn_view *C,
                int threads) {
    const int64_t M = A->shape[0], K = A->shape[1], N = B->shape[1];
    (void)threads; /* unused when built without BLAS and OpenMP */
    if (M <= ATTN_GEMV_MAX_ROWS && (B->stride[1] == 1 || N == 1)) {
        attn__gemv(attn__gemv_for(ATTN_ISA_AUTO), A, B, bias, C, threads);
        return;
    }
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++)
            C->data[m * C->stride[0] + n] = bias ? bias->data[n * bias->stride[0]] : 0.0f;

#ifdef ATTN_HAVE_BLAS
    int ta = 0, tb = 0;
    int64_t lda = 0, ldb = 0, ldc = M == 1 ? N : C->stride[0];
    if (blas_form(A, &ta, &lda) && blas_form(B, &tb, &ldb) && M <= INT32_MAX && N <= INT32_MAX &&
        K <= INT32_MAX && ldc >= N && ldc <= INT32_MAX) {
        if (!blas_split(threads)) {
            blas_block(A, ta, lda, B, tb, ldb, C, ldc, 0, M, 0, N);
            return;
        }
        /* Blocks of whole rows, one per thread (each packs all of B, as
         * OpenBLAS's own threads would share it: measured as fast, see
         * docs/threads.md), or of columns when there are too few rows for
         * 64 per thread; rounded to multiples of 16 so every block keeps
         * full SIMD tiles. */
        int nt = threads > ATTN_GEMM_MAX_SPLIT ? ATTN_GEMM_MAX_SPLIT : threads;
        const int by_rows = M >= 64 * (int64_t)nt || M >= N;
        const int64_t len = by_rows ? M : N, units = (len + 15) / 16;
        if (nt > units) nt = (int)units;
#pragma omp parallel num_threads(nt)
        {
#ifdef _OPENMP
            const int t = omp_get_thread_num(), T = omp_get_num_threads();
#else
            const int t = 0, T = 1;
#endif
            int64_t u0 = units * t / T * 16, u1 = units * (t + 1) / T * 16;
            if (u1 > len) u1 = len;
            if (by_rows)
                blas_block(A, ta, lda, B, tb, ldb, C, ldc, u0, u1, 0, N);
            else
                blas_block(A, ta, lda, B, tb, ldb, C, ldc, 0, M, u0, u1);
        }
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
