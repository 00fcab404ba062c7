/* grad_util.c - see grad_util.h. */
#include "grad_util.h"

#include <inttypes.h>

attn_status attn__grad_check_like(const char *fn, const char *name, const attn_view *g,
                                  const char *ref_name, const attn_view *ref) {
    attn_status s = attn__check_view(fn, name, g, ref->ndim);
    if (s) return s;
    for (int i = 0; i < ref->ndim; i++)
        if (g->shape[i] != ref->shape[i])
            return attn__fail(ATTN_ERR_SHAPE,
                              "%s: %s.shape[%d]=%" PRId64 " but %s.shape[%d]=%" PRId64
                              " (a gradient has its variable's shape)",
                              fn, name, i, g->shape[i], ref_name, i, ref->shape[i]);
    return ATTN_OK;
}

attn_status attn__grad_check_outputs(const char *fn, attn_view *const *outs,
                                     const char *const *out_names, int n_out,
                                     const attn_view *const *ins, const char *const *in_names,
                                     int n_in) {
    attn_status s;
    for (int a = 0; a < n_out; a++) {
        if (!outs[a]) continue;
        if ((s = attn__check_output(fn, out_names[a], outs[a]))) return s;
        for (int b = 0; b < n_in; b++)
            if (ins[b] && ins[b]->data &&
                (s = attn__check_disjoint(fn, out_names[a], outs[a], in_names[b], ins[b])))
                return s;
        for (int b = 0; b < a; b++)
            if (outs[b] &&
                (s = attn__check_disjoint(fn, out_names[a], outs[a], out_names[b], outs[b])))
                return s;
    }
    return ATTN_OK;
}

void attn__grad_rows(const attn_view *v, float *dst) {
    const attn_view v4 = attn__as4(v);
    int64_t n = 0;
    for (int64_t a = 0; a < v4.shape[0]; a++)
        for (int64_t b = 0; b < v4.shape[1]; b++)
            for (int64_t c = 0; c < v4.shape[2]; c++) {
                const float *r = attn__at4(&v4, a, b, c, 0);
                for (int64_t e = 0; e < v4.shape[3]; e++)
                    dst[n++] = r[e * v4.stride[3]];
            }
}

void attn__grad_store_rows(const float *src, attn_view *v) {
    const attn_view v4 = attn__as4(v);
    int64_t n = 0;
    for (int64_t a = 0; a < v4.shape[0]; a++)
        for (int64_t b = 0; b < v4.shape[1]; b++)
            for (int64_t c = 0; c < v4.shape[2]; c++) {
                float *r = attn__at4(&v4, a, b, c, 0);
                for (int64_t e = 0; e < v4.shape[3]; e++)
                    r[e * v4.stride[3]] = src[n++];
            }
}

void attn__grad_colsum(const float *g, int64_t rows, int64_t cols, attn_view *db) {
    for (int64_t o = 0; o < cols; o++) {
        double s = 0.0;
        for (int64_t n = 0; n < rows; n++)
            s += (double)g[n * cols + o];
        db->data[o * db->stride[0]] = (float)s;
    }
}
