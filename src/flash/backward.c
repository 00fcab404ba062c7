/* flash/backward.c - the tiled backward of flash/flash.c (see attn.h,
 * attn_sdpa_backward), with the kernels of the forward.
 *
 * Dimension letters as in attn.h; in this file also
 *   G    query heads per kv head (H / Hkv)
 *   r    a query row of a tile, c a key of a block (key j = j0 + c)
 *
 * The forward (flash.c) per tile and key block computes
 *   st = Q K^T; st = st*scale (+mask); p = exp(st - m); l += sum p; o += p V
 * and finally lse = m + log l. The backward recomputes P from lse instead of
 * keeping it, and runs in passes so that every output element has exactly
 * one owner (one thread, a fixed order of additions): the bits do not depend
 * on the thread count.
 *   pass 0  D[b,h,i] = sum_f dout[b,h,i,f] out[b,h,i,f]
 *   pass 1  per (b, kv head g, block of KB keys), keys across the lanes,
 *           over the query rows of the G heads in blocks of QB, ascending:
 *             S  = Q K^T            (kernel score, kt = K^T)    (QB, ldc)
 *             P  = exp(score + mask - lse) on visible pairs, else 0,
 *                  score = S*scale, or with softcap/ALiBi the forward's
 *                  modify(S*scale) (scalar_step); visible: attn__key_range
 *                  (key length, causal rule, window, offsets) and the mask
 *             dP = dO V^T           (kernel score, vt = V^T)
 *             dV += (P Z)^T dO      (kernel pv)     // forward: o += p V
 *             dS = P (Z dP - D)                      // forward: the softmax
 *             dS *= 1 - tanh^2                       // forward: the softcap
 *             dK += dS^T Q          (kernel pv)     // forward: st = Q K^T
 *           dk = scale dK, dv = dV
 *   pass 2  per (b, h, block of QB queries), rows across the lanes, over the
 *           key blocks ascending: S, P, dP, dS again, dQ += dS K (kernel
 *           pv); dq = scale dQ
 *   pass 3  (dmask only) per dmask row, the rows that read it in ascending
 *           (b, h, i): dS again, summed into the row in double.
 *   dsinks  per row -exp(sinks[h] - lse) D in pass 0, summed per head in
 *           ascending (b, i).
 * Seven products instead of the five a single pass would need (design.md's
 * first schedule): the single pass would accumulate dq partials per group of
 * key blocks, (Nkv / group) x Nq x d floats, which for L1 (N = 65536) is
 * gigabytes, or a group so large that few threads share the work. Scratch
 * here is O(threads x tile) plus B*H*Nq floats for D.
 * Hidden pairs are never multiplied by zero: P and dS are selected (not
 * multiplied) to 0, and where a block has hidden pairs and a non-finite
 * operand the product skips them (product_skip), as the forward's pv_skip. */
#include "sdpa_backward.h"

#include "dropout_hash.h"
#include "kernels/dropout.h"
#include "kernels/kernels.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum {
    KB = 64, /* keys per block (pass 1 owner, pass 2 step) */
    QB = 64, /* query rows per block (pass 2 owner, pass 1 step) */
    LANES = ATTN_LANES,
};

/* Head sizes above this run the reference backward. */
#define BWD_MAX_HEAD 1024

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

static int64_t round_up(int64_t a, int64_t m) {
    return (a + m - 1) / m * m;
}

struct elem;

typedef struct bplan {
    const attn__bwd_problem *BP;
    const attn__sdpa_problem *P;
    const attn__kernels *kr;
    int64_t G, ldd, ldv;               /* ldd, ldv: d, dv rounded up to LANES */
    const float *D;                    /* (B, H, Nq) pass 0's result */
    uint32_t drop_thr;                 /* dropout threshold, when p > 0 */
    float drop_scale;                  /* 1 / (1 - p) */
    void (*elem)(const struct elem *); /* the elementwise steps for the ISA */
} bplan;

/* One thread's scratch (floats unless stated). */
typedef struct bstate {
    float *at;          /* (max(d, dv), 64)  K^T (pass 1) or Q^T (pass 2) */
    float *bt;          /* (dv, 64)          V^T (pass 1) or dO^T (pass 2) */
    float *xp;          /* (64, d)           packed rows: Q (pass 1) or K (pass 2) */
    float *yp;          /* (64, dv)          packed rows: dO (pass 1) or V (pass 2) */
    float *S, *dP;      /* (64, 64)          scores -> P Z, dP -> dS */
    float *acc1, *acc2; /* (64, ldd), (64, ldv) accumulators */
    float *ones;        /* (64)              1.0f: the kernels' alpha */
    float *lse, *D;     /* (64)              per query row */
    float *Z;           /* (64, 64)          dropout factors */
    float *T;           /* (64, 64)          softcap derivative */
    int32_t *lo, *hi;   /* (64)              visible keys [lo, hi) of the block per row */
    uint64_t *drow;     /* (64)              dropout hash of each row */
} bstate;

/* A set of query rows of one (b, h), consecutive queries i0 .. i0 + nr - 1. */
typedef struct qrows {
    int64_t b, h, i0, nr;
} qrows;

static int64_t state_floats(const bplan *pl) {
    const int64_t dm = pl->P->d > pl->P->dv ? pl->P->d : pl->P->dv;
    return round_up(dm * 64, LANES) + round_up(pl->P->dv * 64, LANES) +
           round_up(64 * pl->P->d, LANES) + round_up(64 * pl->P->dv, LANES) + 2 * 64 * 64 +
           64 * pl->ldd + 64 * pl->ldv + 3 * 64 + 2 * 64 * 64 + 2 * 64 + 2 * 64;
}

static void state_carve(const bplan *pl, float *p, bstate *w) {
    const int64_t dm = pl->P->d > pl->P->dv ? pl->P->d : pl->P->dv;
    w->at = p, p += round_up(dm * 64, LANES);
    w->bt = p, p += round_up(pl->P->dv * 64, LANES);
    w->xp = p, p += round_up(64 * pl->P->d, LANES);
    w->yp = p, p += round_up(64 * pl->P->dv, LANES);
    w->S = p, p += 64 * 64;
    w->dP = p, p += 64 * 64;
    w->acc1 = p, p += 64 * pl->ldd;
    w->acc2 = p, p += 64 * pl->ldv;
    w->ones = p, p += 64;
    w->lse = p, p += 64;
    w->D = p, p += 64;
    w->Z = p, p += 64 * 64;
    w->T = p, p += 64 * 64;
    w->lo = (int32_t *)p, p += 64;
    w->hi = (int32_t *)p, p += 64;
    w->drow = (uint64_t *)p, p += 2 * 64;
    for (int r = 0; r < 64; r++)
        w->ones[r] = 1.0f;
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Key ends of rows R and their visible keys [lo, hi) within [j0, j0 + nk).
 * @return whether any row sees a key of the block. */
static bool rows_vis(const bplan *pl, const qrows *R, bstate *w, int64_t j0, int64_t nk) {
    bool any = false;
    for (int64_t r = 0; r < R->nr; r++) {
        int64_t lo, hi;
        attn__key_range(pl->P, R->b, R->i0 + r, &lo, &hi); /* key length, causal, window */
        lo -= j0;
        hi -= j0;
        lo = lo < 0 ? 0 : min64(lo, nk);
        hi = hi < 0 ? 0 : min64(hi, nk);
        if (hi < lo) hi = lo;
        w->lo[r] = (int32_t)lo;
        w->hi[r] = (int32_t)hi;
        any |= hi > lo;
    }
    for (int64_t r = R->nr; r < 64; r++) /* padding lanes see nothing */
        w->lo[r] = w->hi[r] = 0;
    return any;
}

/* lse, D and the dropout hash of rows R; a row whose lse is -inf saw no key
 * in the forward and is hidden here (hi = 0). */
static void rows_load(const bplan *pl, const qrows *R, bstate *w) {
    const attn__sdpa_problem *P = pl->P;
    for (int64_t r = 0; r < R->nr; r++) {
        const int64_t i = R->i0 + r;
        w->lse[r] = *attn__at3(&pl->BP->lse, R->b, R->h, i);
        w->D[r] = pl->D[(R->b * P->H + R->h) * P->Nq + i];
        if (w->lse[r] == -INFINITY) w->hi[r] = 0;
        if (P->dropout_p > 0.0f) w->drow[r] = attn__dropout_row(P->dropout_seed, R->b, R->h, i);
    }
    for (int64_t r = R->nr; r < 64; r++) {
        w->lse[r] = w->D[r] = 0.0f;
        w->drow[r] = 0;
    }
}

/* Rows (r0 .. r0+n-1 of a (Nq|Nkv, m) slice with strides (s2, s3)) as a
 * contiguous-last-dimension pointer and row stride, packing into dst when
 * needed. */
static const float *rows_ptr(const float *src, int64_t s2, int64_t s3, int64_t n, int64_t m,
                             float *dst, int64_t *rs) {
    if (s3 == 1) {
        *rs = s2;
        return src;
    }
    for (int64_t c = 0; c < n; c++)
        for (int64_t e = 0; e < m; e++)
            dst[c * m + e] = src[c * s2 + e * s3];
    *rs = m;
    return dst;
}

/* Transposed tile (m, ld) of n rows (r0.. of a slice with strides s2, s3),
 * lanes n..ld-1 zero. */
static void load_t(float *dst, int64_t ld, const float *src, int64_t s2, int64_t s3, int64_t n,
                   int64_t m) {
    for (int64_t e = 0; e < m; e++) {
        float *de = dst + e * ld;
        for (int64_t c = 0; c < n; c++)
            de[c] = src[c * s2 + e * s3];
        for (int64_t c = n; c < ld; c++)
            de[c] = 0.0f;
    }
}

/* ---- the elementwise steps ----------------------------------------------
 * Plain loops the compiler vectorises, compiled once per ISA (the wrappers
 * below): the same IEEE operations per element at any vector width, as
 * -ffp-contract=off keeps multiply and add apart. Two layouts of a block:
 *   rows across lanes (pass 2, 3): pair (r, c) at c*ldr + r, nout = nk keys
 *   keys across lanes (pass 1):    pair (r, c) at r*ldc + c, nout = nr rows */
typedef struct elem {
    int step; /* 0: S <- S*scale - lse on [lo, hi), else -inf;  1: dS and P Z */
    bool keys_in_lanes;
    float *S, *dP;
    const float *Z; /* dropout factors (same layout) or NULL */
    const float *lse, *D;
    const int32_t *lo, *hi;
    int64_t nout, nin;
    float scale;
} elem;

__attribute__((always_inline)) static inline void elem_body(const elem *a) {
    const int64_t nin = a->nin, nout = a->nout;
    float *restrict S = a->S, *restrict dP = a->dP;
    const float *restrict Z = a->Z, *restrict lse = a->lse, *restrict Dr = a->D;
    const int32_t *restrict lo = a->lo, *restrict hi = a->hi;
    const float scale = a->scale;
    if (a->step == 0 && !a->keys_in_lanes) {
        for (int64_t c = 0; c < nout; c++) {
            float *restrict sc = S + c * nin;
            for (int64_t r = 0; r < nin; r++)
                sc[r] = c >= lo[r] && c < hi[r] ? sc[r] * scale - lse[r] : -INFINITY;
        }
    } else if (a->step == 0) {
        for (int64_t r = 0; r < nout; r++) {
            const int32_t l0 = lo[r], h0 = hi[r];
            const float l = lse[r];
            float *restrict sr = S + r * nin;
            for (int32_t c = 0; c < (int32_t)nin; c++)
                sr[c] = c >= l0 && c < h0 ? sr[c] * scale - l : -INFINITY;
        }
    } else if (!a->keys_in_lanes) {
        /* forward p = exp(st - m), o += p V:  dS = P (Z dP - D), and P Z for dV */
        for (int64_t c = 0; c < nout; c++) {
            float *restrict sc = S + c * nin, *restrict dc = dP + c * nin;
            const float *restrict zc = Z ? Z + c * nin : NULL;
            if (zc)
                for (int64_t r = 0; r < nin; r++) {
                    const float p = sc[r];
                    dc[r] = p != 0.0f ? p * (zc[r] * dc[r] - Dr[r]) : 0.0f;
                    sc[r] = p * zc[r];
                }
            else
                for (int64_t r = 0; r < nin; r++) {
                    const float p = sc[r];
                    dc[r] = p != 0.0f ? p * (dc[r] - Dr[r]) : 0.0f;
                }
        }
    } else {
        for (int64_t r = 0; r < nout; r++) {
            const float D = Dr[r];
            float *restrict sr = S + r * nin, *restrict dr = dP + r * nin;
            const float *restrict zr = Z ? Z + r * nin : NULL;
            if (zr)
                for (int64_t c = 0; c < nin; c++) {
                    const float p = sr[c];
                    dr[c] = p != 0.0f ? p * (zr[c] * dr[c] - D) : 0.0f;
                    sr[c] = p * zr[c];
                }
            else
                for (int64_t c = 0; c < nin; c++) {
                    const float p = sr[c];
                    dr[c] = p != 0.0f ? p * (dr[c] - D) : 0.0f;
                }
        }
    }
}

static void elem_generic(const elem *a) {
    elem_body(a);
}
#if defined(__x86_64__)
__attribute__((target("avx2"))) static void elem_avx2(const elem *a) {
    elem_body(a);
}
__attribute__((target("avx512f"))) static void elem_avx512(const elem *a) {
    elem_body(a);
}
#endif

static void (*elem_for(attn_isa isa))(const elem *) {
#if defined(__x86_64__)
    if (isa == ATTN_ISA_AVX512) return elem_avx512;
    if (isa == ATTN_ISA_AVX2) return elem_avx2;
#endif
    (void)isa;
    return elem_generic;
}

/* Step 0 with a mask, softcap or ALiBi (scalar: the mask has any strides,
 * tanh has no vector form here), in the forward's order:
 *   x = scale * s;  x = softcap tanh(x / softcap), T = 1 - tanh^2;
 *   x -= slope |dist|;  S = visible ? x + mask - lse : -inf.
 * @return whether every pair is visible. */
static bool scalar_step(const bplan *pl, const qrows *R, bstate *w, int64_t j0, int64_t nk,
                        int64_t sr, int64_t sc, int64_t nlanes) {
    const attn__sdpa_problem *P = pl->P;
    bool full = true;
    const float cap = P->softcap, slope = P->alibi_slopes ? P->alibi_slopes[R->h] : 0.0f;
    for (int64_t r = 0; r < R->nr; r++) {
        const float *mrow = P->has_mask ? attn__at4(&P->mask, R->b, R->h, R->i0 + r, j0)
                                        : NULL;                  /* mask[b,h,i,j0:] */
        const int64_t base = attn__dist(P, R->b, R->i0 + r, j0); /* dist of key j0 */
        for (int64_t c = 0; c < nk; c++) {
            float *s = w->S + r * sr + c * sc;
            const float mv = mrow ? mrow[c * P->mask.stride[3]] : 0.0f;
            const bool vis = c >= w->lo[r] && c < w->hi[r] && mv != -INFINITY;
            full &= vis;
            if (!vis) {
                *s = -INFINITY;
                continue;
            }
            float x = *s * P->scale;
            if (cap > 0.0f) {
                const float t = tanhf(x / cap);
                x = cap * t;
                w->T[r * sr + c * sc] = 1.0f - t * t;
            }
            if (P->alibi_slopes) x -= slope * (float)fabs((double)(base - c));
            *s = x + mv - w->lse[r];
        }
        if (sc == 1)
            for (int64_t c = nk; c < nlanes; c++)
                w->S[r * sr + c] = -INFINITY;
    }
    if (sr == 1)
        for (int64_t c = 0; c < nk; c++)
            for (int64_t r = R->nr; r < nlanes; r++)
                w->S[c * sc + r] = -INFINITY;
    return full;
}

/* From the scores S = Q K^T and dP = dO V^T of rows R and keys
 * [j0, j0 + nk), in one of the two layouts (nlanes = ldr or ldc):
 *   S  <- P Z                    P = exp(score + mask - lse) on visible pairs, else 0
 *   dP <- P (Z dP - D)           (dS: the gradient of the score as the mask
 *                                 sees it), 0 on hidden pairs
 * and with softcap T = its derivative (see scalar_step).
 * @return whether every pair r < nr, c < nk is visible. */
static bool probs(const bplan *pl, const qrows *R, bstate *w, int64_t j0, int64_t nk,
                  bool keys_in_lanes, int64_t nlanes) {
    const attn__sdpa_problem *P = pl->P;
    const int64_t nout = keys_in_lanes ? R->nr : nk, total = nout * nlanes;
    elem a = {.keys_in_lanes = keys_in_lanes,
              .S = w->S,
              .dP = w->dP,
              .lse = w->lse,
              .D = w->D,
              .lo = w->lo,
              .hi = w->hi,
              .nout = nout,
              .nin = nlanes,
              .scale = P->scale};
    /* 1. Forward's st*scale (+mask), shifted by lse; hidden pairs -inf. */
    bool full = true;
    if (P->has_mask || P->softcap > 0.0f || P->alibi_slopes) {
        full = scalar_step(pl, R, w, j0, nk, keys_in_lanes ? nlanes : 1, keys_in_lanes ? 1 : nlanes,
                           nlanes);
    } else {
        for (int64_t r = 0; r < R->nr; r++)
            full &= w->lo[r] == 0 && w->hi[r] == nk;
        a.step = 0;
        pl->elem(&a);
    }
    /* 2. P = exp(.): hidden pairs give exactly 0. */
    pl->kr->exp(w->S, w->S, total);
    /* 3. The dropout factors Z, regenerated (attn_dropout_keep's pattern). */
    if (P->dropout_p > 0.0f) {
        for (int64_t n = 0; n < total; n++)
            w->Z[n] = 1.0f;
        if (keys_in_lanes)
            attn__dropout_keys(w->Z, nlanes, R->nr, w->drow, nk, j0, pl->drop_thr, pl->drop_scale);
        else
            attn__dropout_rows(w->Z, nlanes, nk, w->drow, nlanes, j0, pl->drop_thr, pl->drop_scale);
        a.Z = w->Z;
    }
    /* 4. The softmax's derivative. */
    a.step = 1;
    pl->elem(&a);
    return full;
}

/* dS <- dS * T: through the softcap to the scaled score (passes 1, 2). */
static void softcap_step(const bplan *pl, bstate *w, int64_t total) {
    if (!(pl->P->softcap > 0.0f)) return;
    for (int64_t n = 0; n < total; n++)
        w->dP[n] = w->dP[n] != 0.0f ? w->dP[n] * w->T[n] : 0.0f;
}

static bool all_finite(const float *x, int64_t xs, int64_t n, int64_t m) {
    bool ok = true;
    for (int64_t c = 0; c < n; c++)
        for (int64_t e = 0; e < m; e++)
            ok &= isfinite(x[c * xs + e]) != 0;
    return ok;
}

/* The kernel pv's product, o[r][f] += sum_c p[c*ldp + r] x[c*xs + f], with
 * hidden pairs skipped instead of multiplied by zero. The pair of (c, r) is
 * (query row c, key r) when keys_in_lanes (pass 1), else (row r, key c).
 * Same operations as the kernels (the table's madd). */
static void product_skip(const bplan *pl, const qrows *R, const bstate *w, int64_t j0, float *o,
                         int64_t ldo, const float *p, int64_t ldp, const float *x, int64_t xs,
                         int64_t nk, int64_t nr, int64_t m, bool keys_in_lanes) {
    const attn__sdpa_problem *P = pl->P;
    for (int64_t r = 0; r < nr; r++) {
        float *orow = o + r * ldo;
        for (int64_t c = 0; c < nk; c++) {
            const int64_t row = keys_in_lanes ? c : r, key = keys_in_lanes ? r : c;
            if (key < w->lo[row] || key >= w->hi[row]) continue;
            if (P->has_mask && *attn__at4(&P->mask, R->b, R->h, R->i0 + row, j0 + key) == -INFINITY)
                continue;
            const float pc = p[c * ldp + r];
            for (int64_t f = 0; f < m; f++)
                orow[f] = pl->kr->madd(pc, x[c * xs + f], orow[f]);
        }
    }
}

/* o += the kernel pv's product, or product_skip when the block has hidden
 * pairs and x has a non-finite value. */
static void product(const bplan *pl, const qrows *R, const bstate *w, int64_t j0, bool full,
                    float *o, int64_t ldo, const float *p, int64_t ldp, const float *x, int64_t xs,
                    int64_t nk, int64_t nr, int64_t m, bool keys_in_lanes) {
    if (full || all_finite(x, xs, nk, m))
        pl->kr->pv(o, ldo, w->ones, p, ldp, x, xs, nk, nr, m);
    else
        product_skip(pl, R, w, j0, o, ldo, p, ldp, x, xs, nk, nr, m, keys_in_lanes);
}

/* ---- pass 0: D = rowsum(dout * out) --------------------------------------- */

/* D, and with dsinks each row's part -P_sink D, P_sink = exp(sinks[h] - lse). */
static void pass0(const bplan *pl, float *D, double *dsink, int nt) {
    const attn__bwd_problem *BP = pl->BP;
    const attn__sdpa_problem *P = pl->P;
    const int64_t rows = P->B * P->H * P->Nq;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (int64_t n = 0; n < rows; n++) {
        const int64_t b = n / (P->H * P->Nq), h = n / P->Nq % P->H, i = n % P->Nq;
        const float *go = attn__at4(&BP->dout, b, h, i, 0); /* dout[b,h,i,:] */
        const float *o = attn__at4(&P->out, b, h, i, 0);    /* out[b,h,i,:] */
        double s = 0.0;
        for (int64_t f = 0; f < P->dv; f++)
            s += (double)go[f * BP->dout.stride[3]] * (double)o[f * P->out.stride[3]];
        D[n] = (float)s;
        if (dsink) dsink[n] = -exp((double)P->sinks[h] - (double)*attn__at3(&BP->lse, b, h, i)) * s;
    }
    (void)nt;
}

/* dsinks[h] = the rows' parts summed in ascending (b, i). */
static void dsinks_store(const bplan *pl, const double *dsink) {
    const attn__sdpa_problem *P = pl->P;
    for (int64_t h = 0; h < P->H; h++) {
        double sum = 0.0;
        for (int64_t b = 0; b < P->B; b++)
            for (int64_t i = 0; i < P->Nq; i++)
                sum += dsink[(b * P->H + h) * P->Nq + i];
        pl->BP->dsinks.data[h * pl->BP->dsinks.stride[0]] = (float)sum;
    }
}

/* ---- pass 1: dk, dv per (b, g, key block) --------------------------------- */

static void pass1_unit(const bplan *pl, bstate *w, int64_t u) {
    const attn__bwd_problem *BP = pl->BP;
    const attn__sdpa_problem *P = pl->P;
    const int64_t nkb = (P->Nkv + KB - 1) / KB;
    const int64_t b = u / (P->Hkv * nkb), g = u / nkb % P->Hkv, j0 = u % nkb * KB;
    const int64_t nk = min64(KB, P->Nkv - j0), ldc = round_up(nk, LANES);
    const float *k = attn__at4(&P->k, b, g, j0, 0); /* seek to k[b, g, j0, :] */
    const float *v = attn__at4(&P->v, b, g, j0, 0); /* seek to v[b, g, j0, :] */
    load_t(w->at, ldc, k, P->k.stride[2], P->k.stride[3], nk, P->d);
    load_t(w->bt, ldc, v, P->v.stride[2], P->v.stride[3], nk, P->dv);
    memset(w->acc1, 0, (size_t)(nk * pl->ldd) * sizeof(float));
    memset(w->acc2, 0, (size_t)(nk * pl->ldv) * sizeof(float));
    for (int64_t hh = 0; hh < pl->G; hh++) {
        const int64_t h = g * pl->G + hh;
        for (int64_t i0 = 0; i0 < P->Nq; i0 += QB) {
            qrows R = {b, h, i0, min64(QB, P->Nq - i0)};
            if (!rows_vis(pl, &R, w, j0, nk)) continue; /* no row sees the block: a no-op */
            rows_load(pl, &R, w);
            int64_t qs, gs;
            const float *q = rows_ptr(attn__at4(&P->q, b, h, i0, 0), P->q.stride[2], P->q.stride[3],
                                      R.nr, P->d, w->xp, &qs);
            const float *go = rows_ptr(attn__at4(&BP->dout, b, h, i0, 0), BP->dout.stride[2],
                                       BP->dout.stride[3], R.nr, P->dv, w->yp, &gs);
            /* S[r][c] = q_r . k_c and dP[r][c] = dout_r . v_c, keys across lanes */
            pl->kr->score(w->S, w->at, ldc, q, qs, R.nr, nk, P->d);
            pl->kr->score(w->dP, w->bt, ldc, go, gs, R.nr, nk, P->dv);
            const bool full = probs(pl, &R, w, j0, nk, true, ldc);
            softcap_step(pl, w, R.nr * ldc);
            /* forward o += p V:      dV[c][f] += sum_r (P Z)[r][c] dout[r][f] */
            product(pl, &R, w, j0, full, w->acc2, pl->ldv, w->S, ldc, go, gs, R.nr, nk, P->dv,
                    true);
            /* forward st = Q K^T:    dK[c][e] += sum_r dS[r][c] q[r][e] */
            product(pl, &R, w, j0, full, w->acc1, pl->ldd, w->dP, ldc, q, qs, R.nr, nk, P->d, true);
        }
    }
    for (int64_t c = 0; c < nk; c++) {
        float *dk = attn__at4(&BP->dk, b, g, j0 + c, 0); /* dk[b, g, j, :] */
        float *dv = attn__at4(&BP->dv, b, g, j0 + c, 0); /* dv[b, g, j, :] */
        for (int64_t e = 0; e < P->d; e++)
            dk[e * BP->dk.stride[3]] = P->scale * w->acc1[c * pl->ldd + e];
        for (int64_t f = 0; f < P->dv; f++)
            dv[f * BP->dv.stride[3]] = w->acc2[c * pl->ldv + f];
    }
}

/* ---- pass 2 (dq) and pass 3 (dmask): rows across lanes -------------------- */

/* Walk the key blocks of rows R (a tile of up to QB rows; Q^T and dO^T
 * loaded), computing dS per block; then either dQ += dS K into acc1 (dmask
 * NULL) or dmask_row[j'] += dS[r][c] in ascending r (dmask_row: Nkv or 1
 * doubles; jb = 1 when the mask broadcasts over keys). */
static void rows_walk(const bplan *pl, bstate *w, const qrows *R, double *dmask_row, bool jb) {
    const attn__sdpa_problem *P = pl->P;
    const int64_t ldr = round_up(R->nr, LANES);
    for (int64_t j0 = 0; j0 < P->Nkv; j0 += KB) {
        const int64_t nk = min64(KB, P->Nkv - j0);
        if (!rows_vis(pl, R, w, j0, nk)) continue;
        rows_load(pl, R, w);
        int64_t ks, vs;
        const float *k = rows_ptr(attn__at4(&P->k, R->b, R->h / pl->G, j0, 0), P->k.stride[2],
                                  P->k.stride[3], nk, P->d, w->xp, &ks);
        const float *v = rows_ptr(attn__at4(&P->v, R->b, R->h / pl->G, j0, 0), P->v.stride[2],
                                  P->v.stride[3], nk, P->dv, w->yp, &vs);
        /* S[c][r] = q_r . k_c and dP[c][r] = dout_r . v_c, rows across lanes */
        pl->kr->score(w->S, w->at, ldr, k, ks, nk, R->nr, P->d);
        pl->kr->score(w->dP, w->bt, ldr, v, vs, nk, R->nr, P->dv);
        const bool full = probs(pl, R, w, j0, nk, false, ldr);
        if (!dmask_row) {
            softcap_step(pl, w, nk * ldr);
            /* forward st = Q K^T:  dQ[r][e] += sum_c dS[c][r] k[c][e] */
            product(pl, R, w, j0, full, w->acc1, pl->ldd, w->dP, ldr, k, ks, nk, R->nr, P->d,
                    false);
            continue;
        }
        for (int64_t r = 0; r < R->nr; r++)
            for (int64_t c = 0; c < nk; c++)
                dmask_row[jb ? 0 : j0 + c] += (double)w->dP[c * ldr + r];
    }
}

static void tile_load(const bplan *pl, bstate *w, const qrows *R) {
    const attn__bwd_problem *BP = pl->BP;
    const attn__sdpa_problem *P = pl->P;
    const int64_t ldr = round_up(R->nr, LANES);
    load_t(w->at, ldr, attn__at4(&P->q, R->b, R->h, R->i0, 0), P->q.stride[2], P->q.stride[3],
           R->nr, P->d);
    load_t(w->bt, ldr, attn__at4(&BP->dout, R->b, R->h, R->i0, 0), BP->dout.stride[2],
           BP->dout.stride[3], R->nr, P->dv);
}

static void pass2_unit(const bplan *pl, bstate *w, int64_t u) {
    const attn__bwd_problem *BP = pl->BP;
    const attn__sdpa_problem *P = pl->P;
    const int64_t nqb = (P->Nq + QB - 1) / QB;
    qrows R = {u / (P->H * nqb), u / nqb % P->H, u % nqb * QB, 0};
    R.nr = min64(QB, P->Nq - R.i0);
    tile_load(pl, w, &R);
    memset(w->acc1, 0, (size_t)(R.nr * pl->ldd) * sizeof(float));
    rows_walk(pl, w, &R, NULL, false);
    for (int64_t r = 0; r < R.nr; r++) {
        float *dq = attn__at4(&BP->dq, R.b, R.h, R.i0 + r, 0); /* dq[b, h, i, :] */
        for (int64_t e = 0; e < P->d; e++)
            dq[e * BP->dq.stride[3]] = P->scale * w->acc1[r * pl->ldd + e];
    }
}

/* dmask row u of the mask's own (mB, mH, mNq) rows, summed over the (b, h, i)
 * that read it, ascending; acc: Nkv doubles. */
static void pass3_unit(const bplan *pl, bstate *w, int64_t u, double *acc) {
    const attn__bwd_problem *BP = pl->BP;
    const attn__sdpa_problem *P = pl->P;
    const attn_view *dm = &BP->dmask;
    const int64_t mB = dm->shape[0], mH = dm->shape[1], mQ = dm->shape[2];
    const int64_t bb = u / (mH * mQ), hh = u / mQ % mH, ii = u % mQ;
    const bool jb = dm->shape[3] == 1;
    const int64_t nj = jb ? 1 : P->Nkv;
    for (int64_t j = 0; j < nj; j++)
        acc[j] = 0.0;
    for (int64_t b = mB == 1 ? 0 : bb; b < (mB == 1 ? P->B : bb + 1); b++)
        for (int64_t h = mH == 1 ? 0 : hh; h < (mH == 1 ? P->H : hh + 1); h++) {
            const int64_t ilo = mQ == 1 ? 0 : ii, ihi = mQ == 1 ? P->Nq : ii + 1;
            for (int64_t i0 = ilo; i0 < ihi; i0 += QB) {
                qrows R = {b, h, i0, min64(QB, ihi - i0)};
                tile_load(pl, w, &R);
                rows_walk(pl, w, &R, acc, jb);
            }
        }
    float *row = attn__dmask_at(BP, bb, hh, ii, 0); /* dmask[b', h', i', :] */
    for (int64_t j = 0; j < nj; j++)
        row[j * dm->stride[3]] = (float)acc[j];
}

bool attn__flash_backward_applies(const attn__bwd_problem *BP) {
    return BP->f.d <= BWD_MAX_HEAD && BP->f.dv <= BWD_MAX_HEAD;
}

attn_status attn__sdpa_backward_flash(const attn__bwd_problem *BP) {
    const attn__sdpa_problem *P = &BP->f;
    bplan pl = {.BP = BP,
                .P = P,
                .kr = attn__kernels_for(ATTN_ISA_AUTO),
                .G = P->H / P->Hkv,
                .elem = elem_for(attn_get_isa())};
    pl.ldd = round_up(P->d, LANES);
    pl.ldv = round_up(P->dv, LANES);
    if (P->dropout_p > 0.0f) {
        pl.drop_thr = attn__dropout_threshold(P->dropout_p);
        pl.drop_scale = (float)(1.0 / (1.0 - (double)P->dropout_p));
    }
    const int nt = P->threads > 0 ? P->threads : 1;
    const int64_t per_thread = round_up(state_floats(&pl), LANES);
    const int64_t rows = P->B * P->H * P->Nq;
    const int64_t n_dm =
        BP->has_dmask ? BP->dmask.shape[0] * BP->dmask.shape[1] * BP->dmask.shape[2] : 0;
    const int64_t dm_per = BP->has_dmask ? round_up(P->Nkv, 8) : 0;
    float *scratch = attn__alloc((size_t)nt * (size_t)per_thread, sizeof(float));
    float *D = attn__alloc((size_t)rows, sizeof(float));
    double *dacc = BP->has_dmask ? attn__alloc((size_t)nt * (size_t)dm_per, sizeof(double)) : NULL;
    double *dsink = BP->has_dsinks ? attn__alloc((size_t)rows, sizeof(double)) : NULL;
    if (!scratch || !D || (BP->has_dmask && !dacc) || (BP->has_dsinks && !dsink)) {
        attn__free(scratch);
        attn__free(D);
        attn__free(dacc);
        attn__free(dsink);
        return attn__fail(ATTN_ERR_NOMEM,
                          "attn_sdpa_backward: cannot allocate the scratch (%d x %lld floats, "
                          "%lld rows)",
                          nt, (long long)per_thread, (long long)rows);
    }
    pl.D = D;
    pass0(&pl, D, dsink, nt);
    if (dsink) dsinks_store(&pl, dsink);
    const int64_t n1 = P->B * P->Hkv * ((P->Nkv + KB - 1) / KB);
    const int64_t n2 = P->B * P->H * ((P->Nq + QB - 1) / QB);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
    {
        bstate w;
        state_carve(&pl, scratch + thread_id() * per_thread, &w);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) nowait
#endif
        for (int64_t u = 0; u < n1; u++)
            pass1_unit(&pl, &w, u);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1) nowait
#endif
        for (int64_t u = 0; u < n2; u++)
            pass2_unit(&pl, &w, u);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t u = 0; u < n_dm; u++)
            pass3_unit(&pl, &w, u, dacc + thread_id() * dm_per);
    }
    attn__free(scratch);
    attn__free(D);
    attn__free(dacc);
    attn__free(dsink);
    return ATTN_OK;
}
