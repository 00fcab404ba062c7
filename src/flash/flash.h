/* flash/flash.h - the fast path of attn_sdpa: tiled online softmax.
 *
 * For each tile (batch b, kv head g, up to ATTN_TILE_ROWS query rows of the
 * query heads that read g) the keys are walked in blocks of ATTN_KEY_BLOCK
 * with a running max and sum; the output tile stays in a small per-thread
 * accumulator and the Nq x Nkv scores are never formed. Extra memory is
 * O(threads x tile), independent of Nq and Nkv (plus, in decode, the
 * partials of at most 64 MiB, see below).
 *
 * Determinism: the keys of a row are processed in chunks of ATTN_KEY_CHUNK
 * keys (multiples of the block) from j = 0, each chunk from a fresh state,
 * and the chunk partials (max, sum, unnormalised output) are folded in
 * ascending order by one merge routine. Prefill folds them on the thread
 * that owns the tile; decode (few tiles, many keys) spreads (tile, chunk)
 * pairs over the threads and folds afterwards. The kernels compute every
 * element with the same operations whatever the tile (kernels/kernels.h), so
 * a row's bits depend neither on threads, Nq, B, other rows nor the mode.
 *
 * Supported: scale, every causal rule, additive mask (broadcast), key
 * lengths, grouped-query heads, lse, the score modifiers (positions, window:
 * each row sees a key range and blocks outside every row's range are
 * skipped; softcap and ALiBi in the kernels' scale step; sinks as the
 * fold's initial state), dropout (applied to the probabilities after the
 * row sums, attn_dropout_keep's pattern), any strides (q, mask, out are
 * read or written element by element; k and v blocks are copied to
 * contiguous scratch when their last dimension is not contiguous). The
 * weights output is not: attn__sdpa_select sends it to the reference (see
 * attn__flash_applies). */
#ifndef ATTN_FLASH_H
#define ATTN_FLASH_H

#include "internal.h"

struct attn__kernels;

/* Where the keys and values of a problem come from when they are not the
 * strided views k and v (P->keys, e.g. a paged KV cache). Keys are visited
 * in the engine's own blocks [j0, j0 + nk) of kv head g of batch b, nk <=
 * ATTN_KEY_BLOCK, j0 a multiple of ATTN_KEY_BLOCK. Exactness: each score
 * must be the chain of kernel kr->score (kernels.h "Determinism") over the
 * float32 value of the key, so a problem over a key source gives the bits
 * of the same problem over float32 views of the same values. */
typedef struct attn__key_source {
    /* Raw scores st[c*ldr + r] = sum_e qt[e*ldr + r] * K[j0 + c][e] for
     * c < nk, r < nr (as kernel score); scratch holds ATTN_KEY_BLOCK * d
     * floats. */
    void (*scores)(const struct attn__key_source *src, const struct attn__kernels *kr, float *st,
                   const float *qt, int64_t ldr, int64_t b, int64_t g, int64_t j0, int64_t nk,
                   int64_t nr, int64_t d, float *scratch);
    /* The float32 values V[j0 + c][f], c < nk, as rows of stride *vs:
     * either pointing into the source or written to scratch (ATTN_KEY_BLOCK
     * * dv floats). */
    const float *(*values)(const struct attn__key_source *src, int64_t b, int64_t g, int64_t j0,
                           int64_t nk, int64_t dv, float *scratch, int64_t *vs);
    /* Optional (NULL: values, then kernel pv): the output update of kernel
     * pv over the block's values, same operations per element, for a block
     * every row sees whole. false: not done, fetch the values instead. */
    bool (*pv)(const struct attn__key_source *src, float *o, int64_t ldo, const float *alpha,
               const float *p, int64_t ldr, int64_t b, int64_t g, int64_t j0, int64_t nk,
               int64_t nr, int64_t dv);
} attn__key_source;

/* Head sizes (d, dv) above this go to the reference path: the per-thread
 * scratch holds a few (d, ATTN_TILE_ROWS) tiles. */
#define ATTN_FLASH_MAX_HEAD ((int64_t)1 << 20)

/* True when the flash path computes P: no weights output, head sizes up to
 * ATTN_FLASH_MAX_HEAD. */
bool attn__flash_applies(const attn__sdpa_problem *P);

/* Compute P with the flash algorithm and the kernels of attn_get_isa().
 * attn__flash_applies(P) must hold.
 * @return ATTN_OK, or ATTN_ERR_NOMEM (outputs untouched), or ATTN_ERR_ARG
 * if it does not apply. */
attn_status attn__sdpa_flash(const attn__sdpa_problem *P);

/* The per-row state of a resumable fold (attn_fold in attn.h, filled by
 * src/fold.c), as views over the rows (b, h, i) of P: max, sum and shift
 * (B, H, Nq), acc (B, H, Nq, dv). max is in the units of the flash scores
 * (shifted by the row's mask offset, see mask_offset), shift that offset. */
typedef struct attn__fold_io {
    attn_view max, sum, acc, shift;
    bool finish; /* write P's out and lse from the state instead of folding P's keys */
} attn__fold_io;

/* Continue the fold F over the keys of P (at global positions P->k_offset +
 * j, P->k_offset a multiple of ATTN_KEY_CHUNK): each tile starts from F's
 * rows, folds P's chunks exactly as attn__sdpa_flash does, and writes its
 * rows back to F. With F->finish, no keys are read: out and lse are written
 * from F's rows as attn__sdpa_flash writes them from its own.
 * @return ATTN_OK or ATTN_ERR_NOMEM (nothing written). */
attn_status attn__flash_fold(const attn__sdpa_problem *P, const attn__fold_io *F);

#endif /* ATTN_FLASH_H */
