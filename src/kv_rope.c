/* kv_rope.c - appending keys to the KV cache rotated by RoPE on the way in,
 * so cached keys are stored rotated (design.md, "Score modifiers"): key t of
 * sequence b sits at position starts[b] + t and is rotated by that position.
 *   k_rot = attn_rope(k, positions[b, t] = starts[b] + t)   (B, Hkv, n, d)
 *   attn_kv_append(cache, ..., k_rot, v)
 * The rotation goes to scratch memory first, so a failing call leaves both
 * the cache and k untouched. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Re-label an inner function's message as this function's. */
static attn_status relabel(attn_status s, const char *inner, const char *fn) {
    const char *msg = attn_last_error();
    const size_t n = strlen(inner);
    if (strncmp(msg, inner, n) == 0 && msg[n] == ':') {
        char copy[512];
        snprintf(copy, sizeof copy, "%s", msg + n + 1);
        /* attn_rope calls its input x; here it is k. */
        if (strncmp(copy, " x", 2) == 0 && (copy[2] == '.' || copy[2] == ' '))
            return attn__fail(s, "%s: k%s", fn, copy + 2);
        return attn__fail(s, "%s:%s", fn, copy);
    }
    return s;
}

attn_status attn_kv_append_rope(attn_kv_cache *cache, const int32_t *block_tables,
                                int64_t max_blocks, const int64_t *starts, const int64_t *counts,
                                const attn_view *k, const attn_view *v,
                                const attn_rope_params *rope) {
    const char *fn = "attn_kv_append_rope";
    attn_status s;
    if (!cache) return attn__fail(ATTN_ERR_NULL, "%s: cache is NULL", fn);
    if (!starts) return attn__fail(ATTN_ERR_NULL, "%s: starts is NULL", fn);
    if (!rope) return attn__fail(ATTN_ERR_NULL, "%s: rope is NULL", fn);
    if ((s = attn__check_view(fn, "k", k, 4))) return s;
    const int64_t B = k->shape[0], G = k->shape[1], n = k->shape[2], d = k->shape[3];
    int64_t numel, npos;
    if ((s = attn__numel(fn, "k", k, &numel))) return s;
    if (__builtin_mul_overflow(B, n, &npos))
        return attn__fail(ATTN_ERR_OVERFLOW, "%s: k has too many tokens", fn);
    float *kr = attn__alloc((size_t)numel, sizeof(float));
    int64_t *pos = attn__alloc((size_t)npos, sizeof(int64_t));
    if (!kr || !pos) {
        s = attn__fail(ATTN_ERR_NOMEM, "%s: cannot allocate the rotated keys", fn);
        goto done;
    }
    /* Positions starts[b] + t; a start so large that this overflows is past
     * any table's capacity, which attn_kv_append reports. */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < n; t++)
            if (__builtin_add_overflow(starts[b], t, &pos[b * n + t])) pos[b * n + t] = 0;
    const int64_t ps[3] = {n, 0, 1};
    attn_view kv = attn_view_4d(kr, B, G, n, d);
    if ((s = attn_rope(k, pos, ps, &kv, rope))) {
        s = relabel(s, "attn_rope", fn);
        goto done;
    }
    if ((s = attn_kv_append(cache, block_tables, max_blocks, starts, counts, &kv, v)))
        s = relabel(s, "attn_kv_append", fn);
done:
    attn__free(kr);
    attn__free(pos);
    return s;
}
