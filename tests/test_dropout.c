/* test_dropout.c - dropout on both forward paths: the same weights drop.
 *
 * With V = identity (Nkv = dv, v[j] = e_j) the output row is the dropped
 * weight row itself, out[i, j] = w[i, j] keep(b, h, i, j) / (1 - p), so
 * which entries are zero is the keep pattern. Both paths must give exactly
 * the pattern of attn_dropout_keep (entry zero iff dropped or hidden), and
 * values within 1e-5; the fast path must give the same bits for 1, 2 and 3
 * threads, in prefill tiles and in decode's split keys. The lse is taken
 * before dropout: equal to the lse without dropout. Below them, the dropout
 * kernels themselves (kernels/dropout.h) against the scalar keep decision,
 * every ISA, run lengths around the vector widths, extreme thresholds. */
#include "dropout_hash.h"
#include "kernels/dropout.h"
#include "testutil.h"

/* window >= 0: a sliding window (left) and sinks too, so the weights of a row
 * no longer sum to 1 and keys before the window are hidden. */
static void one(int64_t B, int64_t H, int64_t Nq, int64_t N, attn_causal causal, float p,
                int64_t window) {
    float *q = tu_rand(B * H * Nq * 8, -1, 1), *k = tu_rand(B * H * N * 8, -1, 1);
    float *v = tu_zeros(B * H * N * N);
    for (int64_t g = 0; g < B * H; g++)
        for (int64_t j = 0; j < N; j++)
            v[(g * N + j) * N + j] = 1.0f;
    const int64_t no = B * H * Nq * N;
    float *ref = tu_zeros(no), *f[3] = {tu_zeros(no), tu_zeros(no), tu_zeros(no)};
    float *lse_ref = tu_zeros(B * H * Nq), *lse_f = tu_zeros(B * H * Nq);
    attn_view vq = attn_view_4d(q, B, H, Nq, 8), vk = attn_view_4d(k, B, H, N, 8);
    attn_view vv = attn_view_4d(v, B, H, N, N);
    attn_view lr = attn_view_3d(lse_ref, B, H, Nq), lf = attn_view_3d(lse_f, B, H, Nq);
    attn_opts o = attn_opts_default();
    o.causal = causal;
    o.dropout_p = p;
    o.dropout_seed = 0xABCDEF12345ull + (uint64_t)N;
    float sinks[8] = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f};
    if (window >= 0) o.window_left = window, o.sinks = sinks;
    o.algo = ATTN_ALGO_REFERENCE;
    o.lse = &lr;
    attn_view vo = attn_view_4d(ref, B, H, Nq, N);
    CHECK_OK(attn_sdpa(&vq, &vk, &vv, &vo, &o));
    o.algo = ATTN_ALGO_FLASH;
    o.lse = &lf;
    for (int t = 0; t < 3; t++) {
        o.num_threads = t + 1;
        vo = attn_view_4d(f[t], B, H, Nq, N);
        CHECK_OK(attn_sdpa(&vq, &vk, &vv, &vo, &o));
    }
    int64_t wrong = 0, dropped = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Nq; i++)
                for (int64_t j = 0; j < N; j++) {
                    const int64_t n = ((b * H + h) * Nq + i) * N + j;
                    const int64_t pos = causal == ATTN_CAUSAL_TOP_LEFT ? i : i + N - Nq;
                    const int hidden = (causal == ATTN_CAUSAL_TOP_LEFT && j > i) ||
                                       (causal == ATTN_CAUSAL_BOTTOM_RIGHT && j > i + N - Nq) ||
                                       (window >= 0 && pos - j > window);
                    const int keep = !hidden && attn_dropout_keep(o.dropout_seed, b, h, i, j, p);
                    dropped += !hidden && !keep;
                    wrong += (ref[n] != 0.0f) != keep || (f[0][n] != 0.0f) != keep;
                }
    CHECK(wrong == 0, "N=%lld Nq=%lld: %lld entries disagree with attn_dropout_keep", (long long)N,
          (long long)Nq, (long long)wrong);
    CHECK(dropped > 0, "nothing was dropped (p=%g)", (double)p);
    CHECK(tu_maxdiff(ref, f[0], no) <= 1e-5, "values differ by %g", tu_maxdiff(ref, f[0], no));
    CHECK(memcmp(f[0], f[1], (size_t)no * 4) == 0 && memcmp(f[0], f[2], (size_t)no * 4) == 0,
          "the fast path's bits depend on the thread count (N=%lld)", (long long)N);
    /* lse is taken before dropout */
    attn_opts o0 = attn_opts_default();
    o0.causal = causal;
    if (window >= 0) o0.window_left = window, o0.sinks = sinks;
    float *lse0 = tu_zeros(B * H * Nq), *out0 = tu_zeros(no);
    attn_view l0 = attn_view_3d(lse0, B, H, Nq);
    o0.lse = &l0;
    vo = attn_view_4d(out0, B, H, Nq, N);
    CHECK_OK(attn_sdpa(&vq, &vk, &vv, &vo, &o0));
    CHECK(tu_maxdiff(lse0, lse_f, B * H * Nq) == 0.0, "lse changed with dropout");
    CHECK(tu_maxdiff(lse0, lse_ref, B * H * Nq) <= 1e-5, "reference lse changed with dropout");
    free(q), free(k), free(v), free(ref), free(lse_ref), free(lse_f), free(lse0), free(out0);
    for (int t = 0; t < 3; t++)
        free(f[t]);
}

/* The rows and keys kernels of the selected ISA against attn__dropout_keep_at,
 * bit for bit, on runs of n = 1..70 (the 4-, 8- and 16-lane bodies and their
 * tails), thresholds 0 (keep all), 1, p = 0.5 and 2^24 - 1 (drop almost all). */
static void kernels(void) {
    const uint32_t thresholds[4] = {0, 1, 1u << 23, (1u << 24) - 1};
    uint64_t row[70];
    for (int r = 0; r < 70; r++)
        row[r] = attn__dropout_row(0x1234u + (uint64_t)r, r % 3, r % 5, r);
    float p[3 * 70], want[3 * 70];
    int64_t wrong = 0;
    for (int t = 0; t < 4; t++)
        for (int64_t n = 1; n <= 70; n++)
            for (int kind = 0; kind < 2; kind++) {
                const int64_t outer = 3, ld = 70, j0 = (int64_t)1 << 40;
                for (int64_t a = 0; a < outer; a++)
                    for (int64_t x = 0; x < n; x++) {
                        const float val = 0.5f + (float)(a * n + x);
                        p[a * ld + x] = val;
                        const uint64_t rw = kind == 0 ? row[x] : row[a];
                        const int64_t j = kind == 0 ? j0 + a : j0 + x;
                        want[a * ld + x] =
                            attn__dropout_keep_at(rw, j, thresholds[t]) ? val * 1.25f : 0.0f;
                    }
                if (kind == 0)
                    attn__dropout_rows(p, ld, outer, row, n, j0, thresholds[t], 1.25f);
                else
                    attn__dropout_keys(p, ld, outer, row, n, j0, thresholds[t], 1.25f);
                for (int64_t a = 0; a < outer; a++)
                    wrong += memcmp(p + a * ld, want + a * ld, (size_t)n * sizeof(float)) != 0;
            }
    CHECK(wrong == 0, "%s: %lld dropout kernel runs differ from attn__dropout_keep_at",
          attn_isa_name(attn_get_isa()), (long long)wrong);
}

int main(void) {
    const attn_isa isas[] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    for (int a = 0; a < 3; a++) {
        if (!attn_isa_supported(isas[a])) {
            printf("ISA %s not supported here: not tested\n", attn_isa_name(isas[a]));
            continue;
        }
        CHECK_OK(attn_set_isa(isas[a]));
        kernels();
        one(2, 3, 70, 70, ATTN_CAUSAL_TOP_LEFT, 0.1f, -1);
        one(1, 2, 33, 130, ATTN_CAUSAL_BOTTOM_RIGHT, 0.5f, -1);
        one(1, 2, 5, 300, ATTN_CAUSAL_NONE, 0.3f, -1);
        one(1, 1, 1, 1100, ATTN_CAUSAL_NONE, 0.2f, -1); /* decode: keys split over threads */
        one(1, 1, 1, 1, ATTN_CAUSAL_NONE, 0.9f, -1);
        one(2, 4, 90, 90, ATTN_CAUSAL_TOP_LEFT, 0.25f, 20); /* window + sinks */
    }
    CHECK_OK(attn_set_isa(ATTN_ISA_AUTO));
    return tu_summary("test_dropout");
}
