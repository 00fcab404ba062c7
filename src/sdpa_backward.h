/* sdpa_backward.h - the validated backward problem, shared by src/sdpa_backward.c
 * (checks), src/ref/sdpa_backward_ref.c (the specification) and
 * src/flash/backward.c (the tiled path). Internal: names start with attn__. */
#ifndef ATTN_SDPA_BACKWARD_H
#define ATTN_SDPA_BACKWARD_H

#include "internal.h"

/* All checks have passed when an algorithm receives this. f is the forward's
 * problem (its out is the forward's output, read here; f.lse and f.weights
 * are NULL). Views are rank 4, lse rank 3. */
typedef struct attn__bwd_problem {
    attn__sdpa_problem f;
    attn_view lse;  /* (B, H, Nq) */
    attn_view dout; /* (B, H, Nq, dv) */
    attn_view dq;   /* (B, H, Nq, d) */
    attn_view dk;   /* (B, Hkv, Nkv, d) */
    attn_view dv;   /* (B, Hkv, Nkv, dv) */
    bool has_dmask;
    attn_view dmask; /* the mask's own shape: size 1 = summed over that dimension */
    bool has_dsinks;
    attn_view dsinks; /* (H) */
} attn__bwd_problem;

/* Pointer to the dmask entry that score (b, h, i, j) reads. */
static inline float *attn__dmask_at(const attn__bwd_problem *P, int64_t b, int64_t h, int64_t i,
                                    int64_t j) {
    const attn_view *m = &P->dmask;
    return m->data + (m->shape[0] == 1 ? 0 : b * m->stride[0]) +
           (m->shape[1] == 1 ? 0 : h * m->stride[1]) + (m->shape[2] == 1 ? 0 : i * m->stride[2]) +
           (m->shape[3] == 1 ? 0 : j * m->stride[3]);
}

/* The reference backward (plain loops, double). Always applicable. */
attn_status attn__sdpa_backward_ref(const attn__bwd_problem *P);

/* The tiled backward (src/flash/backward.c). */
bool attn__flash_backward_applies(const attn__bwd_problem *P);
attn_status attn__sdpa_backward_flash(const attn__bwd_problem *P);

#endif /* ATTN_SDPA_BACKWARD_H */
