/* kernels/gemv.h - products with few rows (decoding's projections), bound by
 * reading the weight once:
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // einsum "mi,io->mo", M <= 8
 * One kernel per ISA (gemv_generic.c, gemv_avx2.c, gemv_avx512.c), the plain
 * reference in ref/gemv_ref.c, the threaded driver in gemv.c.
 *
 * Layouts: x[m, i] = x[m*xs0 + i*xs1] (any strides), w[i, o] = w[i*ldw + o]
 * (unit column stride), b[o] = b[o*bs] (NULL: no bias), y[m, o] =
 * y[m*ldy + o] (unit column stride).
 *
 * Determinism: every ISA computes each element by the same sequence
 *   y[m][o] = b[o] (or +0), then y[m][o] = madd(x[m][i], w[i][o], y[m][o])
 *   for i = 0..K-1 ascending
 * (madd: the kernel table's multiply-add, fused for AVX2 and AVX-512, multiply
 * then add for generic C), whatever M, the column range or the thread count;
 * so a column's bits never depend on how the columns were split. */
#ifndef ATTN_KERNELS_GEMV_H
#define ATTN_KERNELS_GEMV_H

#include "attn.h"

#include <stdint.h>

#define ATTN_GEMV_MAX_ROWS 8

/* Columns o < n of y for rows m < M (1..ATTN_GEMV_MAX_ROWS), all K. */
typedef void (*attn__gemv_fn)(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                              const float *w, int64_t ldw, const float *b, int64_t bs, int M,
                              int64_t K, int64_t n);

void attn__gemv_generic(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                        const float *w, int64_t ldw, const float *b, int64_t bs, int M, int64_t K,
                        int64_t n);
#if defined(__x86_64__)
void attn__gemv_avx2(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                     const float *w, int64_t ldw, const float *b, int64_t bs, int M, int64_t K,
                     int64_t n);
void attn__gemv_avx512(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                       const float *w, int64_t ldw, const float *b, int64_t bs, int M, int64_t K,
                       int64_t n);
#endif

/* The reference: the plain loops of the determinism rule above, with the
 * given multiply-add (src/ref/gemv_ref.c). */
void attn__gemv_ref(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w,
                    int64_t ldw, const float *b, int64_t bs, int M, int64_t K, int64_t n,
                    float (*madd)(float, float, float));

/* The kernel of an ISA (AUTO: the one in use). */
attn__gemv_fn attn__gemv_for(attn_isa isa);

/* C (M, N) = A (M, K) @ B (K, N) [+ bias], M <= ATTN_GEMV_MAX_ROWS, B and C
 * with unit column stride: columns split over `threads` OpenMP threads in
 * blocks of 64 (src/gemv.c). Allocates nothing, cannot fail (the AVX2
 * kernel keeps up to 64 KiB of partial sums on the calling thread's stack). */
void attn__gemv(attn__gemv_fn kernel, const attn_view *A, const attn_view *B, const attn_view *bias,
                attn_view *C, int threads);

/* The threads for a few-row product of `work` multiply-adds split in
 * `units` (column blocks, panels): at most `threads` and `units`, and none
 * with fewer than 2^16 multiply-adds (src/gemv.c). */
int64_t attn__gemv_threads(int threads, int64_t units, int64_t work);

#endif /* ATTN_KERNELS_GEMV_H */
