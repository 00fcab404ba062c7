/* kernels/dropout.h - dropout applied to a run of probabilities, with the
 * keep decision of attn_dropout_keep (src/dropout.h), per ISA.
 *   rows:  p[c*ldp + r] = keep(row[r], j0 + c) ? p[c*ldp + r] * scale : 0   r < n, c < nk
 *   keys:  p[r*ldp + c] = keep(row[r], j0 + c) ? p[r*ldp + c] * scale : 0   r < nr, c < n
 * The hash is integer arithmetic and the product one IEEE multiply, so every
 * ISA gives the same bits. AVX-512 (with DQ's 64-bit multiply) is used when
 * the selected ISA is avx512 and the CPU has DQ; AVX2 (the 64-bit multiply
 * built from 32-bit ones) when it is avx2, or avx512 without DQ; else
 * portable C. */
#ifndef ATTN_KERNELS_DROPOUT_H
#define ATTN_KERNELS_DROPOUT_H

#include <stdint.h>

/* out[r] = attn__dropout_row(seed, b, h[r], i[r]) for r < n. */
void attn__dropout_row_hashes(uint64_t seed, int64_t b, const int64_t *h, const int64_t *i,
                              int64_t n, uint64_t *out);

void attn__dropout_rows(float *p, int64_t ldp, int64_t nk, const uint64_t *row, int64_t n,
                        int64_t j0, uint32_t threshold, float scale);
void attn__dropout_keys(float *p, int64_t ldp, int64_t nr, const uint64_t *row, int64_t n,
                        int64_t j0, uint32_t threshold, float scale);

#endif /* ATTN_KERNELS_DROPOUT_H */
