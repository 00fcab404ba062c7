/* ref/sdpa_backward_ref.c - the backward of ref/sdpa_ref.c as the plainest loops.
 *
 * The specification every faster backward is tested against: one query row
 * at a time, the forward's softmax recomputed in double from q and k (out
 * and lse are not read), sums in double. Each step quotes the forward line
 * of ref/sdpa_ref.c it differentiates.
 *
 * For batch b, kv head g, its query heads h and queries i, visible keys j:
 *   forward                                   backward
 *   s[j] = modify(scale * q.k[j]) + mask      ds[j] = P[j] * (dP[j] - D)
 *     (modify: softcap, ALiBi; as sdpa_ref.c)   ds'[j] = ds[j] * dmodify/ds
 *                                             dq[e] += scale * ds'[j] k[j][e]
 *                                             dk[j][e] += scale * ds'[j] q[e]
 *                                             dmask[j] += ds[j]
 *   l = sum_j exp(s[j] - m) + exp(sink - m)   dsink += -P_sink * D
 *   P[j] = exp(s[j] - m) / l                  D = sum_j P[j] Z[j] dout.v[j]
 *   w[j] = P[j] * Z[j]   (dropout)            dP[j] = Z[j] * dout.v[j]
 *   out[f] = sum_j w[j] v[j][f]               dv[j][f] += w[j] dout[f]
 * Work is split over (b, g) groups, each owning dk and dv of its kv head and
 * dq of its query heads; with dmask (summed across groups) it runs on one
 * thread. */
#include "sdpa_backward.h"

#include <float.h>

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct acc {
    double *s;              /* (Nkv) scores, then P */
    double *ds;             /* (Nkv) */
    double *dcap;           /* (Nkv) derivative of the softcap */
    unsigned char *visible; /* (Nkv) */
    double *dq;             /* (d) */
    double *dk, *dv;        /* (Nkv, d), (Nkv, dv): this group's sums */
} acc;

/* NaN when |x| is beyond float32's range, else x (as ref/sdpa_ref.c). */
static double f32_range(double x) {
    return fabs(x) > (double)FLT_MAX ? NAN : x;
}

/* The forward's mask offset: the largest finite visible mask value of the row. */
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

/* One query row (b, h, i): its dq written out, its share of dk, dv (and
 * dmask, a double array of the mask's span) added to the group's sums, its
 * sink's gradient returned. */
static double row_backward(const attn__bwd_problem *BP, int64_t b, int64_t h, int64_t i, acc *A,
                           double *dmask) {
    const attn__sdpa_problem *P = &BP->f;
    const int64_t g = h / (P->H / P->Hkv);
    int64_t lo, hi;
    attn__key_range(P, b, i, &lo, &hi);
    const double moff = row_mask_offset(P, b, h, i, lo, hi);

    /* Forward 1: s[j] = modify(scale * q.k) + (mask - moff) over the visible
     * keys; dcap[j] = d modify / d (scale q.k) = 1 - tanh^2 with softcap. */
    double m = P->sinks ? (double)P->sinks[h] - moff : -INFINITY;
    int64_t n_visible = 0;
    for (int64_t j = 0; j < P->Nkv; j++) {
        A->visible[j] = 0;
        if (j < lo || j >= hi) continue;
        double mask = P->has_mask ? (double)*attn__at4(&P->mask, b, h, i, j) : 0.0;
        if (mask == -INFINITY) continue;
        double dot = 0.0;
        bool over = false;
        for (int64_t e = 0; e < P->d; e++) {
            dot += (double)*attn__at4(&P->q, b, h, i, e) * (double)*attn__at4(&P->k, b, g, j, e);
            over |= !(fabs(dot) <= (double)FLT_MAX);
        }
        double sc = over ? NAN : f32_range((double)P->scale * dot);
        A->dcap[j] = 1.0;
        if (P->softcap > 0.0f) {
            const double t = tanh(sc / (double)P->softcap);
            A->dcap[j] = 1.0 - t * t;
        }
        sc = attn__modify_score(P, h, attn__dist(P, b, i, j), sc);
        if (P->alibi_slopes) sc = f32_range(sc);
        A->s[j] = sc + (mask - moff);
        A->visible[j] = 1;
        n_visible++;
        if (A->s[j] > m || isnan(A->s[j])) m = A->s[j];
    }
    for (int64_t e = 0; e < P->d; e++)
        A->dq[e] = 0.0;

    /* Forward 2: a row that sees nothing is zeros (out 0): nothing flows back. */
    double dsink = 0.0;
    if (n_visible > 0 && m != -INFINITY) {
        /* Forward 3: P[j] = exp(s[j] - m) / l, the sink in l. */
        const double esink = P->sinks ? exp((double)P->sinks[h] - moff - m) : 0.0;
        double l = esink;
        for (int64_t j = 0; j < P->Nkv; j++)
            if (A->visible[j]) l += exp(A->s[j] - m);
        for (int64_t j = 0; j < P->Nkv; j++)
            if (A->visible[j]) A->s[j] = exp(A->s[j] - m) / l;

        /* Forward 4, out[f] = sum_j P[j] Z[j] v[j][f]:
         *   dv[j][f] += P[j] Z[j] dout[f];  dP[j] = Z[j] sum_f dout[f] v[j][f]. */
        double D = 0.0;
        for (int64_t j = 0; j < P->Nkv; j++) {
            if (!A->visible[j]) continue;
            const double z = (double)attn__dropout_factor(P, b, h, i, j);
            double dp = 0.0;
            for (int64_t f = 0; f < P->dv; f++) {
                const double go = (double)*attn__at4(&BP->dout, b, h, i, f);
                dp += go * (double)*attn__at4(&P->v, b, g, j, f);
                A->dv[j * P->dv + f] += A->s[j] * z * go;
            }
            A->ds[j] = z * dp;
            D += A->s[j] * A->ds[j];
        }
        /* Forward 3 again, the softmax: ds[j] = P[j] (dP[j] - D); the sink,
         * a logit with no value (dP = 0), gets -P_sink D. */
        for (int64_t j = 0; j < P->Nkv; j++)
            if (A->visible[j]) A->ds[j] = A->s[j] * (A->ds[j] - D);
        dsink = -(esink / l) * D;

        /* Forward 1 again: the mask is added last (dmask = ds), ALiBi is a
         * constant, softcap scales by dcap, s = scale * q.k. */
        for (int64_t j = 0; j < P->Nkv; j++) {
            if (!A->visible[j]) continue;
            if (dmask) {
                const float *d0 = BP->dmask.data;
                dmask[attn__dmask_at(BP, b, h, i, j) - d0] += A->ds[j];
            }
            const double dsc = (double)P->scale * A->ds[j] * A->dcap[j];
            for (int64_t e = 0; e < P->d; e++) {
                A->dq[e] += dsc * (double)*attn__at4(&P->k, b, g, j, e);
                A->dk[j * P->d + e] += dsc * (double)*attn__at4(&P->q, b, h, i, e);
            }
        }
    }
    for (int64_t e = 0; e < P->d; e++)
        *attn__at4(&BP->dq, b, h, i, e) = (float)A->dq[e];
    return dsink;
}

/* The dmask view's elements as offsets from its data: dense index -> offset. */
static int64_t dmask_offset(const attn_view *m, int64_t n) {
    int64_t off = 0;
    for (int a = 3; a >= 0; a--) {
        off += n % m->shape[a] * m->stride[a];
        n /= m->shape[a];
    }
    return off;
}

attn_status attn__sdpa_backward_ref(const attn__bwd_problem *BP) {
    const attn__sdpa_problem *P = &BP->f;
    const int64_t G = P->H / P->Hkv, groups = P->B * P->Hkv;
    int nt = BP->has_dmask ? 1 : P->threads;
    if (nt > groups) nt = (int)groups;
    if (nt < 1) nt = 1;
    const int64_t per = 3 * P->Nkv + P->d + P->Nkv * P->d + P->Nkv * P->dv;

    /* dmask: one double per element offset its view spans (strides may be
     * negative: offsets run from span_lo <= 0 to span_hi). */
    int64_t n_dmask = 0, span_lo = 0, span_hi = 0;
    if (BP->has_dmask) {
        n_dmask = BP->dmask.shape[0] * BP->dmask.shape[1] * BP->dmask.shape[2] * BP->dmask.shape[3];
        for (int a = 0; a < 4; a++) {
            const int64_t ext = (BP->dmask.shape[a] - 1) * BP->dmask.stride[a];
            if (ext < 0)
                span_lo += ext;
            else
                span_hi += ext;
        }
    }
    double *work = attn__alloc((size_t)nt * (size_t)per, sizeof(double));
    unsigned char *visible = attn__alloc((size_t)nt * (size_t)P->Nkv, 1);
    double *dmask_all =
        BP->has_dmask ? attn__alloc((size_t)(span_hi - span_lo + 1), sizeof(double)) : NULL;
    /* dsinks: each row's part, summed per head in ascending (b, i) after. */
    double *dsink =
        BP->has_dsinks ? attn__alloc((size_t)(P->B * P->H * P->Nq), sizeof(double)) : NULL;
    if (!work || !visible || (BP->has_dmask && !dmask_all) || (BP->has_dsinks && !dsink)) {
        attn__free(work);
        attn__free(visible);
        attn__free(dmask_all);
        attn__free(dsink);
        return attn__fail(ATTN_ERR_NOMEM,
                          "attn_sdpa_backward: cannot allocate %d x %lld doubles of scratch", nt,
                          (long long)per);
    }
    /* dmask[offset] is dmask_all[offset - span_lo], offset = pointer - data. */
    double *dmask = dmask_all ? dmask_all - span_lo : NULL;
    if (dmask)
        for (int64_t n = 0; n < n_dmask; n++)
            dmask[dmask_offset(&BP->dmask, n)] = 0.0;

#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t grp = 0; grp < groups; grp++) {
#ifdef _OPENMP
        const int64_t t = omp_get_thread_num();
#else
        const int64_t t = 0;
#endif
        const int64_t b = grp / P->Hkv, g = grp % P->Hkv;
        double *w = work + t * per;
        acc A = {.s = w,
                 .ds = w + P->Nkv,
                 .dcap = w + 2 * P->Nkv,
                 .dq = w + 3 * P->Nkv,
                 .dk = w + 3 * P->Nkv + P->d,
                 .dv = w + 3 * P->Nkv + P->d + P->Nkv * P->d,
                 .visible = visible + t * P->Nkv};
        for (int64_t n = 0; n < P->Nkv * (P->d + P->dv); n++)
            A.dk[n] = 0.0; /* dk and dv are adjacent */
        for (int64_t hh = 0; hh < G; hh++)
            for (int64_t i = 0; i < P->Nq; i++) {
                const double ds = row_backward(BP, b, g * G + hh, i, &A, dmask);
                if (dsink) dsink[(b * P->H + g * G + hh) * P->Nq + i] = ds;
            }
        for (int64_t j = 0; j < P->Nkv; j++) {
            for (int64_t e = 0; e < P->d; e++)
                *attn__at4(&BP->dk, b, g, j, e) = (float)A.dk[j * P->d + e];
            for (int64_t f = 0; f < P->dv; f++)
                *attn__at4(&BP->dv, b, g, j, f) = (float)A.dv[j * P->dv + f];
        }
    }
    if (dmask)
        for (int64_t n = 0; n < n_dmask; n++) {
            const int64_t off = dmask_offset(&BP->dmask, n);
            BP->dmask.data[off] = (float)dmask[off];
        }
    if (dsink)
        for (int64_t h = 0; h < P->H; h++) {
            double sum = 0.0;
            for (int64_t b = 0; b < P->B; b++)
                for (int64_t i = 0; i < P->Nq; i++)
                    sum += dsink[(b * P->H + h) * P->Nq + i];
            BP->dsinks.data[h * BP->dsinks.stride[0]] = (float)sum;
        }
    attn__free(work);
    attn__free(visible);
    attn__free(dmask_all);
    attn__free(dsink);
    return ATTN_OK;
}
