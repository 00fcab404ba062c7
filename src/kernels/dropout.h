/* kernels/dropout.h - dropout applied to a run of probabilities, with the
 * keep decision of attn_dropout_keep (src/dropout.h), per ISA.
 *   rows:  p[r] = keep(row[r], j)     ? p[r] * scale : 0    for r < n
 *   keys:  p[c] = keep(row, j0 + c)   ? p[c] * scale : 0    for c < n
 * The hash is integer arithmetic and the product one IEEE multiply, so every
 * ISA gives the same bits. AVX-512 (with DQ's 64-bit multiply) is used when
 * the selected ISA is avx512 and the CPU has DQ; else portable C. */
#ifndef ATTN_KERNELS_DROPOUT_H
#define ATTN_KERNELS_DROPOUT_H

#include <stdint.h>

void attn__dropout_rows(float *p, const uint64_t *row, int64_t n, int64_t j, uint32_t threshold,
                        float scale);
void attn__dropout_keys(float *p, uint64_t row, int64_t n, int64_t j0, uint32_t threshold,
                        float scale);

#endif /* ATTN_KERNELS_DROPOUT_H */
