/* bench_mpi.c - one timed attn_mpi_sdpa call per run (under mpirun), for
 * bench/mpi_scale.sh and docs/scale-out.md. Never part of the tests.
 *   bench_mpi N H Hkv d causal layout mode threads
 * (layout 0 contiguous, 1 zigzag; mode 0 exact, 1 ring). Rank 0 prints one
 * line of key=value: the time of the call as the max over ranks, compute
 * and wait time per rank (max, mean), bytes sent per rank (max, mean) and
 * the model (P-1)/P * B*N*Hkv*(d+dv)*4, the K/V buffers per rank, the FLOP
 * rate, and a hash of the output bits by global position (equal hashes:
 * bit-identical outputs across runs of any rank count). */
#include "attn_mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A reproducible value for element (h, pos, e) of a tensor, whoever holds it. */
static float val(uint64_t tensor, int64_t h, int64_t pos, int64_t e) {
    uint64_t z =
        tensor * 0x9E3779B97F4A7C15ull ^ (uint64_t)h << 48 ^ (uint64_t)pos << 16 ^ (uint64_t)e;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((z >> 40) * (2.0 / 16777216.0) - 1.0);
}

static void fill(float *a, uint64_t tensor, int64_t Hh, int64_t e, const attn_mpi_positions *p,
                 int64_t n) {
    for (int64_t h = 0; h < Hh; h++) {
        int64_t row = 0;
        for (int u = 0; u < p->n_runs; u++)
            for (int64_t t = 0; t < p->len[u]; t++, row++)
                for (int64_t x = 0; x < e; x++)
                    a[(h * n + row) * e + x] = val(tensor, h, p->start[u] + t, x);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 9) {
        if (rank == 0) fprintf(stderr, "usage: bench_mpi N H Hkv d causal layout mode threads\n");
        MPI_Finalize();
        return 2;
    }
    const int64_t N = atoll(argv[1]), H = atoll(argv[2]), Hkv = atoll(argv[3]), d = atoll(argv[4]);
    const int causal = atoi(argv[5]), lay = atoi(argv[6]), mode = atoi(argv[7]),
              threads = atoi(argv[8]);
    const int64_t dv = d, B = 1;
    attn_mpi_positions pos;
    if (attn_mpi_shard(lay ? ATTN_MPI_ZIGZAG : ATTN_MPI_CONTIGUOUS, N, rank, size, &pos)) {
        fprintf(stderr, "%s\n", attn_last_error());
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int64_t n = 0;
    for (int u = 0; u < pos.n_runs; u++)
        n += pos.len[u];
    float *q = malloc(sizeof(float) * (size_t)(H * n * d)),
          *k = malloc(sizeof(float) * (size_t)(Hkv * n * d)),
          *v = malloc(sizeof(float) * (size_t)(Hkv * n * dv)),
          *o = malloc(sizeof(float) * (size_t)(H * n * dv)),
          *l = malloc(sizeof(float) * (size_t)(H * n));
    fill(q, 1, H, d, &pos, n);
    fill(k, 2, Hkv, d, &pos, n);
    fill(v, 3, Hkv, dv, &pos, n);
    attn_view qv = attn_view_4d(q, B, H, n, d), kv = attn_view_4d(k, B, Hkv, n, d),
              vv = attn_view_4d(v, B, Hkv, n, dv), ov = attn_view_4d(o, B, H, n, dv),
              lv = attn_view_3d(l, B, H, n);
    attn_opts op = attn_opts_default();
    op.causal = causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
    op.num_threads = threads;
    attn_mpi_stats st;
    attn_mpi_opts mo = attn_mpi_opts_default();
    mo.mode = mode ? ATTN_MPI_RING : ATTN_MPI_EXACT;
    mo.stats = &st;
    MPI_Barrier(MPI_COMM_WORLD);
    attn_status s = attn_mpi_sdpa(MPI_COMM_WORLD, &qv, &pos, &kv, &vv, &pos, &ov, &lv, &op, &mo);
    if (s) {
        if (rank == 0) fprintf(stderr, "attn_mpi_sdpa: %s\n", attn_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    /* the output bits, hashed per (h, position, f) and summed: order-free */
    uint64_t hsum = 0;
    for (int64_t h = 0; h < H; h++) {
        int64_t row = 0;
        for (int u = 0; u < pos.n_runs; u++)
            for (int64_t t = 0; t < pos.len[u]; t++, row++)
                for (int64_t f = 0; f < dv; f++) {
                    uint32_t b;
                    memcpy(&b, &o[(h * n + row) * dv + f], sizeof b);
                    uint64_t z = ((uint64_t)b << 32) ^ (uint64_t)(h * N + pos.start[u] + t) * 131 ^
                                 (uint64_t)f;
                    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
                    hsum += z ^ (z >> 27);
                }
    }
    double mine[7] = {st.seconds,
                      st.compute_seconds,
                      st.wait_seconds,
                      (double)st.bytes_sent,
                      (double)st.kv_buffer_bytes,
                      st.sync_seconds,
                      st.test_seconds};
    double mx[7], sum[7];
    uint64_t htot;
    MPI_Reduce(mine, mx, 7, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(mine, sum, 7, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(&hsum, &htot, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        const double model = (double)(size - 1) / size * (double)(B * N * Hkv * (d + dv)) * 4.0;
        /* FLOPs of the attention itself: 2 products of 2*d per visible pair */
        const double pairs = causal ? (double)N * (N + 1) / 2 : (double)N * N;
        const double flop = pairs * (double)H * 2.0 * (double)(d + dv);
        printf("np=%d threads=%d mode=%s layout=%s causal=%d N=%lld H=%lld Hkv=%lld d=%lld "
               "seconds=%.4f compute_max=%.4f compute_mean=%.4f wait_max=%.4f wait_mean=%.4f "
               "test_max=%.4f sync_max=%.4f bytes_max=%.0f bytes_mean=%.0f bytes_model=%.0f "
               "kvbuf_max=%.0f "
               "gflops=%.2f hash=%016llx isa=%s\n",
               size, threads, mode ? "ring" : "exact", lay ? "zigzag" : "contiguous", causal,
               (long long)N, (long long)H, (long long)Hkv, (long long)d, mx[0], mx[1],
               sum[1] / size, mx[2], sum[2] / size, mx[6], mx[5], mx[3], sum[3] / size, model,
               mx[4], flop / mx[0] * 1e-9, (unsigned long long)htot, attn_isa_name(attn_get_isa()));
    }
    free(q), free(k), free(v), free(o), free(l);
    MPI_Finalize();
    return 0;
}
