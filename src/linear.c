/* linear.c - y = x @ W + b over the last axis (S2's projections, S9's biases).
 *   y[..., o] = sum_i x[..., i] W[i, o] + b[o]       // einsum "...i,io->...o" */
#include "internal.h"

attn_status attn_linear(const attn_view *x, const attn_view *W, const attn_view *bias, attn_view *y,
                        int num_threads) {
    const char *fn = "attn_linear";
    attn_status s;
    if ((s = attn__check_view(fn, "x", x, 0)) || (s = attn__check_view(fn, "W", W, 2)) ||
        (s = attn__check_view(fn, "y", y, 0)))
        return s;
    if (x->ndim > 3)
        return attn__fail(ATTN_ERR_SHAPE, "%s: x.ndim=%d but must be 1..3", fn, x->ndim);
    if (y->ndim != x->ndim)
        return attn__fail(ATTN_ERR_SHAPE, "%s: y.ndim=%d but x.ndim=%d (ranks must match)", fn,
                          y->ndim, x->ndim);
    const int last = x->ndim - 1;
    if ((s = attn__check_dim(fn, "W", W, 0, "x", x, last, "W is (in, out)")) ||
        (s = attn__check_dim(fn, "y", y, last, "W", W, 1, "W is (in, out)")))
        return s;
    for (int i = 0; i < last; i++)
        if ((s = attn__check_dim(fn, "y", y, i, "x", x, i, "leading sizes must match"))) return s;
    if (bias && ((s = attn__check_view(fn, "bias", bias, 1)) ||
                 (s = attn__check_dim(fn, "bias", bias, 0, "W", W, 1, "one bias per output"))))
        return s;
    if ((s = attn__check_output(fn, "y", y)) || (s = attn__check_disjoint(fn, "y", y, "x", x)) ||
        (s = attn__check_disjoint(fn, "y", y, "W", W)) ||
        (bias && (s = attn__check_disjoint(fn, "y", y, "bias", bias))))
        return s;
    if ((s = attn__isa_ready(fn))) return s;
    const int threads = attn__threads(num_threads);

    /* As (P, N, in) -> (P, N, out); C needs a unit column stride, else a temporary. */
    attn_view x4 = attn__as4(x), y4 = attn__as4(y);
    const int64_t P = x4.shape[1], N = x4.shape[2], out = W->shape[1];
    float *tmp = NULL;
    if (y4.stride[3] != 1 && out > 1) {
        tmp = attn__alloc((size_t)N * (size_t)out, sizeof(float));
        if (!tmp)
            return attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate a %lld x %lld temporary", fn,
                              (long long)N, (long long)out);
    }
    /* The P slabs are one matrix of P*N rows when both x's and y's slabs are
     * evenly spaced (always for P == 1): one product, so that few rows in
     * each slab (decoding a batch) still read W once, not P times. */
    const bool one_row = N == 1 && P > 1 && !tmp; /* rows P apart by stride[1] */
    const bool flat =
        P == 1 || one_row ||
        (!tmp && x4.stride[1] == N * x4.stride[2] && y4.stride[1] == N * y4.stride[2]);
    const int64_t np = flat ? 1 : P, rows = flat ? P * N : N;
    const int64_t xrs = one_row ? x4.stride[1] : x4.stride[2],
                  yrs = one_row ? y4.stride[1] : y4.stride[2];
    for (int64_t p = 0; p < np; p++) {
        attn_view A = {x4.data + p * x4.stride[1], 2, {rows, x4.shape[3]}, {xrs, x4.stride[3]}};
        attn_view C = {y4.data + p * y4.stride[1], 2, {rows, out}, {yrs, 1}};
        if (tmp) C = attn_view_2d(tmp, rows, out);
        attn__gemm(&A, W, bias, &C, threads);
        if (tmp)
            for (int64_t n = 0; n < rows; n++)
                for (int64_t o = 0; o < out; o++)
                    *attn__at4(&y4, 0, p, n, o) = tmp[n * out + o];
    }
    attn__free(tmp);
    return ATTN_OK;
}
