/* flow.h - the shape flow of multi-head attention, step by step (S8, S10).
 * One builder and one printer serve `attn explain` (shapes from the
 * configuration) and `attn demo` (which checks its real views against it). */
#ifndef ATTN_CLI_FLOW_H
#define ATTN_CLI_FLOW_H

#include "attn.h"

#include <stdint.h>
#include <stdio.h>

typedef struct flow_cfg {
    int64_t B, Nq, Nkv; /* Nkv == Nq for self-attention */
    int64_t D;          /* model width (of xq and xkv) */
    int64_t H, Hkv;     /* query heads, key/value heads (Hkv == H: plain MHA) */
    int cross;          /* keys and values from a second sequence xkv */
    attn_causal causal;
    int64_t cache; /* decode with a KV cache: tokens already cached (0: none);
                      then Nkv = cache + Nq and the rule is bottom-right */
} flow_cfg;

#define FLOW_MAX_STEPS 16

typedef struct flow_step {
    char name[16]; /* "scores" */
    char expr[40]; /* "q @ k^T * scale" */
    int ndim;
    int64_t shape[4];
    char einsum[40]; /* numpy.einsum subscripts, or "" */
    char note[120];
} flow_step;

/* Check the configuration (sizes >= 1, D % H == 0, H % Hkv == 0, Nkv == Nq
 * unless cross or cached; a cache is self-attention only).
 * @return NULL if fine, else a message (static storage). */
const char *flow_check(const flow_cfg *c);

/* Fill steps with the flow of c. @return the number of steps. */
int flow_build(const flow_cfg *c, flow_step *steps);

/* @return the step called name, or NULL. */
const flow_step *flow_find(const flow_step *steps, int n, const char *name);

/* Print a title line for c, then one line per step. */
void flow_print(FILE *f, const flow_cfg *c, const flow_step *steps, int n);

/* Print the cost summary of c: parameters, FLOPs, memory of the scores. */
void flow_print_costs(FILE *f, const flow_cfg *c);

/* GPT-2 small: B=1, N=1024, D=768, H=12, causal top-left. */
flow_cfg flow_gpt2_small(void);

/* Parse one size option at argv[*i] (--seq --dim --heads --batch
 * --gqa-kv-heads or --kv-heads, --causal, and with allow_cross --cross --nkv
 * --cache) into c.
 * @return 1 if consumed (*status is EXIT_OK or the usage error already
 * printed), 0 if argv[*i] is not a size option. */
int flow_parse_option(int argc, char **argv, int *i, flow_cfg *c, int allow_cross, const char *cmd,
                      int *status);

/* Defaults that follow other sizes: Nkv = Nq, Hkv = H unless set; with a
 * cache, Nq = 1 unless --seq was given, Nkv = cache + Nq, bottom-right. */
void flow_finish(flow_cfg *c, int nkv_set, int hkv_set);

#endif /* ATTN_CLI_FLOW_H */
