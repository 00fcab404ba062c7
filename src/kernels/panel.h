/* kernels/panel.h - products with a packed weight (attn_linear_packed):
 *   y[m, o] = b[o] + sum_i x[m, i] w[i, o]      // einsum "mi,io->mo"
 * with w stored as panels of ATTN_PANEL columns, each (K, ATTN_PANEL)
 * contiguous (attn_weight_pack): a kernel walks one panel from its first
 * byte to its last, M rows of x at a time, its sums in registers, so W is
 * read in memory order, the order a core's prefetcher follows best
 * (docs/threads.md). One kernel per ISA (panel_generic.c, panel_avx2.c,
 * panel_avx512.c); the reference is attn__gemv_ref on the unpacked W.
 *
 * Layouts: x[m, i] = x[m*xs0 + i*xs1], wp[i, c] = wp[i*ATTN_PANEL + c] (one
 * panel, columns past the weight's last are zero), b[c] = b[c*bs] (NULL: no
 * bias), y[m, c] = y[m*ldy + c]; columns c < n <= ATTN_PANEL are written.
 *
 * Determinism: the rule of kernels/gemv.h (the bias or +0, then the ISA's
 * multiply-add over i ascending), so attn_linear_packed gives the bits of
 * attn_linear's few-row path on the same W, for any M and thread count. */
#ifndef ATTN_KERNELS_PANEL_H
#define ATTN_KERNELS_PANEL_H

#include "attn.h"

#include <stdint.h>

/* Rows m < M (1..ATTN_GEMV_MAX_ROWS) of one panel, all K. */
typedef void (*attn__panel_fn)(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,
                               const float *wp, int64_t K, const float *b, int64_t bs, int M,
                               int n);

#define ATTN__PANEL_DECL(isa)                                                                      \
    void attn__panel_##isa(float *y, int64_t ldy, const float *x, int64_t xs0, int64_t xs1,        \
                           const float *wp, int64_t K, const float *b, int64_t bs, int M, int n)
ATTN__PANEL_DECL(generic);
#if defined(__x86_64__)
ATTN__PANEL_DECL(avx2);
ATTN__PANEL_DECL(avx512);
#endif

/* Where every kernel's sums start: b48[c] = b[c * bs] for the n columns of
 * the panel, +0 past them and without a bias. */
static inline void attn__panel_bias(float b48[ATTN_PANEL], const float *b, int64_t bs, int n) {
    for (int c = 0; c < ATTN_PANEL; c++)
        b48[c] = b && c < n ? b[c * bs] : 0.0f;
}

/* The kernel of an ISA (AUTO: the one in use). */
attn__panel_fn attn__panel_for(attn_isa isa);

#endif /* ATTN_KERNELS_PANEL_H */
