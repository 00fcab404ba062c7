/* merge.c - combine attention results computed over disjoint key sets.
 *   m = max_p lse_p;  w_p = exp(lse_p - m)
 *   out = sum_p w_p out_p / sum_p w_p;  lse = m + log(sum_p w_p)
 * A part with lse -inf saw no key and is skipped (its out is never read). */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>

attn_status attn_merge(const attn_view *part_out, const attn_view *part_lse, int n_parts,
                       attn_view *out, attn_view *lse) {
    const char *fn = "attn_merge";
    attn_status s;
    if (!part_out || !part_lse)
        return attn__fail(ATTN_ERR_NULL, "%s: part_out and part_lse must not be NULL", fn);
    if (n_parts < 1) return attn__fail(ATTN_ERR_ARG, "%s: n_parts=%d must be >= 1", fn, n_parts);
    if ((s = attn__check_view(fn, "out", out, 4))) return s;
    if (lse && (s = attn__check_view(fn, "lse", lse, 3))) return s;
    char name[48], lname[48];
    for (int p = 0; p < n_parts; p++) {
        snprintf(name, sizeof name, "part_out[%d]", p);
        snprintf(lname, sizeof lname, "part_lse[%d]", p);
        if ((s = attn__check_view(fn, name, &part_out[p], 4)) ||
            (s = attn__check_view(fn, lname, &part_lse[p], 3)))
            return s;
        for (int i = 0; i < 4; i++)
            if ((s = attn__check_dim(fn, name, &part_out[p], i, "out", out, i,
                                     "shapes must match")))
                return s;
        for (int i = 0; i < 3; i++)
            if ((s = attn__check_dim(fn, lname, &part_lse[p], i, "out", out, i,
                                     "lse is (B, H, Nq)")))
                return s;
    }
    if (lse)
        for (int i = 0; i < 3; i++)
            if ((s = attn__check_dim(fn, "lse", lse, i, "out", out, i, "lse is (B, H, Nq)")))
                return s;
    if ((s = attn__check_output(fn, "out", out))) return s;
    if (lse && (s = attn__check_output(fn, "lse", lse))) return s;
    for (int p = 0; p < n_parts; p++) {
        snprintf(name, sizeof name, "part_out[%d]", p);
        snprintf(lname, sizeof lname, "part_lse[%d]", p);
        if (!(p == 0 && attn__same_view(out, &part_out[0])) &&
            ((s = attn__check_disjoint(fn, "out", out, name, &part_out[p]))))
            return s;
        if ((s = attn__check_disjoint(fn, "out", out, lname, &part_lse[p]))) return s;
        if (lse) {
            if (!(p == 0 && attn__same_view(lse, &part_lse[0])) &&
                (s = attn__check_disjoint(fn, "lse", lse, lname, &part_lse[p])))
                return s;
            if ((s = attn__check_disjoint(fn, "lse", lse, name, &part_out[p]))) return s;
        }
    }
    if (lse && (s = attn__check_disjoint(fn, "lse", lse, "out", out))) return s;

    const int64_t B = out->shape[0], H = out->shape[1], Nq = out->shape[2], dv = out->shape[3];
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Nq; i++) {
                double m = -INFINITY;
                int has_nan = 0;
                for (int p = 0; p < n_parts; p++) {
                    double l = *attn__at3(&part_lse[p], b, h, i);
                    has_nan |= isnan(l);
                    if (l > m) m = l;
                }
                if (has_nan) m = NAN;
                if (m == -INFINITY) { /* no part saw a key */
                    for (int64_t f = 0; f < dv; f++)
                        *attn__at4(out, b, h, i, f) = 0.0f;
                    if (lse) *attn__at3(lse, b, h, i) = -INFINITY;
                    continue;
                }
                double wsum = 0.0;
                for (int p = 0; p < n_parts; p++) {
                    double l = *attn__at3(&part_lse[p], b, h, i);
                    if (l != -INFINITY) wsum += exp(l - m);
                }
                for (int64_t f = 0; f < dv; f++) {
                    double acc = 0.0;
                    for (int p = 0; p < n_parts; p++) {
                        double l = *attn__at3(&part_lse[p], b, h, i);
                        if (l != -INFINITY)
                            acc += exp(l - m) * *attn__at4(&part_out[p], b, h, i, f);
                    }
                    *attn__at4(out, b, h, i, f) = (float)(acc / wsum);
                }
                if (lse) *attn__at3(lse, b, h, i) = (float)(m + log(wsum));
            }
    return ATTN_OK;
}
