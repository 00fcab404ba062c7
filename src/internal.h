/* internal.h - what the layers of attn share and users never see.
 * Names start with attn__ (two underscores). */
#ifndef ATTN_INTERNAL_H
#define ATTN_INTERNAL_H

#include "attn.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors (src/error.c) ---------------------------------------------- */

/* Record a printf-style message for attn_last_error() and return s. */
attn_status attn__fail(attn_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- views (src/view.c) ------------------------------------------------ */

/* Check that v is non-NULL with non-NULL data, rank `ndim` (or any rank
 * 1..4 when ndim == 0), every size >= 1, and that its element offsets fit in
 * int64. fn and name go into the message ("attn_sdpa: q ..."). */
attn_status attn__check_view(const char *fn, const char *name, const attn_view *v, int ndim);

/* Check that an output view writes each element once: no stride 0 (or
 * repeated address) on a dimension of size > 1. */
attn_status attn__check_output(const char *fn, const char *name, const attn_view *v);

/* Fail with ATTN_ERR_STRIDE if the memory spans of out and in intersect. */
attn_status attn__check_disjoint(const char *fn, const char *out_name, const attn_view *out,
                                 const char *in_name, const attn_view *in);

/* Fail with ATTN_ERR_STRIDE if the span of out intersects the plain array
 * [arr, arr + bytes) (key lengths, offsets, slopes, sinks). arr NULL: OK. */
attn_status attn__check_disjoint_array(const char *fn, const char *out_name, const attn_view *out,
                                       const char *arr_name, const void *arr, size_t bytes);

/* An additive mask as a rank-4 view with stride 0 on its broadcast
 * dimensions: each size must be full[i] or 1; names[i] names full[i] in
 * the message ("mask.shape[3]=6 but must be Nkv=5 or 1 (broadcast)"). */
attn_status attn__check_mask(const char *fn, const attn_view *m, const int64_t full[4],
                             const char *const names[4], attn_view *norm);

/* Fail with ATTN_ERR_SHAPE unless a.shape[ia] == b.shape[ib]. */
attn_status attn__check_dim(const char *fn, const char *a_name, const attn_view *a, int ia,
                            const char *b_name, const attn_view *b, int ib, const char *why);

/* Checks of a row-wise op from x to y (softmax, layer norm): both valid,
 * same shape, y a proper output that is x itself (in place) or disjoint. */
attn_status attn__check_x_to_y(const char *fn, const attn_view *x, const attn_view *y);

/* Number of elements (product of sizes); the view must have passed
 * attn__check_view, and the caller must check *n against its own limits. */
attn_status attn__numel(const char *fn, const char *name, const attn_view *v, int64_t *n);

/* True when the spans of two views in memory intersect. */
bool attn__views_overlap(const attn_view *a, const attn_view *b);

/* True when a and b are the same view (data, rank, shape, strides). */
bool attn__same_view(const attn_view *a, const attn_view *b);

/* Pointer to element [i0, i1, i2, i3] of a rank-4 view. */
static inline float *attn__at4(const attn_view *v, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return v->data + i0 * v->stride[0] + i1 * v->stride[1] + i2 * v->stride[2] + i3 * v->stride[3];
}

/* Pointer to element [i0, i1, i2] of a rank-3 view. */
static inline float *attn__at3(const attn_view *v, int64_t i0, int64_t i1, int64_t i2) {
    return v->data + i0 * v->stride[0] + i1 * v->stride[1] + i2 * v->stride[2];
}

/* v (rank 1..4) as rank 4: size-1 dimensions with stride 0 put in front. */
attn_view attn__as4(const attn_view *v);

/* ---- memory (src/alloc.c) ---------------------------------------------- */

#define ATTN_ALIGN 64

/* Allocate n * size bytes aligned to ATTN_ALIGN through the installed
 * allocator; NULL on overflow or failure (the caller reports NOMEM). */
void *attn__alloc(size_t n, size_t size);
void attn__free(void *p);

/* ---- threads and ISA (src/dispatch.c) ------------------------------------ */

/* The thread count for a call: requested if > 0 (capped at
 * ATTN_MAX_THREADS), else the online CPUs, or 1 inside an active OpenMP
 * parallel region. */
int attn__threads(int requested);

/* ATTN_OK if the selected ISA is usable (the ATTN_ISA variable was valid),
 * else a failure recorded with the function name. */
attn_status attn__isa_ready(const char *fn);

/* ---- the validated SDPA problem (src/sdpa.c fills it) ------------------ */

/* All checks have passed when an algorithm receives this. Views are rank 4
 * (lse rank 3). The mask, if any, has stride 0 on every broadcast
 * dimension, so mask(b, h, i, j) = *attn__at4(&mask, b, h, i, j) always. */
typedef struct attn__sdpa_problem {
    int64_t B, H, Hkv, Nq, Nkv, d, dv;
    attn_view q, k, v, out;
    float scale;
    attn_causal causal;
    bool has_mask;
    attn_view mask;
    const int64_t *key_lengths; /* NULL: all Nkv */
    float dropout_p;
    uint64_t dropout_seed;
    attn_view *lse;     /* NULL: not wanted */
    attn_view *weights; /* NULL: not wanted */
    int threads;
    /* Score modifiers (attn_opts; validated: positions within +-2^61,
     * windows >= -1, softcap finite >= 0, slopes and sinks finite). */
    const int64_t *q_offset; /* B values or NULL: the default alignment */
    int64_t k_offset;
    int64_t window_left, window_right; /* -1: unbounded */
    float softcap;                     /* 0: off */
    const float *alibi_slopes;         /* H values or NULL */
    const float *sinks;                /* H values or NULL */
    /* NULL: keys and values are the views k and v. Else the flash path
     * scores keys and fetches values through it (flash/flash.h); k and v
     * are then unused placeholders. */
    const struct attn__key_source *keys;
} attn__sdpa_problem;

/* Positions of queries and keys stay within +-ATTN__MAX_POS (checked in
 * sdpa.c), so a difference of two positions never overflows int64. */
#define ATTN__MAX_POS ((int64_t)1 << 61)

/* The key length of batch b. */
static inline int64_t attn__key_len(const attn__sdpa_problem *P, int64_t b) {
    return P->key_lengths ? P->key_lengths[b] : P->Nkv;
}

/* True when a score modifier other than the default positions is on. */
static inline bool attn__has_modifiers(const attn__sdpa_problem *P) {
    return P->window_left >= 0 || P->window_right >= 0 || P->softcap > 0.0f ||
           P->alibi_slopes != NULL || P->sinks != NULL;
}

/* The position p(i) of query i of batch b (design.md "Score modifiers"):
 * q_offset[b] + i, by default 0 + i with TOP_LEFT, else L_b - Nq + i. */
static inline int64_t attn__qpos(const attn__sdpa_problem *P, int64_t b, int64_t i) {
    if (P->q_offset) return P->q_offset[b] + i;
    if (P->causal == ATTN_CAUSAL_TOP_LEFT) return i;
    return attn__key_len(P, b) - P->Nq + i;
}

/* dist(i, j) = p(i) - (k_offset + j). */
static inline int64_t attn__dist(const attn__sdpa_problem *P, int64_t b, int64_t i, int64_t j) {
    return attn__qpos(P, b, i) - (P->k_offset + j);
}

/* The keys of row (b, i) that pass the key length, the causal rule and the
 * window (the mask may still hide some): the half-open range [*lo, *hi),
 * 0 <= *lo and *hi <= L_b; empty when *hi <= *lo (then *lo = *hi = 0). With
 * base = p(i) - k_offset, key j has dist = base - j, so
 *   causal:        dist >= 0             ->  j <= base
 *   window_right:  -dist <= right        ->  j <= base + right
 *   window_left:   dist <= left          ->  j >= base - left
 * each compared without overflow (|base| <= 2^62, windows up to INT64_MAX). */
static inline void attn__key_range(const attn__sdpa_problem *P, int64_t b, int64_t i, int64_t *lo,
                                   int64_t *hi) {
    const int64_t L = attn__key_len(P, b);
    const int64_t base = attn__qpos(P, b, i) - P->k_offset;
    int64_t l = 0, h = L;
    if (P->causal != ATTN_CAUSAL_NONE && base + 1 < h) h = base + 1;
    if (P->window_right >= 0 && P->window_right < h - 1 - base) h = base + P->window_right + 1;
    if (P->window_left >= 0 && P->window_left < base - l) l = base - P->window_left;
    if (h <= l) l = h = 0;
    *lo = l;
    *hi = h;
}

/* Softcap then ALiBi on a scaled score s = scale * q.k of a visible key, in
 * design.md's order (the mask is added after):
 *   s = softcap * tanh(s / softcap)    if softcap > 0
 *   s = s - alibi_slopes[h] * |dist|   if alibi_slopes
 * In double, for the reference path. */
static inline double attn__modify_score(const attn__sdpa_problem *P, int64_t h, int64_t dist,
                                        double s) {
    if (P->softcap > 0.0f) s = (double)P->softcap * tanh(s / (double)P->softcap);
    if (P->alibi_slopes) s -= (double)P->alibi_slopes[h] * fabs((double)dist);
    return s;
}

/* The dropout factor for weight (b, h, i, j): 0 if dropped, else 1/(1-p). */
static inline float attn__dropout_factor(const attn__sdpa_problem *P, int64_t b, int64_t h,
                                         int64_t i, int64_t j) {
    if (P->dropout_p <= 0.0f) return 1.0f;
    return attn_dropout_keep(P->dropout_seed, b, h, i, j, P->dropout_p)
               ? (float)(1.0 / (1.0 - (double)P->dropout_p))
               : 0.0f;
}

/* attn_sdpa's checks of (q, k, v, out, opts), filling P (src/sdpa.c);
 * messages name fn. Nothing is computed or written but P. Shared by the
 * backward (src/sdpa_backward.c) and the fold (src/fold.c). */
attn_status attn__sdpa_check(const char *fn, const attn_view *q, const attn_view *k,
                             const attn_view *v, attn_view *out, const attn_opts *o,
                             attn__sdpa_problem *P);

/* The score modifiers' values (src/sdpa.c): windows, softcap, ALiBi slopes
 * and sinks (H values each), and the positions q_offset[b] + i (i < Nq,
 * b < B) and k_offset + j (j < Nk; nk_name names Nk in messages) within
 * +-2^61. Shared by attn_sdpa's checks and the KV cache's attend. */
attn_status attn__check_modifiers(const char *fn, const attn_opts *o, int64_t B, int64_t H,
                                  int64_t Nq, int64_t Nk, const char *nk_name);

/* The reference algorithm (src/ref/sdpa_ref.c): always applicable. */
attn_status attn__sdpa_ref(const attn__sdpa_problem *P);

/* ---- GEMM for projections (src/gemm.c) ----------------------------------- */

/* C (M, N) = A (M, K) @ B (K, N) [+ bias (N) broadcast over rows].
 * A and B are rank-2 views of any strides; C must have a unit column stride.
 * Uses CBLAS sgemm when built with BLAS and the strides allow, else a plain
 * loop. Allocates nothing and cannot fail. */
void attn__gemm(const attn_view *A, const attn_view *B, const attn_view *bias, attn_view *C,
                int threads);

/* " (attn's choice: OpenBLAS chose Prescott)" when src/blas_core.c replaced
 * the kernels OpenBLAS fell back to on a CPU newer than itself, else "". */
const char *attn__blas_core_note(void);

#endif /* ATTN_INTERNAL_H */
