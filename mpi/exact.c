/* exact.c - exact mode: every rank folds the key runs of all ranks in
 * ascending global order into one attn_fold state for its queries.
 *
 * Each owner posts its runs to the ranks that need them at the start
 * (MPI_Isend from its packed K/V); each rank receives its remote runs in
 * ascending order into two slots (double buffering: run t+1 arrives while
 * run t is folded). The fold only takes key pieces that start at a multiple
 * of ATTN_KEY_CHUNK and end at one (or at N), so a chunk cut by a run
 * boundary is assembled in a staging chunk from the runs' pieces. A causal
 * rank needs the keys below lim = the chunk boundary after its last query
 * (or N): later chunks are hidden from all its rows, and attn_sdpa skips
 * them too (likewise keys before a window). Between attn calls (at most PIECE keys x SLICE_ROWS
 * queries) the requests are tested so transfers progress. */
#include "mpi_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define PIECE ATTN_KEY_CHUNK

typedef struct exact {
    int64_t lo, lim; /* the keys this rank folds: [lo, lim), chunk-aligned (or lim = N) */
    int *need;       /* indices into c->runs, ascending: the runs this rank folds */
    int n_need;
    int *remote; /* their position among this rank's remote runs, or -1 */
    int n_remote;
    int *remote_run; /* remote position -> run index */
    float *slot[2];
    int req[2];
    float *stage; /* one chunk: K (B, Hkv, CHUNK, d), V (B, Hkv, CHUNK, dv) */
    int64_t stage_start, stage_len;
    float *state;
    attn_fold fold;
    qslice *sl;
    int n_sl;
    int64_t *qoff; /* B values */
} exact;

/* The chunk-aligned key range [*lo, *lim) rank p needs: the union of its
 * queries' spans, widened to whole chunks (lim may be N). */
static void range_of(const mctx *c, int p, int64_t *lo, int64_t *lim) {
    int64_t l = INT64_MAX, h = 0;
    for (int u = 0; u < c->all[p].nq_runs; u++) {
        int64_t a, b;
        attn_mpi__key_span(c, c->all[p].qs[u], c->all[p].qs[u] + c->all[p].ql[u] - 1, &a, &b);
        if (b <= a) continue;
        if (a < l) l = a;
        if (b > h) h = b;
    }
    if (h == 0) { /* no query sees a key */
        *lo = *lim = 0;
        return;
    }
    *lo = l / ATTN_KEY_CHUNK * ATTN_KEY_CHUNK;
    h = (h + ATTN_KEY_CHUNK - 1) / ATTN_KEY_CHUNK * ATTN_KEY_CHUNK;
    *lim = h < c->N ? h : c->N;
}

static int needs(const mctx *c, int p, const krun *r) {
    int64_t lo, lim;
    range_of(c, p, &lo, &lim);
    return r->gstart < lim && r->gstart + r->len > lo;
}

static void exact_free(exact *e) {
    if (!e) return;
    free(e->need);
    free(e->remote);
    free(e->remote_run);
    free(e->slot[0]);
    free(e->slot[1]);
    free(e->stage);
    free(e->state);
    free(e->sl);
    free(e->qoff);
    free(e);
}

/* Fold keys [k_offset, k_offset + k.shape[2]) into every slice that can see one. */
static void fold_keys(mctx *c, exact *e, const attn_view *k, const attn_view *v, int64_t k_offset) {
    for (int s = 0; s < e->n_sl; s++) {
        const qslice *q = &e->sl[s];
        int64_t lo, hi;
        attn_mpi__key_span(c, q->pos0, q->pos0 + q->rows - 1, &lo, &hi);
        if (k_offset >= hi || k_offset + k->shape[2] <= lo) continue; /* hidden from every row */
        if (c->st != ATTN_OK) break;                                  /* protocol only */
        attn_fold f = e->fold;
        f.max = attn_mpi__rows(&e->fold.max, q->row0, q->rows);
        f.sum = attn_mpi__rows(&e->fold.sum, q->row0, q->rows);
        f.shift = attn_mpi__rows(&e->fold.shift, q->row0, q->rows);
        f.acc = attn_mpi__rows(&e->fold.acc, q->row0, q->rows);
        const attn_view qs = attn_mpi__rows(c->q, q->row0, q->rows);
        for (int64_t b = 0; b < c->B; b++)
            e->qoff[b] = q->pos0;
        attn_opts o = c->ao;
        o.q_offset = e->qoff;
        const double t0 = attn_mpi__now();
        attn_mpi__note(c, attn_fold_step(&f, &qs, k, v, k_offset, &o), "attn_fold_step");
        c->stats.compute_seconds += attn_mpi__now() - t0;
        attn_mpi__progress(c);
    }
}

/* Copy keys [j0, j0 + n) of a packed run (views k, v) to the staging chunk
 * at its position stage_len. */
static void stage_copy(mctx *c, exact *e, const attn_view *k, const attn_view *v, int64_t j0,
                       int64_t n) {
    attn_view sk, sv;
    attn_mpi__run_views(c, e->stage, ATTN_KEY_CHUNK, &sk, &sv);
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t g = 0; g < c->Hkv; g++) {
            memcpy(sk.data + b * sk.stride[0] + g * sk.stride[1] + e->stage_len * c->d,
                   k->data + b * k->stride[0] + g * k->stride[1] + j0 * c->d,
                   (size_t)(n * c->d) * sizeof(float));
            memcpy(sv.data + b * sv.stride[0] + g * sv.stride[1] + e->stage_len * c->dv,
                   v->data + b * v->stride[0] + g * v->stride[1] + j0 * c->dv,
                   (size_t)(n * c->dv) * sizeof(float));
        }
    e->stage_len += n;
}

static void stage_flush(mctx *c, exact *e) {
    attn_view sk, sv;
    attn_mpi__run_views(c, e->stage, ATTN_KEY_CHUNK, &sk, &sv);
    sk.shape[2] = sv.shape[2] = e->stage_len;
    fold_keys(c, e, &sk, &sv, e->stage_start);
    e->stage_len = 0;
}

/* Fold the keys of run r (packed at p) that lie in [lo, lim). */
static void feed(mctx *c, exact *e, const krun *r, float *p) {
    attn_view k, v;
    attn_mpi__run_views(c, p, r->len, &k, &v);
    const int64_t g0 = r->gstart, g1 = r->gstart + r->len < e->lim ? r->gstart + r->len : e->lim;
    int64_t pos = g0 > e->lo ? g0 : e->lo; /* lo is a chunk boundary */
    if (e->stage_len > 0) {                /* complete the chunk begun by earlier runs */
        int64_t n = ATTN_KEY_CHUNK - e->stage_len;
        if (n > g1 - pos) n = g1 - pos;
        stage_copy(c, e, &k, &v, pos - g0, n);
        pos += n;
        if (e->stage_len == ATTN_KEY_CHUNK || e->stage_start + e->stage_len == e->lim)
            stage_flush(c, e);
    }
    if (pos >= g1) return;
    /* pos is now a chunk boundary: whole chunks straight from the run */
    const int64_t direct = g1 == e->lim ? g1 : pos + (g1 - pos) / ATTN_KEY_CHUNK * ATTN_KEY_CHUNK;
    for (int64_t j = pos; j < direct; j += PIECE) {
        const int64_t n = direct - j < PIECE ? direct - j : PIECE;
        attn_view kp = attn_mpi__rows(&k, j - g0, n), vp = attn_mpi__rows(&v, j - g0, n);
        fold_keys(c, e, &kp, &vp, j);
    }
    if (direct < g1) { /* the run's tail begins the next chunk */
        e->stage_start = direct;
        stage_copy(c, e, &k, &v, direct - g0, g1 - direct);
    }
}

static void post_recv(mctx *c, exact *e, int rp) {
    const krun *r = &c->runs[e->remote_run[rp]];
    MPI_Request q;
    MPI_Irecv(e->slot[rp % 2], (int)(r->len * c->kv_per_key), MPI_FLOAT, r->owner,
              e->remote_run[rp], c->comm, &q);
    e->req[rp % 2] = attn_mpi__post(c, q);
    c->stats.bytes_received += r->len * c->kv_per_key * (int64_t)sizeof(float);
}

attn_status attn_mpi__exact_prepare(mctx *c, void **out) {
    exact *e = calloc(1, sizeof *e);
    if (!e) return attn_set_error(ATTN_ERR_NOMEM, "cannot allocate the exact-mode plan");
    range_of(c, c->rank, &e->lo, &e->lim);
    e->need = malloc((size_t)c->n_runs * sizeof(int));
    e->remote = malloc((size_t)c->n_runs * sizeof(int));
    e->remote_run = malloc((size_t)c->n_runs * sizeof(int));
    e->qoff = malloc((size_t)c->B * sizeof(int64_t));
    c->reqs = malloc((size_t)(c->n_runs * (c->size + 1) + 4) * sizeof(MPI_Request));
    if (!e->need || !e->remote || !e->remote_run || !e->qoff || !c->reqs) goto nomem;
    int64_t max_remote = 0;
    for (int t = 0; t < c->n_runs; t++) {
        const krun *r = &c->runs[t];
        if (r->len * c->kv_per_key > INT_MAX) {
            exact_free(e);
            return attn_set_error(ATTN_ERR_OVERFLOW,
                                  "a key run holds more than INT_MAX floats (one MPI message)");
        }
        if (!needs(c, c->rank, r)) continue;
        e->need[e->n_need] = t;
        e->remote[e->n_need] = -1;
        if (r->owner != c->rank) {
            e->remote[e->n_need] = e->n_remote;
            e->remote_run[e->n_remote++] = t;
            if (r->len > max_remote) max_remote = r->len;
        }
        e->n_need++;
    }
    for (int s = 0; s < 2; s++)
        if (max_remote > 0 &&
            !(e->slot[s] = malloc((size_t)(max_remote * c->kv_per_key) * sizeof(float))))
            goto nomem;
    e->stage = malloc((size_t)(ATTN_KEY_CHUNK * c->kv_per_key) * sizeof(float));
    const int64_t nf = attn_fold_floats(c->B, c->H, c->nq, c->dv);
    e->state = nf > 0 ? malloc((size_t)nf * sizeof(float)) : NULL;
    e->sl = attn_mpi__slices(c, &e->n_sl);
    c->pack = malloc((size_t)(c->nkv * c->kv_per_key) * sizeof(float));
    if (!e->stage || !e->state || !e->sl || !c->pack) goto nomem;
    c->stats.kv_buffer_bytes = (int64_t)sizeof(float) * c->kv_per_key *
                               (c->nkv + ATTN_KEY_CHUNK + (max_remote > 0 ? 2 * max_remote : 0));
    *out = e;
    return ATTN_OK;
nomem:
    exact_free(e);
    return attn_set_error(ATTN_ERR_NOMEM, "cannot allocate the exact-mode buffers");
}

void attn_mpi__exact_run(mctx *c, void *plan) {
    exact *e = plan;
    attn_status s = attn_fold_bind(&e->fold, e->state, c->B, c->H, c->nq, c->dv);
    if (s == ATTN_OK) s = attn_fold_init(&e->fold, c->q, c->N, &c->ao);
    attn_mpi__note(c, s, "attn_fold_init");
    /* Post every send of this rank's runs: to each rank that needs it. */
    for (int t = 0; t < c->n_runs; t++) {
        const krun *r = &c->runs[t];
        if (r->owner != c->rank) continue;
        for (int p = 0; p < c->size; p++) {
            if (p == c->rank || !needs(c, p, r)) continue;
            MPI_Request q;
            MPI_Isend(c->pack + r->pack_off, (int)(r->len * c->kv_per_key), MPI_FLOAT, p, t,
                      c->comm, &q);
            attn_mpi__post(c, q);
            c->stats.bytes_sent += r->len * c->kv_per_key * (int64_t)sizeof(float);
        }
    }
    for (int rp = 0; rp < 2 && rp < e->n_remote; rp++)
        post_recv(c, e, rp);
    for (int u = 0; u < e->n_need; u++) {
        const krun *r = &c->runs[e->need[u]];
        const int rp = e->remote[u];
        float *p = c->pack + r->pack_off;
        if (rp >= 0) {
            attn_mpi__wait(c, e->req[rp % 2]);
            p = e->slot[rp % 2];
        }
        feed(c, e, r, p);
        if (rp >= 0 && rp + 2 < e->n_remote) post_recv(c, e, rp + 2);
    }
    attn_mpi__wait_all(c); /* the sends of this rank's runs */
    if (c->st == ATTN_OK) {
        attn_view o = attn_view_4d(c->res_out, c->B, c->H, c->nq, c->dv);
        attn_view l = attn_view_3d(c->res_lse, c->B, c->H, c->nq);
        const double t0 = attn_mpi__now();
        attn_mpi__note(c, attn_fold_finish(&e->fold, &o, &l, &c->ao), "attn_fold_finish");
        c->stats.compute_seconds += attn_mpi__now() - t0;
    }
}

void attn_mpi__exact_free(void *plan) {
    exact_free(plan);
}
