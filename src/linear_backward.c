/* linear_backward.c - the gradients of linear.c's y = x @ W + b.
 *   forward  y[n, o] = sum_i x[n, i] W[i, o] + b[o]      // "ni,io->no"
 *   backward dx[n, i] = sum_o dy[n, o] W[i, o]          // "no,io->ni"  (dy @ W^T)
 *            dW[i, o] = sum_n x[n, i] dy[n, o]          // "ni,no->io"  (x^T @ dy)
 *            db[o]    = sum_n dy[n, o]                  // "no->o"
 * (n runs over every leading index of x.) x and dy are copied to
 * contiguous (rows, in) and (rows, out) matrices, so each gradient is one
 * GEMM; results are then written through the outputs' strides. */
#include "internal.h"

#include "grad_util.h"

attn_status attn_linear_backward(const attn_view *x, const attn_view *W, const attn_view *dy,
                                 attn_view *dx, attn_view *dW, attn_view *db, int num_threads) {
    const char *fn = "attn_linear_backward";
    attn_status s;
    if ((s = attn__isa_ready(fn))) return s;
    if ((s = attn__check_view(fn, "x", x, 0)) || (s = attn__check_view(fn, "W", W, 2)) ||
        (s = attn__check_view(fn, "dy", dy, 0)))
        return s;
    if (x->ndim > 3)
        return attn__fail(ATTN_ERR_SHAPE, "%s: x.ndim=%d but must be 1..3", fn, x->ndim);
    if (dy->ndim != x->ndim)
        return attn__fail(ATTN_ERR_SHAPE, "%s: dy.ndim=%d but x.ndim=%d (ranks must match)", fn,
                          dy->ndim, x->ndim);
    const int last = x->ndim - 1;
    if ((s = attn__check_dim(fn, "W", W, 0, "x", x, last, "W is (in, out)")) ||
        (s = attn__check_dim(fn, "dy", dy, last, "W", W, 1, "W is (in, out)")))
        return s;
    for (int i = 0; i < last; i++)
        if ((s = attn__check_dim(fn, "dy", dy, i, "x", x, i, "leading sizes must match"))) return s;
    const attn_view *ins[3] = {x, W, dy};
    static const char *const in_names[3] = {"x", "W", "dy"};
    attn_view *outs[3] = {dx, dW, db};
    static const char *const out_names[3] = {"dx", "dW", "db"};
    if ((dx && (s = attn__grad_check_like(fn, "dx", dx, "x", x))) ||
        (dW && (s = attn__grad_check_like(fn, "dW", dW, "W", W))))
        return s;
    if (db) {
        if ((s = attn__check_view(fn, "db", db, 1))) return s;
        if (db->shape[0] != W->shape[1])
            return attn__fail(ATTN_ERR_SHAPE, "%s: db.shape[0]=%lld but W.shape[1]=%lld", fn,
                              (long long)db->shape[0], (long long)W->shape[1]);
    }
    if ((s = attn__grad_check_outputs(fn, outs, out_names, 3, ins, in_names, 3))) return s;

    const int64_t in = W->shape[0], out = W->shape[1];
    int64_t rows = 1;
    for (int i = 0; i < last; i++)
        rows *= x->shape[i];
    float *xm = NULL, *gm = NULL, *res = NULL;
    size_t nx, ng, nr;
    if (__builtin_mul_overflow((size_t)rows, (size_t)in, &nx) ||
        __builtin_mul_overflow((size_t)rows, (size_t)out, &ng) ||
        __builtin_mul_overflow(nx > (size_t)(in * out) ? nx : (size_t)(in * out), 1, &nr))
        return attn__fail(ATTN_ERR_OVERFLOW, "%s: sizes overflow", fn);
    xm = attn__alloc(nx, sizeof(float));
    gm = attn__alloc(ng, sizeof(float));
    res = attn__alloc(nr, sizeof(float));
    if (!xm || !gm || !res) {
        s = attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate %lld x %lld matrices", fn,
                       (long long)rows, (long long)(in > out ? in : out));
        goto done;
    }
    const int threads = attn__threads(num_threads);
    attn__grad_rows(x, xm);  /* x as (rows, in) */
    attn__grad_rows(dy, gm); /* dy as (rows, out) */
    const attn_view X = attn_view_2d(xm, rows, in), G = attn_view_2d(gm, rows, out);
    if (dx) {
        /* dx = dy @ W^T */
        const attn_view Wt = attn_view_swap(*W, 0, 1);
        attn_view R = attn_view_2d(res, rows, in);
        attn__gemm(&G, &Wt, NULL, &R, threads);
        attn__grad_store_rows(res, dx);
    }
    if (dW) {
        /* dW = x^T @ dy */
        const attn_view Xt = attn_view_swap(X, 0, 1);
        attn_view R = attn_view_2d(res, in, out);
        attn__gemm(&Xt, &G, NULL, &R, threads);
        attn__grad_store_rows(res, dW);
    }
    if (db) attn__grad_colsum(gm, rows, out, db);
done:
    attn__free(xm);
    attn__free(gm);
    attn__free(res);
    return s;
}
