/* fuzz_api.c - argument validation of every public entry point.
 *
 * The input is read as a little program: which function to call, the views
 * to give it (rank, sizes, strides, offset, NULL pointers), option values and
 * which allocation to fail. Views live in two fixed heap buffers, IN (inputs)
 * and OUT (outputs), so AddressSanitizer sees any access outside them.
 *
 * Rule that keeps the harness honest: a view that looks valid (rank 1..4,
 * sizes >= 1, offsets that fit in int64) is always placed entirely inside its
 * buffer, so the library may read or write all of it; a view that is not
 * valid is placed anywhere, and the library must reject it before touching
 * memory. Valid views with more than MAX_NUMEL elements are not generated
 * (the input is dropped) to keep each run fast.
 *
 * Checked after every call:
 *   - the status is an attn_status value; failure leaves a message;
 *   - a failed call changed no byte of IN or OUT (outputs untouched);
 *   - a successful call changed no byte of IN (unless in place by design);
 *   - no scratch allocation is left live; no allocation exceeded the cap;
 *   - views produced by attn_split_qkv(_gqa) / attn_mha_from_fused(_gqa) lie
 *     inside the memory of the view they were cut from.
 * attn_rope's positions live in a heap block of exactly the span its
 * strides reach over x's shape, so a read beyond is caught too. */
#include "attn.h"

#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_FLOATS 2048
#define MAX_NUMEL  1024
#define ALLOC_CAP  ((size_t)64 << 20)

static float *IN, *OUT, *IN_SAVE, *OUT_SAVE;

/* Statuses per entry point (call selector x status), for fuzz/replay.c's
 * summary: how many inputs get past validation. */
static long api_hist[17][ATTN_ERR_ISA + 1];
static int api_last_call = -1;

/* ---- input reader --------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n, i;
} reader;

static uint8_t u8(reader *r) {
    return r->i < r->n ? r->p[r->i++] : 0;
}
static uint32_t u32(reader *r) {
    uint32_t x = 0;
    for (int k = 0; k < 4; k++)
        x |= (uint32_t)u8(r) << (8 * k);
    return x;
}
static uint64_t u64(reader *r) {
    return (uint64_t)u32(r) | (uint64_t)u32(r) << 32;
}

/* ---- allocator: capped, counting, failing on request ---------------------- */

static atomic_long live, calls, fail_at, over_cap;

static void *fz_alloc(size_t size, size_t align, void *ctx) {
    (void)ctx;
    long n = atomic_fetch_add(&calls, 1) + 1;
    if (n == atomic_load(&fail_at)) return NULL;
    if (size > ALLOC_CAP) {
        atomic_fetch_add(&over_cap, 1);
        return NULL;
    }
    if (align < sizeof(void *)) align = sizeof(void *);
    size_t rounded = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded ? rounded : align);
    if (p) atomic_fetch_add(&live, 1);
    return p;
}

static void fz_free(void *p, void *ctx) {
    (void)ctx;
    if (!p) return;
    atomic_fetch_sub(&live, 1);
    free(p);
}

/* ---- views ------------------------------------------------------------------ */

/* Sizes shared by the views of one input, so that shapes agree often. */
typedef struct {
    int64_t dim[8];
} dims;

static const int64_t hostile_size[] = {
    0, -1, -7, INT64_MIN, INT64_MAX, 1ll << 31, 1ll << 40, 1ll << 62, 3ll << 61, 4096, 65, 100000};
static const int64_t hostile_stride[] = {
    INT64_MIN, INT64_MAX, 1ll << 40, -(1ll << 40), 1ll << 61, -(1ll << 61), 1ll << 32, 3, -1,
    0,         2,         -2};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* True when v passes the library's documented checks on rank, sizes and
 * offsets (every element offset, and the byte offsets, fit in ptrdiff_t);
 * then *lo, *hi are the lowest and highest element offsets. */
static int looks_valid(const attn_view *v, int64_t *lo, int64_t *hi, int64_t *numel) {
    if (v->ndim < 1 || v->ndim > ATTN_MAX_NDIM) return 0;
    int64_t neg = 0, pos = 0, n = 1, span = 0;
    for (int i = 0; i < v->ndim; i++) {
        if (v->shape[i] < 1 || v->stride[i] == INT64_MIN) return 0;
        const int64_t a = v->stride[i] < 0 ? -v->stride[i] : v->stride[i];
        int64_t t;
        if (__builtin_mul_overflow(v->shape[i] - 1, a, &t) ||
            __builtin_add_overflow(span, t, &span) || __builtin_mul_overflow(n, v->shape[i], &n))
            return 0;
        if (v->stride[i] < 0)
            neg -= t;
        else
            pos += t;
    }
    if (span > PTRDIFF_MAX / 4 || n > PTRDIFF_MAX / 4) return 0;
    *lo = neg, *hi = pos, *numel = n;
    return 1;
}

/* Decode a view of preferred rank `want` in buffer buf. @return 0 if the
 * input must be dropped (a valid view too large to place). */
static int view(reader *r, const dims *D, int want, float *buf, attn_view *v) {
    memset(v, 0, sizeof *v);
    uint8_t m = u8(r);
    v->ndim = m < 224 ? want : (int)(m % 7) - 1; /* -1..5 */
    for (int i = 0; i < ATTN_MAX_NDIM; i++) {
        uint8_t s = u8(r);
        v->shape[i] = s < 232 ? D->dim[s % 8] : hostile_size[s % COUNT(hostile_size)];
    }
    /* Strides: contiguous, permuted-contiguous, small, or hostile. */
    uint8_t sm = u8(r);
    int64_t st = 1;
    for (int i = ATTN_MAX_NDIM - 1; i >= 0; i--) {
        v->stride[i] = st;
        int64_t sh = v->shape[i] > 0 && v->shape[i] < 4096 ? v->shape[i] : 1;
        st *= sh;
        if (st > (1 << 20)) st = 1 << 20;
    }
    if (sm >= 96 && sm < 160) { /* swap two strides: a transposed view */
        int a = sm % 4, b = (sm / 4) % 4;
        int64_t t = v->stride[a];
        v->stride[a] = v->stride[b];
        v->stride[b] = t;
    } else if (sm >= 160 && sm < 224) {
        for (int i = 0; i < ATTN_MAX_NDIM; i++)
            v->stride[i] = (int64_t)(int8_t)u8(r) % 9;
    } else if (sm >= 224) {
        v->stride[sm % 4] = hostile_stride[u8(r) % COUNT(hostile_stride)];
    }
    uint32_t off = u32(r);
    int64_t lo, hi, numel;
    if (looks_valid(v, &lo, &hi, &numel)) {
        const int64_t span = hi - lo + 1;
        if (numel > MAX_NUMEL || span > BUF_FLOATS) return 0;
        v->data = buf + (-lo) + (int64_t)(off % (uint32_t)(BUF_FLOATS - span + 1));
    } else {
        v->data = buf + off % BUF_FLOATS;
    }
    if ((m & 0x1f) == 7) v->data = NULL;
    return 1;
}

/* A view pointer: NULL now and then. */
static attn_view *maybe(reader *r, attn_view *v) {
    return u8(r) == 0x5a ? NULL : v;
}

/* True when every element of `inner` lies within the memory span of `outer`. */
static int within(const attn_view *inner, const attn_view *outer) {
    int64_t ilo, ihi, olo, ohi, n;
    if (!looks_valid(inner, &ilo, &ihi, &n) || !looks_valid(outer, &olo, &ohi, &n)) return 0;
    const int64_t off = inner->data - outer->data;
    return off + ilo >= olo && off + ihi <= ohi;
}

/* ---- options -------------------------------------------------------------- */

static float pick_float(reader *r, const float *table, size_t n) {
    uint8_t b = u8(r);
    if (b < 240) return table[b % n];
    uint32_t bits = u32(r);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static const float scales[] = {NAN, 1.0f, 0.125f, 0.0f, -1.0f, 1e30f, INFINITY, -INFINITY, 3e-39f};
static const float probs[] = {0.0f, 0.0f, 0.1f, 0.5f, 0.999f, 1.0f, -0.1f, NAN, INFINITY, 1e-8f};
static const int enums[] = {0, 1, 2, 0, 1, 2, 3, -1, 1000, INT_MIN};
static const int threads[] = {0, 1, 2, 3, -1, INT_MAX, INT_MIN, 5};
static const int64_t heads[] = {1, 2, 3, 4, 0, -1, INT64_MAX, INT64_MIN, 6, 8};

typedef struct {
    attn_opts o;
    attn_view mask, lse, weights;
    int64_t *key_lengths, *q_offset;
    float *per_head; /* alibi_slopes and sinks: MAX_NUMEL each (H <= MAX_NUMEL) */
} opts_box;

static const float head_vals[] = {0.0f,  0.5f, -1.0f,    30.0f,    -30.0f,
                                  1e30f, NAN,  INFINITY, -INFINITY};
static const int64_t offsets[] = {0,
                                  1,
                                  -1,
                                  5,
                                  INT64_MAX,
                                  INT64_MIN,
                                  (int64_t)1 << 61,
                                  -((int64_t)1 << 61),
                                  ((int64_t)1 << 61) + 1};
static const int64_t windows[] = {-1, 0, 1, 2, 7, 64, -2, INT64_MAX, INT64_MIN};
static const float softcaps[] = {0.0f, 1.0f, 30.0f, 0.5f, -1.0f, NAN, INFINITY, 1e-30f};

/* B: the batch size the key lengths must cover, if it is small and valid. */
static int options(reader *r, const dims *D, int64_t B, opts_box *ob) {
    ob->o = attn_opts_default();
    ob->key_lengths = ob->q_offset = NULL;
    ob->per_head = NULL;
    uint8_t f = u8(r);
    ob->o.scale = pick_float(r, scales, COUNT(scales));
    ob->o.causal = (attn_causal)enums[u8(r) % COUNT(enums)];
    ob->o.algo = (attn_algo)enums[u8(r) % COUNT(enums)];
    if (f & 1) ob->o.dropout_p = pick_float(r, probs, COUNT(probs));
    ob->o.dropout_seed = u64(r);
    ob->o.num_threads = threads[u8(r) % COUNT(threads)];
    if (f & 2) {
        if (!view(r, D, 4, IN, &ob->mask)) return 0;
        ob->o.mask = maybe(r, &ob->mask);
    }
    if (f & 4) {
        if (!view(r, D, 3, OUT, &ob->lse)) return 0;
        ob->o.lse = maybe(r, &ob->lse);
    }
    if (f & 8) {
        if (!view(r, D, 4, OUT, &ob->weights)) return 0;
        ob->o.weights = maybe(r, &ob->weights);
    }
    if ((f & 16) && B >= 1 && B <= MAX_NUMEL) {
        /* Exactly B entries: reading beyond is caught. */
        ob->key_lengths = malloc((size_t)B * sizeof(int64_t));
        for (int64_t b = 0; b < B; b++) {
            uint8_t k = u8(r);
            ob->key_lengths[b] = k < 200 ? D->dim[k % 8] - (k / 8) % 3
                                         : (int64_t[]){-1, INT64_MAX, INT64_MIN, 0}[k % 4];
        }
        ob->o.key_lengths = ob->key_lengths;
    }
    if (f & 32) { /* the score modifiers (since 0.2.0) */
        const uint8_t m = u8(r);
        ob->o.window_left = windows[u8(r) % COUNT(windows)];
        ob->o.window_right = windows[u8(r) % COUNT(windows)];
        ob->o.softcap = pick_float(r, softcaps, COUNT(softcaps));
        ob->o.k_offset = offsets[u8(r) % COUNT(offsets)];
        if (m & 3) {
            ob->per_head = malloc(2 * MAX_NUMEL * sizeof(float));
            for (int i = 0; i < 2 * MAX_NUMEL; i++)
                ob->per_head[i] =
                    i < 8 ? pick_float(r, head_vals, COUNT(head_vals)) : head_vals[i % 5];
            if (m & 1) ob->o.alibi_slopes = ob->per_head;
            if (m & 2) ob->o.sinks = ob->per_head + MAX_NUMEL;
        }
        if ((m & 4) && B >= 1 && B <= MAX_NUMEL) { /* exactly B entries */
            ob->q_offset = malloc((size_t)B * sizeof(int64_t));
            for (int64_t b = 0; b < B; b++)
                ob->q_offset[b] = offsets[u8(r) % COUNT(offsets)];
            ob->o.q_offset = ob->q_offset;
        }
    }
    return 1;
}

/* ---- the calls ------------------------------------------------------------ */

static int64_t b0(const attn_view *v) {
    return v && v->ndim >= 1 ? v->shape[0] : 0;
}

/* attn_kv_append_rope into a small cache (heap, through the fuzz
 * allocator, destroyed before returning): k, v from IN, fuzzed block table,
 * starts, counts and rope parameters. Writes nothing in IN or OUT. */
static int fuzz_kv_rope(reader *r, const dims *D, attn_status *st) {
    attn_view k, v;
    if (!view(r, D, 4, IN, &k) || !view(r, D, 4, IN, &v)) return -1;
    const int64_t hkv = D->dim[u8(r) % 8], d = D->dim[u8(r) % 8], nb = 1 + u8(r) % 4;
    attn_kv_cache *c = NULL;
    attn_status s = attn_kv_create(nb, 16, hkv, d, 0, (attn_kv_dtype)(u8(r) % 3), &c);
    if (s != ATTN_OK) {
        *st = s;
        return 0;
    }
    enum { MB = 4 };
    int32_t table[2 * MB];
    for (int i = 0; i < 2 * MB; i++)
        table[i] = (int32_t)(u8(r) % 6) - 1; /* -1..4: some outside 0..nb-1 */
    static const int64_t sv[] = {0, 1, 15, 16, 40, -1, INT64_MAX, INT64_MIN};
    int64_t starts[2] = {sv[u8(r) % COUNT(sv)], sv[u8(r) % COUNT(sv)]};
    int64_t counts[2] = {(int64_t)(u8(r) % 12) - 1, (int64_t)(u8(r) % 12) - 1};
    attn_rope_params p = attn_rope_params_default();
    p.style = (attn_rope_style)enums[u8(r) % COUNT(enums)];
    p.rotary_dim = (int64_t)(int8_t)u8(r) % 10;
    /* starts and counts hold 2 values: batches of more are dropped. */
    int64_t lo, hi, numel;
    if (looks_valid(&k, &lo, &hi, &numel) && k.shape[0] > 2) {
        attn_kv_destroy(c);
        return -1;
    }
    *st = attn_kv_append_rope(u8(r) == 7 ? NULL : c, table, MB, starts, u8(r) & 1 ? counts : NULL,
                              maybe(r, &k), maybe(r, &v), u8(r) == 9 ? NULL : &p);
    attn_kv_destroy(c);
    return 0;
}

/* attn_rope with fuzzed params and positions; 1 if in place, -1 to drop. */
static int fuzz_rope(reader *r, const dims *D, attn_status *st) {
    if (u8(r) >= 208) return fuzz_kv_rope(r, D, st);
    attn_view x, y;
    const int rank = 2 + u8(r) % 3;
    if (!view(r, D, rank, IN, &x) || !view(r, D, rank, OUT, &y)) return -1;
    const int in_place = u8(r) < 40;
    static const int64_t pst[] = {0, 1, 2, -1, 9, 1ll << 40, INT64_MIN, INT64_MAX, 3, 0};
    int64_t ps[3];
    for (int i = 0; i < 3; i++)
        ps[i] = pst[u8(r) % COUNT(pst)];
    const int use_ps = u8(r) & 1;
    /* The positions block: exactly the span reached over x's (padded) shape. */
    int64_t lo = 0, hi = 0, need = 1;
    int64_t xl, xh, xn;
    if (looks_valid(&x, &xl, &xh, &xn)) {
        int64_t sh[3] = {1, 1, 1};
        for (int i = 0; i < x.ndim - 1 && i < 3; i++)
            sh[3 - (x.ndim - 1) + i] = x.shape[i];
        const int64_t *s = use_ps ? ps : (const int64_t[]){0, 0, 1};
        int over = 0;
        for (int i = 0; i < 3; i++) {
            int64_t t;
            if (s[i] == INT64_MIN || __builtin_mul_overflow(sh[i] - 1, s[i], &t) ||
                __builtin_add_overflow(s[i] < 0 ? lo : hi, t, s[i] < 0 ? &lo : &hi))
                over = 1;
        }
        int64_t span;
        if (!over && __builtin_sub_overflow(hi, lo, &span)) over = 1; /* the library rejects */
        if (!over && span >= 4096) return -1; /* valid but larger than we place */
        if (!over) need = span + 1;
    }
    int64_t *pos = malloc((size_t)need * sizeof(int64_t));
    static const int64_t pv[] = {0, 1, 7, 1000000, -5, INT64_MAX, INT64_MIN, 4095};
    for (int64_t i = 0; i < need; i++)
        pos[i] = pv[(i + u8(r)) % COUNT(pv)];
    attn_rope_params p = attn_rope_params_default();
    p.style = (attn_rope_style)enums[u8(r) % COUNT(enums)];
    p.rotary_dim = (int64_t)(int8_t)u8(r) % 12;
    static const double bases[] = {10000.0, 1.0, 0.5, NAN, INFINITY, 1e300, 2.0};
    p.base = bases[u8(r) % COUNT(bases)];
    static const double ms[] = {1.0, 0.0, -2.0, NAN, INFINITY, 1e300};
    p.mscale = ms[u8(r) % COUNT(ms)];
    double inv[8];
    for (int i = 0; i < 8; i++)
        inv[i] = (double[]){1.0, 0.1, 1e-4, NAN, 1e300, -1.0}[u8(r) % 6];
    /* A table only when it holds r/2 values for every r the call can accept. */
    if ((u8(r) & 3) == 0 && x.ndim >= 1 && x.ndim <= 4 && x.shape[x.ndim - 1] <= 16 &&
        p.rotary_dim >= 0 && p.rotary_dim <= 16)
        p.inv_freq = inv;
    *st = attn_rope(maybe(r, &x), u8(r) == 3 ? NULL : pos - lo, use_ps ? ps : NULL,
                    in_place ? &x : maybe(r, &y), u8(r) == 5 ? NULL : &p);
    free(pos);
    return in_place;
}

/* @return 1 if IN may legitimately change (an in-place call), -1 to drop. */
static int call(reader *r, const dims *D, attn_status *st) {
    attn_view a, b, c, d, e, f, g, h;
    /* The options' arrays live until the next call, which frees them first:
     * every early return (an input too short for its views) stays leak-free. */
    static opts_box ob;
    free(ob.key_lengths);
    free(ob.q_offset);
    free(ob.per_head);
    memset(&ob, 0, sizeof ob);
    int in_place = 0;
    /* Selectors below 240 keep their historical meaning (0..11, the seeds and
     * regressions); 240.. reach the decoder entry points (12..15) and the
     * fold (16: 244, 249, 254; the decoder seeds use 240..243). */
    const uint8_t sel = u8(r), which = sel < 240 ? sel % 12 : 12 + (sel - 240) % 5;
    api_last_call = which;
    switch (which) {
    case 0: { /* softmax, maybe in place */
        const int rank = 1 + u8(r) % 4;
        if (!view(r, D, rank, IN, &a) || !view(r, D, rank, OUT, &b)) return -1;
        in_place = u8(r) < 40;
        *st = attn_softmax(maybe(r, &a), in_place ? &a : maybe(r, &b));
        break;
    }
    case 1: { /* sdpa */
        if (!view(r, D, 4, IN, &a) || !view(r, D, 4, IN, &b) || !view(r, D, 4, IN, &c) ||
            !view(r, D, 4, OUT, &d) || !options(r, D, b0(&a), &ob))
            return -1;
        *st = attn_sdpa(maybe(r, &a), maybe(r, &b), maybe(r, &c), maybe(r, &d),
                        u8(r) == 1 ? NULL : &ob.o);
        /* Then, if an extra byte says so (older inputs end before it), the
         * backward on the same views and options: out (d) is an input now;
         * what the forward wrote is the new reference for "untouched". */
        if (u8(r) == 0xB7) {
            attn_view dv, dm;
            if (!view(r, D, 3, IN, &e) || !view(r, D, 4, IN, &f) || !view(r, D, 4, OUT, &g) ||
                !view(r, D, 4, OUT, &h) || !view(r, D, 4, OUT, &dv))
                return -1;
            memcpy(OUT_SAVE, OUT, BUF_FLOATS * sizeof(float));
            attn_backward_extras x = attn_backward_extras_default();
            if ((u8(r) & 1) && view(r, D, 4, OUT, &dm)) x.dmask = maybe(r, &dm);
            *st =
                attn_sdpa_backward(maybe(r, &a), maybe(r, &b), maybe(r, &c), maybe(r, &d),
                                   maybe(r, &e), maybe(r, &f), maybe(r, &g), maybe(r, &h),
                                   maybe(r, &dv), u8(r) == 1 ? NULL : &ob.o, u8(r) & 1 ? &x : NULL);
        }
        break;
    }
    case 2: { /* merge */
        attn_view po[4], pl[4];
        int n = (int)(u8(r) % 6) - 1; /* -1..4 */
        for (int p = 0; p < 4; p++)
            if (!view(r, D, 4, IN, &po[p]) || !view(r, D, 3, IN, &pl[p])) return -1;
        if (!view(r, D, 4, OUT, &a) || !view(r, D, 3, OUT, &b)) return -1;
        const uint8_t alias = u8(r);
        if (alias == 3) { /* out aliases part_out[0] exactly: documented as allowed */
            a = po[0];
            in_place = 1;
        }
        *st = attn_merge(u8(r) == 9 ? NULL : po, u8(r) == 9 ? NULL : pl, n, maybe(r, &a),
                         u8(r) & 1 ? &b : NULL);
        break;
    }
    case 3: { /* linear */
        if (!view(r, D, 3, IN, &a) || !view(r, D, 2, IN, &b) || !view(r, D, 1, IN, &c) ||
            !view(r, D, 3, OUT, &d))
            return -1;
        *st = attn_linear(maybe(r, &a), maybe(r, &b), u8(r) & 1 ? &c : NULL, maybe(r, &d),
                          threads[u8(r) % COUNT(threads)]);
        /* Then, if an extra byte says so (older inputs end before it), the
         * packed product: b packed into e (its proper shape, contiguous, in
         * OUT, unless the next byte asks for a fuzzed view), then
         * attn_linear_packed from e on new x and y views; what the earlier
         * calls wrote is the new reference for "untouched". */
        if (u8(r) == 0xB8) {
            if (!view(r, D, 2, IN, &f) || !view(r, D, 2, OUT, &g)) return -1;
            if (u8(r) < 200 && b.ndim == 2 && b.shape[0] > 0 && b.shape[1] > 0 &&
                b.shape[0] < 4096 && b.shape[1] < 4096) {
                const int64_t np = (b.shape[1] + ATTN_PANEL - 1) / ATTN_PANEL;
                e = (attn_view){
                    OUT, 3, {np, b.shape[0], ATTN_PANEL}, {b.shape[0] * ATTN_PANEL, ATTN_PANEL, 1}};
                if (np * b.shape[0] * ATTN_PANEL > BUF_FLOATS) return -1;
            } else if (!view(r, D, 3, OUT, &e))
                return -1;
            memcpy(OUT_SAVE, OUT, BUF_FLOATS * sizeof(float));
            *st = attn_weight_pack(maybe(r, &b), maybe(r, &e));
            if (*st == ATTN_OK) {
                memcpy(OUT_SAVE, OUT, BUF_FLOATS * sizeof(float));
                *st = attn_linear_packed(maybe(r, &f), &e, u8(r) & 1 ? &c : NULL, maybe(r, &g),
                                         threads[u8(r) % COUNT(threads)]);
            }
        }
        break;
    }
    case 4: { /* layer norm, maybe in place */
        if (!view(r, D, 3, IN, &a) || !view(r, D, 1, IN, &b) || !view(r, D, 1, IN, &c) ||
            !view(r, D, 3, OUT, &d))
            return -1;
        in_place = u8(r) < 40;
        const float eps = pick_float(r, (const float[]){1e-5f, 0.0f, -1.0f, NAN, INFINITY}, 5);
        *st = attn_layer_norm(maybe(r, &a), u8(r) & 1 ? &b : NULL, u8(r) & 1 ? &c : NULL, eps,
                              in_place ? &a : maybe(r, &d));
        break;
    }
    case 5: /* split_qkv, then attention on the parts */
    case 11: {
        if (!view(r, D, 3, IN, &a) || !view(r, D, 4, OUT, &e)) return -1;
        const int64_t nh = heads[u8(r) % COUNT(heads)];
        attn_view q, k, v;
        const int qnull = u8(r) == 2;
        *st = attn_split_qkv(maybe(r, &a), nh, qnull ? NULL : &q, &k, &v);
        if (*st == ATTN_OK && qnull) {
            fprintf(stderr, "attn_split_qkv accepted q = NULL\n");
            abort();
        }
        if (*st == ATTN_OK) {
            if (!within(&q, &a) || !within(&k, &a) || !within(&v, &a)) {
                fprintf(stderr, "attn_split_qkv produced a view outside qkv\n");
                abort();
            }
            if (which == 11) {
                if (!options(r, D, q.shape[0], &ob)) return -1;
                *st = attn_sdpa(&q, &k, &v, &e, &ob.o);
            }
        }
        break;
    }
    case 6: { /* from_fused, then the module */
        attn_mha_params p;
        if (!view(r, D, 2, IN, &a) || !view(r, D, 1, IN, &b) || !view(r, D, 2, IN, &c) ||
            !view(r, D, 1, IN, &d) || !view(r, D, 3, IN, &e) || !view(r, D, 3, IN, &f) ||
            !view(r, D, 3, OUT, &g))
            return -1;
        const int64_t nh = heads[u8(r) % COUNT(heads)];
        const uint8_t fl = u8(r);
        const int pnull = u8(r) == 4;
        *st = attn_mha_from_fused(maybe(r, &a), fl & 1 ? &b : NULL, nh, fl & 2 ? &c : NULL,
                                  fl & 4 ? &d : NULL, pnull ? NULL : &p);
        if (*st == ATTN_OK && pnull) {
            fprintf(stderr, "attn_mha_from_fused accepted p = NULL\n");
            abort();
        }
        if (*st == ATTN_OK) {
            if (!within(&p.Wq, &a) || !within(&p.Wk, &a) || !within(&p.Wv, &a) ||
                ((fl & 1) && (!within(&p.bq, &b) || !within(&p.bk, &b) || !within(&p.bv, &b)))) {
                fprintf(stderr, "attn_mha_from_fused produced a view outside Wqkv/bqkv\n");
                abort();
            }
            if (!options(r, D, b0(&e), &ob)) return -1;
            *st = attn_mha(&p, maybe(r, &e), u8(r) & 1 ? &f : NULL, maybe(r, &g),
                           u8(r) == 1 ? NULL : &ob.o);
        }
        break;
    }
    case 7: { /* mha with stacked per-head weights */
        attn_mha_params p;
        memset(&p, 0, sizeof p);
        p.num_heads = heads[u8(r) % COUNT(heads)];
        if (!view(r, D, 3, IN, &p.Wq) || !view(r, D, 3, IN, &p.Wk) || !view(r, D, 3, IN, &p.Wv) ||
            !view(r, D, 2, IN, &p.bq) || !view(r, D, 2, IN, &p.bk) || !view(r, D, 2, IN, &p.bv) ||
            !view(r, D, 2, IN, &p.Wo) || !view(r, D, 1, IN, &p.bo) || !view(r, D, 3, IN, &a) ||
            !view(r, D, 3, IN, &b) || !view(r, D, 3, OUT, &c) || !options(r, D, b0(&a), &ob))
            return -1;
        const uint8_t fl = u8(r);
        if (!(fl & 1)) p.bq.data = NULL;
        if (!(fl & 2)) p.bk.data = NULL;
        if (!(fl & 4)) p.bv.data = NULL;
        if (!(fl & 8)) p.Wo.data = NULL;
        if (!(fl & 16)) p.bo.data = NULL;
        *st = attn_mha(fl == 0xff ? NULL : &p, maybe(r, &a), fl & 32 ? &b : NULL, maybe(r, &c),
                       fl & 64 ? &ob.o : NULL);
        break;
    }
    case 8:
    case 9: { /* single-head modules */
        if (!view(r, D, 3, IN, &a) || !view(r, D, 3, IN, &b) || !view(r, D, 2, IN, &c) ||
            !view(r, D, 2, IN, &d) || !view(r, D, 2, IN, &e) || !view(r, D, 3, OUT, &f) ||
            !options(r, D, b0(&a), &ob))
            return -1;
        if (which == 8)
            *st = attn_self_attention(maybe(r, &a), maybe(r, &c), maybe(r, &d), maybe(r, &e),
                                      maybe(r, &f), u8(r) & 1 ? &ob.o : NULL);
        else
            *st = attn_cross_attention(maybe(r, &a), maybe(r, &b), maybe(r, &c), maybe(r, &d),
                                       maybe(r, &e), maybe(r, &f), u8(r) & 1 ? &ob.o : NULL);
        break;
    }
    case 16: { /* the resumable fold: one of its calls, the state's views into OUT */
        attn_fold fo;
        if (!view(r, D, 4, IN, &a) || !view(r, D, 4, IN, &b) || !view(r, D, 4, IN, &c) ||
            !view(r, D, 4, OUT, &d) || !view(r, D, 3, OUT, &e) || !view(r, D, 3, OUT, &fo.max) ||
            !view(r, D, 3, OUT, &fo.sum) || !view(r, D, 3, OUT, &fo.shift) ||
            !view(r, D, 4, OUT, &fo.acc) || !options(r, D, b0(&a), &ob))
            return -1;
        fo.nkv = u8(r) & 1 ? b.shape[2] : hostile_size[u8(r) % COUNT(hostile_size)];
        const int64_t off = u8(r) & 1 ? (int64_t)(int8_t)u8(r) * ATTN_KEY_CHUNK : (int64_t)u64(r);
        const uint8_t step = u8(r) % 3;
        if (step == 0)
            *st = attn_fold_init(u8(r) == 7 ? NULL : &fo, maybe(r, &a), fo.nkv, &ob.o);
        else if (step == 1)
            *st = attn_fold_step(&fo, maybe(r, &a), maybe(r, &b), maybe(r, &c), off,
                                 u8(r) == 1 ? NULL : &ob.o);
        else
            *st = attn_fold_finish(&fo, maybe(r, &d), u8(r) & 1 ? &e : NULL, &ob.o);
        (void)attn_fold_floats((int64_t)u64(r), (int64_t)u64(r), (int64_t)u64(r), (int64_t)u64(r));
        break;
    }
    case 10: { /* pure helpers: never crash, never read beyond ndim */
        int64_t shape[ATTN_MAX_NDIM];
        for (int i = 0; i < ATTN_MAX_NDIM; i++)
            shape[i] = hostile_size[u8(r) % COUNT(hostile_size)];
        const int nd = (int)(int8_t)u8(r);
        int64_t *sh = malloc(sizeof(int64_t) * (size_t)(nd > 0 && nd < 4 ? nd : 4));
        memcpy(sh, shape, sizeof(int64_t) * (size_t)(nd > 0 && nd < 4 ? nd : 4));
        h = attn_view_contiguous(IN, nd, u8(r) & 1 ? sh : NULL);
        free(sh);
        h = attn_view_swap(h, (int)(int8_t)u8(r), (int)(int8_t)u8(r));
        (void)attn_status_string((attn_status)(int)u32(r));
        (void)attn_isa_name((attn_isa)(int)u32(r));
        (void)attn_isa_supported((attn_isa)(int)u32(r));
        float p = pick_float(r, probs, COUNT(probs));
        (void)attn_dropout_keep(u64(r), (int64_t)u64(r), (int64_t)u64(r), (int64_t)u64(r),
                                (int64_t)u64(r), p);
        (void)attn_version();
        (void)attn_build_info();
        *st = ATTN_OK;
        break;
    }
    case 12: /* rope, maybe in place */
        in_place = fuzz_rope(r, D, st);
        if (in_place < 0) return -1;
        break;
    case 13: { /* rms norm, maybe in place */
        if (!view(r, D, 3, IN, &a) || !view(r, D, 1, IN, &b) || !view(r, D, 3, OUT, &d)) return -1;
        in_place = u8(r) < 40;
        const float eps = pick_float(r, (const float[]){1e-6f, 0.0f, -1.0f, NAN, INFINITY}, 5);
        *st = attn_rms_norm(maybe(r, &a), u8(r) & 1 ? &b : NULL, eps, in_place ? &a : maybe(r, &d));
        break;
    }
    case 14: { /* split_qkv_gqa then sdpa; from_fused_gqa then the module */
        if (!view(r, D, 3, IN, &a) || !view(r, D, 4, OUT, &e) || !view(r, D, 1, IN, &b) ||
            !view(r, D, 3, IN, &c) || !view(r, D, 3, OUT, &f) || !view(r, D, 2, IN, &g))
            return -1;
        const int64_t nh = heads[u8(r) % COUNT(heads)], nkv = heads[u8(r) % COUNT(heads)];
        const int qnull = u8(r) == 2;
        attn_view q, k, v;
        attn_mha_params p;
        if (u8(r) & 1) {
            *st = attn_split_qkv_gqa(maybe(r, &a), nh, nkv, qnull ? NULL : &q, &k, &v);
            if (*st == ATTN_OK &&
                (qnull || !within(&q, &a) || !within(&k, &a) || !within(&v, &a))) {
                fprintf(stderr, "attn_split_qkv_gqa: q = NULL accepted or a view outside qkv\n");
                abort();
            }
            if (*st == ATTN_OK) {
                if (!options(r, D, q.shape[0], &ob)) return -1;
                *st = attn_sdpa(&q, &k, &v, &e, &ob.o);
            }
        } else {
            const uint8_t fl = u8(r); /* Wqkv (D, C) is g */
            *st = attn_mha_from_fused_gqa(maybe(r, &g), fl & 1 ? &b : NULL, nh, nkv, NULL, NULL,
                                          qnull ? NULL : &p);
            if (*st == ATTN_OK &&
                (qnull || !within(&p.Wq, &g) || !within(&p.Wk, &g) || !within(&p.Wv, &g) ||
                 ((fl & 1) && (!within(&p.bq, &b) || !within(&p.bk, &b) || !within(&p.bv, &b))))) {
                fprintf(stderr, "attn_mha_from_fused_gqa: p = NULL accepted or a view outside\n");
                abort();
            }
            if (*st == ATTN_OK) {
                if (!options(r, D, b0(&c), &ob)) return -1;
                *st = attn_mha(&p, maybe(r, &c), u8(r) & 1 ? &c : NULL, maybe(r, &f), &ob.o);
            }
        }
        break;
    }
    case 15: { /* mha per-head with num_kv_heads; the inv_freq helpers */
        attn_mha_params p;
        memset(&p, 0, sizeof p);
        p.num_heads = heads[u8(r) % COUNT(heads)];
        p.num_kv_heads = heads[u8(r) % COUNT(heads)];
        if (!view(r, D, 3, IN, &p.Wq) || !view(r, D, 3, IN, &p.Wk) || !view(r, D, 3, IN, &p.Wv) ||
            !view(r, D, 2, IN, &p.bk) || !view(r, D, 3, IN, &a) || !view(r, D, 3, OUT, &c) ||
            !options(r, D, b0(&a), &ob))
            return -1;
        if (!(u8(r) & 1)) p.bk.data = NULL;
        *st = attn_mha(&p, maybe(r, &a), NULL, maybe(r, &c), &ob.o);
        /* Tables (their own heap block, not IN or OUT) into a heap block of exactly r/2 doubles. */
        const int64_t rd = (int64_t)(u8(r) % 20) - 2;
        const double fs[] = {1.0, 8.0, 0.5, 0.0, -1.0, NAN, INFINITY, 1e300, 4.0, 32.0};
        double *t = malloc((size_t)(rd / 2 > 0 ? rd / 2 : 1) * sizeof(double)), ms = 0;
        const double base = fs[u8(r) % COUNT(fs)] * 10000.0, f1 = fs[u8(r) % COUNT(fs)],
                     f2 = fs[u8(r) % COUNT(fs)], f3 = fs[u8(r) % COUNT(fs)];
        const int64_t L = hostile_size[u8(r) % COUNT(hostile_size)];
        attn_status s2;
        switch (u8(r) % 5) {
        case 0:
            s2 = attn_rope_inv_freq(rd, base, t);
            break;
        case 1:
            s2 = attn_rope_inv_freq_linear(rd, base, f1, t);
            break;
        case 2:
            s2 = attn_rope_inv_freq_ntk(rd, base, f1, t);
            break;
        case 3:
            s2 = attn_rope_inv_freq_llama3(rd, base, f1, f2, f3, L, t);
            break;
        default:
            s2 = attn_rope_inv_freq_yarn(rd, base, f1, L, f2, f3, t, u8(r) & 1 ? &ms : NULL);
            break;
        }
        if (s2 == ATTN_OK)
            for (int64_t i = 0; i < rd / 2; i++)
                if (!isfinite(t[i])) {
                    fprintf(stderr, "an inv_freq helper succeeded with t[%lld]=%g\n", (long long)i,
                            t[i]);
                    abort();
                }
        free(t);
        break;
    }
    }
    return in_place;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    IN = malloc(BUF_FLOATS * sizeof(float));
    OUT = malloc(BUF_FLOATS * sizeof(float));
    IN_SAVE = malloc(BUF_FLOATS * sizeof(float));
    OUT_SAVE = malloc(BUF_FLOATS * sizeof(float));
    static const attn_allocator a = {fz_alloc, fz_free, NULL};
    attn_set_allocator(&a);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    reader r = {data, size, 0};
    dims D;
    for (int i = 0; i < 8; i++) {
        uint8_t b = u8(&r);
        D.dim[i] = 1 + b % 9; /* 1..9 */
        if (b >= 250) D.dim[i] = 16 + b % 50;
    }
    /* Values: small numbers, or NaN/Inf sprinkled in. */
    const uint8_t vals = u8(&r);
    for (int i = 0; i < BUF_FLOATS; i++) {
        IN[i] = (float)((i * 37) % 17 - 8) * 0.125f;
        if (vals > 200 && i % (vals - 190) == 0) IN[i] = (i & 1) ? NAN : -INFINITY;
        OUT[i] = (float)i; /* distinct bits everywhere */
    }
    const attn_isa isas[4] = {ATTN_ISA_AUTO, ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    const attn_isa isa = isas[u8(&r) % 4];
    if (attn_isa_supported(isa)) attn_set_isa(isa);
    const uint8_t fb = u8(&r);
    memcpy(IN_SAVE, IN, BUF_FLOATS * sizeof(float));
    memcpy(OUT_SAVE, OUT, BUF_FLOATS * sizeof(float));
    atomic_store(&calls, 0);
    atomic_store(&fail_at, fb < 192 ? 0 : fb % 8 + 1);
    attn_status st = ATTN_OK;
    const int in_place = call(&r, &D, &st);
    atomic_store(&fail_at, 0);
    if (in_place < 0) return 0;
    if ((int)st >= 0 && (int)st <= ATTN_ERR_ISA) api_hist[api_last_call][st]++;

    if ((int)st < 0 || (int)st > ATTN_ERR_ISA) {
        fprintf(stderr, "status %d is not an attn_status\n", (int)st);
        abort();
    }
    if (atomic_load(&live) != 0) {
        fprintf(stderr, "%ld scratch blocks left live after a call (status %s)\n",
                atomic_load(&live), attn_status_string(st));
        abort();
    }
    if (st != ATTN_OK) {
        if (attn_last_error()[0] == '\0') {
            fprintf(stderr, "failure %s without a message\n", attn_status_string(st));
            abort();
        }
        if (memcmp(OUT, OUT_SAVE, BUF_FLOATS * sizeof(float)) != 0 ||
            memcmp(IN, IN_SAVE, BUF_FLOATS * sizeof(float)) != 0) {
            fprintf(stderr, "failed call (%s: %s) wrote memory\n", attn_status_string(st),
                    attn_last_error());
            abort();
        }
    } else if (!in_place && memcmp(IN, IN_SAVE, BUF_FLOATS * sizeof(float)) != 0) {
        fprintf(stderr, "a successful call wrote into an input\n");
        abort();
    }
    return 0;
}
