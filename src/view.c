/* view.c - constructing and checking strided views. */
#include "internal.h"

#include <inttypes.h>
#include <stdlib.h>

attn_view attn_view_contiguous(float *data, int ndim, const int64_t *shape) {
    attn_view v = {0};
    v.data = data;
    if (ndim < 0) ndim = 0;
    if (ndim > ATTN_MAX_NDIM) ndim = ATTN_MAX_NDIM;
    v.ndim = ndim;
    int64_t stride = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        v.shape[i] = shape ? shape[i] : 0;
        v.stride[i] = stride;
        /* A bad shape is reported when the view is used; keep the strides sane. */
        if (v.shape[i] > 0 && !__builtin_mul_overflow(stride, v.shape[i], &stride)) continue;
        stride = 1;
    }
    return v;
}

attn_view attn_view_1d(float *data, int64_t n0) {
    int64_t s[1] = {n0};
    return attn_view_contiguous(data, 1, s);
}

attn_view attn_view_2d(float *data, int64_t n0, int64_t n1) {
    int64_t s[2] = {n0, n1};
    return attn_view_contiguous(data, 2, s);
}

attn_view attn_view_3d(float *data, int64_t n0, int64_t n1, int64_t n2) {
    int64_t s[3] = {n0, n1, n2};
    return attn_view_contiguous(data, 3, s);
}

attn_view attn_view_4d(float *data, int64_t n0, int64_t n1, int64_t n2, int64_t n3) {
    int64_t s[4] = {n0, n1, n2, n3};
    return attn_view_contiguous(data, 4, s);
}

attn_view attn_view_swap(attn_view v, int a, int b) {
    if (a < 0 || b < 0 || a >= v.ndim || b >= v.ndim || v.ndim > ATTN_MAX_NDIM) return v;
    int64_t t = v.shape[a];
    v.shape[a] = v.shape[b];
    v.shape[b] = t;
    t = v.stride[a];
    v.stride[a] = v.stride[b];
    v.stride[b] = t;
    return v;
}

/* q, k, v views (B, heads, N, d) of the fused (B, N, C) rows, part p
 * starting at column start[p]. */
static void split_views(const attn_view *qkv, const int64_t start[3], const int64_t heads[3],
                        int64_t d, attn_view *parts[3]) {
    for (int p = 0; p < 3; p++) {
        attn_view *o = parts[p];
        o->data = qkv->data + start[p] * qkv->stride[2];
        o->ndim = 4;
        o->shape[0] = qkv->shape[0]; /* B */
        o->shape[1] = heads[p];      /* H or Hkv */
        o->shape[2] = qkv->shape[1]; /* N */
        o->shape[3] = d;
        o->stride[0] = qkv->stride[0];
        o->stride[1] = d * qkv->stride[2];
        o->stride[2] = qkv->stride[1];
        o->stride[3] = qkv->stride[2];
    }
}

attn_status attn_split_qkv(const attn_view *qkv, int64_t num_heads, attn_view *q, attn_view *k,
                           attn_view *v) {
    const char *fn = "attn_split_qkv";
    attn_status s = attn__check_view(fn, "qkv", qkv, 3);
    if (s) return s;
    if (!q || !k || !v) return attn__fail(ATTN_ERR_NULL, "%s: q, k and v must not be NULL", fn);
    if (num_heads < 1)
        return attn__fail(ATTN_ERR_SHAPE, "%s: num_heads=%" PRId64 " must be >= 1", fn, num_heads);
    int64_t C = qkv->shape[2];
    if (num_heads > C / 3 || C % (3 * num_heads) != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: qkv.shape[2]=%" PRId64
                          " is not a multiple of 3*num_heads (num_heads=%" PRId64 ")",
                          fn, C, num_heads);
    if (qkv->stride[2] != 1)
        return attn__fail(ATTN_ERR_STRIDE,
                          "%s: qkv.stride[2]=%" PRId64
                          " but must be 1 (the last dimension contiguous; rows may have any "
                          "stride)",
                          fn, qkv->stride[2]);
    int64_t D = C / 3, d = D / num_heads;
    const int64_t start[3] = {0, D, 2 * D}, heads[3] = {num_heads, num_heads, num_heads};
    attn_view *parts[3] = {q, k, v};
    split_views(qkv, start, heads, d, parts);
    return ATTN_OK;
}

attn_status attn_split_qkv_gqa(const attn_view *qkv, int64_t num_heads, int64_t num_kv_heads,
                               attn_view *q, attn_view *k, attn_view *v) {
    const char *fn = "attn_split_qkv_gqa";
    attn_status s = attn__check_view(fn, "qkv", qkv, 3);
    if (s) return s;
    if (!q || !k || !v) return attn__fail(ATTN_ERR_NULL, "%s: q, k and v must not be NULL", fn);
    const int64_t C = qkv->shape[2], H = num_heads;
    const int64_t Hkv = num_kv_heads == 0 ? num_heads : num_kv_heads;
    if (H < 1 || H > C)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: num_heads=%" PRId64 " must be 1..qkv.shape[2]=%" PRId64, fn, H, C);
    if (Hkv < 1 || Hkv > H || H % Hkv != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: num_kv_heads=%" PRId64 " must divide num_heads=%" PRId64
                          " (0 means num_heads)",
                          fn, num_kv_heads, H);
    /* H, Hkv <= C < 2^62 (a valid view): no overflow. */
    const int64_t parts = H + 2 * Hkv;
    if (C % parts != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: qkv.shape[2]=%" PRId64 " is not a multiple of num_heads + "
                          "2*num_kv_heads=%" PRId64 " (qkv is (B, N, (H + 2*Hkv)*d))",
                          fn, C, parts);
    const int64_t d = C / parts;
    const int64_t start[3] = {0, H * d, (H + Hkv) * d}, heads[3] = {H, Hkv, Hkv};
    attn_view *out[3] = {q, k, v};
    split_views(qkv, start, heads, d, out);
    return ATTN_OK;
}

attn_status attn__check_view(const char *fn, const char *name, const attn_view *v, int ndim) {
    if (!v) return attn__fail(ATTN_ERR_NULL, "%s: %s is NULL", fn, name);
    if (!v->data) return attn__fail(ATTN_ERR_NULL, "%s: %s.data is NULL", fn, name);
    if (ndim > 0 && v->ndim != ndim)
        return attn__fail(ATTN_ERR_SHAPE, "%s: %s.ndim=%d but must be %d", fn, name, v->ndim, ndim);
    if (v->ndim < 1 || v->ndim > ATTN_MAX_NDIM)
        return attn__fail(ATTN_ERR_SHAPE, "%s: %s.ndim=%d but must be 1..%d", fn, name, v->ndim,
                          ATTN_MAX_NDIM);
    int64_t span = 0, numel = 1;
    for (int i = 0; i < v->ndim; i++) {
        if (v->shape[i] < 1)
            return attn__fail(ATTN_ERR_SHAPE, "%s: %s.shape[%d]=%" PRId64 " must be >= 1", fn, name,
                              i, v->shape[i]);
        int64_t st = v->stride[i], term;
        if (st == INT64_MIN || __builtin_mul_overflow(v->shape[i] - 1, st < 0 ? -st : st, &term) ||
            __builtin_add_overflow(span, term, &span) ||
            __builtin_mul_overflow(numel, v->shape[i], &numel))
            return attn__fail(ATTN_ERR_OVERFLOW,
                              "%s: %s.shape[%d]=%" PRId64 " with stride %" PRId64
                              " overflows the addressable size",
                              fn, name, i, v->shape[i], st);
    }
    /* Byte offsets must fit too. */
    if (span > (int64_t)(PTRDIFF_MAX / sizeof(float)) ||
        numel > (int64_t)(PTRDIFF_MAX / sizeof(float)))
        return attn__fail(ATTN_ERR_OVERFLOW, "%s: %s spans more memory than can be addressed", fn,
                          name);
    return ATTN_OK;
}

attn_status attn__check_output(const char *fn, const char *name, const attn_view *v) {
    /* Sort the dimensions of size > 1 by |stride|; each must step over the
     * whole extent of the smaller ones, so no element is reached twice. */
    int idx[ATTN_MAX_NDIM], n = 0;
    for (int i = 0; i < v->ndim; i++)
        if (v->shape[i] > 1) idx[n++] = i;
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && llabs(v->stride[idx[b]]) < llabs(v->stride[idx[b - 1]]); b--) {
            int t = idx[b];
            idx[b] = idx[b - 1];
            idx[b - 1] = t;
        }
    int64_t extent = 1;
    for (int a = 0; a < n; a++) {
        int i = idx[a];
        int64_t st = llabs(v->stride[i]);
        if (st == 0)
            return attn__fail(ATTN_ERR_STRIDE,
                              "%s: %s.stride[%d]=0 on a dimension of size %" PRId64
                              " (an output must not broadcast)",
                              fn, name, i, v->shape[i]);
        if (st < extent)
            return attn__fail(ATTN_ERR_STRIDE,
                              "%s: %s.stride[%d]=%" PRId64 " makes elements of the output overlap",
                              fn, name, i, v->stride[i]);
        extent = st * (v->shape[i] - 1) + extent;
    }
    return ATTN_OK;
}

/* Lowest and highest element address of a checked view. */
static void span_of(const attn_view *v, uintptr_t *lo, uintptr_t *hi) {
    int64_t neg = 0, pos = 0;
    for (int i = 0; i < v->ndim; i++) {
        int64_t t = (v->shape[i] - 1) * v->stride[i];
        if (t < 0)
            neg += t;
        else
            pos += t;
    }
    *lo = (uintptr_t)v->data + (uintptr_t)(neg * (int64_t)sizeof(float));
    *hi = (uintptr_t)v->data + (uintptr_t)(pos * (int64_t)sizeof(float)) + sizeof(float) - 1;
}

bool attn__views_overlap(const attn_view *a, const attn_view *b) {
    uintptr_t alo, ahi, blo, bhi;
    span_of(a, &alo, &ahi);
    span_of(b, &blo, &bhi);
    return alo <= bhi && blo <= ahi;
}

bool attn__same_view(const attn_view *a, const attn_view *b) {
    if (a->data != b->data || a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i] || (a->shape[i] > 1 && a->stride[i] != b->stride[i]))
            return false;
    return true;
}

attn_status attn__check_disjoint(const char *fn, const char *out_name, const attn_view *out,
                                 const char *in_name, const attn_view *in) {
    if (attn__views_overlap(out, in))
        return attn__fail(ATTN_ERR_STRIDE, "%s: output %s overlaps input %s in memory", fn,
                          out_name, in_name);
    return ATTN_OK;
}

attn_status attn__check_disjoint_array(const char *fn, const char *out_name, const attn_view *out,
                                       const char *arr_name, const void *arr, size_t bytes) {
    if (!arr || bytes == 0) return ATTN_OK;
    uintptr_t olo, ohi;
    span_of(out, &olo, &ohi);
    const uintptr_t alo = (uintptr_t)arr, ahi = alo + (bytes - 1);
    if (olo <= ahi && alo <= ohi)
        return attn__fail(ATTN_ERR_STRIDE, "%s: output %s overlaps input %s in memory", fn,
                          out_name, arr_name);
    return ATTN_OK;
}

attn_status attn__check_dim(const char *fn, const char *a_name, const attn_view *a, int ia,
                            const char *b_name, const attn_view *b, int ib, const char *why) {
    if (a->shape[ia] == b->shape[ib]) return ATTN_OK;
    return attn__fail(ATTN_ERR_SHAPE,
                      "%s: %s.shape[%d]=%" PRId64 " but %s.shape[%d]=%" PRId64 " (%s)", fn, a_name,
                      ia, a->shape[ia], b_name, ib, b->shape[ib], why);
}

attn_status attn__numel(const char *fn, const char *name, const attn_view *v, int64_t *n) {
    int64_t p = 1;
    for (int i = 0; i < v->ndim; i++)
        if (__builtin_mul_overflow(p, v->shape[i], &p))
            return attn__fail(ATTN_ERR_OVERFLOW, "%s: %s has too many elements", fn, name);
    *n = p;
    return ATTN_OK;
}

attn_view attn__as4(const attn_view *v) {
    attn_view r = {0};
    r.data = v->data;
    r.ndim = 4;
    int pad = 4 - v->ndim;
    for (int i = 0; i < 4; i++) {
        r.shape[i] = i < pad ? 1 : v->shape[i - pad];
        r.stride[i] = i < pad ? 0 : v->stride[i - pad];
    }
    return r;
}

attn_status attn__check_x_to_y(const char *fn, const attn_view *x, const attn_view *y) {
    attn_status s;
    if ((s = attn__check_view(fn, "x", x, 0)) || (s = attn__check_view(fn, "y", y, 0))) return s;
    if (y->ndim != x->ndim)
        return attn__fail(ATTN_ERR_SHAPE, "%s: y.ndim=%d but x.ndim=%d (shapes must match)", fn,
                          y->ndim, x->ndim);
    for (int i = 0; i < x->ndim; i++)
        if ((s = attn__check_dim(fn, "y", y, i, "x", x, i, "shapes must match"))) return s;
    if ((s = attn__check_output(fn, "y", y))) return s;
    if (!attn__same_view(x, y) && (s = attn__check_disjoint(fn, "y", y, "x", x))) return s;
    return ATTN_OK;
}

attn_status attn__check_mask(const char *fn, const attn_view *m, const int64_t full[4],
                             const char *const names[4], attn_view *norm) {
    attn_status s = attn__check_view(fn, "mask", m, 4);
    if (s) return s;
    *norm = *m;
    for (int i = 0; i < 4; i++) {
        if (m->shape[i] == 1) {
            norm->shape[i] = full[i];
            norm->stride[i] = 0;
        } else if (m->shape[i] != full[i]) {
            return attn__fail(ATTN_ERR_SHAPE,
                              "%s: mask.shape[%d]=%" PRId64 " but must be %s=%" PRId64
                              " or 1 (broadcast)",
                              fn, i, m->shape[i], names[i], full[i]);
        }
    }
    return ATTN_OK;
}
