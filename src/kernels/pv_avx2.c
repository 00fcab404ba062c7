/* kernels/pv_avx2.c - output update and partial merge, AVX2 + FMA.
 *   o[r][f] = o[r][f] * alpha[r] + sum_c p[c*ldr + r] * v[c*vs + f]   // "cr,cf->rf"
 * Register tiles of MR rows x NF vectors of 8 output columns, the columns
 * past dv masked: 4 rows x 2 vectors in general, 1-2 rows x 4 vectors with
 * prefetching for decode (V then streams from memory). Per element: one
 * multiply by alpha, then an fma chain over c ascending (as pv_generic.c). */
#include "kernels/impl.h"

#include <math.h>

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline __m256i lanes_below(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? (n < 0 ? 0 : n) : 8)), idx);
}

AVX2 __attribute__((always_inline)) static inline void
tile(float *o, int64_t ldo, const float *alpha, const float *p, int64_t ldr, const float *v,
     int64_t vs, int64_t nk, const __m256i *mk, const int MR, const int NF, const int PF) {
    __m256 acc[4][4];
    for (int a = 0; a < MR; a++) {
        const __m256 al = _mm256_set1_ps(alpha[a]);
        for (int j = 0; j < NF; j++)
            acc[a][j] = _mm256_mul_ps(_mm256_maskload_ps(o + a * ldo + 8 * j, mk[j]), al);
    }
    for (int64_t c = 0; c < nk; c++) {
        __m256 vv[4];
        for (int j = 0; j < NF; j++)
            vv[j] = _mm256_maskload_ps(v + c * vs + 8 * j, mk[j]);
        if (PF) /* 16 keys ahead, one 64-byte line per two vectors */
            for (int j = 0; j < NF; j += 2)
                _mm_prefetch(attn__prefetch_addr(v, c + 16, vs, 8 * j), _MM_HINT_T0);
        for (int a = 0; a < MR; a++) {
            const __m256 pb = _mm256_broadcast_ss(p + c * ldr + a);
            for (int j = 0; j < NF; j++)
                acc[a][j] = _mm256_fmadd_ps(pb, vv[j], acc[a][j]);
        }
    }
    for (int a = 0; a < MR; a++)
        for (int j = 0; j < NF; j++)
            _mm256_maskstore_ps(o + a * ldo + 8 * j, mk[j], acc[a][j]);
}

AVX2 void attn__pv_avx2(float *o, int64_t ldo, const float *alpha, const float *p, int64_t ldr,
                        const float *v, int64_t vs, int64_t nk, int64_t nr, int64_t dv) {
    if (nr <= 2) {
        for (int64_t f0 = 0; f0 < dv; f0 += 32) {
            const __m256i mk[4] = {lanes_below(dv - f0), lanes_below(dv - f0 - 8),
                                   lanes_below(dv - f0 - 16), lanes_below(dv - f0 - 24)};
            if (nr == 2)
                tile(o + f0, ldo, alpha, p, ldr, v + f0, vs, nk, mk, 2, 4, 1);
            else
                tile(o + f0, ldo, alpha, p, ldr, v + f0, vs, nk, mk, 1, 4, 1);
        }
        return;
    }
    for (int64_t f0 = 0; f0 < dv; f0 += 16) {
        const __m256i mk[2] = {lanes_below(dv - f0), lanes_below(dv - f0 - 8)};
        int64_t r = 0;
        for (; r + 4 <= nr; r += 4)
            tile(o + r * ldo + f0, ldo, alpha + r, p + r, ldr, v + f0, vs, nk, mk, 4, 2, 0);
        for (; r < nr; r++)
            tile(o + r * ldo + f0, ldo, alpha + r, p + r, ldr, v + f0, vs, nk, mk, 1, 2, 0);
    }
}

AVX2 void attn__merge_avx2(float *ot, const float *oc, int64_t ldo, const float *a, const float *b,
                           int64_t nr, int64_t dv) {
    for (int64_t r = 0; r < nr; r++) {
        const __m256 va = _mm256_set1_ps(a[r]), vb = _mm256_set1_ps(b[r]);
        for (int64_t f = 0; f < dv; f += 8) {
            const __m256i m = lanes_below(dv - f);
            float *t = ot + r * ldo + f;
            const __m256 x = _mm256_mul_ps(_mm256_maskload_ps(t, m), va);
            _mm256_maskstore_ps(t, m,
                                _mm256_fmadd_ps(_mm256_maskload_ps(oc + r * ldo + f, m), vb, x));
        }
    }
}

float attn__madd_avx2(float a, float b, float c) {
    return fmaf(a, b, c); /* what _mm*_fmadd_ps does per lane */
}
