/* gemv.c - the threaded driver of the few-row products (kernels/gemv.h):
 *   C[m, n] = sum_k A[m, k] B[k, n] + bias[n]      // "mk,kn->mn", M <= 8
 * The columns are split over the threads in blocks of 64 (each thread one
 * contiguous range, so every thread streams its own part of B once). Each
 * element is computed by one thread in the kernel's fixed order: the result
 * is the same bits for any thread count. */
#include "internal.h"
#include "kernels/gemv.h"

#ifdef _OPENMP
#include <omp.h>
#endif

attn__gemv_fn attn__gemv_for(attn_isa isa) {
    if (isa == ATTN_ISA_AUTO) isa = attn_get_isa();
#if defined(__x86_64__)
    if (isa == ATTN_ISA_AVX512) return attn__gemv_avx512;
    if (isa == ATTN_ISA_AVX2) return attn__gemv_avx2;
#endif
    return attn__gemv_generic;
}

/* Below this many multiply-adds a second thread costs more than it saves. */
#define GEMV_MIN_PER_THREAD (1 << 16)

int64_t attn__gemv_threads(int threads, int64_t units, int64_t work) {
    int64_t nt = threads;
    if (nt > units) nt = units;
    if (nt > 1 && work / nt < GEMV_MIN_PER_THREAD)
        nt = work / GEMV_MIN_PER_THREAD > 1 ? work / GEMV_MIN_PER_THREAD : 1;
    return nt;
}

void attn__gemv(attn__gemv_fn kernel, const attn_view *A, const attn_view *B, const attn_view *bias,
                attn_view *C, int threads) {
    const int64_t M = A->shape[0], K = A->shape[1], N = B->shape[1];
    const int64_t ldw = K == 1 ? N : B->stride[0], ldy = M == 1 ? N : C->stride[0];
    const int64_t blocks = (N + 63) / 64;
    const int64_t nt = attn__gemv_threads(threads, blocks, M * K * N);
    const float *bd = bias ? bias->data : NULL;
    const int64_t bs = bias ? bias->stride[0] : 0;
#pragma omp parallel num_threads((int)nt) if (nt > 1)
    {
#ifdef _OPENMP
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
#else
        const int64_t t = 0, T = 1;
#endif
        const int64_t c0 = blocks * t / T * 64;
        int64_t c1 = blocks * (t + 1) / T * 64;
        if (c1 > N) c1 = N;
        if (c1 > c0)
            kernel(C->data + c0, ldy, A->data, A->stride[0], A->stride[1], B->data + c0, ldw,
                   bd ? bd + c0 * bs : NULL, bs, (int)M, K, c1 - c0);
    }
}
