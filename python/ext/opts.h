/*
 * opts.h - the attention options (attn_opts) as argument-table rows, shared
 * by every binding function that takes them (sdpa, the modules, the KV cache).
 *
 * A function puts the rows in its table with one designator and passes
 * v + OPTS to opts_build:
 *
 *   enum { Q, K, V, OPTS, WANT_LSE = OPTS + OPT_N, N_ARGS };
 *   static const arg_spec spec[N_ARGS] = {
 *       [Q] = {"q", ARG_ARRAY, ARG_REQUIRED, 4, 4}, ...,
 *       [OPTS] = ATTN_OPT_ROWS,
 *       [WANT_LSE] = {"want_lse", ARG_BOOL, 0},
 *   };
 *   ...
 *   attn_opts opts;
 *   if (opts_build(&st, v + OPTS, batch, heads, &opts) < 0) goto done;
 *
 * A new option is one row here, one enum value and a few lines in
 * opts_build; every function taking options gets it.
 */
#ifndef ATTN_PY_OPTS_H
#define ATTN_PY_OPTS_H

#include "convert.h"

/* Indices of the option rows, relative to where they start in a table. */
enum {
    OPT_SCALE,
    OPT_CAUSAL,
    OPT_MASK,
    OPT_KEYLEN,
    OPT_DROPOUT,
    OPT_SEED,
    OPT_THREADS,
    OPT_ALGO,
    OPT_Q_OFFSET, /* score modifiers (attn_opts since v0.2.0) */
    OPT_K_OFFSET,
    OPT_WINDOW_LEFT, /* attn/_convert.py turns window=(left, right) into these two */
    OPT_WINDOW_RIGHT,
    OPT_SOFTCAP,
    OPT_ALIBI,
    OPT_SINKS,
    OPT_N
};

extern const char *const attn_py_causal_names[]; /* index = attn_causal */
extern const char *const attn_py_algo_names[];   /* index = attn_algo */

#define ATTN_OPT_ROWS                                                                              \
    {"scale", ARG_FLOAT, ARG_F32}, {"causal", ARG_ENUM, 0, .names = attn_py_causal_names},         \
        {"mask", ARG_MASK, 0}, {"key_lengths", ARG_INT64S, 0}, {"dropout_p", ARG_FLOAT, 0},        \
        {"seed", ARG_U64, 0}, {"num_threads", ARG_INT, ARG_MIN, .min = 0},                         \
        {"algo", ARG_ENUM, 0, .names = attn_py_algo_names}, {"q_offset", ARG_INT64S, 0},           \
        {"k_offset", ARG_INT, 0}, {"window_left", ARG_INT, ARG_MIN, .min = -1},                    \
        {"window_right", ARG_INT, ARG_MIN, .min = -1}, {"softcap", ARG_FLOAT, ARG_F32},            \
        {"alibi_slopes", ARG_ARRAY, ARG_NOVOTE | ARG_CONTIG, 1, 1}, {                              \
        "sinks", ARG_ARRAY, ARG_NOVOTE | ARG_CONTIG, 1, 1                                          \
    }

/* attn_opts from the converted rows o[0..OPT_N); batch = the B that
 * key_lengths and q_offset must match, heads = the H (query heads) that
 * alibi_slopes and sinks must match. Values are checked here in the
 * caller's terms. */
int opts_build(conv_state *st, const arg_val *o, int64_t batch, int64_t heads, attn_opts *opts);

#endif
