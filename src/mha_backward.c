/* mha_backward.c - the gradients of mha.c's attn_mha, step by step in
 * reverse (H query heads of size HS, Hkv kv heads, values of size HSv,
 * Mq = B*Nq and Mkv = B*Nkv rows):
 *   forward                                   backward
 *   1. q = xq @ Wq + bq  (Mq, H*HS)           dWq[h] = xq^T dq_h; dbq = colsum dq; dxq += dq Wq^T
 *      k = xkv @ Wk + bk (Mkv, Hkv*HS)        dWk, dbk, dxkv += dk Wk^T  (likewise)
 *      v = xkv @ Wv + bv (Mkv, Hkv*HSv)       dWv, dbv, dxkv += dv Wv^T
 *   3. a = attn_sdpa(q, k, v)                 dq, dk, dv = attn_sdpa_backward(q, k, v, a, lse,
 * dcat)
 *   4. out = cat @ Wo + bo                    dWo = cat^T dout; dbo = colsum dout; dcat = dout Wo^T
 * What the backward needs from the forward (q, k, v, a and lse) is
 * recomputed from the inputs and weights (one more forward: no state to
 * keep between the calls, and dropout's keep pattern is regenerated from
 * the seed). With self-attention (xkv NULL) dxq collects all three paths. */
#include "internal.h"

#include "grad_util.h"
#include "mha_internal.h"

#include <inttypes.h>
#include <string.h>

static int64_t kv_heads(const attn_mha_params *p) {
    return p->num_kv_heads == 0 ? p->num_heads : p->num_kv_heads;
}

static attn_view as3(const attn_view *x) {
    attn_view r = *x;
    if (x->ndim == 2) {
        r = (attn_view){x->data, 3, {1, x->shape[0], x->shape[1]}, {0, x->stride[0], x->stride[1]}};
    }
    return r;
}

/* A stacked weight (H, Din, HS) as one contiguous (Din, H*HS) matrix. */
static void weight_cat(const attn_view *W, float *dst) {
    const int64_t H = W->shape[0], Din = W->shape[1], HS = W->shape[2];
    for (int64_t h = 0; h < H; h++)
        for (int64_t c = 0; c < Din; c++)
            for (int64_t e = 0; e < HS; e++)
                dst[c * H * HS + h * HS + e] =
                    W->data[h * W->stride[0] + c * W->stride[1] + e * W->stride[2]];
}

/* (Din, H*HS) contiguous back into a stacked gradient view (H, Din, HS). */
static void weight_scatter(const float *src, attn_view *dW) {
    const int64_t H = dW->shape[0], Din = dW->shape[1], HS = dW->shape[2];
    for (int64_t h = 0; h < H; h++)
        for (int64_t c = 0; c < Din; c++)
            for (int64_t e = 0; e < HS; e++)
                dW->data[h * dW->stride[0] + c * dW->stride[1] + e * dW->stride[2]] =
                    src[c * H * HS + h * HS + e];
}

/* db (H, HS) = column sums of g (rows, H*HS). */
static void bias_grad(const float *g, int64_t rows, attn_view *db) {
    const int64_t H = db->shape[0], HS = db->shape[1];
    for (int64_t h = 0; h < H; h++)
        for (int64_t e = 0; e < HS; e++) {
            double s = 0.0;
            for (int64_t n = 0; n < rows; n++)
                s += (double)g[n * H * HS + h * HS + e];
            db->data[h * db->stride[0] + e * db->stride[1]] = (float)s;
        }
}

/* A wanted gradient has its parameter's shape, and its parameter exists. */
static attn_status check_grad(const char *fn, const char *name, const attn_view *g,
                              const char *pname, const attn_view *param) {
    if (!g->data) return ATTN_OK;
    if (!param->data)
        return attn__fail(ATTN_ERR_ARG, "%s: grads.%s is given but params.%s is not", fn, name,
                          pname);
    return attn__grad_check_like(fn, name, g, pname, param);
}

typedef struct proj {
    const attn_view *W, *b; /* the parameter */
    attn_view *dW, *db;     /* its gradients (data NULL: not wanted) */
    int64_t col, width;     /* its columns in the projected row */
} proj;

attn_status attn_mha_backward(const attn_mha_params *p, const attn_view *xq, const attn_view *xkv,
                              const attn_view *dout, attn_view *dxq, attn_view *dxkv,
                              attn_mha_params *grads, const attn_opts *opts) {
    const char *fn = "attn_mha_backward";
    attn_status s = attn__isa_ready(fn);
    if (s) return s;
    const bool self = xkv == NULL;
    if (self) xkv = xq;
    if ((s = attn__mha_check(fn, p, xq, xkv, dout))) return s;
    if (self && dxkv)
        return attn__fail(ATTN_ERR_ARG,
                          "%s: dxkv is given for self-attention (xkv NULL): dxq holds it all", fn);
    attn_mha_params none = {0};
    attn_mha_params *g = grads ? grads : &none;
    if ((s = check_grad(fn, "Wq", &g->Wq, "Wq", &p->Wq)) ||
        (s = check_grad(fn, "Wk", &g->Wk, "Wk", &p->Wk)) ||
        (s = check_grad(fn, "Wv", &g->Wv, "Wv", &p->Wv)) ||
        (s = check_grad(fn, "bq", &g->bq, "bq", &p->bq)) ||
        (s = check_grad(fn, "bk", &g->bk, "bk", &p->bk)) ||
        (s = check_grad(fn, "bv", &g->bv, "bv", &p->bv)) ||
        (s = check_grad(fn, "Wo", &g->Wo, "Wo", &p->Wo)) ||
        (s = check_grad(fn, "bo", &g->bo, "bo", &p->bo)) ||
        (dxq && (s = attn__grad_check_like(fn, "dxq", dxq, "xq", xq))) ||
        (dxkv && (s = attn__grad_check_like(fn, "dxkv", dxkv, "xkv", xkv))))
        return s;
    attn_view *gv[10] = {dxq, dxkv};
    static const char *const gn[10] = {"dxq",      "dxkv",     "grads.Wq", "grads.Wk", "grads.Wv",
                                       "grads.bq", "grads.bk", "grads.bv", "grads.Wo", "grads.bo"};
    attn_view *gp[8] = {&g->Wq, &g->Wk, &g->Wv, &g->bq, &g->bk, &g->bv, &g->Wo, &g->bo};
    for (int i = 0; i < 8; i++)
        gv[2 + i] = gp[i]->data ? gp[i] : NULL;
    const attn_view *ins[11] = {xq,     xkv,    dout,   &p->Wq, &p->Wk, &p->Wv,
                                &p->bq, &p->bk, &p->bv, &p->Wo, &p->bo};
    static const char *const in_names[11] = {"xq", "xkv", "dout", "Wq", "Wk", "Wv",
                                             "bq", "bk",  "bv",   "Wo", "bo"};
    /* Outputs against the inputs, then against each other - except within
     * {Wq, Wk, Wv} and within {bq, bk, bv}, whose gradients interleave in one
     * buffer in the fused layout (attn_mha_from_fused over dWqkv): those
     * views address different elements by construction of the layout. */
    for (int a = 0; a < 10; a++) {
        if (!gv[a]) continue;
        if ((s = attn__grad_check_outputs(fn, &gv[a], &gn[a], 1, ins, in_names, 11))) return s;
        for (int b = 0; b < a; b++) {
            const int ga = a >= 2 && a <= 4 ? 1 : a >= 5 && a <= 7 ? 2 : 0;
            const int gb = b >= 2 && b <= 4 ? 1 : b >= 5 && b <= 7 ? 2 : 0;
            if (gv[b] && !(ga && ga == gb) &&
                (s = attn__check_disjoint(fn, gn[a], gv[a], gn[b], gv[b])))
                return s;
        }
    }
    attn_opts defaults = attn_opts_default();
    attn_opts o = opts ? *opts : defaults;
    o.lse = NULL;
    o.weights = NULL;
    const int threads = attn__threads(o.num_threads);

    const attn_view x3 = as3(xq), kv3 = as3(xkv);
    const int64_t B = x3.shape[0], Nq = x3.shape[1], Nkv = kv3.shape[1];
    const int64_t Dq = x3.shape[2], Dkv = kv3.shape[2];
    const int64_t H = p->num_heads, Hkv = kv_heads(p), HS = p->Wq.shape[2], HSv = p->Wv.shape[2];
    const int64_t Mq = B * Nq, Mkv = B * Nkv, wq = H * HS, wk = Hkv * HS, wv = Hkv * HSv;
    const int64_t wc = H * HSv, Dout = p->Wo.data ? p->Wo.shape[1] : wc;
    /* Scratch, floats:
     *   q, dq (Mq, wq); k, dk (Mkv, wk); v, dv (Mkv, wv); a, dcat (Mq, wc);
     *   lse (B*H*Nq); xq rows (Mq, Dq); xkv rows (Mkv, Dkv); dout rows (Mq, Dout);
     *   W copies (Dq, wq), (Dkv, wk), (Dkv, wv); tmp, acc (max(Mq*Dq, Mkv*Dkv, D*w)) */
    int64_t big = Mq * Dq > Mkv * Dkv ? Mq * Dq : Mkv * Dkv;
    const int64_t wmax = Dq * wq > Dkv * (wk > wv ? wk : wv) ? Dq * wq : Dkv * (wk > wv ? wk : wv);
    if (wmax > big) big = wmax;
    if (wc * Dout > big) big = wc * Dout;
    const int64_t sizes[15] = {Mq * wq,
                               Mq * wq,
                               Mkv * wk,
                               Mkv * wk,
                               Mkv * wv,
                               Mkv * wv,
                               Mq * wc,
                               Mq * wc,
                               B * H * Nq,
                               Mq * Dq,
                               Mkv * Dkv,
                               Mq * Dout,
                               Dq * wq + Dkv * wk + Dkv * wv,
                               big,
                               big};
    size_t total = 0;
    for (int i = 0; i < 15; i++)
        if (__builtin_add_overflow(total, (size_t)((sizes[i] + 15) / 16 * 16 + 16), &total))
            return attn__fail(ATTN_ERR_OVERFLOW, "%s: scratch sizes overflow", fn);
    float *block = attn__alloc(total, sizeof(float));
    if (!block)
        return attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate %zu floats of scratch", fn, total);
    float *buf[15], *cur = block;
    for (int i = 0; i < 15; i++) {
        buf[i] = cur;
        cur += (sizes[i] + 15) / 16 * 16 + 16;
    }
    float *q = buf[0], *dq = buf[1], *k = buf[2], *dk = buf[3], *v = buf[4], *dv = buf[5];
    float *a = buf[6], *dcat = buf[7], *lse = buf[8], *xr = buf[9], *kr = buf[10];
    float *gr = buf[11], *wcat = buf[12], *tmp = buf[13], *acc = buf[14];

    /* Forward 1-3 again: q, k, v, a and lse. */
    attn__mha_project(&x3, &p->Wq, &p->bq, q, threads);
    attn__mha_project(&kv3, &p->Wk, &p->bk, k, threads);
    attn__mha_project(&kv3, &p->Wv, &p->bv, v, threads);
    const attn_view q4 = {q, 4, {B, H, Nq, HS}, {Nq * wq, HS, wq, 1}};
    const attn_view k4 = {k, 4, {B, Hkv, Nkv, HS}, {Nkv * wk, HS, wk, 1}};
    const attn_view v4 = {v, 4, {B, Hkv, Nkv, HSv}, {Nkv * wv, HSv, wv, 1}};
    attn_view a4 = {a, 4, {B, H, Nq, HSv}, {Nq * wc, HSv, wc, 1}};
    attn_view l3 = attn_view_3d(lse, B, H, Nq);
    attn_opts fo = o;
    fo.lse = &l3;
    if ((s = attn_sdpa(&q4, &k4, &v4, &a4, &fo))) goto done;

    /* Forward 4, out = cat @ Wo + bo. */
    attn__grad_rows(dout, gr); /* (Mq, Dout) */
    const attn_view G = attn_view_2d(gr, Mq, Dout);
    if (p->Wo.data) {
        const attn_view Wot = attn_view_swap(p->Wo, 0, 1);
        attn_view C = attn_view_2d(dcat, Mq, wc);
        attn__gemm(&G, &Wot, NULL, &C, threads); /* dcat = dout @ Wo^T */
    } else {
        memcpy(dcat, gr, (size_t)(Mq * wc) * sizeof(float));
    }

    /* Forward 3, a = attn_sdpa(q, k, v). */
    {
        const attn_view dc4 = {dcat, 4, {B, H, Nq, HSv}, {Nq * wc, HSv, wc, 1}};
        attn_view dq4 = {dq, 4, {B, H, Nq, HS}, {Nq * wq, HS, wq, 1}};
        attn_view dk4 = {dk, 4, {B, Hkv, Nkv, HS}, {Nkv * wk, HS, wk, 1}};
        attn_view dv4 = {dv, 4, {B, Hkv, Nkv, HSv}, {Nkv * wv, HSv, wv, 1}};
        if ((s = attn_sdpa_backward(&q4, &k4, &v4, &a4, &l3, &dc4, &dq4, &dk4, &dv4, &o, NULL)))
            goto done;
    }
    /* Nothing fails from here on: the outputs are written. */
    if (g->Wo.data) {
        const attn_view At = attn_view_swap(attn_view_2d(a, Mq, wc), 0, 1);
        attn_view R = attn_view_2d(tmp, wc, Dout);
        attn__gemm(&At, &G, NULL, &R, threads); /* dWo = cat^T @ dout */
        attn__grad_store_rows(tmp, &g->Wo);
    }
    if (g->bo.data) attn__grad_colsum(gr, Mq, Dout, &g->bo);

    /* Forward 1, the projections. */
    attn__grad_rows(xq, xr);
    if (!self) attn__grad_rows(xkv, kr);
    const float *kvrows = self ? xr : kr;
    const proj parts[3] = {{&p->Wq, &p->bq, &g->Wq, &g->bq, 0, wq},
                           {&p->Wk, &p->bk, &g->Wk, &g->bk, 0, wk},
                           {&p->Wv, &p->bv, &g->Wv, &g->bv, 0, wv}};
    float *const grad_of[3] = {dq, dk, dv};
    const float *const rows_of[3] = {xr, kvrows, kvrows};
    const int64_t m_of[3] = {Mq, Mkv, Mkv}, d_of[3] = {Dq, Dkv, Dkv};
    float *wc_of[3] = {wcat, wcat + Dq * wq, wcat + Dq * wq + Dkv * wk};
    for (int i = 0; i < 3; i++) {
        const proj *P = &parts[i];
        const attn_view X = attn_view_2d((float *)rows_of[i], m_of[i], d_of[i]);
        const attn_view Gd = attn_view_2d(grad_of[i], m_of[i], P->width);
        if (P->dW->data) {
            const attn_view Xt = attn_view_swap(X, 0, 1);
            attn_view R = attn_view_2d(tmp, d_of[i], P->width);
            attn__gemm(&Xt, &Gd, NULL, &R, threads); /* dW = x^T @ dproj */
            weight_scatter(tmp, P->dW);
        }
        if (P->db->data) bias_grad(grad_of[i], m_of[i], P->db);
        weight_cat(P->W, wc_of[i]);
    }
    /* dxq = dq Wq^T (+ dk Wk^T + dv Wv^T in self-attention); dxkv = dk Wk^T + dv Wv^T. */
    for (int side = 0; side < 2; side++) {
        attn_view *dx = side == 0 ? dxq : dxkv;
        if (!dx) continue;
        const int64_t M = side == 0 ? Mq : Mkv, D = side == 0 ? Dq : Dkv;
        bool first = true;
        for (int i = 0; i < 3; i++) {
            const bool mine = self ? true : (side == 0) == (i == 0);
            if (!mine) continue;
            const attn_view Gd = attn_view_2d(grad_of[i], M, parts[i].width);
            const attn_view Wt = attn_view_swap(attn_view_2d(wc_of[i], D, parts[i].width), 0, 1);
            attn_view R = attn_view_2d(first ? acc : tmp, M, D);
            attn__gemm(&Gd, &Wt, NULL, &R, threads);
            if (!first)
                for (int64_t n = 0; n < M * D; n++)
                    acc[n] += tmp[n];
            first = false;
        }
        attn__grad_store_rows(acc, dx);
    }
done:
    attn__free(block);
    return s;
}
