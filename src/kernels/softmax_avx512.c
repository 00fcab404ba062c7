/* kernels/softmax_avx512.c - scale/hide/max, the online-softmax step and
 * exp over arrays, AVX-512 F. 16 rows per vector; per element the same
 * operations as softmax_generic.c (see kernels.h). */
#include "kernels/exp_avx512.h"

#include <stdbool.h>

#define AVX512 __attribute__((target("avx512f")))

AVX512 void attn__exp_avx512(float *y, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, attn__exp512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, attn__exp512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* attn__tanhf_generic's rational function, by multiply-adds (a division
 * costs no more here than a reciprocal estimate and a Newton step). */
AVX512 static inline __m512 tanh512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(ATTN_TANH_CLAMP), x); /* NaN stays NaN */
    x = _mm512_max_ps(_mm512_set1_ps(-ATTN_TANH_CLAMP), x);
    const __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(ATTN_TANH_P6);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(ATTN_TANH_P5));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(ATTN_TANH_P4));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(ATTN_TANH_P3));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(ATTN_TANH_P2));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(ATTN_TANH_P1));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(ATTN_TANH_P0));
    __m512 q = _mm512_set1_ps(ATTN_TANH_Q3);
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(ATTN_TANH_Q2));
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(ATTN_TANH_Q1));
    q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(ATTN_TANH_Q0));
    return _mm512_div_ps(_mm512_mul_ps(x, p), q);
}

AVX512 void attn__scale_max_avx512(float *st, int64_t ldr, int64_t nk, const attn__score_mod *mod,
                                   const int32_t *lo, const int32_t *hi, float *bmax) {
    const __m512 sc = _mm512_set1_ps(mod->scale), ninf = _mm512_set1_ps(-INFINITY);
    const __m512 zero = _mm512_setzero_ps(), cap = _mm512_set1_ps(mod->softcap),
                 inv = _mm512_set1_ps(mod->inv_softcap);
    const bool capped = mod->softcap > 0.0f;
    if (!lo && !capped && !mod->slope) { /* the common case: a visible prefix, no modifier */
        for (int64_t r = 0; r < ldr; r += 16) {
            const __m512i vhi = _mm512_loadu_si512((const void *)(hi + r));
            __m512 mx = ninf;
            for (int64_t c = 0; c < nk; c++) {
                const __mmask16 seen = _mm512_cmplt_epi32_mask(_mm512_set1_epi32((int)c), vhi);
                __m512 s = _mm512_mul_ps(_mm512_load_ps(st + c * ldr + r), sc);
                s = _mm512_fmadd_ps(s, zero, s); /* +-inf -> NaN */
                s = _mm512_mask_mov_ps(ninf, seen, s);
                _mm512_store_ps(st + c * ldr + r, s);
                mx = _mm512_max_ps(s, mx);
            }
            _mm512_storeu_ps(bmax + r, mx);
        }
        return;
    }
    const __m512i zeroi = _mm512_setzero_si512();
    for (int64_t r = 0; r < ldr; r += 16) {
        const __m512i vlo = lo ? _mm512_loadu_si512((const void *)(lo + r)) : zeroi;
        const __m512i vhi = _mm512_loadu_si512((const void *)(hi + r));
        const __m512 slope = mod->slope ? _mm512_loadu_ps(mod->slope + r) : zero;
        const __m512 d0 = mod->slope ? _mm512_loadu_ps(mod->dist0 + r) : zero;
        __m512 mx = ninf;
        for (int64_t c = 0; c < nk; c++) {
            const __m512i vc = _mm512_set1_epi32((int)c);
            const __mmask16 seen =
                _mm512_cmpge_epi32_mask(vc, vlo) & _mm512_cmplt_epi32_mask(vc, vhi);
            __m512 s = _mm512_mul_ps(_mm512_load_ps(st + c * ldr + r), sc);
            s = _mm512_fmadd_ps(s, zero, s); /* +-inf -> NaN */
            if (capped) s = _mm512_mul_ps(cap, tanh512(_mm512_mul_ps(s, inv)));
            if (mod->slope) {
                const __m512 dist = _mm512_abs_ps(_mm512_sub_ps(d0, _mm512_set1_ps((float)c)));
                s = _mm512_fnmadd_ps(slope, dist, s);
                s = _mm512_fmadd_ps(s, zero, s);
            }
            s = _mm512_mask_mov_ps(ninf, seen, s);
            _mm512_store_ps(st + c * ldr + r, s);
            mx = _mm512_max_ps(s, mx);
        }
        _mm512_storeu_ps(bmax + r, mx);
    }
}

AVX512 void attn__softmax_avx512(float *st, int64_t ldr, int64_t nk, const float *bmax, float *m,
                                 float *l, float *alpha) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t r = 0; r < ldr; r += 16) {
        const __m512 mo = _mm512_loadu_ps(m + r);
        const __m512 mn = _mm512_max_ps(_mm512_loadu_ps(bmax + r), mo);
        const __m512 ms =
            _mm512_mask_mov_ps(mn, _mm512_cmp_ps_mask(mn, ninf, _CMP_EQ_OQ), _mm512_setzero_ps());
        const __m512 a = attn__exp512(_mm512_sub_ps(mo, ms));
        __m512 sum = _mm512_mul_ps(_mm512_loadu_ps(l + r), a);
        for (int64_t c = 0; c < nk; c++) {
            const __m512 p = attn__exp512(_mm512_sub_ps(_mm512_load_ps(st + c * ldr + r), ms));
            _mm512_store_ps(st + c * ldr + r, p);
            sum = _mm512_add_ps(sum, p);
        }
        _mm512_storeu_ps(l + r, sum);
        _mm512_storeu_ps(m + r, mn);
        _mm512_storeu_ps(alpha + r, a);
    }
}
