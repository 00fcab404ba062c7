/* flash/flash.c - tiled online-softmax attention (see flash.h).
 *
 * Dimension letters as in attn.h; in this file also
 *   G    query heads per kv head (H / Hkv)
 *   r    a row of the tile (one (h, i) pair), nr rows, ldr = nr rounded up to 16
 *   c    a key of the block (key j = j0 + c), nk keys
 *
 * Per tile and chunk of keys [c0, c0 + CHUNK):
 *   m, l, oc = -inf, 0, 0
 *   for each block of KB keys:                              shapes
 *     st = Q K^T            (kernel score)                 (nk, ldr) key-major
 *     st = mod(st*scale) (+mask), hidden -> -inf; bmax    (scale_max, then mask_block)
 *     p = exp(st - m'), l = l*alpha + sum_c p, m = m'       (softmax)
 *     oc = oc*alpha + p^T V (kernel pv)                    (nr, dv)
 *   fold (m, l, oc) into the tile's (M, L, ot)              (merge_partial)
 * and finally out = ot / L, lse = M + log L. The tile's fold starts at
 * (M, L, ot) = (-inf, 0, 0), or with sinks at (sinks[h], 1, 0): the sink
 * enters once, never inside a chunk, so no split can count it twice.
 * A row sees the key range [klo, kend) (key length, causal, window); chunks
 * and blocks wholly outside every row's range are skipped. */
#include "flash/flash.h"

#include "dropout_hash.h"
#include "kernels/dropout.h"
#include "kernels/kernels.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum {
    ROWS = ATTN_TILE_ROWS,
    KB = ATTN_KEY_BLOCK,
    CHUNK = ATTN_KEY_CHUNK,
    LANES = ATTN_LANES,
};

/* Scores of a block of a full tile, or of a whole chunk of a 16-row tile. */
#define ST_FLOATS (KB * ROWS > CHUNK * LANES ? KB * ROWS : CHUNK * LANES)

/* Decode partials are kept only while they fit in this much memory. */
#define SPLIT_MAX_BYTES ((int64_t)64 << 20)

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

static int64_t round_up(int64_t a, int64_t m) {
    return (a + m - 1) / m * m;
}

/* How the rows of one (b, g) pair - G heads x Nq queries, flattened as
 * hh * Nq + i - are cut into tiles. */
typedef struct plan {
    const attn__sdpa_problem *P;
    const attn__kernels *kr;
    int64_t G;
    int64_t tiles_per_head;  /* Nq >= ROWS: a tile holds ROWS queries of one head */
    int64_t heads_per_tile;  /* Nq < ROWS: a tile holds whole heads */
    int64_t tiles_per_group; /* tiles per (b, g) */
    int64_t n_tiles, n_chunks, max_rows, ldo;
    bool pack_k, pack_v;
    const attn__fold_io
        *fold; /* NULL: attn_sdpa; else the fold state tiles start from and end in */
} plan;

typedef struct tile {
    int64_t b, g, flat0, nr, ldr;
    int64_t jmax; /* keys j >= jmax are hidden from every row of the tile */
    int64_t jmin; /* and so are keys j < jmin */
} tile;

/* One thread's scratch (sizes in the comments, floats unless stated). */
typedef struct state {
    float *qt;             /* (d, ROWS)    Q^T of the tile */
    float *st;             /* ST_FLOATS    scores / probabilities, key-major */
    float *oc;             /* (ROWS, ldo)  chunk accumulator */
    float *ot;             /* (ROWS, ldo)  tile accumulator */
    float *kp;             /* (KB, d)      packed keys (strided k only) */
    float *vp;             /* (KB, dv)     packed values (strided v only) */
    float *m, *l, *alpha;  /* (ROWS)       chunk running max, sum, rescale */
    float *bmax, *M, *L;   /* (ROWS)       block max; tile max and sum */
    float *ea, *eb;        /* (ROWS)       merge factors */
    float *moff;           /* (ROWS)       mask offset of each row (see mask_offset) */
    float *slope, *dist0;  /* (ROWS)       ALiBi slope; dist to the block's first key */
    int32_t *vlo, *vhi;    /* (ROWS)       visible keys [vlo, vhi) of the block per row */
    int64_t *kend, *h, *i; /* (ROWS)       key end, query head, query index */
    int64_t *klo, *base;   /* (ROWS)       key start; p(i) - k_offset (dist = base - j) */
} state;

static void plan_make(const attn__sdpa_problem *P, plan *pl) {
    pl->P = P;
    pl->kr = attn__kernels_for(ATTN_ISA_AUTO);
    pl->G = P->H / P->Hkv;
    if (P->Nq >= ROWS) {
        pl->tiles_per_head = (P->Nq + ROWS - 1) / ROWS;
        pl->heads_per_tile = 0;
        pl->tiles_per_group = pl->G * pl->tiles_per_head;
        pl->max_rows = ROWS;
    } else {
        pl->tiles_per_head = 0;
        pl->heads_per_tile = min64(ROWS / P->Nq, pl->G);
        pl->tiles_per_group = (pl->G + pl->heads_per_tile - 1) / pl->heads_per_tile;
        pl->max_rows = pl->heads_per_tile * P->Nq;
    }
    pl->n_tiles = P->B * P->Hkv * pl->tiles_per_group;
    pl->n_chunks = (P->Nkv - 1) / CHUNK + 1;
    pl->ldo = round_up(P->dv, LANES);
    pl->pack_k = P->k.stride[3] != 1;
    pl->pack_v = P->v.stride[3] != 1;
    pl->fold = NULL;
}

static void tile_of(const plan *pl, int64_t t, tile *T) {
    const attn__sdpa_problem *P = pl->P;
    const int64_t grp = t / pl->tiles_per_group, u = t % pl->tiles_per_group;
    T->b = grp / P->Hkv;
    T->g = grp % P->Hkv;
    if (pl->tiles_per_head) {
        const int64_t hh = u / pl->tiles_per_head, i0 = u % pl->tiles_per_head * ROWS;
        T->flat0 = hh * P->Nq + i0;
        T->nr = min64(ROWS, P->Nq - i0);
    } else {
        const int64_t hh0 = u * pl->heads_per_tile;
        T->flat0 = hh0 * P->Nq;
        T->nr = min64(pl->heads_per_tile, pl->G - hh0) * P->Nq;
    }
    T->ldr = round_up(T->nr, LANES);
}

/* The largest finite mask value among the keys lo <= j < end of row
 * (b, h, i), 0 if there is none. Softmax and lse are shift-invariant per
 * row, so the row's scores are taken as s*scale + (mask - offset) and offset
 * is added back to lse: a mask of -1e9 on every key then changes nothing,
 * where s*scale + (-1e9) in float would round every score to -1e9. With a
 * sink the offset is at least the sink (the sink enters as sink - offset,
 * which then cannot overflow). */
static float mask_offset(const attn__sdpa_problem *P, int64_t b, int64_t h, int64_t i, int64_t lo,
                         int64_t end) {
    const float *mrow = attn__at4(&P->mask, b, h, i, 0); /* seek to mask[b, h, i, :] */
    float mx = -INFINITY;
    for (int64_t j = lo; j < end; j++) {
        const float mv = mrow[j * P->mask.stride[3]];
        if (mv > mx && mv != INFINITY) mx = mv;
    }
    if (P->sinks && !(P->sinks[h] <= mx)) mx = P->sinks[h];
    return isfinite(mx) ? mx : 0.0f;
}

/* Row bookkeeping and Q^T of a tile; rows nr..ldr-1 are zero and see nothing.
 * moff: the rows' mask offsets if already known, else NULL. */
static void tile_load(const plan *pl, tile *T, state *w, const float *moff) {
    const attn__sdpa_problem *P = pl->P;
    T->jmax = 0;
    T->jmin = INT64_MAX;
    for (int64_t r = 0; r < T->ldr; r++) {
        if (r >= T->nr) {
            w->kend[r] = w->klo[r] = w->base[r] = 0;
            w->slope[r] = w->dist0[r] = 0.0f;
            for (int64_t e = 0; e < P->d; e++)
                w->qt[e * T->ldr + r] = 0.0f;
            continue;
        }
        const int64_t flat = T->flat0 + r;
        const int64_t h = T->g * pl->G + flat / P->Nq, i = flat % P->Nq;
        w->h[r] = h;
        w->i[r] = i;
        int64_t lo, end;
        attn__key_range(P, T->b, i, &lo, &end);
        w->kend[r] = end;
        w->klo[r] = lo;
        w->base[r] = attn__qpos(P, T->b, i) - P->k_offset;
        w->slope[r] = P->alibi_slopes ? P->alibi_slopes[h] : 0.0f;
        if (end > T->jmax) T->jmax = end;
        if (end > lo && lo < T->jmin) T->jmin = lo;
        w->moff[r] = !P->has_mask ? 0.0f : moff ? moff[r] : mask_offset(P, T->b, h, i, lo, end);
        const float *qrow = attn__at4(&P->q, T->b, h, i, 0); /* seek to q[b, h, i, :] */
        for (int64_t e = 0; e < P->d; e++)
            w->qt[e * T->ldr + r] = qrow[e * P->q.stride[3]];
    }
    if (T->jmin > T->jmax) T->jmin = T->jmax;
}

/* Copy rows j0..j0+nk-1 of a (Nkv, n) slice with strides (s2, s3) to (nk, n). */
static void pack_rows(float *dst, const float *src, int64_t s2, int64_t s3, int64_t nk, int64_t n) {
    for (int64_t c = 0; c < nk; c++)
        for (int64_t e = 0; e < n; e++)
            dst[c * n + e] = src[c * s2 + e * s3];
}

/* After the kernel's scale step: add the mask, hide, and take the block
 * max again, element by element:
 *   st[c][r] = visible ? st[c][r] + (mask[b, h, i, j0 + c] - moff[r]) : -inf
 * (visible: c in the row's range and the mask entry not -inf). */
static void mask_block(const plan *pl, const tile *T, state *w, float *sb, int64_t j0, int64_t nk) {
    const attn__sdpa_problem *P = pl->P;
    (void)nk;
    for (int64_t r = 0; r < T->ldr; r++) {
        float mx = -INFINITY;
        const float *mrow = r < T->nr ? attn__at4(&P->mask, T->b, w->h[r], w->i[r], j0)
                                      : NULL; /* mask[b,h,i,j0:] */
        for (int64_t c = w->vlo[r]; c < w->vhi[r]; c++) {
            const float mv = mrow[c * P->mask.stride[3]];
            float *sp = &sb[c * T->ldr + r];
            *sp = mv == -INFINITY ? -INFINITY : *sp + (mv - w->moff[r]);
            mx = *sp > mx ? *sp : mx;
        }
        w->bmax[r] = mx;
    }
}

static bool all_finite(const float *v, int64_t vs, int64_t nk, int64_t dv) {
    bool ok = true;
    for (int64_t c = 0; c < nk; c++)
        for (int64_t f = 0; f < dv; f++)
            ok &= isfinite(v[c * vs + f]) != 0;
    return ok;
}

/* The output update of kernel pv, skipping each hidden (row, key) pair
 * instead of multiplying it by zero: used when the block holds Inf/NaN
 * values that some row must not see. Same operations as the kernels. */
static void pv_skip(const plan *pl, const tile *T, state *w, const float *sb, int64_t j0,
                    const float *v, int64_t vs) {
    const attn__sdpa_problem *P = pl->P;
    for (int64_t r = 0; r < T->nr; r++) {
        float *orow = w->oc + r * pl->ldo;
        for (int64_t f = 0; f < P->dv; f++)
            orow[f] = orow[f] * w->alpha[r];
        for (int64_t c = w->vlo[r]; c < w->vhi[r]; c++) {
            if (P->has_mask && *attn__at4(&P->mask, T->b, w->h[r], w->i[r], j0 + c) == -INFINITY)
                continue;
            const float pc = sb[c * T->ldr + r];
            for (int64_t f = 0; f < P->dv; f++)
                orow[f] = pl->kr->madd(pc, v[c * vs + f], orow[f]);
        }
    }
}

static int64_t clamp64(int64_t x, int64_t lo, int64_t hi) {
    return x < lo ? lo : x > hi ? hi : x;
}

/* The visible keys [vlo, vhi) of block [j0, j0 + nk) per row, and with
 * ALiBi each row's dist to key j0. Returns whether any row sees a key of
 * it; *full: every row sees every key. */
static bool block_vis(const plan *pl, const tile *T, state *w, int64_t j0, int64_t nk, bool *full) {
    bool any = false;
    *full = !pl->P->has_mask;
    for (int64_t r = 0; r < T->ldr; r++) {
        const int64_t lo = clamp64(w->klo[r] - j0, 0, nk), hi = clamp64(w->kend[r] - j0, 0, nk);
        w->vlo[r] = (int32_t)lo;
        w->vhi[r] = (int32_t)hi;
        any |= hi > lo;
        if (r < T->nr && (lo > 0 || hi < nk)) *full = false;
        if (pl->P->alibi_slopes) w->dist0[r] = (float)(w->base[r] - j0);
    }
    return any;
}

/* Raw scores of block [j0, j0 + nk) into sb (nk, ldr). */
static void block_scores(const plan *pl, const tile *T, state *w, float *sb, int64_t j0,
                         int64_t nk) {
    const attn__sdpa_problem *P = pl->P;
    if (__builtin_expect(P->keys != NULL, 0)) {
        P->keys->scores(P->keys, pl->kr, sb, w->qt, T->ldr, T->b, T->g, j0, nk, T->nr, P->d, w->kp);
        return;
    }
    const float *k = attn__at4(&P->k, T->b, T->g, j0, 0); /* seek to k[b, g, j0, :] */
    int64_t ks = P->k.stride[2];
    if (pl->pack_k) {
        pack_rows(w->kp, k, ks, P->k.stride[3], nk, P->d);
        k = w->kp;
        ks = P->d;
    }
    pl->kr->score(sb, w->qt, T->ldr, k, ks, nk, T->nr, P->d);
}

/* Dropout after the row sums, so l (and lse) are taken before it, as in the
 * reference: p[c][r] = keep(b, h, i, j0 + c) ? p[c][r] / (1 - p) : 0. Rows
 * nr..ldr-1 and hidden keys hold p = 0 and stay 0. */
static void dropout_block(const plan *pl, const tile *T, const state *w, float *sb, int64_t j0,
                          int64_t nk) {
    const attn__sdpa_problem *P = pl->P;
    const uint32_t thr = attn__dropout_threshold(P->dropout_p);
    const float scale = (float)(1.0 / (1.0 - (double)P->dropout_p));
    uint64_t row[ROWS];
    attn__dropout_row_hashes(P->dropout_seed, T->b, w->h, w->i, T->nr, row);
    for (int64_t r = T->nr; r < T->ldr; r++)
        row[r] = 0;
    attn__dropout_rows(sb, T->ldr, nk, row, T->ldr, j0, thr, scale);
}

/* One chunk [c0, min(c0 + CHUNK, jmax)) of a loaded tile from a fresh state,
 * leaving the partial in w->m, w->l, w->oc.
 * A tile of at most 16 rows (decode) first scores every block of the chunk,
 * then runs the softmax and output steps block by block: K and V are then
 * read in long runs (the few-row kernels prefetch 16 keys ahead) instead of
 * alternating 64-key pieces. The arithmetic is the same either way. */
static void chunk_run(const plan *pl, const tile *T, state *w, int64_t c0) {
    const attn__sdpa_problem *P = pl->P;
    const attn__kernels *kr = pl->kr;
    const int64_t c1 = min64(c0 + CHUNK, T->jmax), ldr = T->ldr;
    /* the first block of the chunk that a row may see (blocks stay at j0 =
     * multiples of KB from 0, wherever the window starts) */
    const int64_t cs = T->jmin > c0 ? c0 + (T->jmin - c0) / KB * KB : c0;
    const bool two_phase = ldr == LANES;
    const attn__score_mod mod = {P->scale, P->softcap, P->softcap > 0.0f ? 1.0f / P->softcap : 0.0f,
                                 P->alibi_slopes ? w->slope : NULL, w->dist0};
    bool full;
    for (int64_t r = 0; r < ldr; r++) {
        w->m[r] = -INFINITY;
        w->l[r] = 0.0f;
    }
    memset(w->oc, 0, (size_t)(T->nr * pl->ldo) * sizeof(float));
    if (two_phase)
        for (int64_t j0 = cs; j0 < c1; j0 += KB) {
            const int64_t nk = min64(KB, c1 - j0);
            if (block_vis(pl, T, w, j0, nk, &full))
                block_scores(pl, T, w, w->st + (j0 - c0) * ldr, j0, nk);
        }
    for (int64_t j0 = cs; j0 < c1; j0 += KB) {
        const int64_t nk = min64(KB, c1 - j0);
        if (!block_vis(pl, T, w, j0, nk, &full)) continue; /* hidden from every row: a no-op */
        float *sb = w->st;                                 /* (nk, ldr) */
        if (two_phase)
            sb += (j0 - c0) * ldr;
        else
            block_scores(pl, T, w, sb, j0, nk);
        /* only a left window makes a row's range start inside the block */
        kr->scale_max(sb, ldr, nk, &mod, P->window_left >= 0 ? w->vlo : NULL, w->vhi, w->bmax);
        if (P->has_mask) mask_block(pl, T, w, sb, j0, nk);
        kr->softmax(sb, ldr, nk, w->bmax, w->m, w->l, w->alpha);
        if (P->dropout_p > 0.0f) dropout_block(pl, T, w, sb, j0, nk);

        if (__builtin_expect(P->keys != NULL, 0) && full && P->keys->pv &&
            P->keys->pv(P->keys, w->oc, pl->ldo, w->alpha, sb, ldr, T->b, T->g, j0, nk, T->nr,
                        P->dv))
            continue;
        const float *v = attn__at4(&P->v, T->b, T->g, j0, 0); /* seek to v[b, g, j0, :] */
        int64_t vs = P->v.stride[2];
        if (__builtin_expect(P->keys != NULL, 0))
            v = P->keys->values(P->keys, T->b, T->g, j0, nk, P->dv, w->vp, &vs);
        if (pl->pack_v) {
            pack_rows(w->vp, v, vs, P->v.stride[3], nk, P->dv);
            v = w->vp;
            vs = P->dv;
        }
        if (full || all_finite(v, vs, nk, P->dv))
            kr->pv(w->oc, pl->ldo, w->alpha, sb, ldr, v, vs, nk, T->nr, P->dv);
        else
            pv_skip(pl, T, w, sb, j0, v, vs);
    }
}

/* The tile's (M, L, ot): the rows of the fold state; else the fold's
 * initial state: nothing seen, or with sinks the sink as the first part
 * (M = sinks[h] - moff, in the row's shifted frame, L = 1, o = 0). */
static void tile_reset(const plan *pl, const tile *T, state *w) {
    const attn__sdpa_problem *P = pl->P;
    const attn__fold_io *F = pl->fold;
    for (int64_t r = 0; r < T->nr && !F; r++) {
        w->M[r] = P->sinks ? P->sinks[w->h[r]] - w->moff[r] : -INFINITY;
        w->L[r] = P->sinks ? 1.0f : 0.0f;
    }
    memset(w->ot, 0, (size_t)(T->nr * pl->ldo) * sizeof(float));
    for (int64_t r = 0; r < T->nr && F; r++) {
        w->M[r] = *attn__at3(&F->max, T->b, w->h[r], w->i[r]);
        w->L[r] = *attn__at3(&F->sum, T->b, w->h[r], w->i[r]);
        const float *arow = attn__at4(&F->acc, T->b, w->h[r], w->i[r], 0); /* acc[b, h, i, :] */
        for (int64_t f = 0; f < pl->P->dv; f++)
            w->ot[r * pl->ldo + f] = arow[f * F->acc.stride[3]];
    }
}

/* Fold a chunk partial (m, l, oc) into (M, L, ot):
 *   M' = max(M, m); a = exp(M - M'); b = exp(m - M')
 *   ot = fma(oc, b, ot * a); L = L * a + l * b
 * A row whose partial saw no key (m = -inf, l = 0) is left exactly as it
 * was. (Scores that are all NaN leave m = -inf too, but l = NaN: folded in,
 * they make the row NaN, as a NaN in a visible input must.) */
static void merge_partial(const plan *pl, const tile *T, state *w, const float *m, const float *l,
                          const float *oc) {
    const int64_t nr = T->nr;
    for (int64_t r = 0; r < nr; r++) {
        const float mn = m[r] > w->M[r] ? m[r] : w->M[r];
        const float ms = mn == -INFINITY ? 0.0f : mn;
        w->ea[r] = w->M[r] - ms;
        w->eb[r] = m[r] - ms;
    }
    pl->kr->exp(w->ea, w->ea, nr);
    pl->kr->exp(w->eb, w->eb, nr);
    for (int64_t r = 0; r < nr; r++) {
        if (m[r] == -INFINITY && l[r] == 0.0f) {
            w->ea[r] = 1.0f;
            w->eb[r] = 0.0f;
            continue;
        }
        w->L[r] = w->L[r] * w->ea[r] + l[r] * w->eb[r];
        w->M[r] = m[r] > w->M[r] ? m[r] : w->M[r];
    }
    pl->kr->merge(w->ot, oc, pl->ldo, w->ea, w->eb, nr, pl->P->dv);
}

/* out[b, h, i, :] = ot / L and lse = M + log L; zeros and -inf for a row
 * that saw no key. */
static void tile_store(const plan *pl, const tile *T, const state *w) {
    const attn__sdpa_problem *P = pl->P;
    const attn__fold_io *F = pl->fold;
    if (F && !F->finish) { /* the fold goes on: export (M, L, ot) unchanged */
        for (int64_t r = 0; r < T->nr; r++) {
            *attn__at3(&F->max, T->b, w->h[r], w->i[r]) = w->M[r];
            *attn__at3(&F->sum, T->b, w->h[r], w->i[r]) = w->L[r];
            float *arow = attn__at4(&F->acc, T->b, w->h[r], w->i[r], 0); /* acc[b, h, i, :] */
            for (int64_t f = 0; f < P->dv; f++)
                arow[f * F->acc.stride[3]] = w->ot[r * pl->ldo + f];
        }
        return;
    }
    for (int64_t r = 0; r < T->nr; r++) {
        float *orow = attn__at4(&P->out, T->b, w->h[r], w->i[r], 0); /* out[b, h, i, :] */
        const float *acc = w->ot + r * pl->ldo;
        const bool empty = w->M[r] == -INFINITY && w->L[r] == 0.0f;
        for (int64_t f = 0; f < P->dv; f++)
            orow[f * P->out.stride[3]] = empty ? 0.0f : acc[f] / w->L[r];
        if (P->lse)
            *attn__at3(P->lse, T->b, w->h[r], w->i[r]) =
                empty ? -INFINITY : w->M[r] + logf(w->L[r]) + w->moff[r];
    }
}

/* Scratch: one state per thread, carved from one block. */
static int64_t state_floats(const plan *pl) {
    const attn__sdpa_problem *P = pl->P;
    return round_up(P->d * ROWS, LANES) + ST_FLOATS + 2 * ROWS * pl->ldo +
           round_up(KB * P->d, LANES) + round_up(KB * P->dv, LANES) + 13 * ROWS +
           5 * ROWS * 2; /* five int64 arrays */
}

static void state_carve(const plan *pl, float *base, state *w) {
    const attn__sdpa_problem *P = pl->P;
    float *p = base;
    w->qt = p, p += round_up(P->d * ROWS, LANES);
    w->st = p, p += ST_FLOATS;
    w->oc = p, p += ROWS * pl->ldo;
    w->ot = p, p += ROWS * pl->ldo;
    w->kp = p, p += round_up(KB * P->d, LANES);
    w->vp = p, p += round_up(KB * P->dv, LANES);
    w->m = p, p += ROWS;
    w->l = p, p += ROWS;
    w->alpha = p, p += ROWS;
    w->bmax = p, p += ROWS;
    w->M = p, p += ROWS;
    w->L = p, p += ROWS;
    w->ea = p, p += ROWS;
    w->eb = p, p += ROWS;
    w->moff = p, p += ROWS;
    w->slope = p, p += ROWS;
    w->dist0 = p, p += ROWS;
    w->vlo = (int32_t *)p, p += ROWS;
    w->vhi = (int32_t *)p, p += ROWS;
    w->kend = (int64_t *)p, p += 2 * ROWS;
    w->h = (int64_t *)p, p += 2 * ROWS;
    w->i = (int64_t *)p, p += 2 * ROWS;
    w->klo = (int64_t *)p, p += 2 * ROWS;
    w->base = (int64_t *)p, p += 2 * ROWS;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* This thread's scratch carved into w, and tile t loaded into it (moff: the
 * tile's known mask offsets, or NULL). */
static void tile_open(const plan *pl, float *scratch, int64_t per_thread, int64_t t,
                      const float *moff, state *w, tile *T) {
    state_carve(pl, scratch + thread_id() * per_thread, w);
    tile_of(pl, t, T);
    tile_load(pl, T, w, moff);
}

/* tile_open for a fold: the rows' mask offsets are the state's shift; a
 * finishing fold reads no queries, only the rows' (h, i). */
static void fold_open(const plan *pl, float *scratch, int64_t per_thread, int64_t t, state *w,
                      tile *T) {
    const attn__sdpa_problem *P = pl->P;
    float moff[ROWS];
    state_carve(pl, scratch + thread_id() * per_thread, w);
    tile_of(pl, t, T);
    for (int64_t r = 0; r < T->nr; r++) {
        const int64_t flat = T->flat0 + r;
        w->h[r] = T->g * pl->G + flat / P->Nq;
        w->i[r] = flat % P->Nq;
        moff[r] = *attn__at3(&pl->fold->shift, T->b, w->h[r], w->i[r]);
        w->moff[r] = moff[r];
    }
    if (!pl->fold->finish) tile_load(pl, T, w, moff);
}

/* Prefill: each tile on one thread, its chunks folded as they finish. */
static void run_tiles(const plan *pl, float *scratch, int64_t per_thread, int nt) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
    for (int64_t t = 0; t < pl->n_tiles; t++) {
        state w;
        tile T;
        if (pl->fold)
            fold_open(pl, scratch, per_thread, t, &w, &T);
        else
            tile_open(pl, scratch, per_thread, t, NULL, &w, &T);
        tile_reset(pl, &T, &w);
        if (pl->fold && pl->fold->finish)
            T.jmin = T.jmax = 0; /* no keys: out, lse from the state */
        for (int64_t c0 = T.jmin / CHUNK * CHUNK; c0 < T.jmax; c0 += CHUNK) {
            chunk_run(pl, &T, &w, c0);
            merge_partial(pl, &T, &w, w.m, w.l, w.oc);
        }
        tile_store(pl, &T, &w);
    }
    (void)nt;
}

/* Decode: (tile, chunk) pairs spread over the threads, partials kept in
 * part (per pair: m (mr16), l (mr16), o (max_rows, ldo)), then folded per
 * tile in ascending chunk order by the same merge as prefill. With a mask,
 * the rows' mask offsets are found once per tile first (moff, (n_tiles,
 * max_rows)), not once per chunk. */
static void run_split(const plan *pl, float *scratch, int64_t per_thread, int nt, float *part,
                      unsigned char *seen, int64_t unit, float *moff) {
    const int64_t mr16 = round_up(pl->max_rows, LANES);
    const int64_t n_units = pl->n_tiles * pl->n_chunks;
    if (moff) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
        for (int64_t t = 0; t < pl->n_tiles; t++) {
            state w;
            tile T;
            tile_open(pl, scratch, per_thread, t, NULL, &w, &T);
            memcpy(moff + t * pl->max_rows, w.moff, (size_t)T.nr * sizeof(float));
        }
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
    for (int64_t u = 0; u < n_units; u++) {
        state w;
        tile T;
        tile_open(pl, scratch, per_thread, u / pl->n_chunks,
                  moff ? moff + u / pl->n_chunks * pl->max_rows : NULL, &w, &T);
        const int64_t c0 = u % pl->n_chunks * CHUNK;
        seen[u] = c0 < T.jmax && c0 + CHUNK > T.jmin;
        if (!seen[u]) continue;
        chunk_run(pl, &T, &w, c0);
        float *pu = part + u * unit;
        memcpy(pu, w.m, (size_t)T.nr * sizeof(float));
        memcpy(pu + mr16, w.l, (size_t)T.nr * sizeof(float));
        memcpy(pu + 2 * mr16, w.oc, (size_t)(T.nr * pl->ldo) * sizeof(float));
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
    for (int64_t t = 0; t < pl->n_tiles; t++) {
        state w;
        tile T;
        tile_open(pl, scratch, per_thread, t, moff ? moff + t * pl->max_rows : NULL, &w, &T);
        tile_reset(pl, &T, &w);
        for (int64_t c = 0; c < pl->n_chunks; c++) {
            const int64_t u = t * pl->n_chunks + c;
            if (!seen[u]) continue;
            const float *pu = part + u * unit;
            merge_partial(pl, &T, &w, pu, pu + mr16, pu + 2 * mr16);
        }
        tile_store(pl, &T, &w);
    }
    (void)nt;
}

bool attn__flash_applies(const attn__sdpa_problem *P) {
    return P->weights == NULL && P->d <= ATTN_FLASH_MAX_HEAD && P->dv <= ATTN_FLASH_MAX_HEAD;
}

attn_status attn__sdpa_flash(const attn__sdpa_problem *P) {
    if (!attn__flash_applies(P))
        return attn__fail(ATTN_ERR_ARG,
                          "attn_sdpa: the flash path has no weights output "
                          "and takes head sizes up to %lld",
                          (long long)ATTN_FLASH_MAX_HEAD);
    plan pl;
    plan_make(P, &pl);
    int nt = P->threads > 0 ? P->threads : 1;

    /* Every size below is small (bounded by the tile and block constants,
     * d and dv) except the split partials, which are capped. */
    const int64_t per_thread = round_up(state_floats(&pl), LANES);
    const int64_t mr16 = round_up(pl.max_rows, LANES);
    const int64_t unit = 2 * mr16 + pl.max_rows * pl.ldo;
    int64_t n_units = 0;
    bool split = false;
    if (nt > 1 && pl.n_tiles < 4 * (int64_t)nt && pl.n_chunks > 1 &&
        !__builtin_mul_overflow(pl.n_tiles, pl.n_chunks, &n_units) &&
        n_units <= SPLIT_MAX_BYTES / 4 / unit)
        split = true;

    /* More threads than units of work would only hold idle scratch. */
    const int64_t work = split ? n_units : pl.n_tiles;
    if (nt > work) nt = (int)work;
    float *scratch = attn__alloc((size_t)nt * (size_t)per_thread, sizeof(float));
    float *part = split ? attn__alloc((size_t)(n_units * unit), sizeof(float)) : NULL;
    unsigned char *seen = split ? attn__alloc((size_t)n_units, 1) : NULL;
    const bool want_moff = split && P->has_mask;
    float *moff = want_moff ? attn__alloc((size_t)(pl.n_tiles * pl.max_rows), sizeof(float)) : NULL;
    if (!scratch || (split && (!part || !seen)) || (want_moff && !moff)) {
        attn__free(scratch);
        attn__free(part);
        attn__free(seen);
        attn__free(moff);
        return attn__fail(ATTN_ERR_NOMEM,
                          "attn_sdpa: cannot allocate the flash scratch (%d x %lld "
                          "floats)",
                          nt, (long long)per_thread);
    }
    if (split)
        run_split(&pl, scratch, per_thread, nt, part, seen, unit, moff);
    else
        run_tiles(&pl, scratch, per_thread, nt);
    attn__free(scratch);
    attn__free(part);
    attn__free(seen);
    attn__free(moff);
    return ATTN_OK;
}

attn_status attn__flash_fold(const attn__sdpa_problem *P, const attn__fold_io *F) {
    plan pl;
    plan_make(P, &pl);
    pl.fold = F;
    int nt = P->threads > 0 ? P->threads : 1;
    if (nt > pl.n_tiles) nt = (int)pl.n_tiles;
    const int64_t per_thread = round_up(state_floats(&pl), LANES);
    float *scratch = attn__alloc((size_t)nt * (size_t)per_thread, sizeof(float));
    if (!scratch)
        return attn__fail(ATTN_ERR_NOMEM,
                          "attn_fold: cannot allocate the flash scratch (%d x %lld floats)", nt,
                          (long long)per_thread);
    run_tiles(&pl, scratch, per_thread, nt);
    attn__free(scratch);
    return ATTN_OK;
}
