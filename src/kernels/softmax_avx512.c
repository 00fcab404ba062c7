/* kernels/softmax_avx512.c - scale/hide/max, the online-softmax step and
 * exp over arrays, AVX-512 F. 16 rows per vector; per element the same
 * operations as softmax_generic.c (see kernels.h). */
#include "kernels/exp_avx512.h"

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

AVX512 void attn__scale_max_avx512(float *st, int64_t ldr, int64_t nk, float scale,
                                   const int32_t *vis, float *bmax) {
    const __m512 sc = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t r = 0; r < ldr; r += 16) {
        const __m512i vr = _mm512_loadu_si512((const void *)(vis + r));
        __m512 mx = ninf;
        for (int64_t c = 0; c < nk; c++) {
            const __mmask16 seen = _mm512_cmplt_epi32_mask(_mm512_set1_epi32((int)c), vr);
            __m512 s = _mm512_mul_ps(_mm512_load_ps(st + c * ldr + r), sc);
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
