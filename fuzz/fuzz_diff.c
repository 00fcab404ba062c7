/* fuzz_diff.c - differential fuzzing: ATTN_ALGO_FLASH against the reference.
 *
 * The input chooses a small problem (B, H, Hkv, Nq, Nkv, d, dv up to a few
 * key chunks), its layout (transposed k or v, strided q and out), options
 * (scale, causal rule, a broadcast mask with -inf entries, key lengths, lse),
 * the instruction set, and a seed for the values. Keys beyond a batch's key
 * length hold NaN: they must not reach either result.
 *
 * Both algorithms must return the same status; on success every output
 * element must agree within
 *   |flash - ref| <= max|v| * (2e-5 + 16 * smax * 2^-24)
 * where smax bounds |score| (|scale| * d * max|q| * max|k| + max|mask|), and
 * lse within (1 + |lse|) * 2e-5 + 16 * smax * 2^-24; rows with no visible key
 * must be exactly 0 with lse -inf in both. Optionally one element of q or of
 * the mask is NaN: the same elements must come out NaN in both. The last
 * bytes turn on the score modifiers (window, softcap, ALiBi slopes, sinks,
 * explicit positions); smax then adds the largest ALiBi bias, softcap bounds
 * the score, and a row with no visible key has lse = its sink. */
#include "attn.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n, i;
} diff_reader;

static uint8_t diff_u8(diff_reader *r) {
    return r->i < r->n ? r->p[r->i++] : 0;
}

static uint64_t rng;
static float urand(float amp) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return amp * (float)((double)(z >> 40) / 8388608.0 - 1.0);
}

/* A rank-4 view over a fresh buffer with the dimension order perm (the
 * storage order), and an extra gap `pad` after the innermost dimension. */
static attn_view make(const int64_t shape[4], const int perm[4], int64_t pad, float **buf,
                      int64_t *len) {
    attn_view v = {0};
    v.ndim = 4;
    int64_t st = 1 + pad;
    for (int k = 3; k >= 0; k--) {
        const int dim = perm[k];
        v.shape[dim] = shape[dim];
        v.stride[dim] = st;
        st *= shape[dim];
    }
    for (int i = 0; i < 4; i++)
        v.shape[i] = shape[i];
    *len = st;
    *buf = malloc((size_t)st * sizeof(float));
    v.data = *buf;
    return v;
}

static float *at(const attn_view *v, int64_t a, int64_t b, int64_t c, int64_t d) {
    return v->data + a * v->stride[0] + b * v->stride[1] + c * v->stride[2] + d * v->stride[3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    diff_reader r = {data, size, 0};
    const int64_t B = 1 + diff_u8(&r) % 2, Hkv = 1 + diff_u8(&r) % 3, G = 1 + diff_u8(&r) % 3,
                  H = Hkv * G;
    const uint8_t nqb = diff_u8(&r), nkb = diff_u8(&r);
    int64_t Nq = 1 + nqb % 24, Nkv = 1 + nkb % 80;
    if (nqb >= 200) Nq = 1 + (int64_t)(nqb - 200) * 3;    /* up to 166 */
    if (nkb >= 180) Nkv = 60 + (int64_t)(nkb - 180) * 15; /* up to 1200: several chunks */
    const int64_t d = 1 + diff_u8(&r) % 40, dv = 1 + diff_u8(&r) % 40;
    while (B * H * Nq * Nkv * (d + dv) > 400000 && Nq > 1)
        Nq /= 2;
    const uint8_t layout = diff_u8(&r), optb = diff_u8(&r), maskb = diff_u8(&r);
    rng = 0;
    for (int k = 0; k < 8; k++)
        rng = rng << 8 | diff_u8(&r);
    const float amps[4] = {0.5f, 1.0f, 2.0f, 6.0f};
    const float amp = amps[diff_u8(&r) % 4];
    const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    const attn_isa isa = isas[diff_u8(&r) % 3];
    if (!attn_isa_supported(isa)) return 0;
    attn_set_isa(isa);

    static const int perms[4][4] = {{0, 1, 2, 3}, {0, 1, 3, 2}, {2, 0, 1, 3}, {1, 0, 3, 2}};
    const int64_t sq[4] = {B, H, Nq, d}, sk[4] = {B, Hkv, Nkv, d}, sv[4] = {B, Hkv, Nkv, dv};
    const int64_t so[4] = {B, H, Nq, dv};
    float *qb, *kb, *vb, *o1b, *o2b, *mb = NULL;
    int64_t nq, nk, nv, no, nm;
    attn_view q = make(sq, perms[layout % 4], (layout >> 2) & 1, &qb, &nq);
    attn_view k = make(sk, perms[(layout >> 3) % 4], 0, &kb, &nk);
    attn_view v = make(sv, perms[(layout >> 5) % 4], (layout >> 7) & 1, &vb, &nv);
    attn_view o1 = make(so, perms[(layout >> 1) % 2 ? 2 : 0], 0, &o1b, &no);
    attn_view o2 = o1;
    o2b = malloc((size_t)no * sizeof(float));
    o2.data = o2b;
    for (int64_t x = 0; x < nq; x++)
        qb[x] = urand(amp);
    for (int64_t x = 0; x < nk; x++)
        kb[x] = urand(amp);
    for (int64_t x = 0; x < nv; x++)
        vb[x] = urand(1.0f);
    for (int64_t x = 0; x < no; x++)
        o1b[x] = o2b[x] = 777.0f;

    attn_opts o = attn_opts_default();
    static const float scales[4] = {NAN, 1.0f, 0.05f, -0.3f};
    o.scale = scales[optb % 4];
    o.causal = (attn_causal)((optb >> 2) % 3);
    o.num_threads = 1 + (optb >> 4) % 3;
    float *l1 = malloc((size_t)(B * H * Nq) * sizeof(float));
    float *l2 = malloc((size_t)(B * H * Nq) * sizeof(float));
    attn_view lv1 = {l1, 3, {B, H, Nq}, {H * Nq, Nq, 1}}, lv2 = lv1;
    lv2.data = l2;
    int64_t kl[2] = {Nkv, Nkv};
    if (optb & 0x80) {
        kl[0] = diff_u8(&r) % (Nkv + 1);
        kl[1] = diff_u8(&r) % (Nkv + 1);
        o.key_lengths = kl;
        /* Keys past the length are never seen: poison them. */
        for (int64_t b = 0; b < B; b++)
            for (int64_t g = 0; g < Hkv; g++)
                for (int64_t j = kl[b]; j < Nkv; j++) {
                    for (int64_t e = 0; e < d; e++)
                        *at(&k, b, g, j, e) = NAN;
                    for (int64_t f = 0; f < dv; f++)
                        *at(&v, b, g, j, f) = (f & 1) ? INFINITY : NAN;
                }
    }
    attn_view mv;
    float mmax = 0.0f;
    if (maskb & 1) {
        const int64_t sm[4] = {(maskb & 2) ? B : 1, (maskb & 4) ? H : 1, (maskb & 8) ? Nq : 1,
                               (maskb & 16) ? Nkv : 1};
        static const int ident[4] = {0, 1, 2, 3};
        mv = make(sm, ident, 0, &mb, &nm);
        const int hide = (maskb >> 5); /* 0..7: eighths of the entries hidden */
        for (int64_t x = 0; x < nm; x++) {
            mb[x] = urand(2.0f);
            if (urand(1.0f) * 0.5f + 0.5f < (float)hide / 8.0f) mb[x] = -INFINITY;
        }
        mmax = 2.0f;
        o.mask = &mv;
    }
    /* NaN in a visible input must propagate the same way in both paths. */
    const uint8_t poison = diff_u8(&r);
    if (poison >= 224) {
        const int64_t x = (int64_t)diff_u8(&r) * 131 % nq;
        qb[x] = NAN;
    }
    if (mb && poison >= 160 && poison < 224) {
        const int64_t x = (int64_t)diff_u8(&r) * 131 % nm;
        mb[x] = NAN;
    }
    /* Score modifiers (read last, so older inputs replay unchanged). */
    const uint8_t modb = diff_u8(&r);
    float slopes[9], sinks[9];
    int64_t qoff[2];
    double bias_max = 0.0;
    if (modb) {
        static const int64_t wins[8] = {-1, -1, 0, 1, 3, 17, 70, 600};
        static const float caps[4] = {0.0f, 1.0f, 5.0f, 30.0f};
        o.window_left = wins[modb % 8];
        o.window_right = wins[(modb >> 3) % 8];
        o.softcap = caps[diff_u8(&r) % 4];
        const uint8_t more = diff_u8(&r);
        for (int64_t h = 0; h < H; h++) {
            slopes[h] = (urand(1.0f) + 1.0f) * 0.05f;
            sinks[h] = urand(5.0f);
        }
        if (more & 1) o.alibi_slopes = slopes;
        if (more & 2) o.sinks = sinks;
        if (more & 4) {
            qoff[0] = (int64_t)diff_u8(&r) - 40;
            qoff[1] = (int64_t)diff_u8(&r) - 40;
            o.q_offset = qoff;
            o.k_offset = (int64_t)(more >> 4) - 8;
        }
        if (o.alibi_slopes) bias_max = 0.1 * (double)(Nkv + Nq + 300);
    }
    const double sc = isnan(o.scale) ? 1.0 / sqrt((double)d) : fabs((double)o.scale);
    double smax = sc * (double)d * amp * amp;
    if (o.softcap > 0.0f && smax > o.softcap) smax = o.softcap;
    smax += bias_max + mmax;

    o.lse = &lv1;
    o.algo = ATTN_ALGO_REFERENCE;
    attn_status s1 = attn_sdpa(&q, &k, &v, &o1, &o);
    o.lse = &lv2;
    o.algo = ATTN_ALGO_FLASH;
    attn_status s2 = attn_sdpa(&q, &k, &v, &o2, &o);
    if (s1 != s2) {
        fprintf(stderr, "status: reference %s, flash %s: %s\n", attn_status_string(s1),
                attn_status_string(s2), attn_last_error());
        abort();
    }
    if (s1 == ATTN_OK) {
        const double tol = 2e-5 + 16.0 * smax * ldexp(1.0, -24);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < Nq; i++) {
                    const float a1 = l1[(b * H + h) * Nq + i], a2 = l2[(b * H + h) * Nq + i];
                    const int empty = a1 == -INFINITY;
                    if (empty != (a2 == -INFINITY) || isnan(a1) != isnan(a2) ||
                        (!empty && !isnan(a1) &&
                         !(fabs((double)a1 - a2) <= tol * (1.0 + fabs((double)a1))))) {
                        fprintf(stderr, "lse[%lld,%lld,%lld]: reference %.9g flash %.9g (tol %g)\n",
                                (long long)b, (long long)h, (long long)i, a1, a2, tol);
                        abort();
                    }
                    for (int64_t f = 0; f < dv; f++) {
                        const float x1 = *at(&o1, b, h, i, f), x2 = *at(&o2, b, h, i, f);
                        const int bad = empty                    ? (x1 != 0.0f || x2 != 0.0f)
                                        : isnan(x1) || isnan(x2) ? isnan(x1) != isnan(x2)
                                                                 : !(fabs((double)x1 - x2) <= tol);
                        if (bad) {
                            fprintf(stderr,
                                    "out[%lld,%lld,%lld,%lld]: reference %.9g flash %.9g "
                                    "(tol %g) B=%lld H=%lld Hkv=%lld Nq=%lld Nkv=%lld d=%lld "
                                    "dv=%lld\n",
                                    (long long)b, (long long)h, (long long)i, (long long)f, x1, x2,
                                    tol, (long long)B, (long long)H, (long long)Hkv, (long long)Nq,
                                    (long long)Nkv, (long long)d, (long long)dv);
                            abort();
                        }
                    }
                }
    }
    free(qb), free(kb), free(vb), free(o1b), free(o2b), free(mb), free(l1), free(l2);
    return 0;
}
