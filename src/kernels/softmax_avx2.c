/* kernels/softmax_avx2.c - scale/hide/max, the online-softmax step and exp
 * over arrays, AVX2 + FMA. 8 rows per vector; per element the same
 * operations as softmax_generic.c (see kernels.h). */
#include "kernels/exp_avx2.h"

#include <stdbool.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 void attn__exp_avx2(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, attn__exp256(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) {
        float buf[8] = {0};
        buf[0] = x[i];
        _mm256_storeu_ps(buf, attn__exp256(_mm256_loadu_ps(buf)));
        y[i] = buf[0];
    }
}

/* attn__tanhf_generic's rational function, by multiply-adds. */
AVX2 static inline __m256 tanh256(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(ATTN_TANH_CLAMP), x); /* NaN stays NaN */
    x = _mm256_max_ps(_mm256_set1_ps(-ATTN_TANH_CLAMP), x);
    const __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(ATTN_TANH_P6);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(ATTN_TANH_P5));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(ATTN_TANH_P4));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(ATTN_TANH_P3));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(ATTN_TANH_P2));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(ATTN_TANH_P1));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(ATTN_TANH_P0));
    __m256 q = _mm256_set1_ps(ATTN_TANH_Q3);
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(ATTN_TANH_Q2));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(ATTN_TANH_Q1));
    q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(ATTN_TANH_Q0));
    return _mm256_div_ps(_mm256_mul_ps(x, p), q);
}

AVX2 void attn__scale_max_avx2(float *st, int64_t ldr, int64_t nk, const attn__score_mod *mod,
                               const int32_t *lo, const int32_t *hi, float *bmax) {
    const __m256 sc = _mm256_set1_ps(mod->scale), ninf = _mm256_set1_ps(-INFINITY);
    const __m256 zero = _mm256_setzero_ps(), cap = _mm256_set1_ps(mod->softcap),
                 inv = _mm256_set1_ps(mod->inv_softcap), signbit = _mm256_set1_ps(-0.0f);
    const bool capped = mod->softcap > 0.0f;
    if (!lo && !capped && !mod->slope) { /* the common case: a visible prefix, no modifier */
        for (int64_t r = 0; r < ldr; r += 8) {
            const __m256i vhi = _mm256_loadu_si256((const __m256i *)(hi + r));
            __m256 mx = ninf;
            for (int64_t c = 0; c < nk; c++) {
                const __m256 seen =
                    _mm256_castsi256_ps(_mm256_cmpgt_epi32(vhi, _mm256_set1_epi32((int)c)));
                __m256 s = _mm256_mul_ps(_mm256_load_ps(st + c * ldr + r), sc);
                s = _mm256_fmadd_ps(s, zero, s); /* +-inf -> NaN */
                s = _mm256_blendv_ps(ninf, s, seen);
                _mm256_store_ps(st + c * ldr + r, s);
                mx = _mm256_max_ps(s, mx);
            }
            _mm256_storeu_ps(bmax + r, mx);
        }
        return;
    }
    for (int64_t r = 0; r < ldr; r += 8) {
        const __m256i vlo =
            lo ? _mm256_loadu_si256((const __m256i *)(lo + r)) : _mm256_setzero_si256();
        const __m256i vhi = _mm256_loadu_si256((const __m256i *)(hi + r));
        const __m256 slope = mod->slope ? _mm256_loadu_ps(mod->slope + r) : zero;
        const __m256 d0 = mod->slope ? _mm256_loadu_ps(mod->dist0 + r) : zero;
        __m256 mx = ninf;
        for (int64_t c = 0; c < nk; c++) {
            const __m256i vc = _mm256_set1_epi32((int)c);
            /* lo <= c < hi */
            const __m256 seen = _mm256_castsi256_ps(
                _mm256_andnot_si256(_mm256_cmpgt_epi32(vlo, vc), _mm256_cmpgt_epi32(vhi, vc)));
            __m256 s = _mm256_mul_ps(_mm256_load_ps(st + c * ldr + r), sc);
            s = _mm256_fmadd_ps(s, zero, s); /* +-inf -> NaN */
            if (capped) s = _mm256_mul_ps(cap, tanh256(_mm256_mul_ps(s, inv)));
            if (mod->slope) {
                const __m256 dist =
                    _mm256_andnot_ps(signbit, _mm256_sub_ps(d0, _mm256_set1_ps((float)c)));
                s = _mm256_fnmadd_ps(slope, dist, s);
                s = _mm256_fmadd_ps(s, zero, s);
            }
            s = _mm256_blendv_ps(ninf, s, seen);
            _mm256_store_ps(st + c * ldr + r, s);
            mx = _mm256_max_ps(s, mx);
        }
        _mm256_storeu_ps(bmax + r, mx);
    }
}

AVX2 void attn__softmax_avx2(float *st, int64_t ldr, int64_t nk, const float *bmax, float *m,
                             float *l, float *alpha) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int64_t r = 0; r < ldr; r += 8) {
        const __m256 mo = _mm256_loadu_ps(m + r);
        const __m256 mn = _mm256_max_ps(_mm256_loadu_ps(bmax + r), mo);
        const __m256 ms =
            _mm256_blendv_ps(mn, _mm256_setzero_ps(), _mm256_cmp_ps(mn, ninf, _CMP_EQ_OQ));
        const __m256 a = attn__exp256(_mm256_sub_ps(mo, ms));
        __m256 sum = _mm256_mul_ps(_mm256_loadu_ps(l + r), a);
        for (int64_t c = 0; c < nk; c++) {
            const __m256 p = attn__exp256(_mm256_sub_ps(_mm256_load_ps(st + c * ldr + r), ms));
            _mm256_store_ps(st + c * ldr + r, p);
            sum = _mm256_add_ps(sum, p);
        }
        _mm256_storeu_ps(l + r, sum);
        _mm256_storeu_ps(m + r, mn);
        _mm256_storeu_ps(alpha + r, a);
    }
}
