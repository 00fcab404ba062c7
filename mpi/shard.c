/* shard.c - which positions a rank holds for a layout. */
#include "mpi_internal.h"

#include <inttypes.h>
#include <stdio.h>

attn_mpi_opts attn_mpi_opts_default(void) {
    attn_mpi_opts o = {ATTN_MPI_EXACT, NULL};
    return o;
}

/* Piece c of m near-equal pieces of n: [c*n/m, (c+1)*n/m). */
static void piece(int64_t n, int64_t m, int64_t c, int64_t *start, int64_t *len) {
    /* c*n may overflow for huge n: split n = a*m + r. */
    const int64_t a = n / m, r = n % m;
    const int64_t s0 = c * a + c * r / m, s1 = (c + 1) * a + (c + 1) * r / m;
    *start = s0;
    *len = s1 - s0;
}

attn_status attn_mpi_shard(attn_mpi_layout layout, int64_t n, int rank, int size,
                           attn_mpi_positions *pos) {
    char m[MSG_LEN];
    if (!pos) return attn_set_error(ATTN_ERR_NULL, "attn_mpi_shard: pos must not be NULL");
    if (size < 1 || rank < 0 || rank >= size) {
        snprintf(m, sizeof m, "attn_mpi_shard: rank=%d must be in 0..size-1 with size=%d >= 1",
                 rank, size);
        return attn_set_error(ATTN_ERR_ARG, m);
    }
    if (layout != ATTN_MPI_CONTIGUOUS && layout != ATTN_MPI_ZIGZAG) {
        snprintf(m, sizeof m, "attn_mpi_shard: layout=%d is not an attn_mpi_layout value",
                 (int)layout);
        return attn_set_error(ATTN_ERR_ARG, m);
    }
    const int64_t pieces = layout == ATTN_MPI_ZIGZAG ? 2 * (int64_t)size : size;
    if (n < pieces) {
        snprintf(m, sizeof m,
                 "attn_mpi_shard: n=%" PRId64 " tokens cannot give each of %" PRId64
                 " pieces a token (%s over %d ranks)",
                 n, pieces, layout == ATTN_MPI_ZIGZAG ? "zigzag" : "contiguous", size);
        return attn_set_error(ATTN_ERR_SHAPE, m);
    }
    if (layout == ATTN_MPI_CONTIGUOUS) {
        pos->n_runs = 1;
        piece(n, pieces, rank, &pos->start[0], &pos->len[0]);
    } else {
        pos->n_runs = 2;
        piece(n, pieces, rank, &pos->start[0], &pos->len[0]);
        piece(n, pieces, pieces - 1 - rank, &pos->start[1], &pos->len[1]);
        if (size == 1) { /* chunks 0 and 1 are adjacent: one run */
            pos->n_runs = 1;
            pos->len[0] += pos->len[1];
        }
    }
    return ATTN_OK;
}
