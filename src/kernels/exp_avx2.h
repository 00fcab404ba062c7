/* kernels/exp_avx2.h - the vector exponential for AVX2 + FMA, inline.
 * Same algorithm and operations as attn__expf_generic (impl.h constants);
 * 2^n is built from its exponent bits. */
#ifndef ATTN_EXP_AVX2_H
#define ATTN_EXP_AVX2_H

#include "kernels/impl.h"

#include <immintrin.h>
#include <math.h>

__attribute__((target("avx2,fma"), always_inline)) static inline __m256 attn__exp256(__m256 x) {
    const __m256 under = _mm256_cmp_ps(x, _mm256_set1_ps(ATTN_EXP_LO), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(ATTN_EXP_HI), x); /* NaN stays NaN */
    /* Lanes below LO are zeroed at the end; clamped first so that no step
     * meets a subnormal (2^n is built from garbage bits for n < -126). */
    x = _mm256_max_ps(_mm256_set1_ps(ATTN_EXP_LO), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(ATTN_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-ATTN_EXP_C1), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-ATTN_EXP_C2), r);
    __m256 p = _mm256_set1_ps(ATTN_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ATTN_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ATTN_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ATTN_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ATTN_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ATTN_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    /* 2^n for n in -126..127; garbage for hidden lanes (x < LO), zeroed below */
    const __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    return _mm256_blendv_ps(y, _mm256_setzero_ps(), under);
}

#endif /* ATTN_EXP_AVX2_H */
