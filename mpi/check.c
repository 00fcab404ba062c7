/* check.c - collective argument checks: every rank checks its own
 * arguments into a record, the records are gathered, and every rank
 * evaluates all of them the same way, so all return the same status and
 * message and none is left waiting for a message that never comes. */
#include "mpi_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t local_fail(record *r, attn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int64_t local_fail(record *r, attn_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    r->status = s;
    return s;
}

static int check_view(record *r, const char *name, const attn_view *a) {
    if (!a || !a->data) return (int)local_fail(r, ATTN_ERR_NULL, "%s (or its data) is NULL", name);
    if (a->ndim != 4)
        return (int)local_fail(r, ATTN_ERR_SHAPE, "%s.ndim=%d but must be 4", name, a->ndim);
    for (int i = 0; i < 4; i++)
        if (a->shape[i] < 1)
            return (int)local_fail(r, ATTN_ERR_SHAPE, "%s.shape[%d]=%" PRId64 " must be >= 1", name,
                                   i, a->shape[i]);
    return 0;
}

/* The bytes a view spans, [lo, hi), or 0 on overflow. */
static int span(const attn_view *a, intptr_t *lo, intptr_t *hi) {
    int64_t mn = 0, mx = 0;
    for (int i = 0; i < a->ndim; i++) {
        int64_t e;
        if (__builtin_mul_overflow(a->shape[i] - 1, a->stride[i], &e)) return 0;
        if (e < 0 ? __builtin_add_overflow(mn, e, &mn) : __builtin_add_overflow(mx, e, &mx))
            return 0;
    }
    *lo = (intptr_t)(a->data + mn);
    *hi = (intptr_t)(a->data + mx + 1);
    return 1;
}

static int check_output(record *r, const char *name, const attn_view *o, const attn_view *const *in,
                        const char *const *in_names, int n_in) {
    intptr_t lo, hi, l2, h2;
    for (int i = 0; i < o->ndim; i++)
        if (o->shape[i] > 1 && o->stride[i] == 0)
            return (int)local_fail(r, ATTN_ERR_STRIDE,
                                   "%s.stride[%d]=0 on a dimension of size %" PRId64
                                   " (an output writes each element once)",
                                   name, i, o->shape[i]);
    if (!span(o, &lo, &hi))
        return (int)local_fail(r, ATTN_ERR_OVERFLOW, "%s: element offsets overflow", name);
    for (int t = 0; t < n_in; t++) {
        if (!in[t]) continue;
        if (!span(in[t], &l2, &h2))
            return (int)local_fail(r, ATTN_ERR_OVERFLOW, "%s: element offsets overflow",
                                   in_names[t]);
        if (lo < h2 && l2 < hi)
            return (int)local_fail(r, ATTN_ERR_STRIDE, "output %s overlaps %s in memory", name,
                                   in_names[t]);
    }
    return 0;
}

static int check_positions(record *r, const char *name, const attn_mpi_positions *p, int64_t n,
                           int64_t *s, int64_t *l, int64_t *nr) {
    if (!p) return (int)local_fail(r, ATTN_ERR_NULL, "%s is NULL", name);
    if (p->n_runs < 1 || p->n_runs > ATTN_MPI_MAX_RUNS)
        return (int)local_fail(r, ATTN_ERR_ARG, "%s->n_runs=%d must be in 1..%d", name, p->n_runs,
                               ATTN_MPI_MAX_RUNS);
    int64_t total = 0;
    for (int t = 0; t < p->n_runs; t++) {
        int64_t e;
        if (p->len[t] < 1 || p->start[t] < 0 || __builtin_add_overflow(p->start[t], p->len[t], &e))
            return (int)local_fail(r, ATTN_ERR_ARG,
                                   "%s run %d (start %" PRId64 ", len %" PRId64
                                   ") needs start >= 0 and len >= 1",
                                   name, t, p->start[t], p->len[t]);
        total += p->len[t];
        s[t] = p->start[t];
        l[t] = p->len[t];
    }
    *nr = p->n_runs;
    if (total != n)
        return (int)local_fail(r, ATTN_ERR_SHAPE,
                               "%s runs hold %" PRId64 " tokens but the array has %" PRId64, name,
                               total, n);
    return 0;
}

/* FNV-1a over the bits of n floats, never 0; 0 for NULL. */
static int64_t hash_floats(const float *x, int64_t n) {
    if (!x) return 0;
    uint64_t h = 1469598103934665603ull;
    for (int64_t t = 0; t < n; t++) {
        uint32_t b;
        memcpy(&b, &x[t], sizeof b);
        for (int k = 0; k < 4; k++)
            h = (h ^ ((b >> (8 * k)) & 0xff)) * 1099511628211ull;
    }
    return (int64_t)(h | 1);
}

void attn_mpi__check_local(mctx *c, const attn_view *out, const attn_view *lse, const attn_opts *o,
                           const attn_mpi_opts *mo, record *r) {
    memset(r, 0, sizeof *r);
    r->isa = attn_get_isa();
    r->mode = mo->mode;
    r->causal = o->causal;
    if (mo->mode != ATTN_MPI_EXACT && mo->mode != ATTN_MPI_RING) {
        local_fail(r, ATTN_ERR_ARG, "mopts.mode=%d is not an attn_mpi_mode value", (int)mo->mode);
        return;
    }
    if (o->mask || o->key_lengths || o->lse || o->weights || o->q_offset || o->k_offset ||
        o->dropout_p != 0.0f) {
        local_fail(r, ATTN_ERR_ARG,
                   "opts.mask, key_lengths, lse, weights, q_offset, k_offset and dropout_p "
                   "must be unset (positions come from q_pos and k_pos)");
        return;
    }
    if (o->causal != ATTN_CAUSAL_NONE && o->causal != ATTN_CAUSAL_TOP_LEFT &&
        o->causal != ATTN_CAUSAL_BOTTOM_RIGHT) {
        local_fail(r, ATTN_ERR_ARG, "opts.causal=%d is not an attn_causal value", (int)o->causal);
        return;
    }
    r->causal = o->causal != ATTN_CAUSAL_NONE; /* both alignments: position rule */
    if (o->algo != ATTN_ALGO_AUTO && o->algo != ATTN_ALGO_FLASH) {
        local_fail(r, ATTN_ERR_ARG, "opts.algo=%d must be AUTO or FLASH", (int)o->algo);
        return;
    }
    if (!isnan(o->scale) && !isfinite(o->scale)) {
        local_fail(r, ATTN_ERR_ARG, "opts.scale=%g must be finite (or NaN for 1/sqrt(d))",
                   (double)o->scale);
        return;
    }
    if (check_view(r, "q", c->q) || check_view(r, "k", c->k) || check_view(r, "v", c->v) ||
        check_view(r, "out", out))
        return;
    const attn_view *q = c->q, *k = c->k, *v = c->v;
    r->B = q->shape[0];
    r->H = q->shape[1];
    r->nq = q->shape[2];
    r->d = q->shape[3];
    r->Hkv = k->shape[1];
    r->nkv = k->shape[2];
    r->dv = v->shape[3];
    struct {
        const char *what;
        int64_t a, b;
    } same[] = {
        {"k.shape[0] (B) = q.shape[0]", k->shape[0], q->shape[0]},
        {"v.shape[0] (B) = q.shape[0]", v->shape[0], q->shape[0]},
        {"k.shape[3] (d) = q.shape[3]", k->shape[3], q->shape[3]},
        {"v.shape[1] (Hkv) = k.shape[1]", v->shape[1], k->shape[1]},
        {"v.shape[2] (Nkv_local) = k.shape[2]", v->shape[2], k->shape[2]},
        {"out.shape[0] (B) = q.shape[0]", out->shape[0], q->shape[0]},
        {"out.shape[1] (H) = q.shape[1]", out->shape[1], q->shape[1]},
        {"out.shape[2] (Nq_local) = q.shape[2]", out->shape[2], q->shape[2]},
        {"out.shape[3] (dv) = v.shape[3]", out->shape[3], v->shape[3]},
    };
    for (size_t t = 0; t < sizeof same / sizeof same[0]; t++)
        if (same[t].a != same[t].b) {
            local_fail(r, ATTN_ERR_SHAPE, "%s is needed, got %" PRId64 " and %" PRId64,
                       same[t].what, same[t].a, same[t].b);
            return;
        }
    if (r->H % r->Hkv != 0) {
        local_fail(r, ATTN_ERR_SHAPE,
                   "q.shape[1]=%" PRId64 " query heads is not a multiple of k.shape[1]=%" PRId64,
                   r->H, r->Hkv);
        return;
    }
    if (lse) {
        if (!lse->data || lse->ndim != 3) {
            local_fail(r, ATTN_ERR_SHAPE, "lse must be a rank-3 view (B, H, Nq_local) with data");
            return;
        }
        for (int i = 0; i < 3; i++)
            if (lse->shape[i] != out->shape[i]) {
                local_fail(r, ATTN_ERR_SHAPE,
                           "lse.shape[%d]=%" PRId64 " but must be %" PRId64 " (B, H, Nq_local)", i,
                           lse->shape[i], out->shape[i]);
                return;
            }
    }
    const attn_view *in[4] = {q, k, v, lse};
    static const char *const names[4] = {"q", "k", "v", "lse"};
    if (check_output(r, "out", out, in, names, 4)) return;
    if (lse && check_output(r, "lse", lse, in, names, 3)) return;
    if (check_positions(r, "q_pos", c->qp, r->nq, r->qs, r->ql, &r->nq_runs) ||
        check_positions(r, "k_pos", c->kp, r->nkv, r->ks, r->kl, &r->nk_runs))
        return;
    if (o->window_left < -1 || o->window_right < -1) {
        local_fail(r, ATTN_ERR_ARG,
                   "opts.window_left=%" PRId64 ", window_right=%" PRId64 " must be >= -1",
                   o->window_left, o->window_right);
        return;
    }
    if (!(o->softcap >= 0.0f) || !isfinite(o->softcap)) {
        local_fail(r, ATTN_ERR_ARG, "opts.softcap=%g must be finite and >= 0", (double)o->softcap);
        return;
    }
    r->window_left = o->window_left;
    r->window_right = o->window_right;
    uint32_t sb;
    memcpy(&sb, &o->softcap, sizeof sb);
    r->softcap_bits = sb;
    r->alibi_hash = hash_floats(o->alibi_slopes, r->H);
    r->sinks_hash = hash_floats(o->sinks, r->H);
    const float scale = isnan(o->scale) ? (float)(1.0 / sqrt((double)r->d)) : o->scale;
    uint32_t bits;
    memcpy(&bits, &scale, sizeof bits);
    r->scale_bits = bits;
    r->status = ATTN_OK;
}

static attn_status fail(attn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static attn_status fail(attn_status s, const char *fmt, ...) {
    char m[2 * MSG_LEN];
    int n = snprintf(m, sizeof m, "attn_mpi_sdpa: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m + n, sizeof m - (size_t)n, fmt, ap);
    va_end(ap);
    return attn_set_error(s, m);
}

static int cmp_run(const void *a, const void *b) {
    const krun *x = a, *y = b;
    return x->gstart < y->gstart ? -1 : x->gstart > y->gstart;
}

attn_status attn_mpi__agree(mctx *c, record *mine) {
    double t0 = attn_mpi__now();
    c->all = malloc((size_t)c->size * sizeof(record));
    /* A rank that cannot allocate the gather buffer cannot take part in it:
     * it says so in a first, tiny collective that every rank joins. */
    int ok = c->all != NULL, all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->comm);
    if (!all_ok) {
        c->stats.sync_seconds += attn_mpi__now() - t0;
        return fail(ATTN_ERR_NOMEM, "a rank cannot allocate %d records", c->size);
    }
    MPI_Allgather(mine, (int)sizeof(record), MPI_BYTE, c->all, (int)sizeof(record), MPI_BYTE,
                  c->comm);
    c->stats.sync_seconds += attn_mpi__now() - t0;
    const record *a = c->all;
    for (int p = 0; p < c->size; p++)
        if (a[p].status != ATTN_OK)
            return fail((attn_status)a[p].status, "rank %d: %s", p, a[p].msg);
    static const char *const names[] = {"B",
                                        "H",
                                        "Hkv",
                                        "d",
                                        "dv",
                                        "causal",
                                        "mode",
                                        "scale bits",
                                        "window_left",
                                        "window_right",
                                        "softcap bits",
                                        "alibi_slopes hash",
                                        "sinks hash"};
    for (int p = 1; p < c->size; p++) {
#define FIELDS(r)                                                                                  \
    {                                                                                              \
        r.B, r.H, r.Hkv, r.d, r.dv, r.causal, r.mode, r.scale_bits, r.window_left, r.window_right, \
            r.softcap_bits, r.alibi_hash, r.sinks_hash                                             \
    }
        const int64_t x[] = FIELDS(a[p]), y[] = FIELDS(a[0]);
#undef FIELDS
        for (int t = 0; t < (int)(sizeof x / sizeof x[0]); t++)
            if (x[t] != y[t])
                return fail(t < 5 ? ATTN_ERR_SHAPE : ATTN_ERR_ARG,
                            "rank %d has %s=%" PRId64 " but rank 0 has %s=%" PRId64, p, names[t],
                            x[t], names[t], y[t]);
        if (a[0].mode == ATTN_MPI_EXACT && a[p].isa != a[0].isa)
            return fail(ATTN_ERR_ISA,
                        "rank %d runs %s but rank 0 runs %s (exact mode needs one instruction "
                        "set on every rank)",
                        p, attn_isa_name((attn_isa)a[p].isa), attn_isa_name((attn_isa)a[0].isa));
    }
    /* The key runs of all ranks must tile 0..N-1. */
    int n = 0;
    for (int p = 0; p < c->size; p++)
        n += (int)a[p].nk_runs;
    c->runs = malloc((size_t)n * sizeof(krun));
    ok = c->runs != NULL;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->comm);
    if (!all_ok) return fail(ATTN_ERR_NOMEM, "a rank cannot allocate %d key runs", n);
    c->kv_per_key = a[0].B * a[0].Hkv * (a[0].d + a[0].dv);
    int t = 0;
    int64_t N = 0;
    for (int p = 0; p < c->size; p++) {
        int64_t off = 0;
        for (int u = 0; u < a[p].nk_runs; u++, t++) {
            c->runs[t].owner = p;
            c->runs[t].gstart = a[p].ks[u];
            c->runs[t].len = a[p].kl[u];
            c->runs[t].pack_off = off * c->kv_per_key;
            off += a[p].kl[u];
        }
        N += a[p].nkv;
    }
    qsort(c->runs, (size_t)n, sizeof(krun), cmp_run);
    /* From here on a run's gstart is its key index: position - k0. */
    const int64_t k0 = c->runs[0].gstart;
    int64_t at = k0;
    for (t = 0; t < n; t++) {
        if (c->runs[t].gstart != at)
            return fail(ATTN_ERR_ARG,
                        "key positions must cover k0..k0+N-1 (k0=%" PRId64 ", N=%" PRId64
                        " keys in all) exactly once, but rank %d's run starts at %" PRId64
                        " where %" PRId64 " was expected",
                        k0, N, c->runs[t].owner, c->runs[t].gstart, at);
        at += c->runs[t].len;
        c->runs[t].gstart -= k0;
    }
    c->k0 = k0;
    /* Cut the runs at chunk boundaries: the pieces are the messages, at most
     * one chunk each, so a receiver starts folding after one chunk has
     * arrived and holds two chunks, never two runs. */
    int64_t np = 0;
    for (t = 0; t < n; t++) {
        const krun *r = &c->runs[t];
        np += (r->gstart + r->len - 1) / ATTN_KEY_CHUNK - r->gstart / ATTN_KEY_CHUNK + 1;
    }
    int *tag_ub = NULL, flag = 0;
    MPI_Comm_get_attr(c->comm, MPI_TAG_UB, &tag_ub, &flag);
    const int64_t max_tag = flag && tag_ub ? *tag_ub : 32767;
    if (np > max_tag)
        return fail(ATTN_ERR_ARG,
                    "%" PRId64 " key pieces in all, more than MPI tags allow (%" PRId64 ")", np,
                    max_tag);
    krun *pc = malloc((size_t)np * sizeof(krun));
    ok = pc != NULL;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->comm);
    if (!all_ok) {
        free(pc);
        return fail(ATTN_ERR_NOMEM, "a rank cannot allocate %" PRId64 " key pieces", np);
    }
    int64_t u = 0;
    for (t = 0; t < n; t++) {
        const krun *r = &c->runs[t];
        const int64_t loc = r->pack_off / c->kv_per_key, end = r->gstart + r->len;
        for (int64_t j = r->gstart; j < end; u++) {
            int64_t nx = (j / ATTN_KEY_CHUNK + 1) * ATTN_KEY_CHUNK;
            if (nx > end) nx = end;
            pc[u].owner = r->owner;
            pc[u].gstart = j;
            pc[u].len = nx - j;
            pc[u].pack_off = (loc + j - r->gstart) * c->kv_per_key;
            j = nx;
        }
    }
    free(c->runs);
    c->runs = pc;
    n = (int)np;
    c->n_runs = n;
    c->N = N;
    c->B = a[0].B;
    c->H = a[0].H;
    c->Hkv = a[0].Hkv;
    c->d = a[0].d;
    c->dv = a[0].dv;
    c->causal = a[0].causal != 0;
    c->wl = a[0].window_left;
    c->wr = a[0].window_right;
    c->nq = mine->nq;
    c->nkv = mine->nkv;
    return ATTN_OK;
}

attn_status attn_mpi__agree_status(mctx *c, attn_status st, const char *msg) {
    struct {
        int64_t status;
        char msg[MSG_LEN];
    } mine, *all = malloc((size_t)c->size * sizeof mine);
    mine.status = st;
    snprintf(mine.msg, sizeof mine.msg, "%s", msg ? msg : "");
    /* Without the gather buffer the statuses still meet in a reduction. */
    int64_t worst = st, any;
    double t0 = attn_mpi__now();
    int ok = all != NULL, all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->comm);
    if (!all_ok) {
        MPI_Allreduce(&worst, &any, 1, MPI_INT64_T, MPI_MAX, c->comm);
        free(all);
        c->stats.sync_seconds += attn_mpi__now() - t0;
        if (any == ATTN_OK) return ATTN_OK;
        return fail((attn_status)any, "a rank failed (and another could not gather the messages)");
    }
    MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, c->comm);
    c->stats.sync_seconds += attn_mpi__now() - t0;
    for (int p = 0; p < c->size; p++)
        if (all[p].status != ATTN_OK) {
            attn_status s = fail((attn_status)all[p].status, "rank %d: %s", p, all[p].msg);
            free(all);
            return s;
        }
    free(all);
    return ATTN_OK;
}
