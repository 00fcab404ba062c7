/* backward.c - attn_sdpa_backward for Python (attn/backward.py wraps it). */
#include "opts.h"

/* sdpa_backward(q, k, v, out, lse, dout, <options>, want_dmask, want_dsinks)
 *   -> (dq, dk, dv, dmask|None, dsinks|None)
 * q, k, v, out, dout rank 4 and lse rank 3: attn/backward.py gives lower
 * ranks their leading axes. dmask has the rank-4 shape of the mask as the
 * options row converted it (leading size-1 axes added). */
enum { Q, K, V, OUT, LSE, DOUT, OPTS, WANT_DMASK = OPTS + OPT_N, WANT_DSINKS, BWD_N };
static const arg_spec bwd_spec[BWD_N] = {
    [Q] = {"q", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [K] = {"k", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [V] = {"v", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [OUT] = {"out", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [LSE] = {"lse", ARG_ARRAY, ARG_REQUIRED, 3, 3},
    [DOUT] = {"dout", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [OPTS] = ATTN_OPT_ROWS,
    [WANT_DMASK] = {"want_dmask", ARG_BOOL, 0},
    [WANT_DSINKS] = {"want_dsinks", ARG_BOOL, 0},
};

enum { G_DQ, G_DK, G_DV, G_DMASK, G_DSINKS, G_N };

static PyObject *py_sdpa_backward(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[BWD_N];
    conv_state st;
    PyArrayObject *g[G_N] = {NULL};
    attn_view gv[G_N];
    PyObject *res = NULL, *r[G_N] = {NULL};
    attn_opts opts;
    if (args_parse("sdpa_backward", bwd_spec, BWD_N, args, kw, v, &st) < 0) goto done;
    const attn_view *q = &v[Q].view, *k = &v[K].view, *vv = &v[V].view;
    if (opts_build(&st, v + OPTS, q->shape[0], q->shape[1], &opts) < 0) goto done;
    attn_backward_extras x = attn_backward_extras_default();
    if ((g[G_DQ] = out_new(4, q->shape, &gv[G_DQ])) == NULL ||
        (g[G_DK] = out_new(4, k->shape, &gv[G_DK])) == NULL ||
        (g[G_DV] = out_new(4, vv->shape, &gv[G_DV])) == NULL)
        goto done;
    if (v[WANT_DMASK].i) {
        if (!opts.mask) {
            PyErr_SetString(PyExc_ValueError, "sdpa_backward: return_dmask needs a mask");
            goto done;
        }
        if ((g[G_DMASK] = out_new(4, opts.mask->shape, &gv[G_DMASK])) == NULL) goto done;
        x.dmask = &gv[G_DMASK];
    }
    if (v[WANT_DSINKS].i) {
        if (!opts.sinks) {
            PyErr_SetString(PyExc_ValueError, "sdpa_backward: return_dsinks needs sinks");
            goto done;
        }
        const int64_t h = q->shape[1];
        if ((g[G_DSINKS] = out_new(1, &h, &gv[G_DSINKS])) == NULL) goto done;
        x.dsinks = &gv[G_DSINKS];
    }
    int rc;
    CALL_NOGIL(rc, attn_sdpa_backward(q, k, vv, &v[OUT].view, &v[LSE].view, &v[DOUT].view,
                                      &gv[G_DQ], &gv[G_DK], &gv[G_DV], &opts, &x));
    if (rc < 0) goto done;
    int ok = 1;
    for (int i = 0; i < G_N; i++) {
        r[i] = g[i] ? out_finish(g[i], &st) : (Py_INCREF(Py_None), Py_None);
        g[i] = NULL;
        ok &= r[i] != NULL;
    }
    if (ok) {
        res = Py_BuildValue("(NNNNN)", r[0], r[1], r[2], r[3], r[4]);
        for (int i = 0; i < G_N; i++)
            r[i] = NULL;
    }
done:
    for (int i = 0; i < G_N; i++) {
        Py_XDECREF(g[i]);
        Py_XDECREF(r[i]);
    }
    args_release(v, BWD_N);
    return res;
}

PyMethodDef attn_py_backward_methods[] = {
    {"sdpa_backward", PY_KWFUNC(py_sdpa_backward), METH_VARARGS | METH_KEYWORDS,
     "sdpa_backward(q, k, v, out, lse, dout, ...): attn_sdpa_backward on rank-4 arrays; returns "
     "(dq, dk, dv, dmask|None, dsinks|None)."},
    {NULL, NULL, 0, NULL},
};
