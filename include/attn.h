/*
 * attn.h - transformer attention on the CPU, exact and fast.
 *
 * This header is the manual. Every function states the shape of each argument
 * and the einsum form of what it computes (dimension letters below).
 *
 * Dimension letters, used everywhere in attn:
 *   B    batch                    H    query heads        Hkv  key/value heads
 *   N    tokens (self-attention)  Nq   query tokens       Nkv  key/value tokens
 *   D    model width (embedding)  d    head size (q, k)   dv   head size (v)
 *   NH   heads of a module (= H)  HS   head size of a module
 *
 * Conventions
 *   - Arrays are float32 views: a pointer plus shape and strides counted in
 *     elements, NumPy's dimension order (last index fastest when contiguous).
 *     Strides may be anything, 0 included (broadcast), for inputs. Outputs
 *     must not have stride 0 on a dimension of size > 1 and must not overlap
 *     an input.
 *   - Argument order: inputs, then outputs, then options.
 *   - Every function returns an attn_status. On failure, attn_last_error()
 *     returns a message naming the argument and dimension at fault, and the
 *     outputs are untouched: all checks run before anything is written.
 *   - Weights follow the article's layout: a linear layer is x @ W + b with
 *     W of shape (in, out).
 *   - Nothing here aborts, prints or exits.
 *
 * Since v0.1.0 unless stated otherwise.
 */
#ifndef ATTN_H
#define ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_VERSION_MAJOR  0
#define ATTN_VERSION_MINOR  2
#define ATTN_VERSION_PATCH  0
#define ATTN_VERSION_STRING "0.2.0"

/* @return the run-time library version, e.g. "0.2.0".
 * ABI: while the version is 0.x, a release that appends fields to a public
 * struct (attn_opts, attn_mha_params) changes the SONAME (libattn.so.0.2 for
 * 0.2.x), so a binary built against an older, smaller struct never loads a
 * newer library. */
const char *attn_version(void);

/* @return a one-line description of how the library was built and what it
 * runs: version, BLAS or not, OpenMP or not, ISA in use. Static storage. */
const char *attn_build_info(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */
/* ------------------------------------------------------------------------ */

/* Status codes. Values are pinned; new codes are only ever appended. */
typedef enum attn_status {
    ATTN_OK = 0,
    ATTN_ERR_NULL = 1,     /* a required pointer is NULL */
    ATTN_ERR_SHAPE = 2,    /* a size is <= 0, a rank is wrong, or two sizes disagree */
    ATTN_ERR_STRIDE = 3,   /* an output has stride 0 on a dimension > 1, or overlaps an input */
    ATTN_ERR_OVERFLOW = 4, /* a size or byte count overflows int64 / size_t */
    ATTN_ERR_NOMEM = 5,    /* scratch memory could not be allocated */
    ATTN_ERR_ARG = 6,      /* an option has an invalid value (enum, probability, key length) */
    ATTN_ERR_ISA = 7,      /* the requested instruction set is not supported by this CPU/OS */
} attn_status;

/* @return a short constant name for a status ("ATTN_ERR_SHAPE"), or
 * "unknown status" for a value outside the enum. */
const char *attn_status_string(attn_status s);

/* @return the message of the last failed call on this thread, e.g.
 *   "attn_sdpa: k.shape[3]=80 but q.shape[3]=64 (head size must match)".
 * Empty string if no call on this thread has failed yet. The message is not
 * cleared by successful calls. Valid until the next failing call on this
 * thread. */
const char *attn_last_error(void);

/* Record message as this thread's attn_last_error() and return s: for
 * libraries layered on attn (libattn_mpi), so one attn_last_error() serves
 * them all. Since v0.2.0. */
attn_status attn_set_error(attn_status s, const char *message);

/* ------------------------------------------------------------------------ */
/* Views                                                                     */
/* ------------------------------------------------------------------------ */

#define ATTN_MAX_NDIM 4

/* A strided float32 array that attn reads or writes, never owns.
 * Element [i0, i1, ...] lives at data[i0*stride[0] + i1*stride[1] + ...].
 * Only the first ndim entries of shape and stride are meaningful. */
typedef struct attn_view {
    float *data;
    int ndim;                      /* 1..ATTN_MAX_NDIM */
    int64_t shape[ATTN_MAX_NDIM];  /* each >= 1 */
    int64_t stride[ATTN_MAX_NDIM]; /* in elements, may be 0 or negative */
} attn_view;

/* @return a C-contiguous (row-major) view of data with the given shape.
 * ndim is clamped to 0..ATTN_MAX_NDIM; validation happens when the view is
 * used, so a bad shape is reported by the function that receives it. */
attn_view attn_view_contiguous(float *data, int ndim, const int64_t *shape);

/* Shorthands for contiguous views of rank 1 to 4. */
attn_view attn_view_1d(float *data, int64_t n0);
attn_view attn_view_2d(float *data, int64_t n0, int64_t n1);
attn_view attn_view_3d(float *data, int64_t n0, int64_t n1, int64_t n2);
attn_view attn_view_4d(float *data, int64_t n0, int64_t n1, int64_t n2, int64_t n3);

/* @return v with dimensions a and b exchanged (no data moves): the article's
 * k.swapaxes(-1, -2). Out-of-range a or b return v unchanged. */
attn_view attn_view_swap(attn_view v, int a, int b);

/* Split a fused projection result into per-head q, k, v views, without
 * copying (S7). qkv has shape (B, N, 3*H*d), columns laid out [q | k | v],
 * head h owning columns h*d .. h*d+d-1 of each part; its last dimension must
 * have stride 1 and its rows any stride. On success q, k, v are views of
 * shape (B, H, N, d):
 *   q[b,h,n,e] = qkv[b, n, 0*H*d + h*d + e]
 *   k[b,h,n,e] = qkv[b, n, 1*H*d + h*d + e]
 *   v[b,h,n,e] = qkv[b, n, 2*H*d + h*d + e]
 * i.e. reshape (B, N, 3, H, d) then transpose to (3, B, H, N, d).
 * @return ATTN_ERR_SHAPE if qkv is not rank 3 or its last size is not a
 * multiple of 3*num_heads; ATTN_ERR_STRIDE if qkv.stride[2] != 1. */
attn_status attn_split_qkv(const attn_view *qkv, int64_t num_heads, attn_view *q, attn_view *k,
                           attn_view *v);

/* The grouped-query form of attn_split_qkv: qkv (B, N, (H + 2*Hkv)*d),
 * columns [q (H*d) | k (Hkv*d) | v (Hkv*d)], d = qkv.shape[2] / (H + 2*Hkv),
 * H = num_heads, Hkv = num_kv_heads (0 means H; H must be a multiple of
 * Hkv). On success q is (B, H, N, d) and k, v are (B, Hkv, N, d):
 *   q[b,h,n,e] = qkv[b, n, h*d + e]
 *   k[b,g,n,e] = qkv[b, n, H*d + g*d + e]
 *   v[b,g,n,e] = qkv[b, n, (H + Hkv)*d + g*d + e]
 * ready for attn_sdpa (and attn_rope on q and k). With Hkv = H it equals
 * attn_split_qkv.
 * @return ATTN_ERR_SHAPE if qkv is not rank 3, num_heads < 1,
 * num_kv_heads does not divide num_heads, or the width is not a multiple of
 * H + 2*Hkv; ATTN_ERR_NULL for a NULL output. Since v0.2.0. */
attn_status attn_split_qkv_gqa(const attn_view *qkv, int64_t num_heads, int64_t num_kv_heads,
                               attn_view *q, attn_view *k, attn_view *v);

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

/* Scratch memory is allocated inside calls and freed before they return.
 * A custom allocator lets a host track or limit it. alloc must return memory
 * aligned to `align` (a power of two, at most 4096) or NULL; free(NULL, ctx)
 * must be harmless. Both may be called from several threads at once. */
typedef struct attn_allocator {
    void *(*alloc)(size_t size, size_t align, void *ctx);
    void (*free)(void *ptr, void *ctx);
    void *ctx;
} attn_allocator;

/* Install an allocator for all later calls, process-wide; NULL restores the
 * default (aligned_alloc/free). Not to be called while other threads are
 * inside attn. */
void attn_set_allocator(const attn_allocator *a);

/* ------------------------------------------------------------------------ */
/* Instruction sets                                                          */
/* ------------------------------------------------------------------------ */

/* Values are pinned. */
typedef enum attn_isa {
    ATTN_ISA_AUTO = 0,    /* the best the CPU and OS support */
    ATTN_ISA_GENERIC = 1, /* portable C */
    ATTN_ISA_AVX2 = 2,    /* AVX2 + FMA */
    ATTN_ISA_AVX512 = 3,  /* AVX-512 F */
} attn_isa;

/* Select the kernels for all later calls, process-wide. AUTO picks the best
 * supported. At first use the library reads the environment variable
 * ATTN_ISA=generic|avx2|avx512 (or auto); an unsupported or unknown value
 * there makes every call fail with ATTN_ERR_ISA and a message, never SIGILL.
 * @return ATTN_ERR_ISA if the CPU or OS cannot run that set, ATTN_ERR_ARG if
 * isa is not an attn_isa value; the selection is then unchanged. Not to be
 * called while other threads are inside attn. */
attn_status attn_set_isa(attn_isa isa);

/* @return the instruction set in use; AUTO only while none is: when ATTN_ISA
 * in the environment holds an unknown or unsupported value, no set is
 * selected and every call fails with ATTN_ERR_ISA until attn_set_isa
 * succeeds (attn_build_info then says "isa none"). */
attn_isa attn_get_isa(void);

/* @return 1 if this CPU and OS can run the set, else 0. */
int attn_isa_supported(attn_isa isa);

/* @return "generic", "avx2", "avx512" or "auto". */
const char *attn_isa_name(attn_isa isa);

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

/* One pool. Every parallel part of a call runs on OpenMP's threads (libgomp
 * with GCC): attention, the few-row projections (M <= 8 rows of x, attn's
 * GEMV kernels, columns split over the threads) and the GEMMs, which attn
 * splits into one block per thread, each multiplied by a single-threaded
 * sgemm of attn's own copy of OpenBLAS (linked in statically, its symbols
 * hidden). No call ever starts or waits on another pool, so projections
 * and attention alternate at the speed of each alone. The process's other
 * BLAS (NumPy's, PyTorch's, the program's own -lopenblas) is neither used
 * nor reconfigured: its thread count stays what its owner set.
 *   - The thread count is per call (attn_opts.num_threads, attn_linear's
 *     num_threads); <= 0 means the online CPUs, or 1 when called from
 *     inside an active OpenMP parallel region (PyTorch's intra-op pool, the
 *     program's own), so nested calls do not multiply threads. OpenMP's
 *     global default (OMP_NUM_THREADS, omp_set_num_threads) is not read.
 *   - Between calls OpenMP's idle threads wait by spinning a little, then
 *     sleep (libgomp's default; OMP_WAIT_POLICY and GOMP_SPINCOUNT change
 *     it process-wide). A program alternating attn with another library's
 *     own threads on the same cores (NumPy's OpenBLAS) may want the setting
 *     in README.md, "Threads".
 *   - attn_build_info() names the BLAS copy, the OpenMP runtime loaded and
 *     the wait policy in effect.
 *   - The kernels of that copy: OpenBLAS chooses them from the CPU model, and
 *     on a model newer than itself falls back to SSE3 ones ("Prescott", 5x
 *     slower GEMMs). attn then chooses SkylakeX (AVX-512) or Haswell (AVX2)
 *     kernels from the CPU's features when it loads; OPENBLAS_CORETYPE, when
 *     set, is left to decide, and the process environment is not changed.
 *     attn_build_info() says "core SkylakeX (attn's choice: OpenBLAS chose
 *     Prescott)". (src/blas_core.c; libattn.a users get this only when
 *     linking with -Wl,--wrap=getenv, as attn's own programs do.)
 *   - Results are deterministic for a given thread count; the few-row
 *     projections and the flash path give the same bits for any count.
 * Since v0.2.0 (before: OpenBLAS's own threads ran the GEMMs). */

/* ------------------------------------------------------------------------ */
/* S1. Softmax                                                               */
/* ------------------------------------------------------------------------ */

/* Softmax over the last axis of a view of any rank (1..4), stable:
 *   y[..., j] = exp(x[..., j] - m) / sum_k exp(x[..., k] - m),  m = max_k x[..., k]
 * x and y have the same shape. y may be the very same view as x (in place);
 * any other overlap is an error. A row whose entries are all -inf gives
 * zeros (not NaN). A NaN in a row makes that row NaN. +inf entries: the row
 * is NaN where x is finite or -inf is not; attn follows IEEE (inf - inf). */
attn_status attn_softmax(const attn_view *x, attn_view *y);

/* ------------------------------------------------------------------------ */
/* Scaled dot-product attention (the core)                                   */
/* ------------------------------------------------------------------------ */

/* Which keys a query may see, besides key lengths and the mask. Values pinned.
 * With L_b the key length of batch b (Nkv when key_lengths is NULL):
 *   NONE          every key j < L_b
 *   TOP_LEFT      j <= i            (PyTorch's is_causal=True)
 *   BOTTOM_RIGHT  j <= i + L_b - Nq (FlashAttention's; decoding with a cache)
 * Both causal forms are the lower triangle when Nq == L_b. */
typedef enum attn_causal {
    ATTN_CAUSAL_NONE = 0,
    ATTN_CAUSAL_TOP_LEFT = 1,
    ATTN_CAUSAL_BOTTOM_RIGHT = 2,
} attn_causal;

/* Algorithm choice; AUTO is right for nearly everyone. Values pinned.
 * The fast path (tiled online softmax, O(threads x tile) scratch, never the
 * Nq x Nkv matrix) covers every option except the weights output and head
 * sizes above 2^20: those run the reference path (scratch
 * O(threads x Nkv)), whatever algo says. With few query rows and many keys
 * (decoding) the fast path splits the keys in fixed chunks over threads. */
typedef enum attn_algo {
    ATTN_ALGO_AUTO = 0,      /* fast path when it applies, else reference */
    ATTN_ALGO_REFERENCE = 1, /* the plain loops of src/ref/, the specification */
    ATTN_ALGO_FLASH = 2,     /* tiled online softmax (falls back to reference where unsupported) */
} attn_algo;

/* The most threads a call uses, whatever it asks for. */
#define ATTN_MAX_THREADS 256

/* Options of attn_sdpa and of every module that calls it.
 * Always start from attn_opts_default(); fields are only ever appended. */
typedef struct attn_opts {
    /* Score scale; NaN (the default) means 1/sqrt(d). */
    float scale;
    attn_causal causal;
    /* Additive mask, rank 4, shape (B or 1, H or 1, Nq or 1, Nkv or 1), H
     * counting query heads; a size-1 dimension broadcasts (any stride).
     * -inf hides a key; any finite value (even -1e9) is added to the score
     * and the key stays visible. NULL: no mask. */
    const attn_view *mask;
    /* B values in 0..Nkv: batch b sees keys j < key_lengths[b]. NULL: Nkv. */
    const int64_t *key_lengths;
    /* Dropout on the attention weights, p in [0, 1). See attn_dropout_keep:
     * both paths drop the same weights (since v0.2.0 the fast path too). */
    float dropout_p;
    uint64_t dropout_seed;
    /* Threads for this call; <= 0 means the number of online CPUs. OpenMP's
     * global default is never consulted. Capped at ATTN_MAX_THREADS. */
    int num_threads;
    attn_algo algo;
    /* Optional output, shape (B, H, Nq): lse[b,h,i] = log sum over visible j
     * of exp(score(i, j)), before dropout; -inf for a row with no visible
     * key. NULL: not computed. */
    attn_view *lse;
    /* Optional output, shape (B, H, Nq, Nkv): the attention weights after
     * dropout (zeros for invisible keys). Setting it runs the reference
     * path. NULL: not computed. */
    attn_view *weights;

    /* ---- Score modifiers (since v0.2.0). For batch b, query head h (kv
     * head g = h / (H / Hkv)), query i, key j, key length L_b: ---- */

    /* Positions: query i of batch b is at p(i) = q_offset[b] + i, key j at
     * k_offset + j, and dist(i, j) = p(i) - (k_offset + j). NULL: q_offset[b]
     * = 0 with TOP_LEFT, else L_b - Nq (bottom-right alignment, as
     * FlashAttention: with Nq = 1 and no causal rule the query is at the
     * newest key). Causal (either enum value) then means dist >= 0; the
     * window and ALiBi use the same dist. Every position must lie within
     * +-2^61 (ATTN_ERR_ARG otherwise). */
    const int64_t *q_offset; /* B values or NULL: position of query 0 of batch b (default: 0 with
                                TOP_LEFT, else L_b - Nq) */
    int64_t k_offset;        /* position of key 0 (default 0) */
    /* Sliding window: key j is visible only if (window_left < 0 or dist <=
     * window_left) and (window_right < 0 or -dist <= window_right). A model
     * config's sliding_window = S (S tokens in all, the current one
     * included, as Mistral and Gemma state it) is window_left = S - 1 with a
     * causal rule. Values below -1 are an error. Key blocks wholly outside
     * every row's window are skipped: the cost follows the window. */
    int64_t window_left;  /* -1 = unbounded (default); sliding_window = S is left = S - 1 */
    int64_t window_right; /* -1 = unbounded (default) */
    /* Logit soft-capping (Gemma 2): applied to each visible key's score, in
     * this order (FlashAttention's, ggml's and ONNX's; capping after the mask
     * would let masked keys leak):
     *   s = scale * q_i . k_j
     *   s = softcap * tanh(s / softcap)          if softcap > 0
     *   s = s - alibi_slopes[h] * |dist(i, j)|   if alibi_slopes
     *   s = s + mask[b, h, i, j]                 if mask
     * Must be finite and >= 0. */
    float softcap; /* 0 = off */
    /* ALiBi (BLOOM, MPT): per query head slope, see the order above and
     * attn_alibi_slopes. Each value must be finite. */
    const float *alibi_slopes; /* H values or NULL */
    /* Attention sinks (gpt-oss, StreamingLLM): one extra logit per query head
     * in the softmax denominator only:
     *   out_i = sum_j e^{s_ij} v_j / (sum_j e^{s_ij} + e^{sinks[h]})
     *   lse_i = log(sum_j e^{s_ij} + e^{sinks[h]})
     * A row with no visible key gives out = 0 and lse = sinks[h]. Each value
     * must be finite. With attn_merge, compute the parts without sinks and
     * add the sink as one more part with out = 0 and lse = sinks[h]. */
    const float *sinks; /* H values or NULL */
} attn_opts;

/* @return the defaults: scale NaN (1/sqrt(d)), no causal rule, no mask, no
 * key lengths, no dropout, seed 0, num_threads 0 (all CPUs), AUTO, no lse,
 * no weights; default positions (q_offset NULL, k_offset 0), no window
 * (window_left = window_right = -1), no softcap (0), no ALiBi, no sinks. */
attn_opts attn_opts_default(void);

/* The ALiBi paper's slopes for H heads (Press et al., 2022), into out[0..H-1]:
 * if H is a power of two, out[k-1] = 2^(-8k/H) for k = 1..H; otherwise with
 * n the largest power of two below H, the n slopes of n heads followed by the
 * first H - n slopes of 2n heads at odd k (2^(-8k/(2n)), k = 1, 3, 5, ...).
 * Computed in double, rounded once to float (exact when 8k/H is an integer).
 * Since v0.2.0.
 * @return ATTN_ERR_NULL if out is NULL, ATTN_ERR_ARG if H < 1 or H > 2^24. */
attn_status attn_alibi_slopes(int64_t H, float *out);

/* Dropout's keep/drop decision, a pure function of (seed, b, h, i, j), with
 * h the query head, i the query index and j the key index:
 *   mix(z) = splitmix64 finalizer of z + 0x9E3779B97F4A7C15:
 *     z += 0x9E3779B97F4A7C15;
 *     z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
 *     z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
 *     z =  z ^ (z >> 31);
 *   x = mix(mix(mix(mix(seed ^ b) ^ h) ^ i) ^ j)      (all uint64 arithmetic)
 *   u = x >> 40                                         (24 uniform bits)
 *   dropped iff u < (uint32_t)(p * 16777216.0)          (threshold in double)
 * Kept weights are scaled by 1/(1-p). p <= 0 (or NaN) keeps everything,
 * p >= 1 drops everything (attn_sdpa itself only accepts p in [0, 1)).
 * @return 1 if weight (b, h, i, j) is kept, 0 if dropped. */
int attn_dropout_keep(uint64_t seed, int64_t b, int64_t h, int64_t i, int64_t j, float p);

/* Scaled dot-product attention.
 *   q   (B, H,   Nq,  d)
 *   k   (B, Hkv, Nkv, d)      H must be a multiple of Hkv; query head h reads
 *   v   (B, Hkv, Nkv, dv)     kv head h / (H / Hkv) (grouped-query attention)
 *   out (B, H,   Nq,  dv)
 * With score(i, j) = scale * q_i . k_j + mask(i, j):
 *   scores[b,h,i,j] = scale * sum_e q[b,h,i,e] k[b,g,j,e] + mask  // "bhie,bgje->bhij", g =
 * h/(H/Hkv) w[b,h,i,:]      = softmax over visible j of scores[b,h,i,:]   (0 elsewhere)
 *   out[b,h,i,f]    = sum_j w[b,h,i,j] v[b,g,j,f]                  // "bhij,bgjf->bhif"
 * Visibility: key_lengths, causal, the window and -inf mask entries (see
 * attn_opts). Score modifiers (softcap, ALiBi, sinks) in attn_opts' order.
 * Invisible keys are skipped, not multiplied by zero: NaN/Inf in them never
 * reaches the output. NaN in a visible input propagates. A row with no
 * visible key gives zeros (and lse -inf; with sinks out 0 and lse sinks[h]).
 * Overflow: a visible key whose dot product q_i . k_j (at any partial sum,
 * e ascending), scaled score or ALiBi-biased score is beyond float32's range
 * makes its row NaN on every path (the reference, in double, compares with
 * FLT_MAX); a visible key is never taken for a hidden one. Large finite
 * masks are exact: every path shifts a row's scores by its largest visible
 * finite mask value before the softmax and adds it back to lse.
 * Dropout (p > 0): w is multiplied by keep/(1-p) after the softmax.
 * Inputs may have any strides; out, lse and weights must not overlap inputs.
 * Determinism: with the same ISA and build, a row's output depends only on
 * its own inputs, not on threads, B, Nq or other rows.
 * @return ATTN_OK, or NULL/SHAPE/STRIDE/OVERFLOW/ARG/NOMEM/ISA. */
attn_status attn_sdpa(const attn_view *q, const attn_view *k, const attn_view *v, attn_view *out,
                      const attn_opts *opts);

/* Merge partial attention results computed over disjoint key sets.
 *   part_out[p] (B, H, Nq, dv), part_lse[p] (B, H, Nq), p = 0..n_parts-1
 *   m = max_p lse_p;  w_p = exp(lse_p - m)
 *   out = sum_p w_p out_p / sum_p w_p;   lse = m + log(sum_p w_p)
 * Parts are combined in ascending p. Where every part's lse is -inf, out is
 * zeros and lse -inf. lse may be NULL. out may alias part_out[0] exactly
 * (same data and strides); lse may alias part_lse[0] likewise.
 * Dropout must have been off in the partials for the merge to be exact.
 * Sinks (attn_opts.sinks): compute the parts without sinks and pass the sink
 * as one more part with out = 0 and lse = sinks[h] (it then enters the
 * denominator once, as attn_sdpa counts it). */
attn_status attn_merge(const attn_view *part_out, const attn_view *part_lse, int n_parts,
                       attn_view *out, attn_view *lse);

/* ------------------------------------------------------------------------ */
/* Backward of scaled dot-product attention (training)                       */
/* ------------------------------------------------------------------------ */

/* Optional outputs of attn_sdpa_backward beyond dq, dk, dv. Start from
 * attn_backward_extras_default(); fields are only ever appended.
 * Since v0.2.0. */
typedef struct attn_backward_extras {
    /* The gradient of the additive mask, in the mask's own shape as passed
     * in opts.mask (rank 4, size-1 dimensions broadcast): entries of a
     * broadcast dimension are summed over it.
     *   dmask[b', h', i', j'] = sum over (b, h, i, j) that read that entry of dS[b,h,i,j]
     * with dS the gradient of the score (after softcap and ALiBi, as the
     * mask is added last). Hidden entries (-inf in the mask) get 0. Requires
     * opts.mask. NULL: not computed. */
    attn_view *dmask;
    /* The gradient of opts.sinks, shape (H):
     *   dsinks[h] = -sum_{b, i} P_sink[b,h,i] D[b,h,i],  P_sink = exp(sinks[h] - lse[b,h,i])
     * (the sink is a logit with no value). Requires opts.sinks. NULL: not
     * computed. */
    attn_view *dsinks;
} attn_backward_extras;

/* @return every field NULL. Since v0.2.0. */
attn_backward_extras attn_backward_extras_default(void);

/* Gradients of attn_sdpa with respect to q, k and v (and optionally the
 * mask), given the forward's out and lse and the gradient dout of the loss
 * with respect to out.
 *   q    (B, H,   Nq,  d)      the forward's inputs, unchanged
 *   k    (B, Hkv, Nkv, d)
 *   v    (B, Hkv, Nkv, dv)
 *   out  (B, H,   Nq,  dv)     the forward's output (with the same opts;
 *                              checked as attn_sdpa checks out: no stride 0)
 *   lse  (B, H,   Nq)          the forward's opts.lse output (required)
 *   dout (B, H,   Nq,  dv)     any strides, stride 0 included
 *   dq   (B, H,   Nq,  d)      outputs, overwritten (not accumulated)
 *   dk   (B, Hkv, Nkv, d)      summed over the H/Hkv query heads of each
 *   dv   (B, Hkv, Nkv, dv)     kv head, never expanded
 * opts: the forward's options (scale, causal, mask, key_lengths, dropout p
 * and seed, threads, algo, and every score modifier: positions, window,
 * softcap, ALiBi, sinks); opts->lse and opts->weights are ignored. NULL:
 * defaults. extras: optional outputs (dmask, dsinks), NULL for none.
 * With P the attention weights before dropout, Z[b,h,i,j] = keep/(1-p) the
 * dropout factor (attn_dropout_keep, regenerated from the seed: the same
 * weights drop as in the forward), g = h / (H / Hkv):
 *   P[b,h,i,j]  = exp(score(i, j) - lse[b,h,i])          visible keys, else 0
 *   dP[b,h,i,j] = Z * sum_f dout[b,h,i,f] v[b,g,j,f]     // "bhif,bgjf->bhij"
 *   D[b,h,i]    = sum_f dout[b,h,i,f] out[b,h,i,f]       // "bhif,bhif->bhi"
 *   dS          = P * (dP - D)                        (= dmask's entries)
 *   dS'         = dS * (1 - tanh^2(scale q.k / softcap))  with softcap, else dS
 *   dq[b,h,i,e] = scale * sum_j dS'[b,h,i,j] k[b,g,j,e]  // "bhij,bgje->bhie"
 *   dk[b,g,j,e] = scale * sum_{h in g, i} dS' q[b,h,i,e] // "bhij,bhie->bgje"
 *   dv[b,g,j,f] = sum_{h in g, i} P Z dout[b,h,i,f]     // "bhij,bhif->bgjf"
 * (ALiBi adds a constant per pair, so it only enters through P; the sink
 * enters through lse and has its own gradient, extras.dsinks.)
 * Rows with no visible key (lse -inf) contribute nothing; keys no row sees
 * get zero dk, dv. Hidden keys are skipped, never multiplied by zero: NaN or
 * Inf in them (in k, v, or in q/dout rows that cannot see them) does not
 * reach any gradient.
 * Paths: the reference (plain loops in double, the specification) recomputes
 * the softmax from q and k and ignores out and lse beyond their checks. The
 * fast path (AUTO, FLASH; head sizes up to 1024, every option) recomputes P
 * from lse in tiles with O(threads x tile) scratch plus B*H*Nq floats for D
 * (and B*H*Nq doubles with dsinks, Nkv doubles per thread with dmask), in two
 * passes: dk, dv per (b, kv head, 64 keys), then dq per (b, h, 64 queries),
 * so every output element has one owner and the result is bit-identical for
 * any thread count. Its dmask comes from a third pass per dmask row, summing
 * the rows that read it in ascending (b, h, i). Because it trusts lse, a
 * finite mask of huge magnitude (e.g. -1e9 on every key of a row, where lse
 * in float keeps ~7 digits) makes its P inexact: use -inf to hide keys.
 * Errors: as attn_sdpa, plus every output must have its input's shape, be a
 * proper output and overlap nothing else; checks run before any output is
 * written.
 * @return ATTN_OK, or NULL/SHAPE/STRIDE/OVERFLOW/ARG/NOMEM/ISA.
 * Since v0.2.0. */
attn_status attn_sdpa_backward(const attn_view *q, const attn_view *k, const attn_view *v,
                               const attn_view *out, const attn_view *lse, const attn_view *dout,
                               attn_view *dq, attn_view *dk, attn_view *dv, const attn_opts *opts,
                               const attn_backward_extras *extras);

/* ------------------------------------------------------------------------ */
/* Resumable fold (since v0.2.0)                                             */
/* ------------------------------------------------------------------------ */

/* The fast path of attn_sdpa walks each row's keys in chunks of
 * ATTN_KEY_CHUNK keys from key 0 upward, each chunk from a fresh online-
 * softmax state, folding the chunk partials into the row's state in
 * ascending order. The fold exposes that state, so keys can arrive in
 * pieces (shards on other machines, a stream): folding chunk-aligned key
 * shards in ascending order equals attn_sdpa over all the keys BIT FOR BIT
 * (same ISA and build; attn_merge, which combines normalised parts in
 * double, only agrees within rounding).
 *
 *   attn_fold_init(f, q, nkv, opts)             state of every row emptied
 *   attn_fold_step(f, q, k_s, v_s, off, opts)   keys off .. off+n-1 folded in
 *   ... more steps, off ascending ...
 *   attn_fold_finish(f, out, lse, opts)         out = acc / sum, lse
 *
 * The fold is of one attn_sdpa problem with Nkv = nkv keys, described by
 * one opts for every call: scale, causal, mask (its key dimension nkv or
 * 1: the whole mask, each step reading its keys' columns), key_lengths (in
 * 0..nkv), q_offset/k_offset (the keys of the whole fold at k_offset + j),
 * num_threads (any, per call). Not supported (ATTN_ERR_ARG): dropout_p > 0,
 * weights, lse in opts (lse is finish's argument), algo REFERENCE.
 * Keys never folded count as invisible: equality with attn_sdpa holds when
 * the skipped keys are invisible to every row (e.g. above a causal
 * diagonal). Rows may be folded by any thread count in each step. */
#define ATTN_KEY_CHUNK 512

/* @return ATTN_KEY_CHUNK as the library was built (512). */
int64_t attn_key_chunk(void);

/* The per-row state, in the caller's memory (views of any strides, none
 * overlapping another or an input). For rows (b, h, i) of q (B, H, Nq, d)
 * and values of head size dv:
 *   max   (B, H, Nq)      running max M of the scores seen, minus shift
 *   sum   (B, H, Nq)      running sum L of exp(score - shift - M)
 *   acc   (B, H, Nq, dv)  unnormalised output: sum_j exp(score_j - shift - M) v_j
 *   shift (B, H, Nq)      the row's score offset (the largest finite mask
 *                         value among its visible keys, else 0), set by
 *                         init: scores are folded as score - shift so a
 *                         mask of -1e9 keeps its precision
 *   nkv                   the number of keys of the fold, set by init
 * A row that has seen no key has M = -inf, L = 0, acc = 0. Between calls
 * the state may be copied or sent elsewhere as plain floats. */
typedef struct attn_fold {
    attn_view max, sum, acc, shift;
    int64_t nkv;
} attn_fold;

/* Number of floats of one fold state: B*H*Nq*(3 + dv), or -1 on overflow
 * or a size < 1. */
int64_t attn_fold_floats(int64_t B, int64_t H, int64_t Nq, int64_t dv);

/* Point f's views at mem (attn_fold_floats(B, H, Nq, dv) floats, contiguous:
 * max, sum, shift, then acc). Writes nothing to mem.
 * @return ATTN_ERR_NULL, ATTN_ERR_SHAPE (a size < 1), ATTN_ERR_OVERFLOW. */
attn_status attn_fold_bind(attn_fold *f, float *mem, int64_t B, int64_t H, int64_t Nq, int64_t dv);

/* Start a fold over nkv >= 1 keys for the queries q (B, H, Nq, d):
 * max = -inf, sum = 0, acc = 0, shift as above (reading opts.mask over
 * each row's visible keys), f->nkv = nkv. q's data is not read.
 * @return NULL/SHAPE/STRIDE/ARG/OVERFLOW; f's memory untouched on failure. */
attn_status attn_fold_init(attn_fold *f, const attn_view *q, int64_t nkv, const attn_opts *opts);

/* Fold keys k_offset .. k_offset + n - 1 of the fold in:
 *   k (B, Hkv, n, d), v (B, Hkv, n, dv): the shard, key j of it being key
 *   k_offset + j of the fold (position opts.k_offset + k_offset + j);
 *   q the same queries as at init (any strides; it is read).
 * k_offset must be a multiple of ATTN_KEY_CHUNK and k_offset + n either a
 * multiple of it or nkv (shards end where a chunk ends, or at the end).
 * For equality with attn_sdpa, call it for ascending k_offset, each key at
 * most once. The state is updated in place (a row that sees none of these
 * keys is left bit for bit as it was).
 * @return NULL/SHAPE/STRIDE/OVERFLOW/ARG/NOMEM/ISA; state untouched on failure. */
attn_status attn_fold_step(attn_fold *f, const attn_view *q, const attn_view *k, const attn_view *v,
                           int64_t k_offset, const attn_opts *opts);

/* Write the result of the fold: out (B, H, Nq, dv) = acc / sum and
 * lse (B, H, Nq) = max + log(sum) + shift (lse may be NULL), exactly as
 * attn_sdpa writes them; a row that saw no key gives zeros and -inf.
 * opts: only num_threads is read (NULL: defaults). The state is unchanged.
 * @return NULL/SHAPE/STRIDE/NOMEM; outputs untouched on failure. */
attn_status attn_fold_finish(const attn_fold *f, attn_view *out, attn_view *lse,
                             const attn_opts *opts);

/* ------------------------------------------------------------------------ */
/* Building blocks (S2, S9)                                                  */
/* ------------------------------------------------------------------------ */

/* Linear layer: y = x @ W + b.
 *   x (..., in) of rank 1..3;  W (in, out);  bias (out) or NULL;  y (..., out)
 *   y[n, o] = sum_i x[n, i] W[i, o] + bias[o]     // einsum "ni,io->no"
 * With at most 8 rows in all (decoding; leading dimensions count as rows
 * when evenly spaced) and W with unit column stride: attn's GEMV kernels,
 * which read W once, split by columns over the threads, the same bits for
 * any thread count (each y element a multiply-add chain over i ascending
 * from the bias). Otherwise CBLAS sgemm split over attn's threads when
 * built with BLAS (deterministic per thread count), else a plain loop. See
 * "Threads". num_threads <= 0 means all CPUs (capped at ATTN_MAX_THREADS). */
attn_status attn_linear(const attn_view *x, const attn_view *W, const attn_view *bias, attn_view *y,
                        int num_threads);

/* Packed weights: decoding's projections at the memory's speed.
 * A weight W (in, out) stored as panels of ATTN_PANEL columns, each panel
 * (in, ATTN_PANEL) contiguous:
 *   Wp[p, i, c] = W[i, ATTN_PANEL p + c]     (0 past the last column)
 * Wp is a float32 view of shape (ceil(out / ATTN_PANEL), in, ATTN_PANEL),
 * contiguous (strides (in ATTN_PANEL, ATTN_PANEL, 1)), 4 x ATTN_PANEL x in x
 * ceil(out / ATTN_PANEL) bytes: at most ATTN_PANEL - 1 columns more than W.
 * With few rows of x, attn_linear reads a row-major W one row of each
 * thread's columns at a time, an order in which a core's multiply-adds and
 * its memory reads overlap badly; attn_linear_packed reads Wp from its first
 * byte to its last. On a Zen 5 with two threads, x (M, 4096) @ W (4096,
 * 6144) ran at 0.63-0.94 of a read-only stream over W with attn_linear
 * (M = 1, 4, 8) and at 0.88-1.00 with attn_linear_packed (median of paired
 * calls, bench/gemv_patterns.c; docs/threads.md, "Packed weights"). Pack
 * once, when the weights are loaded. */
#define ATTN_PANEL 48

/* Wp = W packed (above). W (in, out) with any strides; Wp as above, not
 * overlapping W. Allocates nothing.
 * @return ATTN_OK, or NULL/SHAPE/STRIDE (Wp's shape or strides, named with
 * the ones expected). Since v0.2.0. */
attn_status attn_weight_pack(const attn_view *W, attn_view *Wp);

/* y = x @ W + b with W packed in Wp (attn_weight_pack):
 *   x (rows, in) or (in);  Wp (ceil(out / ATTN_PANEL), in, ATTN_PANEL);
 *   bias (out) or NULL;  y (rows, out) or (out), the rank of x
 *   y[n, o] = sum_i x[n, i] W[i, o] + bias[o]     // einsum "ni,io->no"
 * out is y's last size. Any number of rows: each panel is read once per 8
 * rows of x (for many rows, attn_linear's GEMM is faster). The panels are
 * split over num_threads threads (<= 0: all CPUs); each y element is the
 * bias, then a multiply-add chain over i ascending: for any row count and
 * thread count the same bits as attn_linear with at most 8 rows on the
 * unpacked W (with unit column stride), and as the same call with 1
 * thread. x, y, bias: any strides; y must not overlap x, Wp or bias.
 * Allocates nothing.
 * @return ATTN_OK, or NULL/SHAPE/STRIDE/ISA. Since v0.2.0. */
attn_status attn_linear_packed(const attn_view *x, const attn_view *Wp, const attn_view *bias,
                               attn_view *y, int num_threads);

/* Layer normalisation over the last axis:
 *   mu = mean_j x[..., j];  var = mean_j (x[..., j] - mu)^2   (biased, as PyTorch)
 *   y[..., j] = (x[..., j] - mu) / sqrt(var + eps) * gamma[j] + beta[j]
 * x, y: same shape, rank 1..4, y may be the same view as x. gamma, beta:
 * (D) or NULL (1 and 0). eps >= 0 (PyTorch's default is 1e-5). */
attn_status attn_layer_norm(const attn_view *x, const attn_view *gamma, const attn_view *beta,
                            float eps, attn_view *y);

/* RMS normalisation over the last axis (Llama, T5, Gemma):
 *   ms = mean_j x[..., j]^2                          (in double)
 *   y[..., j] = x[..., j] / sqrt(ms + eps) * gamma[j]
 * x, y: same shape, rank 1..4, y may be the same view as x (in place), any
 * other overlap is an error. gamma: (D) or NULL (1). eps finite and >= 0
 * (Llama uses 1e-5 or 1e-6). A row of zeros gives zeros, also with eps = 0.
 * Allocates nothing.
 * @return ATTN_OK, or NULL/SHAPE/STRIDE/OVERFLOW/ARG/ISA (eps names the value).
 * Since v0.2.0. */
attn_status attn_rms_norm(const attn_view *x, const attn_view *gamma, float eps, attn_view *y);

/* ------------------------------------------------------------------------ */
/* Rotary position embedding (RoPE)                                          */
/* ------------------------------------------------------------------------ */

/* Which dimensions form a rotated pair. Values pinned.
 *   NEOX  pairs (t, t + r/2): "rotate_half" of Hugging Face Llama, Mistral,
 *         Qwen, Gemma; GPT-NeoX
 *   GPTJ  pairs (2t, 2t + 1): interleaved, Meta's original Llama code and
 *         ggml's NORMAL mode; the complex-multiply form
 * Weights converted between the two conventions permute Wq/Wk columns; the
 * style must match the checkpoint. */
typedef enum attn_rope_style {
    ATTN_ROPE_NEOX = 0,
    ATTN_ROPE_GPTJ = 1,
} attn_rope_style;

/* Parameters of attn_rope. Start from attn_rope_params_default(); fields are
 * only ever appended. */
typedef struct attn_rope_params {
    attn_rope_style style; /* NEOX (the default) or GPTJ */
    /* r: rotated dims, even, 2..d; dims r..d-1 pass unchanged ("partial
     * rotary", e.g. GPT-NeoX's rotary_pct, Phi's partial_rotary_factor).
     * 0 (the default) means d. */
    int64_t rotary_dim;
    /* theta: inv_freq[t] = base^(-2t/r) when inv_freq is NULL (default 10000;
     * Llama 3 uses 500000). Must be finite and > 1. */
    double base;
    /* r/2 angular frequencies, or NULL: a caller's table, e.g. from one of
     * the attn_rope_inv_freq_* helpers below. Values must be finite. */
    const double *inv_freq;
    /* Multiplies cos and sin (YaRN's attention factor); default 1. Finite. */
    double mscale;
} attn_rope_params;

/* @return NEOX, rotary_dim 0 (= d), base 10000, no table, mscale 1. */
attn_rope_params attn_rope_params_default(void);

/* Rotary position embedding of q or k, in place or out of place.
 *   x, y  (B, H, N, d) (rank 2..4; missing leading dims are size 1)
 *   positions[b*ps[0] + h*ps[1] + n*ps[2]] = position of token n (int64),
 *         ps = pos_strides (3 values, in elements, any sign, 0 broadcasts);
 *         pos_strides NULL means ps = (0, 0, 1): N positions shared by every
 *         batch and head. Positions may be any int64 (decode at 1e6 is exact:
 *         the angle is computed in double from the integer).
 * With p the token's position, r = rotary_dim, inv_freq[t] (t < r/2) the
 * table (or base^(-2t/r)), theta_t = p * inv_freq[t] in double and
 * (a, b) the pair t (NEOX: x[t], x[t + r/2]; GPTJ: x[2t], x[2t+1]):
 *   y_a = (a cos theta_t - b sin theta_t) * mscale
 *   y_b = (b cos theta_t + a sin theta_t) * mscale
 *   y[e] = x[e] for r <= e < d
 * i.e. NEOX: y = x * cos + rotate_half(x) * sin (Hugging Face), GPTJ:
 * y = x * e^{i theta} on complex pairs x[2t] + i x[2t+1] (Meta's Llama).
 * Products in double, rounded once to float (overflow gives +-inf).
 * y may be the very same view as x (in place); any other overlap is an
 * error. Any strides, e.g. q and k straight out of attn_split_qkv.
 * Scratch: 2 (or 3, without a table) * r/2 doubles.
 * @return ATTN_OK, or NULL (x, y, positions, params) / SHAPE (x, y disagree
 * or rank 1) / STRIDE / OVERFLOW / ARG (style, rotary_dim, base, mscale or
 * inv_freq, naming the value) / NOMEM / ISA. Since v0.2.0. */
attn_status attn_rope(const attn_view *x, const int64_t *positions, const int64_t *pos_strides,
                      attn_view *y, const attn_rope_params *p);

/* inv_freq tables (r/2 doubles written to inv_freq) for the usual RoPE
 * scalings, with r = rotary_dim (even, >= 2), t = 0..r/2-1, base > 1 and
 * f0[t] = base^(-2t/r) the unscaled frequency (Hugging Face's
 * "default" rope_type, computed in double here):
 *   attn_rope_inv_freq          f0[t]
 *   attn_rope_inv_freq_linear   f0[t] / factor     (position interpolation, "linear")
 *   attn_rope_inv_freq_ntk      base' = base * alpha^(r/(r-2)), f = base'^(-2t/r)
 *       (NTK-aware; r >= 4. HF's "dynamic" type at sequence length L with
 *       max_position_embeddings M is alpha = factor * L / M - (factor - 1))
 *   attn_rope_inv_freq_llama3   ("llama3"; Llama 3.1: factor 8, low 1, high 4,
 *       original_max_position 8192) with wl = 2 pi / f0[t],
 *       wl_lo = original_max_position / low_freq_factor,
 *       wl_hi = original_max_position / high_freq_factor:
 *         wl > wl_lo:  f0 / factor
 *         wl < wl_hi:  f0
 *         otherwise:   (1 - s) f0 / factor + s f0,
 *                      s = (original_max_position / wl - low) / (high - low)
 *       (high_freq_factor > low_freq_factor)
 *   attn_rope_inv_freq_yarn     ("yarn"; typical beta_fast 32, beta_slow 1)
 *       c(n) = r ln(original_max_position / (2 pi n)) / (2 ln base),
 *       lo = max(floor(c(beta_fast)), 0), hi = min(ceil(c(beta_slow)), r - 1)
 *       (hi += 0.001 when lo == hi), ramp_t = clamp((t - lo)/(hi - lo), 0, 1),
 *       f = f0/factor * ramp_t + f0 * (1 - ramp_t);
 *       *mscale (if not NULL) = 1 for factor <= 1, else 0.1 ln(factor) + 1:
 *       pass it as attn_rope_params.mscale.
 * factor, alpha, low/high_freq_factor, beta_fast, beta_slow: finite, > 0;
 * original_max_position >= 1.
 * @return ATTN_OK, NULL (inv_freq) or ARG naming the value; nothing is
 * written on failure. Since v0.2.0. */
attn_status attn_rope_inv_freq(int64_t rotary_dim, double base, double *inv_freq);
attn_status attn_rope_inv_freq_linear(int64_t rotary_dim, double base, double factor,
                                      double *inv_freq);
attn_status attn_rope_inv_freq_ntk(int64_t rotary_dim, double base, double alpha, double *inv_freq);
attn_status attn_rope_inv_freq_llama3(int64_t rotary_dim, double base, double factor,
                                      double low_freq_factor, double high_freq_factor,
                                      int64_t original_max_position, double *inv_freq);
attn_status attn_rope_inv_freq_yarn(int64_t rotary_dim, double base, double factor,
                                    int64_t original_max_position, double beta_fast,
                                    double beta_slow, double *inv_freq, double *mscale);

/* ------------------------------------------------------------------------ */
/* Attention modules (S2-S7)                                                 */
/* ------------------------------------------------------------------------ */

/* Single-head self-attention (S2, S3), one function for one or many sequences:
 *   x (N, D) or (B, N, D);  Wq, Wk (D, HS);  Wv (D, HSv);  out (N, HSv) or (B, N, HSv)
 *   q = x @ Wq, k = x @ Wk, v = x @ Wv                   // "bnd,de->bne"
 *   out = softmax(q k^T * scale + mask) v                // "bie,bje->bij", "bij,bjf->bif"
 * opts as for attn_sdpa with H = 1 (mask (B|1, 1, N|1, N|1)); NULL = defaults. */
attn_status attn_self_attention(const attn_view *x, const attn_view *Wq, const attn_view *Wk,
                                const attn_view *Wv, attn_view *out, const attn_opts *opts);

/* Single-head cross-attention (S6): queries from xq, keys and values from xkv.
 *   xq (Nq, Dq) or (B, Nq, Dq);  xkv (Nkv, Dkv) or (B, Nkv, Dkv)
 *   Wq (Dq, HS);  Wk (Dkv, HS);  Wv (Dkv, HSv);  out (Nq, HSv) or (B, Nq, HSv) */
attn_status attn_cross_attention(const attn_view *xq, const attn_view *xkv, const attn_view *Wq,
                                 const attn_view *Wk, const attn_view *Wv, attn_view *out,
                                 const attn_opts *opts);

/* Multi-head attention parameters. Per-head weights are stacked views, with
 * Hkv = num_kv_heads key/value heads (grouped-query attention; Hkv = NH is
 * plain multi-head, Hkv = 1 multi-query):
 *   Wq (NH, Dq, HS)   Wk (Hkv, Dkv, HS)  Wv (Hkv, Dkv, HSv)
 *   bq (NH, HS)       bk (Hkv, HS)       bv (Hkv, HSv)       (data NULL: none)
 *   Wo (NH*HSv, Dout)                    bo (Dout)           (data NULL: none)
 * Without Wo the module returns the heads concatenated, (B, Nq, NH*HSv).
 * Any strides: the article's list of per-head matrices stacked, or the fused
 * (D, 3*D) matrix seen through attn_mha_from_fused (or (D, (NH + 2*Hkv)*HS)
 * through attn_mha_from_fused_gqa), without copying.
 * Zero-initialise the struct ({0} or memset): num_kv_heads = 0 means NH. */
typedef struct attn_mha_params {
    int64_t num_heads;
    attn_view Wq, Wk, Wv;
    attn_view bq, bk, bv;
    attn_view Wo, bo;
    /* Key/value heads, dividing num_heads; 0 means num_heads. Since v0.2.0. */
    int64_t num_kv_heads;
} attn_mha_params;

/* Fill p from the fused form (S7):
 *   Wqkv (D, 3*D), columns [q | k | v], head h owning columns h*HS..h*HS+HS-1
 *   of each part, HS = D / num_heads (D % num_heads must be 0);
 *   bqkv (3*D) or NULL;  Wo (D, Dout) or NULL;  bo (Dout) or NULL.
 * This is PyTorch's in_proj_weight transposed. The views in p point into the
 * caller's arrays: Wq[h, i, e] = Wqkv[i, h*HS + e] (strides (HS, ld, 1)).
 * For self-attention attn_mha detects this layout and computes q, k and v
 * with one GEMM (x @ Wqkv); for cross-attention, one GEMM per projection. */
attn_status attn_mha_from_fused(const attn_view *Wqkv, const attn_view *bqkv, int64_t num_heads,
                                const attn_view *Wo, const attn_view *bo, attn_mha_params *p);

/* Fill p from a grouped-query fused projection (Llama's q_proj, k_proj and
 * v_proj side by side):
 *   Wqkv (D, (H + 2*Hkv)*HS), columns [q (H*HS) | k (Hkv*HS) | v (Hkv*HS)],
 *   head h owning columns h*HS..h*HS+HS-1 of its part; HS = Wqkv.shape[1] /
 *   (H + 2*Hkv) (need not be D / H); H = num_heads, Hkv = num_kv_heads (0
 *   means H; H a multiple of Hkv);  bqkv ((H + 2*Hkv)*HS) or NULL;
 *   Wo (H*HS, Dout) or NULL;  bo (Dout) or NULL.
 *   Wq[h, i, e] = Wqkv[i, h*HS + e];  Wk[g, i, e] = Wqkv[i, H*HS + g*HS + e];
 *   Wv[g, i, e] = Wqkv[i, (H + Hkv)*HS + g*HS + e]
 * Self-attention then runs one GEMM of width (H + 2*Hkv)*HS. With Hkv = H
 * and HS = D / H it equals attn_mha_from_fused.
 * @return ATTN_OK, NULL (p) or SHAPE naming the size. Since v0.2.0. */
attn_status attn_mha_from_fused_gqa(const attn_view *Wqkv, const attn_view *bqkv, int64_t num_heads,
                                    int64_t num_kv_heads, const attn_view *Wo, const attn_view *bo,
                                    attn_mha_params *p);

/* Multi-head attention (S4, S5, S6, S7):
 *   xq  (Nq, Dq) or (B, Nq, Dq)
 *   xkv (Nkv, Dkv) or (B, Nkv, Dkv), or NULL for self-attention (xkv = xq)
 *   out (Nq, Dout) or (B, Nq, Dout)   (Dout = NH*HSv without Wo)
 * Steps, with H = NH, Hkv = num_kv_heads (or H), g = h / (H / Hkv):
 *   q[b,h,i,e] = sum_c xq[b,i,c]  Wq[h,c,e] + bq[h,e]    // "bic,hce->bhie"
 *   k[b,g,j,e] = sum_c xkv[b,j,c] Wk[g,c,e] + bk[g,e]    // "bjc,gce->bgje"
 *   v[b,g,j,f] = sum_c xkv[b,j,c] Wv[g,c,f] + bv[g,f]    // "bjc,gcf->bgjf"
 *   a = attn_sdpa(q, k, v, opts)                         // (B, H, Nq, HSv), GQA
 *   cat[b,i,h*HSv+f] = a[b,h,i,f]                        // "bhif->bi(hf)"
 *   out = cat @ Wo + bo                                  // "bio,od->bid"
 * opts pass to attn_sdpa unchanged (causal, mask, key_lengths, dropout,
 * threads, lse, weights); NULL = defaults. Grouped-query attention is the
 * same as expanding Wk, Wv (and bk, bv) to H heads with np.repeat(.., H/Hkv,
 * axis=0); it is computed without expanding.
 * @return SHAPE when num_kv_heads does not divide num_heads or Wk/Wv do not
 * have Hkv heads (since v0.2.0), and the errors of attn_sdpa. */
attn_status attn_mha(const attn_mha_params *p, const attn_view *xq, const attn_view *xkv,
                     attn_view *out, const attn_opts *opts);

/* ------------------------------------------------------------------------ */
/* KV cache (decoding)                                   Since v0.2.0       */
/* ------------------------------------------------------------------------ */

/* Storage type of a KV cache. Values pinned. */
typedef enum attn_kv_dtype {
    ATTN_KV_FLOAT32 = 0,
    ATTN_KV_FLOAT16 = 1,  /* IEEE binary16 */
    ATTN_KV_BFLOAT16 = 2, /* the top 16 bits of a float32 */
} attn_kv_dtype;

/* A paged KV cache: a pool of num_blocks blocks, each holding the keys and
 * values of block_size consecutive token positions for all Hkv kv heads.
 *
 * Sequences. A sequence is a block table owned by the caller: int32 block
 * ids (0..num_blocks-1, any order, a block may appear in several tables)
 * plus a length. Token position p of the sequence lives in slot p % bs of
 * block table[p / bs] (bs = block_size). Many sequences share one pool;
 * sequences whose tables name the same block share its contents (a common
 * prefix): appending into a shared block changes every sequence that holds
 * it, so a sequence that shares a partly filled block takes its own copy
 * first (attn_kv_copy_blocks) and points its table at the copy. Tables of B
 * sequences are passed as one row-major int32 array (B, max_blocks):
 * block_tables[b * max_blocks + t]; entries past what a call needs are not
 * read.
 *
 * Storage. float32, float16 or bfloat16. Appends round each float32 to the
 * nearest value of the storage type, ties to even, bit for bit for every
 * non-NaN input, subnormals included (integer rounding; overflow gives
 * +-inf); NaN stays NaN (payload unspecified). Reads convert back exactly.
 * Queries, scores, softmax and accumulators are float32 whatever the
 * storage: attend over a float16 cache differs from float32 attention only
 * by the rounding of the stored keys and values.
 *
 * Layout (for the kernels; users never address it). With e a head-size
 * index, f a value index, c a slot 0..bs-1 of the block, g a kv head:
 *   K  (num_blocks, Hkv, bs/16, d, 16)   key c at [blk, g, c/16, e, c%16]:
 *      each 16-key tile is stored transposed, keys across the 16 SIMD
 *      lanes, so a score kernel reads K without any shuffle;
 *   V  (num_blocks, Hkv, bs, dv)         row-major per key.
 * A new cache holds zeros.
 *
 * Threads: attn_kv_attend and attn_kv_read only read the cache and may run
 * at once on one cache; attn_kv_append and attn_kv_copy_blocks must not run
 * while another call uses the blocks they write. */
typedef struct attn_kv_cache attn_kv_cache;

/* Create a cache of num_blocks blocks of block_size token positions, for
 * num_kv_heads (Hkv) heads of key size head_dim (d) and value size
 * value_dim (dv; <= 0 means dv = d), stored as dtype.
 *   num_blocks >= 1, block_size a positive multiple of 16, Hkv, d >= 1,
 *   bytes = num_blocks * Hkv * block_size * (d + dv) * sizeof(element)
 *   must fit in size_t.
 * @return ATTN_OK and *cache, or ATTN_ERR_NULL (cache NULL), ATTN_ERR_SHAPE,
 * ATTN_ERR_ARG (dtype), ATTN_ERR_OVERFLOW, ATTN_ERR_NOMEM; *cache is then
 * NULL. The pool is allocated through the installed allocator. */
attn_status attn_kv_create(int64_t num_blocks, int64_t block_size, int64_t num_kv_heads,
                           int64_t head_dim, int64_t value_dim, attn_kv_dtype dtype,
                           attn_kv_cache **cache);

/* Free a cache and its pool. NULL is a no-op. */
void attn_kv_destroy(attn_kv_cache *cache);

/* Append new keys and values for B sequences at once, each at its own
 * start:
 *   block_tables (B, max_blocks) int32    starts (B) int64
 *   counts       (B) int64 in 0..n, or NULL (every sequence appends n)
 *   k (B, Hkv, n, d)   v (B, Hkv, n, dv)    any strides
 * For b ascending and t < counts[b], position p = starts[b] + t of
 * sequence b receives
 *   K[p] = round(k[b, :, t, :])    V[p] = round(v[b, :, t, :])
 * and nothing else in the pool changes (the other slots of the blocks
 * included). If two sequences write the same slot (shared blocks), the
 * larger b wins.
 * Errors (the cache is then unchanged): NULL pointers; k/v not rank 4 or
 * sizes that disagree with the cache (Hkv, d, dv) or each other (B, n);
 * starts[b] < 0; starts[b] + counts[b] > max_blocks * block_size (past the
 * table's capacity); a block id a write would use outside 0..num_blocks-1.
 * Every message names the argument and the index, e.g.
 *   "attn_kv_append: block_tables[1][3]=-5 is not a block id (0..99)".
 * @return ATTN_OK, or NULL/SHAPE/ARG/OVERFLOW. Allocates nothing. */
attn_status attn_kv_append(attn_kv_cache *cache, const int32_t *block_tables, int64_t max_blocks,
                           const int64_t *starts, const int64_t *counts, const attn_view *k,
                           const attn_view *v);

/* attn_kv_append with the keys rotated by RoPE on the way in, so the cache
 * holds rotated keys (queries are rotated by the caller, attn_rope, at the
 * same positions). Key t of sequence b is at position starts[b] + t:
 *   K[p] = round(attn_rope(k, positions[b, t] = starts[b] + t, rope)[b, :, t, :])
 *   V[p] = round(v[b, :, t, :])
 * equal, bit for bit, to attn_rope into a buffer and then attn_kv_append of
 * it, and so a decode step's key equals the same key of a prefill.
 * k is not modified (the rotation goes to scratch, B*Hkv*n*d floats).
 * rope: the parameters of attn_rope (style, rotary_dim, base or inv_freq,
 * mscale). Errors: those of attn_rope (for k and rope) and attn_kv_append,
 * named for this function; on failure the cache is unchanged.
 * @return ATTN_OK, or NULL/SHAPE/STRIDE/OVERFLOW/ARG/NOMEM/ISA. Since v0.2.0. */
attn_status attn_kv_append_rope(attn_kv_cache *cache, const int32_t *block_tables,
                                int64_t max_blocks, const int64_t *starts, const int64_t *counts,
                                const attn_view *k, const attn_view *v,
                                const attn_rope_params *rope);

/* Read back positions 0..length-1 of one sequence, converted exactly to
 * float32:
 *   block_table (ceil(length / block_size)) int32
 *   k (Hkv, length, d)    k[g, p, e] = K[p] of head g
 *   v (Hkv, length, dv)   v[g, p, f] = V[p] of head g
 * Either output may be NULL (not read). Outputs must be proper outputs
 * (no stride 0 on a dimension > 1). Errors as attn_kv_append.
 * @return ATTN_OK, or NULL/SHAPE/STRIDE/ARG. */
attn_status attn_kv_read(const attn_kv_cache *cache, const int32_t *block_table, int64_t length,
                         attn_view *k, attn_view *v);

/* Copy whole blocks (keys and values of every head and slot):
 *   for i = 0..n-1 ascending: block dst[i] = block src[i]
 * so a later pair sees the result of an earlier one. n = 0 does nothing.
 * Every id must be in 0..num_blocks-1 (checked before anything is copied).
 * @return ATTN_OK, or NULL/ARG/SHAPE (n < 0). */
attn_status attn_kv_copy_blocks(attn_kv_cache *cache, const int32_t *src, const int32_t *dst,
                                int64_t n);

/* Attention of B sequences over the cache: a batch may mix decode rows and
 * prefill chunks.
 *   q            (B, H, Nq, d)    any strides; H a multiple of Hkv
 *   block_tables (B, max_blocks) int32
 *   lengths      (B) int64, L_b in 0..max_blocks * block_size: sequence b
 *                holds keys at positions 0..L_b-1 (appended beforehand)
 *   q_lengths    (B) int64 in 0..Nq, or NULL (all Nq): sequence b has
 *                queries q[b, :, 0..nq_b-1]; its other rows of out are set
 *                to 0 (and lse to -inf)
 *   out          (B, H, Nq, dv)
 * For sequence b, query head h (kv head g = h / (H / Hkv)), this is exactly
 * attn_sdpa over the float32 values the cache holds (attn_kv_read):
 *   attn_sdpa(q[b:b+1, :, :nq_b], K_b (1, Hkv, L_b, d), V_b (1, Hkv, L_b, dv),
 *             out[b:b+1, :, :nq_b], opts)
 * bit for bit, for every dtype, any thread count, and whatever the other
 * sequences of the batch are. With opts.causal = ATTN_CAUSAL_BOTTOM_RIGHT
 * query i of sequence b is at position L_b - nq_b + i and sees keys
 * j <= L_b - nq_b + i (chunked prefill: append the chunk's keys first, then
 * attend with its queries; decode: nq_b = 1). A decode row equals the same
 * row of a chunked prefill, bit for bit. GQA: in decode each K/V block is
 * read once for all the query heads of its kv head. L_b = 0 gives zeros
 * and lse -inf (sinks[h] with sinks).
 * opts: scale, causal, mask (rank 4, (B|1, H|1, Nq|1, Nmax|1) with Nmax =
 * max_b L_b: sequence b reads mask[b, h, i, j] for j < L_b), lse (B, H, Nq),
 * num_threads, algo, and the score modifiers (q_offset: B values, query i
 * of sequence b at q_offset[b] + i; k_offset; window_left/right; softcap;
 * alibi_slopes and sinks: H values), each as attn_sdpa takes it; where
 * attn_sdpa runs its reference path (algo REFERENCE, or a modifier the fast
 * path does not take yet) attend does too, over a float32 copy of the
 * sequence (scratch: Hkv * L_b * (d + dv) floats). Refused (ATTN_ERR_ARG):
 * key_lengths (lengths is the one length), dropout_p > 0 and weights.
 * NULL opts = defaults.
 * Dropped blocks: a table entry may be -1 for a block that no query of its
 * sequence can see (every key of it outside every row's causal/window
 * range), e.g. a sliding-window cache that freed the blocks behind the
 * window; such a block reads as zeros. Any other entry of the first
 * ceil(L_b / block_size) must be a block id.
 * Errors as attn_kv_append and as attn_sdpa for q, out, mask, lse and the
 * modifiers; out and lse are then untouched. With more than one sequence
 * with queries, results go through scratch (B * H * Nq * (dv + 1) floats)
 * so that a failure leaves out and lse untouched.
 * @return ATTN_OK, or NULL/SHAPE/STRIDE/OVERFLOW/ARG/NOMEM/ISA. */
attn_status attn_kv_attend(const attn_kv_cache *cache, const attn_view *q,
                           const int32_t *block_tables, int64_t max_blocks, const int64_t *lengths,
                           const int64_t *q_lengths, attn_view *out, const attn_opts *opts);

/* ------------------------------------------------------------------------ */
/* Gradients of the building blocks and modules (training)                   */
/* ------------------------------------------------------------------------ */
/* Each *_backward takes the forward's inputs and dy = dLoss/dy, and writes
 * the gradients wanted (a NULL output, or a view with data NULL inside a
 * struct, is not computed). Outputs are overwritten, not accumulated; they
 * must be proper outputs overlapping no input and no other output; all
 * checks run before anything is written. What the backward needs from the
 * forward is recomputed from these inputs (the norms' statistics, the
 * module's q, k, v, attention and lse): nothing has to be kept between the
 * calls, at the cost of one more forward for attn_mha_backward. Sums over
 * rows (dW, db, dgamma) run in a fixed order: in double for the norms and
 * biases, through the GEMM (deterministic per thread count) for weights.
 * Since v0.2.0. */

/* Gradients of attn_linear, y = x @ W + b:
 *   x (..., in) rank 1..3;  W (in, out);  dy (..., out)
 *   dx[n, i] = sum_o dy[n, o] W[i, o]     // "no,io->ni"   dx (..., in) or NULL
 *   dW[i, o] = sum_n x[n, i] dy[n, o]     // "ni,no->io"   dW (in, out) or NULL
 *   db[o]    = sum_n dy[n, o]             // "no->o"       db (out) or NULL
 * (n over every leading index). Scratch: rows x (in + out + max(in, out))
 * floats. @return ATTN_OK, or NULL/SHAPE/STRIDE/OVERFLOW/NOMEM/ISA. */
attn_status attn_linear_backward(const attn_view *x, const attn_view *W, const attn_view *dy,
                                 attn_view *dx, attn_view *dW, attn_view *db, int num_threads);

/* Gradients of attn_layer_norm (beta does not enter them). Per row of D
 * features, xh = (x - mu) / sqrt(var + eps), dxh = dy * gamma:
 *   dx = (dxh - mean(dxh) - xh * mean(dxh * xh)) / sqrt(var + eps)
 *   dgamma[j] = sum over rows of dy * xh;   dbeta[j] = sum over rows of dy
 * x, dy, dx: the same shape (rank 1..4); gamma (D) or NULL (1); dgamma,
 * dbeta (D) or NULL. */
attn_status attn_layer_norm_backward(const attn_view *x, const attn_view *gamma,
                                     const attn_view *dy, float eps, attn_view *dx,
                                     attn_view *dgamma, attn_view *dbeta);

/* Gradients of attn_rms_norm. Per row, r = 1 / sqrt(mean(x^2) + eps) (0 for
 * a zero row with eps 0), xh = x r, dxh = dy * gamma:
 *   dx = r (dxh - xh * mean(dxh * xh));   dgamma[j] = sum over rows of dy * xh */
attn_status attn_rms_norm_backward(const attn_view *x, const attn_view *gamma, const attn_view *dy,
                                   float eps, attn_view *dx, attn_view *dgamma);

/* Gradient of attn_rope: the rotation transposed, i.e. by -theta,
 *   dx = R(-theta) dy * mscale,
 * which is attn_rope at the negated positions (same arguments as attn_rope,
 * dy in x's place, dx in y's; dx may be dy itself). A position of
 * INT64_MIN is ATTN_ERR_ARG. Scratch: the negated positions (N, or B*H*N
 * int64 when pos_strides vary over batches or heads). */
attn_status attn_rope_backward(const attn_view *dy, const int64_t *positions,
                               const int64_t *pos_strides, attn_view *dx,
                               const attn_rope_params *p);

/* Gradients of attn_mha with respect to its inputs and every weight and bias.
 *   p, xq, xkv (NULL: self-attention), opts: as given to attn_mha
 *   dout  (Nq, Dout) or (B, Nq, Dout): dLoss/dout, any strides (may alias xq)
 *   dxq   like xq, or NULL; with self-attention it holds the whole gradient of x
 *   dxkv  like xkv, or NULL (must be NULL for self-attention)
 *   grads the gradients in p's own layout: grads->Wq like p->Wq, ..., grads->bo
 *         like p->bo; a view with data NULL is not computed (and must be for a
 *         parameter p does not have); num_heads, num_kv_heads are ignored. Build
 *         it with attn_mha_from_fused(_gqa) over fused gradient buffers to get
 *         dWqkv (D, 3*D) directly (the q, k, v gradient views may then share
 *         one buffer: they are not checked against each other, only against
 *         everything else). NULL: no parameter gradient.
 * Steps (forward recomputed, then in reverse, with cat, q, k, v as in attn_mha):
 *   dWo = cat^T dout;  dbo = sum_rows dout;  dcat = dout Wo^T
 *   dq, dk, dv = attn_sdpa_backward(q, k, v, a, lse, dcat, opts)   (GQA: dk, dv per kv head)
 *   dWq[h] = xq^T dq_h;  dbq[h] = sum_rows dq_h;  dxq = sum_h dq_h Wq[h]^T   (k, v likewise)
 * Dropout regenerates the forward's pattern from opts' seed. Scratch: the
 * projected q, k, v, attention and their gradients, copies of x, dout and
 * the weights, O(B N (D + heads x head size)). */
attn_status attn_mha_backward(const attn_mha_params *p, const attn_view *xq, const attn_view *xkv,
                              const attn_view *dout, attn_view *dxq, attn_view *dxkv,
                              attn_mha_params *grads, const attn_opts *opts);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_H */
