/* grads.c - the module gradients for Python: attn_linear_backward,
 * attn_layer_norm_backward, attn_rms_norm_backward, attn_mha_backward
 * (attn/grads.py wraps them). Every gradient is computed and returned. */
#include "opts.h"

/* Results g[0..n) as a tuple; slots with no array are None. Steals g[i]. */
static PyObject *results(PyArrayObject **g, int n, const conv_state *st) {
    PyObject *t = PyTuple_New(n);
    for (int i = 0; i < n; i++) {
        PyObject *r = g[i] ? out_finish(g[i], st) : (Py_INCREF(Py_None), Py_None);
        g[i] = NULL;
        if (t == NULL || r == NULL) {
            Py_XDECREF(r);
            continue;
        }
        PyTuple_SET_ITEM(t, i, r);
    }
    if (t && PyErr_Occurred()) Py_CLEAR(t);
    return t;
}

/* linear_backward(x, W, dy, num_threads=0) -> (dx, dW, db) */
enum { LB_X, LB_W, LB_DY, LB_THREADS, LB_N };
static const arg_spec linear_backward_spec[LB_N] = {
    [LB_X] = {"x", ARG_ARRAY, ARG_REQUIRED, 1, 3},
    [LB_W] = {"W", ARG_ARRAY, ARG_REQUIRED, 2, 2},
    [LB_DY] = {"dy", ARG_ARRAY, ARG_REQUIRED, 1, 3},
    [LB_THREADS] = {"num_threads", ARG_INT, ARG_MIN, .min = 0},
};

static PyObject *py_linear_backward(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[LB_N];
    conv_state st;
    PyObject *res = NULL;
    PyArrayObject *g[3] = {NULL};
    attn_view gv[3];
    if (args_parse("linear_backward", linear_backward_spec, LB_N, args, kw, v, &st) < 0) goto done;
    const attn_view *W = &v[LB_W].view;
    const int64_t nb = W->shape[1];
    if ((g[0] = out_new(v[LB_X].view.ndim, v[LB_X].view.shape, &gv[0])) == NULL ||
        (g[1] = out_new(2, W->shape, &gv[1])) == NULL || (g[2] = out_new(1, &nb, &gv[2])) == NULL)
        goto done;
    int nt = v[LB_THREADS].i > INT32_MAX ? INT32_MAX : (int)v[LB_THREADS].i, rc;
    CALL_NOGIL(rc,
               attn_linear_backward(&v[LB_X].view, W, &v[LB_DY].view, &gv[0], &gv[1], &gv[2], nt));
    if (rc == 0) res = results(g, 3, &st);
done:
    for (int i = 0; i < 3; i++)
        Py_XDECREF(g[i]);
    args_release(v, LB_N);
    return res;
}

/* norm_backward(x, gamma, dy, eps, rms) -> (dx, dgamma, dbeta|None) */
enum { NB_X, NB_GAMMA, NB_DY, NB_EPS, NB_RMS, NB_N };
static const arg_spec norm_backward_spec[NB_N] = {
    [NB_X] = {"x", ARG_ARRAY, ARG_REQUIRED},
    [NB_GAMMA] = {"gamma", ARG_ARRAY, 0},
    [NB_DY] = {"dy", ARG_ARRAY, ARG_REQUIRED},
    [NB_EPS] = {"eps", ARG_FLOAT, ARG_F32 | ARG_REQUIRED},
    [NB_RMS] = {"rms", ARG_BOOL, 0},
};

static PyObject *py_norm_backward(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[NB_N];
    conv_state st;
    PyObject *res = NULL;
    PyArrayObject *g[3] = {NULL};
    attn_view gv[3];
    if (args_parse("norm_backward", norm_backward_spec, NB_N, args, kw, v, &st) < 0) goto done;
    const attn_view *x = &v[NB_X].view;
    const int64_t D = x->shape[x->ndim - 1];
    const int rms = (int)v[NB_RMS].i;
    if ((g[0] = out_new(x->ndim, x->shape, &gv[0])) == NULL ||
        (g[1] = out_new(1, &D, &gv[1])) == NULL ||
        (!rms && (g[2] = out_new(1, &D, &gv[2])) == NULL))
        goto done;
    int rc;
    const float eps = (float)v[NB_EPS].f;
    if (rms)
        CALL_NOGIL(rc,
                   attn_rms_norm_backward(x, v[NB_GAMMA].vp, &v[NB_DY].view, eps, &gv[0], &gv[1]));
    else
        CALL_NOGIL(rc, attn_layer_norm_backward(x, v[NB_GAMMA].vp, &v[NB_DY].view, eps, &gv[0],
                                                &gv[1], &gv[2]));
    if (rc == 0) res = results(g, 3, &st);
done:
    for (int i = 0; i < 3; i++)
        Py_XDECREF(g[i]);
    args_release(v, NB_N);
    return res;
}

/* mha_backward(xq, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo, dout, <options>)
 *   -> (dxq, dxkv|None, dWq, dWk, dWv, dbq|None, dbk|None, dbv|None, dWo|None, dbo|None)
 * Per-head weights stacked (NH, D, HS), (Hkv, D, HS); biases (heads, HS). */
enum {
    MB_XQ,
    MB_XKV,
    MB_WQ,
    MB_WK,
    MB_WV,
    MB_BQ,
    MB_BK,
    MB_BV,
    MB_WO,
    MB_BO,
    MB_DOUT,
    MB_OPTS,
    MB_N = MB_OPTS + OPT_N
};
static const arg_spec mha_backward_spec[MB_N] = {
    [MB_XQ] = {"xq", ARG_ARRAY, ARG_REQUIRED, 2, 3},
    [MB_XKV] = {"xkv", ARG_ARRAY, 0, 2, 3},
    [MB_WQ] = {"Wq", ARG_ARRAY, ARG_REQUIRED, 3, 3},
    [MB_WK] = {"Wk", ARG_ARRAY, ARG_REQUIRED, 3, 3},
    [MB_WV] = {"Wv", ARG_ARRAY, ARG_REQUIRED, 3, 3},
    [MB_BQ] = {"bq", ARG_ARRAY, 0, 2, 2},
    [MB_BK] = {"bk", ARG_ARRAY, 0, 2, 2},
    [MB_BV] = {"bv", ARG_ARRAY, 0, 2, 2},
    [MB_WO] = {"Wo", ARG_ARRAY, 0, 2, 2},
    [MB_BO] = {"bo", ARG_ARRAY, 0, 1, 1},
    [MB_DOUT] = {"dout", ARG_ARRAY, ARG_REQUIRED, 2, 3},
    [MB_OPTS] = ATTN_OPT_ROWS,
};

static PyObject *py_mha_backward(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[MB_N];
    conv_state st;
    PyObject *res = NULL;
    enum { N_G = 10 };
    PyArrayObject *g[N_G] = {NULL};
    attn_view gv[N_G];
    if (args_parse("mha_backward", mha_backward_spec, MB_N, args, kw, v, &st) < 0) goto done;
    attn_mha_params p = {0}, gp = {0};
    p.num_heads = v[MB_WQ].view.shape[0];
    p.num_kv_heads = v[MB_WK].view.shape[0];
    p.Wq = v[MB_WQ].view, p.Wk = v[MB_WK].view, p.Wv = v[MB_WV].view;
    p.bq = v[MB_BQ].view, p.bk = v[MB_BK].view, p.bv = v[MB_BV].view;
    p.Wo = v[MB_WO].view, p.bo = v[MB_BO].view;
    attn_opts opts;
    if (opts_build(&st, v + MB_OPTS, v[MB_XQ].view.ndim == 3 ? v[MB_XQ].view.shape[0] : 1,
                   p.num_heads, &opts) < 0)
        goto done;
    const arg_val *like[N_G] = {&v[MB_XQ], &v[MB_XKV], &v[MB_WQ], &v[MB_WK], &v[MB_WV],
                                &v[MB_BQ], &v[MB_BK],  &v[MB_BV], &v[MB_WO], &v[MB_BO]};
    attn_view *slot[N_G] = {NULL,   NULL,   &gp.Wq, &gp.Wk, &gp.Wv,
                            &gp.bq, &gp.bk, &gp.bv, &gp.Wo, &gp.bo};
    for (int i = 0; i < N_G; i++) {
        if (!like[i]->given) continue;
        if ((g[i] = out_new(like[i]->view.ndim, like[i]->view.shape, &gv[i])) == NULL) goto done;
        if (slot[i]) *slot[i] = gv[i];
    }
    int rc;
    CALL_NOGIL(rc, attn_mha_backward(&p, &v[MB_XQ].view, v[MB_XKV].vp, &v[MB_DOUT].view, &gv[0],
                                     g[1] ? &gv[1] : NULL, &gp, &opts));
    if (rc == 0) res = results(g, N_G, &st);
done:
    for (int i = 0; i < N_G; i++)
        Py_XDECREF(g[i]);
    args_release(v, MB_N);
    return res;
}

PyMethodDef attn_py_grads_methods[] = {
    {"linear_backward", PY_KWFUNC(py_linear_backward), METH_VARARGS | METH_KEYWORDS,
     "linear_backward(x, W, dy, num_threads=0): attn_linear_backward -> (dx, dW, db)."},
    {"norm_backward", PY_KWFUNC(py_norm_backward), METH_VARARGS | METH_KEYWORDS,
     "norm_backward(x, gamma, dy, eps, rms): attn_layer_norm_backward or "
     "attn_rms_norm_backward -> (dx, dgamma, dbeta|None)."},
    {"mha_backward", PY_KWFUNC(py_mha_backward), METH_VARARGS | METH_KEYWORDS,
     "mha_backward(xq, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo, dout, ...): attn_mha_backward."},
    {NULL, NULL, 0, NULL},
};
