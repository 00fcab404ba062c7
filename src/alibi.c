/* alibi.c - the ALiBi paper's head slopes (Press, Smith, Lewis 2022).
 * For n heads, n a power of two, head k (1-based) has slope 2^(-8k/n). For
 * other H, with n the largest power of two below H: the n slopes of n heads,
 * then every other slope of 2n heads (k = 1, 3, 5, ...) until H are filled. */
#include "internal.h"

#include <inttypes.h>

attn_status attn_alibi_slopes(int64_t H, float *out) {
    const char *fn = "attn_alibi_slopes";
    if (!out) return attn__fail(ATTN_ERR_NULL, "%s: out must not be NULL", fn);
    if (H < 1 || H > ((int64_t)1 << 24))
        return attn__fail(ATTN_ERR_ARG, "%s: H=%" PRId64 " must be in 1..2^24", fn, H);
    int64_t n = 1;
    while (n * 2 <= H)
        n *= 2;
    for (int64_t k = 1; k <= n; k++)
        out[k - 1] = (float)exp2(-8.0 * (double)k / (double)n);
    for (int64_t t = 0; n + t < H; t++)
        out[n + t] = (float)exp2(-8.0 * (double)(2 * t + 1) / (double)(2 * n));
    return ATTN_OK;
}
