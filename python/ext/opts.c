/* opts.c - attention options from argument-table rows (see opts.h). */
#include "opts.h"

#include <limits.h>
#include <math.h>

const char *const attn_py_causal_names[] = {"none", "top_left", "bottom_right", NULL};
const char *const attn_py_algo_names[] = {"auto", "reference", "flash", NULL};

/* A per-head float table (alibi_slopes, sinks): H finite values. */
static int per_head(conv_state *st, const arg_val *v, const char *name, int64_t heads,
                    const float **dst) {
    if (!v->given) return 0;
    if (v->view.shape[0] != heads) {
        PyErr_Format(PyExc_ValueError, "%s: %s holds %lld values but there are %lld query heads",
                     st->fn, name, (long long)v->view.shape[0], (long long)heads);
        return -1;
    }
    const float *p = v->view.data;
    for (int64_t h = 0; h < heads; h++)
        if (!isfinite(p[h])) {
            PyErr_Format(PyExc_ValueError, "%s: %s[%lld]=%s must be finite", st->fn, name,
                         (long long)h,
                         isnan(p[h]) ? "nan"
                         : p[h] > 0  ? "inf"
                                     : "-inf");
            return -1;
        }
    *dst = p;
    return 0;
}

int opts_build(conv_state *st, const arg_val *o, int64_t batch, int64_t heads, attn_opts *opts) {
    *opts = attn_opts_default();
    if (o[OPT_SCALE].given) {
        double s = o[OPT_SCALE].f;
        if (isinf(s)) {
            PyErr_Format(PyExc_ValueError, "%s: scale=%R must be finite (None: 1/sqrt(d))", st->fn,
                         o[OPT_SCALE].obj);
            return -1;
        }
        opts->scale = (float)s;
    }
    if (o[OPT_CAUSAL].given) opts->causal = (attn_causal)o[OPT_CAUSAL].i;
    if (o[OPT_DROPOUT].given) {
        double p = o[OPT_DROPOUT].f;
        if (!(p >= 0.0 && p < 1.0)) {
            PyErr_Format(PyExc_ValueError, "%s: dropout_p=%R must be in [0, 1)", st->fn,
                         o[OPT_DROPOUT].obj);
            return -1;
        }
        opts->dropout_p = (float)p;
    }
    if (o[OPT_SEED].given) opts->dropout_seed = o[OPT_SEED].u;
    if (o[OPT_THREADS].given)
        opts->num_threads = o[OPT_THREADS].i > INT_MAX ? INT_MAX : (int)o[OPT_THREADS].i;
    if (o[OPT_ALGO].given) opts->algo = (attn_algo)o[OPT_ALGO].i;
    if (o[OPT_MASK].given) opts->mask = o[OPT_MASK].vp;
    if (o[OPT_KEYLEN].given) {
        if (o[OPT_KEYLEN].len != batch) {
            PyErr_Format(PyExc_ValueError,
                         "%s: key_lengths must hold %lld values (one per batch entry), got %lld",
                         st->fn, (long long)batch, (long long)o[OPT_KEYLEN].len);
            return -1;
        }
        opts->key_lengths = o[OPT_KEYLEN].i64;
    }
    if (o[OPT_Q_OFFSET].given) {
        if (o[OPT_Q_OFFSET].len != batch) {
            PyErr_Format(PyExc_ValueError,
                         "%s: q_offset must hold %lld values (one per batch entry), got %lld",
                         st->fn, (long long)batch, (long long)o[OPT_Q_OFFSET].len);
            return -1;
        }
        opts->q_offset = o[OPT_Q_OFFSET].i64;
    }
    if (o[OPT_K_OFFSET].given) opts->k_offset = o[OPT_K_OFFSET].i;
    if (o[OPT_WINDOW_LEFT].given) opts->window_left = o[OPT_WINDOW_LEFT].i;
    if (o[OPT_WINDOW_RIGHT].given) opts->window_right = o[OPT_WINDOW_RIGHT].i;
    if (o[OPT_SOFTCAP].given) {
        double c = o[OPT_SOFTCAP].f;
        if (!(c >= 0.0) || isinf(c)) {
            PyErr_Format(PyExc_ValueError, "%s: softcap=%R must be finite and >= 0 (0: off)",
                         st->fn, o[OPT_SOFTCAP].obj);
            return -1;
        }
        opts->softcap = (float)c;
    }
    if (per_head(st, &o[OPT_ALIBI], "alibi_slopes", heads, &opts->alibi_slopes) < 0 ||
        per_head(st, &o[OPT_SINKS], "sinks", heads, &opts->sinks) < 0)
        return -1;
    return 0;
}
