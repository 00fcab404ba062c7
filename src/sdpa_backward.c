/* sdpa_backward.c - attn_sdpa_backward: validate everything (the forward's
 * checks from src/sdpa.c, then the gradients'), then pick an algorithm.
 * The checks all run before any output is written. */
#include "sdpa_backward.h"

#include <inttypes.h>

attn_backward_extras attn_backward_extras_default(void) {
    attn_backward_extras x = {0};
    return x;
}

/* v has exactly the shape of ref (rank 4 or 3). */
static attn_status check_same_shape(const char *fn, const char *name, const attn_view *v,
                                    const char *ref_name, const attn_view *ref) {
    attn_status s = attn__check_view(fn, name, v, ref->ndim);
    if (s) return s;
    for (int i = 0; i < ref->ndim; i++)
        if (v->shape[i] != ref->shape[i])
            return attn__fail(ATTN_ERR_SHAPE,
                              "%s: %s.shape[%d]=%" PRId64 " but %s.shape[%d]=%" PRId64
                              " (shapes must match)",
                              fn, name, i, v->shape[i], ref_name, i, ref->shape[i]);
    return ATTN_OK;
}

/* An output: its own shape checked by the caller, here a proper output
 * overlapping none of the n named views. */
static attn_status check_gradient(const char *fn, const char *name, const attn_view *o,
                                  const char *const *names, const attn_view *const *views, int n) {
    attn_status s = attn__check_output(fn, name, o);
    for (int a = 0; a < n && !s; a++)
        if (views[a]) s = attn__check_disjoint(fn, name, o, names[a], views[a]);
    return s;
}

static attn_status build_backward(const char *fn, const attn_view *q, const attn_view *k,
                                  const attn_view *v, const attn_view *out, const attn_view *lse,
                                  const attn_view *dout, attn_view *dq, attn_view *dk,
                                  attn_view *dv, const attn_opts *o, const attn_backward_extras *x,
                                  attn__bwd_problem *BP) {
    attn_status s;
    /* The forward's problem, without its optional outputs (lse is an input here). */
    attn_opts fo = *o;
    fo.lse = NULL;
    fo.weights = NULL;
    attn_view out_copy;
    if (!out) return attn__fail(ATTN_ERR_NULL, "%s: out must not be NULL", fn);
    out_copy = *out;
    if ((s = attn__sdpa_check(fn, q, k, v, &out_copy, &fo, &BP->f))) return s;
    const attn__sdpa_problem *P = &BP->f;

    if ((s = attn__check_view(fn, "lse", lse, 3))) return s;
    const int64_t want_lse[3] = {P->B, P->H, P->Nq};
    for (int i = 0; i < 3; i++)
        if (lse->shape[i] != want_lse[i])
            return attn__fail(ATTN_ERR_SHAPE,
                              "%s: lse.shape[%d]=%" PRId64 " but must be %" PRId64
                              " (lse is (B, H, Nq))",
                              fn, i, lse->shape[i], want_lse[i]);
    if ((s = check_same_shape(fn, "dout", dout, "out", out)) ||
        (s = check_same_shape(fn, "dq", dq, "q", q)) ||
        (s = check_same_shape(fn, "dk", dk, "k", k)) ||
        (s = check_same_shape(fn, "dv", dv, "v", v)))
        return s;
    attn_view *dmask = x ? x->dmask : NULL;
    if (dmask) {
        if (!o->mask)
            return attn__fail(ATTN_ERR_ARG, "%s: extras.dmask is set but opts.mask is NULL", fn);
        if ((s = check_same_shape(fn, "dmask", dmask, "mask", o->mask))) return s;
    }

    attn_view *dsinks = x ? x->dsinks : NULL;
    if (dsinks) {
        if (!o->sinks)
            return attn__fail(ATTN_ERR_ARG, "%s: extras.dsinks is set but opts.sinks is NULL", fn);
        if ((s = attn__check_view(fn, "dsinks", dsinks, 1))) return s;
        if (dsinks->shape[0] != P->H)
            return attn__fail(ATTN_ERR_SHAPE,
                              "%s: dsinks.shape[0]=%" PRId64 " but must be H=%" PRId64, fn,
                              dsinks->shape[0], P->H);
    }

    static const char *const names[] = {"q",    "k",  "v",  "out", "lse",   "dout",
                                        "mask", "dq", "dk", "dv",  "dmask", "dsinks"};
    const attn_view *const views[] = {q, k, v, out, lse, dout, o->mask, dq, dk, dv, dmask, dsinks};
    /* Each output against the inputs and the outputs before it. */
    if ((s = check_gradient(fn, "dq", dq, names, views, 7)) ||
        (s = check_gradient(fn, "dk", dk, names, views, 8)) ||
        (s = check_gradient(fn, "dv", dv, names, views, 9)) ||
        (dmask && (s = check_gradient(fn, "dmask", dmask, names, views, 10))) ||
        (dsinks && (s = check_gradient(fn, "dsinks", dsinks, names, views, 11))))
        return s;
    /* The sinks (H floats) must not be written either. */
    if (dsinks) {
        const attn_view sv = attn_view_1d((float *)o->sinks, P->H);
        if ((s = attn__check_disjoint(fn, "dsinks", dsinks, "sinks", &sv))) return s;
    }

    BP->lse = *lse;
    BP->dout = *dout;
    BP->dq = *dq;
    BP->dk = *dk;
    BP->dv = *dv;
    BP->has_dmask = dmask != NULL;
    if (dmask) BP->dmask = *dmask;
    BP->has_dsinks = dsinks != NULL;
    if (dsinks) BP->dsinks = *dsinks;
    return ATTN_OK;
}

attn_status attn_sdpa_backward(const attn_view *q, const attn_view *k, const attn_view *v,
                               const attn_view *out, const attn_view *lse, const attn_view *dout,
                               attn_view *dq, attn_view *dk, attn_view *dv, const attn_opts *opts,
                               const attn_backward_extras *extras) {
    const char *fn = "attn_sdpa_backward";
    attn_status s = attn__isa_ready(fn);
    if (s) return s;
    attn_opts defaults = attn_opts_default();
    const attn_opts *o = opts ? opts : &defaults;
    attn__bwd_problem BP = {0};
    if ((s = build_backward(fn, q, k, v, out, lse, dout, dq, dk, dv, o, extras, &BP))) return s;
    if (o->algo != ATTN_ALGO_REFERENCE && attn__flash_backward_applies(&BP))
        return attn__sdpa_backward_flash(&BP);
    return attn__sdpa_backward_ref(&BP);
}
