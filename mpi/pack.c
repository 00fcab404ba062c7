/* pack.c - packed K/V runs, query slices, and the request bookkeeping that
 * lets compute and communication overlap. */
#include "mpi_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double attn_mpi__now(void) {
    return MPI_Wtime();
}

void attn_mpi__run_views(const mctx *c, float *p, int64_t len, attn_view *k, attn_view *v) {
    *k = attn_view_4d(p, c->B, c->Hkv, len, c->d);
    *v = attn_view_4d(p + c->B * c->Hkv * len * c->d, c->B, c->Hkv, len, c->dv);
}

/* seek to a[b, g, j, 0] */
static const float *at(const attn_view *a, int64_t b, int64_t g, int64_t j) {
    return a->data + b * a->stride[0] + g * a->stride[1] + j * a->stride[2];
}

void attn_mpi__pack(mctx *c) {
    for (int t = 0; t < c->n_runs; t++) {
        const krun *r = &c->runs[t];
        if (r->owner != c->rank) continue;
        const int64_t j0 = r->pack_off / c->kv_per_key, len = r->len; /* local tokens */
        attn_view kd, vd;
        attn_mpi__run_views(c, c->pack + r->pack_off, len, &kd, &vd);
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t g = 0; g < c->Hkv; g++)
                for (int64_t j = 0; j < len; j++) {
                    const float *ks = at(c->k, b, g, j0 + j), *vs = at(c->v, b, g, j0 + j);
                    float *kp = kd.data + b * kd.stride[0] + g * kd.stride[1] + j * c->d;
                    float *vp = vd.data + b * vd.stride[0] + g * vd.stride[1] + j * c->dv;
                    for (int64_t e = 0; e < c->d; e++)
                        kp[e] = ks[e * c->k->stride[3]];
                    for (int64_t e = 0; e < c->dv; e++)
                        vp[e] = vs[e * c->v->stride[3]];
                }
    }
}

qslice *attn_mpi__slices(const mctx *c, int *n) {
    const record *me = &c->all[c->rank];
    int cnt = 0;
    for (int u = 0; u < me->nq_runs; u++)
        cnt += (int)((me->ql[u] + SLICE_ROWS - 1) / SLICE_ROWS);
    qslice *s = malloc((size_t)cnt * sizeof(qslice));
    if (!s) return NULL;
    int t = 0;
    int64_t row = 0; /* local row of the run's first token */
    for (int u = 0; u < me->nq_runs; u++) {
        for (int64_t i = 0; i < me->ql[u]; i += SLICE_ROWS, t++) {
            s[t].row0 = row + i;
            s[t].rows = me->ql[u] - i < SLICE_ROWS ? me->ql[u] - i : SLICE_ROWS;
            s[t].pos0 = me->qs[u] + i;
        }
        row += me->ql[u];
    }
    *n = cnt;
    return s;
}

attn_view attn_mpi__rows(const attn_view *a, int64_t row0, int64_t rows) {
    attn_view s = *a;
    s.data += row0 * a->stride[2];
    s.shape[2] = rows;
    return s;
}

void attn_mpi__note(mctx *c, attn_status s, const char *what) {
    if (s == ATTN_OK || c->st != ATTN_OK) return;
    c->st = s;
    snprintf(c->msg, sizeof c->msg, "%s: %s", what, attn_last_error());
}

int attn_mpi__post(mctx *c, MPI_Request r) {
    /* c->reqs has room for every request of the call (sized by the mode) */
    c->reqs[c->n_reqs] = r;
    c->reqs_done = 0;
    return c->n_reqs++;
}

void attn_mpi__progress(mctx *c) {
    if (c->n_reqs == 0 || c->reqs_done) return;
    /* At most every PROGRESS_SECONDS: a test that finds nothing to do may
     * yield the CPU (mpi_yield_when_idle), costly on a loaded host. */
    const double t0 = attn_mpi__now();
    if (t0 - c->last_progress < PROGRESS_SECONDS) return;
    int flag;
    MPI_Testall(c->n_reqs, c->reqs, &flag, MPI_STATUSES_IGNORE);
    c->reqs_done = flag;
    c->last_progress = attn_mpi__now();
    c->stats.test_seconds += c->last_progress - t0;
}

void attn_mpi__wait(mctx *c, int r) {
    const double t0 = attn_mpi__now();
    MPI_Wait(&c->reqs[r], MPI_STATUS_IGNORE);
    c->stats.wait_seconds += attn_mpi__now() - t0;
}

void attn_mpi__wait_all(mctx *c) {
    const double t0 = attn_mpi__now();
    MPI_Waitall(c->n_reqs, c->reqs, MPI_STATUSES_IGNORE);
    c->n_reqs = 0;
    c->stats.wait_seconds += attn_mpi__now() - t0;
}

void attn_mpi__key_span(const mctx *c, int64_t pos0, int64_t pos_last, int64_t *lo, int64_t *hi) {
    const int64_t first = pos0 - c->k0, last = pos_last - c->k0; /* as key indices */
    int64_t l = 0, h = c->N;
    if (c->causal && last + 1 < h) h = last + 1;
    if (c->wr >= 0 && c->wr < h - 1 - last) h = last + c->wr + 1;
    if (c->wl >= 0 && c->wl < first - l) l = first - c->wl;
    if (h <= l) l = h = 0;
    *lo = l;
    *hi = h;
}
