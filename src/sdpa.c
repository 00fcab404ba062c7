/* sdpa.c - attn_sdpa: validate everything, then pick an algorithm.
 * The checks all run before any output is written. */
#include "internal.h"
#include "flash/flash.h"
#include "sdpa_backward.h"

#include <inttypes.h>

attn_opts attn_opts_default(void) {
    attn_opts o = {0};
    o.scale = NAN;
    o.causal = ATTN_CAUSAL_NONE;
    o.algo = ATTN_ALGO_AUTO;
    o.q_offset = NULL;
    o.k_offset = 0;
    o.window_left = -1;
    o.window_right = -1;
    o.softcap = 0.0f;
    o.alibi_slopes = NULL;
    o.sinks = NULL;
    return o;
}

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int attn_dropout_keep(uint64_t seed, int64_t b, int64_t h, int64_t i, int64_t j, float p) {
    uint64_t x = mix64(seed ^ (uint64_t)b);
    x = mix64(x ^ (uint64_t)h);
    x = mix64(x ^ (uint64_t)i);
    x = mix64(x ^ (uint64_t)j);
    uint32_t u = (uint32_t)(x >> 40);
    if (!(p > 0.0f)) return 1; /* p <= 0 or NaN: nothing is dropped */
    if (p >= 1.0f) return 0;
    return u >= (uint32_t)((double)p * 16777216.0);
}

/* The mask as a rank-4 view with stride 0 on its broadcast dimensions. */
static attn_status check_mask(const char *fn, const attn_view *m, const attn__sdpa_problem *P,
                              attn_view *norm) {
    const int64_t full[4] = {P->B, P->H, P->Nq, P->Nkv};
    static const char *const names[4] = {"B", "H", "Nq", "Nkv"};
    return attn__check_mask(fn, m, full, names, norm);
}

static attn_status check_optional_output(const char *fn, const char *name, attn_view *o, int ndim,
                                         const int64_t *want, const attn__sdpa_problem *P,
                                         const attn_view *mask) {
    attn_status s = attn__check_view(fn, name, o, ndim);
    if (s) return s;
    static const char *const dims = "BHNN";
    for (int i = 0; i < ndim; i++)
        if (o->shape[i] != want[i])
            return attn__fail(ATTN_ERR_SHAPE,
                              "%s: %s.shape[%d]=%" PRId64 " but must be %" PRId64 " (%c)", fn, name,
                              i, o->shape[i], want[i], dims[i]);
    if ((s = attn__check_output(fn, name, o))) return s;
    if ((s = attn__check_disjoint(fn, name, o, "q", &P->q))) return s;
    if ((s = attn__check_disjoint(fn, name, o, "k", &P->k))) return s;
    if ((s = attn__check_disjoint(fn, name, o, "v", &P->v))) return s;
    if ((s = attn__check_disjoint(fn, name, o, "out", &P->out))) return s;
    if (mask && (s = attn__check_disjoint(fn, name, o, "mask", mask))) return s;
    return ATTN_OK;
}

attn_status attn__check_modifiers(const char *fn, const attn_opts *o, int64_t B, int64_t H,
                                  int64_t Nq, int64_t Nk, const char *nk_name) {
    const int64_t MAXP = ATTN__MAX_POS;
    if (o->k_offset < -MAXP || o->k_offset > MAXP - (Nk - 1))
        return attn__fail(ATTN_ERR_ARG,
                          "%s: opts.k_offset=%" PRId64
                          " puts key positions k_offset + j (j < %s=%" PRId64 ") outside +-2^61",
                          fn, o->k_offset, nk_name, Nk);
    if (o->q_offset)
        for (int64_t b = 0; b < B; b++)
            if (o->q_offset[b] < -MAXP || o->q_offset[b] > MAXP - (Nq - 1))
                return attn__fail(ATTN_ERR_ARG,
                                  "%s: opts.q_offset[%" PRId64 "]=%" PRId64
                                  " puts query positions q_offset + i (i < Nq=%" PRId64
                                  ") outside +-2^61",
                                  fn, b, o->q_offset[b], Nq);
    if (o->window_left < -1)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: opts.window_left=%" PRId64 " must be >= 0, or -1 for unbounded", fn,
                          o->window_left);
    if (o->window_right < -1)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: opts.window_right=%" PRId64 " must be >= 0, or -1 for unbounded", fn,
                          o->window_right);
    if (!(o->softcap >= 0.0f) || isinf(o->softcap))
        return attn__fail(ATTN_ERR_ARG, "%s: opts.softcap=%g must be finite and >= 0 (0: off)", fn,
                          (double)o->softcap);
    for (int64_t h = 0; o->alibi_slopes && h < H; h++)
        if (!isfinite(o->alibi_slopes[h]))
            return attn__fail(ATTN_ERR_ARG,
                              "%s: opts.alibi_slopes[%" PRId64 "]=%g must be finite (H=%" PRId64
                              " values)",
                              fn, h, (double)o->alibi_slopes[h], H);
    for (int64_t h = 0; o->sinks && h < H; h++)
        if (!isfinite(o->sinks[h]))
            return attn__fail(ATTN_ERR_ARG,
                              "%s: opts.sinks[%" PRId64 "]=%g must be finite (H=%" PRId64
                              " values)",
                              fn, h, (double)o->sinks[h], H);
    return ATTN_OK;
}

/* The score modifiers of design.md: values and positions checked, copied to P. */
static attn_status check_modifiers(const char *fn, const attn_opts *o, attn__sdpa_problem *P) {
    const attn_status s = attn__check_modifiers(fn, o, P->B, P->H, P->Nq, P->Nkv, "Nkv");
    if (s) return s;
    P->q_offset = o->q_offset;
    P->k_offset = o->k_offset;
    P->window_left = o->window_left;
    P->window_right = o->window_right;
    P->softcap = o->softcap;
    P->alibi_slopes = o->alibi_slopes;
    P->sinks = o->sinks;
    return ATTN_OK;
}

/* An output must not overlap the plain arrays the call reads either. */
static attn_status check_arrays_disjoint(const char *fn, const char *name, const attn_view *o,
                                         const attn__sdpa_problem *P) {
    const size_t B = (size_t)P->B, H = (size_t)P->H;
    attn_status s;
    if ((s = attn__check_disjoint_array(fn, name, o, "key_lengths", P->key_lengths,
                                        B * sizeof(int64_t))) ||
        (s = attn__check_disjoint_array(fn, name, o, "q_offset", P->q_offset,
                                        B * sizeof(int64_t))) ||
        (s = attn__check_disjoint_array(fn, name, o, "alibi_slopes", P->alibi_slopes,
                                        H * sizeof(float))) ||
        (s = attn__check_disjoint_array(fn, name, o, "sinks", P->sinks, H * sizeof(float))))
        return s;
    return ATTN_OK;
}

static attn_status build_problem(const char *fn, const attn_view *q, const attn_view *k,
                                 const attn_view *v, attn_view *out, const attn_opts *o,
                                 attn__sdpa_problem *P) {
    attn_status s;
    if ((s = attn__check_view(fn, "q", q, 4)) || (s = attn__check_view(fn, "k", k, 4)) ||
        (s = attn__check_view(fn, "v", v, 4)) || (s = attn__check_view(fn, "out", out, 4)))
        return s;
    if ((s = attn__check_dim(fn, "k", k, 0, "q", q, 0, "batch size must match")) ||
        (s = attn__check_dim(fn, "v", v, 0, "q", q, 0, "batch size must match")) ||
        (s = attn__check_dim(fn, "k", k, 3, "q", q, 3, "head size must match")) ||
        (s = attn__check_dim(fn, "v", v, 1, "k", k, 1, "key/value heads must match")) ||
        (s = attn__check_dim(fn, "v", v, 2, "k", k, 2, "key/value tokens must match")) ||
        (s = attn__check_dim(fn, "out", out, 0, "q", q, 0, "batch size must match")) ||
        (s = attn__check_dim(fn, "out", out, 1, "q", q, 1, "query heads must match")) ||
        (s = attn__check_dim(fn, "out", out, 2, "q", q, 2, "query tokens must match")) ||
        (s = attn__check_dim(fn, "out", out, 3, "v", v, 3, "value head size must match")))
        return s;
    if (q->shape[1] % k->shape[1] != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: q.shape[1]=%" PRId64
                          " query heads is not a multiple of k.shape[1]=%" PRId64
                          " key/value heads",
                          fn, q->shape[1], k->shape[1]);
    P->B = q->shape[0];
    P->H = q->shape[1];
    P->Nq = q->shape[2];
    P->d = q->shape[3];
    P->Hkv = k->shape[1];
    P->Nkv = k->shape[2];
    P->dv = v->shape[3];
    P->q = *q;
    P->k = *k;
    P->v = *v;
    P->out = *out;
    if ((s = attn__check_output(fn, "out", out)) ||
        (s = attn__check_disjoint(fn, "out", out, "q", q)) ||
        (s = attn__check_disjoint(fn, "out", out, "k", k)) ||
        (s = attn__check_disjoint(fn, "out", out, "v", v)))
        return s;

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
    if (!(o->dropout_p >= 0.0f && o->dropout_p < 1.0f))
        return attn__fail(ATTN_ERR_ARG, "%s: opts.dropout_p=%g must be in [0, 1)", fn,
                          (double)o->dropout_p);
    P->scale = isnan(o->scale) ? (float)(1.0 / sqrt((double)P->d)) : o->scale;
    P->causal = o->causal;
    P->dropout_p = o->dropout_p;
    P->dropout_seed = o->dropout_seed;
    P->threads = attn__threads(o->num_threads);

    P->has_mask = o->mask != NULL;
    if (o->mask) {
        if ((s = check_mask(fn, o->mask, P, &P->mask))) return s;
        if ((s = attn__check_disjoint(fn, "out", out, "mask", o->mask))) return s;
    }
    P->key_lengths = o->key_lengths;
    if (o->key_lengths)
        for (int64_t b = 0; b < P->B; b++)
            if (o->key_lengths[b] < 0 || o->key_lengths[b] > P->Nkv)
                return attn__fail(ATTN_ERR_ARG,
                                  "%s: key_lengths[%" PRId64 "]=%" PRId64
                                  " must be in 0..Nkv=%" PRId64,
                                  fn, b, o->key_lengths[b], P->Nkv);
    if ((s = check_modifiers(fn, o, P))) return s;
    P->lse = o->lse;
    P->weights = o->weights;
    if ((s = check_arrays_disjoint(fn, "out", out, P))) return s;
    if (o->lse) {
        const int64_t want[3] = {P->B, P->H, P->Nq};
        if ((s = check_optional_output(fn, "lse", o->lse, 3, want, P, o->mask)) ||
            (s = check_arrays_disjoint(fn, "lse", o->lse, P)))
            return s;
    }
    if (o->weights) {
        const int64_t want[4] = {P->B, P->H, P->Nq, P->Nkv};
        if ((s = check_optional_output(fn, "weights", o->weights, 4, want, P, o->mask)) ||
            (s = check_arrays_disjoint(fn, "weights", o->weights, P)))
            return s;
        if (o->lse && (s = attn__check_disjoint(fn, "weights", o->weights, "lse", o->lse)))
            return s;
    }
    return ATTN_OK;
}

/* Pick the algorithm for a validated problem. */
static attn_status attn__sdpa_select(const attn__sdpa_problem *P, attn_algo algo) {
    /* The flash path never forms the weights. */
    if (algo != ATTN_ALGO_REFERENCE && attn__flash_applies(P)) return attn__sdpa_flash(P);
    return attn__sdpa_ref(P);
}

attn_status attn_sdpa(const attn_view *q, const attn_view *k, const attn_view *v, attn_view *out,
                      const attn_opts *opts) {
    const char *fn = "attn_sdpa";
    attn_status s = attn__isa_ready(fn);
    if (s) return s;
    attn_opts defaults = attn_opts_default();
    const attn_opts *o = opts ? opts : &defaults;
    attn__sdpa_problem P = {0};
    if ((s = build_problem(fn, q, k, v, out, o, &P))) return s;
    return attn__sdpa_select(&P, o->algo);
}

/* The checks above, shared with attn_sdpa_backward and the fold. */
attn_status attn__sdpa_check(const char *fn, const attn_view *q, const attn_view *k,
                             const attn_view *v, attn_view *out, const attn_opts *o,
                             attn__sdpa_problem *P) {
    return build_problem(fn, q, k, v, out, o, P);
}
