/* ref/sdpa_ref.c - scaled dot-product attention as the plainest loops.
 *
 * This file is the specification that every faster path is tested against.
 * It is meant to be read beside docs/guide.md and is never optimised: one
 * query row at a time, every score materialised, sums in double.
 *
 * For each batch b, query head h (reading kv head g = h / (H / Hkv)) and
 * query i, with the keys j that are visible (key length, causal rule, mask):
 *   s[j]   = scale * sum_e q[b,h,i,e] k[b,g,j,e] + mask[b,h,i,j]   // "bhie,bgje->bhij"
 *   m      = max_j s[j]
 *   l      = sum_j exp(s[j] - m)
 *   w[j]   = exp(s[j] - m) / l * dropout(b,h,i,j)
 *   out[f] = sum_j w[j] v[b,g,j,f]                                  // "bhij,bgjf->bhif"
 *   lse    = m + log(l)
 */
#include "internal.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* One query row. s and visible are scratch of Nkv entries. */
static void attend_row(const attn__sdpa_problem *P, int64_t b, int64_t h, int64_t i, double *s,
                       unsigned char *visible) {
    const int64_t g = h / (P->H / P->Hkv);
    int64_t end = attn__key_end(P, b, i);
    if (end < 0) end = 0;

    /* 1. Scores of the visible keys; the others are never touched. */
    double m = -INFINITY;
    int64_t n_visible = 0;
    for (int64_t j = 0; j < P->Nkv; j++) {
        visible[j] = 0;
        if (j >= end) continue;
        double mask = P->has_mask ? (double)*attn__at4(&P->mask, b, h, i, j) : 0.0;
        if (mask == -INFINITY) continue;
        double dot = 0.0;
        for (int64_t e = 0; e < P->d; e++)
            dot += (double)*attn__at4(&P->q, b, h, i, e) * (double)*attn__at4(&P->k, b, g, j, e);
        s[j] = (double)P->scale * dot + mask;
        visible[j] = 1;
        n_visible++;
        if (s[j] > m || isnan(s[j])) m = s[j]; /* a NaN score makes the row NaN */
    }

    /* 2. A row that sees nothing (or only -inf scores) is zeros, lse -inf. */
    if (n_visible == 0 || m == -INFINITY) {
        for (int64_t f = 0; f < P->dv; f++)
            *attn__at4(&P->out, b, h, i, f) = 0.0f;
        if (P->lse) *attn__at3(P->lse, b, h, i) = -INFINITY;
        if (P->weights)
            for (int64_t j = 0; j < P->Nkv; j++)
                *attn__at4(P->weights, b, h, i, j) = 0.0f;
        return;
    }

    /* 3. Stable softmax over the visible keys. */
    double l = 0.0;
    for (int64_t j = 0; j < P->Nkv; j++)
        if (visible[j]) l += exp(s[j] - m);
    if (P->lse) *attn__at3(P->lse, b, h, i) = (float)(m + log(l));
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
