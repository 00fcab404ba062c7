/* rope_backward.c - the gradient of rope.c: y = R(theta) x * mscale, R a
 * rotation of each pair, so dx = R(theta)^T dy * mscale = R(-theta) dy *
 * mscale: attn_rope itself at the negated positions (theta = p * inv_freq,
 * negation is exact in double and cos, sin are even and odd). */
#include "internal.h"

#include <inttypes.h>

attn_status attn_rope_backward(const attn_view *dy, const int64_t *positions,
                               const int64_t *pos_strides, attn_view *dx,
                               const attn_rope_params *p) {
    const char *fn = "attn_rope_backward";
    attn_status s;
    if ((s = attn__isa_ready(fn))) return s;
    if ((s = attn__check_view(fn, "dy", dy, 0))) return s;
    if (!positions) return attn__fail(ATTN_ERR_NULL, "%s: positions is NULL", fn);
    if (dy->ndim < 2)
        return attn__fail(ATTN_ERR_SHAPE, "%s: dy.ndim=%d but must be 2..4 ((B, H, N, d))", fn,
                          dy->ndim);
    const attn_view d4 = attn__as4(dy);
    const int64_t B = d4.shape[0], H = d4.shape[1], N = d4.shape[2];
    const int64_t ps0 = pos_strides ? pos_strides[0] : 0, ps1 = pos_strides ? pos_strides[1] : 0,
                  ps2 = pos_strides ? pos_strides[2] : 1;
    /* The negated positions, dense (B, H, N) (or (N) when shared). */
    const bool shared = ps0 == 0 && ps1 == 0;
    const int64_t n = shared ? N : B * H * N;
    int64_t *neg = attn__alloc((size_t)n, sizeof(int64_t));
    if (!neg) return attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate %" PRId64 " positions", fn, n);
    for (int64_t b = 0; b < (shared ? 1 : B); b++)
        for (int64_t h = 0; h < (shared ? 1 : H); h++)
            for (int64_t i = 0; i < N; i++) {
                const int64_t pos = positions[b * ps0 + h * ps1 + i * ps2];
                if (pos == INT64_MIN) {
                    attn__free(neg);
                    return attn__fail(ATTN_ERR_ARG,
                                      "%s: positions[%" PRId64 "]=%" PRId64 " cannot be negated",
                                      fn, b * ps0 + h * ps1 + i * ps2, pos);
                }
                neg[(b * H + h) * N + i] = -pos;
            }
    const int64_t strides[3] = {shared ? 0 : H * N, shared ? 0 : N, 1};
    s = attn_rope(dy, neg, strides, dx, p);
    attn__free(neg);
    return s;
}
