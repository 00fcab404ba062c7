/* kv.c - the paged KV cache (attn_kv_*) for Python; attn/kv.py wraps these
 * functions in the class KVCache. The cache travels as a capsule whose
 * destructor frees it. Block tables arrive flattened (ARG_INT64S) with
 * their row length; values outside int32 are refused here, every other
 * check is the C library's. */
#include "opts.h"

#include <stdlib.h>

static const char CAPSULE[] = "attn.kv_cache";

static void capsule_free(PyObject *cap) {
    attn_kv_destroy((attn_kv_cache *)PyCapsule_GetPointer(cap, CAPSULE));
}

static attn_kv_cache *cache_of(PyObject *obj, const char *fn) {
    attn_kv_cache *c = PyCapsule_IsValid(obj, CAPSULE)
                           ? (attn_kv_cache *)PyCapsule_GetPointer(obj, CAPSULE)
                           : NULL;
    if (!c) PyErr_Format(PyExc_TypeError, "%s: cache is not a KV cache handle", fn);
    return c;
}

/* int64 values as a new int32 array (free()), or NULL with ValueError. */
static int32_t *to_int32(const char *fn, const char *name, const int64_t *x, int64_t n) {
    int32_t *t = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    if (!t) {
        PyErr_NoMemory();
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (x[i] < INT32_MIN || x[i] > INT32_MAX) {
            PyErr_Format(PyExc_ValueError, "%s: %s holds %lld, outside int32", fn, name,
                         (long long)x[i]);
            free(t);
            return NULL;
        }
        t[i] = (int32_t)x[i];
    }
    return t;
}

static const char *const dtype_names[] = {"float32", "float16", "bfloat16", NULL};

/* kv_create(num_blocks, block_size, num_kv_heads, head_dim, value_dim, dtype) -> capsule */
enum { C_NB, C_BS, C_HKV, C_D, C_DV, C_DT, C_N };
static const arg_spec create_spec[C_N] = {
    [C_NB] = {"num_blocks", ARG_INT, ARG_REQUIRED},
    [C_BS] = {"block_size", ARG_INT, ARG_REQUIRED},
    [C_HKV] = {"num_kv_heads", ARG_INT, ARG_REQUIRED},
    [C_D] = {"head_dim", ARG_INT, ARG_REQUIRED},
    [C_DV] = {"value_dim", ARG_INT, 0},
    [C_DT] = {"dtype", ARG_ENUM, 0, .names = dtype_names},
};

static PyObject *py_kv_create(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[C_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("KVCache", create_spec, C_N, args, kw, v, &st) < 0) goto done;
    attn_kv_cache *c = NULL;
    int rc;
    CALL_NOGIL(rc, attn_kv_create(v[C_NB].i, v[C_BS].i, v[C_HKV].i, v[C_D].i,
                                  v[C_DV].given ? v[C_DV].i : 0,
                                  v[C_DT].given ? (attn_kv_dtype)v[C_DT].i : ATTN_KV_FLOAT32, &c));
    if (rc < 0) goto done;
    res = PyCapsule_New(c, CAPSULE, capsule_free);
    if (!res) attn_kv_destroy(c);
done:
    args_release(v, C_N);
    return res;
}

/* kv_append(cache, block_tables (flat), max_blocks, starts, k, v, counts) */
enum { A_C, A_T, A_MB, A_ST, A_K, A_V, A_CNT, A_N };
static const arg_spec append_spec[A_N] = {
    [A_C] = {"cache", ARG_OBJ, ARG_REQUIRED},
    [A_T] = {"block_tables", ARG_INT64S, ARG_REQUIRED},
    [A_MB] = {"max_blocks", ARG_INT, ARG_REQUIRED},
    [A_ST] = {"starts", ARG_INT64S, ARG_REQUIRED},
    [A_K] = {"k", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [A_V] = {"v", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [A_CNT] = {"counts", ARG_INT64S, 0},
};

static PyObject *py_kv_append(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[A_N];
    conv_state st;
    PyObject *res = NULL;
    int32_t *t = NULL;
    if (args_parse("KVCache.append", append_spec, A_N, args, kw, v, &st) < 0) goto done;
    attn_kv_cache *c = cache_of(v[A_C].obj, "KVCache.append");
    if (!c) goto done;
    const int64_t B = v[A_K].view.shape[0];
    if (conv_require_len(&st, &append_spec[A_ST], &v[A_ST], B, "one per sequence") < 0 ||
        (v[A_CNT].given &&
         conv_require_len(&st, &append_spec[A_CNT], &v[A_CNT], B, "one per sequence") < 0))
        goto done;
    if (v[A_MB].i < 1 || v[A_T].len != B * v[A_MB].i) {
        PyErr_Format(PyExc_ValueError, "KVCache.append: block_tables must be (%lld, max_blocks)",
                     (long long)B);
        goto done;
    }
    if (!(t = to_int32("KVCache.append", "block_tables", v[A_T].i64, v[A_T].len))) goto done;
    int rc;
    CALL_NOGIL(rc,
               attn_kv_append(c, t, v[A_MB].i, v[A_ST].i64, v[A_CNT].given ? v[A_CNT].i64 : NULL,
                              &v[A_K].view, &v[A_V].view));
    if (rc < 0) goto done;
    Py_INCREF(Py_None);
    res = Py_None;
done:
    free(t);
    args_release(v, A_N);
    return res;
}

/* kv_read(cache, block_table, length, head_dims (Hkv, d, dv)) -> (k, v) float32 */
enum { R_C, R_T, R_L, R_HKV, R_D, R_DV, R_N };
static const arg_spec read_spec[R_N] = {
    [R_C] = {"cache", ARG_OBJ, ARG_REQUIRED},    [R_T] = {"block_table", ARG_INT64S, ARG_REQUIRED},
    [R_L] = {"length", ARG_INT, ARG_REQUIRED},   [R_HKV] = {"num_kv_heads", ARG_INT, ARG_REQUIRED},
    [R_D] = {"head_dim", ARG_INT, ARG_REQUIRED}, [R_DV] = {"value_dim", ARG_INT, ARG_REQUIRED},
};

static PyObject *py_kv_read(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[R_N];
    conv_state st;
    PyObject *res = NULL;
    PyArrayObject *ko = NULL, *vo = NULL;
    int32_t *t = NULL;
    if (args_parse("KVCache.read", read_spec, R_N, args, kw, v, &st) < 0) goto done;
    attn_kv_cache *c = cache_of(v[R_C].obj, "KVCache.read");
    if (!c) goto done;
    if (!(t = to_int32("KVCache.read", "block_table", v[R_T].i64, v[R_T].len))) goto done;
    const int64_t L = v[R_L].i;
    const int64_t ks[3] = {v[R_HKV].i, L, v[R_D].i}, vs[3] = {v[R_HKV].i, L, v[R_DV].i};
    attn_view kv, vv;
    if (!(ko = out_new(3, ks, &kv)) || !(vo = out_new(3, vs, &vv))) goto done;
    if (L > 0) {
        int rc;
        CALL_NOGIL(rc, attn_kv_read(c, t, L, &kv, &vv));
        if (rc < 0) goto done;
    }
    res = Py_BuildValue("(NN)", (PyObject *)ko, (PyObject *)vo);
    ko = vo = NULL;
done:
    Py_XDECREF(ko);
    Py_XDECREF(vo);
    free(t);
    args_release(v, R_N);
    return res;
}

/* kv_copy_blocks(cache, src, dst) */
enum { K_C, K_S, K_D, K_N };
static const arg_spec copy_spec[K_N] = {
    [K_C] = {"cache", ARG_OBJ, ARG_REQUIRED},
    [K_S] = {"src", ARG_INT64S, ARG_REQUIRED},
    [K_D] = {"dst", ARG_INT64S, ARG_REQUIRED},
};

static PyObject *py_kv_copy_blocks(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[K_N];
    conv_state st;
    PyObject *res = NULL;
    int32_t *s = NULL, *d = NULL;
    if (args_parse("KVCache.copy_blocks", copy_spec, K_N, args, kw, v, &st) < 0) goto done;
    attn_kv_cache *c = cache_of(v[K_C].obj, "KVCache.copy_blocks");
    if (!c) goto done;
    if (v[K_S].len != v[K_D].len) {
        PyErr_Format(PyExc_ValueError, "KVCache.copy_blocks: %lld ids in src but %lld in dst",
                     (long long)v[K_S].len, (long long)v[K_D].len);
        goto done;
    }
    if (!(s = to_int32("KVCache.copy_blocks", "src", v[K_S].i64, v[K_S].len)) ||
        !(d = to_int32("KVCache.copy_blocks", "dst", v[K_D].i64, v[K_D].len)))
        goto done;
    int rc;
    CALL_NOGIL(rc, attn_kv_copy_blocks(c, s, d, v[K_S].len));
    if (rc < 0) goto done;
    Py_INCREF(Py_None);
    res = Py_None;
done:
    free(s);
    free(d);
    args_release(v, K_N);
    return res;
}

/* kv_attend(cache, q, block_tables (flat), max_blocks, lengths, q_lengths, value_dim,
 *           <options>, want_lse) -> (out, lse|None) */
enum { T_C, T_Q, T_T, T_MB, T_L, T_QL, T_DV, T_OPTS, T_LSE = T_OPTS + OPT_N, T_N };
static const arg_spec attend_spec[T_N] = {
    [T_C] = {"cache", ARG_OBJ, ARG_REQUIRED},
    [T_Q] = {"q", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [T_T] = {"block_tables", ARG_INT64S, ARG_REQUIRED},
    [T_MB] = {"max_blocks", ARG_INT, ARG_REQUIRED},
    [T_L] = {"lengths", ARG_INT64S, ARG_REQUIRED},
    [T_QL] = {"q_lengths", ARG_INT64S, 0},
    [T_DV] = {"value_dim", ARG_INT, ARG_REQUIRED},
    [T_OPTS] = ATTN_OPT_ROWS,
    [T_LSE] = {"want_lse", ARG_BOOL, 0},
};

static PyObject *py_kv_attend(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[T_N];
    conv_state st;
    PyObject *res = NULL;
    PyArrayObject *out = NULL, *lse = NULL;
    int32_t *t = NULL;
    attn_opts opts;
    if (args_parse("KVCache.attend", attend_spec, T_N, args, kw, v, &st) < 0) goto done;
    attn_kv_cache *c = cache_of(v[T_C].obj, "KVCache.attend");
    if (!c) goto done;
    const attn_view *q = &v[T_Q].view;
    const int64_t B = q->shape[0];
    if (opts_build(&st, v + T_OPTS, B, q->shape[1], &opts) < 0) goto done;
    if (conv_require_len(&st, &attend_spec[T_L], &v[T_L], B, "one per sequence") < 0 ||
        (v[T_QL].given &&
         conv_require_len(&st, &attend_spec[T_QL], &v[T_QL], B, "one per sequence") < 0))
        goto done;
    if (v[T_MB].i < 1 || v[T_T].len != B * v[T_MB].i) {
        PyErr_Format(PyExc_ValueError, "KVCache.attend: block_tables must be (%lld, max_blocks)",
                     (long long)B);
        goto done;
    }
    if (!(t = to_int32("KVCache.attend", "block_tables", v[T_T].i64, v[T_T].len))) goto done;
    const int64_t oshape[4] = {B, q->shape[1], q->shape[2], v[T_DV].i};
    attn_view out_v, lse_v;
    if ((out = out_new(4, oshape, &out_v)) == NULL) goto done;
    if (v[T_LSE].i) {
        if ((lse = out_new(3, oshape, &lse_v)) == NULL) goto done;
        opts.lse = &lse_v;
    }
    int rc;
    CALL_NOGIL(rc, attn_kv_attend(c, q, t, v[T_MB].i, v[T_L].i64,
                                  v[T_QL].given ? v[T_QL].i64 : NULL, &out_v, &opts));
    if (rc < 0) goto done;
    PyObject *r_out = out_finish(out, &st);
    PyObject *r_lse = lse ? out_finish(lse, &st) : (Py_INCREF(Py_None), Py_None);
    out = lse = NULL;
    if (r_out && r_lse) {
        res = Py_BuildValue("(NN)", r_out, r_lse);
    } else {
        Py_XDECREF(r_out);
        Py_XDECREF(r_lse);
    }
done:
    Py_XDECREF(out);
    Py_XDECREF(lse);
    free(t);
    args_release(v, T_N);
    return res;
}

PyMethodDef attn_py_kv_methods[] = {
    {"kv_create", PY_KWFUNC(py_kv_create), METH_VARARGS | METH_KEYWORDS,
     "kv_create(num_blocks, block_size, num_kv_heads, head_dim, value_dim, dtype): "
     "attn_kv_create."},
    {"kv_append", PY_KWFUNC(py_kv_append), METH_VARARGS | METH_KEYWORDS,
     "kv_append(cache, block_tables, max_blocks, starts, k, v, counts): attn_kv_append."},
    {"kv_read", PY_KWFUNC(py_kv_read), METH_VARARGS | METH_KEYWORDS,
     "kv_read(cache, block_table, length, Hkv, d, dv): attn_kv_read; returns (k, v)."},
    {"kv_copy_blocks", PY_KWFUNC(py_kv_copy_blocks), METH_VARARGS | METH_KEYWORDS,
     "kv_copy_blocks(cache, src, dst): attn_kv_copy_blocks."},
    {"kv_attend", PY_KWFUNC(py_kv_attend), METH_VARARGS | METH_KEYWORDS,
     "kv_attend(cache, q, block_tables, max_blocks, lengths, q_lengths, dv, ...): attn_kv_attend; "
     "returns (out, lse|None)."},
    {NULL, NULL, 0, NULL},
};
