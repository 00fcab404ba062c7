/* packed.c - projections with a packed weight (attn_weight_pack,
 * attn_linear_packed):
 *   Wp[p, i, c] = W[i, ATTN_PANEL p + c]   (0 past the last column)
 *   y[n, o] = b[o] + sum_i x[n, i] W[i, o]  // einsum "ni,io->no"
 * The panels are split over the threads, each thread a contiguous range, so
 * each reads its part of Wp in memory order; every panel goes by once per 8
 * rows of x (kernels/panel.h). The same bits for any thread count. */
#include "internal.h"
#include "kernels/gemv.h"
#include "kernels/panel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

attn__panel_fn attn__panel_for(attn_isa isa) {
    if (isa == ATTN_ISA_AUTO) isa = attn_get_isa();
#if defined(__x86_64__)
    if (isa == ATTN_ISA_AVX512) return attn__panel_avx512;
    if (isa == ATTN_ISA_AVX2) return attn__panel_avx2;
#endif
    return attn__panel_generic;
}

/* Wp must be (ceil(out / ATTN_PANEL), in, ATTN_PANEL), contiguous. */
static attn_status check_packed(const char *fn, const attn_view *Wp, int64_t in, int64_t out,
                                const char *in_from, const char *out_from) {
    attn_status s;
    if ((s = attn__check_view(fn, "Wp", Wp, 3))) return s;
    const int64_t panels = out / ATTN_PANEL + (out % ATTN_PANEL != 0);
    if (Wp->shape[0] != panels || Wp->shape[1] != in || Wp->shape[2] != ATTN_PANEL)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: Wp is (%lld, %lld, %lld) but must be (%lld, %lld, %d): "
                          "(ceil(out / %d), in, %d) with in=%lld from %s and out=%lld from %s",
                          fn, (long long)Wp->shape[0], (long long)Wp->shape[1],
                          (long long)Wp->shape[2], (long long)panels, (long long)in, ATTN_PANEL,
                          ATTN_PANEL, ATTN_PANEL, (long long)in, in_from, (long long)out, out_from);
    if (Wp->stride[2] != 1 || Wp->stride[1] != ATTN_PANEL || Wp->stride[0] != in * ATTN_PANEL)
        return attn__fail(ATTN_ERR_STRIDE,
                          "%s: Wp.stride=(%lld, %lld, %lld) but Wp must be contiguous: "
                          "(%lld, %d, 1)",
                          fn, (long long)Wp->stride[0], (long long)Wp->stride[1],
                          (long long)Wp->stride[2], (long long)(in * ATTN_PANEL), ATTN_PANEL);
    return ATTN_OK;
}

attn_status attn_weight_pack(const attn_view *W, attn_view *Wp) {
    const char *fn = "attn_weight_pack";
    attn_status s;
    if ((s = attn__check_view(fn, "W", W, 2))) return s;
    const int64_t in = W->shape[0], out = W->shape[1];
    if ((s = check_packed(fn, Wp, in, out, "W.shape[0]", "W.shape[1]")) ||
        (s = attn__check_disjoint(fn, "Wp", Wp, "W", W)))
        return s;
    for (int64_t p = 0; p < Wp->shape[0]; p++)
        for (int64_t i = 0; i < in; i++) {
            float *dst = Wp->data + (p * in + i) * ATTN_PANEL; /* seek to Wp[p, i, 0] */
            const float *src = W->data + i * W->stride[0];
            for (int64_t c = 0; c < ATTN_PANEL; c++) {
                const int64_t o = p * ATTN_PANEL + c;
                dst[c] = o < out ? src[o * W->stride[1]] : 0.0f;
            }
        }
    return ATTN_OK;
}

attn_status attn_linear_packed(const attn_view *x, const attn_view *Wp, const attn_view *bias,
                               attn_view *y, int num_threads) {
    const char *fn = "attn_linear_packed";
    attn_status s;
    if ((s = attn__check_view(fn, "x", x, 0)) || (s = attn__check_view(fn, "y", y, 0))) return s;
    if (x->ndim > 2)
        return attn__fail(ATTN_ERR_SHAPE, "%s: x.ndim=%d but must be 1 (in) or 2 (rows, in)", fn,
                          x->ndim);
    if (y->ndim != x->ndim)
        return attn__fail(ATTN_ERR_SHAPE, "%s: y.ndim=%d but x.ndim=%d (ranks must match)", fn,
                          y->ndim, x->ndim);
    const int last = x->ndim - 1;
    if (last == 1 && (s = attn__check_dim(fn, "y", y, 0, "x", x, 0, "one output row per row")))
        return s;
    const int64_t rows = last ? x->shape[0] : 1, in = x->shape[last], out = y->shape[last];
    if ((s = check_packed(fn, Wp, in, out, last ? "x.shape[1]" : "x.shape[0]",
                          last ? "y.shape[1]" : "y.shape[0]")))
        return s;
    if (bias && ((s = attn__check_view(fn, "bias", bias, 1)) ||
                 (s = attn__check_dim(fn, "bias", bias, 0, "y", y, last, "one bias per output"))))
        return s;
    if ((s = attn__check_output(fn, "y", y)) || (s = attn__check_disjoint(fn, "y", y, "x", x)) ||
        (s = attn__check_disjoint(fn, "y", y, "Wp", Wp)) ||
        (bias && (s = attn__check_disjoint(fn, "y", y, "bias", bias))))
        return s;
    if ((s = attn__isa_ready(fn))) return s;

    const attn__panel_fn kernel = attn__panel_for(ATTN_ISA_AUTO);
    const int64_t panels = Wp->shape[0];
    const int64_t xs0 = last ? x->stride[0] : 0, xs1 = x->stride[last];
    const int64_t ys0 = last ? y->stride[0] : 0, ys1 = y->stride[last];
    const float *bd = bias ? bias->data : NULL;
    const int64_t bs = bias ? bias->stride[0] : 0;
    int64_t work; /* multiply-adds, saturated */
    if (__builtin_mul_overflow(rows, in, &work) || __builtin_mul_overflow(work, out, &work))
        work = INT64_MAX;
    const int64_t nt = attn__gemv_threads(attn__threads(num_threads), panels, work);
#pragma omp parallel num_threads((int)nt) if (nt > 1)
    {
#ifdef _OPENMP
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
#else
        const int64_t t = 0, T = 1;
#endif
        float tmp[ATTN_GEMV_MAX_ROWS * ATTN_PANEL]; /* y rows with a column stride != 1 */
        for (int64_t p = panels * t / T; p < panels * (t + 1) / T; p++) {
            const int64_t c0 = p * ATTN_PANEL;
            const int n = (int)(out - c0 < ATTN_PANEL ? out - c0 : ATTN_PANEL);
            for (int64_t m0 = 0; m0 < rows; m0 += ATTN_GEMV_MAX_ROWS) {
                const int M =
                    (int)(rows - m0 < ATTN_GEMV_MAX_ROWS ? rows - m0 : ATTN_GEMV_MAX_ROWS);
                float *yd = y->data + m0 * ys0 + c0 * ys1; /* seek to y[m0, c0] */
                kernel(ys1 == 1 ? yd : tmp, ys1 == 1 ? ys0 : ATTN_PANEL, x->data + m0 * xs0, xs0,
                       xs1, Wp->data + p * in * ATTN_PANEL, in, bd ? bd + c0 * bs : NULL, bs, M, n);
                if (ys1 != 1)
                    for (int m = 0; m < M; m++)
                        for (int c = 0; c < n; c++)
                            yd[m * ys0 + c * ys1] = tmp[m * ATTN_PANEL + c];
            }
        }
    }
    return ATTN_OK;
}
