/* kernels/exp_avx512.h - the vector exponential for AVX-512 F, inline.
 * Same algorithm and operations as attn__expf_generic (impl.h constants):
 * n = round(x log2e), r = x - n C1 - n C2, exp(r) = 1 + r + r^2 P(r), times 2^n. */
#ifndef ATTN_EXP_AVX512_H
#define ATTN_EXP_AVX512_H

#include "kernels/impl.h"

#include <immintrin.h>
#include <math.h>

__attribute__((target("avx512f"), always_inline)) static inline __m512 attn__exp512(__m512 x) {
    const __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(ATTN_EXP_LO), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_set1_ps(ATTN_EXP_HI), x); /* NaN stays NaN */
    /* Lanes below LO are zeroed at the end; clamped first so that no step
     * underflows: a subnormal intermediate costs ~100x on AMD Zen 4, and far
     * ALiBi keys (scores of -2000) made the whole call 18% slower (now 4%). */
    x = _mm512_max_ps(_mm512_set1_ps(ATTN_EXP_LO), x);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(ATTN_EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-ATTN_EXP_C1), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-ATTN_EXP_C2), r);
    __m512 p = _mm512_set1_ps(ATTN_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ATTN_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ATTN_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ATTN_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ATTN_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ATTN_EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    const __m512 y = _mm512_scalef_ps(p, n); /* p * 2^n, exact scaling */
    return _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
}

#endif /* ATTN_EXP_AVX512_H */
