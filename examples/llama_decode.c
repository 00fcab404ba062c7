/* llama_decode.c - a Llama-style decoder on attn's public API: RMSNorm,
 * grouped-query attention with RoPE over a paged bfloat16 KV cache, a SwiGLU
 * MLP; prefill of a prompt, then greedy decoding token by token. Weights are
 * random from a seed (no checkpoint, no tokenizer: token ids 0..V-1).
 *
 * One layer, with T tokens at positions p0..p0+T-1 (h is (T, D)):
 *   a   = rms_norm(h) * g_attn                                 (T, D)
 *   qkv = a @ Wqkv                      (T, (H + 2*Hkv)*HS)    one GEMM, [q | k | v]
 *   q, k, v = split (attn_split_qkv_gqa): (1, H, T, HS), (1, Hkv, T, HS) x 2
 *   q  = rope(q, p0..)                                         attn_rope, in place
 *   cache <- rope(k), v                                        attn_kv_append_rope
 *   o   = attend(q, cache, causal bottom-right)  (1, H, T, HS) attn_kv_attend, into cat (T, H*HS)
 *   h  += cat @ Wo
 *   b   = rms_norm(h) * g_ffn
 *   h  += (silu(b @ W1) * (b @ W3)) @ W2                       (T, F) -> (T, D)
 * then logits = rms_norm(h[T-1]) * g_out @ Wout and the next token is the
 * argmax.
 *
 * It prints tokens/s of the decode and its share of the memory limit: a
 * decode step must read every weight (float32) and the cache's K and V
 * (bfloat16) once, so it cannot be faster than those bytes over the rate
 * of a plain read-only pass over the weights measured in the same run.
 *   share = (bytes per token / stream rate) / time per token
 *
 * --check runs the same decode a second time with attention on attn's
 * reference path (attn_kv_read back to float32 + attn_sdpa with
 * ATTN_ALGO_REFERENCE) and compares every step's logits and token.
 * --dump DIR writes the weights, tokens and logits as .npy files (for
 * examples/test_llama_decode.py's float64 NumPy model).
 * --packed also packs every projection weight at load (attn_weight_pack)
 * and runs the decode steps' projections (T <= 8 rows) with
 * attn_linear_packed, which reads each weight in memory order; the prefill
 * keeps attn_linear's GEMM. The tokens and logits are the same bits as
 * without it (docs/threads.md, "Packed weights").
 *
 *   llama_decode [--dim D] [--heads H] [--kv-heads G] [--ffn F] [--layers L]
 *                [--vocab V] [--prompt P] [--tokens N] [--block BS]
 *                [--base THETA] [--seed S] [--threads T] [--check] [--dump DIR]
 *                [--packed]
 * Defaults: TinyLlama-1.1B's layer (D 2048, H 32, Hkv 4, HS 64, F 5632),
 * 2 layers, V 256, a 4064-token prompt and 32 new tokens (context 4096). */
#define _POSIX_C_SOURCE 200809L
#include <attn.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int64_t D, H, G, HS, F, L, V, P, N, BS;
    double base;
    uint64_t seed;
    int threads, check, packed;
    const char *dump;
} config;

typedef struct {
    float *g_attn, *Wqkv, *Wo, *g_ffn, *W1, *W3,
        *W2;                              /* (D), (D, C), (H*HS, D), (D), (D, F) x2, (F, D) */
    float *pWqkv, *pWo, *pW1, *pW3, *pW2; /* --packed: the same, packed (else NULL) */
} layer;

typedef struct {
    config c;
    int64_t C;    /* (H + 2*Hkv) * HS */
    float *arena; /* every weight, one block (the stream pass reads it) */
    size_t arena_n;
    layer *ly;
    float *E, *g_out, *Wout; /* (V, D), (D), (D, V) */
    float *parena, *pWout;   /* --packed: the packed weights, one block; Wout packed */
    attn_kv_cache **cache;   /* one per layer */
    int32_t *table;          /* the sequence's blocks 0..nb-1 */
    int64_t nb;
    /* activations for up to P tokens */
    float *h, *a, *qkv, *cat, *tmp, *u, *g, *logits;
    float *kf, *vf; /* --check: the cache read back, (Hkv, ctx, HS) */
    attn_rope_params rope;
    double *step_s, *stream_s;     /* per decode step: its time, and a stream pass after it */
    double *step_cpu, *stream_cpu; /* the same in process CPU time (all threads) */
    uint64_t sink;
} model;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU seconds of every thread of the process: on a shared machine, the time
 * this program actually ran (not the time others held the cores). */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define TRY(call)                                                                                  \
    do {                                                                                           \
        if ((call) != ATTN_OK) {                                                                   \
            fprintf(stderr, "llama_decode: %s: %s\n", #call, attn_last_error());                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* splitmix64 -> uniform in [-1, 1) */
static uint64_t rng_state;
static float uni(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / 8388608.0 - 1.0);
}

/* Uniform with variance 1/fan_in (so activations stay O(1)). */
static void fill(float *w, size_t n, double fan_in) {
    const float s = (float)sqrt(3.0 / fan_in);
    for (size_t i = 0; i < n; i++)
        w[i] = uni() * s;
}

static void fill_gain(float *g, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        g[i] = 1.0f + 0.1f * uni();
}

static void *xalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "llama_decode: out of memory (%zu x %zu bytes)\n", n, size);
        exit(1);
    }
    return p;
}

/* A packed (in, out) weight at wp: (ceil(out / ATTN_PANEL), in, ATTN_PANEL). */
static attn_view packed_view(const float *wp, int64_t in, int64_t out) {
    return attn_view_3d((float *)wp, (out + ATTN_PANEL - 1) / ATTN_PANEL, in, ATTN_PANEL);
}

/* Its floats. */
static size_t packed_n(int64_t in, int64_t out) {
    const attn_view v = packed_view(NULL, in, out);
    return (size_t)(v.shape[0] * in * ATTN_PANEL);
}

/* W (in, out) packed at *q, which moves past it. */
static float *pack(float **q, const float *W, int64_t in, int64_t out) {
    float *wp = *q;
    attn_view w = attn_view_2d((float *)W, in, out), p = packed_view(wp, in, out);
    TRY(attn_weight_pack(&w, &p));
    *q += packed_n(in, out);
    return wp;
}

/* y = x @ W: packed when there is a packed copy and x has at most 8 rows. */
static void project(const attn_view *x, const float *W, const float *Wp, int64_t in, int64_t out,
                    attn_view *y, int nt) {
    if (Wp && x->shape[0] <= 8) {
        attn_view p = packed_view(Wp, in, out);
        TRY(attn_linear_packed(x, &p, NULL, y, nt));
    } else {
        attn_view w = attn_view_2d((float *)W, in, out);
        TRY(attn_linear(x, &w, NULL, y, nt));
    }
}

static void build(model *m) {
    const config *c = &m->c;
    const int64_t D = c->D, C = (c->H + 2 * c->G) * c->HS, F = c->F, HD = c->H * c->HS;
    m->C = C;
    const size_t per = (size_t)(D + D * C + HD * D + D + 3 * D * F);
    m->arena_n = per * (size_t)c->L + (size_t)(c->V * D + D + D * c->V);
    m->arena = xalloc(m->arena_n, sizeof(float));
    m->ly = xalloc((size_t)c->L, sizeof(layer));
    rng_state = c->seed;
    float *p = m->arena;
    for (int64_t l = 0; l < c->L; l++) {
        layer *y = &m->ly[l];
        y->g_attn = p, p += D;
        y->Wqkv = p, p += D * C;
        y->Wo = p, p += HD * D;
        y->g_ffn = p, p += D;
        y->W1 = p, p += D * F;
        y->W3 = p, p += D * F;
        y->W2 = p, p += F * D;
        fill_gain(y->g_attn, D);
        fill(y->Wqkv, (size_t)(D * C), (double)D);
        fill(y->Wo, (size_t)(HD * D), (double)HD);
        fill_gain(y->g_ffn, D);
        fill(y->W1, (size_t)(D * F), (double)D);
        fill(y->W3, (size_t)(D * F), (double)D);
        fill(y->W2, (size_t)(F * D), (double)F);
    }
    m->E = p, p += c->V * D;
    m->g_out = p, p += D;
    m->Wout = p, p += D * c->V;
    fill(m->E, (size_t)(c->V * D), 1.0);
    fill_gain(m->g_out, D);
    fill(m->Wout, (size_t)(D * c->V), (double)D);
    if (c->packed) {
        const size_t pn = (size_t)c->L * (packed_n(D, C) + packed_n(HD, D) + 2 * packed_n(D, F) +
                                          packed_n(F, D)) +
                          packed_n(D, c->V);
        float *q = m->parena = xalloc(pn, sizeof(float));
        for (int64_t l = 0; l < c->L; l++) {
            layer *y = &m->ly[l];
            y->pWqkv = pack(&q, y->Wqkv, D, C);
            y->pWo = pack(&q, y->Wo, HD, D);
            y->pW1 = pack(&q, y->W1, D, F);
            y->pW3 = pack(&q, y->W3, D, F);
            y->pW2 = pack(&q, y->W2, F, D);
        }
        m->pWout = pack(&q, m->Wout, D, c->V);
    }

    const int64_t ctx = c->P + c->N;
    m->nb = (ctx + c->BS - 1) / c->BS;
    m->table = xalloc((size_t)m->nb, sizeof(int32_t));
    for (int64_t i = 0; i < m->nb; i++)
        m->table[i] = (int32_t)i;
    m->cache = xalloc((size_t)c->L, sizeof *m->cache);
    for (int64_t l = 0; l < c->L; l++)
        TRY(attn_kv_create(m->nb, c->BS, c->G, c->HS, 0, ATTN_KV_BFLOAT16, &m->cache[l]));
    const size_t T = (size_t)c->P;
    m->h = xalloc(T * (size_t)D, sizeof(float));
    m->a = xalloc(T * (size_t)D, sizeof(float));
    m->qkv = xalloc(T * (size_t)C, sizeof(float));
    m->cat = xalloc(T * (size_t)HD, sizeof(float));
    m->tmp = xalloc(T * (size_t)D, sizeof(float));
    m->u = xalloc(T * (size_t)F, sizeof(float));
    m->g = xalloc(T * (size_t)F, sizeof(float));
    m->logits = xalloc((size_t)c->V, sizeof(float));
    if (c->check) {
        m->kf = xalloc((size_t)(c->G * ctx * c->HS), sizeof(float));
        m->vf = xalloc((size_t)(c->G * ctx * c->HS), sizeof(float));
    }
    m->rope = attn_rope_params_default();
    m->rope.base = c->base;
}

/* Run T tokens at positions p0..p0+T-1 through every layer; the logits of
 * the last one land in m->logits. reference: attention on the reference path. */
static void forward(model *m, const int64_t *tokens, int64_t T, int64_t p0, int reference) {
    const config *c = &m->c;
    const int64_t D = c->D, C = m->C, F = c->F, HD = c->H * c->HS, nt = c->threads;
    for (int64_t t = 0; t < T; t++)
        memcpy(m->h + t * D, m->E + tokens[t] * D, (size_t)D * sizeof(float));
    attn_view h = attn_view_2d(m->h, T, D), a = attn_view_2d(m->a, T, D);
    attn_view qkv = attn_view_2d(m->qkv, T, C), qkv3 = attn_view_3d(m->qkv, 1, T, C);
    attn_view cat = attn_view_2d(m->cat, T, HD), tmp = attn_view_2d(m->tmp, T, D);
    attn_view u = attn_view_2d(m->u, T, F), g = attn_view_2d(m->g, T, F);
    /* The heads' outputs (1, H, T, HS) written straight into cat (T, H*HS). */
    attn_view o = {m->cat, 4, {1, c->H, T, c->HS}, {T * HD, c->HS, HD, 1}};
    int64_t *pos = xalloc((size_t)T, sizeof(int64_t));
    for (int64_t t = 0; t < T; t++)
        pos[t] = p0 + t;
    const int64_t ctx = p0 + T;
    attn_opts op = attn_opts_default();
    op.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    op.num_threads = (int)nt;
    for (int64_t l = 0; l < c->L; l++) {
        const layer *y = &m->ly[l];
        attn_view ga = attn_view_1d(y->g_attn, D), gf = attn_view_1d(y->g_ffn, D);
        /* 1. attention block */
        TRY(attn_rms_norm(&h, &ga, 1e-5f, &a));
        project(&a, y->Wqkv, y->pWqkv, D, C, &qkv, (int)nt);
        attn_view q, k, v;
        TRY(attn_split_qkv_gqa(&qkv3, c->H, c->G, &q, &k, &v));
        TRY(attn_rope(&q, pos, NULL, &q, &m->rope));
        TRY(attn_kv_append_rope(m->cache[l], m->table, m->nb, &p0, NULL, &k, &v, &m->rope));
        if (!reference) {
            TRY(attn_kv_attend(m->cache[l], &q, m->table, m->nb, &ctx, NULL, &o, &op));
        } else {
            attn_view k3 = attn_view_3d(m->kf, c->G, ctx, c->HS);
            attn_view v3 = attn_view_3d(m->vf, c->G, ctx, c->HS);
            TRY(attn_kv_read(m->cache[l], m->table, ctx, &k3, &v3));
            attn_view k4 = attn_view_4d(m->kf, 1, c->G, ctx, c->HS);
            attn_view v4 = attn_view_4d(m->vf, 1, c->G, ctx, c->HS);
            attn_opts ro = op;
            ro.algo = ATTN_ALGO_REFERENCE;
            TRY(attn_sdpa(&q, &k4, &v4, &o, &ro));
        }
        project(&cat, y->Wo, y->pWo, HD, D, &tmp, (int)nt);
        for (int64_t i = 0; i < T * D; i++)
            m->h[i] += m->tmp[i];
        /* 2. SwiGLU MLP */
        TRY(attn_rms_norm(&h, &gf, 1e-5f, &a));
        project(&a, y->W1, y->pW1, D, F, &u, (int)nt);
        project(&a, y->W3, y->pW3, D, F, &g, (int)nt);
        for (int64_t i = 0; i < T * F; i++) {
            const float x = m->u[i];
            m->u[i] = x / (1.0f + expf(-x)) * m->g[i];
        }
        project(&u, y->W2, y->pW2, F, D, &tmp, (int)nt);
        for (int64_t i = 0; i < T * D; i++)
            m->h[i] += m->tmp[i];
    }
    attn_view last = attn_view_2d(m->h + (T - 1) * D, 1, D), a1 = attn_view_2d(m->a, 1, D);
    attn_view go = attn_view_1d(m->g_out, D), lg = attn_view_2d(m->logits, 1, c->V);
    TRY(attn_rms_norm(&last, &go, 1e-5f, &a1));
    project(&a1, m->Wout, m->pWout, D, c->V, &lg, (int)nt);
    free(pos);
}

static int64_t argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static double stream_pass(const model *m, uint64_t *sink);

/* Longest prompt whose prefill --check runs on the reference path. */
#define REF_PREFILL_MAX 512

/* Prefill the prompt, then decode c.N tokens. tokens: P + N ids (the prompt
 * given, the rest written); logits: (N + 1, V), row s after s decode steps. */
static void generate(model *m, int64_t *tokens, float *logits, int reference, double *t_prefill,
                     double *t_decode) {
    const config *c = &m->c;
    double t0 = now();
    forward(m, tokens, c->P, 0, reference && c->P <= REF_PREFILL_MAX);
    memcpy(logits, m->logits, (size_t)c->V * sizeof(float));
    tokens[c->P] = argmax(m->logits, c->V);
    double t1 = now(), td = 0;
    for (int64_t s = 1; s <= c->N; s++) {
        const int64_t p = c->P + s - 1; /* the token decided last, at position p */
        const double s0 = now(), c0 = cpu_now();
        forward(m, &tokens[p], 1, p, reference);
        memcpy(logits + s * c->V, m->logits, (size_t)c->V * sizeof(float));
        if (p + 1 < c->P + c->N) tokens[p + 1] = argmax(m->logits, c->V);
        const double s1 = now(), c1 = cpu_now();
        td += s1 - s0;
        /* A stream pass over the weights right after each step, so both see
         * the same machine (it is shared: timings vary from step to step). */
        if (!reference) {
            m->step_s[s - 1] = s1 - s0;
            m->step_cpu[s - 1] = c1 - c0;
            const double c2 = cpu_now();
            m->stream_s[s - 1] = stream_pass(m, &m->sink);
            m->stream_cpu[s - 1] = cpu_now() - c2;
        }
    }
    *t_prefill = t1 - t0;
    *t_decode = td;
}

/* ---- the stream: a read-only pass over the weights, T threads ----------- */

typedef struct {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
} stream_part;

static void *stream_run(void *arg) {
    stream_part *s = arg;
    uint64_t acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= s->n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += s->p[i + j];
    for (; i < s->n; i++)
        acc[0] += s->p[i];
    s->sum = acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ acc[4] ^ acc[5] ^ acc[6] ^ acc[7];
    return NULL;
}

/* Seconds of one read-only pass over every weight, c.threads threads. */
static double stream_pass(const model *m, uint64_t *sink) {
    const size_t words = m->arena_n * sizeof(float) / 8;
    pthread_t th[64];
    stream_part part[64];
    const int T = m->c.threads < 1 ? 1 : m->c.threads > 64 ? 64 : m->c.threads;
    const double t0 = now();
    for (int i = 0; i < T; i++) {
        part[i].p = (const uint64_t *)m->arena + words * (size_t)i / (size_t)T;
        part[i].n = words * (size_t)(i + 1) / (size_t)T - words * (size_t)i / (size_t)T;
        pthread_create(&th[i], NULL, stream_run, &part[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        *sink ^= part[i].sum;
    }
    return now() - t0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorted in place). */
static double median(double *v, int64_t n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- .npy output ----------------------------------------------------------- */

static void save_npy(const char *dir, const char *name, const char *descr, const void *data,
                     size_t elem, int ndim, const int64_t *shape) {
    char path[4096], shp[128] = "", hdr[256];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    size_t n = 1, len = 0;
    for (int i = 0; i < ndim; i++) {
        len += (size_t)snprintf(shp + len, sizeof shp - len, "%lld,%s", (long long)shape[i],
                                i + 1 < ndim ? " " : "");
        n *= (size_t)shape[i];
    }
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                      descr, shp);
    const int total = (10 + hl + 1 + 63) / 64 * 64; /* magic + len + header + '\n', aligned */
    memset(hdr + hl, ' ', (size_t)(total - 10 - hl - 1));
    hdr[total - 10 - 1] = '\n';
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "llama_decode: cannot write %s\n", path);
        exit(1);
    }
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    const uint16_t h16 = (uint16_t)(total - 10);
    const unsigned char lenb[2] = {(unsigned char)(h16 & 0xff), (unsigned char)(h16 >> 8)};
    if (fwrite(magic, 1, 8, f) != 8 || fwrite(lenb, 1, 2, f) != 2 ||
        fwrite(hdr, 1, (size_t)(total - 10), f) != (size_t)(total - 10) ||
        fwrite(data, elem, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "llama_decode: writing %s failed\n", path);
        exit(1);
    }
}

static void dump(const model *m, const int64_t *tokens, const float *logits) {
    const config *c = &m->c;
    const char *d = c->dump;
    const int64_t D = c->D, C = m->C, F = c->F, HD = c->H * c->HS;
    for (int64_t l = 0; l < c->L; l++) {
        const layer *y = &m->ly[l];
        char nm[64];
#define SAVE(field, ...)                                                                           \
    do {                                                                                           \
        snprintf(nm, sizeof nm, "l%lld_" #field, (long long)l);                                    \
        save_npy(d, nm, "<f4", y->field, 4, (int)(sizeof((int64_t[]){__VA_ARGS__}) / 8),           \
                 (int64_t[]){__VA_ARGS__});                                                        \
    } while (0)
        SAVE(g_attn, D);
        SAVE(Wqkv, D, C);
        SAVE(Wo, HD, D);
        SAVE(g_ffn, D);
        SAVE(W1, D, F);
        SAVE(W3, D, F);
        SAVE(W2, F, D);
#undef SAVE
    }
    save_npy(d, "E", "<f4", m->E, 4, 2, (int64_t[]){c->V, D});
    save_npy(d, "g_out", "<f4", m->g_out, 4, 1, (int64_t[]){D});
    save_npy(d, "Wout", "<f4", m->Wout, 4, 2, (int64_t[]){D, c->V});
    save_npy(d, "tokens", "<i8", tokens, 8, 1, (int64_t[]){c->P + c->N});
    save_npy(d, "logits", "<f4", logits, 4, 2, (int64_t[]){c->N + 1, c->V});
}

/* ---- main -------------------------------------------------------------------- */

static int64_t arg_i(int argc, char **argv, int *i, int64_t lo) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "llama_decode: %s needs a value\n", argv[*i]);
        exit(2);
    }
    char *end;
    long long v = strtoll(argv[++*i], &end, 10);
    if (*end || v < lo || v > (1ll << 40)) {
        fprintf(stderr, "llama_decode: %s %s: an integer >= %lld is needed\n", argv[*i - 1],
                argv[*i], (long long)lo);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    model m;
    memset(&m, 0, sizeof m);
    config *c = &m.c;
    *c = (config){2048, 32, 4, 0, 5632, 2, 256, 4064, 32, 64, 10000.0, 1, 0, 0, 0, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--dim"))
            c->D = arg_i(argc, argv, &i, 1);
        else if (!strcmp(a, "--heads"))
            c->H = arg_i(argc, argv, &i, 1);
        else if (!strcmp(a, "--kv-heads"))
            c->G = arg_i(argc, argv, &i, 1);
        else if (!strcmp(a, "--ffn"))
            c->F = arg_i(argc, argv, &i, 1);
        else if (!strcmp(a, "--layers"))
            c->L = arg_i(argc, argv, &i, 1);
        else if (!strcmp(a, "--vocab"))
            c->V = arg_i(argc, argv, &i, 2);
        else if (!strcmp(a, "--prompt"))
            c->P = arg_i(argc, argv, &i, 1);
        else if (!strcmp(a, "--tokens"))
            c->N = arg_i(argc, argv, &i, 0);
        else if (!strcmp(a, "--block"))
            c->BS = arg_i(argc, argv, &i, 16);
        else if (!strcmp(a, "--seed"))
            c->seed = (uint64_t)arg_i(argc, argv, &i, 0);
        else if (!strcmp(a, "--threads"))
            c->threads = (int)arg_i(argc, argv, &i, 0);
        else if (!strcmp(a, "--base"))
            c->base = (double)arg_i(argc, argv, &i, 2);
        else if (!strcmp(a, "--check"))
            c->check = 1;
        else if (!strcmp(a, "--packed"))
            c->packed = 1;
        else if (!strcmp(a, "--dump") && i + 1 < argc)
            c->dump = argv[++i];
        else {
            fprintf(stderr,
                    "llama_decode: unknown option %s (see the comment at the top of "
                    "examples/llama_decode.c)\n",
                    a);
            return 2;
        }
    }
    if (c->D % c->H || c->H % c->G) {
        fprintf(stderr, "llama_decode: --heads must divide --dim and --kv-heads --heads\n");
        return 2;
    }
    c->HS = c->D / c->H;
    if (c->threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->threads = n > 0 ? (int)n : 1;
    }
    build(&m);
    const int64_t total = c->P + c->N;
    int64_t *tokens = xalloc((size_t)total, sizeof(int64_t));
    for (int64_t t = 0; t < c->P; t++)
        tokens[t] = (int64_t)((uni() + 1.0f) * 0.5f * (float)c->V) % c->V;
    float *logits = xalloc((size_t)((c->N + 1) * c->V), sizeof(float));
    m.step_s = xalloc((size_t)(c->N + 1), sizeof(double));
    m.stream_s = xalloc((size_t)(c->N + 1), sizeof(double));
    m.step_cpu = xalloc((size_t)(c->N + 1), sizeof(double));
    m.stream_cpu = xalloc((size_t)(c->N + 1), sizeof(double));

    printf("Llama-style decoder: %lld layers, D=%lld H=%lld Hkv=%lld HS=%lld F=%lld V=%lld, "
           "bfloat16 KV cache in blocks of %lld, RoPE base %g, %d threads, seed %llu%s\n",
           (long long)c->L, (long long)c->D, (long long)c->H, (long long)c->G, (long long)c->HS,
           (long long)c->F, (long long)c->V, (long long)c->BS, c->base, c->threads,
           (unsigned long long)c->seed, c->packed ? ", decode projections on packed weights" : "");
    printf("%s\n", attn_build_info());
    double tp, td;
    generate(&m, tokens, logits, 0, &tp, &td);
    printf("prefill: %lld tokens in %.3f s (%.1f tokens/s)\n", (long long)c->P, tp,
           (double)c->P / tp);
    printf("decode:  %lld tokens in %.3f s: %.2f tokens/s, %.2f ms/token (context %lld..%lld)\n",
           (long long)c->N, td, c->N ? (double)c->N / td : 0.0, c->N ? 1e3 * td / (double)c->N : 0,
           (long long)c->P + 1, (long long)total);

    /* The memory limit: weights once per token plus the cache's K and V. */
    const double wbytes = 4.0 * (double)m.arena_n - 4.0 * (double)((c->V - 1) * c->D);
    double kvbytes = 0; /* average over the decode steps: 2 x L x Hkv x ctx x HS x 2 bytes */
    for (int64_t s = 1; s <= c->N; s++)
        kvbytes += 2.0 * (double)(c->L * c->G * (c->P + s) * c->HS) * 2.0;
    kvbytes = c->N ? kvbytes / (double)c->N : 0;
    if (c->N) {
        /* Best and median over the steps, the stream pass after each step
         * alike: the same machine state for both sides of the ratio. */
        const double smed = median(m.stream_s, c->N), tmed = median(m.step_s, c->N);
        const double sbest = m.stream_s[0], tbest = m.step_s[0]; /* sorted by median() */
        const double abytes = 4.0 * (double)m.arena_n;
        const double rbest = abytes / sbest, rmed = abytes / smed;
        const double lbest = (wbytes + kvbytes) / rbest, lmed = (wbytes + kvbytes) / rmed;
        printf("memory limit: %.1f MB weights + %.1f MB K/V per token; stream (read-only pass "
               "over the %.1f MB of weights after each step, %d threads): best %.2f GB/s, "
               "median %.2f GB/s\n",
               wbytes * 1e-6, kvbytes * 1e-6, abytes * 1e-6, c->threads, rbest * 1e-9, rmed * 1e-9);
        printf("step time: best %.2f ms, median %.2f ms; limit: best %.2f ms, median %.2f ms\n",
               1e3 * tbest, 1e3 * tmed, 1e3 * lbest, 1e3 * lmed);
        printf("share of the memory limit: %.2f (best step vs best stream), %.2f (medians)\n",
               lbest / tbest, lmed / tmed);
        /* The same ratio in CPU time (both sides use c.threads threads; the
         * decode's OpenMP threads also count their idle spinning, so this
         * errs low). */
        const double cs = median(m.stream_cpu, c->N), ct = median(m.step_cpu, c->N);
        printf("in CPU time (medians): step %.2f ms, stream pass %.2f ms, limit %.2f ms: "
               "share %.2f\n",
               1e3 * ct, 1e3 * cs, 1e3 * cs * (wbytes + kvbytes) / abytes,
               cs * (wbytes + kvbytes) / abytes / ct);
    }
    printf("generated:");
    for (int64_t t = c->P; t < total && t < c->P + 16; t++)
        printf(" %lld", (long long)tokens[t]);
    printf("%s (stream checksum %llx)\n", total - c->P > 16 ? " ..." : "",
           (unsigned long long)(m.sink & 0xff));

    int rc = 0;
    if (c->check) {
        /* The same run with attention on the reference path, from scratch
         * (a long prompt's prefill stays on the fast path: the reference
         * materialises P x P scores per head). */
        for (int64_t l = 0; l < c->L; l++) {
            attn_kv_destroy(m.cache[l]);
            TRY(attn_kv_create(m.nb, c->BS, c->G, c->HS, 0, ATTN_KV_BFLOAT16, &m.cache[l]));
        }
        int64_t *rt = xalloc((size_t)total, sizeof(int64_t));
        memcpy(rt, tokens, (size_t)c->P * sizeof(int64_t));
        float *rl = xalloc((size_t)((c->N + 1) * c->V), sizeof(float));
        double a, b;
        generate(&m, rt, rl, 1, &a, &b);
        double worst = 0, scale = 0;
        int64_t same = 0;
        for (int64_t i = 0; i < (c->N + 1) * c->V; i++) {
            worst = fmax(worst, fabs((double)rl[i] - (double)logits[i]));
            scale = fmax(scale, fabs((double)rl[i]));
        }
        for (int64_t t = c->P; t < total; t++)
            same += rt[t] == tokens[t];
        const int ok = worst <= 1e-3 * (scale > 1 ? scale : 1) && same == c->N;
        printf("check against the reference path: max |logit difference| %.3g (logits up to "
               "%.3g), %lld of %lld tokens equal: %s\n",
               worst, scale, (long long)same, (long long)c->N, ok ? "OK" : "MISMATCH");
        rc = ok ? 0 : 1;
        free(rt), free(rl);
    }
    if (c->dump) dump(&m, tokens, logits);
    for (int64_t l = 0; l < c->L; l++)
        attn_kv_destroy(m.cache[l]);
    free(m.cache), free(m.table), free(m.arena), free(m.parena), free(m.ly), free(m.h), free(m.a),
        free(m.qkv);
    free(m.cat), free(m.tmp), free(m.u), free(m.g), free(m.logits), free(m.kf), free(m.vf);
    free(tokens), free(logits), free(m.step_s), free(m.stream_s), free(m.step_cpu),
        free(m.stream_cpu);
    return rc;
}
