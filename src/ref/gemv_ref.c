/* ref/gemv_ref.c - the specification of kernels/gemv.h, plain loops:
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // einsum "mi,io->mo"
 * each element a multiply-add chain over i ascending, starting from the bias
 * (or +0), with the multiply-add of the kernel it checks. */
#include "kernels/gemv.h"

void attn__gemv_ref(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1, const float *w,
                    int64_t ldw, const float *b, int64_t bs, int M, int64_t K, int64_t n,
                    float (*madd)(float, float, float)) {
    for (int m = 0; m < M; m++)
        for (int64_t o = 0; o < n; o++) {
            float acc = b ? b[o * bs] : 0.0f;
            for (int64_t i = 0; i < K; i++)
                acc = madd(x[m * xs0 + i * xs1], w[i * ldw + o], acc);
            y[m * ldy + o] = acc;
        }
}
