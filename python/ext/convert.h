/*
 * convert.h - the one conversion path of the CPython extension `attn._attn`.
 *
 * Every binding function is three steps, always the same:
 *
 *   1. Declare its arguments once, as a static table (Python names, in
 *      positional order), with an enum giving each row an index:
 *
 *        enum { X, W, B, NTHREADS, N_ARGS };
 *        static const arg_spec spec[N_ARGS] = {
 *            [X] = {"x", ARG_ARRAY, ARG_REQUIRED, .max_rank = 3},
 *            [W] = {"W", ARG_ARRAY, ARG_REQUIRED, .min_rank = 2, .max_rank = 2},
 *            [B] = {"b", ARG_ARRAY, 0},
 *            [NTHREADS] = {"num_threads", ARG_INT, ARG_MIN, .min = 0},
 *        };
 *
 *   2. Parse, convert and validate everything in one call, compute with the
 *      GIL released in one macro, release everything in one call:
 *
 *        static PyObject *py_linear(PyObject *self, PyObject *args, PyObject *kw) {
 *            arg_val v[N_ARGS];
 *            conv_state st;
 *            PyObject *res = NULL;
 *            if (args_parse("linear", spec, N_ARGS, args, kw, v, &st) < 0) goto done;
 *            ... shapes of the result from v[X].view ...
 *            PyArrayObject *y = out_new(nd, shape, &yv);
 *            int rc;
 *            CALL_NOGIL(rc, attn_linear(&v[X].view, &v[W].view, v[B].vp, &yv,
 *                                       (int)v[NTHREADS].i));
 *            if (rc == 0) res = out_finish(y, &st); else Py_DECREF(y);
 *        done:
 *            args_release(v, N_ARGS);
 *            return res;
 *        }
 *
 *      args_parse accepts positional and keyword arguments like a Python
 *      function (unknown, duplicate or missing names raise TypeError), treats
 *      None as "not given", and each converted value lands in v[i]:
 *        ARG_ARRAY   float32/float64 array -> v.view (no copy when float32
 *                    with element strides), v.vp = &v.view or NULL; counts for
 *                    the result dtype unless ARG_NOVOTE
 *        ARG_MASK    the same, but a boolean array is refused with the
 *                    additive-mask advice and it never counts for the dtype
 *        ARG_INT64S  integer array -> v.view-less int64 copy: v.i64, v.len
 *        ARG_F64S    real array of rank <= 1 -> float64 copy: v.f64, v.len
 *                    (tables kept in double, e.g. RoPE's inv_freq)
 *        ARG_FLOAT   a real number -> v.f (ARG_F32: must fit float32)
 *        ARG_INT     an integer (not bool, float or str) -> v.i (ARG_MIN: >= min)
 *        ARG_U64     an integer in 0..2**64-1 -> v.u
 *        ARG_BOOL    True/False -> v.i
 *        ARG_ENUM    one of .names (NULL-terminated) -> v.i = its index
 *        ARG_OUT     a caller-supplied writable float32 array -> v.view, v.vp
 *        ARG_OBJ     anything, borrowed as v.obj (e.g. a list for conv_list)
 *      v[i].given tells whether the argument was passed (and not None).
 *      Errors name the argument as Python callers know it: "sdpa: seed=-1
 *      must be an integer in 0..2**64-1".
 *
 *   3. Register the function: add it to the file's method table, exported as
 *      `PyMethodDef attn_py_<concern>_methods[]`; a new concern (file) is one
 *      line in methods.def and one line in python/CMakeLists.txt.
 *
 * Conversion rule (documented for users in attn/_convert.py): float32 and
 * float64 arrays are accepted; the computation is float32; an input that is
 * not float32 with strides that are multiples of 4 bytes (aligned, native
 * byte order) is copied to a C-contiguous float32 array first. A finite
 * float64 value beyond float32's range is an error (it would silently become
 * inf). The result is float64 when any voting input is float64, else float32.
 */
#ifndef ATTN_PY_CONVERT_H
#define ATTN_PY_CONVERT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#ifndef ATTN_PY_MAIN_FILE
#define NO_IMPORT_ARRAY
#endif
#define PY_ARRAY_UNIQUE_SYMBOL attn_py_numpy_api
#include <numpy/arrayobject.h>

#include <stdint.h>

#include "attn.h"

typedef enum {
    ARG_ARRAY,
    ARG_MASK,
    ARG_INT64S,
    ARG_F64S,
    ARG_FLOAT,
    ARG_INT,
    ARG_U64,
    ARG_BOOL,
    ARG_ENUM,
    ARG_OUT,
    ARG_OBJ,
} arg_kind;

enum {
    ARG_REQUIRED = 1u << 0, /* None or absent is a TypeError */
    ARG_NOVOTE = 1u << 1,   /* ARG_ARRAY: does not decide the result dtype */
    ARG_F32 = 1u << 2,      /* ARG_FLOAT: a finite value must fit float32 */
    ARG_MIN = 1u << 3,      /* ARG_INT: must be >= .min */
    ARG_FINITE = 1u << 4,   /* ARG_FLOAT: NaN and +-inf are errors */
    ARG_CONTIG = 1u << 5,   /* ARG_ARRAY: C-contiguous float32 (copied if not), e.g. for
                               a plain `const float *` of the C API */
};

typedef struct {
    const char *name; /* the Python name, used in every message */
    arg_kind kind;
    unsigned flags;
    int min_rank, max_rank;   /* arrays; 0 = 1 .. ATTN_MAX_NDIM */
    int64_t min;              /* ARG_INT with ARG_MIN */
    const char *const *names; /* ARG_ENUM, NULL-terminated */
} arg_spec;

typedef struct {
    int given;           /* passed and not None */
    PyObject *obj;       /* borrowed: the object as passed (NULL if not given) */
    PyArrayObject *ref;  /* owned: the array the view points into */
    attn_view view;      /* arrays */
    const attn_view *vp; /* &view when given, else NULL */
    const int64_t *i64;  /* ARG_INT64S: the int64 values */
    const double *f64;   /* ARG_F64S: the float64 values */
    int64_t len;         /* ARG_INT64S, ARG_F64S: how many */
    double f;            /* ARG_FLOAT */
    int64_t i;           /* ARG_INT, ARG_BOOL, ARG_ENUM */
    uint64_t u;          /* ARG_U64 */
} arg_val;

/* What a call's conversion learnt: any64 = some voting input was float64. */
typedef struct {
    const char *fn;
    int any64;
} conv_state;

/* Parse args/kw by spec into v[0..n) (always initialised, so args_release is
 * safe after a failure). 0, or -1 with a Python exception set. */
int args_parse(const char *fn, const arg_spec *spec, int n, PyObject *args, PyObject *kw,
               arg_val *v, conv_state *st);
void args_release(arg_val *v, int n);

/* One array by the rules of spec (used by args_parse and conv_list). */
int conv_array(conv_state *st, const arg_spec *spec, const char *name, PyObject *obj, arg_val *v);

/* A sequence of arrays, each converted as `spec` says and named "name[i]".
 * On success *views is a malloc'd array of *n views and *vals holds the
 * references (release with conv_list_release). */
int conv_list(conv_state *st, const arg_spec *spec, PyObject *seq, Py_ssize_t *n, arg_val **vals,
              attn_view **views);
void conv_list_release(arg_val *vals, attn_view *views, Py_ssize_t n);

/* ARG_INT64S: require exactly `len` values, else ValueError naming `what`. */
int conv_require_len(conv_state *st, const arg_spec *spec, const arg_val *v, int64_t len,
                     const char *what);

/* A new C-contiguous float32 array of the given shape, and its view. */
PyArrayObject *out_new(int ndim, const int64_t *shape, attn_view *v);

/* The result as the caller gets it: float64 when st->any64, else as is.
 * Steals res; NULL passes through. */
PyObject *out_finish(PyArrayObject *res, const conv_state *st);

/* ATTN_OK -> 0; anything else -> -1 with the matching exception
 * (MemoryError, OverflowError, RuntimeError for ISA, else ValueError)
 * carrying attn_last_error(), read on this thread after the GIL is back. */
int status_to_py(attn_status s);

/* Run one C library call with the GIL released; rc = status_to_py(status). */
#define CALL_NOGIL(rc, call)                                                                       \
    do {                                                                                           \
        PyThreadState *call_ts_ = PyEval_SaveThread();                                             \
        attn_status call_s_ = (call);                                                              \
        PyEval_RestoreThread(call_ts_);                                                            \
        (rc) = status_to_py(call_s_);                                                              \
    } while (0)

/* Python's function-pointer cast for METH_VARARGS | METH_KEYWORDS. */
#define PY_KWFUNC(f) ((PyCFunction)(void (*)(void))(f))

#endif
