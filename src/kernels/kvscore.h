/* kernels/kvscore.h - kernels that read a paged KV cache's storage: scores
 * over keys stored transposed in 16-key tiles, and rows converted to float32.
 *
 * Tile layout (one 16-key tile of one kv head, element type T = float,
 * float16 or bfloat16 bits):
 *   kt  (d, 16)   kt[e*16 + c] = key c of the tile, component e
 * A 64-key engine block is up to 4 such tiles, possibly from different
 * cache blocks: tile t covers keys 16t..16t+15 of the block.
 *
 * Determinism: the score kernels compute, for every (c, r), the same chain
 * as the kernel table of the same ISA (kernels.h): madd over e ascending
 * from +0 with the key's exact float32 value, so scores over a cache equal
 * scores over float32 copies of its keys bit for bit. */
#ifndef ATTN_KERNELS_KVSCORE_H
#define ATTN_KERNELS_KVSCORE_H

#include "attn.h"

#include <stdint.h>

enum { ATTN_KV_TILE = 16 };

/* Scores of keys 0..nk-1 (nk <= 64) of an engine block, key-major:
 *   st[c*ldr + r] = sum_e qt[e*ldr + r] * kt[c/16][e*16 + c%16]   // "er,ec->cr"
 * for c < nk and r < nr; nr <= max_rows of the table. Lanes of a tile past
 * nk may hold anything (NaN included): they are never used. */
typedef void (*attn__kvscore_fn)(float *st, const float *qt, int64_t ldr, const void *const *kt,
                                 int64_t nk, int64_t nr, int64_t d);

/* dst[i] = float32 value of src[i], i < n (exact). */
typedef void (*attn__kvconvert_fn)(float *dst, const void *src, int64_t n);

/* The output update of kernels.h's pv with the values read from storage
 * and widened on the fly (exact), value rows of stride vs elements:
 *   o[r][f] = o[r][f] * alpha[r] + sum_c p[c*ldr + r] * V[c*vs + f]   // "cr,cf->rf"
 * for r < nr (<= pv_max_rows), f < dv: per element the same operations as
 * the table's pv (one multiply by alpha, then a madd chain over c). May
 * read up to 32 bytes past a row (the pool is padded). */
typedef void (*attn__kvpv_fn)(float *o, int64_t ldo, const float *alpha, const float *p,
                              int64_t ldr, const void *v, int64_t vs, int64_t nk, int64_t nr,
                              int64_t dv);

typedef struct attn__kvkernels {
    const char *name;
    int64_t max_rows;              /* score handles nr up to this many rows */
    attn__kvscore_fn score[3];     /* by attn_kv_dtype */
    attn__kvconvert_fn convert[3]; /* by attn_kv_dtype */
    /* Scores of any number of rows (prefill) over float32 tiles (d, 16),
     * rows across the lanes, the same chains; NULL: the caller transposes
     * the keys to rows and calls kernels.h's score. */
    attn__kvscore_fn score_rows;
    int64_t pv_max_rows; /* pv handles nr up to this many rows */
    attn__kvpv_fn pv[3]; /* by attn_kv_dtype; NULL: convert, then kernels.h's pv */
} attn__kvkernels;

/* The table of an ISA the CPU supports (AUTO: the selected one); it pairs
 * with attn__kernels_for of the same ISA. */
const attn__kvkernels *attn__kvkernels_for(attn_isa isa);

extern const attn__kvkernels attn__kvkernels_generic;
#if defined(__x86_64__)
extern const attn__kvkernels attn__kvkernels_avx2;
extern const attn__kvkernels attn__kvkernels_avx512;
#endif

#endif /* ATTN_KERNELS_KVSCORE_H */
