/*
 * module.c - assembles the CPython extension `attn._attn` from the method
 * tables of its concerns (methods.def). The conversion path every function
 * uses is convert.h; the pure-Python package is python/attn/.
 */
#define ATTN_PY_MAIN_FILE
#include "convert.h"

#define CONCERN(name) extern PyMethodDef attn_py_##name##_methods[];
#include "methods.def"
#undef CONCERN

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    "_attn",
    "Low-level bindings of the attn C library.",
    -1,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__attn(void) {
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
#define CONCERN(name)                                                                              \
    if (PyModule_AddFunctions(m, attn_py_##name##_methods) < 0) {                                  \
        Py_DECREF(m);                                                                              \
        return NULL;                                                                               \
    }
#include "methods.def"
#undef CONCERN
    return m;
}
