/* flow.c - the shape-flow builder and printer (see flow.h). */
#include "flow.h"
#include "cli.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

const char *flow_check(const flow_cfg *c) {
    static char msg[160];
    if (c->B < 1 || c->Nq < 1 || c->Nkv < 1 || c->D < 1 || c->H < 1 || c->Hkv < 1)
        return "every size must be >= 1";
    if (c->D % c->H != 0) {
        snprintf(msg, sizeof msg, "--dim %lld is not a multiple of --heads %lld (head size D/H)",
                 (long long)c->D, (long long)c->H);
        return msg;
    }
    if (c->H % c->Hkv != 0) {
        snprintf(msg, sizeof msg, "--heads %lld is not a multiple of --gqa-kv-heads %lld",
                 (long long)c->H, (long long)c->Hkv);
        return msg;
    }
    if (c->cache < 0) return "--cache must be >= 0";
    if (c->cache > 0 && c->cross) return "--cache is self-attention decoding, not --cross";
    if (c->cache > 0 && c->Nkv != c->cache + c->Nq) return "with --cache, Nkv is cache + seq";
    if (!c->cross && c->cache == 0 && c->Nkv != c->Nq)
        return "--nkv differs from --seq: that needs --cross";
    return NULL;
}

static flow_step *add(flow_step *s, int *n, const char *name, const char *expr, int ndim,
                      const int64_t *shape, const char *einsum, const char *fmt, ...) {
    flow_step *st = &s[(*n)++];
    memset(st, 0, sizeof *st);
    snprintf(st->name, sizeof st->name, "%s", name);
    snprintf(st->expr, sizeof st->expr, "%s", expr);
    st->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        st->shape[i] = shape[i];
    snprintf(st->einsum, sizeof st->einsum, "%s", einsum);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->note, sizeof st->note, fmt, ap);
    va_end(ap);
    return st;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

int flow_build(const flow_cfg *c, flow_step *s) {
    int n = 0;
    long long B = c->B, Nq = c->Nq, Nkv = c->Nkv, D = c->D, H = c->H, G = c->Hkv;
    long long HS = D / H, KV = G * HS; /* width of the k (and v) projections */
    int gqa = G != H;
    const char *sc_ein = gqa ? "bhid,bgjd->bhij" : "bhid,bhjd->bhij";
    const char *pv_ein = gqa ? "bhij,bgjd->bhid" : "bhij,bhjd->bhid";
    char gnote[64] = "";
    if (gqa)
        snprintf(gnote, sizeof gnote, "; head h reads kv head g = h / %lld", (long long)(H / G));

    if (c->cache > 0) {
        long long L = c->cache;
        add(s, &n, "x", "input", 3, SHAPE(B, Nq, D), "",
            "%lld new token%s per sequence at positions %lld..%lld, width D=%lld", Nq,
            Nq == 1 ? "" : "s", L, L + Nq - 1, D);
        add(s, &n, "qkv", "x @ Wqkv + bqkv", 3, SHAPE(B, Nq, D + 2 * KV), "bnc,ck->bnk",
            "one GEMM (a GEMV for one token); Wqkv (%lld, %lld), columns [q | k | v]", D,
            D + 2 * KV);
        add(s, &n, "q", "split qkv", 4, SHAPE(B, H, Nq, HS), "",
            "view of qkv[..., 0:%lld]; RoPE at the new positions (attn_rope)", D);
        add(s, &n, "k_new", "split qkv", 4, SHAPE(B, G, Nq, HS), "",
            "view of qkv[..., %lld:%lld], %lld kv heads; RoPE, then appended", D, D + KV, G);
        add(s, &n, "v_new", "split qkv", 4, SHAPE(B, G, Nq, HS), "",
            "view of qkv[..., %lld:%lld]; appended", D + KV, D + 2 * KV);
        add(s, &n, "k", "cache append", 4, SHAPE(B, G, Nkv, HS), "",
            "the cache after attn_kv_append: %lld cached + %lld new keys", L, Nq);
        add(s, &n, "v", "cache append", 4, SHAPE(B, G, Nkv, HS), "",
            "values likewise; each K/V block is read once for the %lld query heads of its group",
            H / G);
    } else if (!c->cross) {
        add(s, &n, "x", "input", 3, SHAPE(B, Nq, D), "",
            "B=%lld sequences of N=%lld tokens, width D=%lld", B, Nq, D);
        add(s, &n, "qkv", "x @ Wqkv + bqkv", 3, SHAPE(B, Nq, D + 2 * KV), "bnc,ck->bnk",
            "one GEMM; Wqkv (%lld, %lld), columns [q | k | v]", D, D + 2 * KV);
        add(s, &n, "q", "split qkv", 4, SHAPE(B, H, Nq, HS), "",
            "view of qkv[..., 0:%lld] as (B, N, H, HS) -> transpose(0, 2, 1, 3); no copy", D);
        add(s, &n, "k", "split qkv", 4, SHAPE(B, G, Nkv, HS), "",
            "view of qkv[..., %lld:%lld], %lld kv heads; no copy", D, D + KV, G);
        add(s, &n, "v", "split qkv", 4, SHAPE(B, G, Nkv, HS), "",
            "view of qkv[..., %lld:%lld]; no copy", D + KV, D + 2 * KV);
    } else {
        add(s, &n, "xq", "input", 3, SHAPE(B, Nq, D), "", "queries: Nq=%lld tokens, width D=%lld",
            Nq, D);
        add(s, &n, "xkv", "input", 3, SHAPE(B, Nkv, D), "",
            "keys/values from another sequence: Nkv=%lld tokens", Nkv);
        add(s, &n, "qp", "xq @ Wq + bq", 3, SHAPE(B, Nq, D), "bic,ce->bie", "Wq (%lld, %lld)", D,
            D);
        add(s, &n, "kvp", "xkv @ Wkv + bkv", 3, SHAPE(B, Nkv, 2 * KV), "bjc,ck->bjk",
            "Wkv (%lld, %lld), columns [k | v]", D, 2 * KV);
        add(s, &n, "q", "split qp", 4, SHAPE(B, H, Nq, HS), "",
            "view (B, Nq, H, HS) -> transpose(0, 2, 1, 3); no copy");
        add(s, &n, "k", "split kvp", 4, SHAPE(B, G, Nkv, HS), "", "view of kvp[..., 0:%lld]", KV);
        add(s, &n, "v", "split kvp", 4, SHAPE(B, G, Nkv, HS), "", "view of kvp[..., %lld:%lld]", KV,
            2 * KV);
    }
    const char *mask_note = c->causal == ATTN_CAUSAL_TOP_LEFT ? "; causal: -inf where j > i"
                            : c->causal == ATTN_CAUSAL_BOTTOM_RIGHT
                                ? "; causal: -inf where j > i + Nkv - Nq"
                                : "";
    add(s, &n, "scores", "q @ k^T * scale", 4, SHAPE(B, H, Nq, Nkv), sc_ein,
        "scale = 1/sqrt(HS) = 1/sqrt(%lld) = %.6g%s%s", HS, 1.0 / sqrt((double)HS), mask_note,
        gnote);
    add(s, &n, "weights", "softmax(scores)", 4, SHAPE(B, H, Nq, Nkv), "",
        "softmax over j (last axis), each row sums to 1");
    add(s, &n, "heads", "weights @ v", 4, SHAPE(B, H, Nq, HS), pv_ein,
        "fast path: scores/weights never stored (online softmax)");
    add(s, &n, "concat", "merge heads", 3, SHAPE(B, Nq, H * HS), "bhid->bihd",
        "transpose + reshape to (B, Nq, H*HS); written in place by strides");
    add(s, &n, "out", "concat @ Wo + bo", 3, SHAPE(B, Nq, D), "bic,cd->bid",
        "output projection Wo (%lld, %lld)", H * HS, D);
    return n;
}

const flow_step *flow_find(const flow_step *steps, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(steps[i].name, name) == 0) return &steps[i];
    return NULL;
}

void flow_print(FILE *f, const flow_cfg *c, const flow_step *steps, int n) {
    if (c->cache > 0)
        fprintf(f, "Decode step with a KV cache of %lld tokens: ", (long long)c->cache);
    fprintf(f, "%s multi-head %s-attention%s: B=%lld Nq=%lld Nkv=%lld D=%lld H=%lld",
            c->causal == ATTN_CAUSAL_NONE ? "Non-causal" : "Causal", c->cross ? "cross" : "self",
            c->causal == ATTN_CAUSAL_NONE       ? ""
            : c->causal == ATTN_CAUSAL_TOP_LEFT ? " (top_left)"
                                                : " (bottom_right)",
            (long long)c->B, (long long)c->Nq, (long long)c->Nkv, (long long)c->D, (long long)c->H);
    if (c->Hkv != c->H) fprintf(f, " Hkv=%lld", (long long)c->Hkv);
    fprintf(f, " HS=%lld\n", (long long)(c->D / c->H));
    fprintf(f, "  %-3s %-8s %-18s %-22s %-17s %s\n", "#", "step", "computes", "shape", "einsum",
            "notes");
    for (int i = 0; i < n; i++) {
        char sb[96];
        fprintf(f, "  %-3d %-8s %-18s %-22s %-17s %s\n", i + 1, steps[i].name, steps[i].expr,
                shape_str(steps[i].ndim, steps[i].shape, sb, sizeof sb),
                steps[i].einsum[0] ? steps[i].einsum : "-", steps[i].note);
    }
}

static const char *human_bytes(double b, char *buf, size_t len) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024.0 && u < 4)
        b /= 1024.0, u++;
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
    return buf;
}

void flow_print_costs(FILE *f, const flow_cfg *c) {
    double B = (double)c->B, Nq = (double)c->Nq, Nkv = (double)c->Nkv, D = (double)c->D;
    double HS = D / (double)c->H, KV = (double)c->Hkv * HS;
    double params = D * (D + 2 * KV) + (D + 2 * KV) + D * D + D;
    /* With a cache only the new tokens are projected. */
    const double Nproj = c->cache > 0 ? Nq : Nkv;
    double proj = 2 * B * Nq * D * D + 2 * B * Nproj * D * 2 * KV + 2 * B * Nq * D * D;
    double att = sdpa_flops(c->B, c->H, c->Nq, c->Nkv, c->D / c->H, c->D / c->H, c->causal);
    double scores = B * (double)c->H * Nq * Nkv * 4.0;
    char b1[32];
    fprintf(f, "Costs:\n");
    fprintf(f, "  parameters       %.0f (%s)\n", params,
            c->cross ? "Wq, Wkv, Wo and biases" : "Wqkv, bqkv, Wo, bo");
    fprintf(f, "  projections      %.4g GFLOP\n", proj * 1e-9);
    fprintf(f, "  attention        %.4g GFLOP%s\n", att * 1e-9,
            c->causal == ATTN_CAUSAL_NONE ? "" : " (visible keys only)");
    fprintf(f,
            "  scores/weights   %s if materialised (reference path); the fast path keeps "
            "one tile per thread\n",
            human_bytes(scores, b1, sizeof b1));
    if (c->cache > 0) {
        /* Per step: every weight once, every cached K/V element once. */
        double kv_elems = 2.0 * B * (double)c->Hkv * Nkv * HS, weights = params;
        char b2[32], b3[32], b4[32];
        fprintf(f, "  kv cache         %s float32, %s bfloat16 (2 x B x Hkv x Nkv x HS)\n",
                human_bytes(4 * kv_elems, b1, sizeof b1), human_bytes(2 * kv_elems, b2, sizeof b2));
        fprintf(f,
                "  bytes per step   %s weights (float32) + %s cache (bfloat16) = %s: decode is "
                "memory-bound; time >= bytes / memory bandwidth\n",
                human_bytes(4 * weights, b3, sizeof b3), human_bytes(2 * kv_elems, b2, sizeof b2),
                human_bytes(4 * weights + 2 * kv_elems, b4, sizeof b4));
    }
}
