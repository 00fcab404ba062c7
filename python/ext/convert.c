/* convert.c - argument tables, array conversion, outputs and errors (see
 * convert.h for the pattern every binding function follows). */
#include "convert.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASK_ADVICE                                                                                \
    "attn takes an additive float mask (0 = visible, -inf = hidden) because libraries disagree "   \
    "on what True means; convert it with np.where(keep, 0.0, -np.inf), keep being True where a "   \
    "key is visible"

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

int status_to_py(attn_status s) {
    if (s == ATTN_OK) return 0;
    const char *msg = attn_last_error();
    if (msg == NULL || msg[0] == '\0') msg = attn_status_string(s);
    PyObject *type;
    switch (s) {
    case ATTN_ERR_NOMEM:
        type = PyExc_MemoryError;
        break;
    case ATTN_ERR_ISA:
        type = PyExc_RuntimeError;
        break;
    case ATTN_ERR_OVERFLOW:
        type = PyExc_OverflowError;
        break;
    default:
        type = PyExc_ValueError;
        break;
    }
    PyErr_Format(type, "%s", msg);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Arrays                                                                    */
/* ------------------------------------------------------------------------ */

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

/* A mask of lower rank is aligned on the right like NumPy broadcasting
 * (missing leading dimensions have size 1, stride 0). */
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

/* Before a float64 -> float32 copy: a finite value beyond float32's range
 * would silently become inf (and NumPy would warn). Report the first one
 * with its index and value as the caller passed it. src is float64. */
static int check_f32_range(conv_state *st, const char *name, PyArrayObject *src) {
    PyArrayObject *a = src;
    Py_INCREF(a);
    if (!PyArray_ISNOTSWAPPED(a) || !PyArray_ISALIGNED(a)) {
        Py_DECREF(a);
        a = (PyArrayObject *)PyArray_FromArray(src, PyArray_DescrFromType(NPY_FLOAT64),
                                               NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED);
        if (a == NULL) return -1;
    }
    PyArrayIterObject *it = (PyArrayIterObject *)PyArray_IterNew((PyObject *)a);
    if (it == NULL) {
        Py_DECREF(a);
        return -1;
    }
    int rc = 0;
    while (PyArray_ITER_NOTDONE(it)) {
        double x = *(const double *)PyArray_ITER_DATA(it);
        if (isfinite(x) && fabs(x) > FLT_MAX) {
            /* The iterator walks in C order: unravel its flat index. */
            npy_intp idx[NPY_MAXDIMS], rest = it->index;
            for (int d = PyArray_NDIM(a) - 1; d >= 0; d--) {
                idx[d] = rest % PyArray_DIMS(a)[d];
                rest /= PyArray_DIMS(a)[d];
            }
            char at[NPY_MAXDIMS * 24 + 4], *p = at;
            at[0] = '\0';
            for (int d = 0; d < PyArray_NDIM(a); d++)
                p += snprintf(p, sizeof(at) - (size_t)(p - at), "%s%ld", d ? ", " : "",
                              (long)idx[d]);
            PyObject *xo = PyFloat_FromDouble(x);
            if (xo != NULL) {
                PyErr_Format(PyExc_ValueError,
                             "%s: %s[%s]=%R is beyond float32's range (+-3.4e38), the precision "
                             "attn computes in; scale the data or use -np.inf / np.inf explicitly",
                             st->fn, name, at, xo);
                Py_DECREF(xo);
            }
            rc = -1;
            break;
        }
        PyArray_ITER_NEXT(it);
    }
    Py_DECREF(it);
    Py_DECREF(a);
    return rc;
}

static int check_rank(conv_state *st, const arg_spec *spec, const char *name, PyArrayObject *a) {
    int lo = spec->min_rank ? spec->min_rank : 1;
    int hi = spec->max_rank ? spec->max_rank : ATTN_MAX_NDIM;
    if (spec->kind == ARG_MASK) { /* NumPy broadcasting: a 0-d mask is a scalar, and */
        lo = 0;                   /* leading size-1 axes beyond rank 4 broadcast away */
        if (!spec->max_rank) hi = NPY_MAXDIMS;
    }
    int nd = PyArray_NDIM(a);
    if (nd >= lo && nd <= hi) return 0;
    PyObject *shape = PyObject_GetAttrString((PyObject *)a, "shape");
    if (shape == NULL) return -1;
    if (lo == hi)
        PyErr_Format(PyExc_ValueError, "%s: %s has shape %R (rank %d); it must have rank %d",
                     st->fn, name, shape, nd, lo);
    else
        PyErr_Format(PyExc_ValueError, "%s: %s has shape %R (rank %d); it must have rank %d to %d",
                     st->fn, name, shape, nd, lo, hi);
    Py_DECREF(shape);
    return -1;
}

static int conv_int64s(conv_state *st, const char *name, PyObject *obj, arg_val *v) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(obj);
    if (a == NULL) return -1;
    if (!PyArray_ISINTEGER(a) || PyArray_NDIM(a) > 1) {
        if (!PyArray_ISINTEGER(a))
            PyErr_Format(PyExc_TypeError, "%s: %s has dtype %S; it must hold integers", st->fn,
                         name, (PyObject *)PyArray_DESCR(a));
        else
            PyErr_Format(PyExc_ValueError, "%s: %s must be one integer or a 1-d array, got rank %d",
                         st->fn, name, PyArray_NDIM(a));
        Py_DECREF(a);
        return -1;
    }
    if (PyArray_ISUNSIGNED(a) && PyArray_ITEMSIZE(a) == 8) {
        /* uint64 values above INT64_MAX would wrap to negatives. */
        PyArrayObject *u = (PyArrayObject *)PyArray_FromArray(a, PyArray_DescrFromType(NPY_UINT64),
                                                              NPY_ARRAY_IN_ARRAY);
        if (u == NULL) {
            Py_DECREF(a);
            return -1;
        }
        const uint64_t *p = (const uint64_t *)PyArray_DATA(u);
        for (npy_intp e = 0; e < PyArray_SIZE(u); e++)
            if (p[e] > (uint64_t)INT64_MAX) {
                PyErr_Format(PyExc_ValueError, "%s: %s[%ld]=%llu is out of range", st->fn, name,
                             (long)e, (unsigned long long)p[e]);
                Py_DECREF(u);
                Py_DECREF(a);
                return -1;
            }
        Py_DECREF(u);
    }
    PyArrayObject *c = (PyArrayObject *)PyArray_FromArray(a, PyArray_DescrFromType(NPY_INT64),
                                                          NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(a);
    if (c == NULL) return -1;
    v->ref = c;
    v->i64 = (const int64_t *)PyArray_DATA(c);
    v->len = (int64_t)PyArray_SIZE(c);
    return 0;
}

static int conv_f64s(conv_state *st, const char *name, PyObject *obj, arg_val *v) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(obj);
    if (a == NULL) return -1;
    if (!(PyArray_ISFLOAT(a) || PyArray_ISINTEGER(a)) || PyArray_ISCOMPLEX(a) ||
        PyArray_NDIM(a) > 1) {
        if (PyArray_NDIM(a) > 1)
            PyErr_Format(PyExc_ValueError, "%s: %s must be a 1-d array, got rank %d", st->fn, name,
                         PyArray_NDIM(a));
        else
            PyErr_Format(PyExc_TypeError, "%s: %s has dtype %S; it must hold real numbers", st->fn,
                         name, (PyObject *)PyArray_DESCR(a));
        Py_DECREF(a);
        return -1;
    }
    PyArrayObject *c = (PyArrayObject *)PyArray_FromArray(a, PyArray_DescrFromType(NPY_FLOAT64),
                                                          NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    Py_DECREF(a);
    if (c == NULL) return -1;
    v->ref = c;
    v->f64 = (const double *)PyArray_DATA(c);
    v->len = (int64_t)PyArray_SIZE(c);
    return 0;
}

static int conv_out(conv_state *st, const char *name, PyObject *obj, arg_val *v) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a NumPy array", st->fn, name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (!usable_in_place(a) || !PyArray_ISWRITEABLE(a) || PyArray_NDIM(a) < 1 ||
        PyArray_NDIM(a) > ATTN_MAX_NDIM) {
        PyErr_Format(PyExc_ValueError,
                     "%s: %s must be a writable float32 array of rank 1 to 4 with strides that "
                     "are multiples of 4 bytes",
                     st->fn, name);
        return -1;
    }
    Py_INCREF(obj);
    v->ref = a;
    view_from_array(a, &v->view);
    v->vp = &v->view;
    return 0;
}

int conv_array(conv_state *st, const arg_spec *spec, const char *name, PyObject *obj, arg_val *v) {
    if (spec->kind == ARG_INT64S) return conv_int64s(st, name, obj, v);
    if (spec->kind == ARG_F64S) return conv_f64s(st, name, obj, v);
    if (spec->kind == ARG_OUT) return conv_out(st, name, obj, v);
    PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(obj);
    if (a == NULL) return -1;
    int is_mask = spec->kind == ARG_MASK;
    int t = PyArray_TYPE(a);
    if (t == NPY_BOOL && is_mask) {
        PyErr_Format(PyExc_TypeError, "%s: %s is a boolean array; " MASK_ADVICE, st->fn, name);
        goto fail;
    }
    if (t != NPY_FLOAT32 && t != NPY_FLOAT64) {
        PyErr_Format(PyExc_TypeError,
                     "%s: %s has dtype %S; attn takes float32 or float64 arrays "
                     "(convert with .astype(np.float32))",
                     st->fn, name, (PyObject *)PyArray_DESCR(a));
        goto fail;
    }
    if (check_rank(st, spec, name, a) < 0) goto fail;
    if (t == NPY_FLOAT64 && !is_mask && !(spec->flags & ARG_NOVOTE)) st->any64 = 1;
    if (t == NPY_FLOAT64 && check_f32_range(st, name, a) < 0) goto fail;
    if (!usable_in_place(a) || ((spec->flags & ARG_CONTIG) && !PyArray_IS_C_CONTIGUOUS(a))) {
        /* The documented copy: float64, byte-swapped, misaligned or strides
         * that are not a whole number of float32 elements. */
        PyArrayObject *c = (PyArrayObject *)PyArray_FromArray(
            a, PyArray_DescrFromType(NPY_FLOAT32),
            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
        if (c == NULL) goto fail;
        Py_DECREF(a);
        a = c;
    }
    v->ref = a;
    if (is_mask && PyArray_NDIM(a) > ATTN_MAX_NDIM) {
        int extra = PyArray_NDIM(a) - ATTN_MAX_NDIM;
        for (int d = 0; d < extra; d++)
            if (PyArray_DIMS(a)[d] != 1) {
                PyObject *shape = PyObject_GetAttrString((PyObject *)a, "shape");
                if (shape == NULL) return -1;
                PyErr_Format(PyExc_ValueError,
                             "%s: %s has shape %R; it broadcasts to (B, H, Nq, Nkv) only if the "
                             "axes before its last %d have size 1",
                             st->fn, name, shape, ATTN_MAX_NDIM);
                Py_DECREF(shape);
                return -1; /* v->ref is released by args_release */
            }
        memset(&v->view, 0, sizeof(v->view));
        v->view.data = (float *)PyArray_DATA(a);
        v->view.ndim = ATTN_MAX_NDIM;
        for (int d = 0; d < ATTN_MAX_NDIM; d++) {
            v->view.shape[d] = (int64_t)PyArray_DIMS(a)[d + extra];
            v->view.stride[d] = (int64_t)(PyArray_STRIDES(a)[d + extra] / (npy_intp)sizeof(float));
        }
    } else {
        view_from_array(a, &v->view);
    }
    if (is_mask) promote_rank4(&v->view); /* rank 0 (a scalar) too: every axis size 1 */
    v->vp = &v->view;
    return 0;
fail:
    Py_DECREF(a);
    return -1;
}

int conv_list(conv_state *st, const arg_spec *spec, PyObject *seq, Py_ssize_t *n, arg_val **vals,
              attn_view **views) {
    *n = 0;
    *vals = NULL;
    *views = NULL;
    char msg[96];
    snprintf(msg, sizeof(msg), "%s: %s must be a sequence of arrays", st->fn, spec->name);
    PyObject *fast = PySequence_Fast(seq, msg);
    if (fast == NULL) return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    arg_val *vv = calloc(len ? (size_t)len : 1, sizeof(*vv));
    attn_view *ww = calloc(len ? (size_t)len : 1, sizeof(*ww));
    if (vv == NULL || ww == NULL) {
        free(vv);
        free(ww);
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t p = 0; p < len; p++) {
        char name[64];
        snprintf(name, sizeof(name), "%s[%zd]", spec->name, p);
        PyObject *item = PySequence_Fast_GET_ITEM(fast, p);
        vv[p].obj = item;
        vv[p].given = 1;
        if (conv_array(st, spec, name, item, &vv[p]) < 0) {
            conv_list_release(vv, ww, len);
            Py_DECREF(fast);
            return -1;
        }
        ww[p] = vv[p].view;
    }
    Py_DECREF(fast);
    *n = len;
    *vals = vv;
    *views = ww;
    return 0;
}

void conv_list_release(arg_val *vals, attn_view *views, Py_ssize_t n) {
    if (vals != NULL)
        for (Py_ssize_t p = 0; p < n; p++)
            Py_CLEAR(vals[p].ref);
    free(vals);
    free(views);
}

int conv_require_len(conv_state *st, const arg_spec *spec, const arg_val *v, int64_t len,
                     const char *what) {
    if (!v->given || v->len == len) return 0;
    PyErr_Format(PyExc_ValueError, "%s: %s holds %lld values but needs %lld (%s)", st->fn,
                 spec->name, (long long)v->len, (long long)len, what);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Scalars                                                                   */
/* ------------------------------------------------------------------------ */

static int conv_scalar(conv_state *st, const arg_spec *spec, PyObject *obj, arg_val *v) {
    const char *fn = st->fn, *name = spec->name;
    switch (spec->kind) {
    case ARG_FLOAT: {
        if (PyUnicode_Check(obj) || PyBytes_Check(obj) || PyBool_Check(obj)) {
            PyErr_Format(PyExc_TypeError, "%s: %s must be a real number, got %R", fn, name, obj);
            return -1;
        }
        double f = PyFloat_AsDouble(obj);
        if (f == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s: %s must be a real number, got %R", fn, name, obj);
            return -1;
        }
        if ((spec->flags & ARG_FINITE) && !isfinite(f)) {
            PyErr_Format(PyExc_ValueError, "%s: %s=%R must be finite", fn, name, obj);
            return -1;
        }
        if ((spec->flags & ARG_F32) && isfinite(f) && fabs(f) > FLT_MAX) {
            PyErr_Format(PyExc_ValueError,
                         "%s: %s=%R is beyond float32's range (+-3.4e38), the precision attn "
                         "computes in",
                         fn, name, obj);
            return -1;
        }
        v->f = f;
        return 0;
    }
    case ARG_INT:
    case ARG_U64: {
        PyObject *ix = PyBool_Check(obj) ? NULL : PyNumber_Index(obj);
        if (ix == NULL) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s: %s must be an integer, got %R", fn, name, obj);
            return -1;
        }
        int bad = 0;
        if (spec->kind == ARG_U64) {
            unsigned long long u = PyLong_AsUnsignedLongLong(ix);
            if (u == (unsigned long long)-1 && PyErr_Occurred()) bad = 1;
            v->u = (uint64_t)u;
        } else {
            long long i = PyLong_AsLongLong(ix);
            if (i == -1 && PyErr_Occurred()) bad = 1;
            if (!bad && (spec->flags & ARG_MIN) && i < spec->min) bad = 1;
            v->i = (int64_t)i;
        }
        if (bad) {
            PyErr_Clear();
            if (spec->kind == ARG_U64)
                PyErr_Format(PyExc_ValueError, "%s: %s=%R must be an integer in 0..2**64-1", fn,
                             name, obj);
            else if (spec->flags & ARG_MIN)
                PyErr_Format(PyExc_ValueError, "%s: %s=%R must be an integer >= %lld", fn, name,
                             obj, (long long)spec->min);
            else
                PyErr_Format(PyExc_ValueError, "%s: %s=%R is out of range", fn, name, obj);
        }
        Py_DECREF(ix);
        return bad ? -1 : 0;
    }
    case ARG_BOOL: {
        int b = PyObject_IsTrue(obj);
        if (b < 0) return -1;
        v->i = b;
        return 0;
    }
    case ARG_ENUM: {
        if (PyUnicode_Check(obj)) {
            for (int k = 0; spec->names[k] != NULL; k++)
                if (PyUnicode_CompareWithASCIIString(obj, spec->names[k]) == 0) {
                    v->i = k;
                    return 0;
                }
        }
        char choices[256];
        size_t used = 0;
        choices[0] = '\0';
        for (int k = 0; spec->names[k] != NULL && used < sizeof(choices); k++)
            used += (size_t)snprintf(choices + used, sizeof(choices) - used, "%s'%s'",
                                     k ? ", " : "", spec->names[k]);
        PyErr_Format(PyExc_ValueError, "%s: %s must be one of %s; got %R", fn, name, choices, obj);
        return -1;
    }
    default:
        v->obj = obj;
        return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* The table                                                                 */
/* ------------------------------------------------------------------------ */

int args_parse(const char *fn, const arg_spec *spec, int n, PyObject *args, PyObject *kw,
               arg_val *v, conv_state *st) {
    memset(v, 0, (size_t)n * sizeof(*v));
    st->fn = fn;
    st->any64 = 0;
    PyObject **given = calloc((size_t)n, sizeof(*given));
    if (given == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = -1;
    Py_ssize_t npos = args ? PyTuple_GET_SIZE(args) : 0;
    if (npos > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fn, n, npos);
        goto done;
    }
    for (Py_ssize_t p = 0; p < npos; p++)
        given[p] = PyTuple_GET_ITEM(args, p);
    if (kw != NULL) {
        PyObject *key, *val;
        Py_ssize_t pos = 0;
        while (PyDict_Next(kw, &pos, &key, &val)) {
            int k = 0;
            for (; k < n; k++)
                if (PyUnicode_Check(key) &&
                    PyUnicode_CompareWithASCIIString(key, spec[k].name) == 0)
                    break;
            if (k == n) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", fn,
                             key);
                goto done;
            }
            if (given[k] != NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fn,
                             spec[k].name);
                goto done;
            }
            given[k] = val;
        }
    }
    for (int k = 0; k < n; k++) {
        PyObject *obj = given[k];
        if (obj == NULL || obj == Py_None) {
            if (spec[k].flags & ARG_REQUIRED) {
                PyErr_Format(PyExc_TypeError, "%s: %s is required (got None)", fn, spec[k].name);
                goto done;
            }
            continue;
        }
        v[k].given = 1;
        v[k].obj = obj;
        int is_array = spec[k].kind == ARG_ARRAY || spec[k].kind == ARG_MASK ||
                       spec[k].kind == ARG_INT64S || spec[k].kind == ARG_F64S ||
                       spec[k].kind == ARG_OUT;
        int r = is_array ? conv_array(st, &spec[k], spec[k].name, obj, &v[k])
                         : conv_scalar(st, &spec[k], obj, &v[k]);
        if (r < 0) goto done;
    }
    rc = 0;
done:
    free(given);
    return rc;
}

void args_release(arg_val *v, int n) {
    for (int k = 0; k < n; k++)
        Py_CLEAR(v[k].ref);
}

/* ------------------------------------------------------------------------ */
/* Outputs                                                                   */
/* ------------------------------------------------------------------------ */

PyArrayObject *out_new(int ndim, const int64_t *shape, attn_view *v) {
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

PyObject *out_finish(PyArrayObject *res, const conv_state *st) {
    if (res == NULL || !st->any64) return (PyObject *)res;
    PyObject *r = PyArray_Cast(res, NPY_FLOAT64);
    Py_DECREF(res);
    return r;
}
