/* mpi_internal.h - what the files of libattn_mpi share. Built on the public
 * attn API only (attn.h), never on the core's internals.
 *
 * One call (attn_mpi_sdpa) runs in four steps:
 *   1. check   each rank checks its own arguments into a record (check.c)
 *   2. agree   the records are gathered and compared the same way on every
 *              rank, so all return the same status (check.c)
 *   3. compute exact.c (ascending fold) or ring.c (rotation + merge), into
 *              the rank's private result buffers
 *   4. agree   on the compute statuses, then copy the results to out/lse */
#ifndef ATTN_MPI_INTERNAL_H
#define ATTN_MPI_INTERNAL_H

#include "attn_mpi.h"

#include <stdbool.h>
#include <stdint.h>

#define MSG_LEN 256

/* One rank's arguments as the others see them (fixed size: MPI_Allgather). */
typedef struct record {
    int64_t status; /* the rank's local check (attn_status) */
    int64_t B, H, Hkv, d, dv, causal, mode, isa;
    int64_t scale_bits; /* the resolved scale's float bits */
    int64_t window_left, window_right, softcap_bits;
    int64_t alibi_hash, sinks_hash; /* 0: none, else a hash of the H values' bits */
    int64_t nq, nkv, nq_runs, nk_runs;
    int64_t qs[ATTN_MPI_MAX_RUNS], ql[ATTN_MPI_MAX_RUNS];
    int64_t ks[ATTN_MPI_MAX_RUNS], kl[ATTN_MPI_MAX_RUNS];
    char msg[MSG_LEN]; /* the local failure, without the function name */
} record;

/* A piece of keys in the global order, the unit of every message: the part
 * of one rank's run within one key chunk. Who holds it and where. */
typedef struct krun {
    int owner;
    int64_t gstart, len; /* gstart: key index (position - k0) once agreed */
    int64_t pack_off;    /* floats into the owner's packed K/V: its first local token x
                            kv_per_key (see pack.c) */
} krun;

/* The state of one call on one rank. */
typedef struct mctx {
    MPI_Comm comm;
    int rank, size;
    const attn_view *q, *k, *v;
    const attn_mpi_positions *qp, *kp;
    attn_opts ao; /* scale, causal, modifiers, num_threads for the attn calls */
    bool causal;
    int64_t wl, wr; /* window_left, window_right (-1: unbounded) */
    int64_t B, H, Hkv, d, dv, N, nq, nkv;
    int64_t k0;  /* position of the first key; key index j is at position k0 + j */
    record *all; /* size records */
    krun *runs;  /* every key piece, ascending gstart */
    int n_runs;
    int64_t kv_per_key; /* B * Hkv * (d + dv): floats one key position takes packed */
    float *pack;        /* this rank's K/V packed, run after run */
    float *res_out;     /* (B, H, nq, dv) the result, copied to out at the end */
    float *res_lse;     /* (B, H, nq) */
    attn_status st;     /* first failure of an attn call during compute */
    char msg[MSG_LEN];
    attn_mpi_stats stats;
    /* requests tested between attn calls (progress) */
    MPI_Request *reqs;
    int n_reqs;
    int reqs_done;        /* the last test found every request complete */
    double last_progress; /* when requests were last tested */
} mctx;

/* ---- check.c ---- */
/* Fill rec from this rank's arguments; never fails itself. */
void attn_mpi__check_local(mctx *c, const attn_view *out, const attn_view *lse,
                           const attn_opts *opts, const attn_mpi_opts *mo, record *rec);
/* Gather the records and agree: the same status and message on every rank
 * (message recorded with attn_set_error). Sets c->all, runs, N on success. */
attn_status attn_mpi__agree(mctx *c, record *mine);
/* Agree on a status computed locally late (compute, allocation): every rank
 * returns the first failing rank's status and message. */
attn_status attn_mpi__agree_status(mctx *c, attn_status st, const char *msg);

/* ---- pack.c ---- */
/* c->pack = this rank's k, v packed per piece: at the piece's pack_off, K
 * (B, Hkv, len, d) then V (B, Hkv, len, dv), contiguous. */
void attn_mpi__pack(mctx *c);
/* Views of a packed run of len keys at p: k (B, Hkv, len, d), v (.., dv). */
void attn_mpi__run_views(const mctx *c, float *p, int64_t len, attn_view *k, attn_view *v);
/* Make a failed attn call this rank's compute failure (the first one kept). */
void attn_mpi__note(mctx *c, attn_status s, const char *what);
/* Keep r among the call's requests (c->reqs, sized for all of them);
 * returns its index. */
int attn_mpi__post(mctx *c, MPI_Request r);
/* MPI_Testall over the requests: progress between attn calls, no blocking. */
void attn_mpi__progress(mctx *c);
/* The least time between two tests of the requests (progress) in seconds. */
#define PROGRESS_SECONDS 0.002
/* Wait for request index r, or for all (then forgotten), timed as waiting. */
void attn_mpi__wait(mctx *c, int r);
void attn_mpi__wait_all(mctx *c);
double attn_mpi__now(void);

/* ---- exact.c, ring.c ---- */
/* prepare: every allocation of the mode (c->pack, c->reqs included), so
 * that a failure is agreed on before any message is sent; run: the
 * protocol, which always completes (a failed attn call is noted in c->st
 * and the remaining computation skipped, the messages still exchanged);
 * free: the plan. */
attn_status attn_mpi__exact_prepare(mctx *c, void **plan);
void attn_mpi__exact_run(mctx *c, void *plan);
void attn_mpi__exact_free(void *plan);
attn_status attn_mpi__ring_prepare(mctx *c, void **plan);
void attn_mpi__ring_run(mctx *c, void *plan);
void attn_mpi__ring_free(void *plan);

/* The key indices [*lo, *hi) that queries at positions pos0..pos_last may
 * see (causal, window), clipped to 0..N. */
void attn_mpi__key_span(const mctx *c, int64_t pos0, int64_t pos_last, int64_t *lo, int64_t *hi);

/* Query slices: the rows of this rank's queries are cut into slices of at
 * most SLICE_ROWS consecutive rows of one run, so attn calls stay short and
 * requests are tested often. */
#define SLICE_ROWS 256
typedef struct qslice {
    int64_t row0, rows; /* local rows row0 .. row0+rows-1 */
    int64_t pos0;       /* global position of row0 */
} qslice;
/* The slices of this rank's queries; *n set; NULL on allocation failure. */
qslice *attn_mpi__slices(const mctx *c, int *n);
/* Sub-views of rows [row0, row0 + rows) along dimension 2. */
attn_view attn_mpi__rows(const attn_view *a, int64_t row0, int64_t rows);

#endif
