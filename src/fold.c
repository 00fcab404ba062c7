/* fold.c - the resumable fold (attn.h "Resumable fold"): checks, then the
 * flash engine continues each row's state over a chunk-aligned key shard
 * (attn__flash_fold), so folding shards in ascending order performs exactly
 * the operations of attn_sdpa's fast path over all the keys. */
#include "internal.h"

#include "flash/flash.h"
#include "kernels/kernels.h"

#include <inttypes.h>

_Static_assert(ATTN_KEY_CHUNK == 512, "attn.h exports the flash chunk");

int64_t attn_key_chunk(void) {
    return ATTN_KEY_CHUNK;
}

int64_t attn_fold_floats(int64_t B, int64_t H, int64_t Nq, int64_t dv) {
    int64_t rows, n;
    if (B < 1 || H < 1 || Nq < 1 || dv < 1) return -1;
    if (__builtin_mul_overflow(B, H, &rows) || __builtin_mul_overflow(rows, Nq, &rows) ||
        __builtin_add_overflow(dv, 3, &n) || __builtin_mul_overflow(rows, n, &n))
        return -1;
    return n;
}

attn_status attn_fold_bind(attn_fold *f, float *mem, int64_t B, int64_t H, int64_t Nq, int64_t dv) {
    const char *fn = "attn_fold_bind";
    if (!f || !mem) return attn__fail(ATTN_ERR_NULL, "%s: f and mem must not be NULL", fn);
    if (B < 1 || H < 1 || Nq < 1 || dv < 1)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: B=%" PRId64 ", H=%" PRId64 ", Nq=%" PRId64 ", dv=%" PRId64
                          " must all be >= 1",
                          fn, B, H, Nq, dv);
    if (attn_fold_floats(B, H, Nq, dv) < 0)
        return attn__fail(ATTN_ERR_OVERFLOW, "%s: B*H*Nq*(3+dv) overflows int64", fn);
    const int64_t rows = B * H * Nq;
    f->max = attn_view_3d(mem, B, H, Nq);
    f->sum = attn_view_3d(mem + rows, B, H, Nq);
    f->shift = attn_view_3d(mem + 2 * rows, B, H, Nq);
    f->acc = attn_view_4d(mem + 3 * rows, B, H, Nq, dv);
    f->nkv = 0;
    return ATTN_OK;
}

/* f's views: valid, shaped (B, H, Nq[, dv]), proper outputs, pairwise
 * disjoint and disjoint from the inputs given (NULL: none). */
static attn_status check_state(const char *fn, const attn_fold *f, int64_t B, int64_t H, int64_t Nq,
                               int64_t dv, const attn_view *const *in, const char *const *in_names,
                               int n_in) {
    if (!f) return attn__fail(ATTN_ERR_NULL, "%s: f must not be NULL", fn);
    const attn_view *vs[4] = {&f->max, &f->sum, &f->shift, &f->acc};
    static const char *const names[4] = {"f->max", "f->sum", "f->shift", "f->acc"};
    const int64_t want[4] = {B, H, Nq, dv};
    attn_status s;
    for (int a = 0; a < 4; a++) {
        const int nd = a == 3 ? 4 : 3;
        if ((s = attn__check_view(fn, names[a], vs[a], nd))) return s;
        for (int i = 0; i < nd; i++)
            if (vs[a]->shape[i] != want[i])
                return attn__fail(ATTN_ERR_SHAPE,
                                  "%s: %s.shape[%d]=%" PRId64 " but must be %" PRId64 " (%c)", fn,
                                  names[a], i, vs[a]->shape[i], want[i], "BHNd"[i]);
        if ((s = attn__check_output(fn, names[a], vs[a]))) return s;
        for (int b = 0; b < a; b++)
            if ((s = attn__check_disjoint(fn, names[a], vs[a], names[b], vs[b]))) return s;
        for (int b = 0; b < n_in; b++)
            if (in[b] && (s = attn__check_disjoint(fn, names[a], vs[a], in_names[b], in[b])))
                return s;
    }
    return ATTN_OK;
}

/* The fold's options: what attn_sdpa accepts, minus what the fold has not. */
static attn_status check_opts(const char *fn, const attn_opts *o) {
    if (o->dropout_p != 0.0f)
        return attn__fail(ATTN_ERR_ARG, "%s: opts.dropout_p=%g but the fold has no dropout", fn,
                          (double)o->dropout_p);
    if (o->weights)
        return attn__fail(ATTN_ERR_ARG, "%s: opts.weights must be NULL (the fold never forms them)",
                          fn);
    if (o->lse)
        return attn__fail(ATTN_ERR_ARG, "%s: opts.lse must be NULL (attn_fold_finish takes lse)",
                          fn);
    if (o->algo == ATTN_ALGO_REFERENCE)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: opts.algo=ATTN_ALGO_REFERENCE but the fold is the fast path's", fn);
    return ATTN_OK;
}

/* The whole-fold mask as a rank-4 view with stride 0 on broadcast
 * dimensions, checked against (B, H, Nq, nkv). */
static attn_status fold_mask(const char *fn, const attn_view *m, int64_t B, int64_t H, int64_t Nq,
                             int64_t nkv, attn_view *norm) {
    const int64_t full[4] = {B, H, Nq, nkv};
    static const char *const names[4] = {"B", "H", "Nq", "nkv"};
    return attn__check_mask(fn, m, full, names, norm);
}

static attn_status check_key_lengths(const char *fn, const int64_t *kl, int64_t B, int64_t nkv) {
    if (kl)
        for (int64_t b = 0; b < B; b++)
            if (kl[b] < 0 || kl[b] > nkv)
                return attn__fail(ATTN_ERR_ARG,
                                  "%s: key_lengths[%" PRId64 "]=%" PRId64
                                  " must be in 0..nkv=%" PRId64,
                                  fn, b, kl[b], nkv);
    return ATTN_OK;
}

/* Query positions of the whole fold, as attn_sdpa defaults them with
 * Nkv = nkv: q_offset[b], else 0 (TOP_LEFT) or L_b - Nq. */
static int64_t fold_q_offset(const attn_opts *o, int64_t b, int64_t Nq, int64_t nkv) {
    if (o->q_offset) return o->q_offset[b];
    if (o->causal == ATTN_CAUSAL_TOP_LEFT) return 0;
    return (o->key_lengths ? o->key_lengths[b] : nkv) - Nq;
}

attn_status attn_fold_init(attn_fold *f, const attn_view *q, int64_t nkv, const attn_opts *opts) {
    const char *fn = "attn_fold_init";
    attn_status s = attn__isa_ready(fn);
    if (s) return s;
    attn_opts defaults = attn_opts_default();
    const attn_opts *o = opts ? opts : &defaults;
    if ((s = attn__check_view(fn, "q", q, 4))) return s;
    if (nkv < 1) return attn__fail(ATTN_ERR_SHAPE, "%s: nkv=%" PRId64 " must be >= 1", fn, nkv);
    const int64_t B = q->shape[0], H = q->shape[1], Nq = q->shape[2];
    if (!f) return attn__fail(ATTN_ERR_NULL, "%s: f must not be NULL", fn);
    const int64_t dv = f->acc.ndim == 4 ? f->acc.shape[3] : 0;
    attn_view mask = {0}; /* set only with a mask (initialised: the compiler may test its stride) */
    const attn_view *in[2] = {q, o->mask};
    static const char *const in_names[2] = {"q", "mask"};
    if ((o->mask && (s = attn__check_view(fn, "mask", o->mask, 4))) ||
        (s = check_state(fn, f, B, H, Nq, dv, in, in_names, 2)) || (s = check_opts(fn, o)) ||
        (s = check_key_lengths(fn, o->key_lengths, B, nkv)))
        return s;
    if (o->causal != ATTN_CAUSAL_NONE && o->causal != ATTN_CAUSAL_TOP_LEFT &&
        o->causal != ATTN_CAUSAL_BOTTOM_RIGHT)
        return attn__fail(ATTN_ERR_ARG, "%s: opts.causal=%d is not an attn_causal value", fn,
                          (int)o->causal);
    if (o->mask && (s = fold_mask(fn, o->mask, B, H, Nq, nkv, &mask))) return s;
    /* attn_sdpa's checks of the scale, positions and modifiers, on stand-in
     * keys (stride 0, never read) */
    static float none[1];
    attn_view kd = attn_view_4d(none, B, H, 1, q->shape[3]), vd = attn_view_4d(none, B, H, 1, dv);
    for (int t = 0; t < 4; t++)
        kd.stride[t] = vd.stride[t] = 0;
    attn_opts so = *o;
    so.mask = NULL;
    so.key_lengths = NULL;
    attn__sdpa_problem V = {0};
    if ((s = attn__sdpa_check(fn, q, &kd, &vd, &f->acc, &so, &V))) return s;

    /* The visibility rule of the whole fold, for the row's key end. */
    attn__sdpa_problem W = {0};
    W.Nq = Nq;
    W.Nkv = nkv;
    W.causal = o->causal;
    W.key_lengths = o->key_lengths;
    W.q_offset = o->q_offset;
    W.k_offset = o->k_offset;
    W.window_left = o->window_left;
    W.window_right = o->window_right;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Nq; i++) {
                /* The mask offset exactly as the flash path's mask_offset
                 * finds it over the row's keys [lo, end) (at least the
                 * sink). */
                float mx = -INFINITY;
                if (o->mask) {
                    int64_t lo, end;
                    attn__key_range(&W, b, i, &lo, &end);
                    const float *mrow = attn__at4(&mask, b, h, i, 0); /* mask[b, h, i, :] */
                    /* a mask broadcast over the keys has one value a row:
                     * one look, not nkv (nkv may be far beyond any K) */
                    if (mask.stride[3] == 0 && end > lo) end = lo + 1;
                    for (int64_t j = lo; j < end; j++) {
                        const float mv = mrow[j * mask.stride[3]];
                        if (mv > mx && mv != INFINITY) mx = mv;
                    }
                    if (o->sinks && !(o->sinks[h] <= mx)) mx = o->sinks[h];
                }
                const float shift = isfinite(mx) ? mx : 0.0f;
                /* The sink enters once, here: (sinks[h] - shift, 1, 0). */
                *attn__at3(&f->shift, b, h, i) = shift;
                *attn__at3(&f->max, b, h, i) = o->sinks ? o->sinks[h] - shift : -INFINITY;
                *attn__at3(&f->sum, b, h, i) = o->sinks ? 1.0f : 0.0f;
                float *arow = attn__at4(&f->acc, b, h, i, 0); /* acc[b, h, i, :] */
                for (int64_t e = 0; e < dv; e++)
                    arow[e * f->acc.stride[3]] = 0.0f;
            }
    f->nkv = nkv;
    return ATTN_OK;
}

attn_status attn_fold_step(attn_fold *f, const attn_view *q, const attn_view *k, const attn_view *v,
                           int64_t k_offset, const attn_opts *opts) {
    const char *fn = "attn_fold_step";
    attn_status s = attn__isa_ready(fn);
    if (s) return s;
    attn_opts defaults = attn_opts_default();
    const attn_opts *o = opts ? opts : &defaults;
    if (!f) return attn__fail(ATTN_ERR_NULL, "%s: f must not be NULL", fn);
    if ((s = check_opts(fn, o))) return s;
    /* attn_sdpa's checks of q, k, v (with acc as the output), scale, causal,
     * threads; mask and key lengths are the whole fold's, checked here. */
    attn_opts so = *o;
    so.mask = NULL;
    so.key_lengths = NULL;
    so.q_offset = NULL;
    const attn_view *in[4] = {q, k, v, o->mask};
    static const char *const in_names[4] = {"q", "k", "v", "mask"};
    if ((s = attn__check_view(fn, "q", q, 4)) || (s = attn__check_view(fn, "k", k, 4)) ||
        (s = attn__check_view(fn, "v", v, 4)) ||
        (o->mask && (s = attn__check_view(fn, "mask", o->mask, 4))) ||
        (s = check_state(fn, f, q->shape[0], q->shape[1], q->shape[2], v->shape[3], in, in_names,
                         4)))
        return s;
    attn__sdpa_problem P = {0};
    if ((s = attn__sdpa_check(fn, q, k, v, &f->acc, &so, &P))) return s;
    const int64_t nkv = f->nkv;
    if (nkv < 1)
        return attn__fail(ATTN_ERR_ARG, "%s: f->nkv=%" PRId64 " (call attn_fold_init first)", fn,
                          nkv);
    if (k_offset < 0 || k_offset % ATTN_KEY_CHUNK != 0 || k_offset >= nkv)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: k_offset=%" PRId64
                          " must be a multiple of ATTN_KEY_CHUNK=%d in 0..nkv-1=%" PRId64,
                          fn, k_offset, ATTN_KEY_CHUNK, nkv - 1);
    const int64_t end = k_offset + P.Nkv; /* no overflow: Nkv and k_offset < nkv fit */
    if (end > nkv || (end % ATTN_KEY_CHUNK != 0 && end != nkv))
        return attn__fail(ATTN_ERR_ARG,
                          "%s: k_offset + k.shape[2] = %" PRId64 " + %" PRId64
                          " must be a multiple of ATTN_KEY_CHUNK=%d or nkv=%" PRId64
                          " (at most nkv)",
                          fn, k_offset, P.Nkv, ATTN_KEY_CHUNK, nkv);
    if ((s = check_key_lengths(fn, o->key_lengths, P.B, nkv))) return s;
    attn_view mask = {0}; /* set only with a mask (initialised: the compiler may test its stride) */
    if (o->mask && (s = fold_mask(fn, o->mask, P.B, P.H, P.Nq, nkv, &mask))) return s;

    /* The shard as an attn_sdpa problem of its own: key lengths and the
     * mask cut to its keys, positions made explicit. */
    int64_t *kl = attn__alloc((size_t)P.B, 2 * sizeof(int64_t));
    if (!kl) return attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate %" PRId64 " offsets", fn, P.B);
    int64_t *qo = kl + P.B;
    for (int64_t b = 0; b < P.B; b++) {
        const int64_t L = (o->key_lengths ? o->key_lengths[b] : nkv) - k_offset;
        kl[b] = L < 0 ? 0 : L > P.Nkv ? P.Nkv : L;
        qo[b] = fold_q_offset(o, b, P.Nq, nkv);
    }
    P.key_lengths = kl;
    P.q_offset = qo;
    P.k_offset = o->k_offset + k_offset;
    if (o->mask) {
        P.has_mask = true;
        P.mask = mask;
        P.mask.data += k_offset * mask.stride[3]; /* seek to mask[:, :, :, k_offset] */
        P.mask.shape[3] = P.Nkv;
    }
    attn__fold_io F = {f->max, f->sum, f->acc, f->shift, false};
    s = attn__flash_fold(&P, &F);
    attn__free(kl);
    return s;
}

attn_status attn_fold_finish(const attn_fold *f, attn_view *out, attn_view *lse,
                             const attn_opts *opts) {
    const char *fn = "attn_fold_finish";
    attn_status s = attn__isa_ready(fn);
    if (s) return s;
    if (!f) return attn__fail(ATTN_ERR_NULL, "%s: f must not be NULL", fn);
    if ((s = attn__check_view(fn, "f->acc", &f->acc, 4))) return s;
    const int64_t B = f->acc.shape[0], H = f->acc.shape[1], Nq = f->acc.shape[2],
                  dv = f->acc.shape[3];
    const attn_view *in[2] = {out, lse};
    static const char *const in_names[2] = {"out", "lse"};
    if ((s = attn__check_view(fn, "out", out, 4))) return s;
    if (lse && (s = attn__check_view(fn, "lse", lse, 3))) return s;
    if ((s = check_state(fn, f, B, H, Nq, dv, in, in_names, 2))) return s;
    const int64_t want[4] = {B, H, Nq, dv};
    for (int i = 0; i < 4; i++) {
        if (out->shape[i] != want[i])
            return attn__fail(ATTN_ERR_SHAPE,
                              "%s: out.shape[%d]=%" PRId64 " but f->acc.shape[%d]=%" PRId64, fn, i,
                              out->shape[i], i, want[i]);
        if (lse && i < 3 && lse->shape[i] != want[i])
            return attn__fail(ATTN_ERR_SHAPE,
                              "%s: lse.shape[%d]=%" PRId64 " but f->acc.shape[%d]=%" PRId64, fn, i,
                              lse->shape[i], i, want[i]);
    }
    if ((s = attn__check_output(fn, "out", out))) return s;
    if (lse && ((s = attn__check_output(fn, "lse", lse)) ||
                (s = attn__check_disjoint(fn, "lse", lse, "out", out))))
        return s;

    /* A problem with the state's rows and no keys (Hkv = 1: tiles over all
     * heads; the k, v views are never read). */
    static float dummy;
    attn__sdpa_problem P = {0};
    P.B = B;
    P.H = H;
    P.Hkv = 1;
    P.Nq = Nq;
    P.Nkv = 1;
    P.d = 1;
    P.dv = dv;
    P.k = attn_view_4d(&dummy, 1, 1, 1, 1);
    P.v = P.k;
    P.q = P.k;
    P.out = *out;
    P.lse = lse;
    P.threads = attn__threads(opts ? opts->num_threads : 0);
    attn__fold_io F = {f->max, f->sum, f->acc, f->shift, true};
    return attn__flash_fold(&P, &F);
}
