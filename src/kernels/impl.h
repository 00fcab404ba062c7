/* kernels/impl.h - the per-ISA kernel functions that kernels.c puts in tables.
 * Each is documented at its slot in kernels.h. */
#ifndef ATTN_KERNELS_IMPL_H
#define ATTN_KERNELS_IMPL_H

#include "kernels/kernels.h"

/* The exponential's constants, shared by every ISA (Cephes' expf):
 * x = n ln2 + r with n = round(x log2e), ln2 = C1 + C2 split so n*C1 is exact,
 * exp(r) = 1 + r + r^2 P(r) on |r| <= ln2/2, then scaled by 2^n. */
#define ATTN_EXP_LO    (-87.33654f) /* below: 0 (exp would be subnormal) */
#define ATTN_EXP_HI    88.37626f    /* above: saturate, so 2^n stays finite */
#define ATTN_EXP_LOG2E 1.44269504088896341f
#define ATTN_EXP_C1    0.693359375f
#define ATTN_EXP_C2    (-2.12194440e-4f)
#define ATTN_EXP_P0    1.9875691500e-4f
#define ATTN_EXP_P1    1.3981999507e-3f
#define ATTN_EXP_P2    8.3334519073e-3f
#define ATTN_EXP_P3    4.1665795894e-2f
#define ATTN_EXP_P4    1.6666665459e-1f
#define ATTN_EXP_P5    5.0000001201e-1f

/* tanh for the softcap, every ISA: a rational approximation fitted here
 * (linearised least squares, then reweighted, on Chebyshev nodes of [0, 9])
 *   tanh(x) ~ x P(x^2) / Q(x^2),  x clamped to [-9, 9] (tanh(9) rounds to 1)
 * with Horner's rule by multiply-adds, one division. Odd, so -0 stays -0;
 * NaN stays NaN.
 * Absolute error <= 5 x 2^-24 (test_kernels measures it per ISA). */
#define ATTN_TANH_CLAMP 9.0f
#define ATTN_TANH_P0    1.000000000e+00f
#define ATTN_TANH_P1    1.308087558e-01f
#define ATTN_TANH_P2    3.100516973e-03f
#define ATTN_TANH_P3    1.111996608e-05f
#define ATTN_TANH_P4    -2.009539024e-08f
#define ATTN_TANH_P5    5.220393215e-11f
#define ATTN_TANH_P6    -8.352987627e-14f
#define ATTN_TANH_Q0    1.000000000e+00f
#define ATTN_TANH_Q1    4.641419947e-01f
#define ATTN_TANH_Q2    2.448131517e-02f
#define ATTN_TANH_Q3    2.541233844e-04f

/* The address of p[row * stride + col], for prefetching only. Computed in
 * unsigned integers: a prefetch past the data (even a wrapped address, with
 * the huge stride a size-1 dimension may carry) is then no undefined
 * behaviour, and a prefetch never faults. */
static inline const char *attn__prefetch_addr(const float *p, int64_t row, int64_t stride,
                                              int64_t col) {
    return (const char *)((uintptr_t)p +
                          ((uint64_t)row * (uint64_t)stride + (uint64_t)col) * sizeof(float));
}

#define ATTN_KERNEL_DECLS(isa)                                                                     \
    void attn__score_##isa(float *st, const float *qt, int64_t ldr, const float *k, int64_t ks,    \
                           int64_t nk, int64_t nr, int64_t d);                                     \
    void attn__scale_max_##isa(float *st, int64_t ldr, int64_t nk, const attn__score_mod *mod,     \
                               const int32_t *lo, const int32_t *hi, float *bmax);                 \
    void attn__softmax_##isa(float *st, int64_t ldr, int64_t nk, const float *bmax, float *m,      \
                             float *l, float *alpha);                                              \
    void attn__pv_##isa(float *o, int64_t ldo, const float *alpha, const float *p, int64_t ldr,    \
                        const float *v, int64_t vs, int64_t nk, int64_t nr, int64_t dv);           \
    void attn__merge_##isa(float *ot, const float *oc, int64_t ldo, const float *a,                \
                           const float *b, int64_t nr, int64_t dv);                                \
    void attn__exp_##isa(float *y, const float *x, int64_t n);                                     \
    float attn__madd_##isa(float a, float b, float c);

ATTN_KERNEL_DECLS(generic)
#if defined(__x86_64__)
ATTN_KERNEL_DECLS(avx2)
ATTN_KERNEL_DECLS(avx512)
#endif

#endif /* ATTN_KERNELS_IMPL_H */
