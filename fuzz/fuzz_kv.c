/* fuzz_kv.c - the KV cache (attn_kv_*) driven by a little program.
 *
 * The input picks a cache (sizes and dtype, hostile values included), then
 * up to 8 operations: append, read, copy_blocks, attend, each with block
 * tables of valid ids, -1 and hostile ids, starts and lengths around the
 * table's capacity, views of small random shapes (values with NaN/Inf now
 * and then), options (causal, scale, window, mask-free), and sometimes one
 * allocation made to fail. Tables and length arrays are heap blocks of
 * exactly the size the call may read, so AddressSanitizer sees any read
 * beyond them.
 *
 * Checked after every call:
 *   - the status is an attn_status; a failure leaves a message;
 *   - a failed call changed neither the cache (every block read back
 *     before and after) nor any output byte;
 *   - no scratch is left live (only the cache's own two blocks);
 *   - a successful attend equals attn_sdpa over float32 copies of the
 *     sequences (attn_kv_read), bit for bit, when its tables hold no -1. */
#include "attn.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n, i;
} kv_reader;

static uint8_t kv_u8(kv_reader *r) {
    return r->i < r->n ? r->p[r->i++] : 0;
}

static atomic_long kv_live, kv_calls, kv_fail_at;

static void *kv_alloc(size_t size, size_t align, void *ctx) {
    (void)ctx;
    const long n = atomic_fetch_add(&kv_calls, 1) + 1;
    if (n == atomic_load(&kv_fail_at)) return NULL;
    if (size > ((size_t)64 << 20)) return NULL;
    if (align < sizeof(void *)) align = sizeof(void *);
    void *p = aligned_alloc(align, (size + align - 1) / align * align + align);
    if (p) atomic_fetch_add(&kv_live, 1);
    return p;
}

static void kv_free(void *p, void *ctx) {
    (void)ctx;
    if (!p) return;
    atomic_fetch_sub(&kv_live, 1);
    free(p);
}

static void kv_fail(const char *what) {
    fprintf(stderr, "fuzz_kv: %s (%s)\n", what, attn_last_error());
    abort();
}

static int64_t kv_pick(kv_reader *r, const int64_t *t, size_t n) {
    return t[kv_u8(r) % n];
}

#define KV_COUNT(a) (sizeof(a) / sizeof((a)[0]))

typedef struct {
    attn_kv_cache *c;
    int64_t nb, bs, hkv, d, dv;
    float *snap_k, *snap_v; /* every block, read through the all-blocks table */
    int32_t *all;
} cache_box;

static void snapshot(cache_box *cb, float **k, float **v) {
    const int64_t P = cb->nb * cb->bs;
    *k = malloc((size_t)(cb->hkv * P * cb->d) * sizeof(float));
    *v = malloc((size_t)(cb->hkv * P * cb->dv) * sizeof(float));
    attn_view kv = attn_view_3d(*k, cb->hkv, P, cb->d), vv = attn_view_3d(*v, cb->hkv, P, cb->dv);
    if (attn_kv_read(cb->c, cb->all, P, &kv, &vv)) kv_fail("reading every block");
}

static int same_cache(cache_box *cb, const float *k, const float *v) {
    float *k2, *v2;
    snapshot(cb, &k2, &v2);
    const int64_t P = cb->nb * cb->bs;
    const int ok = memcmp(k, k2, (size_t)(cb->hkv * P * cb->d) * sizeof(float)) == 0 &&
                   memcmp(v, v2, (size_t)(cb->hkv * P * cb->dv) * sizeof(float)) == 0;
    free(k2), free(v2);
    return ok;
}

static float kv_value(kv_reader *r, int i) {
    const uint8_t b = kv_u8(r);
    if (b == 250) return NAN;
    if (b == 251) return INFINITY;
    if (b == 252) return 3e-39f;
    if (b == 253) return 70000.0f;
    return (float)((i * 37 + b) % 17 - 8) * 0.125f;
}

static float *kv_values(kv_reader *r, int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        p[i] = kv_value(r, (int)i);
    return p;
}

/* B tables of mb entries: valid ids mostly, -1 and hostile values sometimes. */
static int32_t *kv_tables(kv_reader *r, const cache_box *cb, int64_t B, int64_t mb, int *has_neg) {
    int32_t *t = malloc((size_t)(B * mb) * sizeof(int32_t));
    for (int64_t i = 0; i < B * mb; i++) {
        const uint8_t b = kv_u8(r);
        t[i] = b < 230 ? (int32_t)(b % cb->nb)
                       : (int32_t[]){-1, -1, (int32_t)cb->nb, INT32_MIN, INT32_MAX, -2}[b % 6];
        if (t[i] < 0) *has_neg = 1;
    }
    return t;
}

static void attend_oracle(cache_box *cb, const attn_view *q, const int32_t *tab, int64_t mb,
                          const int64_t *len, const int64_t *qlen, const attn_view *out,
                          const attn_opts *o) {
    const int64_t B = q->shape[0], H = q->shape[1], Nq = q->shape[2];
    for (int64_t b = 0; b < B; b++) {
        const int64_t nq = qlen ? qlen[b] : Nq, L = len[b];
        if (nq == 0 || L == 0) continue;
        float *k = malloc((size_t)(cb->hkv * L * cb->d) * sizeof(float));
        float *v = malloc((size_t)(cb->hkv * L * cb->dv) * sizeof(float));
        float *ro = malloc((size_t)(H * nq * cb->dv) * sizeof(float));
        attn_view kv = attn_view_3d(k, cb->hkv, L, cb->d), vv = attn_view_3d(v, cb->hkv, L, cb->dv);
        if (attn_kv_read(cb->c, tab + b * mb, L, &kv, &vv)) kv_fail("oracle read");
        attn_view qb = *q;
        qb.data += b * q->stride[0], qb.shape[0] = 1, qb.shape[2] = nq;
        attn_view k4 = attn_view_4d(k, 1, cb->hkv, L, cb->d);
        attn_view v4 = attn_view_4d(v, 1, cb->hkv, L, cb->dv);
        attn_view o4 = attn_view_4d(ro, 1, H, nq, cb->dv);
        attn_opts so = *o;
        so.lse = NULL;
        if (attn_sdpa(&qb, &k4, &v4, &o4, &so)) kv_fail("oracle sdpa");
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < nq; i++)
                if (memcmp(ro + (h * nq + i) * cb->dv, out->data + ((b * H + h) * Nq + i) * cb->dv,
                           (size_t)cb->dv * sizeof(float)) != 0)
                    kv_fail("attend differs from attn_sdpa over float32 copies");
        free(k), free(v), free(ro);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static const attn_allocator a = {kv_alloc, kv_free, NULL};
    attn_set_allocator(&a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const attn_allocator alloc = {kv_alloc, kv_free, NULL};
    attn_set_allocator(&alloc); /* again: fuzz/replay.c runs other harnesses first */
    kv_reader r = {data, size, 0};
    static const int64_t nbs[] = {1, 2, 3, 5, 8, 0, -1, INT64_MAX};
    static const int64_t bss[] = {16, 32, 16, 48, 0, 24, -16, (int64_t)1 << 40};
    static const int64_t hs[] = {1, 2, 3, 1, 0, -3, (int64_t)1 << 40};
    static const int64_t ds[] = {1, 2, 5, 8, 9, 0, -1, (int64_t)1 << 21};
    cache_box cb = {0};
    cb.nb = kv_pick(&r, nbs, KV_COUNT(nbs));
    cb.bs = kv_pick(&r, bss, KV_COUNT(bss));
    cb.hkv = kv_pick(&r, hs, KV_COUNT(hs));
    cb.d = kv_pick(&r, ds, KV_COUNT(ds));
    cb.dv = kv_pick(&r, ds, KV_COUNT(ds));
    const int dt = (int[]){0, 1, 2, 0, 1, 2, 3, -1}[kv_u8(&r) % 8];
    atomic_store(&kv_calls, 0);
    atomic_store(&kv_fail_at, kv_u8(&r) > 240 ? 1 + kv_u8(&r) % 2 : 0);
    attn_status s = attn_kv_create(cb.nb, cb.bs, cb.hkv, cb.d, cb.dv, (attn_kv_dtype)dt, &cb.c);
    atomic_store(&kv_fail_at, 0);
    if (s) {
        if (cb.c || attn_last_error()[0] == '\0' || atomic_load(&kv_live) != 0)
            kv_fail("failed create left a handle, no message or memory");
        return 0;
    }
    if (cb.dv <= 0) cb.dv = cb.d;
    if (cb.nb * cb.bs * cb.hkv * (cb.d + cb.dv) > 4096) { /* keep runs small */
        attn_kv_destroy(cb.c);
        return 0;
    }
    const long base_live = atomic_load(&kv_live);
    cb.all = malloc((size_t)cb.nb * sizeof(int32_t));
    for (int64_t i = 0; i < cb.nb; i++)
        cb.all[i] = (int32_t)i;
    const int64_t cap_blocks = cb.nb;
    for (int op = 0; op < 8 && r.i < r.n; op++) {
        float *k0, *v0;
        snapshot(&cb, &k0, &v0);
        const int kind = kv_u8(&r) % 4;
        const int64_t B = 1 + kv_u8(&r) % 3, mb = 1 + kv_u8(&r) % (cap_blocks + 1);
        int has_neg = 0;
        int32_t *tab = kv_tables(&r, &cb, B, mb, &has_neg);
        const int64_t cap = mb * cb.bs;
        int64_t *st = malloc((size_t)B * sizeof(int64_t)),
                *cnt = malloc((size_t)B * sizeof(int64_t));
        for (int64_t b = 0; b < B; b++) {
            const uint8_t x = kv_u8(&r);
            st[b] = x < 240 ? x % (cap + 2) : (int64_t[]){-1, INT64_MAX, INT64_MIN, cap}[x % 4];
            cnt[b] = kv_u8(&r) % 5;
        }
        const int64_t n = 1 + kv_u8(&r) % 4, H = cb.hkv * (1 + kv_u8(&r) % 2),
                      Nq = 1 + kv_u8(&r) % 3;
        float *outbuf = NULL;
        int64_t nout = 0;
        atomic_store(&kv_calls, 0);
        atomic_store(&kv_fail_at, kv_u8(&r) > 230 ? 1 + kv_u8(&r) % 4 : 0);
        if (kind == 0) {
            float *k = kv_values(&r, B * cb.hkv * n * cb.d),
                  *v = kv_values(&r, B * cb.hkv * n * cb.dv);
            attn_view kv = attn_view_4d(k, B, cb.hkv, n, cb.d);
            attn_view vv = attn_view_4d(v, B, cb.hkv, n, cb.dv + (kv_u8(&r) == 7));
            s = attn_kv_append(cb.c, tab, mb, st, kv_u8(&r) & 1 ? cnt : NULL, &kv, &vv);
            free(k), free(v);
        } else if (kind == 1) {
            const int64_t L = st[0] > 0 && st[0] <= cap ? st[0] : 1;
            nout = cb.hkv * L * (cb.d + cb.dv);
            outbuf = malloc((size_t)nout * sizeof(float));
            memset(outbuf, 0xA5, (size_t)nout * sizeof(float));
            attn_view kv = attn_view_3d(outbuf, cb.hkv, L, cb.d);
            attn_view vv = attn_view_3d(outbuf + cb.hkv * L * cb.d, cb.hkv, L, cb.dv);
            s = attn_kv_read(cb.c, tab, st[0], kv_u8(&r) & 1 ? &kv : NULL, &vv);
        } else if (kind == 2) {
            const int64_t m = (int64_t)(kv_u8(&r) % 4) - (kv_u8(&r) == 3);
            int32_t *dst = kv_tables(&r, &cb, 1, m > 0 ? m : 1, &has_neg);
            s = attn_kv_copy_blocks(cb.c, tab, dst, m > B * mb ? B * mb : m);
            free(dst);
        } else {
            int64_t *len = malloc((size_t)B * sizeof(int64_t));
            int64_t *qlen = malloc((size_t)B * sizeof(int64_t));
            for (int64_t b = 0; b < B; b++) {
                const uint8_t x = kv_u8(&r);
                len[b] = x < 240 ? x % (cap + 1) : (int64_t[]){-1, cap + 1, INT64_MAX, 0}[x % 4];
                qlen[b] = kv_u8(&r) % (Nq + 1);
            }
            float *q = kv_values(&r, B * H * Nq * cb.d);
            nout = B * H * Nq * (cb.dv + 1);
            outbuf = malloc((size_t)nout * sizeof(float));
            memset(outbuf, 0xA5, (size_t)nout * sizeof(float));
            attn_view qv = attn_view_4d(q, B, H, Nq, cb.d);
            attn_view ov = attn_view_4d(outbuf, B, H, Nq, cb.dv);
            attn_view lv = attn_view_3d(outbuf + B * H * Nq * cb.dv, B, H, Nq);
            attn_opts o = attn_opts_default();
            const uint8_t f = kv_u8(&r);
            o.causal = (attn_causal)(int[]){0, 1, 2, 2, 5}[f % 5];
            o.num_threads = 1 + (f >> 3) % 3;
            if (f & 0x20) o.window_left = (int64_t)(kv_u8(&r) % 40) - 1;
            if (f & 0x40) o.lse = &lv;
            if (f & 0x80) o.scale = (float[]){0.5f, INFINITY, NAN, -2.0f}[kv_u8(&r) % 4];
            const int use_qlen = kv_u8(&r) & 1;
            s = attn_kv_attend(cb.c, &qv, tab, mb, len, use_qlen ? qlen : NULL, &ov, &o);
            atomic_store(&kv_fail_at, 0);
            if (s == ATTN_OK && !has_neg)
                attend_oracle(&cb, &qv, tab, mb, len, use_qlen ? qlen : NULL, &ov, &o);
            free(len), free(qlen), free(q);
        }
        atomic_store(&kv_fail_at, 0);
        if ((int)s < 0 || (int)s > ATTN_ERR_ISA) kv_fail("status is not an attn_status");
        if (atomic_load(&kv_live) != base_live) kv_fail("scratch left kv_live");
        if (s != ATTN_OK) {
            if (attn_last_error()[0] == '\0') kv_fail("failure without a message");
            if (!same_cache(&cb, k0, v0)) kv_fail("a failed call changed the cache");
            if (outbuf)
                for (int64_t i = 0; i < nout; i++) {
                    uint32_t u;
                    memcpy(&u, outbuf + i, 4);
                    if (u != 0xA5A5A5A5u) kv_fail("a failed call wrote an output");
                }
        } else if (kind != 0 && kind != 2 && !same_cache(&cb, k0, v0)) {
            kv_fail("read or attend changed the cache");
        }
        free(outbuf), free(tab), free(st), free(cnt), free(k0), free(v0);
    }
    free(cb.all);
    attn_kv_destroy(cb.c);
    if (atomic_load(&kv_live) != 0) kv_fail("the cache's memory outlived attn_kv_destroy");
    return 0;
}
