/*
 * _attn.c - the CPython extension behind `import attn`.
 *
 * Thin: every function turns NumPy arrays into attn_view (no copy when the
 * array already is float32 with element-multiple strides), releases the GIL,
 * calls the public C API of include/attn.h and turns the status into a Python
 * exception carrying attn_last_error(). Argument defaults, list stacking and
 * rank promotion live in attn/__init__.py.
 *
 * Conversion rule (documented in attn/__init__.py): float32 and float64
 * arrays are accepted; the computation is float32; an input that is not
 * float32 with strides that are multiples of 4 bytes (and aligned, native
 * byte order) is copied to a C-contiguous float32 array first. The result is
 * float64 when any data input is float64 (np.result_type), else float32.
 * Masks and key lengths do not take part in the result dtype.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn.h"

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/* Raise the exception matching a failed status, with the C library's message
 * (read on this thread, after the GIL is re-acquired: it is thread-local and
 * the OS thread is the same). */
static PyObject *raise_status(attn_status s) {
    const char *msg = attn_last_error();
    if (msg == NULL || msg[0] == '\0') msg = attn_status_string(s);
    switch (s) {
    case ATTN_ERR_NOMEM:
        PyErr_Format(PyExc_MemoryError, "%s", msg);
        break;
    case ATTN_ERR_ISA:
        PyErr_Format(PyExc_RuntimeError, "%s", msg);
        break;
    case ATTN_ERR_OVERFLOW:
        PyErr_Format(PyExc_OverflowError, "%s", msg);
        break;
    default:
        PyErr_Format(PyExc_ValueError, "%s", msg);
        break;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Inputs                                                                    */
/* ------------------------------------------------------------------------ */

/* An input array seen as a float32 view. `ref` owns the memory the view
 * points into: the caller's array itself, or a float32 copy of it. */
typedef struct {
    PyArrayObject *ref; /* NULL when absent (None) */
    attn_view view;     /* data NULL when absent */
} in_arr;

static void in_release(in_arr *a) {
    Py_CLEAR(a->ref);
}

/* True when the array can be read in place as float32 elements. */
static int usable_in_place(PyArrayObject *a) {
    if (PyArray_TYPE(a) != NPY_FLOAT32 || !PyArray_ISNOTSWAPPED(a) || !PyArray_ISALIGNED(a))
        return 0;
    for (int i = 0; i < PyArray_NDIM(a); i++)
        if (PyArray_STRIDES(a)[i] % (npy_intp)sizeof(float) != 0) return 0;
    return 1;
}

static void view_from_array(PyArrayObject *a, attn_view *v) {
    memset(v, 0, sizeof(*v));
    v->data = (float *)PyArray_DATA(a);
    v->ndim = PyArray_NDIM(a);
    for (int i = 0; i < v->ndim; i++) {
        v->shape[i] = (int64_t)PyArray_DIMS(a)[i];
        v->stride[i] = (int64_t)(PyArray_STRIDES(a)[i] / (npy_intp)sizeof(float));
    }
}

#define MASK_ADVICE                                                                                \
    "attn takes an additive float mask (0 = visible, -inf = hidden) because libraries disagree "   \
    "on what True means; convert it with np.where(keep, 0.0, -np.inf), keep being True where a "   \
    "key is visible"

/* Convert obj (None allowed when optional) into a float32 view.
 * is_mask: refuse booleans with the additive-mask advice.
 * any64: set to 1 when obj is float64 (NULL: obj does not count for the
 * result dtype). */
static int in_convert(PyObject *obj, const char *name, int optional, int is_mask, int *any64,
                      in_arr *out) {
    memset(out, 0, sizeof(*out));
    if (obj == NULL || obj == Py_None) {
        if (optional) return 0;
        PyErr_Format(PyExc_TypeError, "%s is required (got None)", name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(obj);
    if (a == NULL) return -1;
    int t = PyArray_TYPE(a);
    if (t == NPY_BOOL && is_mask) {
        PyErr_Format(PyExc_TypeError, "%s is a boolean array; " MASK_ADVICE, name);
        Py_DECREF(a);
        return -1;
    }
    if (t != NPY_FLOAT32 && t != NPY_FLOAT64) {
        PyErr_Format(PyExc_TypeError,
                     "%s has dtype %S; attn takes float32 or float64 arrays "
                     "(convert with .astype(np.float32))",
                     name, (PyObject *)PyArray_DESCR(a));
        Py_DECREF(a);
        return -1;
    }
    int nd = PyArray_NDIM(a);
    if (nd < 1 || nd > ATTN_MAX_NDIM) {
        PyErr_Format(PyExc_ValueError, "%s has rank %d; attn views have rank 1 to %d", name, nd,
                     ATTN_MAX_NDIM);
        Py_DECREF(a);
        return -1;
    }
    if (any64 != NULL && t == NPY_FLOAT64) *any64 = 1;
    if (!usable_in_place(a)) {
        /* Documented copy: float64, byte-swapped, misaligned or strides that
         * are not a whole number of float32 elements. */
        PyArrayObject *c = (PyArrayObject *)PyArray_FromArray(
            a, PyArray_DescrFromType(NPY_FLOAT32),
            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
        Py_DECREF(a);
        if (c == NULL) return -1;
        a = c;
    }
    out->ref = a;
    view_from_array(a, &out->view);
    return 0;
}

/* The mask of attn_sdpa is rank 4; a lower-rank mask is aligned on the right
 * like NumPy broadcasting (missing leading dimensions have size 1). */
static void promote_rank4(attn_view *v) {
    int shift = ATTN_MAX_NDIM - v->ndim;
    if (shift <= 0) return;
    for (int i = v->ndim - 1; i >= 0; i--) {
        v->shape[i + shift] = v->shape[i];
        v->stride[i + shift] = v->stride[i];
    }
    for (int i = 0; i < shift; i++) {
        v->shape[i] = 1;
        v->stride[i] = 0;
    }
    v->ndim = ATTN_MAX_NDIM;
}

/* key_lengths: a 1-d integer array of `batch` values, copied to int64. */
static int keylen_convert(PyObject *obj, int64_t batch, PyArrayObject **out) {
    *out = NULL;
    if (obj == NULL || obj == Py_None) return 0;
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(obj);
    if (a == NULL) return -1;
    if (!PyArray_ISINTEGER(a)) {
        PyErr_Format(PyExc_TypeError, "key_lengths has dtype %S; it must hold integers",
                     (PyObject *)PyArray_DESCR(a));
        Py_DECREF(a);
        return -1;
    }
    if (PyArray_NDIM(a) != 1 || (int64_t)PyArray_DIMS(a)[0] != batch) {
        PyObject *shape = PyObject_GetAttrString((PyObject *)a, "shape");
        if (shape != NULL) {
            PyErr_Format(PyExc_ValueError,
                         "key_lengths must be a 1-d array of %lld values (one per batch entry), "
                         "got shape %R",
                         (long long)batch, shape);
            Py_DECREF(shape);
        }
        Py_DECREF(a);
        return -1;
    }
    PyArrayObject *c = (PyArrayObject *)PyArray_FromArray(a, PyArray_DescrFromType(NPY_INT64),
                                                          NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(a);
    if (c == NULL) return -1;
    *out = c;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Outputs                                                                   */
/* ------------------------------------------------------------------------ */

/* A new C-contiguous float32 array and its view. */
static PyArrayObject *new_output(int ndim, const int64_t *shape, attn_view *v) {
    npy_intp dims[ATTN_MAX_NDIM];
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "negative output size");
            return NULL;
        }
        dims[i] = (npy_intp)shape[i];
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(ndim, dims, NPY_FLOAT32);
    if (a == NULL) return NULL;
    view_from_array(a, v);
    return a;
}

/* A caller-supplied output (used by attn/__init__.py to write transposed
 * results in place): writable, aligned float32 with element strides. */
static int out_convert(PyObject *obj, attn_view *v) {
    if (!PyArray_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "out must be a NumPy array");
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (!usable_in_place(a) || !PyArray_ISWRITEABLE(a) || PyArray_NDIM(a) < 1 ||
        PyArray_NDIM(a) > ATTN_MAX_NDIM) {
        PyErr_SetString(PyExc_ValueError,
                        "out must be a writable float32 array of rank 1 to 4 with strides that "
                        "are multiples of 4 bytes");
        return -1;
    }
    view_from_array(a, v);
    return 0;
}

/* Return the result array: the supplied `out` as is, or the new float32
 * array, cast to float64 when any input was float64. Steals `res`. */
static PyObject *finish(PyArrayObject *res, int any64) {
    if (!any64) return (PyObject *)res;
    PyObject *r = PyArray_Cast(res, NPY_FLOAT64);
    Py_DECREF(res);
    return r;
}

/* ------------------------------------------------------------------------ */
/* Attention options                                                         */
/* ------------------------------------------------------------------------ */

/* What the Python side passes for attn_opts, and the arrays it owns. */
typedef struct {
    PyObject *scale_obj; /* None: 1/sqrt(d) */
    int causal;
    PyObject *mask_obj;
    PyObject *keylen_obj;
    double dropout_p;
    unsigned long long seed;
    int num_threads;
    int algo;
    in_arr mask;
    PyArrayObject *keylen;
} opt_args;

static void opt_release(opt_args *o) {
    in_release(&o->mask);
    Py_CLEAR(o->keylen);
}

/* Fill opts from o; batch is the B that key_lengths must match. */
static int opt_build(opt_args *o, int64_t batch, attn_opts *opts) {
    *opts = attn_opts_default();
    if (o->scale_obj != NULL && o->scale_obj != Py_None) {
        double s = PyFloat_AsDouble(o->scale_obj);
        if (s == -1.0 && PyErr_Occurred()) return -1;
        opts->scale = (float)s;
    }
    opts->causal = (attn_causal)o->causal;
    opts->dropout_p = (float)o->dropout_p;
    opts->dropout_seed = (uint64_t)o->seed;
    opts->num_threads = o->num_threads;
    opts->algo = (attn_algo)o->algo;
    if (in_convert(o->mask_obj, "mask", 1, 1, NULL, &o->mask) < 0) return -1;
    if (o->mask.ref != NULL) {
        promote_rank4(&o->mask.view);
        opts->mask = &o->mask.view;
    }
    if (keylen_convert(o->keylen_obj, batch, &o->keylen) < 0) return -1;
    if (o->keylen != NULL) opts->key_lengths = (const int64_t *)PyArray_DATA(o->keylen);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* softmax(x, out=None)                                                      */
/* ------------------------------------------------------------------------ */

static PyObject *py_softmax(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"x", "out", NULL};
    PyObject *xo, *outo = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:softmax", kwlist, &xo, &outo)) return NULL;
    int any64 = 0;
    in_arr x;
    if (in_convert(xo, "x", 0, 0, &any64, &x) < 0) return NULL;
    attn_view y;
    PyArrayObject *res;
    if (outo != Py_None) {
        if (out_convert(outo, &y) < 0) goto fail;
        Py_INCREF(outo);
        res = (PyArrayObject *)outo;
        any64 = 0;
    } else {
        res = new_output(x.view.ndim, x.view.shape, &y);
        if (res == NULL) goto fail;
    }
    attn_status s;
    PyThreadState *ts = PyEval_SaveThread();
    s = attn_softmax(&x.view, &y);
    PyEval_RestoreThread(ts);
    if (s != ATTN_OK) {
        Py_DECREF(res);
        raise_status(s);
        goto fail;
    }
    in_release(&x);
    return finish(res, any64);
fail:
    in_release(&x);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* layer_norm(x, gamma, beta, eps)                                           */
/* ------------------------------------------------------------------------ */

static PyObject *py_layer_norm(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"x", "gamma", "beta", "eps", NULL};
    PyObject *xo, *go = Py_None, *bo = Py_None;
    double eps = 1e-5;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OOd:layer_norm", kwlist, &xo, &go, &bo, &eps))
        return NULL;
    int any64 = 0;
    in_arr x = {0}, g = {0}, b = {0};
    PyArrayObject *res = NULL;
    if (in_convert(xo, "x", 0, 0, &any64, &x) < 0 ||
        in_convert(go, "gamma", 1, 0, &any64, &g) < 0 ||
        in_convert(bo, "beta", 1, 0, &any64, &b) < 0)
        goto fail;
    attn_view y;
    res = new_output(x.view.ndim, x.view.shape, &y);
    if (res == NULL) goto fail;
    attn_status s;
    const attn_view *gp = g.ref ? &g.view : NULL, *bp = b.ref ? &b.view : NULL;
    PyThreadState *ts = PyEval_SaveThread();
    s = attn_layer_norm(&x.view, gp, bp, (float)eps, &y);
    PyEval_RestoreThread(ts);
    if (s != ATTN_OK) {
        raise_status(s);
        goto fail;
    }
    in_release(&x);
    in_release(&g);
    in_release(&b);
    return finish(res, any64);
fail:
    Py_XDECREF(res);
    in_release(&x);
    in_release(&g);
    in_release(&b);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* linear(x, W, b, num_threads)                                              */
/* ------------------------------------------------------------------------ */

static PyObject *py_linear(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"x", "W", "b", "num_threads", NULL};
    PyObject *xo, *wo, *bo = Py_None;
    int nthreads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|Oi:linear", kwlist, &xo, &wo, &bo, &nthreads))
        return NULL;
    int any64 = 0;
    in_arr x = {0}, W = {0}, b = {0};
    PyArrayObject *res = NULL;
    if (in_convert(xo, "x", 0, 0, &any64, &x) < 0 || in_convert(wo, "W", 0, 0, &any64, &W) < 0 ||
        in_convert(bo, "b", 1, 0, &any64, &b) < 0)
        goto fail;
    if (W.view.ndim != 2) {
        PyErr_Format(PyExc_ValueError, "linear: W must have rank 2 (in, out), got rank %d",
                     W.view.ndim);
        goto fail;
    }
    if (x.view.ndim > 3) {
        PyErr_Format(PyExc_ValueError, "linear: x must have rank 1 to 3, got rank %d", x.view.ndim);
        goto fail;
    }
    int64_t yshape[ATTN_MAX_NDIM];
    for (int i = 0; i < x.view.ndim - 1; i++)
        yshape[i] = x.view.shape[i];
    yshape[x.view.ndim - 1] = W.view.shape[1];
    attn_view y;
    res = new_output(x.view.ndim, yshape, &y);
    if (res == NULL) goto fail;
    attn_status s;
    const attn_view *bp = b.ref ? &b.view : NULL;
    PyThreadState *ts = PyEval_SaveThread();
    s = attn_linear(&x.view, &W.view, bp, &y, nthreads);
    PyEval_RestoreThread(ts);
    if (s != ATTN_OK) {
        raise_status(s);
        goto fail;
    }
    in_release(&x);
    in_release(&W);
    in_release(&b);
    return finish(res, any64);
fail:
    Py_XDECREF(res);
    in_release(&x);
    in_release(&W);
    in_release(&b);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* sdpa(q, k, v, scale, causal, mask, key_lengths, dropout_p, seed,          */
/*      want_lse, want_weights, num_threads, algo) -> (out, lse, weights)    */
/* ------------------------------------------------------------------------ */

static PyObject *py_sdpa(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {
        "q",         "k",    "v",        "scale",        "causal",      "mask", "key_lengths",
        "dropout_p", "seed", "want_lse", "want_weights", "num_threads", "algo", NULL};
    PyObject *qo, *ko, *vo;
    opt_args o = {0};
    o.scale_obj = Py_None;
    o.mask_obj = Py_None;
    o.keylen_obj = Py_None;
    int want_lse = 0, want_w = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|OiOOdKppii:sdpa", kwlist, &qo, &ko, &vo,
                                     &o.scale_obj, &o.causal, &o.mask_obj, &o.keylen_obj,
                                     &o.dropout_p, &o.seed, &want_lse, &want_w, &o.num_threads,
                                     &o.algo))
        return NULL;
    int any64 = 0;
    in_arr q = {0}, k = {0}, v = {0};
    PyArrayObject *out = NULL, *lse = NULL, *w = NULL;
    attn_view out_v, lse_v, w_v;
    attn_opts opts;
    if (in_convert(qo, "q", 0, 0, &any64, &q) < 0 || in_convert(ko, "k", 0, 0, &any64, &k) < 0 ||
        in_convert(vo, "v", 0, 0, &any64, &v) < 0)
        goto fail;
    if (q.view.ndim != 4 || k.view.ndim != 4 || v.view.ndim != 4) {
        PyErr_Format(PyExc_ValueError,
                     "sdpa: q, k, v must have rank 4 (B, H, N, d), got ranks %d, %d, %d",
                     q.view.ndim, k.view.ndim, v.view.ndim);
        goto fail;
    }
    if (opt_build(&o, q.view.shape[0], &opts) < 0) goto fail;
    int64_t oshape[4] = {q.view.shape[0], q.view.shape[1], q.view.shape[2], v.view.shape[3]};
    out = new_output(4, oshape, &out_v);
    if (out == NULL) goto fail;
    if (want_lse) {
        lse = new_output(3, oshape, &lse_v);
        if (lse == NULL) goto fail;
        opts.lse = &lse_v;
    }
    if (want_w) {
        int64_t wshape[4] = {q.view.shape[0], q.view.shape[1], q.view.shape[2], k.view.shape[2]};
        w = new_output(4, wshape, &w_v);
        if (w == NULL) goto fail;
        opts.weights = &w_v;
    }
    attn_status s;
    PyThreadState *ts = PyEval_SaveThread();
    s = attn_sdpa(&q.view, &k.view, &v.view, &out_v, &opts);
    PyEval_RestoreThread(ts);
    if (s != ATTN_OK) {
        raise_status(s);
        goto fail;
    }
    in_release(&q);
    in_release(&k);
    in_release(&v);
    opt_release(&o);
    PyObject *r_out = finish(out, any64);
    PyObject *r_lse = lse ? finish(lse, any64) : (Py_INCREF(Py_None), Py_None);
    PyObject *r_w = w ? finish(w, any64) : (Py_INCREF(Py_None), Py_None);
    if (r_out == NULL || r_lse == NULL || r_w == NULL) {
        Py_XDECREF(r_out);
        Py_XDECREF(r_lse);
        Py_XDECREF(r_w);
        return NULL;
    }
    return Py_BuildValue("(NNN)", r_out, r_lse, r_w);
fail:
    Py_XDECREF(out);
    Py_XDECREF(lse);
    Py_XDECREF(w);
    in_release(&q);
    in_release(&k);
    in_release(&v);
    opt_release(&o);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* merge(outs, lses) -> (out, lse)                                           */
/* ------------------------------------------------------------------------ */

static PyObject *py_merge(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *outs_o, *lses_o;
    if (!PyArg_ParseTuple(args, "OO:merge", &outs_o, &lses_o)) return NULL;
    PyObject *outs = PySequence_Fast(outs_o, "merge: outs must be a sequence of arrays");
    if (outs == NULL) return NULL;
    PyObject *lses = PySequence_Fast(lses_o, "merge: lses must be a sequence of arrays");
    if (lses == NULL) {
        Py_DECREF(outs);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(outs);
    in_arr *po = NULL, *pl = NULL;
    attn_view *vo = NULL, *vl = NULL;
    PyArrayObject *out = NULL, *lse = NULL;
    int any64 = 0;
    if (n != PySequence_Fast_GET_SIZE(lses)) {
        PyErr_Format(PyExc_ValueError, "merge: %zd outputs but %zd lse arrays", n,
                     PySequence_Fast_GET_SIZE(lses));
        goto fail;
    }
    if (n < 1 || n > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "merge: needs at least one partial result");
        goto fail;
    }
    po = calloc((size_t)n, sizeof(*po));
    pl = calloc((size_t)n, sizeof(*pl));
    vo = calloc((size_t)n, sizeof(*vo));
    vl = calloc((size_t)n, sizeof(*vl));
    if (!po || !pl || !vo || !vl) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t p = 0; p < n; p++) {
        char on[32], ln[32];
        snprintf(on, sizeof(on), "outs[%zd]", p);
        snprintf(ln, sizeof(ln), "lses[%zd]", p);
        if (in_convert(PySequence_Fast_GET_ITEM(outs, p), on, 0, 0, &any64, &po[p]) < 0 ||
            in_convert(PySequence_Fast_GET_ITEM(lses, p), ln, 0, 0, &any64, &pl[p]) < 0)
            goto fail;
        vo[p] = po[p].view;
        vl[p] = pl[p].view;
    }
    attn_view out_v, lse_v;
    out = new_output(vo[0].ndim, vo[0].shape, &out_v);
    if (out == NULL) goto fail;
    lse = new_output(vl[0].ndim, vl[0].shape, &lse_v);
    if (lse == NULL) goto fail;
    attn_status s;
    PyThreadState *ts = PyEval_SaveThread();
    s = attn_merge(vo, vl, (int)n, &out_v, &lse_v);
    PyEval_RestoreThread(ts);
    if (s != ATTN_OK) {
        raise_status(s);
        goto fail;
    }
    for (Py_ssize_t p = 0; p < n; p++) {
        in_release(&po[p]);
        in_release(&pl[p]);
    }
    free(po);
    free(pl);
    free(vo);
    free(vl);
    Py_DECREF(outs);
    Py_DECREF(lses);
    PyObject *r_out = finish(out, any64);
    PyObject *r_lse = finish(lse, any64);
    if (r_out == NULL || r_lse == NULL) {
        Py_XDECREF(r_out);
        Py_XDECREF(r_lse);
        return NULL;
    }
    return Py_BuildValue("(NN)", r_out, r_lse);
fail:
    Py_XDECREF(out);
    Py_XDECREF(lse);
    if (po && pl)
        for (Py_ssize_t p = 0; p < n; p++) {
            in_release(&po[p]);
            in_release(&pl[p]);
        }
    free(po);
    free(pl);
    free(vo);
    free(vl);
    Py_DECREF(outs);
    Py_DECREF(lses);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Single-head modules: self_attention(x, xkv, Wq, Wk, Wv, options)          */
/* ------------------------------------------------------------------------ */

static PyObject *py_attention1(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"x",     "xkv",         "Wq",   "Wk",          "Wv",
                             "scale", "causal",      "mask", "key_lengths", "dropout_p",
                             "seed",  "num_threads", "algo", NULL};
    PyObject *xo, *xkvo, *wqo, *wko, *wvo;
    opt_args o = {0};
    o.scale_obj = Py_None;
    o.mask_obj = Py_None;
    o.keylen_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOO|OiOOdKii:attention1", kwlist, &xo, &xkvo,
                                     &wqo, &wko, &wvo, &o.scale_obj, &o.causal, &o.mask_obj,
                                     &o.keylen_obj, &o.dropout_p, &o.seed, &o.num_threads, &o.algo))
        return NULL;
    int any64 = 0;
    in_arr x = {0}, xkv = {0}, Wq = {0}, Wk = {0}, Wv = {0};
    PyArrayObject *out = NULL;
    attn_view out_v;
    attn_opts opts;
    if (in_convert(xo, "x", 0, 0, &any64, &x) < 0 ||
        in_convert(xkvo, "xkv", 1, 0, &any64, &xkv) < 0 ||
        in_convert(wqo, "Wq", 0, 0, &any64, &Wq) < 0 ||
        in_convert(wko, "Wk", 0, 0, &any64, &Wk) < 0 ||
        in_convert(wvo, "Wv", 0, 0, &any64, &Wv) < 0)
        goto fail;
    if (x.view.ndim < 2 || x.view.ndim > 3 || Wv.view.ndim != 2) {
        PyErr_Format(PyExc_ValueError,
                     "self_attention: x must be (N, D) or (B, N, D) and Wv (D, HS); got ranks "
                     "%d and %d",
                     x.view.ndim, Wv.view.ndim);
        goto fail;
    }
    int64_t batch = x.view.ndim == 3 ? x.view.shape[0] : 1;
    if (opt_build(&o, batch, &opts) < 0) goto fail;
    int64_t oshape[3];
    for (int i = 0; i < x.view.ndim - 1; i++)
        oshape[i] = x.view.shape[i];
    oshape[x.view.ndim - 1] = Wv.view.shape[1];
    out = new_output(x.view.ndim, oshape, &out_v);
    if (out == NULL) goto fail;
    attn_status s;
    if (xkv.ref == NULL) {
        PyThreadState *ts = PyEval_SaveThread();
        s = attn_self_attention(&x.view, &Wq.view, &Wk.view, &Wv.view, &out_v, &opts);
        PyEval_RestoreThread(ts);
    } else {
        PyThreadState *ts = PyEval_SaveThread();
        s = attn_cross_attention(&x.view, &xkv.view, &Wq.view, &Wk.view, &Wv.view, &out_v, &opts);
        PyEval_RestoreThread(ts);
    }
    if (s != ATTN_OK) {
        raise_status(s);
        goto fail;
    }
    in_release(&x);
    in_release(&xkv);
    in_release(&Wq);
    in_release(&Wk);
    in_release(&Wv);
    opt_release(&o);
    return finish(out, any64);
fail:
    Py_XDECREF(out);
    in_release(&x);
    in_release(&xkv);
    in_release(&Wq);
    in_release(&Wk);
    in_release(&Wv);
    opt_release(&o);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Multi-head: mha(xq, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo, num_heads,       */
/*                 fused, options, out)                                      */
/* fused=False: Wq, Wk, Wv are stacked per-head (NH, D, HS), biases (NH, HS) */
/* fused=True:  Wq is Wqkv (D, 3D), bq is bqkv (3D), Wk Wv bk bv unused.    */
/* ------------------------------------------------------------------------ */

static PyObject *py_mha(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"xq",          "xkv",    "Wq",   "Wk",          "Wv",        "bq",
                             "bk",          "bv",     "Wo",   "bo",          "num_heads", "fused",
                             "scale",       "causal", "mask", "key_lengths", "dropout_p", "seed",
                             "num_threads", "algo",   "out",  NULL};
    PyObject *xqo, *xkvo, *wqo, *wko, *wvo, *bqo, *bko, *bvo, *woo, *boo;
    PyObject *outo = Py_None;
    long long num_heads = 0;
    int fused = 0;
    opt_args o = {0};
    o.scale_obj = Py_None;
    o.mask_obj = Py_None;
    o.keylen_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOOOOOOOOOLp|OiOOdKiiO:mha", kwlist, &xqo, &xkvo,
                                     &wqo, &wko, &wvo, &bqo, &bko, &bvo, &woo, &boo, &num_heads,
                                     &fused, &o.scale_obj, &o.causal, &o.mask_obj, &o.keylen_obj,
                                     &o.dropout_p, &o.seed, &o.num_threads, &o.algo, &outo))
        return NULL;
    int any64 = 0;
    in_arr xq = {0}, xkv = {0}, Wq = {0}, Wk = {0}, Wv = {0}, bq = {0}, bk = {0}, bv = {0},
           Wo = {0}, bo = {0};
    PyArrayObject *out = NULL;
    attn_view out_v;
    attn_opts opts;
    attn_mha_params p;
    memset(&p, 0, sizeof(p));
    if (in_convert(xqo, "xq", 0, 0, &any64, &xq) < 0 ||
        in_convert(xkvo, "xkv", 1, 0, &any64, &xkv) < 0 ||
        in_convert(wqo, fused ? "W" : "Wq", 0, 0, &any64, &Wq) < 0 ||
        in_convert(wko, "Wk", fused, 0, &any64, &Wk) < 0 ||
        in_convert(wvo, "Wv", fused, 0, &any64, &Wv) < 0 ||
        in_convert(bqo, fused ? "bqkv" : "bq", 1, 0, &any64, &bq) < 0 ||
        in_convert(bko, "bk", 1, 0, &any64, &bk) < 0 ||
        in_convert(bvo, "bv", 1, 0, &any64, &bv) < 0 ||
        in_convert(woo, "Wo", 1, 0, &any64, &Wo) < 0 ||
        in_convert(boo, "bo", 1, 0, &any64, &bo) < 0)
        goto fail;
    attn_status s;
    if (fused) {
        s = attn_mha_from_fused(&Wq.view, bq.ref ? &bq.view : NULL, (int64_t)num_heads,
                                Wo.ref ? &Wo.view : NULL, bo.ref ? &bo.view : NULL, &p);
        if (s != ATTN_OK) {
            raise_status(s);
            goto fail;
        }
    } else {
        if (Wv.view.ndim != 3) {
            PyErr_Format(PyExc_ValueError,
                         "mha: per-head Wv must be stacked as (NH, D, HS), got rank %d",
                         Wv.view.ndim);
            goto fail;
        }
        p.num_heads = Wq.view.ndim >= 1 ? Wq.view.shape[0] : 0;
        p.Wq = Wq.view;
        p.Wk = Wk.view;
        p.Wv = Wv.view;
        p.bq = bq.view;
        p.bk = bk.view;
        p.bv = bv.view;
        p.Wo = Wo.view;
        p.bo = bo.view;
    }
    if (xq.view.ndim < 2 || xq.view.ndim > 3) {
        PyErr_Format(PyExc_ValueError, "mha: xq must be (Nq, D) or (B, Nq, D), got rank %d",
                     xq.view.ndim);
        goto fail;
    }
    int64_t batch = xq.view.ndim == 3 ? xq.view.shape[0] : 1;
    if (opt_build(&o, batch, &opts) < 0) goto fail;
    int64_t dout;
    if (p.Wo.data != NULL) {
        if (p.Wo.ndim != 2) {
            PyErr_Format(PyExc_ValueError, "mha: Wo must have rank 2 (NH*HS, D), got rank %d",
                         p.Wo.ndim);
            goto fail;
        }
        dout = p.Wo.shape[1];
    } else {
        dout = p.num_heads * p.Wv.shape[2];
    }
    if (outo != Py_None) {
        if (out_convert(outo, &out_v) < 0) goto fail;
        Py_INCREF(outo);
        out = (PyArrayObject *)outo;
        any64 = 0;
    } else {
        int64_t oshape[3];
        for (int i = 0; i < xq.view.ndim - 1; i++)
            oshape[i] = xq.view.shape[i];
        oshape[xq.view.ndim - 1] = dout;
        out = new_output(xq.view.ndim, oshape, &out_v);
        if (out == NULL) goto fail;
    }
    const attn_view *xkvp = xkv.ref ? &xkv.view : NULL;
    PyThreadState *ts = PyEval_SaveThread();
    s = attn_mha(&p, &xq.view, xkvp, &out_v, &opts);
    PyEval_RestoreThread(ts);
    if (s != ATTN_OK) {
        raise_status(s);
        goto fail;
    }
    in_release(&xq);
    in_release(&xkv);
    in_release(&Wq);
    in_release(&Wk);
    in_release(&Wv);
    in_release(&bq);
    in_release(&bk);
    in_release(&bv);
    in_release(&Wo);
    in_release(&bo);
    opt_release(&o);
    return finish(out, any64);
fail:
    Py_XDECREF(out);
    in_release(&xq);
    in_release(&xkv);
    in_release(&Wq);
    in_release(&Wk);
    in_release(&Wv);
    in_release(&bq);
    in_release(&bk);
    in_release(&bv);
    in_release(&Wo);
    in_release(&bo);
    opt_release(&o);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static PyObject *py_dropout_keep(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long seed;
    long long b, h, i, j;
    double p;
    if (!PyArg_ParseTuple(args, "KLLLLd:dropout_keep", &seed, &b, &h, &i, &j, &p)) return NULL;
    return PyBool_FromLong(attn_dropout_keep((uint64_t)seed, b, h, i, j, (float)p));
}

static PyObject *py_version(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyUnicode_FromString(attn_version());
}

static PyObject *py_build_info(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyUnicode_FromString(attn_build_info());
}

static PyObject *py_get_isa(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyUnicode_FromString(attn_isa_name(attn_get_isa()));
}

static PyObject *py_set_isa(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s:set_isa", &name)) return NULL;
    attn_isa isa;
    if (strcmp(name, "auto") == 0)
        isa = ATTN_ISA_AUTO;
    else if (strcmp(name, "generic") == 0)
        isa = ATTN_ISA_GENERIC;
    else if (strcmp(name, "avx2") == 0)
        isa = ATTN_ISA_AVX2;
    else if (strcmp(name, "avx512") == 0)
        isa = ATTN_ISA_AVX512;
    else {
        PyErr_Format(PyExc_ValueError, "unknown ISA '%s' (auto, generic, avx2, avx512)", name);
        return NULL;
    }
    attn_status s = attn_set_isa(isa);
    if (s != ATTN_OK) return raise_status(s);
    Py_RETURN_NONE;
}

static PyObject *py_isa_supported(PyObject *self, PyObject *args) {
    (void)self;
    int isa;
    if (!PyArg_ParseTuple(args, "i:isa_supported", &isa)) return NULL;
    return PyBool_FromLong(attn_isa_supported((attn_isa)isa));
}

/* Test hook: fail the n-th scratch allocation the library makes from now on
 * (n >= 1), counting live blocks; n <= 0 restores the default allocator and
 * returns how many blocks are still live (0 unless something leaked). Not for
 * concurrent use: tests only. */
static long alloc_countdown, alloc_live;

static void *failing_alloc(size_t size, size_t align, void *ctx) {
    (void)ctx;
    if (alloc_countdown > 0 && --alloc_countdown == 0) return NULL;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (p) alloc_live++;
    return p;
}

static void counting_free(void *p, void *ctx) {
    (void)ctx;
    if (p) alloc_live--;
    free(p);
}

static PyObject *py_fail_nth_alloc(PyObject *self, PyObject *args) {
    (void)self;
    long n;
    if (!PyArg_ParseTuple(args, "l:_fail_nth_alloc", &n)) return NULL;
    if (n <= 0) {
        attn_set_allocator(NULL);
        return PyLong_FromLong(alloc_live);
    }
    alloc_countdown = n;
    alloc_live = 0;
    const attn_allocator a = {failing_alloc, counting_free, NULL};
    attn_set_allocator(&a);
    return PyLong_FromLong(0);
}

static PyMethodDef methods[] = {
    {"_fail_nth_alloc", py_fail_nth_alloc, METH_VARARGS,
     "_fail_nth_alloc(n): tests only; fail the n-th scratch allocation (n <= 0: restore, "
     "return live blocks)."},
    {"softmax", (PyCFunction)(void (*)(void))py_softmax, METH_VARARGS | METH_KEYWORDS,
     "softmax(x, out=None): attn_softmax over the last axis (rank 1..4)."},
    {"layer_norm", (PyCFunction)(void (*)(void))py_layer_norm, METH_VARARGS | METH_KEYWORDS,
     "layer_norm(x, gamma=None, beta=None, eps=1e-5): attn_layer_norm."},
    {"linear", (PyCFunction)(void (*)(void))py_linear, METH_VARARGS | METH_KEYWORDS,
     "linear(x, W, b=None, num_threads=0): attn_linear."},
    {"sdpa", (PyCFunction)(void (*)(void))py_sdpa, METH_VARARGS | METH_KEYWORDS,
     "sdpa(q, k, v, ...): attn_sdpa on rank-4 arrays; returns (out, lse|None, weights|None)."},
    {"merge", py_merge, METH_VARARGS, "merge(outs, lses): attn_merge; returns (out, lse)."},
    {"attention1", (PyCFunction)(void (*)(void))py_attention1, METH_VARARGS | METH_KEYWORDS,
     "attention1(x, xkv, Wq, Wk, Wv, ...): attn_self_attention / attn_cross_attention."},
    {"mha", (PyCFunction)(void (*)(void))py_mha, METH_VARARGS | METH_KEYWORDS,
     "mha(xq, xkv, Wq, Wk, Wv, bq, bk, bv, Wo, bo, num_heads, fused, ...): attn_mha."},
    {"dropout_keep", py_dropout_keep, METH_VARARGS,
     "dropout_keep(seed, b, h, i, j, p): attn_dropout_keep as a bool."},
    {"version", py_version, METH_NOARGS, "The C library's version string."},
    {"build_info", py_build_info, METH_NOARGS, "The C library's build description."},
    {"get_isa", py_get_isa, METH_NOARGS, "The instruction set in use."},
    {"set_isa", py_set_isa, METH_VARARGS, "set_isa(name): auto, generic, avx2 or avx512."},
    {"isa_supported", py_isa_supported, METH_VARARGS, "isa_supported(attn_isa value)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    "_attn",
    "Low-level bindings of the attn C library.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__attn(void) {
    import_array();
    return PyModule_Create(&moduledef);
}
