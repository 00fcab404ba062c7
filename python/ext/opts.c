/* opts.c - attention options from argument-table rows (see opts.h). */
#include "opts.h"

#include <limits.h>
#include <math.h>

const char *const attn_py_causal_names[] = {"none", "top_left", "bottom_right", NULL};
const char *const attn_py_algo_names[] = {"auto", "reference", "flash", NULL};

int opts_build(conv_state *st, const arg_val *o, int64_t batch, attn_opts *opts) {
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
    return 0;
}
