/* kernels/softmax_generic.c - scale/hide/max, the online-softmax step and
 * the exponential, in portable C. Same operations per element as the SIMD
 * versions (see kernels.h). */
#include "kernels/impl.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

float attn__expf_generic(float x) {
    if (x != x) return x;
    if (x < ATTN_EXP_LO) return 0.0f;
    if (x > ATTN_EXP_HI) x = ATTN_EXP_HI;
    const float n = nearbyintf(x * ATTN_EXP_LOG2E); /* |n| <= 127 */
    /* Multiply, then add, as the other generic kernels (n * C1 is exact). */
    float r = x - n * ATTN_EXP_C1;
    r = r - n * ATTN_EXP_C2;
    float p = ATTN_EXP_P0;
    p = p * r + ATTN_EXP_P1;
    p = p * r + ATTN_EXP_P2;
    p = p * r + ATTN_EXP_P3;
    p = p * r + ATTN_EXP_P4;
    p = p * r + ATTN_EXP_P5;
    p = p * (r * r) + r;
    p = p + 1.0f;
    /* 2^n exactly, as the bits of a normal float (n in -126..127) */
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

void attn__exp_generic(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] = attn__expf_generic(x[i]);
}

float attn__tanhf_generic(float x) {
    x = ATTN_TANH_CLAMP < x ? ATTN_TANH_CLAMP : x; /* as MINPS/MAXPS: NaN stays */
    x = -ATTN_TANH_CLAMP > x ? -ATTN_TANH_CLAMP : x;
    const float z = x * x;
    float p = ATTN_TANH_P6;
    p = p * z + ATTN_TANH_P5;
    p = p * z + ATTN_TANH_P4;
    p = p * z + ATTN_TANH_P3;
    p = p * z + ATTN_TANH_P2;
    p = p * z + ATTN_TANH_P1;
    p = p * z + ATTN_TANH_P0;
    float q = ATTN_TANH_Q3;
    q = q * z + ATTN_TANH_Q2;
    q = q * z + ATTN_TANH_Q1;
    q = q * z + ATTN_TANH_Q0;
    return x * p / q;
}

/* One element of the scale step (kernels.h, attn__score_mod), multiply then
 * add as every generic kernel. */
static inline float modify(const attn__score_mod *mod, float x, int64_t r, int64_t c) {
    x = x * mod->scale;
    x = x * 0.0f + x; /* +-inf -> NaN */
    if (mod->softcap > 0.0f) x = mod->softcap * attn__tanhf_generic(x * mod->inv_softcap);
    if (mod->slope) {
        x = x - mod->slope[r] * fabsf(mod->dist0[r] - (float)c);
        x = x * 0.0f + x;
    }
    return x;
}

void attn__scale_max_generic(float *st, int64_t ldr, int64_t nk, const attn__score_mod *mod,
                             const int32_t *lo, const int32_t *hi, float *bmax) {
    for (int64_t r = 0; r < ldr; r++)
        bmax[r] = -INFINITY;
    const bool plain = mod->softcap == 0.0f && !mod->slope;
    for (int64_t c = 0; c < nk; c++) {
        float *sc = st + c * ldr;
        if (plain) { /* the common case, kept simple so that it vectorises */
            for (int64_t r = 0; r < ldr; r++) {
                float s = sc[r] * mod->scale;
                s = s * 0.0f + s;
                s = (!lo || c >= lo[r]) && c < hi[r] ? s : -INFINITY;
                sc[r] = s;
                bmax[r] = s > bmax[r] ? s : bmax[r];
            }
            continue;
        }
        for (int64_t r = 0; r < ldr; r++) {
            const float s = (!lo || c >= lo[r]) && c < hi[r] ? modify(mod, sc[r], r, c) : -INFINITY;
            sc[r] = s;
            bmax[r] = s > bmax[r] ? s : bmax[r];
        }
    }
}

void attn__softmax_generic(float *st, int64_t ldr, int64_t nk, const float *bmax, float *m,
                           float *l, float *alpha) {
    for (int64_t r = 0; r < ldr; r++) {
        /* NaN scores: m may or may not become NaN; the output is NaN either way. */
        const float mn = bmax[r] > m[r] ? bmax[r] : m[r];
        const float ms = mn == -INFINITY ? 0.0f : mn;
        alpha[r] = attn__expf_generic(m[r] - ms);
        float sum = l[r] * alpha[r];
        for (int64_t c = 0; c < nk; c++) {
            const float p = attn__expf_generic(st[c * ldr + r] - ms);
            st[c * ldr + r] = p;
            sum = sum + p;
        }
        l[r] = sum;
        m[r] = mn;
    }
}
