/* kernels/pv_generic.c - output update and partial merge in portable C.
 *   o[r][f] = o[r][f] * alpha[r] + sum_c p[c][r] v[c][f]     // "cr,cf->rf"
 * The sum is a multiply-add chain over c ascending, as in every ISA; here
 * multiply, then add (attn__madd_generic), which vectorises. */
#include "kernels/impl.h"

void attn__pv_generic(float *o, int64_t ldo, const float *alpha, const float *p, int64_t ldr,
                      const float *v, int64_t vs, int64_t nk, int64_t nr, int64_t dv) {
    for (int64_t r = 0; r < nr; r++) {
        float *orow = o + r * ldo; /* seek to o[r, :] */
        const float a = alpha[r];
        for (int64_t f = 0; f < dv; f++)
            orow[f] = orow[f] * a;
        for (int64_t c = 0; c < nk; c++) {
            const float pc = p[c * ldr + r];
            const float *vc = v + c * vs; /* seek to v[c, :] */
            for (int64_t f = 0; f < dv; f++)
                orow[f] = pc * vc[f] + orow[f];
        }
    }
}

void attn__merge_generic(float *ot, const float *oc, int64_t ldo, const float *a, const float *b,
                         int64_t nr, int64_t dv) {
    for (int64_t r = 0; r < nr; r++)
        for (int64_t f = 0; f < dv; f++)
            ot[r * ldo + f] = oc[r * ldo + f] * b[r] + ot[r * ldo + f] * a[r];
}

float attn__madd_generic(float a, float b, float c) {
    return a * b + c; /* two roundings: -ffp-contract=off keeps them apart */
}
