/* ref/sdpa_ref.c - scaled dot-product attention as the plainest loops.
 *
 * This file is the specification that every faster path is tested against.
 * It is meant to be read beside docs/guide.md and is never optimised: one
 * query row at a time, every score materialised, sums in double.
 *
 * For each batch b, query head h (reading kv head g = h / (H / Hkv)) and
 * query i, with the keys j that are visible (key length, causal rule,
 * window: the range [lo, hi) of attn__key_range; then mask != -inf), in
 * design.md's order:
 *   s[j]   = scale * sum_e q[b,h,i,e] k[b,g,j,e]                   // "bhie,bgje->bhij"
 *   s[j]   = softcap * tanh(s[j] / softcap)          (softcap > 0)
 *   s[j]   = s[j] - alibi_slopes[h] * |dist(i, j)|   (ALiBi)
 *   s[j]   = s[j] + (mask[b,h,i,j] - moff)           moff = the row's largest finite visible mask
 *   m      = max(max_j s[j], sink)                   sink = sinks[h] - moff (sinks), else -inf
 *   l      = sum_j exp(s[j] - m) + exp(sink - m)
 *   w[j]   = exp(s[j] - m) / l * dropout(b,h,i,j)
 *   out[f] = sum_j w[j] v[b,g,j,f]                                  // "bhij,bgjf->bhif"
 *   lse    = m + log(l) + moff
 * Softmax is shift-invariant, so moff changes nothing mathematically; it
 * keeps a large finite mask (-1e20 on every key) from swallowing the scores
 * in the sum, exactly as the fast path does.
 * Float32 overflow (design.md "Determinism"): a visible key whose dot product
 * (any partial sum, e ascending, as the kernels accumulate it), scaled score
 * or ALiBi-biased score exceeds FLT_MAX in magnitude gets score NaN, making
 * the row NaN as on the float32 paths; it is never treated as hidden.
 */
#include "internal.h"

#include <float.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* NaN when |x| is beyond float32's range, else x. */
static double f32_range(double x) {
    return fabs(x) > (double)FLT_MAX ? NAN : x;
}

/* The largest finite mask value over the keys [lo, hi) of row (b, h, i)
 * that the mask does not hide; 0 if there is none or no mask. */
static double row_mask_offset(const attn__sdpa_problem *P, int64_t b, int64_t h, int64_t i,
                              int64_t lo, int64_t hi) {
    if (!P->has_mask) return 0.0;
    double mx = -INFINITY;
    for (int64_t j = lo; j < hi; j++) {
        const double mv = (double)*attn__at4(&P->mask, b, h, i, j);
        if (isfinite(mv) && mv > mx) mx = mv;
    }
    return isfinite(mx) ? mx : 0.0;
}

/* One query row. s and visible are scratch of Nkv entries. */
static void attend_row(const attn__sdpa_problem *P, int64_t b, int64_t h, int64_t i, double *s,
                       unsigned char *visible) {
    const int64_t g = h / (P->H / P->Hkv);
    int64_t lo, hi;
    attn__key_range(P, b, i, &lo, &hi);
    const double moff = row_mask_offset(P, b, h, i, lo, hi);

    /* 1. Scores of the visible keys; the others are never touched. */
    double m = P->sinks ? (double)P->sinks[h] - moff : -INFINITY;
    int64_t n_visible = 0;
    for (int64_t j = 0; j < P->Nkv; j++) {
        visible[j] = 0;
        if (j < lo || j >= hi) continue;
        double mask = P->has_mask ? (double)*attn__at4(&P->mask, b, h, i, j) : 0.0;
        if (mask == -INFINITY) continue;
        double dot = 0.0;
        bool over = false;
        for (int64_t e = 0; e < P->d; e++) {
            dot += (double)*attn__at4(&P->q, b, h, i, e) * (double)*attn__at4(&P->k, b, g, j, e);
            over |= !(fabs(dot) <= (double)FLT_MAX); /* NaN counts too */
        }
        double sc = over ? NAN : f32_range((double)P->scale * dot);
        sc = attn__modify_score(P, h, attn__dist(P, b, i, j), sc);
        if (P->alibi_slopes) sc = f32_range(sc);
        s[j] = sc + (mask - moff);
        visible[j] = 1;
        n_visible++;
        if (s[j] > m || isnan(s[j])) m = s[j]; /* a NaN score makes the row NaN */
    }

    /* 2. A row that sees nothing gives zeros and lse -inf, or with a sink
     * out 0 and lse = sinks[h]. */
    if (n_visible == 0 || m == -INFINITY) {
        for (int64_t f = 0; f < P->dv; f++)
            *attn__at4(&P->out, b, h, i, f) = 0.0f;
        if (P->lse) *attn__at3(P->lse, b, h, i) = P->sinks ? P->sinks[h] : -INFINITY;
        if (P->weights)
            for (int64_t j = 0; j < P->Nkv; j++)
                *attn__at4(P->weights, b, h, i, j) = 0.0f;
        return;
    }

    /* 3. Stable softmax over the visible keys, the sink in the denominator. */
    double l = P->sinks ? exp((double)P->sinks[h] - moff - m) : 0.0;
    for (int64_t j = 0; j < P->Nkv; j++)
        if (visible[j]) l += exp(s[j] - m);
    if (P->lse) *attn__at3(P->lse, b, h, i) = (float)(m + log(l) + moff);
    for (int64_t j = 0; j < P->Nkv; j++)
        s[j] = visible[j] ? exp(s[j] - m) / l * attn__dropout_factor(P, b, h, i, j) : 0.0;
    if (P->weights)
        for (int64_t j = 0; j < P->Nkv; j++)
            *attn__at4(P->weights, b, h, i, j) = (float)s[j];

    /* 4. Weighted sum of the visible values. */
    for (int64_t f = 0; f < P->dv; f++) {
        double acc = 0.0;
        for (int64_t j = 0; j < P->Nkv; j++)
            if (visible[j]) acc += s[j] * (double)*attn__at4(&P->v, b, g, j, f);
        *attn__at4(&P->out, b, h, i, f) = (float)acc;
    }
}

attn_status attn__sdpa_ref(const attn__sdpa_problem *P) {
    const int nt = P->threads;
    double *s = attn__alloc((size_t)nt * (size_t)P->Nkv, sizeof(double));
    unsigned char *visible = attn__alloc((size_t)nt * (size_t)P->Nkv, 1);
    if (!s || !visible) {
        attn__free(s);
        attn__free(visible);
        return attn__fail(ATTN_ERR_NOMEM, "attn_sdpa: cannot allocate %d x %lld score rows", nt,
                          (long long)P->Nkv);
    }
    const int64_t rows = P->B * P->H * P->Nq;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16)
    for (int64_t r = 0; r < rows; r++) {
#ifdef _OPENMP
        const int64_t t = omp_get_thread_num();
#else
        const int64_t t = 0;
#endif
        const int64_t b = r / (P->H * P->Nq), h = r / P->Nq % P->H, i = r % P->Nq;
        attend_row(P, b, h, i, s + t * P->Nkv, visible + t * P->Nkv);
    }
    attn__free(s);
    attn__free(visible);
    return ATTN_OK;
}
