/* decoder.c - the pieces of a Llama-style decoder layer for Python:
 * attn_rope, the RoPE inv_freq tables and attn_rms_norm. attn/decoder.py
 * gives them their documented signatures (any rank, broadcast positions). */
#include "convert.h"

/* The caller's out (returned as is), or a new float32 array shaped like x. */
static PyArrayObject *result_for(const arg_val *outv, const attn_view *x, attn_view *rv) {
    if (outv->given) {
        Py_INCREF(outv->ref);
        *rv = outv->view;
        return outv->ref;
    }
    return out_new(x->ndim, x->shape, rv);
}

/* rope(x, positions, rotary_dim=0, style="neox", base=10000, inv_freq=None,
 *      mscale=1, out=None): x rank 2..4; positions (N,) shared, or one per
 * row of x (prod(x.shape[:-1]) values, C order). */
static const char *const style_names[] = {"neox", "gptj", NULL};
enum { RO_X, RO_POS, RO_R, RO_STYLE, RO_BASE, RO_INV, RO_MSCALE, RO_OUT, RO_N };
static const arg_spec rope_spec[RO_N] = {
    [RO_X] = {"x", ARG_ARRAY, ARG_REQUIRED, 2, 4},
    [RO_POS] = {"positions", ARG_INT64S, ARG_REQUIRED},
    [RO_R] = {"rotary_dim", ARG_INT, ARG_MIN, .min = 0},
    [RO_STYLE] = {"style", ARG_ENUM, 0, .names = style_names},
    [RO_BASE] = {"base", ARG_FLOAT, 0},
    [RO_INV] = {"inv_freq", ARG_F64S, 0},
    [RO_MSCALE] = {"mscale", ARG_FLOAT, 0},
    [RO_OUT] = {"out", ARG_OUT, 0},
};

static PyObject *py_rope(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[RO_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("rope", rope_spec, RO_N, args, kw, v, &st) < 0) goto done;
    const attn_view *x = &v[RO_X].view;
    attn_rope_params p = attn_rope_params_default();
    p.style = (attn_rope_style)v[RO_STYLE].i;
    p.rotary_dim = v[RO_R].i;
    if (v[RO_BASE].given) p.base = v[RO_BASE].f;
    if (v[RO_MSCALE].given) p.mscale = v[RO_MSCALE].f;
    /* Rows of x: the sizes before the last; positions are (N,) or one per row. */
    const int64_t N = x->shape[x->ndim - 2];
    int64_t rows = 1;
    for (int i = 0; i < x->ndim - 1; i++)
        rows *= x->shape[i];
    const int64_t *ps = NULL,
                  contiguous[3] = {x->ndim == 4 ? x->shape[1] * N : 0, x->ndim >= 3 ? N : 0, 1};
    if (v[RO_POS].len == rows && rows != N)
        ps = contiguous;
    else if (v[RO_POS].len != N) {
        PyErr_Format(PyExc_ValueError,
                     "rope: positions has %lld values; it needs N=%lld (x.shape[-2]) or one per "
                     "row of x (%lld)",
                     (long long)v[RO_POS].len, (long long)N, (long long)rows);
        goto done;
    }
    if (v[RO_INV].given) {
        const int64_t r = p.rotary_dim ? p.rotary_dim : x->shape[x->ndim - 1];
        if (v[RO_INV].len != r / 2) {
            PyErr_Format(PyExc_ValueError,
                         "rope: inv_freq has %lld values but rotary_dim=%lld needs %lld",
                         (long long)v[RO_INV].len, (long long)r, (long long)(r / 2));
            goto done;
        }
        p.inv_freq = v[RO_INV].f64;
    }
    attn_view y;
    PyArrayObject *r = result_for(&v[RO_OUT], x, &y);
    if (r == NULL) goto done;
    int rc;
    CALL_NOGIL(rc, attn_rope(x, v[RO_POS].i64, ps, &y, &p));
    if (rc == 0)
        res = v[RO_OUT].given ? (PyObject *)r : out_finish(r, &st);
    else
        Py_DECREF(r);
done:
    args_release(v, RO_N);
    return res;
}

/* rope_inv_freq(kind, rotary_dim, base, factor, low_freq_factor,
 *               high_freq_factor, original_max_position, beta_fast, beta_slow)
 * -> (inv_freq float64 (r/2,), mscale). kind "ntk" reads factor as alpha. */
static const char *const kind_names[] = {"default", "linear", "ntk", "llama3", "yarn", NULL};
enum { IF_KIND, IF_R, IF_BASE, IF_F, IF_LO, IF_HI, IF_L, IF_BF, IF_BS, IF_N };
static const arg_spec inv_spec[IF_N] = {
    [IF_KIND] = {"kind", ARG_ENUM, ARG_REQUIRED, .names = kind_names},
    [IF_R] = {"rotary_dim", ARG_INT, ARG_REQUIRED},
    [IF_BASE] = {"base", ARG_FLOAT, ARG_REQUIRED},
    [IF_F] = {"factor", ARG_FLOAT, 0},
    [IF_LO] = {"low_freq_factor", ARG_FLOAT, 0},
    [IF_HI] = {"high_freq_factor", ARG_FLOAT, 0},
    [IF_L] = {"original_max_position", ARG_INT, 0},
    [IF_BF] = {"beta_fast", ARG_FLOAT, 0},
    [IF_BS] = {"beta_slow", ARG_FLOAT, 0},
};

static PyObject *py_rope_inv_freq(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[IF_N];
    conv_state st;
    PyObject *res = NULL;
    PyArrayObject *a = NULL;
    if (args_parse("rope_inv_freq", inv_spec, IF_N, args, kw, v, &st) < 0) goto done;
    const int64_t r = v[IF_R].i;
    if (r < 2 || r % 2 != 0 || r > ((int64_t)1 << 30)) {
        PyErr_Format(PyExc_ValueError, "rope_inv_freq: rotary_dim=%lld must be even, 2..2**30",
                     (long long)r);
        goto done;
    }
    npy_intp n = (npy_intp)(r / 2);
    if ((a = (PyArrayObject *)PyArray_SimpleNew(1, &n, NPY_FLOAT64)) == NULL) goto done;
    double *t = (double *)PyArray_DATA(a), ms = 1.0;
    const double base = v[IF_BASE].f, f = v[IF_F].given ? v[IF_F].f : 1.0;
    attn_status s = ATTN_OK;
    switch (v[IF_KIND].i) {
    case 0:
        s = attn_rope_inv_freq(r, base, t);
        break;
    case 1:
        s = attn_rope_inv_freq_linear(r, base, f, t);
        break;
    case 2:
        s = attn_rope_inv_freq_ntk(r, base, f, t);
        break;
    case 3:
        s = attn_rope_inv_freq_llama3(r, base, f, v[IF_LO].f, v[IF_HI].f, v[IF_L].i, t);
        break;
    default:
        s = attn_rope_inv_freq_yarn(r, base, f, v[IF_L].i, v[IF_BF].f, v[IF_BS].f, t, &ms);
        break;
    }
    if (status_to_py(s) < 0) goto done;
    res = Py_BuildValue("(Od)", (PyObject *)a, ms);
done:
    Py_XDECREF(a);
    args_release(v, IF_N);
    return res;
}

/* rms_norm(x, gamma=None, eps=1e-6, out=None) */
enum { RN_X, RN_GAMMA, RN_EPS, RN_OUT, RN_N };
static const arg_spec rms_spec[RN_N] = {
    [RN_X] = {"x", ARG_ARRAY, ARG_REQUIRED},
    [RN_GAMMA] = {"gamma", ARG_ARRAY, 0},
    [RN_EPS] = {"eps", ARG_FLOAT, ARG_F32},
    [RN_OUT] = {"out", ARG_OUT, 0},
};

static PyObject *py_rms_norm(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[RN_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("rms_norm", rms_spec, RN_N, args, kw, v, &st) < 0) goto done;
    const float eps = v[RN_EPS].given ? (float)v[RN_EPS].f : 1e-6f;
    attn_view y;
    PyArrayObject *r = result_for(&v[RN_OUT], &v[RN_X].view, &y);
    if (r == NULL) goto done;
    int rc;
    CALL_NOGIL(rc, attn_rms_norm(&v[RN_X].view, v[RN_GAMMA].vp, eps, &y));
    if (rc == 0)
        res = v[RN_OUT].given ? (PyObject *)r : out_finish(r, &st);
    else
        Py_DECREF(r);
done:
    args_release(v, RN_N);
    return res;
}

PyMethodDef attn_py_decoder_methods[] = {
    {"rope", PY_KWFUNC(py_rope), METH_VARARGS | METH_KEYWORDS,
     "rope(x, positions, rotary_dim=0, style='neox', base=10000, inv_freq=None, mscale=1, "
     "out=None): attn_rope."},
    {"rope_inv_freq", PY_KWFUNC(py_rope_inv_freq), METH_VARARGS | METH_KEYWORDS,
     "rope_inv_freq(kind, rotary_dim, base, ...): the attn_rope_inv_freq_* tables."},
    {"rms_norm", PY_KWFUNC(py_rms_norm), METH_VARARGS | METH_KEYWORDS,
     "rms_norm(x, gamma=None, eps=1e-6, out=None): attn_rms_norm."},
    {NULL, NULL, 0, NULL},
};
