/* kernels/pv_avx512.c - output update and partial merge, AVX-512 F.
 *   o[r][f] = o[r][f] * alpha[r] + sum_c p[c*ldr + r] * v[c*vs + f]   // "cr,cf->rf"
 * Register tiles of MR rows x NF vectors of 16 output columns; per key c:
 * NF loads of v[c, :], MR broadcasts of p[c, r], MR*NF fused multiply-adds.
 * The last vector of a row is masked when dv % 16 != 0. Per element: one
 * multiply by alpha, then an fma chain over c ascending (as pv_generic.c). */
#include "kernels/impl.h"

#include <math.h>

#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f")))

AVX512 __attribute__((always_inline)) static inline void
tile(float *o, int64_t ldo, const float *alpha, const float *p, int64_t ldr, const float *v,
     int64_t vs, int64_t nk, const __mmask16 *mk, const int MR, const int NF, const int PF) {
    __m512 acc[6][8];
    for (int a = 0; a < MR; a++) {
        const __m512 al = _mm512_set1_ps(alpha[a]);
        for (int j = 0; j < NF; j++)
            acc[a][j] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[j], o + a * ldo + 16 * j), al);
    }
    for (int64_t c = 0; c < nk; c++) {
        __m512 vv[8];
        for (int j = 0; j < NF; j++) {
            vv[j] = _mm512_maskz_loadu_ps(mk[j], v + c * vs + 16 * j);
            /* few rows (decode): V streams from memory, ask 16 keys ahead */
            if (PF) _mm_prefetch(attn__prefetch_addr(v, c + 16, vs, 16 * j), _MM_HINT_T0);
        }
        for (int a = 0; a < MR; a++) {
            const __m512 pb = _mm512_set1_ps(p[c * ldr + a]);
            for (int j = 0; j < NF; j++)
                acc[a][j] = _mm512_fmadd_ps(pb, vv[j], acc[a][j]);
        }
    }
    for (int a = 0; a < MR; a++)
        for (int j = 0; j < NF; j++)
            _mm512_mask_storeu_ps(o + a * ldo + 16 * j, mk[j], acc[a][j]);
}

#define PV_ROWS(NF, MR)                                                                            \
    AVX512 static void pv_nf##NF(float *o, int64_t ldo, const float *alpha, const float *p,        \
                                 int64_t ldr, const float *v, int64_t vs, int64_t nk, int64_t nr,  \
                                 const __mmask16 *mk) {                                            \
        int64_t r = 0;                                                                             \
        for (; r + MR <= nr; r += MR)                                                              \
            tile(o + r * ldo, ldo, alpha + r, p + r, ldr, v, vs, nk, mk, MR, NF, 0);               \
        for (; r + 2 <= nr; r += 2)                                                                \
            tile(o + r * ldo, ldo, alpha + r, p + r, ldr, v, vs, nk, mk, 2, NF, 0);                \
        for (; r < nr; r++)                                                                        \
            tile(o + r * ldo, ldo, alpha + r, p + r, ldr, v, vs, nk, mk, 1, NF, 0);                \
    }
PV_ROWS(1, 6)
PV_ROWS(2, 6)
PV_ROWS(3, 6)
PV_ROWS(4, 6)

/* One or two rows (decode): up to 8 vectors (128 columns) per pass, so each
 * row of V is read once, with prefetching. */
#define PV_FEW(NF)                                                                                 \
    AVX512 static void pv_few##NF(float *o, int64_t ldo, const float *alpha, const float *p,       \
                                  int64_t ldr, const float *v, int64_t vs, int64_t nk, int64_t nr, \
                                  const __mmask16 *mk) {                                           \
        if (nr == 2)                                                                               \
            tile(o, ldo, alpha, p, ldr, v, vs, nk, mk, 2, NF, 1);                                  \
        else                                                                                       \
            tile(o, ldo, alpha, p, ldr, v, vs, nk, mk, 1, NF, 1);                                  \
    }
PV_FEW(1)
PV_FEW(2)
PV_FEW(3)
PV_FEW(4)
PV_FEW(5)
PV_FEW(6)
PV_FEW(7)
PV_FEW(8)

AVX512 void attn__pv_avx512(float *o, int64_t ldo, const float *alpha, const float *p, int64_t ldr,
                            const float *v, int64_t vs, int64_t nk, int64_t nr, int64_t dv) {
    if (nr <= 2) {
        typedef void (*few_fn)(float *, int64_t, const float *, const float *, int64_t,
                               const float *, int64_t, int64_t, int64_t, const __mmask16 *);
        static const few_fn few[9] = {NULL,    pv_few1, pv_few2, pv_few3, pv_few4,
                                      pv_few5, pv_few6, pv_few7, pv_few8};
        for (int64_t f0 = 0; f0 < dv; f0 += 128) {
            const int64_t nf = (dv - f0 + 15) / 16 < 8 ? (dv - f0 + 15) / 16 : 8;
            __mmask16 mk[8];
            for (int j = 0; j < 8; j++) {
                const int64_t left = dv - f0 - 16 * j;
                mk[j] = left >= 16 ? (__mmask16)0xFFFF
                        : left > 0 ? (__mmask16)((1u << left) - 1)
                                   : (__mmask16)0;
            }
            few[nf](o + f0, ldo, alpha, p, ldr, v + f0, vs, nk, nr, mk);
        }
        return;
    }
    /* Blocks of up to 4 vectors (64 columns) of the output row. */
    for (int64_t f0 = 0; f0 < dv; f0 += 64) {
        const int64_t nf = (dv - f0 + 15) / 16 < 4 ? (dv - f0 + 15) / 16 : 4;
        __mmask16 mk[4];
        for (int j = 0; j < 4; j++) {
            const int64_t left = dv - f0 - 16 * j;
            mk[j] = left >= 16 ? (__mmask16)0xFFFF
                    : left > 0 ? (__mmask16)((1u << left) - 1)
                               : (__mmask16)0;
        }
        float *of = o + f0;
        const float *vf = v + f0;
        switch (nf) {
        case 1:
            pv_nf1(of, ldo, alpha, p, ldr, vf, vs, nk, nr, mk);
            break;
        case 2:
            pv_nf2(of, ldo, alpha, p, ldr, vf, vs, nk, nr, mk);
            break;
        case 3:
            pv_nf3(of, ldo, alpha, p, ldr, vf, vs, nk, nr, mk);
            break;
        default:
            pv_nf4(of, ldo, alpha, p, ldr, vf, vs, nk, nr, mk);
            break;
        }
    }
}

AVX512 void attn__merge_avx512(float *ot, const float *oc, int64_t ldo, const float *a,
                               const float *b, int64_t nr, int64_t dv) {
    for (int64_t r = 0; r < nr; r++) {
        const __m512 va = _mm512_set1_ps(a[r]), vb = _mm512_set1_ps(b[r]);
        for (int64_t f = 0; f < dv; f += 16) {
            const __mmask16 m =
                dv - f >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (dv - f)) - 1);
            float *t = ot + r * ldo + f;
            const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, t), va);
            _mm512_mask_storeu_ps(
                t, m, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, oc + r * ldo + f), vb, x));
        }
    }
}

float attn__madd_avx512(float a, float b, float c) {
    return fmaf(a, b, c); /* what _mm*_fmadd_ps does per lane */
}
