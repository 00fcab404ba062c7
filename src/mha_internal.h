/* mha_internal.h - what src/mha.c shares with src/mha_backward.c. Internal. */
#ifndef ATTN_MHA_INTERNAL_H
#define ATTN_MHA_INTERNAL_H

#include "internal.h"

/* Every check of attn_mha (params, shapes, out a proper output disjoint
 * from the inputs). xkv is never NULL here. */
attn_status attn__mha_check(const char *fn, const attn_mha_params *p, const attn_view *xq,
                            const attn_view *xkv, const attn_view *out);

/* dst (B, N, H*HS) contiguous = x3 (B, N, Din) @ W (H, Din, HS) + bias (H, HS). */
void attn__mha_project(const attn_view *x3, const attn_view *W, const attn_view *bias, float *dst,
                       int threads);

#endif
