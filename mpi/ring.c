/* ring.c - ring mode: the packed K/V of every rank travels once around the
 * ring (rank r sends to r+1, receives from r-1). At step s a rank holds the
 * keys of rank r-s: while they are forwarded (non-blocking), each of their
 * runs gives one attn_sdpa partial with lse per query slice, merged into
 * the running result with attn_merge. The order of the partials differs per
 * rank, so the result agrees with exact mode within rounding only. Memory:
 * two K/V buffers of the largest shard, no staging. */
#include "mpi_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>

typedef struct ring {
    float *buf[2];
    float *part_out, *part_lse; /* (B, H, SLICE_ROWS, dv), (B, H, SLICE_ROWS) */
    qslice *sl;
    int n_sl;
    int64_t *qoff;
} ring;

static void ring_free(ring *g) {
    if (!g) return;
    free(g->buf[1]);
    free(g->part_out);
    free(g->part_lse);
    free(g->sl);
    free(g->qoff);
    free(g);
}

attn_status attn_mpi__ring_prepare(mctx *c, void **out) {
    ring *g = calloc(1, sizeof *g);
    if (!g) return attn_set_error(ATTN_ERR_NOMEM, "cannot allocate the ring plan");
    int64_t most = 0;
    for (int p = 0; p < c->size; p++)
        if (c->all[p].nkv > most) most = c->all[p].nkv;
    if (most * c->kv_per_key > INT_MAX) {
        ring_free(g);
        return attn_set_error(ATTN_ERR_OVERFLOW,
                              "a rank's K/V holds more than INT_MAX floats (one MPI message)");
    }
    const size_t bytes = (size_t)(most * c->kv_per_key) * sizeof(float);
    c->pack = malloc(bytes); /* buf[0]: this rank's own keys first, then whatever arrives */
    g->buf[1] = malloc(bytes);
    g->part_out = malloc((size_t)(c->B * c->H * SLICE_ROWS * c->dv) * sizeof(float));
    g->part_lse = malloc((size_t)(c->B * c->H * SLICE_ROWS) * sizeof(float));
    g->qoff = malloc((size_t)c->B * sizeof(int64_t));
    g->sl = attn_mpi__slices(c, &g->n_sl);
    c->reqs = malloc(4 * sizeof(MPI_Request));
    if (!c->pack || !g->buf[1] || !g->part_out || !g->part_lse || !g->qoff || !g->sl || !c->reqs) {
        ring_free(g);
        return attn_set_error(ATTN_ERR_NOMEM, "cannot allocate the ring buffers");
    }
    g->buf[0] = c->pack;
    c->stats.kv_buffer_bytes = 2 * (int64_t)bytes;
    *out = g;
    return ATTN_OK;
}

/* The partials of the keys of rank src (packed at p) merged into the result. */
static void attend(mctx *c, ring *g, int src, float *p) {
    for (int u = 0; u < c->n_runs; u++) {
        const krun *r = &c->runs[u];
        if (r->owner != src) continue;
        const int64_t j0 = r->gstart; /* key index of the piece */
        attn_view k, v;
        attn_mpi__run_views(c, p + r->pack_off, r->len, &k, &v);
        for (int s = 0; s < g->n_sl; s++) {
            const qslice *q = &g->sl[s];
            int64_t lo, hi;
            attn_mpi__key_span(c, q->pos0, q->pos0 + q->rows - 1, &lo, &hi);
            if (j0 >= hi || j0 + r->len <= lo) continue; /* all hidden */
            if (c->st != ATTN_OK) break;
            attn_view po = attn_view_4d(g->part_out, c->B, c->H, q->rows, c->dv);
            attn_view pl = attn_view_3d(g->part_lse, c->B, c->H, q->rows);
            attn_view acc[2], lse[2];
            attn_view ro = attn_view_4d(c->res_out, c->B, c->H, c->nq, c->dv);
            attn_view rl = attn_view_3d(c->res_lse, c->B, c->H, c->nq);
            acc[0] = attn_mpi__rows(&ro, q->row0, q->rows);
            lse[0] = attn_mpi__rows(&rl, q->row0, q->rows);
            acc[1] = po;
            lse[1] = pl;
            const attn_view qs = attn_mpi__rows(c->q, q->row0, q->rows);
            for (int64_t b = 0; b < c->B; b++)
                g->qoff[b] = q->pos0;
            attn_opts o = c->ao;
            o.sinks = NULL; /* the sink joins once, after every partial */
            o.q_offset = g->qoff;
            o.k_offset = c->k0 + j0; /* its position */
            o.lse = &pl;
            const double t0 = attn_mpi__now();
            attn_status st = attn_sdpa(&qs, &k, &v, &po, &o);
            attn_mpi__note(c, st, "attn_sdpa");
            if (st == ATTN_OK)
                attn_mpi__note(c, attn_merge(acc, lse, 2, &acc[0], &lse[0]), "attn_merge");
            c->stats.compute_seconds += attn_mpi__now() - t0;
            attn_mpi__progress(c);
        }
    }
}

void attn_mpi__ring_run(mctx *c, void *plan) {
    ring *g = plan;
    const int64_t rows = c->B * c->H * c->nq;
    for (int64_t t = 0; t < rows * c->dv; t++)
        c->res_out[t] = 0.0f;
    for (int64_t t = 0; t < rows; t++)
        c->res_lse[t] = -INFINITY;
    const int P = c->size, next = (c->rank + 1) % P, prev = (c->rank + P - 1) % P;
    int cur = 0;
    for (int s = 0; s < P; s++) {
        const int src = (c->rank - s + P) % P; /* whose keys buf[cur] holds */
        if (s < P - 1) {
            const int incoming = (src - 1 + P) % P;
            const int64_t ns = c->all[src].nkv * c->kv_per_key,
                          nr = c->all[incoming].nkv * c->kv_per_key;
            MPI_Request q;
            MPI_Isend(g->buf[cur], (int)ns, MPI_FLOAT, next, s, c->comm, &q);
            attn_mpi__post(c, q);
            MPI_Irecv(g->buf[1 - cur], (int)nr, MPI_FLOAT, prev, s, c->comm, &q);
            attn_mpi__post(c, q);
            c->stats.bytes_sent += ns * (int64_t)sizeof(float);
            c->stats.bytes_received += nr * (int64_t)sizeof(float);
        }
        attend(c, g, src, g->buf[cur]);
        attn_mpi__wait_all(c);
        cur = 1 - cur;
    }
    if (c->ao.sinks && c->st == ATTN_OK) /* one more part: out = 0, lse = sinks[h] */
        for (int s = 0; s < g->n_sl; s++) {
            const qslice *q = &g->sl[s];
            attn_view po = attn_view_4d(g->part_out, c->B, c->H, q->rows, c->dv);
            attn_view pl = attn_view_3d(g->part_lse, c->B, c->H, q->rows);
            for (int64_t t = 0; t < c->B * c->H * q->rows * c->dv; t++)
                g->part_out[t] = 0.0f;
            for (int64_t b = 0; b < c->B; b++)
                for (int64_t h = 0; h < c->H; h++)
                    for (int64_t i = 0; i < q->rows; i++)
                        g->part_lse[(b * c->H + h) * q->rows + i] = c->ao.sinks[h];
            attn_view ro = attn_view_4d(c->res_out, c->B, c->H, c->nq, c->dv);
            attn_view rl = attn_view_3d(c->res_lse, c->B, c->H, c->nq);
            attn_view acc[2] = {attn_mpi__rows(&ro, q->row0, q->rows), po};
            attn_view lse[2] = {attn_mpi__rows(&rl, q->row0, q->rows), pl};
            attn_mpi__note(c, attn_merge(acc, lse, 2, &acc[0], &lse[0]), "attn_merge");
        }
}

void attn_mpi__ring_free(void *plan) {
    ring_free(plan);
}
