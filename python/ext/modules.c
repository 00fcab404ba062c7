/* modules.c - softmax, layer_norm, linear, single-head and multi-head
 * attention modules for Python. */
#include "opts.h"

/* The result array: the caller's `out` (returned as is) or a new float32
 * array of `shape` (returned as float64 when an input was). */
static PyArrayObject *result_array(const arg_val *outv, int ndim, const int64_t *shape,
                                   attn_view *rv) {
    if (outv->given) {
        Py_INCREF(outv->ref);
        *rv = outv->view;
        return outv->ref;
    }
    return out_new(ndim, shape, rv);
}

static PyObject *result_finish(PyArrayObject *r, const arg_val *outv, const conv_state *st) {
    return outv->given ? (PyObject *)r : out_finish(r, st);
}

/* softmax(x, out=None) */
enum { SM_X, SM_OUT, SM_N };
static const arg_spec softmax_spec[SM_N] = {
    [SM_X] = {"x", ARG_ARRAY, ARG_REQUIRED},
    [SM_OUT] = {"out", ARG_OUT, 0},
};

static PyObject *py_softmax(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[SM_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("softmax", softmax_spec, SM_N, args, kw, v, &st) < 0) goto done;
    attn_view y;
    PyArrayObject *r = result_array(&v[SM_OUT], v[SM_X].view.ndim, v[SM_X].view.shape, &y);
    if (r == NULL) goto done;
    int rc;
    CALL_NOGIL(rc, attn_softmax(&v[SM_X].view, &y));
    if (rc == 0)
        res = result_finish(r, &v[SM_OUT], &st);
    else
        Py_DECREF(r);
done:
    args_release(v, SM_N);
    return res;
}

/* layer_norm(x, gamma=None, beta=None, eps=1e-5) */
enum { LN_X, LN_GAMMA, LN_BETA, LN_EPS, LN_N };
static const arg_spec layer_norm_spec[LN_N] = {
    [LN_X] = {"x", ARG_ARRAY, ARG_REQUIRED},
    [LN_GAMMA] = {"gamma", ARG_ARRAY, 0},
    [LN_BETA] = {"beta", ARG_ARRAY, 0},
    [LN_EPS] = {"eps", ARG_FLOAT, ARG_F32},
};

static PyObject *py_layer_norm(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[LN_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("layer_norm", layer_norm_spec, LN_N, args, kw, v, &st) < 0) goto done;
    float eps = v[LN_EPS].given ? (float)v[LN_EPS].f : 1e-5f;
    attn_view y;
    PyArrayObject *r = out_new(v[LN_X].view.ndim, v[LN_X].view.shape, &y);
    if (r == NULL) goto done;
    int rc;
    CALL_NOGIL(rc, attn_layer_norm(&v[LN_X].view, v[LN_GAMMA].vp, v[LN_BETA].vp, eps, &y));
    if (rc == 0)
        res = out_finish(r, &st);
    else
        Py_DECREF(r);
done:
    args_release(v, LN_N);
    return res;
}

/* linear(x, W, b=None, num_threads=0) */
enum { LI_X, LI_W, LI_B, LI_THREADS, LI_N };
static const arg_spec linear_spec[LI_N] = {
    [LI_X] = {"x", ARG_ARRAY, ARG_REQUIRED, 1, 3},
    [LI_W] = {"W", ARG_ARRAY, ARG_REQUIRED, 2, 2},
    [LI_B] = {"b", ARG_ARRAY, 0},
    [LI_THREADS] = {"num_threads", ARG_INT, ARG_MIN, .min = 0},
};

static PyObject *py_linear(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[LI_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("linear", linear_spec, LI_N, args, kw, v, &st) < 0) goto done;
    const attn_view *x = &v[LI_X].view;
    int64_t yshape[ATTN_MAX_NDIM];
    for (int i = 0; i < x->ndim - 1; i++)
        yshape[i] = x->shape[i];
    yshape[x->ndim - 1] = v[LI_W].view.shape[1];
    int nt = v[LI_THREADS].i > INT32_MAX ? INT32_MAX : (int)v[LI_THREADS].i;
    attn_view y;
    PyArrayObject *r = out_new(x->ndim, yshape, &y);
    if (r == NULL) goto done;
    int rc;
    CALL_NOGIL(rc, attn_linear(x, &v[LI_W].view, v[LI_B].vp, &y, nt));
    if (rc == 0)
        res = out_finish(r, &st);
    else
        Py_DECREF(r);
done:
    args_release(v, LI_N);
    return res;
}

/* pack_weight(W) -> float32 (ceil(out / 48), in, 48): attn_weight_pack.
 * Always float32 (what attn_linear_packed reads), whatever W's dtype. */
enum { PW_W, PW_N };
static const arg_spec pack_weight_spec[PW_N] = {
    [PW_W] = {"W", ARG_ARRAY, ARG_REQUIRED, 2, 2},
};

static PyObject *py_pack_weight(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[PW_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("pack_weight", pack_weight_spec, PW_N, args, kw, v, &st) < 0) goto done;
    const int64_t in = v[PW_W].view.shape[0], out = v[PW_W].view.shape[1];
    const int64_t shape[3] = {(out + ATTN_PANEL - 1) / ATTN_PANEL, in, ATTN_PANEL};
    attn_view wp;
    PyArrayObject *r = out_new(3, shape, &wp);
    if (r == NULL) goto done;
    int rc;
    CALL_NOGIL(rc, attn_weight_pack(&v[PW_W].view, &wp));
    if (rc == 0)
        res = (PyObject *)r;
    else
        Py_DECREF(r);
done:
    args_release(v, PW_N);
    return res;
}

/* linear_packed(x, Wp, out_features, b=None, num_threads=0): attn_linear_packed */
enum { LP_X, LP_WP, LP_OUTF, LP_B, LP_THREADS, LP_N };
static const arg_spec linear_packed_spec[LP_N] = {
    [LP_X] = {"x", ARG_ARRAY, ARG_REQUIRED, 1, 2},
    [LP_WP] = {"Wp", ARG_ARRAY, ARG_REQUIRED | ARG_NOVOTE, 3, 3},
    [LP_OUTF] = {"out_features", ARG_INT, ARG_REQUIRED | ARG_MIN, .min = 1},
    [LP_B] = {"b", ARG_ARRAY, 0},
    [LP_THREADS] = {"num_threads", ARG_INT, ARG_MIN, .min = 0},
};

static PyObject *py_linear_packed(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[LP_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("linear_packed", linear_packed_spec, LP_N, args, kw, v, &st) < 0) goto done;
    const attn_view *x = &v[LP_X].view;
    const int64_t yshape[2] = {x->shape[0], v[LP_OUTF].i};
    int nt = v[LP_THREADS].i > INT32_MAX ? INT32_MAX : (int)v[LP_THREADS].i;
    attn_view y;
    PyArrayObject *r = out_new(x->ndim, x->ndim == 2 ? yshape : yshape + 1, &y);
    if (r == NULL) goto done;
    int rc;
    CALL_NOGIL(rc, attn_linear_packed(x, &v[LP_WP].view, v[LP_B].vp, &y, nt));
    if (rc == 0)
        res = out_finish(r, &st);
    else
        Py_DECREF(r);
done:
    args_release(v, LP_N);
    return res;
}

/* attention1(x, xkv, Wq, Wk, Wv, <options>): attn_self_attention, or
 * attn_cross_attention when xkv is given. */
enum { A1_X, A1_XKV, A1_WQ, A1_WK, A1_WV, A1_OPTS, A1_N = A1_OPTS + OPT_N };
static const arg_spec attention1_spec[A1_N] = {
    [A1_X] = {"x", ARG_ARRAY, ARG_REQUIRED, 2, 3},   [A1_XKV] = {"xkv", ARG_ARRAY, 0},
    [A1_WQ] = {"Wq", ARG_ARRAY, ARG_REQUIRED},       [A1_WK] = {"Wk", ARG_ARRAY, ARG_REQUIRED},
    [A1_WV] = {"Wv", ARG_ARRAY, ARG_REQUIRED, 2, 2}, [A1_OPTS] = ATTN_OPT_ROWS,
};

static PyObject *py_attention1(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[A1_N];
    conv_state st;
    PyObject *res = NULL;
    attn_opts opts;
    if (args_parse("attention1", attention1_spec, A1_N, args, kw, v, &st) < 0) goto done;
    const attn_view *x = &v[A1_X].view;
    if (opts_build(&st, v + A1_OPTS, x->ndim == 3 ? x->shape[0] : 1, 1, &opts) < 0) goto done;
    int64_t oshape[3];
    for (int i = 0; i < x->ndim - 1; i++)
        oshape[i] = x->shape[i];
    oshape[x->ndim - 1] = v[A1_WV].view.shape[1];
    attn_view y;
    PyArrayObject *r = out_new(x->ndim, oshape, &y);
    if (r == NULL) goto done;
    int rc;
    if (v[A1_XKV].given)
        CALL_NOGIL(rc, attn_cross_attention(x, &v[A1_XKV].view, &v[A1_WQ].view, &v[A1_WK].view,
                                            &v[A1_WV].view, &y, &opts));
    else
        CALL_NOGIL(
            rc, attn_self_attention(x, &v[A1_WQ].view, &v[A1_WK].view, &v[A1_WV].view, &y, &opts));
    if (rc == 0)
        res = out_finish(r, &st);
    else
        Py_DECREF(r);
done:
    args_release(v, A1_N);
    return res;
}

/* Both multi-head forms end here: shapes of the result, the call. */
static PyObject *mha_run(conv_state *st, const attn_mha_params *p, const arg_val *xq,
                         const arg_val *xkv, const arg_val *o, const arg_val *outv) {
    attn_opts opts;
    if (xq->view.ndim < 2 || xq->view.ndim > 3) {
        PyErr_Format(PyExc_ValueError, "%s: xq must be (Nq, D) or (B, Nq, D), got rank %d", st->fn,
                     xq->view.ndim);
        return NULL;
    }
    if (opts_build(st, o, xq->view.ndim == 3 ? xq->view.shape[0] : 1, p->num_heads, &opts) < 0)
        return NULL;
    int64_t dout;
    if (p->Wo.data != NULL) {
        if (p->Wo.ndim != 2) {
            PyErr_Format(PyExc_ValueError, "%s: Wo must have rank 2 (NH*HS, D), got rank %d",
                         st->fn, p->Wo.ndim);
            return NULL;
        }
        dout = p->Wo.shape[1];
    } else {
        dout = p->num_heads * p->Wv.shape[2];
    }
    int64_t oshape[3];
    for (int i = 0; i < xq->view.ndim - 1; i++)
        oshape[i] = xq->view.shape[i];
    oshape[xq->view.ndim - 1] = dout;
    attn_view y;
    PyArrayObject *r = result_array(outv, xq->view.ndim, oshape, &y);
    if (r == NULL) return NULL;
    int rc;
    CALL_NOGIL(rc, attn_mha(p, &xq->view, xkv->vp, &y, &opts));
    if (rc < 0) {
        Py_DECREF(r);
        return NULL;
    }
    return result_finish(r, outv, st);
}

/* mha(xq, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo, <options>, out): per-head
 * weights stacked (NH, D, HS), biases (NH, HS). */
enum {
    MH_XQ,
    MH_XKV,
    MH_WQ,
    MH_WK,
    MH_WV,
    MH_BQ,
    MH_BK,
    MH_BV,
    MH_WO,
    MH_BO,
    MH_OPTS,
    MH_OUT = MH_OPTS + OPT_N,
    MH_N
};
static const arg_spec mha_spec[MH_N] = {
    [MH_XQ] = {"xq", ARG_ARRAY, ARG_REQUIRED},
    [MH_XKV] = {"xkv", ARG_ARRAY, 0},
    [MH_WQ] = {"Wq", ARG_ARRAY, ARG_REQUIRED},
    [MH_WK] = {"Wk", ARG_ARRAY, ARG_REQUIRED},
    [MH_WV] = {"Wv", ARG_ARRAY, ARG_REQUIRED, 3, 3},
    [MH_BQ] = {"bq", ARG_ARRAY, 0},
    [MH_BK] = {"bk", ARG_ARRAY, 0},
    [MH_BV] = {"bv", ARG_ARRAY, 0},
    [MH_WO] = {"Wo", ARG_ARRAY, 0},
    [MH_BO] = {"bo", ARG_ARRAY, 0},
    [MH_OPTS] = ATTN_OPT_ROWS,
    [MH_OUT] = {"out", ARG_OUT, 0},
};

static PyObject *py_mha(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[MH_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("mha", mha_spec, MH_N, args, kw, v, &st) < 0) goto done;
    attn_mha_params p = {0};
    p.num_heads = v[MH_WQ].view.shape[0];
    /* Grouped-query: as many kv heads as Wk stacks. */
    if (v[MH_WK].view.ndim == 3 && v[MH_WK].view.shape[0] != p.num_heads)
        p.num_kv_heads = v[MH_WK].view.shape[0];
    p.Wq = v[MH_WQ].view;
    p.Wk = v[MH_WK].view;
    p.Wv = v[MH_WV].view;
    p.bq = v[MH_BQ].view;
    p.bk = v[MH_BK].view;
    p.bv = v[MH_BV].view;
    p.Wo = v[MH_WO].view;
    p.bo = v[MH_BO].view;
    res = mha_run(&st, &p, &v[MH_XQ], &v[MH_XKV], v + MH_OPTS, &v[MH_OUT]);
done:
    args_release(v, MH_N);
    return res;
}

/* mha_fused(xq, xkv, Wqkv, bqkv, num_heads, Wo, bo, <options>, out,
 * num_kv_heads): Wqkv (D, 3D), bqkv (3D), PyTorch's in_proj transposed; with
 * num_kv_heads Hkv, Wqkv (D, (NH + 2*Hkv)*HS) (attn_mha_from_fused_gqa). */
enum {
    MF_XQ,
    MF_XKV,
    MF_W,
    MF_B,
    MF_NH,
    MF_WO,
    MF_BO,
    MF_OPTS,
    MF_OUT = MF_OPTS + OPT_N,
    MF_NKV,
    MF_N
};
static const arg_spec mha_fused_spec[MF_N] = {
    [MF_XQ] = {"xq", ARG_ARRAY, ARG_REQUIRED},
    [MF_XKV] = {"xkv", ARG_ARRAY, 0},
    [MF_W] = {"Wqkv", ARG_ARRAY, ARG_REQUIRED},
    [MF_B] = {"bqkv", ARG_ARRAY, 0},
    [MF_NH] = {"num_heads", ARG_INT, ARG_REQUIRED | ARG_MIN, .min = 1},
    [MF_WO] = {"Wo", ARG_ARRAY, 0},
    [MF_BO] = {"bo", ARG_ARRAY, 0},
    [MF_OPTS] = ATTN_OPT_ROWS,
    [MF_OUT] = {"out", ARG_OUT, 0},
    [MF_NKV] = {"num_kv_heads", ARG_INT, ARG_MIN, .min = 1},
};

static PyObject *py_mha_fused(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[MF_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("mha_fused", mha_fused_spec, MF_N, args, kw, v, &st) < 0) goto done;
    attn_mha_params p;
    attn_status s = v[MF_NKV].given
                        ? attn_mha_from_fused_gqa(&v[MF_W].view, v[MF_B].vp, v[MF_NH].i,
                                                  v[MF_NKV].i, v[MF_WO].vp, v[MF_BO].vp, &p)
                        : attn_mha_from_fused(&v[MF_W].view, v[MF_B].vp, v[MF_NH].i, v[MF_WO].vp,
                                              v[MF_BO].vp, &p);
    if (status_to_py(s) < 0) goto done;
    res = mha_run(&st, &p, &v[MF_XQ], &v[MF_XKV], v + MF_OPTS, &v[MF_OUT]);
done:
    args_release(v, MF_N);
    return res;
}

PyMethodDef attn_py_modules_methods[] = {
    {"softmax", PY_KWFUNC(py_softmax), METH_VARARGS | METH_KEYWORDS,
     "softmax(x, out=None): attn_softmax over the last axis (rank 1..4)."},
    {"layer_norm", PY_KWFUNC(py_layer_norm), METH_VARARGS | METH_KEYWORDS,
     "layer_norm(x, gamma=None, beta=None, eps=1e-5): attn_layer_norm."},
    {"linear", PY_KWFUNC(py_linear), METH_VARARGS | METH_KEYWORDS,
     "linear(x, W, b=None, num_threads=0): attn_linear."},
    {"pack_weight", PY_KWFUNC(py_pack_weight), METH_VARARGS | METH_KEYWORDS,
     "pack_weight(W): attn_weight_pack -> float32 (ceil(out / 48), in, 48)."},
    {"linear_packed", PY_KWFUNC(py_linear_packed), METH_VARARGS | METH_KEYWORDS,
     "linear_packed(x, Wp, out_features, b=None, num_threads=0): attn_linear_packed."},
    {"attention1", PY_KWFUNC(py_attention1), METH_VARARGS | METH_KEYWORDS,
     "attention1(x, xkv, Wq, Wk, Wv, ...): attn_self_attention / attn_cross_attention."},
    {"mha", PY_KWFUNC(py_mha), METH_VARARGS | METH_KEYWORDS,
     "mha(xq, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo, ...): attn_mha, per-head weights."},
    {"mha_fused", PY_KWFUNC(py_mha_fused), METH_VARARGS | METH_KEYWORDS,
     "mha_fused(xq, xkv, Wqkv, bqkv, num_heads, Wo, bo, ...): attn_mha_from_fused + attn_mha."},
    {NULL, NULL, 0, NULL},
};
