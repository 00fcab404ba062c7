/* test_kv_rope.c - attn_kv_append_rope: keys rotated as they are appended.
 * Against attn_rope into a buffer then attn_kv_append (bit for bit), prefill
 * against token-by-token decode appends, attention over the rotated cache
 * against attn_sdpa on rotated keys, errors and allocation failures leaving
 * the cache unchanged. */
#include "testutil.h"

enum { HKV = 2, D = 16, BS = 16, NB = 8, MAXB = 4 };

/* The whole cache of one sequence as float32: k, v (HKV, len, D). */
static void read_all(const attn_kv_cache *c, const int32_t *table, int64_t len, float *k,
                     float *v) {
    attn_view kv = attn_view_3d(k, HKV, len, D), vv = attn_view_3d(v, HKV, len, D);
    CHECK_OK(attn_kv_read(c, table, len, &kv, &vv));
}

static void test_equals_rope_then_append(void) {
    enum { B = 2, N = 37 };
    const int32_t tables[B * MAXB] = {3, 0, 6, 1, 2, 7, 4, 5};
    const int64_t starts[B] = {0, 5}, counts[B] = {N, N - 5};
    float *k = tu_rand(B * HKV * N * D, -2, 2), *v = tu_rand(B * HKV * N * D, -2, 2);
    float *kc = tu_copy(k, B * HKV * N * D), *kr = tu_zeros(B * HKV * N * D);
    attn_view kv = attn_view_4d(k, B, HKV, N, D), vv = attn_view_4d(v, B, HKV, N, D);
    for (int dt = 0; dt <= 2; dt++) {
        attn_kv_cache *a, *b;
        CHECK_OK(attn_kv_create(NB, BS, HKV, D, 0, (attn_kv_dtype)dt, &a));
        CHECK_OK(attn_kv_create(NB, BS, HKV, D, 0, (attn_kv_dtype)dt, &b));
        attn_rope_params p = attn_rope_params_default();
        p.style = dt == 1 ? ATTN_ROPE_GPTJ : ATTN_ROPE_NEOX;
        p.rotary_dim = dt == 2 ? 8 : 0;
        p.base = 500000.0;
        CHECK_OK(attn_kv_append_rope(a, tables, MAXB, starts, counts, &kv, &vv, &p));
        CHECK(memcmp(k, kc, (size_t)(B * HKV * N * D) * sizeof(float)) == 0, "k was modified");
        /* By hand: positions starts[b] + t, then a plain append. */
        int64_t pos[B * N];
        for (int bb = 0; bb < B; bb++)
            for (int t = 0; t < N; t++)
                pos[bb * N + t] = starts[bb] + t;
        const int64_t ps[3] = {N, 0, 1};
        attn_view krv = attn_view_4d(kr, B, HKV, N, D);
        CHECK_OK(attn_rope(&kv, pos, ps, &krv, &p));
        CHECK_OK(attn_kv_append(b, tables, MAXB, starts, counts, &krv, &vv));
        for (int bb = 0; bb < B; bb++) {
            const int64_t len = starts[bb] + counts[bb];
            float *k1 = tu_zeros(HKV * len * D), *v1 = tu_zeros(HKV * len * D);
            float *k2 = tu_zeros(HKV * len * D), *v2 = tu_zeros(HKV * len * D);
            read_all(a, tables + bb * MAXB, len, k1, v1);
            read_all(b, tables + bb * MAXB, len, k2, v2);
            CHECK(memcmp(k1, k2, (size_t)(HKV * len * D) * sizeof(float)) == 0 &&
                      memcmp(v1, v2, (size_t)(HKV * len * D) * sizeof(float)) == 0,
                  "dtype %d seq %d: append_rope differs from rope + append", dt, bb);
            free(k1), free(v1), free(k2), free(v2);
        }
        attn_kv_destroy(a);
        attn_kv_destroy(b);
    }
    free(k), free(v), free(kc), free(kr);
}

/* A prefill of P keys, then decode appends of one key each, equals one
 * prefill of all P + T keys; attention over the cache equals attn_sdpa on
 * the rotated keys it holds. */
static void test_prefill_then_decode(void) {
    enum { P = 29, T = 7, L = P + T, H = 4 };
    const int32_t table[MAXB] = {5, 2, 7, 0};
    float *k = tu_rand(HKV * L * D, -1, 1), *v = tu_rand(HKV * L * D, -1, 1);
    attn_rope_params p = attn_rope_params_default();
    attn_kv_cache *a, *b;
    CHECK_OK(attn_kv_create(NB, BS, HKV, D, 0, ATTN_KV_BFLOAT16, &a));
    CHECK_OK(attn_kv_create(NB, BS, HKV, D, 0, ATTN_KV_BFLOAT16, &b));
    const int64_t zero = 0;
    attn_view ka = {k, 4, {1, HKV, L, D}, {0, L * D, D, 1}};
    attn_view va = {v, 4, {1, HKV, L, D}, {0, L * D, D, 1}};
    CHECK_OK(attn_kv_append_rope(a, table, MAXB, &zero, NULL, &ka, &va, &p));
    attn_view kp = ka, vp = va;
    kp.shape[2] = vp.shape[2] = P;
    CHECK_OK(attn_kv_append_rope(b, table, MAXB, &zero, NULL, &kp, &vp, &p));
    for (int64_t t = P; t < L; t++) {
        attn_view kt = {k + t * D, 4, {1, HKV, 1, D}, {0, L * D, D, 1}};
        attn_view vt = {v + t * D, 4, {1, HKV, 1, D}, {0, L * D, D, 1}};
        CHECK_OK(attn_kv_append_rope(b, table, MAXB, &t, NULL, &kt, &vt, &p));
    }
    float *k1 = tu_zeros(HKV * L * D), *v1 = tu_zeros(HKV * L * D);
    float *k2 = tu_zeros(HKV * L * D), *v2 = tu_zeros(HKV * L * D);
    read_all(a, table, L, k1, v1);
    read_all(b, table, L, k2, v2);
    CHECK(memcmp(k1, k2, sizeof(float) * HKV * L * D) == 0 &&
              memcmp(v1, v2, sizeof(float) * HKV * L * D) == 0,
          "decode appends differ from one prefill");
    /* Decode attention at the newest position over the rotated cache. */
    float *q = tu_rand(H * D, -1, 1), out[H * D], want[H * D];
    const int64_t Lq = L, qpos = L - 1;
    attn_view qv = attn_view_4d(q, 1, H, 1, D), ov = attn_view_4d(out, 1, H, 1, D);
    CHECK_OK(attn_rope(&qv, &qpos, NULL, &qv, &p));
    attn_opts o = attn_opts_default();
    o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    CHECK_OK(attn_kv_attend(b, &qv, table, MAXB, &Lq, NULL, &ov, &o));
    attn_view k4 = attn_view_4d(k2, 1, HKV, L, D), v4 = attn_view_4d(v2, 1, HKV, L, D);
    attn_view wv = attn_view_4d(want, 1, H, 1, D);
    CHECK_OK(attn_sdpa(&qv, &k4, &v4, &wv, &o));
    CHECK(memcmp(out, want, sizeof out) == 0, "attend over the rotated cache differs from sdpa");
    /* The rotation is there: position 5's key is not the raw key (rounded). */
    CHECK(fabsf(k1[5 * D] - k[5 * D]) > 1e-3f, "key 5 was not rotated: %g vs %g", k1[5 * D],
          k[5 * D]);
    attn_kv_destroy(a);
    attn_kv_destroy(b);
    free(k), free(v), free(k1), free(v1), free(k2), free(v2), free(q);
}

/* Allocation failures: NOMEM, nothing leaked, the cache unchanged. */
static long n_calls, fail_at, live;
static void *fail_alloc(size_t size, size_t align, void *ctx) {
    (void)ctx;
    if (++n_calls == fail_at) return NULL;
    void *p = aligned_alloc(align, (size + align - 1) / align * align);
    if (p) live++;
    return p;
}
static void fail_free(void *p, void *ctx) {
    (void)ctx;
    if (p) live--;
    free(p);
}

static void test_errors_and_faults(void) {
    enum { N = 20 };
    const int32_t table[MAXB] = {1, 3, 0, 2};
    float *k = tu_rand(HKV * N * D, -1, 1), *v = tu_rand(HKV * N * D, -1, 1);
    attn_view kv = attn_view_4d(k, 1, HKV, N, D), vv = attn_view_4d(v, 1, HKV, N, D);
    attn_kv_cache *c;
    CHECK_OK(attn_kv_create(NB, BS, HKV, D, 0, ATTN_KV_FLOAT32, &c));
    const int64_t start = 3;
    attn_rope_params p = attn_rope_params_default();
    CHECK_OK(attn_kv_append_rope(c, table, MAXB, &start, NULL, &kv, &vv, &p));
    float *before = tu_zeros(2 * HKV * (N + 3) * D), *after = tu_zeros(2 * HKV * (N + 3) * D);
    read_all(c, table, N + 3, before, before + HKV * (N + 3) * D);
    const int64_t later = 30;
    p.rotary_dim = 3;
    CHECK_FAIL(attn_kv_append_rope(c, table, MAXB, &later, NULL, &kv, &vv, &p), ATTN_ERR_ARG,
               "attn_kv_append_rope: rotary_dim=3 must be even");
    p = attn_rope_params_default();
    const int64_t past = 60; /* 60 + 20 > 4 blocks of 16 */
    CHECK_FAIL(attn_kv_append_rope(c, table, MAXB, &past, NULL, &kv, &vv, &p), ATTN_ERR_ARG,
               "attn_kv_append_rope: starts[0]=60 + 20 new tokens is past the table's capacity");
    const int32_t bad[MAXB] = {1, 3, 99, 2};
    CHECK_FAIL(attn_kv_append_rope(c, bad, MAXB, &later, NULL, &kv, &vv, &p), ATTN_ERR_ARG,
               "attn_kv_append_rope: block_tables[0][2]=99");
    attn_view k3 = attn_view_3d(k, HKV, N, D);
    CHECK_FAIL(attn_kv_append_rope(c, table, MAXB, &later, NULL, &k3, &vv, &p), ATTN_ERR_SHAPE,
               "attn_kv_append_rope: k.ndim=3 but must be 4");
    CHECK_FAIL(attn_kv_append_rope(c, table, MAXB, &later, NULL, &kv, &vv, NULL), ATTN_ERR_NULL,
               "rope is NULL");
    const int64_t huge = INT64_MAX - 5;
    CHECK_FAIL(attn_kv_append_rope(c, table, MAXB, &huge, NULL, &kv, &vv, &p), ATTN_ERR_ARG,
               "past the table's capacity");
    const attn_allocator al = {fail_alloc, fail_free, NULL};
    attn_set_allocator(&al);
    /* Three allocations: the rotated keys, the positions, attn_rope's table. */
    for (fail_at = 1; fail_at <= 3; fail_at++) {
        n_calls = 0;
        CHECK_FAIL(attn_kv_append_rope(c, table, MAXB, &later, NULL, &kv, &vv, &p), ATTN_ERR_NOMEM,
                   "attn_kv_append_rope: cannot allocate");
        CHECK(live == 0, "allocation %ld failing: %ld blocks leaked", fail_at, live);
    }
    fail_at = 0;
    n_calls = 0;
    CHECK_OK(attn_kv_append_rope(c, table, MAXB, &start, NULL, &kv, &vv, &p));
    CHECK(n_calls == 3 && live == 0, "%ld allocations, %ld live", n_calls, live);
    attn_set_allocator(NULL);
    read_all(c, table, N + 3, after, after + HKV * (N + 3) * D);
    CHECK(memcmp(before, after, sizeof(float) * 2 * HKV * (N + 3) * D) == 0,
          "failed calls changed the cache (or the same append gave other values)");
    attn_kv_destroy(c);
    free(k), free(v), free(before), free(after);
}

int main(void) {
    test_equals_rope_then_append();
    test_prefill_then_decode();
    test_errors_and_faults();
    return tu_summary("test_kv_rope");
}
