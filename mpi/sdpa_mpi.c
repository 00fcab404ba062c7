/* sdpa_mpi.c - attn_mpi_sdpa: check, agree, compute, agree, write. */
#include "mpi_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* out[b, h, i, :] = res (B, H, nq, dv) contiguous; lse likewise. */
static void write_out(const mctx *c, attn_view *out, attn_view *lse) {
    for (int64_t b = 0; b < c->B; b++)
        for (int64_t h = 0; h < c->H; h++)
            for (int64_t i = 0; i < c->nq; i++) {
                const int64_t row = (b * c->H + h) * c->nq + i;
                float *o = out->data + b * out->stride[0] + h * out->stride[1] + i * out->stride[2];
                for (int64_t f = 0; f < c->dv; f++)
                    o[f * out->stride[3]] = c->res_out[row * c->dv + f];
                if (lse)
                    lse->data[b * lse->stride[0] + h * lse->stride[1] + i * lse->stride[2]] =
                        c->res_lse[row];
            }
}

attn_status attn_mpi_sdpa(MPI_Comm comm, const attn_view *q, const attn_mpi_positions *q_pos,
                          const attn_view *k, const attn_view *v, const attn_mpi_positions *k_pos,
                          attn_view *out, attn_view *lse, const attn_opts *opts,
                          const attn_mpi_opts *mopts) {
    mctx c;
    memset(&c, 0, sizeof c);
    c.stats.seconds = -attn_mpi__now();
    c.comm = comm;
    MPI_Comm_rank(comm, &c.rank);
    MPI_Comm_size(comm, &c.size);
    c.q = q;
    c.k = k;
    c.v = v;
    c.qp = q_pos;
    c.kp = k_pos;
    const attn_opts od = attn_opts_default();
    const attn_mpi_opts md = attn_mpi_opts_default();
    const attn_opts *o = opts ? opts : &od;
    const attn_mpi_opts *mo = mopts ? mopts : &md;

    record mine;
    attn_mpi__check_local(&c, out, lse, o, mo, &mine);
    void *plan = NULL;
    attn_status st = attn_mpi__agree(&c, &mine);
    if (st == ATTN_OK) {
        c.ao = attn_opts_default();
        c.ao.scale = o->scale;
        c.ao.causal = c.causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
        c.ao.num_threads = o->num_threads;
        c.ao.algo = o->algo;
        c.ao.k_offset = c.k0; /* fold key j is at position k0 + j */
        c.ao.window_left = o->window_left;
        c.ao.window_right = o->window_right;
        c.ao.softcap = o->softcap;
        c.ao.alibi_slopes = o->alibi_slopes;
        c.ao.sinks = o->sinks;
        const int64_t rows = c.B * c.H * c.nq;
        c.res_out = malloc((size_t)(rows * c.dv) * sizeof(float));
        c.res_lse = malloc((size_t)rows * sizeof(float));
        attn_status local = ATTN_OK;
        if (!c.res_out || !c.res_lse)
            local = attn_set_error(ATTN_ERR_NOMEM, "cannot allocate the result buffers");
        else if (mo->mode == ATTN_MPI_EXACT)
            local = attn_mpi__exact_prepare(&c, &plan);
        else
            local = attn_mpi__ring_prepare(&c, &plan);
        st = attn_mpi__agree_status(&c, local, local ? attn_last_error() : "");
    }
    if (st == ATTN_OK) {
        attn_mpi__pack(&c);
        if (mo->mode == ATTN_MPI_EXACT)
            attn_mpi__exact_run(&c, plan);
        else
            attn_mpi__ring_run(&c, plan);
        st = attn_mpi__agree_status(&c, c.st, c.msg);
        if (st == ATTN_OK) write_out(&c, out, lse);
    }
    if (plan) (mo->mode == ATTN_MPI_EXACT ? attn_mpi__exact_free : attn_mpi__ring_free)(plan);
    free(c.pack);
    free(c.res_out);
    free(c.res_lse);
    free(c.reqs);
    free(c.all);
    free(c.runs);
    c.stats.seconds += attn_mpi__now();
    if (mo->stats) *mo->stats = c.stats;
    return st;
}

attn_status attn_mpi_abstain(MPI_Comm comm, attn_status status, const char *message) {
    mctx c;
    memset(&c, 0, sizeof c);
    c.comm = comm;
    MPI_Comm_rank(comm, &c.rank);
    MPI_Comm_size(comm, &c.size);
    record mine;
    memset(&mine, 0, sizeof mine);
    mine.status = status != ATTN_OK ? status : ATTN_ERR_ARG;
    snprintf(mine.msg, sizeof mine.msg, "%s", message ? message : "abstained");
    const attn_status st = attn_mpi__agree(&c, &mine);
    free(c.all);
    free(c.runs);
    return st;
}
