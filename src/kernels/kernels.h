/* kernels/kernels.h - the SIMD micro-kernels of the flash path, one table per ISA.
 *
 * Layouts (all float, row r = a query row of the tile, c = a key of the block):
 *   qt  (d, ldr)     Q^T of the tile: qt[e*ldr + r]; rows nr..ldr-1 are zero
 *   st  (nk, ldr)    scores, then probabilities, KEY-MAJOR: st[c*ldr + r]
 *   k   (nk, d)      key rows: k[c*ks + e] (last dimension contiguous)
 *   v   (nk, dv)     value rows: v[c*vs + f] (last dimension contiguous)
 *   o   (nr, ldo)    output accumulator, row-major: o[r*ldo + f]
 * ldr is a multiple of ATTN_LANES (16) and at most ATTN_TILE_ROWS; kernels
 * that take ldr compute all ldr lanes, so row tails need no special case.
 *
 * Determinism: every kernel computes each element with the same sequence of
 * IEEE operations whatever nk, nr, ldr or the position in a register tile:
 *   score  s[c][r] = madd chain over e = 0..d-1 ascending, starting from +0
 *   pv     o[r][f] = o[r][f] * alpha[r], then madd(p[c][r], v[c][f], .) for
 *                    c = 0..nk-1 ascending
 * (madd: the table's multiply-add, fused or not, see the madd slot)
 *   sums   l[r] = l[r] * alpha[r], then + p[c][r] for c ascending
 * so a row's bits never depend on the tile it is computed in. Results are
 * per ISA: the generic, AVX2 and AVX-512 exponentials may differ in the last
 * bit (they agree with exp within 2 ulp). */
#ifndef ATTN_KERNELS_H
#define ATTN_KERNELS_H

#include "attn.h"

#include <stdint.h>

#define ATTN_LANES     16  /* rows are padded to a multiple of this */
#define ATTN_TILE_ROWS 64  /* query rows per tile, at most */
#define ATTN_KEY_BLOCK 64  /* keys per block: one online-softmax step */
#define ATTN_KEY_CHUNK 512 /* keys per chunk: the unit split across threads in decode */

/* What the scale step applies to a block's raw scores, per visible element,
 * in design.md's order (the mask, if any, is added afterwards by the caller):
 *   x = st[c][r] * scale
 *   x = madd(x, 0, x)                      a non-finite scaled score becomes NaN
 *   x = softcap * tanh(x * inv_softcap)    if softcap > 0 (see attn__tanhf_generic)
 *   x = x - slope[r] * |dist0[r] - c|      if slope (madd's rounding: fused or
 *   x = madd(x, 0, x)                        not); then non-finite -> NaN again
 * dist0[r] is dist(i, j0) of the row and the block's first key as a float, so
 * |dist0[r] - c| is exact while |dist| < 2^24 and rounded once beyond. */
typedef struct attn__score_mod {
    float scale;
    float softcap, inv_softcap; /* softcap 0: off */
    const float *slope;         /* (ldr) ALiBi slope of each row, or NULL: off */
    const float *dist0;         /* (ldr) dist(row, key c = 0) (with slope) */
} attn__score_mod;

typedef struct attn__kernels {
    const char *name;

    /* Raw scores of a tile, key-major, for c < nk and r < nr (lanes nr..ldr-1
     * may be left unspecified):
     *   st[c*ldr + r] = sum_e qt[e*ldr + r] * k[c*ks + e]   // "er,ce->cr" */
    void (*score)(float *st, const float *qt, int64_t ldr, const float *k, int64_t ks, int64_t nk,
                  int64_t nr, int64_t d);

    /* Scale, modify, hide, take the block maximum, for c < nk, r < ldr:
     *   st[c][r] = lo[r] <= c < hi[r] ? mod(st[c][r]) : -inf   (attn__score_mod)
     *   bmax[r]  = max_c st[c][r]   (-inf if nothing is visible)
     * 0 <= lo[r], hi[r] <= nk: the keys of the block that row r may see;
     * lo NULL: 0 for every row (no window: a visible prefix). */
    void (*scale_max)(float *st, int64_t ldr, int64_t nk, const attn__score_mod *mod,
                      const int32_t *lo, const int32_t *hi, float *bmax);

    /* One online-softmax step, for r < ldr:
     *   mn = max(m[r], bmax[r]);  ms = mn == -inf ? 0 : mn
     *   alpha[r] = exp(m[r] - ms)
     *   st[c][r] = exp(st[c][r] - ms)                 (-inf -> exactly 0)
     *   l[r] = l[r] * alpha[r] + st[0][r] + st[1][r] + ...   (c ascending)
     *   m[r] = mn */
    void (*softmax)(float *st, int64_t ldr, int64_t nk, const float *bmax, float *m, float *l,
                    float *alpha);

    /* Output update, for r < nr, f < dv:
     *   o[r][f] = o[r][f] * alpha[r] + sum_c p[c*ldr + r] * v[c*vs + f]   // "cr,cf->rf" */
    void (*pv)(float *o, int64_t ldo, const float *alpha, const float *p, int64_t ldr,
               const float *v, int64_t vs, int64_t nk, int64_t nr, int64_t dv);

    /* Merge of two partial accumulators, for r < nr, f < dv:
     *   ot[r][f] = madd(oc[r][f], b[r], ot[r][f] * a[r]) */
    void (*merge)(float *ot, const float *oc, int64_t ldo, const float *a, const float *b,
                  int64_t nr, int64_t dv);

    /* y[i] = exp(x[i]) for i < n: within 2 ulp on [-87.3, 0]; 0 below
     * -87.336 and for -inf; NaN stays NaN; inputs above 88.37 saturate.
     * y may equal x. */
    void (*exp)(float *y, const float *x, int64_t n);

    /* The multiply-add every kernel of this table performs, as a scalar, for
     * code outside the kernels that must match them bit for bit: fused
     * (one rounding) for AVX2 and AVX-512; a * b, then + c, for generic C,
     * which cannot count on an FMA instruction (fmaf would then be a libm
     * call per element and nothing would vectorise). */
    float (*madd)(float a, float b, float c);
} attn__kernels;

/* The table for an ISA the CPU supports (AUTO: the selected one). */
const attn__kernels *attn__kernels_for(attn_isa isa);

/* The tables of each ISA; the ISA ones exist only on x86-64. */
extern const attn__kernels attn__kernels_generic;
#if defined(__x86_64__)
extern const attn__kernels attn__kernels_avx2;
extern const attn__kernels attn__kernels_avx512;
#endif

/* The scalar exponential of the generic kernels (same algorithm as the
 * vector ones), for tests. */
float attn__expf_generic(float x);

/* tanh as the generic kernels compute it for the softcap: the rational
 * function of impl.h (ATTN_TANH_*), x P(x^2) / Q(x^2); the AVX2 and AVX-512
 * kernels evaluate the same polynomials with fused multiply-adds (so their
 * bits may differ in the last place). Absolute error <= 5 x 2^-24 on every ISA,
 * which after the multiplication by softcap is comparable to rounding the
 * score itself at magnitude softcap. NaN stays NaN; |y| >= 9 gives +-1. */
float attn__tanhf_generic(float y);

#endif /* ATTN_KERNELS_H */
