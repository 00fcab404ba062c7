/* sdpa.c - attn_sdpa and attn_merge for Python. */
#include "opts.h"

/* sdpa(q, k, v, <options>, want_lse, want_weights) -> (out, lse|None, w|None)
 * q, k, v rank 4: attn/core.py gives lower ranks their leading axes. */
enum { Q, K, V, OPTS, WANT_LSE = OPTS + OPT_N, WANT_W, SDPA_N };
static const arg_spec sdpa_spec[SDPA_N] = {
    [Q] = {"q", ARG_ARRAY, ARG_REQUIRED, 4, 4}, [K] = {"k", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [V] = {"v", ARG_ARRAY, ARG_REQUIRED, 4, 4}, [OPTS] = ATTN_OPT_ROWS,
    [WANT_LSE] = {"want_lse", ARG_BOOL, 0},     [WANT_W] = {"want_weights", ARG_BOOL, 0},
};

static PyObject *py_sdpa(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[SDPA_N];
    conv_state st;
    PyArrayObject *out = NULL, *lse = NULL, *w = NULL;
    PyObject *res = NULL;
    attn_view out_v, lse_v, w_v;
    attn_opts opts;
    if (args_parse("sdpa", sdpa_spec, SDPA_N, args, kw, v, &st) < 0) goto done;
    const attn_view *q = &v[Q].view, *k = &v[K].view, *vv = &v[V].view;
    if (opts_build(&st, v + OPTS, q->shape[0], q->shape[1], &opts) < 0) goto done;
    int64_t oshape[4] = {q->shape[0], q->shape[1], q->shape[2], vv->shape[3]};
    int64_t wshape[4] = {q->shape[0], q->shape[1], q->shape[2], k->shape[2]};
    if ((out = out_new(4, oshape, &out_v)) == NULL) goto done;
    if (v[WANT_LSE].i) {
        if ((lse = out_new(3, oshape, &lse_v)) == NULL) goto done;
        opts.lse = &lse_v;
    }
    if (v[WANT_W].i) {
        if ((w = out_new(4, wshape, &w_v)) == NULL) goto done;
        opts.weights = &w_v;
    }
    int rc;
    CALL_NOGIL(rc, attn_sdpa(q, k, vv, &out_v, &opts));
    if (rc < 0) goto done;
    PyObject *r_out = out_finish(out, &st);
    PyObject *r_lse = lse ? out_finish(lse, &st) : (Py_INCREF(Py_None), Py_None);
    PyObject *r_w = w ? out_finish(w, &st) : (Py_INCREF(Py_None), Py_None);
    out = lse = w = NULL;
    if (r_out && r_lse && r_w) {
        res = Py_BuildValue("(NNN)", r_out, r_lse, r_w);
    } else {
        Py_XDECREF(r_out);
        Py_XDECREF(r_lse);
        Py_XDECREF(r_w);
    }
done:
    Py_XDECREF(out);
    Py_XDECREF(lse);
    Py_XDECREF(w);
    args_release(v, SDPA_N);
    return res;
}

/* merge(outs, lses) -> (out, lse) */
enum { OUTS, LSES, MERGE_N };
static const arg_spec merge_spec[MERGE_N] = {
    [OUTS] = {"outs", ARG_OBJ, ARG_REQUIRED, .min_rank = 0},
    [LSES] = {"lses", ARG_OBJ, ARG_REQUIRED, .min_rank = 0},
};

static PyObject *py_merge(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[MERGE_N];
    conv_state st;
    arg_val *ov = NULL, *lv = NULL;
    attn_view *ow = NULL, *lw = NULL;
    Py_ssize_t no = 0, nl = 0;
    PyArrayObject *out = NULL, *lse = NULL;
    PyObject *res = NULL;
    static const arg_spec outs_elem = {"outs", ARG_ARRAY, ARG_REQUIRED, .min_rank = 0};
    static const arg_spec lses_elem = {"lses", ARG_ARRAY, ARG_REQUIRED, .min_rank = 0};
    if (args_parse("merge", merge_spec, MERGE_N, args, kw, v, &st) < 0) goto done;
    if (conv_list(&st, &outs_elem, v[OUTS].obj, &no, &ov, &ow) < 0 ||
        conv_list(&st, &lses_elem, v[LSES].obj, &nl, &lv, &lw) < 0)
        goto done;
    if (no != nl) {
        PyErr_Format(PyExc_ValueError, "merge: %zd arrays in outs but %zd in lses", no, nl);
        goto done;
    }
    if (no < 1 || no > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "merge: needs at least one partial result");
        goto done;
    }
    attn_view out_v, lse_v;
    if ((out = out_new(ow[0].ndim, ow[0].shape, &out_v)) == NULL) goto done;
    if ((lse = out_new(lw[0].ndim, lw[0].shape, &lse_v)) == NULL) goto done;
    int rc;
    CALL_NOGIL(rc, attn_merge(ow, lw, (int)no, &out_v, &lse_v));
    if (rc < 0) goto done;
    PyObject *r_out = out_finish(out, &st), *r_lse = out_finish(lse, &st);
    out = lse = NULL;
    if (r_out && r_lse)
        res = Py_BuildValue("(NN)", r_out, r_lse);
    else {
        Py_XDECREF(r_out);
        Py_XDECREF(r_lse);
    }
done:
    Py_XDECREF(out);
    Py_XDECREF(lse);
    conv_list_release(ov, ow, no);
    conv_list_release(lv, lw, nl);
    args_release(v, MERGE_N);
    return res;
}

/* alibi_slopes(H) -> float32 array (H,): attn_alibi_slopes */
enum { AS_H, AS_N };
static const arg_spec alibi_spec[AS_N] = {
    [AS_H] = {"H", ARG_INT, ARG_REQUIRED | ARG_MIN, .min = 1},
};

static PyObject *py_alibi_slopes(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[AS_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("alibi_slopes", alibi_spec, AS_N, args, kw, v, &st) < 0) goto done;
    if (v[AS_H].i > ((int64_t)1 << 24)) {
        PyErr_Format(PyExc_ValueError, "alibi_slopes: H=%R is above 2**24 heads", v[AS_H].obj);
        goto done;
    }
    attn_view ov;
    PyArrayObject *r = out_new(1, &v[AS_H].i, &ov);
    if (r == NULL) goto done;
    int rc;
    CALL_NOGIL(rc, attn_alibi_slopes(v[AS_H].i, ov.data));
    if (rc == 0)
        res = (PyObject *)r;
    else
        Py_DECREF(r);
done:
    args_release(v, AS_N);
    return res;
}

PyMethodDef attn_py_sdpa_methods[] = {
    {"alibi_slopes", PY_KWFUNC(py_alibi_slopes), METH_VARARGS | METH_KEYWORDS,
     "alibi_slopes(H): attn_alibi_slopes, the ALiBi paper's slopes of H heads."},
    {"sdpa", PY_KWFUNC(py_sdpa), METH_VARARGS | METH_KEYWORDS,
     "sdpa(q, k, v, ...): attn_sdpa on rank-4 arrays; returns (out, lse|None, weights|None)."},
    {"merge", PY_KWFUNC(py_merge), METH_VARARGS | METH_KEYWORDS,
     "merge(outs, lses): attn_merge; returns (out, lse)."},
    {NULL, NULL, 0, NULL},
};
