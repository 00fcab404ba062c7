/* grad_util.h - what the module gradients share (the src/..._backward.c files):
 * checks of gradient outputs and moves between strided views and
 * contiguous row matrices. Internal. */
#ifndef ATTN_GRAD_UTIL_H
#define ATTN_GRAD_UTIL_H

#include "internal.h"

/* g is a valid view with exactly ref's rank and shape. */
attn_status attn__grad_check_like(const char *fn, const char *name, const attn_view *g,
                                  const char *ref_name, const attn_view *ref);

/* Each non-NULL outs[i] is a proper output overlapping no input and no
 * other output. */
attn_status attn__grad_check_outputs(const char *fn, attn_view *const *outs,
                                     const char *const *out_names, int n_out,
                                     const attn_view *const *ins, const char *const *in_names,
                                     int n_in);

/* v (rank 1..4) copied to a contiguous array in row-major order. */
void attn__grad_rows(const attn_view *v, float *dst);

/* The contiguous array src (v's numel, row-major) written into v. */
void attn__grad_store_rows(const float *src, attn_view *v);

/* db[o] = sum_n g[n * cols + o] in double, n ascending. */
void attn__grad_colsum(const float *g, int64_t rows, int64_t cols, attn_view *db);

#endif
