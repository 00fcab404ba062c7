/*
 * attn_mpi.h - attention across machines: context parallelism over MPI
 * (libattn_mpi, built when CMake finds MPI; the core library never sees MPI).
 *
 * One long sequence of N tokens is split over the ranks of a communicator.
 * Every rank holds a shard of the queries and a shard of the keys/values,
 * each token at a global position in 0..N-1, and receives out and lse for
 * its own queries over ALL keys, as if one process had run attn_sdpa on the
 * whole sequence:
 *   q   (B, H,   Nq_local,  d)     positions q_pos (runs, see below)
 *   k   (B, Hkv, Nkv_local, d)     positions k_pos; the k_pos of all ranks
 *   v   (B, Hkv, Nkv_local, dv)    together cover k0..k0+N-1 exactly once
 *                                  (k0 the smallest key position, usually 0)
 *   out (B, H,   Nq_local,  dv)    lse (B, H, Nq_local) or NULL
 *   out[b,h,i,:] = sum_j softmax_j(scale * q_i . k_j) v_j over every key j
 *                  of every rank visible to query i (causal: position of j
 *                  <= position of i, in global positions; query positions
 *                  are any values >= 0, and a causal query before every
 *                  key gets zeros and lse -inf)
 * This equals attn_sdpa on the whole arrays with opts.q_offset, k_offset =
 * the positions of their first query and key.
 * Dimension letters as in attn.h. Since v0.2.0.
 *
 * Modes
 *   ATTN_MPI_EXACT  every rank folds the key shards in ascending global
 *                   order with the resumable fold (attn_fold_*): each
 *                   owner posts its keys at the start as messages of at
 *                   most ATTN_KEY_CHUNK keys (non-blocking), each rank
 *                   receives them in ascending order into two chunk-sized
 *                   slots (double buffered) and assembles chunks cut by a
 *                   shard boundary in a staging chunk. Memory: the rank's
 *                   own K/V packed (O(N/P)) plus three chunks.
 *                   out and lse equal, BIT FOR BIT, single-process attn_sdpa
 *                   over the whole sequence (same ISA and build on every
 *                   rank), whatever the number of ranks, shards, layout or
 *                   threads. A rank is sent only the chunks its queries can
 *                   see (causal diagonal, window): a rank sends each of
 *                   its keys to at most P-1 ranks, so with equal shards at
 *                   most (P-1)/P * B*N*Hkv*(d+dv)*4 bytes.
 *   ATTN_MPI_RING   K/V rotate around the ring (each rank's shard visits
 *                   every other rank once), communication overlapped with
 *                   computation; each visit is one attn_sdpa partial with
 *                   lse, combined with attn_merge in arrival order, which
 *                   differs per rank: within 1e-5 absolute of exact mode on
 *                   out and 1e-5 relative on lse for inputs in [-1, 1]
 *                   (tested), not bit-identical. Memory: two K/V buffers of
 *                   the largest shard.
 * Compute runs as attn calls of at most 256 queries x 512 keys, with the
 * requests tested between them (MPI_Testall, at most every 2 ms); MPI must
 * be initialised (any thread level: all MPI calls come from the caller's
 * thread). See docs/scale-out.md.
 *
 * Collective errors: every rank checks its own arguments, then all ranks
 * exchange them (MPI_Allgather) and compare: a local error on any rank or
 * a disagreement (B, H, Hkv, d, dv, scale, causal, mode, key positions
 * that do not tile one range, so also the total length) makes EVERY rank return the same status
 * with the same message, naming the rank, e.g. "attn_mpi_sdpa: rank 2 has H=4 but rank 0 has H=8"
 * and no rank writes its outputs. MPI errors themselves follow the
 * communicator's error handler (MPI's default aborts).
 */
#ifndef ATTN_MPI_H
#define ATTN_MPI_H

#include "attn.h"

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most runs of positions a rank's shard may have. */
#define ATTN_MPI_MAX_RUNS 16

/* Global positions of a rank's tokens: runs of consecutive positions, in
 * the order the tokens lie along the Nq_local (or Nkv_local) dimension.
 * Token t of run r is at position start[r] + t; the runs' lengths (each
 * >= 1) sum to the local token count. */
typedef struct attn_mpi_positions {
    int n_runs; /* 1..ATTN_MPI_MAX_RUNS */
    int64_t start[ATTN_MPI_MAX_RUNS];
    int64_t len[ATTN_MPI_MAX_RUNS];
} attn_mpi_positions;

/* How a sequence is cut into shards. Values pinned. */
typedef enum attn_mpi_layout {
    ATTN_MPI_CONTIGUOUS = 0, /* rank r holds one run, the r-th of P near-equal runs */
    ATTN_MPI_ZIGZAG = 1,     /* N cut into 2P near-equal chunks, rank r holds chunks r and
                                2P-1-r (balances causal work) */
} attn_mpi_layout;

/* The shard of `rank` among `size` ranks for a sequence of n tokens.
 * Near-equal cuts: piece c of m pieces is [c*n/m, (c+1)*n/m) (integer
 * division), so pieces differ by at most one token. ZIGZAG needs n >= 2P,
 * CONTIGUOUS n >= P (no empty shard).
 * @return ATTN_ERR_NULL, ATTN_ERR_ARG (layout, rank outside 0..size-1,
 * size < 1), ATTN_ERR_SHAPE (n too small). */
attn_status attn_mpi_shard(attn_mpi_layout layout, int64_t n, int rank, int size,
                           attn_mpi_positions *pos);

/* Values pinned. */
typedef enum attn_mpi_mode {
    ATTN_MPI_EXACT = 0,
    ATTN_MPI_RING = 1,
} attn_mpi_mode;

/* What one rank measured during one call (all times in seconds, wall clock). */
typedef struct attn_mpi_stats {
    double seconds;          /* the whole call */
    double compute_seconds;  /* inside attn calls (fold steps, sdpa, merge, finish) */
    double wait_seconds;     /* blocked in MPI_Wait for K/V messages */
    double test_seconds;     /* in MPI_Testall between attn calls (progress; on a loaded
                                host this includes the CPU yielded to other processes) */
    double sync_seconds;     /* in the argument and status agreements (collectives: this
                                includes waiting for slower ranks) */
    int64_t bytes_sent;      /* K/V payload this rank sent */
    int64_t bytes_received;  /* K/V payload this rank received */
    int64_t kv_buffer_bytes; /* memory held for K/V (send, receive, staging) */
} attn_mpi_stats;

typedef struct attn_mpi_opts {
    attn_mpi_mode mode;
    attn_mpi_stats *stats; /* optional output, NULL: not measured */
} attn_mpi_opts;

/* @return mode EXACT, no stats. */
attn_mpi_opts attn_mpi_opts_default(void);

/* Attention over the whole sequence, collective over comm (every rank of
 * comm calls it). Shapes and positions as at the top of this header.
 * opts (NULL: defaults) as for attn_sdpa: scale (NaN: 1/sqrt(d)), causal
 * (TOP_LEFT and BOTTOM_RIGHT both mean: key position <= query position,
 * since queries and keys share one sequence), the score modifiers in
 * global positions (window_left/right, softcap, alibi_slopes, sinks: the
 * sink enters each row once, as the fold's initial state in exact mode, as
 * one last part in ring mode), num_threads for this rank (ranks may
 * differ). A rank skips the key chunks none of its queries can see (causal
 * diagonal, window), and is sent only what it needs. Must be unset: mask, key_lengths, dropout_p,
 * lse, weights, q_offset, k_offset (the positions replace them); algo is AUTO or FLASH. mopts: mode
 * and stats (NULL: exact, none). Every rank must pass the same B, H, Hkv, d, dv, scale, causal and
 * mode.
 * @return ATTN_OK, or on every rank the same error status (see above);
 * ATTN_ERR_NOMEM if a rank cannot allocate its buffers (all ranks then
 * return it, outputs untouched). */
attn_status attn_mpi_sdpa(MPI_Comm comm, const attn_view *q, const attn_mpi_positions *q_pos,
                          const attn_view *k, const attn_view *v, const attn_mpi_positions *k_pos,
                          attn_view *out, attn_view *lse, const attn_opts *opts,
                          const attn_mpi_opts *mopts);

/* For a rank that cannot even form its arguments (a binding whose input
 * conversion failed): take part in attn_mpi_sdpa's collective check in
 * their place, with this status (ATTN_OK counts as ATTN_ERR_ARG) and
 * message, so the ranks that did call attn_mpi_sdpa fail with
 * "attn_mpi_sdpa: rank r: <message>" instead of waiting forever.
 * @return the status every rank returns (this one's, or an earlier rank's). */
attn_status attn_mpi_abstain(MPI_Comm comm, attn_status status, const char *message);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_MPI_H */
