/* kv/cache.c - the paged KV cache (attn.h "KV cache"): storage, append, read,
 * copy, and attention through the flash engine with the cache as its key
 * source.
 *
 * Dimension letters as in attn.h; in this file also
 *   bs   block_size (slots per block)     blk  a block id
 *   c    a slot of a block, 0..bs-1       p    a token position of a sequence
 * Pools (element type T: float, or float16/bfloat16 bits):
 *   K  (num_blocks, Hkv, bs/16, d, 16)   key c at [blk, g, c/16, e, c%16]
 *   V  (num_blocks, Hkv, bs, dv)         value c at [blk, g, c, f]
 *
 * Attention over a cache is the flash engine of attn_sdpa run per sequence,
 * with a key source (flash/flash.h) that scores each engine block straight
 * from the transposed K tiles (kernels/kvscore.h) and hands over the values
 * as float32 rows; the engine's blocks, chunks, kernels and merges are the
 * ones attn_sdpa runs, so the bits are those of attn_sdpa over float32
 * copies of the cache. */
#include "internal.h"

#include "flash/flash.h"
#include "kernels/half.h"
#include "kernels/kernels.h"
#include "kernels/kvscore.h"

#include <inttypes.h>
#include <string.h>

struct attn_kv_cache {
    int64_t nb, bs, hkv, d, dv;
    attn_kv_dtype dt;
    size_t esize;           /* bytes per element */
    unsigned char *k, *v;   /* the pools, one allocation */
    int64_t kblock, vblock; /* elements of one block in each pool */
};

/* Element offset of K[blk, g, slot c, e] and V[blk, g, slot c, f]. */
static int64_t k_at(const attn_kv_cache *c, int64_t blk, int64_t g, int64_t slot, int64_t e) {
    return ((blk * c->hkv + g) * c->bs + slot / ATTN_KV_TILE * ATTN_KV_TILE) * c->d +
           e * ATTN_KV_TILE + slot % ATTN_KV_TILE;
}
static int64_t v_at(const attn_kv_cache *c, int64_t blk, int64_t g, int64_t slot, int64_t f) {
    return ((blk * c->hkv + g) * c->bs + slot) * c->dv + f;
}

static void put(const attn_kv_cache *c, unsigned char *pool, int64_t at, float x) {
    if (c->dt == ATTN_KV_FLOAT32) {
        memcpy(pool + (size_t)at * 4, &x, 4);
        return;
    }
    const uint16_t h = c->dt == ATTN_KV_FLOAT16 ? attn__f32_to_f16(x) : attn__f32_to_bf16(x);
    memcpy(pool + (size_t)at * 2, &h, 2);
}

static float get(const attn_kv_cache *c, const unsigned char *pool, int64_t at) {
    if (c->dt == ATTN_KV_FLOAT32) {
        float x;
        memcpy(&x, pool + (size_t)at * 4, 4);
        return x;
    }
    uint16_t h;
    memcpy(&h, pool + (size_t)at * 2, 2);
    return c->dt == ATTN_KV_FLOAT16 ? attn__f16_to_f32(h) : attn__bf16_to_f32(h);
}

/* ---- create / destroy ---------------------------------------------------- */

attn_status attn_kv_create(int64_t num_blocks, int64_t block_size, int64_t num_kv_heads,
                           int64_t head_dim, int64_t value_dim, attn_kv_dtype dtype,
                           attn_kv_cache **cache) {
    const char *fn = "attn_kv_create";
    if (!cache) return attn__fail(ATTN_ERR_NULL, "%s: cache (the output handle) is NULL", fn);
    *cache = NULL;
    if (value_dim <= 0) value_dim = head_dim;
    if (num_blocks < 1)
        return attn__fail(ATTN_ERR_SHAPE, "%s: num_blocks=%" PRId64 " must be >= 1", fn,
                          num_blocks);
    if (block_size < 1 || block_size % ATTN_KV_TILE != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: block_size=%" PRId64 " must be a positive multiple of 16", fn,
                          block_size);
    if (num_kv_heads < 1)
        return attn__fail(ATTN_ERR_SHAPE, "%s: num_kv_heads=%" PRId64 " must be >= 1", fn,
                          num_kv_heads);
    if (head_dim < 1 || head_dim > ATTN_FLASH_MAX_HEAD)
        return attn__fail(ATTN_ERR_SHAPE, "%s: head_dim=%" PRId64 " must be in 1..%" PRId64, fn,
                          head_dim, (int64_t)ATTN_FLASH_MAX_HEAD);
    if (value_dim > ATTN_FLASH_MAX_HEAD)
        return attn__fail(ATTN_ERR_SHAPE, "%s: value_dim=%" PRId64 " must be in 1..%" PRId64, fn,
                          value_dim, (int64_t)ATTN_FLASH_MAX_HEAD);
    if (dtype != ATTN_KV_FLOAT32 && dtype != ATTN_KV_FLOAT16 && dtype != ATTN_KV_BFLOAT16)
        return attn__fail(ATTN_ERR_ARG, "%s: dtype=%d is not an attn_kv_dtype value", fn,
                          (int)dtype);
    const size_t esize = dtype == ATTN_KV_FLOAT32 ? 4 : 2;
    int64_t per_block, kblock, vblock, total;
    if (__builtin_mul_overflow(num_kv_heads, block_size, &per_block) ||
        __builtin_mul_overflow(per_block, head_dim, &kblock) ||
        __builtin_mul_overflow(per_block, value_dim, &vblock) ||
        __builtin_add_overflow(kblock, vblock, &total) ||
        __builtin_mul_overflow(total, num_blocks, &total) ||
        __builtin_mul_overflow(total, (int64_t)esize, &total) ||
        (uint64_t)total > (uint64_t)PTRDIFF_MAX - 64)
        return attn__fail(ATTN_ERR_OVERFLOW,
                          "%s: num_blocks=%" PRId64 " x num_kv_heads=%" PRId64
                          " x block_size=%" PRId64 " x (head_dim=%" PRId64 " + value_dim=%" PRId64
                          ") elements overflow the addressable size",
                          fn, num_blocks, num_kv_heads, block_size, head_dim, value_dim);
    attn_kv_cache *c = attn__alloc(1, sizeof *c);
    /* 64 bytes of padding: a kernel's last vector of a row may read past it */
    unsigned char *pool = c ? attn__alloc((size_t)total + 64, 1) : NULL;
    if (!c || !pool) {
        attn__free(c);
        return attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate the pool (%" PRId64 " bytes)", fn,
                          total);
    }
    memset(pool, 0, (size_t)total + 64);
    c->nb = num_blocks;
    c->bs = block_size;
    c->hkv = num_kv_heads;
    c->d = head_dim;
    c->dv = value_dim;
    c->dt = dtype;
    c->esize = esize;
    c->kblock = kblock;
    c->vblock = vblock;
    c->k = pool;
    c->v = pool + (size_t)(kblock * num_blocks) * esize;
    *cache = c;
    return ATTN_OK;
}

void attn_kv_destroy(attn_kv_cache *cache) {
    if (!cache) return;
    attn__free(cache->k);
    attn__free(cache);
}

/* ---- checks shared by the entry points ------------------------------------- */

/* Table capacity in positions: max_blocks * bs, checked. */
static attn_status capacity(const char *fn, const attn_kv_cache *c, int64_t max_blocks,
                            int64_t *cap) {
    if (max_blocks < 1)
        return attn__fail(ATTN_ERR_SHAPE, "%s: max_blocks=%" PRId64 " must be >= 1", fn,
                          max_blocks);
    if (__builtin_mul_overflow(max_blocks, c->bs, cap))
        return attn__fail(ATTN_ERR_OVERFLOW,
                          "%s: max_blocks=%" PRId64 " x block_size=%" PRId64 " overflows", fn,
                          max_blocks, c->bs);
    return ATTN_OK;
}

/* Entries t0..t1-1 of row b of a table must be block ids. row < 0: a
 * single table (named without the row index). */
static attn_status check_ids(const char *fn, const char *name, const attn_kv_cache *c,
                             const int32_t *table, int64_t row, int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++)
        if (table[t] < 0 || table[t] >= c->nb) {
            if (row < 0)
                return attn__fail(ATTN_ERR_ARG,
                                  "%s: %s[%" PRId64 "]=%" PRId32 " is not a block id (0..%" PRId64
                                  ")",
                                  fn, name, t, table[t], c->nb - 1);
            return attn__fail(ATTN_ERR_ARG,
                              "%s: %s[%" PRId64 "][%" PRId64 "]=%" PRId32
                              " is not a block id (0..%" PRId64 ")",
                              fn, name, row, t, table[t], c->nb - 1);
        }
    return ATTN_OK;
}

static attn_status check_size(const char *fn, const char *name, const attn_view *v, int dim,
                              int64_t want, const char *what) {
    if (v->shape[dim] != want)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: %s.shape[%d]=%" PRId64 " but must be %" PRId64 " (%s)", fn, name,
                          dim, v->shape[dim], want, what);
    return ATTN_OK;
}

/* ---- append ------------------------------------------------------------------ */

attn_status attn_kv_append(attn_kv_cache *cache, const int32_t *block_tables, int64_t max_blocks,
                           const int64_t *starts, const int64_t *counts, const attn_view *k,
                           const attn_view *v) {
    const char *fn = "attn_kv_append";
    attn_status s;
    if (!cache) return attn__fail(ATTN_ERR_NULL, "%s: cache is NULL", fn);
    if (!block_tables) return attn__fail(ATTN_ERR_NULL, "%s: block_tables is NULL", fn);
    if (!starts) return attn__fail(ATTN_ERR_NULL, "%s: starts is NULL", fn);
    const attn_kv_cache *c = cache;
    if ((s = attn__check_view(fn, "k", k, 4)) || (s = attn__check_view(fn, "v", v, 4)) ||
        (s = check_size(fn, "k", k, 1, c->hkv, "the cache's num_kv_heads")) ||
        (s = check_size(fn, "k", k, 3, c->d, "the cache's head_dim")) ||
        (s = check_size(fn, "v", v, 0, k->shape[0], "k.shape[0], the batch")) ||
        (s = check_size(fn, "v", v, 1, c->hkv, "the cache's num_kv_heads")) ||
        (s = check_size(fn, "v", v, 2, k->shape[2], "k.shape[2], the new tokens")) ||
        (s = check_size(fn, "v", v, 3, c->dv, "the cache's value_dim")))
        return s;
    int64_t cap = 0;
    if ((s = capacity(fn, c, max_blocks, &cap))) return s;
    const int64_t B = k->shape[0], n = k->shape[2];
    for (int64_t b = 0; b < B; b++) {
        const int64_t cnt = counts ? counts[b] : n, st = starts[b];
        if (cnt < 0 || cnt > n)
            return attn__fail(ATTN_ERR_ARG,
                              "%s: counts[%" PRId64 "]=%" PRId64 " must be in 0..n=%" PRId64, fn, b,
                              cnt, n);
        if (st < 0)
            return attn__fail(ATTN_ERR_ARG, "%s: starts[%" PRId64 "]=%" PRId64 " must be >= 0", fn,
                              b, st);
        if (st > cap - cnt)
            return attn__fail(ATTN_ERR_ARG,
                              "%s: starts[%" PRId64 "]=%" PRId64 " + %" PRId64
                              " new tokens is past the table's capacity max_blocks x "
                              "block_size=%" PRId64,
                              fn, b, st, cnt, cap);
        if (cnt > 0 && (s = check_ids(fn, "block_tables", c, block_tables + b * max_blocks, b,
                                      st / c->bs, (st + cnt - 1) / c->bs + 1)))
            return s;
    }
    /* All checked: write. */
    for (int64_t b = 0; b < B; b++) {
        const int64_t cnt = counts ? counts[b] : n;
        const int32_t *table = block_tables + b * max_blocks;
        for (int64_t t = 0; t < cnt; t++) {
            const int64_t p = starts[b] + t, blk = table[p / c->bs], slot = p % c->bs;
            for (int64_t g = 0; g < c->hkv; g++) {
                const float *kr = attn__at4(k, b, g, t, 0); /* seek to k[b, g, t, :] */
                const float *vr = attn__at4(v, b, g, t, 0); /* seek to v[b, g, t, :] */
                for (int64_t e = 0; e < c->d; e++)
                    put(c, cache->k, k_at(c, blk, g, slot, e), kr[e * k->stride[3]]);
                for (int64_t f = 0; f < c->dv; f++)
                    put(c, cache->v, v_at(c, blk, g, slot, f), vr[f * v->stride[3]]);
            }
        }
    }
    return ATTN_OK;
}

/* ---- read -------------------------------------------------------------------- */

attn_status attn_kv_read(const attn_kv_cache *cache, const int32_t *block_table, int64_t length,
                         attn_view *k, attn_view *v) {
    const char *fn = "attn_kv_read";
    attn_status s;
    if (!cache) return attn__fail(ATTN_ERR_NULL, "%s: cache is NULL", fn);
    if (!block_table) return attn__fail(ATTN_ERR_NULL, "%s: block_table is NULL", fn);
    const attn_kv_cache *c = cache;
    if (length < 1)
        return attn__fail(ATTN_ERR_SHAPE, "%s: length=%" PRId64 " must be >= 1", fn, length);
    if (k && ((s = attn__check_view(fn, "k", k, 3)) ||
              (s = check_size(fn, "k", k, 0, c->hkv, "the cache's num_kv_heads")) ||
              (s = check_size(fn, "k", k, 1, length, "length")) ||
              (s = check_size(fn, "k", k, 2, c->d, "the cache's head_dim")) ||
              (s = attn__check_output(fn, "k", k))))
        return s;
    if (v && ((s = attn__check_view(fn, "v", v, 3)) ||
              (s = check_size(fn, "v", v, 0, c->hkv, "the cache's num_kv_heads")) ||
              (s = check_size(fn, "v", v, 1, length, "length")) ||
              (s = check_size(fn, "v", v, 2, c->dv, "the cache's value_dim")) ||
              (s = attn__check_output(fn, "v", v))))
        return s;
    if (k && v && (s = attn__check_disjoint(fn, "v", v, "k", k))) return s;
    if ((s = check_ids(fn, "block_table", c, block_table, -1, 0, (length - 1) / c->bs + 1)))
        return s;
    for (int64_t g = 0; g < c->hkv; g++)
        for (int64_t p = 0; p < length; p++) {
            const int64_t blk = block_table[p / c->bs], slot = p % c->bs;
            if (k)
                for (int64_t e = 0; e < c->d; e++)
                    k->data[g * k->stride[0] + p * k->stride[1] + e * k->stride[2]] =
                        get(c, c->k, k_at(c, blk, g, slot, e));
            if (v)
                for (int64_t f = 0; f < c->dv; f++)
                    v->data[g * v->stride[0] + p * v->stride[1] + f * v->stride[2]] =
                        get(c, c->v, v_at(c, blk, g, slot, f));
        }
    return ATTN_OK;
}

/* ---- copy -------------------------------------------------------------------- */

attn_status attn_kv_copy_blocks(attn_kv_cache *cache, const int32_t *src, const int32_t *dst,
                                int64_t n) {
    const char *fn = "attn_kv_copy_blocks";
    attn_status s;
    if (!cache) return attn__fail(ATTN_ERR_NULL, "%s: cache is NULL", fn);
    if (n < 0) return attn__fail(ATTN_ERR_SHAPE, "%s: n=%" PRId64 " must be >= 0", fn, n);
    if (n == 0) return ATTN_OK;
    if (!src || !dst) return attn__fail(ATTN_ERR_NULL, "%s: src and dst must not be NULL", fn);
    if ((s = check_ids(fn, "src", cache, src, -1, 0, n)) ||
        (s = check_ids(fn, "dst", cache, dst, -1, 0, n)))
        return s;
    const size_t kb = (size_t)cache->kblock * cache->esize,
                 vb = (size_t)cache->vblock * cache->esize;
    for (int64_t i = 0; i < n; i++) {
        if (src[i] == dst[i]) continue;
        memcpy(cache->k + (size_t)dst[i] * kb, cache->k + (size_t)src[i] * kb, kb);
        memcpy(cache->v + (size_t)dst[i] * vb, cache->v + (size_t)src[i] * vb, vb);
    }
    return ATTN_OK;
}

/* ---- attend: the cache as the flash engine's key source ---------------------- */

/* Table entries of blocks no query of a sequence can see may be -1 (a
 * windowed cache that dropped them); such blocks read as zeros. */
#define NO_BLOCK (-1)

typedef struct kv_source {
    attn__key_source base;
    const attn_kv_cache *c;
    const int32_t *table; /* the sequence's block table */
    const attn__kvkernels *kk;
    const unsigned char *zero_tile; /* (d, 16) zeros, for NO_BLOCK */
    int64_t length;                 /* the sequence's length */
} kv_source;

/* Ask for the pieces of engine block [j0, j0 + ATTN_KEY_BLOCK) of kv head g
 * (keys if k, else values) to come into the cache while the current block
 * is computed: the blocks of a table lie anywhere, so the hardware's
 * prefetchers restart at each one. Only positions < length are touched
 * (their block ids were checked). */
static void prefetch_block(const kv_source *s, bool k, int64_t g, int64_t j0) {
    const attn_kv_cache *c = s->c;
    const int64_t end = j0 + ATTN_KEY_BLOCK < s->length ? j0 + ATTN_KEY_BLOCK : s->length;
    for (int64_t j = j0; j < end;) {
        const int64_t slot = j % c->bs, n = c->bs - slot < end - j ? c->bs - slot : end - j;
        const int32_t blk = s->table[j / c->bs];
        if (blk != NO_BLOCK) {
            const unsigned char *p = k ? c->k + (size_t)k_at(c, blk, g, slot, 0) * c->esize
                                       : c->v + (size_t)v_at(c, blk, g, slot, 0) * c->esize;
            /* Every line of 16-bit storage; with float32 (twice the bytes
             * per key) the first two lines of each 4 KiB page and the
             * hardware's streamers do the rest: every line there cost more
             * instructions than it saved (S4, bench_kv --cpu: float16 9.5
             * -> 8.2 ms with every line; float32 13.6 -> 16 ms). */
            const size_t bytes = (size_t)(n * (k ? c->d : c->dv)) * c->esize;
            const size_t step = c->dt == ATTN_KV_FLOAT32 ? 4096 : 64;
            for (size_t off = 0; off < bytes; off += step) {
                __builtin_prefetch(p + off, 0, 2);
                if (step > 64 && off + 64 < bytes) __builtin_prefetch(p + off + 64, 0, 2);
            }
        }
        j += n;
    }
}

static void source_scores(const attn__key_source *src, const attn__kernels *kr, float *st,
                          const float *qt, int64_t ldr, int64_t b, int64_t g, int64_t j0,
                          int64_t nk, int64_t nr, int64_t d, float *scratch) {
    (void)b; /* one sequence per problem */
    const kv_source *s = (const kv_source *)src;
    const attn_kv_cache *c = s->c;
    const void *kt[ATTN_KEY_BLOCK / ATTN_KV_TILE];
    for (int64_t t = 0; t * ATTN_KV_TILE < nk; t++) {
        const int64_t j = j0 + t * ATTN_KV_TILE; /* a tile never straddles two blocks */
        const int32_t blk = s->table[j / c->bs];
        kt[t] = blk == NO_BLOCK ? s->zero_tile
                                : c->k + (size_t)k_at(c, blk, g, j % c->bs, 0) * c->esize;
    }
    const attn__kvscore_fn score = s->kk->score[c->dt];
    if (score && nr <= s->kk->max_rows) {
        prefetch_block(s, true, g, j0 + ATTN_KEY_BLOCK);
        score(st, qt, ldr, kt, nk, nr, d);
        return;
    }
    /* Many rows (prefill). With a rows kernel: the tiles as float32
     * (converted into scratch, (ntiles, d, 16), unless stored so), scored
     * in place. Without (AVX2): the keys transposed to rows (nk, d) and the
     * engine's own score kernel. The chains are the same either way. */
    const int64_t tile = d * ATTN_KV_TILE, ntiles = (nk + ATTN_KV_TILE - 1) / ATTN_KV_TILE;
    if (s->kk->score_rows) {
        for (int64_t t = 0; t < ntiles; t++)
            if (kt[t] == s->zero_tile) {
                memset(scratch + t * tile, 0, (size_t)tile * sizeof(float));
                kt[t] = scratch + t * tile;
            } else if (c->dt != ATTN_KV_FLOAT32) {
                s->kk->convert[c->dt](scratch + t * tile, kt[t], tile);
                kt[t] = scratch + t * tile;
            }
        s->kk->score_rows(st, qt, ldr, kt, nk, nr, d);
        return;
    }
    for (int64_t t = 0; t < ntiles; t++) {
        const int64_t nc =
            nk - t * ATTN_KV_TILE < ATTN_KV_TILE ? nk - t * ATTN_KV_TILE : ATTN_KV_TILE;
        const unsigned char *tp = kt[t];
        for (int64_t e = 0; e < d; e++)
            for (int64_t cc = 0; cc < nc; cc++)
                scratch[(t * ATTN_KV_TILE + cc) * d + e] =
                    tp == s->zero_tile ? 0.0f : get(c, tp, e * ATTN_KV_TILE + cc);
    }
    kr->score(st, qt, ldr, scratch, d, nk, nr, d);
}

static const float *source_values(const attn__key_source *src, int64_t b, int64_t g, int64_t j0,
                                  int64_t nk, int64_t dv, float *scratch, int64_t *vs) {
    (void)b;
    const kv_source *s = (const kv_source *)src;
    const attn_kv_cache *c = s->c;
    *vs = dv;
    prefetch_block(s, false, g, j0 + ATTN_KEY_BLOCK);
    const int32_t first = s->table[j0 / c->bs];
    if (c->dt == ATTN_KV_FLOAT32 && first != NO_BLOCK &&
        j0 / c->bs == (j0 + nk - 1) / c->bs) /* one block: read in place */
        return (const float *)(c->v + (size_t)v_at(c, first, g, j0 % c->bs, 0) * 4);
    for (int64_t j = j0; j < j0 + nk;) {
        const int64_t slot = j % c->bs;
        const int64_t n = c->bs - slot < j0 + nk - j ? c->bs - slot : j0 + nk - j;
        const int32_t blk = s->table[j / c->bs];
        if (blk == NO_BLOCK)
            memset(scratch + (j - j0) * dv, 0, (size_t)(n * dv) * sizeof(float));
        else
            s->kk->convert[c->dt](scratch + (j - j0) * dv,
                                  c->v + (size_t)v_at(c, blk, g, slot, 0) * c->esize, n * dv);
        j += n;
    }
    return scratch;
}

/* The output update straight from float16/bfloat16 storage (kernels
 * widen as they load) for a block every row sees whole; false: let the
 * engine fetch float32 values (float32 storage, dropped blocks, many rows). */
static bool source_pv(const attn__key_source *src, float *o, int64_t ldo, const float *alpha,
                      const float *p, int64_t ldr, int64_t b, int64_t g, int64_t j0, int64_t nk,
                      int64_t nr, int64_t dv) {
    (void)b;
    static const float ones[ATTN_TILE_ROWS] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                               1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                               1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                                               1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const kv_source *s = (const kv_source *)src;
    const attn_kv_cache *c = s->c;
    const attn__kvpv_fn pv = s->kk->pv[c->dt];
    if (!pv || nr > s->kk->pv_max_rows) return false;
    for (int64_t t = j0 / c->bs; t <= (j0 + nk - 1) / c->bs; t++)
        if (s->table[t] == NO_BLOCK) return false;
    prefetch_block(s, false, g, j0 + ATTN_KEY_BLOCK);
    /* One call per cache block the engine block spans; after the first,
     * alpha = 1 (o * 1 == o exactly), so the chain is that of one call. */
    for (int64_t j = j0; j < j0 + nk;) {
        const int64_t slot = j % c->bs;
        const int64_t n = c->bs - slot < j0 + nk - j ? c->bs - slot : j0 + nk - j;
        pv(o, ldo, j == j0 ? alpha : ones, p + (j - j0) * ldr, ldr,
           c->v + (size_t)v_at(c, s->table[j / c->bs], g, slot, 0) * c->esize, dv, n, nr, dv);
        j += n;
    }
    return true;
}

/* A view of v with its first dimension at index i0 and size 1 (rank kept). */
static attn_view slice0(const attn_view *v, int64_t i0) {
    attn_view s = *v;
    s.data = v->data + i0 * v->stride[0];
    s.shape[0] = 1;
    return s;
}

static attn_status check_attend_opts(const char *fn, const attn_opts *o, int64_t B, int64_t H,
                                     int64_t Nq, int64_t nmax) {
    if (o->causal != ATTN_CAUSAL_NONE && o->causal != ATTN_CAUSAL_TOP_LEFT &&
        o->causal != ATTN_CAUSAL_BOTTOM_RIGHT)
        return attn__fail(ATTN_ERR_ARG, "%s: opts.causal=%d is not an attn_causal value", fn,
                          (int)o->causal);
    if (o->algo != ATTN_ALGO_AUTO && o->algo != ATTN_ALGO_REFERENCE && o->algo != ATTN_ALGO_FLASH)
        return attn__fail(ATTN_ERR_ARG, "%s: opts.algo=%d is not an attn_algo value", fn,
                          (int)o->algo);
    if (!isnan(o->scale) && !isfinite(o->scale))
        return attn__fail(ATTN_ERR_ARG, "%s: opts.scale=%g must be finite (or NaN for 1/sqrt(d))",
                          fn, (double)o->scale);
    if (o->key_lengths)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: opts.key_lengths must be NULL: lengths gives each sequence's length",
                          fn);
    if (o->dropout_p != 0.0f)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: opts.dropout_p=%g: the cache has no dropout (must be 0)", fn,
                          (double)o->dropout_p);
    if (o->weights)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: opts.weights must be NULL (the cache never forms them)", fn);
    return attn__check_modifiers(fn, o, B, H, Nq, nmax, "max(lengths)");
}

/* The mask as rank 4 (B, H, Nq, Nmax) with stride 0 on broadcast dimensions. */
static attn_status check_mask(const char *fn, const attn_view *m, const int64_t full[4],
                              attn_view *norm) {
    static const char *const names[4] = {"B", "H", "Nq", "max(lengths)"};
    return attn__check_mask(fn, m, full, names, norm);
}

/* What every sequence's problem shares. */
typedef struct batch {
    const attn_kv_cache *c;
    const attn_view *q;
    const attn_opts *o;
    attn_view out, lse, mask; /* out, lse: the final outputs or scratch */
    const int32_t *tables;
    int64_t max_blocks;
    const int64_t *lengths, *q_lengths;
    int64_t H, Nq;
    float scale;
    int threads;
} batch;

/* The attn_sdpa problem of sequence b: one batch, nq queries, L keys (k and
 * v are placeholders until a key source or a float32 copy is set). */
static void seq_problem(const batch *bt, int64_t b, attn__sdpa_problem *P, attn_view *lse_b) {
    const attn_kv_cache *c = bt->c;
    const attn_opts *o = bt->o;
    const int64_t nq = bt->q_lengths ? bt->q_lengths[b] : bt->Nq, L = bt->lengths[b];
    memset(P, 0, sizeof *P);
    P->B = 1;
    P->H = bt->H;
    P->Hkv = c->hkv;
    P->Nq = nq;
    P->Nkv = L;
    P->d = c->d;
    P->dv = c->dv;
    P->q = slice0(bt->q, b);
    P->q.shape[2] = nq;
    P->out = slice0(&bt->out, b);
    P->out.shape[2] = nq;
    P->k = (attn_view){bt->q->data, 4, {1, c->hkv, L, c->d}, {0, 0, 0, 1}};
    P->v = (attn_view){bt->q->data, 4, {1, c->hkv, L, c->dv}, {0, 0, 0, 1}};
    P->scale = bt->scale;
    P->causal = o->causal;
    P->has_mask = o->mask != NULL;
    if (o->mask) {
        P->mask = slice0(&bt->mask, b);
        P->mask.shape[2] = nq;
        P->mask.shape[3] = L;
    }
    if (o->lse) {
        *lse_b = slice0(&bt->lse, b);
        lse_b->shape[2] = nq;
        P->lse = lse_b;
    }
    P->threads = bt->threads;
    P->q_offset = o->q_offset ? o->q_offset + b : NULL;
    P->k_offset = o->k_offset;
    P->window_left = o->window_left;
    P->window_right = o->window_right;
    P->softcap = o->softcap;
    P->alibi_slopes = o->alibi_slopes;
    P->sinks = o->sinks;
}

/* The table of sequence b: every entry a query can see (keys in the union
 * of the rows' visible ranges) is a block id, the others a block id or -1. */
static attn_status check_table(const char *fn, const batch *bt, int64_t b) {
    const attn_kv_cache *c = bt->c;
    const int64_t L = bt->lengths[b];
    if (L == 0) return ATTN_OK;
    attn__sdpa_problem P;
    attn_view lse_b;
    seq_problem(bt, b, &P, &lse_b);
    int64_t lo = L, hi = 0;
    for (int64_t i = 0; i < P.Nq; i++) {
        int64_t l, h;
        attn__key_range(&P, 0, i, &l, &h);
        if (h > l) {
            lo = l < lo ? l : lo;
            hi = h > hi ? h : hi;
        }
    }
    const int32_t *table = bt->tables + b * bt->max_blocks;
    for (int64_t t = 0; t <= (L - 1) / c->bs; t++) {
        const bool seen = t * c->bs < hi && (t + 1) * c->bs > lo;
        if ((table[t] == NO_BLOCK && !seen) || (table[t] >= 0 && table[t] < c->nb)) continue;
        return attn__fail(ATTN_ERR_ARG,
                          "%s: block_tables[%" PRId64 "][%" PRId64 "]=%" PRId32
                          " is not a block id (0..%" PRId64 ")%s",
                          fn, b, t, table[t], c->nb - 1,
                          table[t] == NO_BLOCK ? ", and a query sees that block" : "");
    }
    return ATTN_OK;
}

/* Sequence b into its part of bt->out and bt->lse. */
static attn_status run_sequence(const batch *bt, int64_t b, kv_source *src) {
    const attn_kv_cache *c = bt->c;
    attn__sdpa_problem P;
    attn_view lse_b;
    seq_problem(bt, b, &P, &lse_b);
    if (P.Nq == 0) return ATTN_OK;
    if (P.Nkv == 0) { /* no keys: zeros, lse -inf (or the sink) */
        for (int64_t h = 0; h < P.H; h++)
            for (int64_t i = 0; i < P.Nq; i++) {
                for (int64_t f = 0; f < c->dv; f++)
                    *attn__at4(&P.out, 0, h, i, f) = 0.0f;
                if (P.lse) *attn__at3(P.lse, 0, h, i) = P.sinks ? P.sinks[h] : -INFINITY;
            }
        return ATTN_OK;
    }
    if (bt->o->algo != ATTN_ALGO_REFERENCE && attn__flash_applies(&P)) {
        src->table = bt->tables + b * bt->max_blocks;
        src->length = P.Nkv;
        P.keys = &src->base;
        return attn__sdpa_flash(&P);
    }
    /* What attn_sdpa runs on the reference path (modifiers the fast path
     * does not take yet, or algo REFERENCE): over a float32 copy. */
    const int64_t L = P.Nkv, nk = c->hkv * L * c->d, nv = c->hkv * L * c->dv;
    float *kf = attn__alloc((size_t)(nk + nv), sizeof(float));
    if (!kf)
        return attn__fail(ATTN_ERR_NOMEM,
                          "attn_kv_attend: cannot allocate a float32 copy of sequence %" PRId64
                          " (%" PRId64 " floats)",
                          b, nk + nv);
    const int32_t *table = bt->tables + b * bt->max_blocks;
    for (int64_t g = 0; g < c->hkv; g++)
        for (int64_t p = 0; p < L; p++) {
            const int32_t blk = table[p / c->bs];
            const int64_t slot = p % c->bs;
            for (int64_t e = 0; e < c->d; e++)
                kf[(g * L + p) * c->d + e] =
                    blk == NO_BLOCK ? 0.0f : get(c, c->k, k_at(c, blk, g, slot, e));
            for (int64_t f = 0; f < c->dv; f++)
                kf[nk + (g * L + p) * c->dv + f] =
                    blk == NO_BLOCK ? 0.0f : get(c, c->v, v_at(c, blk, g, slot, f));
        }
    P.k = attn_view_4d(kf, 1, c->hkv, L, c->d);
    P.v = attn_view_4d(kf + nk, 1, c->hkv, L, c->dv);
    const attn_status s = attn__sdpa_ref(&P);
    attn__free(kf);
    return s;
}

attn_status attn_kv_attend(const attn_kv_cache *cache, const attn_view *q,
                           const int32_t *block_tables, int64_t max_blocks, const int64_t *lengths,
                           const int64_t *q_lengths, attn_view *out, const attn_opts *opts) {
    const char *fn = "attn_kv_attend";
    attn_status s = attn__isa_ready(fn);
    if (s) return s;
    if (!cache) return attn__fail(ATTN_ERR_NULL, "%s: cache is NULL", fn);
    if (!block_tables) return attn__fail(ATTN_ERR_NULL, "%s: block_tables is NULL", fn);
    if (!lengths) return attn__fail(ATTN_ERR_NULL, "%s: lengths is NULL", fn);
    const attn_kv_cache *c = cache;
    attn_opts defaults = attn_opts_default();
    const attn_opts *o = opts ? opts : &defaults;
    if ((s = attn__check_view(fn, "q", q, 4)) || (s = attn__check_view(fn, "out", out, 4)) ||
        (s = check_size(fn, "q", q, 3, c->d, "the cache's head_dim")))
        return s;
    const int64_t B = q->shape[0], H = q->shape[1], Nq = q->shape[2];
    if (H % c->hkv != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: q.shape[1]=%" PRId64
                          " query heads is not a multiple of the cache's num_kv_heads=%" PRId64,
                          fn, H, c->hkv);
    if ((s = check_size(fn, "out", out, 0, B, "q.shape[0], the batch")) ||
        (s = check_size(fn, "out", out, 1, H, "q.shape[1], the query heads")) ||
        (s = check_size(fn, "out", out, 2, Nq, "q.shape[2], the query tokens")) ||
        (s = check_size(fn, "out", out, 3, c->dv, "the cache's value_dim")) ||
        (s = attn__check_output(fn, "out", out)) ||
        (s = attn__check_disjoint(fn, "out", out, "q", q)))
        return s;
    int64_t cap = 0, nmax = 0;
    if ((s = capacity(fn, c, max_blocks, &cap))) return s;
    for (int64_t b = 0; b < B; b++) {
        if (lengths[b] < 0 || lengths[b] > cap)
            return attn__fail(ATTN_ERR_ARG,
                              "%s: lengths[%" PRId64 "]=%" PRId64
                              " must be in 0..max_blocks x block_size=%" PRId64,
                              fn, b, lengths[b], cap);
        if (q_lengths && (q_lengths[b] < 0 || q_lengths[b] > Nq))
            return attn__fail(ATTN_ERR_ARG,
                              "%s: q_lengths[%" PRId64 "]=%" PRId64 " must be in 0..Nq=%" PRId64,
                              fn, b, q_lengths[b], Nq);
        if (lengths[b] > nmax) nmax = lengths[b];
    }
    if ((s = check_attend_opts(fn, o, B, H, Nq, nmax))) return s;
    batch bt = {c,          q,       o,         *out, {0}, {0},  block_tables,
                max_blocks, lengths, q_lengths, H,    Nq,  0.0f, 0};
    if (o->mask) {
        const int64_t full[4] = {B, H, Nq, nmax > 0 ? nmax : 1};
        if ((s = check_mask(fn, o->mask, full, &bt.mask)) ||
            (s = attn__check_disjoint(fn, "out", out, "mask", o->mask)))
            return s;
    }
    if (o->lse) {
        attn_view *l = o->lse;
        if ((s = attn__check_view(fn, "lse", l, 3)) ||
            (s = check_size(fn, "lse", l, 0, B, "q.shape[0], the batch")) ||
            (s = check_size(fn, "lse", l, 1, H, "q.shape[1], the query heads")) ||
            (s = check_size(fn, "lse", l, 2, Nq, "q.shape[2], the query tokens")) ||
            (s = attn__check_output(fn, "lse", l)) ||
            (s = attn__check_disjoint(fn, "lse", l, "q", q)) ||
            (s = attn__check_disjoint(fn, "lse", l, "out", out)) ||
            (o->mask && (s = attn__check_disjoint(fn, "lse", l, "mask", o->mask))))
            return s;
        bt.lse = *l;
    }
    bt.scale = isnan(o->scale) ? (float)(1.0 / sqrt((double)c->d)) : o->scale;
    bt.threads = attn__threads(o->num_threads);
    for (int64_t b = 0; b < B; b++)
        if ((s = check_table(fn, &bt, b))) return s;

    /* Sequences with queries run one problem each. With more than one,
     * results go to scratch first and are copied out only when every
     * problem has succeeded, so a failure leaves out and lse untouched. */
    int64_t runs = 0;
    for (int64_t b = 0; b < B; b++)
        runs += (q_lengths ? q_lengths[b] : Nq) > 0;
    const bool direct = runs <= 1;
    const int64_t nout = B * H * Nq * c->dv, nlse = o->lse ? B * H * Nq : 0;
    const int64_t ntile = c->d * ATTN_KV_TILE * (int64_t)c->esize / (int64_t)sizeof(float);
    float *tmp = attn__alloc((size_t)(ntile + (direct ? 0 : nout + nlse)), sizeof(float));
    if (!tmp)
        return attn__fail(ATTN_ERR_NOMEM,
                          "%s: cannot allocate the batch's scratch (%" PRId64 " floats)", fn,
                          ntile + (direct ? 0 : nout + nlse));
    memset(tmp, 0, (size_t)ntile * sizeof(float));
    if (!direct) {
        bt.out = attn_view_4d(tmp + ntile, B, H, Nq, c->dv);
        if (o->lse) bt.lse = attn_view_3d(tmp + ntile + nout, B, H, Nq);
    }
    kv_source src = {{source_scores, source_values, source_pv},
                     c,
                     NULL,
                     attn__kvkernels_for(ATTN_ISA_AUTO),
                     (const unsigned char *)tmp,
                     0};
    for (int64_t b = 0; b < B && s == ATTN_OK; b++)
        s = run_sequence(&bt, b, &src);
    if (s != ATTN_OK) {
        attn__free(tmp);
        return s;
    }
    /* Rows past q_lengths[b]: zeros and -inf. Then scratch to the outputs. */
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = q_lengths ? q_lengths[b] : Nq; i < Nq; i++) {
                for (int64_t f = 0; f < c->dv; f++)
                    *attn__at4(&bt.out, b, h, i, f) = 0.0f;
                if (o->lse) *attn__at3(&bt.lse, b, h, i) = -INFINITY;
            }
    if (!direct)
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < Nq; i++) {
                    for (int64_t f = 0; f < c->dv; f++)
                        *attn__at4(out, b, h, i, f) = *attn__at4(&bt.out, b, h, i, f);
                    if (o->lse) *attn__at3(o->lse, b, h, i) = *attn__at3(&bt.lse, b, h, i);
                }
    attn__free(tmp);
    return ATTN_OK;
}
