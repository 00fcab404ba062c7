/* info.c - version, build, instruction set, dropout_keep and the
 * allocation-failure test hook. */
#include "convert.h"

#include <stdlib.h>

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

/* Index = attn_isa value. */
static const char *const isa_names[] = {"auto", "generic", "avx2", "avx512", NULL};

enum { SI_NAME, SI_N };
static const arg_spec set_isa_spec[SI_N] = {
    [SI_NAME] = {"name", ARG_ENUM, ARG_REQUIRED, .names = isa_names},
};

static PyObject *py_set_isa(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[SI_N];
    conv_state st;
    PyObject *res = NULL;
    if (args_parse("set_isa", set_isa_spec, SI_N, args, kw, v, &st) < 0) goto done;
    if (status_to_py(attn_set_isa((attn_isa)v[SI_NAME].i)) < 0) goto done;
    Py_INCREF(Py_None);
    res = Py_None;
done:
    args_release(v, SI_N);
    return res;
}

enum { IS_ISA, IS_N };
static const arg_spec isa_supported_spec[IS_N] = {
    [IS_ISA] = {"isa", ARG_INT, ARG_REQUIRED},
};

static PyObject *py_isa_supported(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[IS_N];
    conv_state st;
    if (args_parse("isa_supported", isa_supported_spec, IS_N, args, kw, v, &st) < 0) return NULL;
    int64_t isa = v[IS_ISA].i;
    args_release(v, IS_N);
    return PyBool_FromLong(isa >= 0 && isa <= 3 && attn_isa_supported((attn_isa)isa));
}

/* dropout_keep(seed, b, h, i, j, p) */
enum { DK_SEED, DK_B, DK_H, DK_I, DK_J, DK_P, DK_N };
static const arg_spec dropout_keep_spec[DK_N] = {
    [DK_SEED] = {"seed", ARG_U64, ARG_REQUIRED}, [DK_B] = {"b", ARG_INT, ARG_REQUIRED},
    [DK_H] = {"h", ARG_INT, ARG_REQUIRED},       [DK_I] = {"i", ARG_INT, ARG_REQUIRED},
    [DK_J] = {"j", ARG_INT, ARG_REQUIRED},       [DK_P] = {"p", ARG_FLOAT, ARG_REQUIRED},
};

static PyObject *py_dropout_keep(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[DK_N];
    conv_state st;
    if (args_parse("dropout_keep", dropout_keep_spec, DK_N, args, kw, v, &st) < 0) return NULL;
    int keep = attn_dropout_keep(v[DK_SEED].u, v[DK_B].i, v[DK_H].i, v[DK_I].i, v[DK_J].i,
                                 (float)v[DK_P].f);
    args_release(v, DK_N);
    return PyBool_FromLong(keep);
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

PyMethodDef attn_py_info_methods[] = {
    {"_fail_nth_alloc", py_fail_nth_alloc, METH_VARARGS,
     "_fail_nth_alloc(n): tests only; fail the n-th scratch allocation (n <= 0: restore, "
     "return live blocks)."},
    {"dropout_keep", PY_KWFUNC(py_dropout_keep), METH_VARARGS | METH_KEYWORDS,
     "dropout_keep(seed, b, h, i, j, p): attn_dropout_keep as a bool."},
    {"version", py_version, METH_NOARGS, "The C library's version string."},
    {"build_info", py_build_info, METH_NOARGS, "The C library's build description."},
    {"get_isa", py_get_isa, METH_NOARGS, "The instruction set in use."},
    {"set_isa", PY_KWFUNC(py_set_isa), METH_VARARGS | METH_KEYWORDS,
     "set_isa(name): auto, generic, avx2 or avx512."},
    {"isa_supported", PY_KWFUNC(py_isa_supported), METH_VARARGS | METH_KEYWORDS,
     "isa_supported(attn_isa value)."},
    {NULL, NULL, 0, NULL},
};
