/* test_kernels.c - the SIMD micro-kernels of src/kernels/, for every ISA the
 * machine runs:
 *   - exp within 2 ulp of exp (computed in double) on [-87.3, 0], densely
 *     sampled (every float in [-1, 0] whose bits are a multiple of 7, and a
 *     stride through the bit patterns of the whole range), 0 below -87.34
 *     and for -inf, NaN kept, exp(0) = 1 exactly;
 *   - the score kernel gives the same bits for a row whether the tile has
 *     1..9 rows (keys across lanes, decode) or 64 (rows across lanes), and
 *     equals a chain of the table's multiply-add over e;
 *   - the pv kernel gives the same bits for a row alone and in a tile;
 *   - an online-softmax step over a block hidden from a row leaves that
 *     row's max and sum exactly unchanged (alpha = 1, p = 0);
 *   - the scale step (visibility range, NaN for a non-finite scaled score,
 *     softcap, ALiBi) equals its per-element definition with the table's
 *     madd (the SIMD softcap within its bound), a row's bits do not depend
 *     on its lane or tile, and its tanh is within 5 x 2^-24 of tanh. */
#include "testutil.h"

#include "kernels/kernels.h"

static int quick(void) {
    return getenv("ATTN_TEST_QUICK") != NULL;
}

/* The kernels want qt, st and p 64-byte aligned, as the flash path gives them. */
static float *aligned_rand(int64_t n, float lo, float hi) {
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64));
    for (int64_t i = 0; i < n; i++)
        p[i] = tu_uniform(lo, hi);
    return p;
}

/* |y - exact| in units of the float spacing at exact. */
static double ulp_error(float y, double exact) {
    int ex;
    frexp(exact, &ex);                      /* exact = m 2^ex, m in [0.5, 1) */
    const double ulp = ldexp(1.0, ex - 24); /* spacing of floats in [2^(ex-1), 2^ex) */
    return fabs((double)y - exact) / ulp;
}

static void test_exp(const attn__kernels *kr) {
    enum { BATCH = 4096 };
    static float x[BATCH], y[BATCH];
    double worst = 0.0;
    float worst_x = 0.0f;
    int n = 0;
    /* bits of -0.0 .. -87.3 run from 0x80000000 up to bits(-87.3f) */
    uint32_t lo_bits;
    const float lo = -87.3f;
    memcpy(&lo_bits, &lo, sizeof lo_bits);
    uint32_t one_bits;
    const float mone = -1.0f;
    memcpy(&one_bits, &mone, sizeof one_bits);
    const uint32_t stride = quick() ? 997 : 61;
    int64_t tested = 0;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: every 7th float in [-1, 0]; pass 1: the whole range */
        const uint32_t end = pass == 0 ? one_bits : lo_bits;
        const uint32_t step = pass == 0 ? (quick() ? 101 : 7) : stride;
        for (uint32_t b = 0x80000000u; b <= end; b += step) {
            memcpy(&x[n], &b, sizeof b);
            if (++n == BATCH || b + step > end) {
                kr->exp(y, x, n);
                for (int i = 0; i < n; i++) {
                    const double e = ulp_error(y[i], exp((double)x[i]));
                    if (e > worst) {
                        worst = e;
                        worst_x = x[i];
                    }
                }
                tested += n;
                n = 0;
            }
            if (b > 0xFFFFFFFFu - step) break;
        }
    }
    CHECK(worst <= 2.0, "%s exp: %.3f ulp at x = %.9g (%lld points)", kr->name, worst,
          (double)worst_x, (long long)tested);
    printf("test_kernels: %s exp: max error %.3f ulp over %lld points in [-87.3, 0]\n", kr->name,
           worst, (long long)tested);

    float sx[8] = {-INFINITY, -87.34f, -100.0f, -1e30f, NAN, 0.0f, -0.0f, -87.3f}, sy[8];
    kr->exp(sy, sx, 8);
    CHECK(sy[0] == 0.0f && sy[1] == 0.0f && sy[2] == 0.0f && sy[3] == 0.0f,
          "%s exp: -inf and below -87.336 give 0 (%g %g %g %g)", kr->name, (double)sy[0],
          (double)sy[1], (double)sy[2], (double)sy[3]);
    CHECK(isnan(sy[4]), "%s exp(NaN) = %g", kr->name, (double)sy[4]);
    CHECK(sy[5] == 1.0f && sy[6] == 1.0f, "%s exp(0) = %.9g", kr->name, (double)sy[5]);
    CHECK(sy[7] > 0.0f && ulp_error(sy[7], exp((double)sx[7])) <= 2.0, "%s exp(-87.3) = %g",
          kr->name, (double)sy[7]);
}

/* Scores of row r computed in a tile of nr rows equal those of the row
 * alone (nr = 1, the decode layout) and an explicit chain of kr->madd. */
static void test_score(const attn__kernels *kr) {
    const int64_t ds[] = {1, 3, 16, 17, 40, 64, 72, 128, 256};
    for (size_t di = 0; di < sizeof ds / sizeof ds[0]; di++) {
        const int64_t d = ds[di], nk = 37, ks = d + 3, ldr = 64;
        float *qt = aligned_rand(d * ldr, -1, 1), *k = tu_rand(nk * ks, -1, 1);
        float *st = aligned_rand(nk * ldr, 0, 0), *st1 = aligned_rand(nk * 16, 0, 0),
              *qt1 = aligned_rand(d * 16, 0, 0);
        kr->score(st, qt, ldr, k, ks, nk, 64, d);
        int same = 1, chain = 1;
        /* tiles of nr = 1..9 rows (the few-row kernels take up to 4 or 8) */
        for (int64_t nr = 1; nr <= 9; nr++)
            for (int64_t r0 = 0; r0 + nr <= 64; r0 += 13) {
                for (int64_t e = 0; e < d; e++)
                    for (int64_t r = 0; r < 16; r++)
                        qt1[e * 16 + r] = r < nr ? qt[e * ldr + r0 + r] : 0.0f;
                kr->score(st1, qt1, 16, k, ks, nk, nr, d);
                for (int64_t c = 0; c < nk; c++)
                    for (int64_t r = 0; r < nr; r++)
                        same &= memcmp(&st1[c * 16 + r], &st[c * ldr + r0 + r], sizeof(float)) == 0;
            }
        for (int64_t r = 0; r < 64; r += 7)
            for (int64_t c = 0; c < nk; c++) {
                float s = 0.0f;
                for (int64_t e = 0; e < d; e++)
                    s = kr->madd(qt[e * ldr + r], k[c * ks + e], s);
                chain &= memcmp(&s, &st[c * ldr + r], sizeof(float)) == 0;
            }
        CHECK(same && chain, "%s score d=%lld: rows in small tiles %s, fma chain %s", kr->name,
              (long long)d, same ? "same" : "DIFFERS", chain ? "same" : "DIFFERS");
        free(qt), free(k), free(st), free(st1), free(qt1);
    }
}

/* pv: a row alone (nr = 1) and inside tiles of 2, 3, 7 and 13 rows. */
static void test_pv(const attn__kernels *kr) {
    const int64_t dvs[] = {1, 15, 40, 64, 72, 80, 128, 200, 256};
    for (size_t di = 0; di < sizeof dvs / sizeof dvs[0]; di++) {
        const int64_t dv = dvs[di], ldo = (dv + 15) / 16 * 16, nk = 45, vs = dv + 5, ldr = 16;
        float *p = aligned_rand(nk * ldr, 0, 1), *v = tu_rand(nk * vs, -1, 1);
        float *o0 = tu_rand(13 * ldo, -1, 1), *alpha = tu_rand(16, 0, 1);
        const int64_t nrs[] = {2, 3, 7, 13};
        int same = 1;
        for (size_t ni = 0; ni < 4; ni++) {
            const int64_t nr = nrs[ni];
            float *o = tu_copy(o0, 13 * ldo);
            kr->pv(o, ldo, alpha, p, ldr, v, vs, nk, nr, dv);
            for (int64_t r = 0; r < nr; r++) {
                float *o1 = tu_copy(o0 + r * ldo, ldo);
                float *p1 = aligned_rand(45 * 16, 0, 0);
                for (int64_t c = 0; c < nk; c++)
                    p1[c * 16] = p[c * ldr + r];
                kr->pv(o1, ldo, alpha + r, p1, 16, v, vs, nk, 1, dv);
                same &= memcmp(o1, o + r * ldo, (size_t)dv * sizeof(float)) == 0;
                free(o1), free(p1);
            }
            free(o);
        }
        CHECK(same, "%s pv dv=%lld: a row alone differs from the row in a tile", kr->name,
              (long long)dv);
        free(p), free(v), free(o0), free(alpha);
    }
}

/* A block hidden from a row (scores -inf) is an exact no-op for its m, l. */
static void test_hidden_block(const attn__kernels *kr) {
    const int64_t ldr = 32, nk = 20;
    float *st = aligned_rand(nk * ldr, -3, 3), m[32], l[32], m0[32], l0[32], bmax[32], alpha[32];
    int32_t vlo[32], vhi[32];
    for (int r = 0; r < 32; r++) {
        vlo[r] = r % 3 == 0 ? (int32_t)(r % 7) : (int32_t)(r % 4); /* empty when r % 3 == 0 */
        vhi[r] = r % 3 == 0 ? vlo[r] : (int32_t)(r % nk);
        if (vhi[r] < vlo[r]) vhi[r] = vlo[r];
        m[r] = m0[r] = r % 5 == 0 ? -INFINITY : tu_uniform(-2, 2);
        l[r] = l0[r] = m[r] == -INFINITY ? 0.0f : tu_uniform(1, 5);
    }
    const attn__score_mod mod = {0.7f, 0.0f, 0.0f, NULL, NULL};
    kr->scale_max(st, ldr, nk, &mod, vlo, vhi, bmax);
    kr->softmax(st, ldr, nk, bmax, m, l, alpha);
    int ok = 1;
    for (int r = 0; r < 32; r++) {
        if (vhi[r] > vlo[r]) continue;
        ok &=
            memcmp(&m[r], &m0[r], sizeof(float)) == 0 && memcmp(&l[r], &l0[r], sizeof(float)) == 0;
        ok &= m0[r] == -INFINITY ? alpha[r] == 0.0f : alpha[r] == 1.0f;
        for (int64_t c = 0; c < nk; c++)
            ok &= st[c * ldr + r] == 0.0f;
    }
    CHECK(ok, "%s: a hidden block changed a row's max or sum", kr->name);
    free(st);
}

/* The scale step per element, written out with the table's own madd. The
 * softcap's tanh is the generic one (attn__tanhf_generic): the generic
 * kernels must give these bits exactly; the SIMD ones evaluate its
 * polynomials with fused multiply-adds, so theirs are checked within the
 * tanh's bound. */
static float scale_one(const attn__kernels *kr, const attn__score_mod *mod, float x, int64_t r,
                       int64_t c) {
    x = x * mod->scale;
    x = kr->madd(x, 0.0f, x);
    if (mod->softcap > 0.0f) x = mod->softcap * attn__tanhf_generic(x * mod->inv_softcap);
    if (mod->slope) {
        x = kr->madd(-mod->slope[r], fabsf(mod->dist0[r] - (float)c), x);
        x = kr->madd(x, 0.0f, x);
    }
    return x;
}

/* The scale step: visibility ranges, the NaN rule for non-finite scaled
 * scores, softcap and ALiBi per element as scale_one; tanh within a few
 * 2^-24 of tanh in double. */
static void test_scale_step(const attn__kernels *kr) {
    enum { LDR = 48, NK = 37 };
    float *st = aligned_rand(NK * LDR, -60, 60), *st0, bmax[LDR], slope[LDR], dist0[LDR];
    int32_t lo[LDR], hi[LDR];
    for (int r = 0; r < LDR; r++) {
        lo[r] = (int32_t)tu_int(0, NK);
        hi[r] = (int32_t)tu_int(lo[r], NK);
        slope[r] = tu_uniform(0, 2);
        dist0[r] = (float)tu_int(-100000, 100000);
    }
    st[3] = INFINITY, st[LDR + 5] = -INFINITY, st[2 * LDR + 7] = 1e38f, st[4] = NAN;
    st0 = tu_copy(st, NK * LDR);
    const float caps[] = {0.0f, 1.0f, 30.0f, 50.0f};
    for (int cap = 0; cap < 4; cap++)
        for (int al = 0; al < 2; al++) {
            const attn__score_mod mod = {cap == 2 ? 1e37f : 0.3f, caps[cap],
                                         caps[cap] > 0 ? 1.0f / caps[cap] : 0.0f, al ? slope : NULL,
                                         dist0};
            memcpy(st, st0, NK * LDR * sizeof(float));
            kr->scale_max(st, LDR, NK, &mod, lo, hi, bmax);
            int same = 1, nan_rule = 1;
            /* exact bits, or (SIMD softcap) within 6 x 2^-24 x softcap */
            const float tol =
                cap > 0 && strcmp(kr->name, "generic") != 0 ? 6.0f * caps[cap] / 16777216.0f : 0;
            for (int64_t r = 0; r < LDR; r++) {
                float mx = -INFINITY;
                for (int64_t c = 0; c < NK; c++) {
                    const float want = c >= lo[r] && c < hi[r]
                                           ? scale_one(kr, &mod, st0[c * LDR + r], r, c)
                                           : -INFINITY;
                    const float got = st[c * LDR + r];
                    same &= isnan(want) ? isnan(got) != 0
                            : tol == 0.0f
                                ? memcmp(&want, &got, sizeof got) == 0
                                : fabsf(want - got) <= tol || (isinf(want) && want == got);
                    if (c >= lo[r] && c < hi[r] && !isfinite(st0[c * LDR + r] * mod.scale))
                        nan_rule &= isnan(got);
                    mx = want > mx ? want : mx;
                }
                same &= isnan(bmax[r]) || tol > 0 || bmax[r] == mx;
            }
            /* each row alone, in lane 0 of a 16-lane tile: the same bits */
            float *one = aligned_rand(NK * 16, 0, 0), b1[16], sl1[16] = {0}, d1[16] = {0};
            int32_t l1[16] = {0}, h1[16] = {0};
            for (int64_t r = 0; r < LDR; r += 5) {
                for (int64_t c = 0; c < NK; c++)
                    one[c * 16] = st0[c * LDR + r];
                l1[0] = lo[r], h1[0] = hi[r], sl1[0] = slope[r], d1[0] = dist0[r];
                const attn__score_mod m1 = {mod.scale, mod.softcap, mod.inv_softcap,
                                            al ? sl1 : NULL, d1};
                kr->scale_max(one, 16, NK, &m1, l1, h1, b1);
                for (int64_t c = 0; c < NK; c++)
                    same &= memcmp(&one[c * 16], &st[c * LDR + r], sizeof(float)) == 0 ||
                            (isnan(one[c * 16]) && isnan(st[c * LDR + r]));
            }
            free(one);
            CHECK(same && nan_rule, "%s scale step (softcap %g, alibi %d): %s, NaN rule %s",
                  kr->name, (double)caps[cap], al, same ? "same" : "DIFFERS",
                  nan_rule ? "kept" : "BROKEN");
        }
    /* lo = NULL (no window) is lo = 0 for every row, bit for bit */
    int32_t zeros[LDR] = {0};
    float *a = aligned_rand(NK * LDR, 0, 0), *b = aligned_rand(NK * LDR, 0, 0), ba[LDR], bb[LDR];
    for (int al = 0; al < 2; al++) {
        const attn__score_mod mod = {0.3f, 0.0f, 0.0f, al ? slope : NULL, dist0};
        memcpy(a, st0, NK * LDR * sizeof(float));
        memcpy(b, st0, NK * LDR * sizeof(float));
        kr->scale_max(a, LDR, NK, &mod, zeros, hi, ba);
        kr->scale_max(b, LDR, NK, &mod, NULL, hi, bb);
        int same = 1;
        for (int x = 0; x < NK * LDR; x++)
            same &= memcmp(&a[x], &b[x], sizeof(float)) == 0 || (isnan(a[x]) && isnan(b[x]));
        for (int r = 0; r < LDR; r++)
            same &= memcmp(&ba[r], &bb[r], sizeof(float)) == 0 || (isnan(ba[r]) && isnan(bb[r]));
        CHECK(same, "%s scale step: lo = NULL differs from lo = 0 (alibi %d)", kr->name, al);
    }
    free(a), free(b);
    free(st), free(st0);

    /* tanh: softcap 1, scale 1, so st becomes tanh(st). Error in units of
     * 2^-24, absolute (the score error that matters after * softcap). */
    enum { N = 1 << 14 };
    float *y = aligned_rand(N, 0, 0), *t = aligned_rand(N, 0, 0);
    int32_t zl = 0, zh = 1;
    int32_t los[N], his[N];
    for (int i = 0; i < N; i++) {
        y[i] = i < N / 2 ? ldexpf(1.0f, -30 + i % 64) * tu_uniform(1, 2) * (i % 2 ? -1.0f : 1.0f)
                         : tu_uniform(-12, 12);
        los[i] = zl, his[i] = zh;
    }
    memcpy(t, y, N * sizeof(float));
    const attn__score_mod one = {1.0f, 1.0f, 1.0f, NULL, NULL};
    float *bm = aligned_rand(N, 0, 0);
    kr->scale_max(t, N, 1, &one, los, his, bm);
    double worst = 0;
    for (int i = 0; i < N; i++)
        worst = fmax(worst, fabs((double)t[i] - tanh((double)y[i])) / ldexp(1.0, -24));
    CHECK(worst <= 5.0, "%s tanh: %.2f x 2^-24 absolute", kr->name, worst);
    printf("test_kernels: %s tanh (softcap): max absolute error %.2f x 2^-24\n", kr->name, worst);
    float sp[16] = {INFINITY, -INFINITY, NAN, 50.0f, -50.0f, 0.0f, -0.0f, 1e-30f};
    int32_t l16[16] = {0}, h16[16];
    for (int i = 0; i < 16; i++)
        h16[i] = 1;
    float *s16 = aligned_rand(16, 0, 0), b16[16];
    memcpy(s16, sp, sizeof sp);
    const attn__score_mod capped = {1.0f, 1.0f, 1.0f, NULL, NULL};
    kr->scale_max(s16, 16, 1, &capped, l16, h16, b16);
    CHECK(isnan(s16[0]) && isnan(s16[1]) && isnan(s16[2]) && s16[3] == 1.0f && s16[4] == -1.0f &&
              s16[5] == 0.0f && s16[6] == 0.0f && signbit(s16[6]) && s16[7] <= 1e-29f,
          "%s softcap special values: %g %g %g %g %g %g %g %g", kr->name, s16[0], s16[1], s16[2],
          s16[3], s16[4], s16[5], s16[6], s16[7]);
    free(y), free(t), free(bm), free(s16);
}

int main(void) {
    const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    for (int s = 0; s < 3; s++) {
        if (!attn_isa_supported(isas[s])) {
            printf("test_kernels: %s not supported here, not tested\n", attn_isa_name(isas[s]));
            continue;
        }
        const attn__kernels *kr = attn__kernels_for(isas[s]);
        test_exp(kr);
        test_score(kr);
        test_pv(kr);
        test_hidden_block(kr);
        test_scale_step(kr);
    }
    return tu_summary("test_kernels");
}
