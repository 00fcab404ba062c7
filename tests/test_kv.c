/* test_kv.c - the paged KV cache (attn_kv_*).
 *
 * 1. Rounding: float32 -> float16 against the compiler's _Float16
 *    conversion (libgcc, round to nearest even with subnormals), float32 ->
 *    bfloat16 against a rounding written in double arithmetic (nearbyint),
 *    over a sweep of bit patterns that covers every exponent, every
 *    rounding boundary of both formats and all float16 subnormals; NaN stays
 *    NaN; back to float32 exact. ATTN_TEST_FULL=1: all 2^32 patterns.
 * 2. Append + read: paged with shuffled block tables (block sizes 16, 32,
 *    80, 256) holds exactly round(x); append touches only its slots
 *    (canaries in every other slot of the pool); a failed call leaves the
 *    pool untouched; copy_blocks; a shared block seen by both tables.
 * 3. Attend equals attn_sdpa over float32 views of what the cache holds,
 *    bit for bit (out and lse), every dtype x ISA x threads 1, 3: decode,
 *    chunked prefill (BOTTOM_RIGHT), GQA, mask, scale; a decode row equals
 *    the same row of a chunked prefill; mixed decode/prefill batches with
 *    q_lengths; NaN/Inf in unused slots never reach the output.
 * 4. Errors name the argument. */
#include "testutil.h"

#include "kernels/half.h"

#include <inttypes.h>

static const attn_kv_dtype DTYPES[3] = {ATTN_KV_FLOAT32, ATTN_KV_FLOAT16, ATTN_KV_BFLOAT16};
static const char *const DT_NAME[3] = {"float32", "float16", "bfloat16"};
static int quick = 0;

/* ---- 1. rounding ---------------------------------------------------------- */

static uint16_t f16_oracle(float x) {
    _Float16 h = (_Float16)x;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

/* bfloat16: 8 significant bits, exponent range of float32; in double. */
static float bf16_oracle(float x) {
    if (isnan(x) || isinf(x) || x == 0.0f) return x;
    const double a = fabs((double)x);
    double r;
    if (a < 0x1p-126) {
        r = nearbyint(a * 0x1p133) * 0x1p-133; /* subnormal: fixed ulp 2^-133 */
    } else {
        int ex;
        const double m = frexp(a, &ex); /* a = m 2^ex, m in [0.5, 1) */
        r = ldexp(nearbyint(ldexp(m, 8)), ex - 8);
    }
    if (r > 0x1.FEp127) r = INFINITY;
    return (float)(x < 0 ? -r : r);
}

static long n_checked = 0, n_bad16 = 0, n_badbf = 0;

static void check_pattern(uint32_t u) {
    const float x = attn__bits_f32(u);
    const uint16_t h = attn__f32_to_f16(x), b = attn__f32_to_bf16(x);
    n_checked++;
    if (isnan(x)) {
        if (!isnan(attn__f16_to_f32(h))) n_bad16++;
        if (!isnan(attn__bf16_to_f32(b))) n_badbf++;
        return;
    }
    if (h != f16_oracle(x)) {
        if (n_bad16++ < 5)
            fprintf(stderr, "f16(%08" PRIx32 ") = %04x, want %04x\n", u, h, f16_oracle(x));
    }
    const float bo = bf16_oracle(x), bb = attn__bf16_to_f32(b);
    if (memcmp(&bo, &bb, 4) != 0) {
        if (n_badbf++ < 5) fprintf(stderr, "bf16(%08" PRIx32 ") = %04x, want %a\n", u, b, bo);
    }
    /* back to float32: exact */
    _Float16 hh;
    memcpy(&hh, &h, 2);
    const float hb = attn__f16_to_f32(h), ho = (float)hh;
    if (memcmp(&hb, &ho, 4) != 0) n_bad16++;
}

static void test_rounding(void) {
    const char *full = getenv("ATTN_TEST_FULL");
    if (full && *full && strcmp(full, "0") != 0) {
        uint32_t u = 0;
        do
            check_pattern(u);
        while (++u != 0);
    } else {
        /* every exponent and sign with the low bits at each rounding boundary
         * of both formats (16 and 13 dropped bits) and every upper pattern */
        static const uint32_t low16[] = {0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF};
        for (uint32_t hi = 0; hi < 0x10000u; hi++)
            for (int i = 0; i < 6; i++)
                check_pattern(hi << 16 | low16[i]);
        static const uint32_t low13[] = {0, 1, 0xFFF, 0x1000, 0x1001, 0x1FFF};
        for (uint32_t hi = 0; hi < 0x80000u; hi += quick ? 5 : 1)
            for (int i = 0; i < 6; i++)
                check_pattern(hi << 13 | low13[i]);
        /* every pattern whose result is a float16 subnormal or near one
         * (exponents 101..113), one sign, every 3rd (every 31st quick) */
        for (uint32_t u = 101u << 23; u < 114u << 23; u += quick ? 31 : 3)
            check_pattern(u);
        /* all the float16 subnormal halfway points and their neighbours */
        for (uint32_t m = 0; m < 0x400; m++) {
            const float mid = ((float)m + 0.5f) * 0x1p-24f;
            const uint32_t u = attn__f32_bits(mid);
            check_pattern(u), check_pattern(u - 1), check_pattern(u + 1);
            check_pattern(u | 0x80000000u);
        }
        for (uint32_t u = 0; u < 0x100000u; u += 1) /* float32 subnormals from 0 up */
            check_pattern(u);
        for (long i = 0; i < (quick ? 200000 : 4000000); i++)
            check_pattern((uint32_t)tu_next());
    }
    CHECK(n_bad16 == 0, "%ld of %ld float16 roundings differ", n_bad16, n_checked);
    CHECK(n_badbf == 0, "%ld of %ld bfloat16 roundings differ", n_badbf, n_checked);
    printf("  rounding: %ld bit patterns, float16 and bfloat16 as the oracles\n", n_checked);
}

/* ---- helpers ---------------------------------------------------------------- */

/* A table of nb distinct block ids in shuffled order from ids 0..pool-1. */
static void shuffled_ids(int32_t *t, int64_t nb, int64_t pool) {
    int32_t *all = malloc((size_t)pool * sizeof *all);
    for (int64_t i = 0; i < pool; i++)
        all[i] = (int32_t)i;
    for (int64_t i = pool - 1; i > 0; i--) {
        const int64_t j = tu_int(0, i);
        const int32_t x = all[i];
        all[i] = all[j], all[j] = x;
    }
    memcpy(t, all, (size_t)nb * sizeof *t);
    free(all);
}

static float round_dt(attn_kv_dtype dt, float x) {
    if (dt == ATTN_KV_FLOAT16) return attn__f16_to_f32(attn__f32_to_f16(x));
    if (dt == ATTN_KV_BFLOAT16) return attn__bf16_to_f32(attn__f32_to_bf16(x));
    return x;
}

/* Read a whole sequence back into new buffers (Hkv, L, d), (Hkv, L, dv). */
static void read_seq(const attn_kv_cache *c, const int32_t *table, int64_t L, int64_t Hkv,
                     int64_t d, int64_t dv, float **k, float **v) {
    *k = tu_zeros(Hkv * L * d), *v = tu_zeros(Hkv * L * dv);
    attn_view kv = attn_view_3d(*k, Hkv, L, d), vv = attn_view_3d(*v, Hkv, L, dv);
    CHECK_OK(attn_kv_read(c, table, L, &kv, &vv));
}

static int same_bits(const float *a, const float *b, int64_t n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* ---- 2. append, read, copy ---------------------------------------------------- */

static void test_append_read(void) {
    static const int64_t sizes[4] = {16, 32, 80, 256};
    for (int di = 0; di < 3; di++)
        for (int si = 0; si < 4; si++) {
            const int64_t bs = sizes[si], Hkv = 2, d = 5, dv = 7, L = 300;
            const int64_t nb = (L + bs - 1) / bs, pool = nb + 3;
            attn_kv_cache *c = NULL;
            CHECK_OK(attn_kv_create(pool, bs, Hkv, d, dv, DTYPES[di], &c));
            int32_t *table = malloc((size_t)nb * sizeof *table);
            shuffled_ids(table, nb, pool);
            /* canaries: every slot of the pool holds 1e30 through a table
             * naming every block */
            int32_t *all = malloc((size_t)pool * sizeof *all);
            for (int64_t i = 0; i < pool; i++)
                all[i] = (int32_t)i;
            const int64_t P = pool * bs;
            float *ck = malloc((size_t)(Hkv * P * d) * sizeof(float));
            float *cv = malloc((size_t)(Hkv * P * dv) * sizeof(float));
            for (int64_t i = 0; i < Hkv * P * d; i++)
                ck[i] = 1e30f;
            for (int64_t i = 0; i < Hkv * P * dv; i++)
                cv[i] = -1e30f;
            const int64_t zero = 0;
            attn_view kall = attn_view_4d(ck, 1, Hkv, P, d), vall = attn_view_4d(cv, 1, Hkv, P, dv);
            CHECK_OK(attn_kv_append(c, all, pool, &zero, NULL, &kall, &vall));
            /* the sequence in pieces of random length, k stored (n, Hkv, d) */
            float *k = tu_rand(Hkv * L * d, -3, 3), *v = tu_rand(Hkv * L * dv, -3, 3);
            k[0] = 1e-6f, k[1] = -7e-8f, k[2] = 70000.0f, v[0] = 3e-39f; /* subnormal, overflow */
            for (int64_t p0 = 0; p0 < L;) {
                const int64_t r = 1 + tu_int(0, 70), n = p0 + r < L ? r : L - p0;
                /* k[g, p, e] seen as (1, Hkv, n, d) from position p0 */
                attn_view kn = {k + p0 * d, 4, {1, Hkv, n, d}, {0, L * d, d, 1}};
                attn_view vn = {v + p0 * dv, 4, {1, Hkv, n, dv}, {0, L * dv, dv, 1}};
                CHECK_OK(attn_kv_append(c, table, nb, &p0, NULL, &kn, &vn));
                p0 += n;
            }
            float *rk, *rv;
            read_seq(c, table, L, Hkv, d, dv, &rk, &rv);
            int ok = 1;
            for (int64_t i = 0; i < Hkv * L * d; i++) {
                const float w = round_dt(DTYPES[di], k[i]);
                ok &= memcmp(&w, rk + i, 4) == 0;
            }
            for (int64_t i = 0; i < Hkv * L * dv; i++) {
                const float w = round_dt(DTYPES[di], v[i]);
                ok &= memcmp(&w, rv + i, 4) == 0;
            }
            CHECK(ok, "%s bs=%" PRId64 ": read back differs from the rounded input", DT_NAME[di],
                  bs);
            /* canaries: every slot outside the sequence is as filled */
            float *ak, *av;
            read_seq(c, all, P, Hkv, d, dv, &ak, &av);
            int64_t touched = 0;
            for (int64_t blk = 0; blk < pool; blk++) {
                int64_t used = -1; /* index in the table, -1: not used */
                for (int64_t t = 0; t < nb; t++)
                    if (table[t] == blk) used = t;
                for (int64_t slot = 0; slot < bs; slot++) {
                    const int64_t pos = used < 0 ? -1 : used * bs + slot;
                    const int in_seq = pos >= 0 && pos < L;
                    for (int64_t g = 0; g < Hkv; g++)
                        for (int64_t e = 0; e < d; e++) {
                            const float got = ak[(g * P + blk * bs + slot) * d + e];
                            if (!in_seq && got != round_dt(DTYPES[di], 1e30f)) touched++;
                        }
                }
            }
            CHECK(touched == 0, "%s bs=%" PRId64 ": %" PRId64 " canaries overwritten", DT_NAME[di],
                  bs, touched);
            /* failed calls leave the pool untouched */
            table[nb - 1] = (int32_t)pool; /* a bad id in the last block */
            const int64_t at = L - 1;
            attn_view k1 = attn_view_4d(k, 1, Hkv, 1, d), v1 = attn_view_4d(v, 1, Hkv, 1, dv);
            CHECK_FAIL(attn_kv_append(c, table, nb, &at, NULL, &k1, &v1), ATTN_ERR_ARG,
                       "block_tables[0][");
            const int64_t past = nb * bs;
            table[nb - 1] = all[0];
            CHECK_FAIL(attn_kv_append(c, table, nb, &past, NULL, &k1, &v1), ATTN_ERR_ARG,
                       "past the table's capacity");
            attn_view kbad = attn_view_4d(k, 1, Hkv, 1, d + 1);
            CHECK_FAIL(attn_kv_append(c, table, nb, &at, NULL, &kbad, &v1), ATTN_ERR_SHAPE,
                       "k.shape[3]");
            float *bk, *bv;
            read_seq(c, all, P, Hkv, d, dv, &bk, &bv);
            CHECK(same_bits(ak, bk, Hkv * P * d) && same_bits(av, bv, Hkv * P * dv),
                  "%s bs=%" PRId64 ": a failed append changed the pool", DT_NAME[di], bs);
            /* copy_blocks: a fresh block takes a copy, then a second copy
             * chained on the first within one call */
            const int32_t src[2] = {table[0], (int32_t)(pool - 1)};
            const int32_t dst[2] = {(int32_t)(pool - 1), (int32_t)(pool - 2)};
            int ok_copy = 1;
            if (pool - 2 >= 0 && table[0] != pool - 1 && table[0] != pool - 2) {
                CHECK_OK(attn_kv_copy_blocks(c, src, dst, 2));
                float *xk, *xv, *yk, *yv;
                read_seq(c, &table[0], bs < L ? bs : L, Hkv, d, dv, &xk, &xv);
                read_seq(c, &dst[1], bs < L ? bs : L, Hkv, d, dv, &yk, &yv);
                ok_copy = same_bits(xk, yk, Hkv * (bs < L ? bs : L) * d) &&
                          same_bits(xv, yv, Hkv * (bs < L ? bs : L) * dv);
                free(xk), free(xv), free(yk), free(yv);
            }
            CHECK(ok_copy, "%s bs=%" PRId64 ": copied block differs", DT_NAME[di], bs);
            const int32_t bad = -1;
            CHECK_FAIL(attn_kv_copy_blocks(c, &bad, dst, 1), ATTN_ERR_ARG, "src[0]=-1");
            free(ak), free(av), free(bk), free(bv), free(rk), free(rv), free(k), free(v);
            free(ck), free(cv), free(all), free(table);
            attn_kv_destroy(c);
        }
    attn_kv_destroy(NULL);
}

/* Two tables share their first block: an append through one is seen by the other. */
static void test_shared_block(void) {
    attn_kv_cache *c = NULL;
    CHECK_OK(attn_kv_create(4, 16, 1, 4, 4, ATTN_KV_FLOAT32, &c));
    const int32_t ta[2] = {2, 0}, tb[2] = {2, 3};
    float x[4] = {1, 2, 3, 4}, y[4] = {5, 6, 7, 8};
    attn_view kx = attn_view_4d(x, 1, 1, 1, 4), vy = attn_view_4d(y, 1, 1, 1, 4);
    const int64_t p = 5;
    CHECK_OK(attn_kv_append(c, ta, 2, &p, NULL, &kx, &vy));
    float k[6 * 4], v[6 * 4];
    attn_view kr = attn_view_3d(k, 1, 6, 4), vr = attn_view_3d(v, 1, 6, 4);
    CHECK_OK(attn_kv_read(c, tb, 6, &kr, &vr));
    CHECK(k[5 * 4 + 2] == 3.0f && v[5 * 4 + 3] == 8.0f, "shared block: not seen through table b");
    attn_kv_destroy(c);
}

/* ---- 3. attend ------------------------------------------------------------------ */

typedef struct {
    attn_kv_cache *c;
    int64_t B, H, Hkv, d, dv, bs, mb; /* mb: max_blocks */
    int32_t *tables;                  /* (B, mb) */
    int64_t *lengths;
    attn_kv_dtype dt;
} kvset;

/* B sequences of the given lengths, filled with random keys and values in
 * random pieces; slots past each length hold NaN and Inf. */
static void kvset_make(kvset *s, attn_kv_dtype dt, int64_t B, const int64_t *lengths, int64_t H,
                       int64_t Hkv, int64_t d, int64_t dv, int64_t bs) {
    s->B = B, s->H = H, s->Hkv = Hkv, s->d = d, s->dv = dv, s->bs = bs, s->dt = dt;
    int64_t lmax = 1;
    for (int64_t b = 0; b < B; b++)
        if (lengths[b] > lmax) lmax = lengths[b];
    s->mb = (lmax + bs - 1) / bs + 1; /* one spare entry */
    const int64_t pool = B * s->mb + 2;
    CHECK_OK(attn_kv_create(pool, bs, Hkv, d, dv, dt, &s->c));
    s->tables = malloc((size_t)(B * s->mb) * sizeof(int32_t));
    shuffled_ids(s->tables, B * s->mb, pool);
    s->lengths = malloc((size_t)B * sizeof(int64_t));
    memcpy(s->lengths, lengths, (size_t)B * sizeof(int64_t));
    const int64_t cap = s->mb * bs;
    for (int64_t b = 0; b < B; b++) {
        float *k = tu_rand(Hkv * cap * d, -2, 2), *v = tu_rand(Hkv * cap * dv, -2, 2);
        for (int64_t g = 0; g < Hkv; g++)
            for (int64_t p = lengths[b]; p < cap; p++) {
                k[(g * cap + p) * d + p % d] = (p % 2) ? NAN : INFINITY;
                v[(g * cap + p) * dv + p % dv] = (p % 2) ? -INFINITY : NAN;
            }
        for (int64_t p0 = 0; p0 < cap;) {
            const int64_t r = 1 + tu_int(0, 90), n = p0 + r < cap ? r : cap - p0;
            attn_view kn = {k + p0 * d, 4, {1, Hkv, n, d}, {0, cap * d, d, 1}};
            attn_view vn = {v + p0 * dv, 4, {1, Hkv, n, dv}, {0, cap * dv, dv, 1}};
            CHECK_OK(attn_kv_append(s->c, s->tables + b * s->mb, s->mb, &p0, NULL, &kn, &vn));
            p0 += n;
        }
        free(k), free(v);
    }
}

static void kvset_free(kvset *s) {
    attn_kv_destroy(s->c);
    free(s->tables), free(s->lengths);
}

/* attn_sdpa over float32 copies of sequence b, its first nq queries. */
static void sdpa_over_copy(const kvset *s, int64_t b, const attn_view *q, int64_t nq,
                           const attn_opts *o, const attn_view *mask, float *out, float *lse) {
    const int64_t L = s->lengths[b];
    float *k, *v;
    read_seq(s->c, s->tables + b * s->mb, L, s->Hkv, s->d, s->dv, &k, &v);
    attn_view qb = *q, kb = attn_view_4d(k, 1, s->Hkv, L, s->d);
    attn_view vb = attn_view_4d(v, 1, s->Hkv, L, s->dv), ob = attn_view_4d(out, 1, s->H, nq, s->dv);
    attn_view lb = attn_view_3d(lse, 1, s->H, nq), mb;
    qb.data += b * q->stride[0], qb.shape[0] = 1, qb.shape[2] = nq;
    attn_opts so = *o;
    so.lse = &lb;
    if (mask) {
        mb = *mask;
        if (mb.shape[0] > 1) mb.data += b * mb.stride[0], mb.shape[0] = 1;
        if (mb.shape[2] > 1) mb.shape[2] = nq;
        if (mb.shape[3] > 1) mb.shape[3] = L;
        so.mask = &mb;
    }
    CHECK_OK(attn_sdpa(&qb, &kb, &vb, &ob, &so));
    free(k), free(v);
}

/* attend over the set vs attn_sdpa per sequence, out and lse bit for bit. */
static int attend_matches(const kvset *s, int64_t Nq, const int64_t *q_lengths, attn_causal causal,
                          int with_mask, float scale, int threads, const char *what) {
    const int64_t B = s->B, H = s->H, dv = s->dv;
    int64_t lmax = 1;
    for (int64_t b = 0; b < B; b++)
        if (s->lengths[b] > lmax) lmax = s->lengths[b];
    float *q = tu_rand(B * H * Nq * s->d, -1.5f, 1.5f), *out = tu_rand(B * H * Nq * dv, 5, 6);
    float *lse = tu_rand(B * H * Nq, 5, 6), *mk = tu_rand(B * Nq * lmax, -1, 1);
    for (int64_t i = 0; i < B * Nq * lmax; i += 5)
        mk[i] = -INFINITY;
    attn_view qv = attn_view_4d(q, B, H, Nq, s->d), ov = attn_view_4d(out, B, H, Nq, dv);
    attn_view lv = attn_view_3d(lse, B, H, Nq);
    attn_view mv = {mk, 4, {B, 1, Nq, lmax}, {Nq * lmax, 0, lmax, 1}};
    attn_opts o = attn_opts_default();
    o.causal = causal;
    o.scale = scale;
    o.num_threads = threads;
    o.lse = &lv;
    if (with_mask) o.mask = &mv;
    CHECK_OK(attn_kv_attend(s->c, &qv, s->tables, s->mb, s->lengths, q_lengths, &ov, &o));
    int ok = 1;
    float *ro = tu_zeros(H * Nq * dv), *rl = tu_zeros(H * Nq);
    for (int64_t b = 0; b < B; b++) {
        const int64_t nq = q_lengths ? q_lengths[b] : Nq;
        if (nq > 0 && s->lengths[b] > 0) {
            attn_opts so = o;
            so.mask = NULL;
            sdpa_over_copy(s, b, &qv, nq, &so, with_mask ? &mv : NULL, ro, rl);
        } else {
            for (int64_t i = 0; i < H * Nq * dv; i++)
                ro[i] = 0.0f;
            for (int64_t i = 0; i < H * Nq; i++)
                rl[i] = -INFINITY;
        }
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Nq; i++) {
                const float *got = out + ((b * H + h) * Nq + i) * dv;
                const float gl = lse[(b * H + h) * Nq + i];
                if (i < nq) {
                    if (!same_bits(got, ro + (h * nq + i) * dv, dv) && getenv("KVDBG"))
                        fprintf(stderr, "b=%lld h=%lld i=%lld got %g want %g\n", (long long)b,
                                (long long)h, (long long)i, got[0], ro[(h * nq + i) * dv]);
                    ok &= same_bits(got, ro + (h * nq + i) * dv, dv);
                    if (memcmp(&gl, &rl[h * nq + i], 4) != 0 && getenv("KVDBG"))
                        fprintf(stderr, "lse b=%lld h=%lld i=%lld got %g want %g\n", (long long)b,
                                (long long)h, (long long)i, gl, rl[h * nq + i]);
                    ok &= memcmp(&gl, &rl[h * nq + i], 4) == 0;
                    for (int64_t f = 0; f < dv; f++)
                        ok &= isfinite(got[f]) != 0; /* NaN/Inf sit in unused slots only */
                    if (!isfinite(got[0]) && getenv("KVDBG"))
                        fprintf(stderr, "nan b=%lld h=%lld i=%lld got %g L %lld\n", (long long)b,
                                (long long)h, (long long)i, got[0], (long long)s->lengths[b]);
                } else {
                    for (int64_t f = 0; f < dv; f++)
                        ok &= got[f] == 0.0f;
                    if ((got[0] != 0.0f || gl != -INFINITY) && getenv("KVDBG"))
                        fprintf(stderr, "pad b=%lld h=%lld i=%lld got %g lse %g\n", (long long)b,
                                (long long)h, (long long)i, got[0], gl);
                    ok &= gl == -INFINITY;
                }
            }
    }
    CHECK(ok, "%s %s thr=%d: attend differs from attn_sdpa over float32 copies", what,
          DT_NAME[s->dt], threads);
    free(q), free(out), free(lse), free(mk), free(ro), free(rl);
    return ok;
}

static void test_attend_exact(void) {
    static const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    long cases = 0;
    for (int ii = 0; ii < 3; ii++) {
        if (!attn_isa_supported(isas[ii])) {
            printf("  (isa %s not supported here)\n", attn_isa_name(isas[ii]));
            continue;
        }
        CHECK_OK(attn_set_isa(isas[ii]));
        for (int di = 0; di < 3; di++) {
            for (int threads = 1; threads <= 3; threads += 2) {
                /* decode, GQA 8/2 heads (4 rows per tile), bs 16, a length
                 * that splits over chunks, d not a multiple of 16 */
                kvset s;
                const int64_t L1[1] = {quick ? 700 : 1500};
                kvset_make(&s, DTYPES[di], 1, L1, 8, 2, 40, 24, 16);
                attend_matches(&s, 1, NULL, ATTN_CAUSAL_NONE, 0, NAN, threads, "decode GQA bs16");
                attend_matches(&s, 1, NULL, ATTN_CAUSAL_BOTTOM_RIGHT, 1, 0.3f, threads,
                               "decode mask");
                /* chunked prefill: 70 queries (a full 64-row tile and a tail) */
                attend_matches(&s, 70, NULL, ATTN_CAUSAL_BOTTOM_RIGHT, 0, NAN, threads, "prefill");
                kvset_free(&s);
                /* mixed batch: decode rows, a prefill chunk, an empty
                 * sequence, a sequence without queries; bs 32 and 256;
                 * MHA with 9 rows per tile (> the few-row kernels) */
                static const int64_t bsz[2] = {32, 256};
                for (int k = 0; k < 2; k++) {
                    const int64_t L4[4] = {1, 333, 0, 90};
                    const int64_t ql[4] = {1, 9, 3, 0};
                    kvset_make(&s, DTYPES[di], 4, L4, 3, 3, 16, 16, bsz[k]);
                    attend_matches(&s, 9, ql, ATTN_CAUSAL_BOTTOM_RIGHT, k, NAN, threads, "mixed");
                    attend_matches(&s, 9, NULL, ATTN_CAUSAL_TOP_LEFT, 1, NAN, threads, "mixed TL");
                    kvset_free(&s);
                }
                cases += 5;
            }
        }
    }
    attn_set_isa(ATTN_ISA_AUTO);
    printf("  attend = attn_sdpa over float32 copies: %ld configurations x ISAs\n", cases);
}

/* A decode row (Nq = 1 at position L-1) equals the last row of a chunked
 * prefill of n queries at L-n..L-1, and the row at L-n+i of the chunk
 * equals decode over a cache of length L-n+i+1. */
static void test_decode_equals_prefill(void) {
    for (int di = 0; di < 3; di++) {
        kvset s;
        const int64_t L[1] = {1200};
        kvset_make(&s, DTYPES[di], 1, L, 4, 1, 64, 64, 64);
        const int64_t n = 20, H = 4, d = 64;
        float *q = tu_rand(H * n * d, -1, 1), *oc = tu_zeros(H * n * d), *od = tu_zeros(H * d);
        attn_view qv = attn_view_4d(q, 1, H, n, d), ov = attn_view_4d(oc, 1, H, n, d);
        attn_opts o = attn_opts_default();
        o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
        o.num_threads = 2;
        CHECK_OK(attn_kv_attend(s.c, &qv, s.tables, s.mb, s.lengths, NULL, &ov, &o));
        int ok = 1;
        for (int64_t i = 0; i < n; i++) {
            const int64_t len = L[0] - n + i + 1;
            attn_view q1 = {q + i * d, 4, {1, H, 1, d}, {0, n * d, d, 1}};
            attn_view o1 = attn_view_4d(od, 1, H, 1, d);
            CHECK_OK(attn_kv_attend(s.c, &q1, s.tables, s.mb, &len, NULL, &o1, &o));
            for (int64_t h = 0; h < H; h++)
                ok &= same_bits(od + h * d, oc + (h * n + i) * d, d);
        }
        CHECK(ok, "%s: decode rows differ from the chunked prefill's rows", DT_NAME[di]);
        free(q), free(oc), free(od);
        kvset_free(&s);
    }
}

/* Score modifiers pass through, and a windowed cache may drop the blocks no
 * query's window reaches (table entry -1, read as zeros): attend equals
 * attn_sdpa over float32 copies with zeros there. */
static void test_modifiers(void) {
    for (int di = 0; di < 3; di++) {
        const int64_t H = 4, Hkv = 2, d = 32, dv = 16, L = 300, bs = 16, nb = (L + bs - 1) / bs;
        kvset s;
        const int64_t Ls[1] = {L};
        kvset_make(&s, DTYPES[di], 1, Ls, H, Hkv, d, dv, bs);
        const int32_t zero_block = (int32_t)(s.B * s.mb + 1); /* never written: zeros */
        float *k, *v;
        int32_t *tz = malloc((size_t)s.mb * sizeof(int32_t));
        int32_t *tw = malloc((size_t)s.mb * sizeof(int32_t));
        for (int64_t nq = 1; nq <= 5; nq += 4) {
            memcpy(tz, s.tables, (size_t)s.mb * sizeof(int32_t));
            memcpy(tw, s.tables, (size_t)s.mb * sizeof(int32_t));
            const int64_t left = 40, first_seen = (L - nq - left) / bs;
            for (int64_t t = 0; t < first_seen; t++)
                tw[t] = -1, tz[t] = zero_block;
            float *kw, *vw; /* with zeros in the dropped blocks */
            read_seq(s.c, tz, L, Hkv, d, dv, &kw, &vw);
            read_seq(s.c, s.tables, L, Hkv, d, dv, &k, &v);
            float *q = tu_rand(H * nq * d, -1, 1), *o1 = tu_zeros(H * nq * dv);
            float *o2 = tu_zeros(H * nq * dv), *l1 = tu_zeros(H * nq), *l2 = tu_zeros(H * nq);
            attn_view qv = attn_view_4d(q, 1, H, nq, d), ov1 = attn_view_4d(o1, 1, H, nq, dv);
            attn_view ov2 = attn_view_4d(o2, 1, H, nq, dv), lv1 = attn_view_3d(l1, 1, H, nq);
            attn_view lv2 = attn_view_3d(l2, 1, H, nq);
            attn_view kv = attn_view_4d(k, 1, Hkv, L, d), vv = attn_view_4d(v, 1, Hkv, L, dv);
            attn_view kwv = attn_view_4d(kw, 1, Hkv, L, d), vwv = attn_view_4d(vw, 1, Hkv, L, dv);
            float slopes[4], sinks[4] = {0.5f, -1.0f, 2.0f, 0.0f};
            CHECK_OK(attn_alibi_slopes(H, slopes));
            for (int variant = 0; variant < 3; variant++) {
                attn_opts o = attn_opts_default();
                o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
                o.num_threads = 2;
                const int32_t *table = s.tables;
                int64_t qoff = L - nq - 7;
                if (variant == 0) { /* sliding window, dropped blocks */
                    o.window_left = left;
                    table = tw;
                } else if (variant == 1) { /* softcap, ALiBi, sinks */
                    o.softcap = 5.0f;
                    o.alibi_slopes = slopes;
                    o.sinks = sinks;
                } else { /* explicit positions, two-sided window */
                    o.q_offset = &qoff;
                    o.k_offset = 3;
                    o.window_left = 100;
                    o.window_right = 2;
                }
                o.lse = &lv1;
                CHECK_OK(attn_kv_attend(s.c, &qv, table, s.mb, &Ls[0], NULL, &ov1, &o));
                o.lse = &lv2;
                CHECK_OK(
                    attn_sdpa(&qv, variant == 0 ? &kwv : &kv, variant == 0 ? &vwv : &vv, &ov2, &o));
                CHECK(same_bits(o1, o2, H * nq * dv) && same_bits(l1, l2, H * nq),
                      "%s modifiers variant %d nq=%" PRId64 ": attend differs from attn_sdpa",
                      DT_NAME[di], variant, nq);
            }
            /* -1 where a query's window reaches: an error naming the entry */
            attn_opts o = attn_opts_default();
            o.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
            o.window_left = left + bs;
            CHECK_FAIL(attn_kv_attend(s.c, &qv, tw, s.mb, &Ls[0], NULL, &ov1, &o), ATTN_ERR_ARG,
                       "a query sees that block");
            o.window_left = -1;
            CHECK_FAIL(attn_kv_attend(s.c, &qv, tw, s.mb, &Ls[0], NULL, &ov1, &o), ATTN_ERR_ARG,
                       "block_tables[0][0]=-1");
            free(q), free(o1), free(o2), free(l1), free(l2), free(k), free(v), free(kw), free(vw);
        }
        (void)nb;
        free(tz), free(tw);
        kvset_free(&s);
    }
}

/* ---- 4. errors --------------------------------------------------------------------- */

static void test_errors(void) {
    attn_kv_cache *c = (attn_kv_cache *)&quick;
    CHECK_FAIL(attn_kv_create(4, 24, 1, 8, 8, ATTN_KV_FLOAT32, &c), ATTN_ERR_SHAPE,
               "block_size=24");
    CHECK(c == NULL, "failed create must set *cache to NULL");
    CHECK_FAIL(attn_kv_create(0, 16, 1, 8, 8, ATTN_KV_FLOAT32, &c), ATTN_ERR_SHAPE, "num_blocks=0");
    CHECK_FAIL(attn_kv_create(4, 16, 1, 8, 8, (attn_kv_dtype)7, &c), ATTN_ERR_ARG, "dtype=7");
    CHECK_FAIL(attn_kv_create(INT64_MAX / 4, 1024, 64, 128, 128, ATTN_KV_FLOAT16, &c),
               ATTN_ERR_OVERFLOW, "overflow");
    CHECK_FAIL(attn_kv_create(4, 16, 1, 8, 8, ATTN_KV_FLOAT32, NULL), ATTN_ERR_NULL, "cache");
    CHECK_OK(attn_kv_create(4, 16, 2, 8, 6, ATTN_KV_BFLOAT16, &c));
    float q[2 * 4 * 3 * 8] = {0}, out[2 * 4 * 3 * 6] = {0}, lse[2 * 4 * 3];
    const int32_t tables[2 * 2] = {0, 1, 2, 9};
    int64_t lengths[2] = {20, 17};
    attn_view qv = attn_view_4d(q, 2, 4, 3, 8), ov = attn_view_4d(out, 2, 4, 3, 6);
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, NULL), ATTN_ERR_ARG,
               "block_tables[1][1]=9");
    lengths[1] = 16;
    lengths[0] = 33;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, NULL), ATTN_ERR_ARG,
               "lengths[0]=33");
    lengths[0] = 20;
    for (int i = 0; i < 2 * 4 * 3 * 6; i++)
        out[i] = 42.0f;
    CHECK_OK(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, NULL));
    attn_view q7 = attn_view_4d(q, 2, 4, 3, 7);
    CHECK_FAIL(attn_kv_attend(c, &q7, tables, 2, lengths, NULL, &ov, NULL), ATTN_ERR_SHAPE,
               "q.shape[3]=7");
    attn_view q3 = attn_view_4d(q, 2, 3, 3, 8);
    CHECK_FAIL(attn_kv_attend(c, &q3, tables, 2, lengths, NULL, &ov, NULL), ATTN_ERR_SHAPE,
               "num_kv_heads=2");
    const int64_t qlen[2] = {1, 4};
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, qlen, &ov, NULL), ATTN_ERR_ARG,
               "q_lengths[1]=4");
    attn_opts o = attn_opts_default();
    o.key_lengths = lengths;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, &o), ATTN_ERR_ARG,
               "key_lengths");
    o = attn_opts_default();
    o.dropout_p = 0.1f;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, &o), ATTN_ERR_ARG,
               "dropout_p");
    /* the modifiers: the same checks as attn_sdpa's (attn__check_modifiers) */
    o = attn_opts_default();
    o.window_left = -2;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, &o), ATTN_ERR_ARG,
               "opts.window_left=-2");
    o = attn_opts_default();
    o.softcap = -1.0f;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, &o), ATTN_ERR_ARG,
               "opts.softcap=-1 must be finite and >= 0");
    const float slopes[4] = {0.5f, 0.25f, INFINITY, 0.0f};
    o = attn_opts_default();
    o.alibi_slopes = slopes;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, &o), ATTN_ERR_ARG,
               "opts.alibi_slopes[2]=inf must be finite (H=4 values)");
    o = attn_opts_default();
    o.sinks = slopes;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, &o), ATTN_ERR_ARG,
               "opts.sinks[2]=inf");
    o = attn_opts_default();
    o.k_offset = ((int64_t)1 << 61) - 5;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, &o), ATTN_ERR_ARG,
               "(j < max(lengths)=20) outside +-2^61");
    const int64_t qoff[2] = {0, -((int64_t)1 << 61) - 1};
    o = attn_opts_default();
    o.q_offset = qoff;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, &o), ATTN_ERR_ARG,
               "opts.q_offset[1]");
    o = attn_opts_default();
    attn_view lbad = attn_view_3d(lse, 2, 4, 2);
    o.lse = &lbad;
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &ov, &o), ATTN_ERR_SHAPE,
               "lse.shape[2]=2");
    attn_view obad = attn_view_4d(out, 2, 4, 3, 5);
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 2, lengths, NULL, &obad, NULL), ATTN_ERR_SHAPE,
               "out.shape[3]=5");
    CHECK_FAIL(attn_kv_attend(c, &qv, tables, 0, lengths, NULL, &ov, NULL), ATTN_ERR_SHAPE,
               "max_blocks=0");
    CHECK_FAIL(attn_kv_attend(c, &qv, NULL, 2, lengths, NULL, &ov, NULL), ATTN_ERR_NULL,
               "block_tables");
    float kk[2 * 20 * 8];
    attn_view kr = attn_view_3d(kk, 2, 3, 8);
    CHECK_FAIL(attn_kv_read(c, tables, 4, &kr, NULL), ATTN_ERR_SHAPE, "k.shape[1]=3");
    attn_view kr1 = attn_view_3d(kk, 2, 20, 8);
    CHECK_FAIL(attn_kv_read(c, tables + 2, 20, &kr1, NULL), ATTN_ERR_ARG, "block_table[1]=9");
    const int64_t neg = -1;
    attn_view k1 = attn_view_4d(q, 1, 2, 1, 8), v1 = attn_view_4d(out, 1, 2, 1, 6);
    CHECK_FAIL(attn_kv_append(c, tables, 2, &neg, NULL, &k1, &v1), ATTN_ERR_ARG, "starts[0]=-1");
    const int64_t cnt = 2, st0 = 0;
    CHECK_FAIL(attn_kv_append(c, tables, 2, &st0, &cnt, &k1, &v1), ATTN_ERR_ARG, "counts[0]=2");
    CHECK_FAIL(attn_kv_copy_blocks(c, tables, tables, -1), ATTN_ERR_SHAPE, "n=-1");
    attn_kv_destroy(c);
}

int main(void) {
    const char *qenv = getenv("ATTN_TEST_QUICK");
    quick = qenv && *qenv && strcmp(qenv, "0") != 0;
    test_rounding();
    test_append_read();
    test_shared_block();
    test_attend_exact();
    test_decode_equals_prefill();
    test_modifiers();
    test_errors();
    return tu_summary("test_kv");
}
