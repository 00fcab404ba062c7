/* kernels/score_generic.c - score tile in portable C.
 *   st[c*ldr + r] = sum_e qt[e*ldr + r] * k[c*ks + e]     // "er,ce->cr"
 * Each score is one multiply-add chain over e ascending from +0, as in every
 * ISA; here multiply, then add (attn__madd_generic), which vectorises. */
#include "kernels/impl.h"

void attn__score_generic(float *st, const float *qt, int64_t ldr, const float *k, int64_t ks,
                         int64_t nk, int64_t nr, int64_t d) {
    (void)nr; /* every lane is computed */
    for (int64_t c = 0; c < nk; c++) {
        const float *kc = k + c * ks; /* seek to k[c, :] */
        float *sc = st + c * ldr;     /* seek to st[c, :] */
        for (int64_t r = 0; r < ldr; r++)
            sc[r] = 0.0f;
        for (int64_t e = 0; e < d; e++) {
            const float ke = kc[e];
            const float *qe = qt + e * ldr;
            for (int64_t r = 0; r < ldr; r++)
                sc[r] = qe[r] * ke + sc[r];
        }
    }
}
