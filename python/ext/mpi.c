/*
 * mpi.c - the extension `attn._attn_mpi`: attn_mpi_sdpa for attn/mpi.py,
 * through the shared conversion path (convert.h). A module of its own,
 * linked to libattn_mpi (and so to MPI), so that `import attn` never loads
 * MPI; the communicator arrives as its Fortran handle (mpi4py's
 * comm.py2f()), so no mpi4py header is needed either.
 *
 * Collective errors: a rank whose arguments cannot be converted still takes
 * part in the collective check (attn_mpi_abstain) before raising, so the
 * other ranks raise too instead of waiting.
 */
#define ATTN_PY_MAIN_FILE
#include "convert.h"
#include "opts.h"

#include "attn_mpi.h"

#include <stdlib.h>
#include <string.h>

/* sdpa(comm_f, q, k, v, q_runs, k_runs, scale, causal, window_left,
 *      window_right, softcap, alibi_slopes, sinks, mode, num_threads,
 *      want_lse) -> (out, lse|None); q_runs, k_runs: flat (start, len) pairs. */
enum {
    COMM,
    Q,
    K,
    V,
    QRUNS,
    KRUNS,
    SCALE,
    CAUSAL,
    WL,
    WR,
    SOFTCAP,
    ALIBI,
    SINKS,
    MODE,
    THREADS,
    WANT_LSE,
    N_ARGS
};
static const char *const mode_names[] = {"exact", "ring", NULL};
static const arg_spec spec[N_ARGS] = {
    [COMM] = {"comm", ARG_INT, ARG_REQUIRED},
    [Q] = {"q", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [K] = {"k", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [V] = {"v", ARG_ARRAY, ARG_REQUIRED, 4, 4},
    [QRUNS] = {"q_positions", ARG_INT64S, ARG_REQUIRED},
    [KRUNS] = {"k_positions", ARG_INT64S, ARG_REQUIRED},
    [SCALE] = {"scale", ARG_FLOAT, ARG_F32},
    [CAUSAL] = {"causal", ARG_ENUM, 0, .names = attn_py_causal_names},
    [WL] = {"window_left", ARG_INT, ARG_MIN, .min = -1},
    [WR] = {"window_right", ARG_INT, ARG_MIN, .min = -1},
    [SOFTCAP] = {"softcap", ARG_FLOAT, ARG_F32 | ARG_FINITE},
    [ALIBI] = {"alibi_slopes", ARG_ARRAY, ARG_NOVOTE, 1, 1},
    [SINKS] = {"sinks", ARG_ARRAY, ARG_NOVOTE, 1, 1},
    [MODE] = {"mode", ARG_ENUM, 0, .names = mode_names},
    [THREADS] = {"num_threads", ARG_INT, ARG_MIN, .min = 0},
    [WANT_LSE] = {"want_lse", ARG_BOOL, 0},
};

/* Flat (start, len) pairs as positions; more runs than fit, or an odd count,
 * give n_runs = 0, which the collective check refuses with a message. */
static void runs_of(const arg_val *a, attn_mpi_positions *p) {
    memset(p, 0, sizeof *p);
    if (a->len % 2 != 0 || a->len / 2 > ATTN_MPI_MAX_RUNS) return;
    p->n_runs = (int)(a->len / 2);
    for (int u = 0; u < p->n_runs; u++) {
        p->start[u] = a->i64[2 * u];
        p->len[u] = a->i64[2 * u + 1];
    }
}

/* A float32 copy of a rank-1 view of n values (NULL when not given). */
static float *floats_of(const arg_val *a, int64_t n, int *bad) {
    if (!a->given) return NULL;
    if (a->view.shape[0] != n) {
        *bad = 1;
        return NULL;
    }
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!x) {
        *bad = 1;
        return NULL;
    }
    for (int64_t t = 0; t < n; t++)
        x[t] = a->view.data[t * a->view.stride[0]];
    return x;
}

static PyObject *py_sdpa(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    arg_val v[N_ARGS];
    conv_state st;
    PyArrayObject *out = NULL, *lse = NULL;
    PyObject *res = NULL;
    float *slopes = NULL, *sinks = NULL;
    /* The communicator first: without it there is no one to tell. */
    PyObject *comm_obj =
        PyTuple_Check(args) && PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0) : NULL;
    long long cf = comm_obj ? PyLong_AsLongLong(comm_obj) : -1;
    if (cf == -1 && PyErr_Occurred()) return NULL;
    if (!comm_obj) {
        PyErr_SetString(PyExc_TypeError, "mpi.sdpa: the communicator's handle comes first");
        return NULL;
    }
    MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)cf);
    if (args_parse("mpi.sdpa", spec, N_ARGS, args, kw, v, &st) < 0) {
        /* join the collective check with the conversion error, then raise it */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *s = ev ? PyObject_Str(ev) : NULL;
        const char *m = s ? PyUnicode_AsUTF8(s) : NULL;
        if (!m) PyErr_Clear();
        attn_status ast;
        Py_BEGIN_ALLOW_THREADS ast =
            attn_mpi_abstain(comm, ATTN_ERR_ARG, m ? m : "Python arguments refused");
        Py_END_ALLOW_THREADS(void) ast;
        Py_XDECREF(s);
        PyErr_Restore(et, ev, tb);
        goto done;
    }
    const attn_view *q = &v[Q].view, *k = &v[K].view, *vv = &v[V].view;
    attn_mpi_positions qp, kp;
    runs_of(&v[QRUNS], &qp);
    runs_of(&v[KRUNS], &kp);
    attn_opts o = attn_opts_default();
    if (v[SCALE].given) o.scale = (float)v[SCALE].f;
    if (v[CAUSAL].given) o.causal = (attn_causal)v[CAUSAL].i;
    if (v[WL].given) o.window_left = v[WL].i;
    if (v[WR].given) o.window_right = v[WR].i;
    if (v[SOFTCAP].given) o.softcap = (float)v[SOFTCAP].f;
    if (v[THREADS].given) o.num_threads = v[THREADS].i > 4096 ? 4096 : (int)v[THREADS].i;
    int bad = 0;
    slopes = floats_of(&v[ALIBI], q->shape[1], &bad);
    sinks = floats_of(&v[SINKS], q->shape[1], &bad);
    o.alibi_slopes = slopes;
    o.sinks = sinks;
    attn_mpi_opts mo = attn_mpi_opts_default();
    if (v[MODE].given) mo.mode = (attn_mpi_mode)v[MODE].i;
    int64_t oshape[4] = {q->shape[0], q->shape[1], q->shape[2], vv->shape[3]};
    attn_view out_v, lse_v;
    if ((out = out_new(4, oshape, &out_v)) == NULL ||
        (v[WANT_LSE].i && (lse = out_new(3, oshape, &lse_v)) == NULL) || bad) {
        const char *m =
            bad ? "alibi_slopes and sinks must hold H values each" : "cannot allocate the outputs";
        attn_status ast;
        Py_BEGIN_ALLOW_THREADS ast =
            attn_mpi_abstain(comm, bad ? ATTN_ERR_SHAPE : ATTN_ERR_NOMEM, m);
        Py_END_ALLOW_THREADS(void) ast;
        if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "mpi.sdpa: %s", m);
        goto done;
    }
    int rc;
    CALL_NOGIL(rc, attn_mpi_sdpa(comm, q, &qp, k, vv, &kp, &out_v, lse ? &lse_v : NULL, &o, &mo));
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
    free(slopes);
    free(sinks);
    args_release(v, N_ARGS);
    return res;
}

/* shard(layout, n, rank, size) -> list of (start, len) */
static PyObject *py_shard(PyObject *self, PyObject *args) {
    (void)self;
    int layout, rank, size;
    long long n;
    if (!PyArg_ParseTuple(args, "iLii", &layout, &n, &rank, &size)) return NULL;
    attn_mpi_positions p;
    if (status_to_py(attn_mpi_shard((attn_mpi_layout)layout, n, rank, size, &p)) < 0) return NULL;
    PyObject *l = PyList_New(p.n_runs);
    if (!l) return NULL;
    for (int u = 0; u < p.n_runs; u++)
        PyList_SET_ITEM(l, u, Py_BuildValue("(LL)", (long long)p.start[u], (long long)p.len[u]));
    return l;
}

/* abstain(comm_f, message): take part in the collective check as a failing
 * rank (attn_mpi_abstain); raises the ValueError every rank raises. */
static PyObject *py_abstain(PyObject *self, PyObject *args) {
    (void)self;
    long long cf;
    const char *m;
    if (!PyArg_ParseTuple(args, "Ls", &cf, &m)) return NULL;
    attn_status s;
    Py_BEGIN_ALLOW_THREADS s = attn_mpi_abstain(MPI_Comm_f2c((MPI_Fint)cf), ATTN_ERR_ARG, m);
    Py_END_ALLOW_THREADS status_to_py(s);
    return NULL;
}

static PyMethodDef methods[] = {
    {"abstain", py_abstain, METH_VARARGS, "abstain(comm_f, message): attn_mpi_abstain."},
    {"sdpa", PY_KWFUNC(py_sdpa), METH_VARARGS | METH_KEYWORDS,
     "sdpa(comm_f, q, k, v, q_positions, k_positions, ...): attn_mpi_sdpa; (out, lse|None)."},
    {"shard", py_shard, METH_VARARGS, "shard(layout, n, rank, size): attn_mpi_shard's runs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    "_attn_mpi",
    "attn_mpi_sdpa for attn.mpi.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__attn_mpi(void) {
    import_array();
    return PyModule_Create(&moduledef);
}
