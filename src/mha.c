/* mha.c - attention modules: projections, heads, output projection (S2-S7).
 *
 * Shapes through attn_mha (H = NH query heads of size HS, Hkv key/value
 * heads, values of size HSv; Hkv = H unless grouped-query):
 *   xq (B, Nq, Dq), xkv (B, Nkv, Dkv)
 *   1. q = xq @ Wq + bq    (B, Nq,  H*HS)     // "bic,hce->bi(he)"
 *      k = xkv @ Wk + bk   (B, Nkv, Hkv*HS)   // "bjc,gce->bj(ge)"
 *      v = xkv @ Wv + bv   (B, Nkv, Hkv*HSv)  // "bjc,gcf->bj(gf)"
 *   2. heads by strides:   q (B, H, Nq, HS) = q.reshape(B, Nq, H, HS).transpose(0, 2, 1, 3),
 *      k, v likewise with Hkv heads (attn_sdpa maps query head h to h / (H/Hkv))
 *   3. a = attn_sdpa(q, k, v)  (B, H, Nq, HSv), written straight into
 *      cat (B, Nq, H*HSv) seen as (B, H, Nq, HSv) by strides: the concat is free
 *   4. out = cat @ Wo + bo  (B, Nq, Dout)   // "bio,od->bid"
 * Rank-2 inputs (one sequence) are B = 1 seen through a stride-0 dimension. */
#include "internal.h"
#include "mha_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Key/value heads: num_kv_heads, 0 meaning num_heads. */
static int64_t attn__kv_heads(const attn_mha_params *p) {
    return p->num_kv_heads == 0 ? p->num_heads : p->num_kv_heads;
}

/* x (N, D) or (B, N, D) as rank 3. */
static attn_view as3(const attn_view *x) {
    attn_view r = *x;
    if (x->ndim == 2) {
        r.ndim = 3;
        r.shape[2] = x->shape[1];
        r.stride[2] = x->stride[1];
        r.shape[1] = x->shape[0];
        r.stride[1] = x->stride[0];
        r.shape[0] = 1;
        r.stride[0] = 0;
    }
    return r;
}

/* dst (B, N, H*HS) contiguous = x (B, N, Din) @ W (H, Din, HS) + bias (H, HS).
 * When W's heads sit side by side in one matrix (the fused layout, or one
 * head) it is one GEMM (Din, H*HS); otherwise one GEMM per head. */
static void project(const attn_view *x, const attn_view *W, const attn_view *bias, float *dst,
                    int threads) {
    const int64_t B = x->shape[0], N = x->shape[1], Din = x->shape[2];
    const int64_t H = W->shape[0], HS = W->shape[2], ld = H * HS;
    const bool has_bias = bias->data != NULL;
    const bool side_by_side = H == 1 || W->stride[0] == HS * W->stride[2];
    const bool bias_flat = !has_bias || H == 1 || bias->stride[0] == HS * bias->stride[1];
    /* Rows of all batches form one matrix when x's batches are evenly spaced. */
    const bool flat = B == 1 || x->stride[0] == N * x->stride[1];
    const int64_t nb = flat ? 1 : B, rows = flat ? B * N : N;
    for (int64_t b = 0; b < nb; b++) {
        attn_view A = {x->data + b * x->stride[0], 2, {rows, Din}, {x->stride[1], x->stride[2]}};
        if (side_by_side && bias_flat) {
            attn_view W2 = {W->data, 2, {Din, ld}, {W->stride[1], W->stride[2]}};
            attn_view b1 = {bias->data, 1, {ld}, {has_bias ? bias->stride[1] : 0}};
            attn_view C = {dst + b * N * ld, 2, {rows, ld}, {ld, 1}};
            attn__gemm(&A, &W2, has_bias ? &b1 : NULL, &C, threads);
            continue;
        }
        for (int64_t h = 0; h < H; h++) {
            attn_view Wh = {W->data + h * W->stride[0], 2, {Din, HS}, {W->stride[1], W->stride[2]}};
            attn_view bh = {has_bias ? bias->data + h * bias->stride[0] : NULL,
                            1,
                            {HS},
                            {has_bias ? bias->stride[1] : 0}};
            attn_view C = {dst + b * N * ld + h * HS, 2, {rows, HS}, {ld, 1}};
            attn__gemm(&A, &Wh, has_bias ? &bh : NULL, &C, threads);
        }
    }
}

static attn_status check_weight(const char *fn, const char *name, const attn_view *W, int64_t H,
                                const char *h_name, int64_t Din, const char *din_name) {
    attn_status s = attn__check_view(fn, name, W, 3);
    if (s) return s;
    if (W->shape[0] != H)
        return attn__fail(ATTN_ERR_SHAPE, "%s: %s.shape[0]=%" PRId64 " but %s=%" PRId64, fn, name,
                          W->shape[0], h_name, H);
    if (W->shape[1] != Din)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: %s.shape[1]=%" PRId64 " but %s=%" PRId64
                          " (W is (heads, in, head size))",
                          fn, name, W->shape[1], din_name, Din);
    return ATTN_OK;
}

static attn_status check_bias(const char *fn, const char *name, const attn_view *b,
                              const attn_view *W) {
    if (!b->data) return ATTN_OK;
    attn_status s = attn__check_view(fn, name, b, 2);
    if (s) return s;
    if (b->shape[0] != W->shape[0] || b->shape[1] != W->shape[2])
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: %s.shape=(%" PRId64 ", %" PRId64 ") but must be (%" PRId64
                          ", %" PRId64 ") (heads, head size)",
                          fn, name, b->shape[0], b->shape[1], W->shape[0], W->shape[2]);
    return ATTN_OK;
}

/* Everything attn_mha checks before it allocates or writes. */
static attn_status check_mha(const char *fn, const attn_mha_params *p, const attn_view *xq,
                             const attn_view *xkv, const attn_view *out) {
    attn_status s;
    if (!p) return attn__fail(ATTN_ERR_NULL, "%s: params is NULL", fn);
    if (p->num_heads < 1)
        return attn__fail(ATTN_ERR_SHAPE, "%s: num_heads=%" PRId64 " must be >= 1", fn,
                          p->num_heads);
    if ((s = attn__check_view(fn, "xq", xq, 0)) || (s = attn__check_view(fn, "xkv", xkv, 0)) ||
        (s = attn__check_view(fn, "out", out, 0)))
        return s;
    if (xq->ndim != 2 && xq->ndim != 3)
        return attn__fail(ATTN_ERR_SHAPE, "%s: xq.ndim=%d but must be 2 (N, D) or 3 (B, N, D)", fn,
                          xq->ndim);
    if (xkv->ndim != xq->ndim)
        return attn__fail(ATTN_ERR_SHAPE, "%s: xkv.ndim=%d but xq.ndim=%d (ranks must match)", fn,
                          xkv->ndim, xq->ndim);
    if (out->ndim != xq->ndim)
        return attn__fail(ATTN_ERR_SHAPE, "%s: out.ndim=%d but xq.ndim=%d (ranks must match)", fn,
                          out->ndim, xq->ndim);
    const int last = xq->ndim - 1;
    if (xq->ndim == 3 &&
        (s = attn__check_dim(fn, "xkv", xkv, 0, "xq", xq, 0, "batch size must match")))
        return s;
    const int64_t H = p->num_heads, Hkv = attn__kv_heads(p);
    if (Hkv < 1 || Hkv > H || H % Hkv != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: num_kv_heads=%" PRId64 " must divide num_heads=%" PRId64
                          " (0 means num_heads)",
                          fn, p->num_kv_heads, H);
    /* Without GQA the message keeps naming num_heads. */
    const char *kvn = p->num_kv_heads == 0 ? "num_heads" : "num_kv_heads";
    if ((s = check_weight(fn, "Wq", &p->Wq, H, "num_heads", xq->shape[last], "xq's width")) ||
        (s = check_weight(fn, "Wk", &p->Wk, Hkv, kvn, xkv->shape[last], "xkv's width")) ||
        (s = check_weight(fn, "Wv", &p->Wv, Hkv, kvn, xkv->shape[last], "xkv's width")))
        return s;
    if ((s = attn__check_dim(fn, "Wk", &p->Wk, 2, "Wq", &p->Wq, 2,
                             "q and k head sizes must match")))
        return s;
    if ((s = check_bias(fn, "bq", &p->bq, &p->Wq)) || (s = check_bias(fn, "bk", &p->bk, &p->Wk)) ||
        (s = check_bias(fn, "bv", &p->bv, &p->Wv)))
        return s;
    const int64_t cat = H * p->Wv.shape[2];
    int64_t dout = cat;
    if (p->Wo.data) {
        if ((s = attn__check_view(fn, "Wo", &p->Wo, 2))) return s;
        if (p->Wo.shape[0] != cat)
            return attn__fail(ATTN_ERR_SHAPE,
                              "%s: Wo.shape[0]=%" PRId64 " but num_heads*HSv=%" PRId64
                              " (Wo maps the concatenated heads)",
                              fn, p->Wo.shape[0], cat);
        dout = p->Wo.shape[1];
        if (p->bo.data &&
            ((s = attn__check_view(fn, "bo", &p->bo, 1)) ||
             (s = attn__check_dim(fn, "bo", &p->bo, 0, "Wo", &p->Wo, 1, "one bias per output"))))
            return s;
    } else if (p->bo.data) {
        return attn__fail(ATTN_ERR_ARG, "%s: bo is given but Wo is not", fn);
    }
    for (int i = 0; i < last; i++)
        if ((s = attn__check_dim(fn, "out", out, i, "xq", xq, i, "leading sizes must match")))
            return s;
    if (out->shape[last] != dout)
        return attn__fail(
            ATTN_ERR_SHAPE, "%s: out.shape[%d]=%" PRId64 " but must be %" PRId64 " (%s)", fn, last,
            out->shape[last], dout, p->Wo.data ? "Wo.shape[1]" : "num_heads * value head size");
    if ((s = attn__check_output(fn, "out", out))) return s;
    const attn_view *ins[] = {xq,     xkv,    &p->Wq, &p->Wk, &p->Wv,
                              &p->bq, &p->bk, &p->bv, &p->Wo, &p->bo};
    static const char *const names[] = {"xq", "xkv", "Wq", "Wk", "Wv",
                                        "bq", "bk",  "bv", "Wo", "bo"};
    for (int i = 0; i < 10; i++)
        if (ins[i]->data && (s = attn__check_disjoint(fn, "out", out, names[i], ins[i]))) return s;
    return ATTN_OK;
}

/* Whether q, k and v weights sit side by side in one matrix, [Wq | Wk | Wv]
 * with equal strides (the fused (D, (H + 2*Hkv)*HS) layout), and their
 * biases likewise. If so, W and bias become that matrix as one head:
 * (1, Din, (H + 2*Hkv)*HS). */
static bool fused_qkv(const attn_mha_params *p, attn_view *W, attn_view *bias) {
    const attn_view *Ws[3] = {&p->Wq, &p->Wk, &p->Wv}, *bs[3] = {&p->bq, &p->bk, &p->bv};
    const int64_t H = p->num_heads, Hkv = attn__kv_heads(p), HS = p->Wq.shape[2];
    /* Column where part i starts: q at 0, k at H*HS, v at (H + Hkv)*HS. */
    const int64_t start[3] = {0, H * HS, (H + Hkv) * HS}, heads[3] = {H, Hkv, Hkv};
    const int64_t rs = p->Wq.stride[1], cs = p->Wq.stride[2];
    const bool has_bias = p->bq.data != NULL;
    const int64_t bst = has_bias ? p->bq.stride[1] : 0;
    if (p->Wv.shape[2] != HS) return false;
    for (int i = 0; i < 3; i++) {
        const attn_view *w = Ws[i], *b = bs[i];
        if ((heads[i] > 1 && w->stride[0] != HS * cs) || w->stride[1] != rs || w->stride[2] != cs ||
            w->data != p->Wq.data + start[i] * cs)
            return false;
        if ((b->data != NULL) != has_bias) return false;
        if (has_bias && ((heads[i] > 1 && b->stride[0] != HS * bst) || b->stride[1] != bst ||
                         b->data != p->bq.data + start[i] * bst))
            return false;
    }
    const int64_t width = (H + 2 * Hkv) * HS;
    *W = (attn_view){p->Wq.data, 3, {1, p->Wq.shape[1], width}, {0, rs, cs}};
    *bias = (attn_view){has_bias ? p->bq.data : NULL, 2, {1, width}, {0, bst}};
    return true;
}

attn_status attn_mha(const attn_mha_params *p, const attn_view *xq, const attn_view *xkv,
                     attn_view *out, const attn_opts *opts) {
    const char *fn = "attn_mha";
    attn_status s = attn__isa_ready(fn);
    if (s) return s;
    if (!xkv) xkv = xq;
    if ((s = check_mha(fn, p, xq, xkv, out))) return s;
    attn_opts defaults = attn_opts_default();
    const attn_opts *o = opts ? opts : &defaults;
    const int threads = attn__threads(o->num_threads);

    const attn_view x3 = as3(xq), kv3 = as3(xkv), out3 = as3(out);
    const int64_t B = x3.shape[0], Nq = x3.shape[1], Nkv = kv3.shape[1];
    const int64_t H = p->num_heads, Hkv = attn__kv_heads(p), HS = p->Wq.shape[2],
                  HSv = p->Wv.shape[2];
    attn_view Wf, bf;
    const bool fused = attn__same_view(xq, xkv) && fused_qkv(p, &Wf, &bf);
    /* Scratch: q (B, Nq, H*HS), k (B, Nkv, Hkv*HS), v (B, Nkv, Hkv*HSv) - or,
     * fused, one qkv (B, N, (H + 2*Hkv)*HS) - and cat (B, Nq, H*HSv) when
     * there is a Wo. */
    size_t nq, nk, nv, nc;
    if (__builtin_mul_overflow((size_t)(B * Nq), (size_t)(H * HS), &nq) ||
        __builtin_mul_overflow((size_t)(B * Nkv), (size_t)(Hkv * HS), &nk) ||
        __builtin_mul_overflow((size_t)(B * Nkv), (size_t)(Hkv * HSv), &nv) ||
        __builtin_mul_overflow((size_t)(B * Nq), (size_t)(H * HSv), &nc) ||
        __builtin_add_overflow(nq, nk, &nk) || __builtin_add_overflow(nk, nv, &nv))
        return attn__fail(ATTN_ERR_OVERFLOW, "%s: projected sizes overflow", fn);
    /* One block holds q, then k, then v (nv now counts all three). */
    float *qkv = attn__alloc(nv, sizeof(float));
    float *cat = p->Wo.data ? attn__alloc(nc, sizeof(float)) : NULL;
    if (!qkv || (p->Wo.data && !cat)) {
        s = attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate the projected q, k, v", fn);
        goto done;
    }

    /* 1. Projections, and 2. heads by strides: (B, N, H*HS) read as (B, H, N, HS). */
    attn_view q4, k4, v4;
    if (fused) {
        const int64_t ld = (H + 2 * Hkv) * HS; /* row of qkv: [q | k | v] */
        project(&x3, &Wf, &bf, qkv, threads);
        q4 = (attn_view){qkv, 4, {B, H, Nq, HS}, {Nq * ld, HS, ld, 1}};
        k4 = (attn_view){qkv + H * HS, 4, {B, Hkv, Nq, HS}, {Nq * ld, HS, ld, 1}};
        v4 = (attn_view){qkv + (H + Hkv) * HS, 4, {B, Hkv, Nq, HS}, {Nq * ld, HS, ld, 1}};
    } else {
        float *q = qkv, *k = qkv + nq, *v = qkv + nk;
        project(&x3, &p->Wq, &p->bq, q, threads);
        project(&kv3, &p->Wk, &p->bk, k, threads);
        project(&kv3, &p->Wv, &p->bv, v, threads);
        q4 = (attn_view){q, 4, {B, H, Nq, HS}, {Nq * H * HS, HS, H * HS, 1}};
        k4 = (attn_view){k, 4, {B, Hkv, Nkv, HS}, {Nkv * Hkv * HS, HS, Hkv * HS, 1}};
        v4 = (attn_view){v, 4, {B, Hkv, Nkv, HSv}, {Nkv * Hkv * HSv, HSv, Hkv * HSv, 1}};
    }

    /* 3. Attention, written into the concatenated layout (B, Nq, H*HSv). */
    attn_view a4;
    if (cat) {
        a4 = (attn_view){cat, 4, {B, H, Nq, HSv}, {Nq * H * HSv, HSv, H * HSv, 1}};
    } else {
        a4 = (attn_view){out3.data,
                         4,
                         {B, H, Nq, HSv},
                         {out3.stride[0], HSv * out3.stride[2], out3.stride[1], out3.stride[2]}};
    }
    if ((s = attn_sdpa(&q4, &k4, &v4, &a4, o))) goto done;

    /* 4. Output projection. */
    if (cat) {
        attn_view c =
            out->ndim == 3 ? attn_view_3d(cat, B, Nq, H * HSv) : attn_view_2d(cat, Nq, H * HSv);
        s = attn_linear(&c, &p->Wo, p->bo.data ? &p->bo : NULL, out, threads);
    }
done:
    attn__free(qkv);
    attn__free(cat);
    return s;
}

/* The fused layout's checks and views; fn names the public caller. */
static attn_status from_fused(const char *fn, const attn_view *Wqkv, const attn_view *bqkv,
                              int64_t H, int64_t Hkv, int64_t HS, const attn_view *Wo,
                              const attn_view *bo, attn_mha_params *p) {
    attn_status s;
    if (bqkv &&
        ((s = attn__check_view(fn, "bqkv", bqkv, 1)) ||
         (s = attn__check_dim(fn, "bqkv", bqkv, 0, "Wqkv", Wqkv, 1, "one bias per column"))))
        return s;
    if (Wo && (s = attn__check_view(fn, "Wo", Wo, 2))) return s;
    if (bo && !Wo) return attn__fail(ATTN_ERR_ARG, "%s: bo is given but Wo is not", fn);
    if (bo && ((s = attn__check_view(fn, "bo", bo, 1)) ||
               (s = attn__check_dim(fn, "bo", bo, 0, "Wo", Wo, 1, "one bias per output"))))
        return s;
    const int64_t D = Wqkv->shape[0], rs = Wqkv->stride[0], cs = Wqkv->stride[1];
    attn_mha_params r = {0};
    r.num_heads = H;
    r.num_kv_heads = Hkv == H ? 0 : Hkv;
    attn_view *W[3] = {&r.Wq, &r.Wk, &r.Wv}, *bv[3] = {&r.bq, &r.bk, &r.bv};
    const int64_t start[3] = {0, H * HS, (H + Hkv) * HS}, heads[3] = {H, Hkv, Hkv};
    for (int part = 0; part < 3; part++) {
        /* W_part[h, i, e] = Wqkv[i, start[part] + h*HS + e] */
        *W[part] =
            (attn_view){Wqkv->data + start[part] * cs, 3, {heads[part], D, HS}, {HS * cs, rs, cs}};
        if (bqkv) {
            const int64_t bs = bqkv->stride[0];
            *bv[part] =
                (attn_view){bqkv->data + start[part] * bs, 2, {heads[part], HS}, {HS * bs, bs}};
        }
    }
    if (Wo) r.Wo = *Wo;
    if (bo) r.bo = *bo;
    *p = r;
    return ATTN_OK;
}

attn_status attn_mha_from_fused(const attn_view *Wqkv, const attn_view *bqkv, int64_t num_heads,
                                const attn_view *Wo, const attn_view *bo, attn_mha_params *p) {
    const char *fn = "attn_mha_from_fused";
    attn_status s;
    if (!p) return attn__fail(ATTN_ERR_NULL, "%s: p is NULL", fn);
    if ((s = attn__check_view(fn, "Wqkv", Wqkv, 2))) return s;
    if (num_heads < 1)
        return attn__fail(ATTN_ERR_SHAPE, "%s: num_heads=%" PRId64 " must be >= 1", fn, num_heads);
    const int64_t D = Wqkv->shape[0];
    if (Wqkv->shape[1] != 3 * D)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: Wqkv.shape[1]=%" PRId64 " but must be 3*D=%" PRId64
                          " (Wqkv is (D, 3*D))",
                          fn, Wqkv->shape[1], 3 * D);
    if (D % num_heads != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: D=%" PRId64 " is not a multiple of num_heads=%" PRId64, fn, D,
                          num_heads);
    return from_fused(fn, Wqkv, bqkv, num_heads, num_heads, D / num_heads, Wo, bo, p);
}

attn_status attn_mha_from_fused_gqa(const attn_view *Wqkv, const attn_view *bqkv, int64_t num_heads,
                                    int64_t num_kv_heads, const attn_view *Wo, const attn_view *bo,
                                    attn_mha_params *p) {
    const char *fn = "attn_mha_from_fused_gqa";
    attn_status s;
    if (!p) return attn__fail(ATTN_ERR_NULL, "%s: p is NULL", fn);
    if ((s = attn__check_view(fn, "Wqkv", Wqkv, 2))) return s;
    const int64_t H = num_heads, Hkv = num_kv_heads == 0 ? num_heads : num_kv_heads;
    /* Wqkv is a valid view, so its width is far below 2^62: H + 2*Hkv cannot
     * overflow once both are at most that width. */
    const int64_t C = Wqkv->shape[1];
    if (H < 1 || H > C)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: num_heads=%" PRId64 " must be 1..Wqkv.shape[1]=%" PRId64, fn, H, C);
    if (Hkv < 1 || Hkv > H || H % Hkv != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: num_kv_heads=%" PRId64 " must divide num_heads=%" PRId64
                          " (0 means num_heads)",
                          fn, num_kv_heads, H);
    const int64_t parts = H + 2 * Hkv;
    if (C % parts != 0)
        return attn__fail(ATTN_ERR_SHAPE,
                          "%s: Wqkv.shape[1]=%" PRId64 " is not a multiple of num_heads + "
                          "2*num_kv_heads=%" PRId64 " (Wqkv is (D, (H + 2*Hkv)*HS))",
                          fn, C, parts);
    return from_fused(fn, Wqkv, bqkv, H, Hkv, C / parts, Wo, bo, p);
}

/* One head, no output projection: the module with H = 1. */
static attn_status single_head(const char *fn, const attn_view *xq, const attn_view *xkv,
                               const attn_view *Wq, const attn_view *Wk, const attn_view *Wv,
                               attn_view *out, const attn_opts *opts) {
    attn_status s;
    if ((s = attn__check_view(fn, "Wq", Wq, 2)) || (s = attn__check_view(fn, "Wk", Wk, 2)) ||
        (s = attn__check_view(fn, "Wv", Wv, 2)))
        return s;
    attn_mha_params p = {0};
    p.num_heads = 1;
    const attn_view *src[3] = {Wq, Wk, Wv};
    attn_view *dst[3] = {&p.Wq, &p.Wk, &p.Wv};
    for (int i = 0; i < 3; i++)
        *dst[i] = (attn_view){src[i]->data,
                              3,
                              {1, src[i]->shape[0], src[i]->shape[1]},
                              {0, src[i]->stride[0], src[i]->stride[1]}};
    s = attn_mha(&p, xq, xkv, out, opts);
    if (s) {
        /* Name the caller, not the module it delegates to. */
        const char *msg = attn_last_error();
        if (strncmp(msg, "attn_mha: ", 10) == 0) {
            char copy[512];
            snprintf(copy, sizeof copy, "%s", msg + 10);
            attn__fail(s, "%s: %s", fn, copy);
        }
    }
    return s;
}

attn_status attn_self_attention(const attn_view *x, const attn_view *Wq, const attn_view *Wk,
                                const attn_view *Wv, attn_view *out, const attn_opts *opts) {
    return single_head("attn_self_attention", x, x, Wq, Wk, Wv, out, opts);
}

attn_status attn_cross_attention(const attn_view *xq, const attn_view *xkv, const attn_view *Wq,
                                 const attn_view *Wk, const attn_view *Wv, attn_view *out,
                                 const attn_opts *opts) {
    const char *fn = "attn_cross_attention";
    attn_status s;
    if ((s = attn__check_view(fn, "xkv", xkv, 0))) return s;
    return single_head(fn, xq, xkv, Wq, Wk, Wv, out, opts);
}

/* attn_mha's checks and projections, shared with src/mha_backward.c. */
attn_status attn__mha_check(const char *fn, const attn_mha_params *p, const attn_view *xq,
                            const attn_view *xkv, const attn_view *out) {
    return check_mha(fn, p, xq, xkv, out);
}

void attn__mha_project(const attn_view *x3, const attn_view *W, const attn_view *bias, float *dst,
                       int threads) {
    project(x3, W, bias, dst, threads);
}
