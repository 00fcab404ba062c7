/* cmd_run.c - `attn run OP`: arrays from .npy/.npz files through one attn
 * operation, the result to .npy. Shapes are checked here first, so that an
 * error names the file and the dimension; the library checks again. */
#include "cli.h"
#include "npy.h"
#include "outfile.h"
#include "picture.h"

#include <signal.h>

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char run_help[] =
    "Usage: attn run OP --ARRAY SPEC... [OPTIONS] -o OUT.npy\n"
    "Run one operation on arrays read from .npy/.npz files; write the result as\n"
    ".npy (float32, C order), which np.load reads back.\n"
    "\n"
    "SPEC names an array: file.npy, file.npz:NAME (member NAME or NAME.npy), or\n"
    "file.npz holding a single array. Inputs may be float32 or float64, little-\n"
    "or big-endian, C or Fortran order (np.save(W.T)); float64 is converted to\n"
    "float32. --npz FILE supplies every array not given explicitly from the\n"
    "member of the same name (x, Wq, ..., key_lengths).\n"
    "\n"
    "Operations and their arrays (shapes in the article's x @ W layout):\n"
    "  softmax     --x (..., N)                     out: softmax over the last axis\n"
    "  layer-norm  --x (..., D) [--gamma (D)] [--beta (D)] [--eps E (1e-5)]\n"
    "  self        --x (N, D) or (B, N, D); --Wq, --Wk (D, HS); --Wv (D, HSv)\n"
    "              out (N, HSv) or (B, N, HSv): single-head self-attention\n"
    "  cross       --xq (Nq, Dq) or (B, Nq, Dq); --xkv (Nkv, Dkv) or (B, Nkv, Dkv);\n"
    "              --Wq (Dq, HS); --Wk (Dkv, HS); --Wv (Dkv, HSv)\n"
    "  mha         --x (self) or --xq and --xkv (cross), then either\n"
    "                fused:    --Wqkv (D, 3D) --heads NH [--bqkv (3D)]\n"
    "                per-head: --Wq, --Wk (NH, D, HS); --Wv (NH, D, HSv)\n"
    "                          [--bq, --bk (NH, HS)] [--bv (NH, HSv)]\n"
    "              [--Wo (NH*HSv, Dout)] [--bo (Dout)]; without --Wo the output\n"
    "              is the heads concatenated, (B, Nq, NH*HSv)\n"
    "              --kv-heads G: grouped-query attention, G key/value heads\n"
    "              (NH a multiple of G): fused --Wqkv (D, (NH+2G)*HS) with\n"
    "              HS = D/NH, columns [q | k | v], --bqkv ((NH+2G)*HS); per-head\n"
    "              --Wk, --Wv, --bk, --bv stack G heads (G read from --Wk if\n"
    "              --kv-heads is not given)\n"
    "  sdpa        --q (B, H, Nq, d); --k (B, Hkv, Nkv, d); --v (B, Hkv, Nkv, dv)\n"
    "              (rank 2 or 3 inputs get leading dimensions of 1); out (B, H, Nq, dv)\n"
    "              H must be a multiple of Hkv (grouped-query attention)\n"
    "\n"
    "Attention options (self, cross, mha, sdpa):\n"
    "  --causal RULE         none (default) | top_left (j <= i, PyTorch is_causal) |\n"
    "                        bottom_right (j <= i + Nkv - Nq, FlashAttention's;\n"
    "                        decoding with a cache); a bare --causal is accepted\n"
    "                        where both agree (Nq == Nkv, no key lengths)\n"
    "  --mask SPEC           additive float mask broadcasting to (B, H, Nq, Nkv) as\n"
    "                        in NumPy (a scalar, fewer dimensions, or extra leading\n"
    "                        1s); -inf hides a key; a boolean mask is refused:\n"
    "                        save np.where(keep, 0.0, -np.inf) instead\n"
    "  --key-lengths SPEC    B values in 0..Nkv (integer .npy allowed): batch b\n"
    "                        sees keys j < key_lengths[b]\n"
    "  --scale S             score scale (default 1/sqrt(d))\n"
    "  --dropout P --seed S  dropout on the weights, P in [0, 1) (default 0, seed 0)\n"
    "  --window L,R          sliding window: key j visible only if dist <= L and\n"
    "                        -dist <= R, dist = (q_offset + i) - (k_offset + j);\n"
    "                        -1 unbounded (a model's sliding_window = S is S-1,-1)\n"
    "  --softcap C           logit soft-capping C*tanh(s/C) after the scale (Gemma 2)\n"
    "  --alibi               ALiBi: s -= slope[h] * |dist|, the paper's slopes of H\n"
    "                        heads (BLOOM, MPT); order: scale, softcap, ALiBi, mask\n"
    "  --sinks SPEC          H sink logits, in each row's denominator only (gpt-oss)\n"
    "  --q-offset P          position of query 0 in every batch entry (default: 0\n"
    "                        with top_left, else Nkv - Nq: bottom-right)\n"
    "  --k-offset P          position of key 0 (default 0)\n"
    "  --lse-out FILE        also write the log-sum-exp of each row, (B, H, Nq)\n"
    "  --weights-out FILE    also write the attention weights (B, H, Nq, Nkv)\n"
    "                        (runs the reference path)\n"
    "  --weights-png FILE    also draw the weights as a PNG: one heatmap per batch\n"
    "                        entry and head, rows = queries, columns = keys, each\n"
    "                        scaled to its largest weight (runs the reference path)\n"
    "\n"
    "Other options:\n"
    "  --layout xw|torch     weight layout: xw (default) is the article's x @ W with\n"
    "                        W (in, out); torch is PyTorch's (out, in): nn.Linear\n"
    "                        .weight, in_proj_weight (3D, D), out_proj.weight, and\n"
    "                        per-head stacks (NH, HS, D); read transposed, no copy\n"
    "  --algo auto|reference|flash   algorithm (auto)\n"
    "  --threads T           threads (default: all online CPUs)\n"
    "  -o, --out FILE        output .npy (required)\n"
    "  -h, --help            this text\n"
    "\n"
    "Example:\n"
    "  python3 -c \"import numpy as np; np.savez('in.npz', x=np.random.rand(4, 8),\n"
    "      Wqkv=np.random.rand(8, 24))\"\n"
    "  attn run mha --npz in.npz --heads 2 --causal top_left -o out.npy\n"
    "\n" EXIT_CODES_HELP;

/* Message buffers (messages may quote long paths; files are never named
 * through a fixed-size buffer). */
#define ERRLEN 8192

/* ---- arrays by role ------------------------------------------------------- */

enum role {
    R_X,
    R_XQ,
    R_XKV,
    R_Q,
    R_K,
    R_V,
    R_WQ,
    R_WK,
    R_WV,
    R_WQKV,
    R_WO,
    R_BQ,
    R_BK,
    R_BV,
    R_BQKV,
    R_BO,
    R_GAMMA,
    R_BETA,
    R_MASK,
    R_KEYLEN,
    R_SINKS,
    R_COUNT
};

static const struct {
    const char *opt;    /* command-line option */
    const char *member; /* .npz member name for --npz */
    int weight;         /* transposed by --layout torch */
} roles[R_COUNT] = {
    [R_X] = {"--x", "x", 0},
    [R_XQ] = {"--xq", "xq", 0},
    [R_XKV] = {"--xkv", "xkv", 0},
    [R_Q] = {"--q", "q", 0},
    [R_K] = {"--k", "k", 0},
    [R_V] = {"--v", "v", 0},
    [R_WQ] = {"--Wq", "Wq", 1},
    [R_WK] = {"--Wk", "Wk", 1},
    [R_WV] = {"--Wv", "Wv", 1},
    [R_WQKV] = {"--Wqkv", "Wqkv", 1},
    [R_WO] = {"--Wo", "Wo", 1},
    [R_BQ] = {"--bq", "bq", 0},
    [R_BK] = {"--bk", "bk", 0},
    [R_BV] = {"--bv", "bv", 0},
    [R_BQKV] = {"--bqkv", "bqkv", 0},
    [R_BO] = {"--bo", "bo", 0},
    [R_GAMMA] = {"--gamma", "gamma", 0},
    [R_BETA] = {"--beta", "beta", 0},
    [R_MASK] = {"--mask", "mask", 0},
    [R_KEYLEN] = {"--key-lengths", "key_lengths", 0},
    [R_SINKS] = {"--sinks", "sinks", 0},
};

typedef struct slot {
    const char *spec; /* from the command line, or NULL */
    char *from;       /* where it was read, for messages (malloc'd) */
    int present;
    npy_array a;
    attn_view v; /* after --layout and rank padding */
} slot;

typedef struct run_ctx {
    const char *op;
    slot s[R_COUNT];
    int torch_layout;
} run_ctx;

static const char *role_name(int r) {
    return roles[r].opt + 2;
}

/* Which arrays each operation reads. */
static int role_allowed(const char *op, int r) {
    int att = r == R_MASK || r == R_KEYLEN || r == R_SINKS;
    if (strcmp(op, "softmax") == 0) return r == R_X;
    if (strcmp(op, "layer-norm") == 0) return r == R_X || r == R_GAMMA || r == R_BETA;
    if (strcmp(op, "self") == 0) return r == R_X || r == R_WQ || r == R_WK || r == R_WV || att;
    if (strcmp(op, "cross") == 0)
        return r == R_XQ || r == R_XKV || r == R_WQ || r == R_WK || r == R_WV || att;
    if (strcmp(op, "mha") == 0)
        return r == R_X || r == R_XQ || r == R_XKV || (r >= R_WQ && r <= R_BO) || att;
    if (strcmp(op, "sdpa") == 0) return r == R_Q || r == R_K || r == R_V || att;
    return 0;
}

static const char *sshape(const slot *s, char *buf, size_t len) {
    return shape_str(s->a.ndim, s->a.shape, buf, len);
}

/* "Wq (w.npz:Wq, shape (12, 64, 8))", plus the shape as read when
 * --layout torch transposed it. */
static const char *desc(const slot *s, int r, char *buf, size_t len) {
    char sb[128], vb[128];
    int swapped = s->v.ndim == s->a.ndim && s->v.ndim >= 2 &&
                  s->v.shape[s->v.ndim - 1] != s->a.shape[s->a.ndim - 1];
    if (swapped)
        snprintf(buf, len, "%s (%s, shape %s, read as %s by --layout torch)", role_name(r), s->from,
                 sshape(s, sb, sizeof sb), shape_str(s->v.ndim, s->v.shape, vb, sizeof vb));
    else
        snprintf(buf, len, "%s (%s, shape %s)", role_name(r), s->from, sshape(s, sb, sizeof sb));
    return buf;
}

static int input_error(run_ctx *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int input_error(run_ctx *c, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "attn run %s: ", c->op);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_INPUT;
}

/* Rank of role r must be in lo..hi. */
static int need_rank(run_ctx *c, int r, int lo, int hi, const char *expect) {
    const slot *s = &c->s[r];
    if (s->a.ndim >= lo && s->a.ndim <= hi) return EXIT_OK;
    char d[ERRLEN];
    return input_error(c, "%s has rank %d, expected %s", desc(s, r, d, sizeof d), s->a.ndim,
                       expect);
}

/* A weight whose last two dimensions, swapped, would fit: it is probably in
 * PyTorch's (out, in) layout. */
static const char *layout_hint(const run_ctx *c, int r, int dim, int64_t want) {
    const attn_view *v = &c->s[r].v;
    if (!roles[r].weight || v->ndim < 2 || dim < v->ndim - 2) return "";
    int other = dim == v->ndim - 1 ? v->ndim - 2 : v->ndim - 1;
    if (v->shape[other] != want) return "";
    return c->torch_layout ? "; these look like x @ W weights (in, out): drop --layout torch"
                           : "; these look like PyTorch weights (out, in): add --layout torch";
}

/* Dimension dim of role r's view (after layout) must equal want, which is
 * dimension wdim of role wr (or a stated size when wr < 0). */
static int need_dim(run_ctx *c, int r, int dim, int64_t want, int wr, int wdim, const char *what) {
    const slot *s = &c->s[r];
    if (dim < 0) dim += s->v.ndim;
    if (s->v.shape[dim] == want) return EXIT_OK;
    char d[ERRLEN], d2[1400];
    if (wr >= 0) {
        const slot *w = &c->s[wr];
        if (wdim < 0) wdim += w->v.ndim;
        return input_error(c, "%s: dimension %d is %lld but %s has %lld at dimension %d (%s)%s",
                           desc(s, r, d, sizeof d), dim, (long long)s->v.shape[dim],
                           desc(w, wr, d2, sizeof d2), (long long)want, wdim, what,
                           layout_hint(c, r, dim, want));
    }
    return input_error(c, "%s: dimension %d is %lld but must be %lld (%s)%s",
                       desc(s, r, d, sizeof d), dim, (long long)s->v.shape[dim], (long long)want,
                       what, layout_hint(c, r, dim, want));
}

/* Load role r from its spec or the --npz archive; make its float view. */
static int load_role(run_ctx *c, int r, npy_archive *ar) {
    slot *s = &c->s[r];
    char err[ERRLEN];
    int flags = r == R_KEYLEN ? NPY_ALLOW_INT : r == R_MASK ? NPY_MASK_HINT : 0;
    if (s->spec) {
        if (!(s->from = strdup(s->spec))) return cli_error(EXIT_COMPUTE, "run", "out of memory");
        if (npy_load(s->spec, roles[r].member, flags, &s->a, err, sizeof err) != 0)
            return input_error(c, "%s: %s", roles[r].opt, err);
    } else if (ar) {
        int64_t idx = npy_archive_find(ar, roles[r].member);
        if (idx < 0) return EXIT_OK;
        size_t n = strlen(ar->path) + strlen(roles[r].member) + 2;
        if (!(s->from = malloc(n))) return cli_error(EXIT_COMPUTE, "run", "out of memory");
        snprintf(s->from, n, "%s:%s", ar->path, roles[r].member);
        if (npy_archive_load(ar, idx, flags, &s->a, err, sizeof err) != 0)
            return input_error(c, "%s: %s", roles[r].opt, err);
    } else {
        return EXIT_OK;
    }
    s->present = 1;
    if (r == R_KEYLEN) return EXIT_OK; /* read as integers by setup_key_lengths */
    char d[ERRLEN];
    if (r == R_MASK && s->a.ndim > ATTN_MAX_NDIM) {
        /* NumPy broadcasting: leading size-1 axes beyond rank 4 go away. */
        int extra = s->a.ndim - ATTN_MAX_NDIM;
        for (int i = 0; i < extra; i++)
            if (s->a.shape[i] != 1)
                return input_error(c,
                                   "%s: dimension %d is %lld; a mask broadcasts to (B, H, Nq, "
                                   "Nkv), so only size-1 dimensions may come before its last 4",
                                   desc(s, r, d, sizeof d), i, (long long)s->a.shape[i]);
        memmove(s->a.shape, s->a.shape + extra, ATTN_MAX_NDIM * sizeof s->a.shape[0]);
        memmove(s->a.stride, s->a.stride + extra, ATTN_MAX_NDIM * sizeof s->a.stride[0]);
        s->a.ndim = ATTN_MAX_NDIM;
    }
    if (r == R_MASK && s->a.ndim == 0) { /* a scalar: one value for every score */
        s->a.ndim = 1;
        s->a.shape[0] = 1;
        s->a.stride[0] = 1;
    }
    if (s->a.ndim < 1 || s->a.ndim > ATTN_MAX_NDIM)
        return input_error(c, "%s has rank %d: attn takes arrays of rank 1 to %d",
                           desc(s, r, d, sizeof d), s->a.ndim, ATTN_MAX_NDIM);
    for (int i = 0; i < s->a.ndim; i++)
        if (s->a.shape[i] < 1)
            return input_error(c, "%s: dimension %d is 0 (empty arrays are not accepted)",
                               desc(s, r, d, sizeof d), i);
    s->v.data = s->a.data;
    s->v.ndim = s->a.ndim;
    for (int i = 0; i < s->a.ndim; i++) {
        s->v.shape[i] = s->a.shape[i];
        s->v.stride[i] = s->a.stride[i];
    }
    if (c->torch_layout && roles[r].weight && s->v.ndim >= 2)
        s->v = attn_view_swap(s->v, s->v.ndim - 2, s->v.ndim - 1);
    return EXIT_OK;
}

/* A view with leading dimensions of size 1 up to rank 4. */
static attn_view pad4(attn_view v) {
    attn_view p = v;
    int k = 4 - v.ndim;
    p.ndim = 4;
    for (int i = 3; i >= 0; i--) {
        p.shape[i] = i >= k ? v.shape[i - k] : 1;
        p.stride[i] = i >= k ? v.stride[i - k] : 0;
    }
    return p;
}

/* ---- output ----------------------------------------------------------------- */

typedef struct outbuf {
    float *data;
    attn_view v;
} outbuf;

static int out_alloc(run_ctx *c, outbuf *o, int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || n > NPY_MAX_BYTES / 4 / shape[i])
            return input_error(c, "output of this size is too large");
        n *= shape[i];
    }
    o->data = calloc((size_t)n, sizeof(float));
    if (!o->data) return cli_error(EXIT_COMPUTE, "run", "out of memory for the output");
    o->v = attn_view_contiguous(o->data, ndim, shape);
    return EXIT_OK;
}

/* Write output `which` (an index in ro->outs) to its temporary file; the
 * run renames every output into place once all are written. */
struct run_opts;
static int out_save(struct run_opts *ro, int which, const outbuf *o, int ndim);

/* A library failure: its message, then which file each input came from. */
static int lib_error(run_ctx *c, attn_status st) {
    fprintf(stderr, "attn run %s: %s (%s)\n", c->op, attn_last_error(), attn_status_string(st));
    for (int r = 0; r < R_COUNT; r++) {
        if (!c->s[r].present) continue;
        char sb[128];
        fprintf(stderr, "  %s = %s, shape %s\n", role_name(r), c->s[r].from,
                sshape(&c->s[r], sb, sizeof sb));
    }
    return EXIT_COMPUTE;
}

/* ---- attention options ------------------------------------------------------- */

typedef struct run_opts {
    attn_opts o;
    const char *out, *lse_out, *weights_out, *weights_png, *npz;
    outset outs;
    int out_i, lse_i, w_i, wpng_i; /* their indices in outs */
    int64_t heads;
    int64_t kv_heads; /* 0: not given */
    float eps;
    int64_t keylen[4096];
    int64_t *keylen_heap;
    /* Score modifiers given as numbers or flags, made into arrays once B
     * and H are known (setup_modifiers). */
    int alibi, q_offset_set;
    int64_t q_offset;
    float *alibi_heap;
    int64_t *q_offset_heap;
} run_opts;

static int out_save(run_opts *ro, int which, const outbuf *o, int ndim) {
    char err[ERRLEN];
    if (outset_write(&ro->outs, which, o->v.data, ndim, o->v.shape + (o->v.ndim - ndim),
                     o->v.stride + (o->v.ndim - ndim), err, sizeof err) != 0)
        return cli_error(EXIT_OUTPUT, "run", "%s", err);
    return EXIT_OK;
}

/* Key lengths: B values, integer or integral float, in 0..Nkv. */
static int setup_key_lengths(run_ctx *c, run_opts *ro, int64_t B, int64_t Nq, int64_t Nkv,
                             const char *bname) {
    slot *s = &c->s[R_KEYLEN];
    if (resolve_causal(&ro->o.causal, Nq, Nkv, s->present, "run") != 0) return EXIT_USAGE;
    if (!s->present) return EXIT_OK;
    char d[ERRLEN];
    if (s->a.ndim > 1 || s->a.size != B)
        return input_error(c, "%s must hold B=%lld values (B from %s)",
                           desc(s, R_KEYLEN, d, sizeof d), (long long)B, bname);
    int64_t *kl = ro->keylen;
    if (B > (int64_t)(sizeof ro->keylen / sizeof ro->keylen[0])) {
        ro->keylen_heap = malloc((size_t)B * sizeof(int64_t));
        if (!ro->keylen_heap) return cli_error(EXIT_COMPUTE, "run", "out of memory");
        kl = ro->keylen_heap;
    }
    for (int64_t b = 0; b < B; b++) {
        if (s->a.kind == NPY_INT64) {
            kl[b] = ((const int64_t *)s->a.data)[b];
        } else {
            float f = ((const float *)s->a.data)[b];
            if (!(f == floorf(f)) || fabsf(f) > 1e15f)
                return input_error(c, "%s: element %lld (%g) is not an integer",
                                   desc(s, R_KEYLEN, d, sizeof d), (long long)b, (double)f);
            kl[b] = (int64_t)f;
        }
        if (kl[b] < 0 || kl[b] > Nkv)
            return input_error(c, "%s: element %lld is %lld, outside 0..Nkv=%lld",
                               desc(s, R_KEYLEN, d, sizeof d), (long long)b, (long long)kl[b],
                               (long long)Nkv);
    }
    ro->o.key_lengths = kl;
    return EXIT_OK;
}

/* The score modifiers that need B and H: --alibi (the paper's slopes of H
 * heads), --q-offset (one position for every batch entry), --sinks (H
 * values from a file). */
static int setup_modifiers(run_ctx *c, run_opts *ro, int64_t B, int64_t H) {
    if (ro->alibi) {
        free(ro->alibi_heap);
        if (!(ro->alibi_heap = malloc((size_t)H * sizeof(float))))
            return cli_error(EXIT_COMPUTE, "run", "out of memory");
        attn_status st = attn_alibi_slopes(H, ro->alibi_heap);
        if (st != ATTN_OK) return lib_error(c, st);
        ro->o.alibi_slopes = ro->alibi_heap;
    }
    if (ro->q_offset_set) {
        free(ro->q_offset_heap);
        if (!(ro->q_offset_heap = malloc((size_t)B * sizeof(int64_t))))
            return cli_error(EXIT_COMPUTE, "run", "out of memory");
        for (int64_t b = 0; b < B; b++)
            ro->q_offset_heap[b] = ro->q_offset;
        ro->o.q_offset = ro->q_offset_heap;
    }
    slot *s = &c->s[R_SINKS];
    if (s->present) {
        char d[ERRLEN];
        if (s->v.ndim != 1 || s->v.shape[0] != H)
            return input_error(c, "%s must hold H=%lld values, one per query head",
                               desc(s, R_SINKS, d, sizeof d), (long long)H);
        const float *p = s->v.data;
        for (int64_t h = 0; h < H; h++)
            if (!isfinite(p[h]))
                return input_error(c, "%s: element %lld (%g) must be finite",
                                   desc(s, R_SINKS, d, sizeof d), (long long)h, (double)p[h]);
        ro->o.sinks = p; /* rank 1: stride 1 as read */
    }
    return EXIT_OK;
}

/* The mask as a rank-4 view, broadcast-checked against (B, H, Nq, Nkv);
 * also the modifiers that need B and H (every attention op calls this). */
static int setup_mask(run_ctx *c, run_opts *ro, attn_view *mask4, const int64_t want[4]) {
    int rc = setup_modifiers(c, ro, want[0], want[1]);
    if (rc != EXIT_OK) return rc;
    slot *s = &c->s[R_MASK];
    if (!s->present) return EXIT_OK;
    *mask4 = pad4(s->v);
    static const char *names[4] = {"B", "H", "Nq", "Nkv"};
    char d[ERRLEN];
    for (int i = 0; i < 4; i++) {
        if (mask4->shape[i] != 1 && mask4->shape[i] != want[i]) {
            int fd = i - (4 - s->v.ndim); /* the file's own dimension */
            return input_error(c,
                               "%s: dimension %d is %lld but must be 1 or %s=%lld (the mask "
                               "broadcasts to (B, H, Nq, Nkv) = (%lld, %lld, %lld, %lld), aligned "
                               "on the right as in NumPy)",
                               desc(s, R_MASK, d, sizeof d), fd, (long long)mask4->shape[i],
                               names[i], (long long)want[i], (long long)want[0], (long long)want[1],
                               (long long)want[2], (long long)want[3]);
        }
    }
    ro->o.mask = mask4;
    return EXIT_OK;
}

/* Optional outputs lse (B, H, Nq) and weights (B, H, Nq, Nkv). */
static int setup_extra_outputs(run_ctx *c, run_opts *ro, outbuf *lse, outbuf *w, int64_t B,
                               int64_t H, int64_t Nq, int64_t Nkv) {
    int rc;
    if (ro->lse_out) {
        if ((rc = out_alloc(c, lse, 3, (const int64_t[]){B, H, Nq})) != EXIT_OK) return rc;
        ro->o.lse = &lse->v;
    }
    if (ro->weights_out || ro->weights_png) {
        if ((rc = out_alloc(c, w, 4, (const int64_t[]){B, H, Nq, Nkv})) != EXIT_OK) return rc;
        ro->o.weights = &w->v;
    }
    return EXIT_OK;
}

/* --weights-png: one heatmap panel per (batch entry, head) of the weights
 * (B, H, Nq, Nkv), contiguous as out_alloc made them. */
static int save_heatmaps(run_opts *ro, const outbuf *w) {
    char err[ERRLEN];
    picture pic = {0};
    unsigned char *png = NULL;
    size_t len = 0;
    int rc = EXIT_OK;
    if (picture_heatmaps(&pic, w->data, w->v.shape[0] * w->v.shape[1], w->v.shape[2], w->v.shape[3],
                         err, sizeof err) != 0)
        rc = cli_error(EXIT_OUTPUT, "run", "--weights-png %s: %s", ro->weights_png, err);
    else if (picture_encode_png(&pic, &png, &len) != 0)
        rc = cli_error(EXIT_OUTPUT, "run", "--weights-png %s: out of memory", ro->weights_png);
    else if (outset_write_bytes(&ro->outs, ro->wpng_i, png, len, err, sizeof err) != 0)
        rc = cli_error(EXIT_OUTPUT, "run", "%s", err);
    free(png);
    picture_free(&pic);
    return rc;
}

static int save_extra_outputs(run_opts *ro, const outbuf *lse, const outbuf *w, int lse_rank,
                              int w_rank) {
    int rc = EXIT_OK;
    if (ro->lse_out && (rc = out_save(ro, ro->lse_i, lse, lse_rank)) != EXIT_OK) return rc;
    if (ro->weights_out && (rc = out_save(ro, ro->w_i, w, w_rank)) != EXIT_OK) return rc;
    if (ro->weights_png) rc = save_heatmaps(ro, w);
    return rc;
}

/* ---- operations ---------------------------------------------------------------- */

static int need(run_ctx *c, int r) {
    if (c->s[r].present) return EXIT_OK;
    return cli_error(EXIT_USAGE, "run", "%s needs %s (see attn run --help)", c->op, roles[r].opt);
}

static int op_softmax(run_ctx *c, run_opts *ro) {
    int rc;
    if ((rc = need(c, R_X)) != EXIT_OK) return rc;
    outbuf o = {0};
    slot *x = &c->s[R_X];
    if ((rc = out_alloc(c, &o, x->v.ndim, x->v.shape)) != EXIT_OK) return rc;
    attn_status st = attn_softmax(&x->v, &o.v);
    rc = st == ATTN_OK ? out_save(ro, ro->out_i, &o, x->v.ndim) : lib_error(c, st);
    free(o.data);
    return rc;
}

static int op_layer_norm(run_ctx *c, run_opts *ro) {
    int rc;
    if ((rc = need(c, R_X)) != EXIT_OK) return rc;
    slot *x = &c->s[R_X];
    int64_t D = x->v.shape[x->v.ndim - 1];
    for (int r = R_GAMMA; r <= R_BETA; r++) {
        if (!c->s[r].present) continue;
        if ((rc = need_rank(c, r, 1, 1, "(D)")) != EXIT_OK) return rc;
        if ((rc = need_dim(c, r, 0, D, R_X, -1, "D, the normalised axis")) != EXIT_OK) return rc;
    }
    outbuf o = {0};
    if ((rc = out_alloc(c, &o, x->v.ndim, x->v.shape)) != EXIT_OK) return rc;
    attn_status st = attn_layer_norm(&x->v, c->s[R_GAMMA].present ? &c->s[R_GAMMA].v : NULL,
                                     c->s[R_BETA].present ? &c->s[R_BETA].v : NULL, ro->eps, &o.v);
    rc = st == ATTN_OK ? out_save(ro, ro->out_i, &o, x->v.ndim) : lib_error(c, st);
    free(o.data);
    return rc;
}

/* self and cross (single head). */
static int op_single(run_ctx *c, run_opts *ro, int cross) {
    int rc, rq = cross ? R_XQ : R_X, rkv = cross ? R_XKV : R_X;
    if ((rc = need(c, rq)) != EXIT_OK || (rc = need(c, rkv)) != EXIT_OK ||
        (rc = need(c, R_WQ)) != EXIT_OK || (rc = need(c, R_WK)) != EXIT_OK ||
        (rc = need(c, R_WV)) != EXIT_OK)
        return rc;
    const char *xs = cross ? "(Nq, Dq) or (B, Nq, Dq)" : "(N, D) or (B, N, D)";
    if ((rc = need_rank(c, rq, 2, 3, xs)) != EXIT_OK) return rc;
    if (cross && (rc = need_rank(c, rkv, 2, 3, "(Nkv, Dkv) or (B, Nkv, Dkv)")) != EXIT_OK)
        return rc;
    for (int r = R_WQ; r <= R_WV; r++)
        if ((rc = need_rank(c, r, 2, 2, "a matrix (in, out)")) != EXIT_OK) return rc;
    attn_view *xq = &c->s[rq].v, *xkv = &c->s[rkv].v;
    if (cross && xq->ndim != xkv->ndim)
        return input_error(c, "xq has rank %d but xkv has rank %d", xq->ndim, xkv->ndim);
    if ((rc = need_dim(c, R_WQ, 0, xq->shape[xq->ndim - 1], rq, -1, "input width")) != EXIT_OK ||
        (rc = need_dim(c, R_WK, 0, xkv->shape[xkv->ndim - 1], rkv, -1, "input width")) != EXIT_OK ||
        (rc = need_dim(c, R_WV, 0, xkv->shape[xkv->ndim - 1], rkv, -1, "input width")) != EXIT_OK ||
        (rc = need_dim(c, R_WK, 1, c->s[R_WQ].v.shape[1], R_WQ, 1, "head size of q and k")) !=
            EXIT_OK)
        return rc;
    int rank = xq->ndim;
    int64_t B = rank == 3 ? xq->shape[0] : 1, Nq = xq->shape[rank - 2], Nkv = xkv->shape[rank - 2],
            HSv = c->s[R_WV].v.shape[1];
    if (cross && rank == 3 && (rc = need_dim(c, rkv, 0, B, rq, 0, "batch")) != EXIT_OK) return rc;
    attn_view mask4;
    outbuf o = {0}, lse = {0}, w = {0};
    if ((rc = setup_key_lengths(c, ro, B, Nq, Nkv, role_name(rq))) != EXIT_OK ||
        (rc = setup_mask(c, ro, &mask4, (const int64_t[]){B, 1, Nq, Nkv})) != EXIT_OK)
        return rc;
    int64_t oshape[3] = {B, Nq, HSv};
    if ((rc = out_alloc(c, &o, rank, oshape + (3 - rank))) != EXIT_OK) return rc;
    if ((rc = setup_extra_outputs(c, ro, &lse, &w, B, 1, Nq, Nkv)) == EXIT_OK) {
        attn_status st = cross ? attn_cross_attention(xq, xkv, &c->s[R_WQ].v, &c->s[R_WK].v,
                                                      &c->s[R_WV].v, &o.v, &ro->o)
                               : attn_self_attention(xq, &c->s[R_WQ].v, &c->s[R_WK].v,
                                                     &c->s[R_WV].v, &o.v, &ro->o);
        rc = st != ATTN_OK ? lib_error(c, st) : out_save(ro, ro->out_i, &o, rank);
        if (rc == EXIT_OK) rc = save_extra_outputs(ro, &lse, &w, 3, 4);
    }
    free(o.data);
    free(lse.data);
    free(w.data);
    return rc;
}

static int op_mha(run_ctx *c, run_opts *ro) {
    int rc, cross = c->s[R_XQ].present || c->s[R_XKV].present;
    if (cross && c->s[R_X].present)
        return cli_error(EXIT_USAGE, "run",
                         "mha takes --x (self) or --xq and --xkv (cross), not both");
    int rq = cross ? R_XQ : R_X, rkv = cross ? R_XKV : R_X;
    if ((rc = need(c, rq)) != EXIT_OK || (rc = need(c, rkv)) != EXIT_OK) return rc;
    if ((rc = need_rank(c, rq, 2, 3, "(N, D) or (B, N, D)")) != EXIT_OK ||
        (rc = need_rank(c, rkv, 2, 3, "(N, D) or (B, N, D)")) != EXIT_OK)
        return rc;
    attn_view *xq = &c->s[rq].v, *xkv = &c->s[rkv].v;
    if (xq->ndim != xkv->ndim)
        return input_error(c, "xq has rank %d but xkv has rank %d", xq->ndim, xkv->ndim);
    int rank = xq->ndim;
    int64_t B = rank == 3 ? xq->shape[0] : 1, Nq = xq->shape[rank - 2], Nkv = xkv->shape[rank - 2];
    int64_t Dq = xq->shape[rank - 1], Dkv = xkv->shape[rank - 1];
    if (cross && rank == 3 && (rc = need_dim(c, rkv, 0, B, rq, 0, "batch")) != EXIT_OK) return rc;

    int fused = c->s[R_WQKV].present;
    attn_mha_params p;
    memset(&p, 0, sizeof p);
    const attn_view *Wo = c->s[R_WO].present ? &c->s[R_WO].v : NULL;
    const attn_view *bo = c->s[R_BO].present ? &c->s[R_BO].v : NULL;
    int64_t NH, HSv;
    if (fused) {
        for (int r = R_WQ; r <= R_WV; r++)
            if (c->s[r].present)
                return cli_error(EXIT_USAGE, "run", "mha takes --Wqkv or --Wq/--Wk/--Wv, not both");
        if (ro->heads < 1) return cli_error(EXIT_USAGE, "run", "mha with --Wqkv needs --heads NH");
        if (Dq % ro->heads != 0)
            return cli_error(EXIT_USAGE, "run", "--heads %lld does not divide D=%lld",
                             (long long)ro->heads, (long long)Dq);
        const int64_t G = ro->kv_heads ? ro->kv_heads : ro->heads, HS = Dq / ro->heads;
        if (ro->heads % G != 0)
            return cli_error(EXIT_USAGE, "run", "--kv-heads %lld does not divide --heads %lld",
                             (long long)G, (long long)ro->heads);
        /* Width of [q | k | v]: 3*D without GQA. */
        const int64_t width = (ro->heads + 2 * G) * HS;
        const char *wdesc = G == ro->heads ? "3*D for [q | k | v]" : "(NH+2G)*HS for [q | k | v]";
        if ((rc = need_rank(c, R_WQKV, 2, 2, G == ro->heads ? "(D, 3D)" : "(D, (NH+2G)*HS)")) !=
                EXIT_OK ||
            (rc = need_dim(c, R_WQKV, 0, Dq, rq, -1, "D, the input width")) != EXIT_OK ||
            (rc = need_dim(c, R_WQKV, 1, width, -1, 0, wdesc)) != EXIT_OK)
            return rc;
        if (cross &&
            (rc = need_dim(c, rkv, -1, Dq, rq, -1, "fused weights need equal widths")) != EXIT_OK)
            return rc;
        if (c->s[R_BQKV].present &&
            ((rc = need_rank(c, R_BQKV, 1, 1, G == ro->heads ? "(3D)" : "((NH+2G)*HS)")) !=
                 EXIT_OK ||
             (rc = need_dim(c, R_BQKV, 0, width, -1, 0, G == ro->heads ? "3*D" : "(NH+2G)*HS")) !=
                 EXIT_OK))
            return rc;
        NH = ro->heads;
        HSv = HS;
        if (Wo && ((rc = need_rank(c, R_WO, 2, 2, "(D, Dout)")) != EXIT_OK ||
                   (rc = need_dim(c, R_WO, 0, Dq, rq, -1, "NH*HS = D")) != EXIT_OK))
            return rc;
        attn_status st = attn_mha_from_fused_gqa(
            &c->s[R_WQKV].v, c->s[R_BQKV].present ? &c->s[R_BQKV].v : NULL, NH, G, Wo, bo, &p);
        if (st != ATTN_OK) return lib_error(c, st);
    } else {
        if ((rc = need(c, R_WQ)) != EXIT_OK || (rc = need(c, R_WK)) != EXIT_OK ||
            (rc = need(c, R_WV)) != EXIT_OK)
            return rc;
        if (c->s[R_BQKV].present)
            return cli_error(EXIT_USAGE, "run", "--bqkv goes with --Wqkv; use --bq --bk --bv");
        for (int r = R_WQ; r <= R_WV; r++)
            if ((rc = need_rank(c, r, 3, 3, "a stack of per-head matrices (NH, D, HS)")) != EXIT_OK)
                return rc;
        NH = c->s[R_WQ].v.shape[0];
        if (ro->heads > 0 && ro->heads != NH)
            return input_error(c, "--heads %lld but Wq (%s) stacks %lld heads",
                               (long long)ro->heads, c->s[R_WQ].from, (long long)NH);
        HSv = c->s[R_WV].v.shape[2];
        /* Key/value heads: --kv-heads, else as many as Wk stacks. */
        const int64_t G = ro->kv_heads ? ro->kv_heads : c->s[R_WK].v.shape[0];
        if (ro->kv_heads && ro->kv_heads != c->s[R_WK].v.shape[0])
            return input_error(c, "--kv-heads %lld but Wk (%s) stacks %lld heads",
                               (long long)ro->kv_heads, c->s[R_WK].from,
                               (long long)c->s[R_WK].v.shape[0]);
        if (NH % G != 0 &&
            (rc = need_dim(c, R_WK, 0, NH, R_WQ, 0,
                           "number of heads: Wq's, or a divisor of it for grouped-query "
                           "attention")) != EXIT_OK)
            return rc;
        if ((rc = need_dim(c, R_WV, 0, G, R_WK, 0, "number of kv heads")) != EXIT_OK ||
            (rc = need_dim(c, R_WQ, 1, Dq, rq, -1, "input width")) != EXIT_OK ||
            (rc = need_dim(c, R_WK, 1, Dkv, rkv, -1, "input width")) != EXIT_OK ||
            (rc = need_dim(c, R_WV, 1, Dkv, rkv, -1, "input width")) != EXIT_OK ||
            (rc = need_dim(c, R_WK, 2, c->s[R_WQ].v.shape[2], R_WQ, 2, "head size of q and k")) !=
                EXIT_OK)
            return rc;
        int wr[3] = {R_WQ, R_WK, R_WV}, br[3] = {R_BQ, R_BK, R_BV};
        for (int t = 0; t < 3; t++) {
            if (!c->s[br[t]].present) continue;
            if ((rc = need_rank(c, br[t], 2, 2, "(NH, HS)")) != EXIT_OK ||
                (rc = need_dim(c, br[t], 0, c->s[wr[t]].v.shape[0], wr[t], 0, "number of heads")) !=
                    EXIT_OK ||
                (rc = need_dim(c, br[t], 1, c->s[wr[t]].v.shape[2], wr[t], 2, "head size")) !=
                    EXIT_OK)
                return rc;
        }
        if (Wo && ((rc = need_rank(c, R_WO, 2, 2, "(NH*HSv, Dout)")) != EXIT_OK ||
                   (rc = need_dim(c, R_WO, 0, NH * HSv, -1, 0, "NH*HSv")) != EXIT_OK))
            return rc;
        p.num_heads = NH;
        p.num_kv_heads = G == NH ? 0 : G;
        p.Wq = c->s[R_WQ].v;
        p.Wk = c->s[R_WK].v;
        p.Wv = c->s[R_WV].v;
        if (c->s[R_BQ].present) p.bq = c->s[R_BQ].v;
        if (c->s[R_BK].present) p.bk = c->s[R_BK].v;
        if (c->s[R_BV].present) p.bv = c->s[R_BV].v;
        if (Wo) p.Wo = *Wo;
        if (bo) p.bo = *bo;
    }
    int64_t Dout = Wo ? Wo->shape[1] : NH * HSv;
    if (bo && ((rc = need_rank(c, R_BO, 1, 1, "(Dout)")) != EXIT_OK ||
               (rc = need_dim(c, R_BO, 0, Dout, Wo ? R_WO : -1, -1, "Dout")) != EXIT_OK))
        return rc;
    attn_view mask4;
    outbuf o = {0}, lse = {0}, w = {0};
    if ((rc = setup_key_lengths(c, ro, B, Nq, Nkv, role_name(rq))) != EXIT_OK ||
        (rc = setup_mask(c, ro, &mask4, (const int64_t[]){B, NH, Nq, Nkv})) != EXIT_OK)
        return rc;
    int64_t oshape[3] = {B, Nq, Dout};
    if ((rc = out_alloc(c, &o, rank, oshape + (3 - rank))) != EXIT_OK) return rc;
    if ((rc = setup_extra_outputs(c, ro, &lse, &w, B, NH, Nq, Nkv)) == EXIT_OK) {
        attn_status st = attn_mha(&p, xq, cross ? xkv : NULL, &o.v, &ro->o);
        rc = st != ATTN_OK ? lib_error(c, st) : out_save(ro, ro->out_i, &o, rank);
        if (rc == EXIT_OK) rc = save_extra_outputs(ro, &lse, &w, 3, 4);
    }
    free(o.data);
    free(lse.data);
    free(w.data);
    return rc;
}

static int op_sdpa(run_ctx *c, run_opts *ro) {
    int rc;
    if ((rc = need(c, R_Q)) != EXIT_OK || (rc = need(c, R_K)) != EXIT_OK ||
        (rc = need(c, R_V)) != EXIT_OK)
        return rc;
    for (int r = R_Q; r <= R_V; r++)
        if ((rc = need_rank(c, r, 2, 4, "(N, d), (H, N, d) or (B, H, N, d)")) != EXIT_OK) return rc;
    int rank = c->s[R_Q].v.ndim;
    attn_view q = pad4(c->s[R_Q].v), k = pad4(c->s[R_K].v), v = pad4(c->s[R_V].v);
    /* Checked on the rank-4 forms; dimensions named in the files' own ranks. */
    int64_t B = q.shape[0], H = q.shape[1], Nq = q.shape[2], d = q.shape[3];
    int64_t Hkv = k.shape[1], Nkv = k.shape[2], dv = v.shape[3];
    char dq[ERRLEN], dk[1400];
    if (k.shape[0] != B || v.shape[0] != B)
        return input_error(
            c, "batch differs: %s vs %s (B = dimension 0 of the rank-4 form)",
            desc(&c->s[R_Q], R_Q, dq, sizeof dq),
            desc(&c->s[k.shape[0] != B ? R_K : R_V], k.shape[0] != B ? R_K : R_V, dk, sizeof dk));
    if (k.shape[3] != d)
        return input_error(c, "head size differs: k last dimension is %lld but q has %lld (%s, %s)",
                           (long long)k.shape[3], (long long)d, c->s[R_K].from, c->s[R_Q].from);
    if (v.shape[1] != Hkv || v.shape[2] != Nkv)
        return input_error(c,
                           "%s and %s: v must have the same heads and tokens as k (dimensions "
                           "-3 and -2)",
                           desc(&c->s[R_V], R_V, dq, sizeof dq),
                           desc(&c->s[R_K], R_K, dk, sizeof dk));
    if (H % Hkv != 0)
        return input_error(c, "q has H=%lld heads, not a multiple of the %lld kv heads of k (%s)",
                           (long long)H, (long long)Hkv, c->s[R_K].from);
    attn_view mask4;
    outbuf o = {0}, lse = {0}, w = {0};
    if ((rc = setup_key_lengths(c, ro, B, Nq, Nkv, "q")) != EXIT_OK ||
        (rc = setup_mask(c, ro, &mask4, (const int64_t[]){B, H, Nq, Nkv})) != EXIT_OK)
        return rc;
    if ((rc = out_alloc(c, &o, 4, (const int64_t[]){B, H, Nq, dv})) != EXIT_OK) return rc;
    if ((rc = setup_extra_outputs(c, ro, &lse, &w, B, H, Nq, Nkv)) == EXIT_OK) {
        attn_status st = attn_sdpa(&q, &k, &v, &o.v, &ro->o);
        rc = st != ATTN_OK ? lib_error(c, st) : out_save(ro, ro->out_i, &o, rank);
        if (rc == EXIT_OK) rc = save_extra_outputs(ro, &lse, &w, rank - 1, rank);
    }
    free(o.data);
    free(lse.data);
    free(w.data);
    return rc;
}

/* The outputs, checked against the inputs before anything is read. */
static int plan_outputs(run_ctx *c, run_opts *ro) {
    ro->out_i = outset_add(&ro->outs, "-o", ro->out);
    if (ro->lse_out) ro->lse_i = outset_add(&ro->outs, "--lse-out", ro->lse_out);
    if (ro->weights_out) ro->w_i = outset_add(&ro->outs, "--weights-out", ro->weights_out);
    if (ro->weights_png) ro->wpng_i = outset_add(&ro->outs, "--weights-png", ro->weights_png);
    const char *in[R_COUNT + 1], *in_opt[R_COUNT + 1];
    char *owned[R_COUNT];
    int n = 0, no = 0, rc = EXIT_OK;
    for (int r = 0; r < R_COUNT; r++) {
        if (!c->s[r].spec) continue;
        char *path = npy_spec_path(c->s[r].spec, NULL);
        if (!path) {
            rc = cli_error(EXIT_COMPUTE, "run", "out of memory");
            break;
        }
        owned[no++] = path;
        in[n] = path;
        in_opt[n++] = roles[r].opt;
    }
    if (ro->npz) {
        in[n] = ro->npz;
        in_opt[n++] = "--npz";
    }
    char err[ERRLEN];
    if (rc == EXIT_OK && outset_check(&ro->outs, in, in_opt, n, err, sizeof err) != 0)
        rc = cli_error(EXIT_OUTPUT, "run", "%s", err);
    for (int k = 0; k < no; k++)
        free(owned[k]);
    return rc;
}

/* ---- command line ------------------------------------------------------------- */

int cmd_run(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(run_help, stdout);
            return EXIT_OK;
        }
    if (argc < 2 || argv[1][0] == '-')
        return cli_error(EXIT_USAGE, "run",
                         "needs an operation: softmax, layer-norm, self, cross, mha or sdpa "
                         "(see attn run --help)");
    static run_ctx c;
    static run_opts ro;
    memset(&c, 0, sizeof c);
    memset(&ro, 0, sizeof ro);
    /* A file size limit (ulimit -f) makes a write fail with EFBIG instead of
     * killing the process with the temporary file left behind. */
    signal(SIGXFSZ, SIG_IGN);
    c.op = argv[1];
    const char *ops[] = {"softmax", "layer-norm", "self", "cross", "mha", "sdpa"};
    int known = 0;
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        known |= strcmp(c.op, ops[k]) == 0;
    if (!known)
        return cli_error(EXIT_USAGE, "run",
                         "unknown operation '%s': softmax, layer-norm, self, cross, mha or sdpa",
                         c.op);
    ro.o = attn_opts_default();
    ro.eps = 1e-5f;
    int attention = strcmp(c.op, "softmax") != 0 && strcmp(c.op, "layer-norm") != 0;

    int rc = EXIT_OK;
    for (int i = 2; i < argc; i++) {
        const char *val, *w = argv[i];
        int r, matched = 0;
        for (int role = 0; role < R_COUNT && !matched; role++) {
            if ((r = opt_value(argc, argv, &i, roles[role].opt, &val)) == 0) continue;
            matched = 1;
            if (r < 0) return cli_error(EXIT_USAGE, "run", "%s needs a file", w);
            if (!role_allowed(c.op, role))
                return cli_error(EXIT_USAGE, "run", "%s does not take %s (see attn run --help)",
                                 c.op, roles[role].opt);
            c.s[role].spec = val;
        }
        if (matched) continue;
        struct {
            const char *name;
            const char **dst;
        } files[] = {{"--npz", &ro.npz},
                     {"--out", &ro.out},
                     {"-o", &ro.out},
                     {"--lse-out", &ro.lse_out},
                     {"--weights-out", &ro.weights_out},
                     {"--weights-png", &ro.weights_png}};
        for (size_t k = 0; k < sizeof files / sizeof files[0] && !matched; k++) {
            if ((r = opt_value(argc, argv, &i, files[k].name, &val)) == 0) continue;
            matched = 1;
            if (r < 0) return cli_error(EXIT_USAGE, "run", "%s needs a file", w);
            if (!attention && files[k].dst != &ro.out && files[k].dst != &ro.npz)
                return cli_error(EXIT_USAGE, "run", "%s does not take %s", c.op, files[k].name);
            *files[k].dst = val;
        }
        if (matched) continue;
        int64_t iv;
        uint64_t uv;
        float fv;
        if ((r = opt_value(argc, argv, &i, "--heads", &val)) != 0) {
            if (r < 0 || parse_i64(val, 1, (int64_t)1 << 30, &iv) != 0)
                return cli_error(EXIT_USAGE, "run", "--heads needs a positive integer");
            ro.heads = iv;
        } else if ((r = opt_value(argc, argv, &i, "--kv-heads", &val)) != 0) {
            if (strcmp(c.op, "mha") != 0)
                return cli_error(EXIT_USAGE, "run", "--kv-heads is for mha");
            if (r < 0 || parse_i64(val, 1, (int64_t)1 << 30, &iv) != 0)
                return cli_error(EXIT_USAGE, "run", "--kv-heads needs a positive integer");
            ro.kv_heads = iv;
        } else if ((r = opt_value(argc, argv, &i, "--layout", &val)) != 0) {
            if (r < 0 || (strcmp(val, "xw") != 0 && strcmp(val, "torch") != 0))
                return cli_error(EXIT_USAGE, "run", "--layout takes xw or torch");
            c.torch_layout = strcmp(val, "torch") == 0;
        } else if ((r = opt_value(argc, argv, &i, "--threads", &val)) != 0) {
            if (r < 0 || parse_i64(val, 0, 4096, &iv) != 0)
                return cli_error(EXIT_USAGE, "run", "--threads needs an integer in 0..4096");
            ro.o.num_threads = (int)iv;
        } else if ((r = opt_value(argc, argv, &i, "--algo", &val)) != 0) {
            if (r < 0 || parse_algo(val, &ro.o.algo) != 0)
                return cli_error(EXIT_USAGE, "run", "--algo takes auto, reference or flash");
        } else if ((r = opt_value(argc, argv, &i, "--eps", &val)) != 0) {
            if (strcmp(c.op, "layer-norm") != 0)
                return cli_error(EXIT_USAGE, "run", "--eps is for layer-norm");
            if (r < 0 || parse_f32(val, &fv) != 0 || fv < 0)
                return cli_error(EXIT_USAGE, "run", "--eps needs a number >= 0");
            ro.eps = fv;
        } else if (!attention) {
            return cli_error(EXIT_USAGE, "run", "unknown option '%s' for %s (see attn run --help)",
                             w, c.op);
        } else if (cli_bare_causal(argc, argv, i)) {
            ro.o.causal = CLI_CAUSAL_BARE; /* resolved once Nq and Nkv are known */
        } else if ((r = opt_value(argc, argv, &i, "--causal", &val)) != 0) {
            if (r < 0 || parse_causal(val, &ro.o.causal) != 0)
                return cli_error(EXIT_USAGE, "run",
                                 "--causal takes none, top_left or bottom_right, got '%s'",
                                 r < 0 ? "" : val);
        } else if ((r = opt_value(argc, argv, &i, "--scale", &val)) != 0) {
            if (r < 0 || parse_f32(val, &fv) != 0)
                return cli_error(EXIT_USAGE, "run", "--scale needs a finite number");
            ro.o.scale = fv;
        } else if ((r = opt_value(argc, argv, &i, "--dropout", &val)) != 0) {
            if (r < 0 || parse_f32(val, &fv) != 0 || fv < 0 || fv >= 1)
                return cli_error(EXIT_USAGE, "run", "--dropout needs P in [0, 1)");
            ro.o.dropout_p = fv;
        } else if ((r = opt_value(argc, argv, &i, "--window", &val)) != 0) {
            if (r < 0 || parse_window(val, &ro.o.window_left, &ro.o.window_right) != 0)
                return cli_error(EXIT_USAGE, "run",
                                 "--window takes LEFT,RIGHT, each -1 (unbounded) or >= 0%s%s",
                                 r < 0 ? "" : ", got ", r < 0 ? "" : val);
        } else if ((r = opt_value(argc, argv, &i, "--softcap", &val)) != 0) {
            if (r < 0 || parse_f32(val, &fv) != 0 || fv < 0)
                return cli_error(EXIT_USAGE, "run",
                                 "--softcap needs a finite number >= 0 (0: off)");
            ro.o.softcap = fv;
        } else if (strcmp(w, "--alibi") == 0) {
            ro.alibi = 1;
        } else if ((r = opt_value(argc, argv, &i, "--q-offset", &val)) != 0) {
            if (r < 0 || parse_i64(val, -((int64_t)1 << 61), (int64_t)1 << 61, &iv) != 0)
                return cli_error(EXIT_USAGE, "run", "--q-offset needs an integer in -2^61..2^61");
            ro.q_offset = iv;
            ro.q_offset_set = 1;
        } else if ((r = opt_value(argc, argv, &i, "--k-offset", &val)) != 0) {
            if (r < 0 || parse_i64(val, -((int64_t)1 << 61), (int64_t)1 << 61, &iv) != 0)
                return cli_error(EXIT_USAGE, "run", "--k-offset needs an integer in -2^61..2^61");
            ro.o.k_offset = iv;
        } else if ((r = opt_value(argc, argv, &i, "--seed", &val)) != 0) {
            if (r < 0 || parse_u64(val, &uv) != 0)
                return cli_error(EXIT_USAGE, "run", "--seed needs an unsigned integer");
            ro.o.dropout_seed = uv;
        } else {
            return cli_error(EXIT_USAGE, "run", "unknown option '%s' (see attn run --help)", w);
        }
    }
    if (!ro.out) return cli_error(EXIT_USAGE, "run", "needs -o OUT.npy");
    rc = plan_outputs(&c, &ro);

    npy_archive ar;
    int have_ar = 0;
    if (rc == EXIT_OK && ro.npz) {
        char err[ERRLEN];
        if (npy_archive_open(ro.npz, &ar, err, sizeof err) != 0)
            rc = cli_error(EXIT_INPUT, "run", "--npz: %s", err);
        else
            have_ar = 1;
    }
    for (int r = 0; r < R_COUNT && rc == EXIT_OK; r++)
        if (role_allowed(c.op, r)) rc = load_role(&c, r, have_ar ? &ar : NULL);
    if (have_ar) npy_archive_close(&ar);
    if (rc == EXIT_OK) {
        if (strcmp(c.op, "softmax") == 0)
            rc = op_softmax(&c, &ro);
        else if (strcmp(c.op, "layer-norm") == 0)
            rc = op_layer_norm(&c, &ro);
        else if (strcmp(c.op, "self") == 0)
            rc = op_single(&c, &ro, 0);
        else if (strcmp(c.op, "cross") == 0)
            rc = op_single(&c, &ro, 1);
        else if (strcmp(c.op, "mha") == 0)
            rc = op_mha(&c, &ro);
        else
            rc = op_sdpa(&c, &ro);
    }
    if (rc == EXIT_OK) {
        char err[ERRLEN];
        if (outset_commit(&ro.outs, err, sizeof err) != 0)
            rc = cli_error(EXIT_OUTPUT, "run", "%s", err);
    }
    outset_close(&ro.outs);
    for (int r = 0; r < R_COUNT; r++) {
        npy_free(&c.s[r].a);
        free(c.s[r].from);
    }
    free(ro.keylen_heap);
    free(ro.alibi_heap);
    free(ro.q_offset_heap);
    return rc;
}
