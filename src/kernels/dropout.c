/* kernels/dropout.c - see dropout.h: portable C, AVX2, and AVX-512 F + DQ. */
#include "kernels/dropout.h"

#include "attn.h"
#include "dropout_hash.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512DQ __attribute__((target("avx512f,avx512dq")))

/* mix64 of 8 lanes, as attn__mix64. */
AVX512DQ static inline __m512i mix8(__m512i z) {
    z = _mm512_add_epi64(z, _mm512_set1_epi64((long long)0x9E3779B97F4A7C15ull));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)),
                           _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ull));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)),
                           _mm512_set1_epi64((long long)0x94D049BB133111EBull));
    return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

/* keep mask of 8 lanes: (mix(z) >> 40) >= threshold */
AVX512DQ static inline __mmask8 keep8(__m512i z, __m512i thr) {
    return _mm512_cmpge_epu64_mask(_mm512_srli_epi64(mix8(z), 40), thr);
}

/* NV vectors of 8 rows at once: the mixes are chains of dependent
 * multiplies, so independent chains side by side keep the units busy. */
AVX512DQ __attribute__((always_inline)) static inline void
rows_n(float *p, const uint64_t *row, __m512i jj, __m512i thr, __m512 sc, const int NV) {
    __m512i z[8];
    for (int v = 0; v < NV; v++)
        z[v] = _mm512_xor_si512(_mm512_loadu_si512(row + 8 * v), jj);
    for (int v = 0; v < NV; v++)
        z[v] = _mm512_add_epi64(z[v], _mm512_set1_epi64((long long)0x9E3779B97F4A7C15ull));
    for (int v = 0; v < NV; v++)
        z[v] = _mm512_mullo_epi64(_mm512_xor_si512(z[v], _mm512_srli_epi64(z[v], 30)),
                                  _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ull));
    for (int v = 0; v < NV; v++)
        z[v] = _mm512_mullo_epi64(_mm512_xor_si512(z[v], _mm512_srli_epi64(z[v], 27)),
                                  _mm512_set1_epi64((long long)0x94D049BB133111EBull));
    /* mix64 ends with z ^= z >> 31, which leaves bits 33..63 alone, and only
     * u = z >> 40 is used: so u >= t iff (z before that step) >= t << 40. */
    for (int v = 0; v < NV; v += 2) {
        const __mmask8 k0 = _mm512_cmpge_epu64_mask(z[v], thr);
        const __mmask8 k1 = _mm512_cmpge_epu64_mask(z[v + 1], thr);
        const __mmask16 k = (__mmask16)(k0 | ((unsigned)k1 << 8));
        float *pv = p + 8 * v;
        _mm512_storeu_ps(pv, _mm512_maskz_mul_ps(k, _mm512_loadu_ps(pv), sc));
    }
}

AVX512DQ static void rows_avx512(float *p, const uint64_t *row, int64_t n, int64_t j,
                                 uint32_t threshold, float scale) {
    const __m512i jj = _mm512_set1_epi64(j);
    const __m512i thr = _mm512_set1_epi64((long long)((uint64_t)threshold << 40));
    const __m512 sc = _mm512_set1_ps(scale);
    int64_t r = 0;
    for (; r + 64 <= n; r += 64)
        rows_n(p + r, row + r, jj, thr, sc, 8);
    for (; r + 16 <= n; r += 16)
        rows_n(p + r, row + r, jj, thr, sc, 2);
    for (; r < n; r++)
        p[r] = attn__dropout_keep_at(row[r], j, threshold) ? p[r] * scale : 0.0f;
}

AVX512DQ static void keys_avx512(float *p, uint64_t row, int64_t n, int64_t j0, uint32_t threshold,
                                 float scale) {
    const __m512i rr = _mm512_set1_epi64((long long)row), thr = _mm512_set1_epi64(threshold);
    const __m512i step = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512 sc = _mm512_set1_ps(scale);
    int64_t c = 0;
    for (; c + 16 <= n; c += 16) {
        const __m512i j = _mm512_add_epi64(_mm512_set1_epi64(j0 + c), step);
        const __mmask8 k0 = keep8(_mm512_xor_si512(rr, j), thr);
        const __mmask8 k1 =
            keep8(_mm512_xor_si512(rr, _mm512_add_epi64(j, _mm512_set1_epi64(8))), thr);
        const __mmask16 k = (__mmask16)(k0 | ((unsigned)k1 << 8));
        _mm512_storeu_ps(p + c, _mm512_maskz_mul_ps(k, _mm512_loadu_ps(p + c), sc));
    }
    for (; c < n; c++)
        p[c] = attn__dropout_keep_at(row, j0 + c, threshold) ? p[c] * scale : 0.0f;
}

AVX512DQ static void row_hashes_avx512(uint64_t bh, const int64_t *h, const int64_t *i, int64_t n,
                                       uint64_t *out) {
    const __m512i c = _mm512_set1_epi64((long long)bh);
    int64_t r = 0;
    for (; r + 8 <= n; r += 8) {
        __m512i z = mix8(_mm512_xor_si512(c, _mm512_loadu_si512(h + r)));
        z = mix8(_mm512_xor_si512(z, _mm512_loadu_si512(i + r)));
        _mm512_storeu_si512(out + r, z);
    }
    for (; r < n; r++)
        out[r] = attn__mix64(attn__mix64(bh ^ (uint64_t)h[r]) ^ (uint64_t)i[r]);
}

static int use_avx512(void) {
    return attn_get_isa() == ATTN_ISA_AVX512 && __builtin_cpu_supports("avx512dq");
}

/* ---- AVX2: 4 lanes of 64 bits, the 64-bit multiply from 32-bit ones ------ */

#define AVX2 __attribute__((target("avx2")))

/* a * b mod 2^64 per lane: lo(a) lo(b) + (hi(a) lo(b) + lo(a) hi(b)) << 32. */
AVX2 static inline __m256i mul64(__m256i a, __m256i b, __m256i b_hi) {
    const __m256i cross =
        _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b), _mm256_mul_epu32(a, b_hi));
    return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}

/* All ones in the lanes kept: mix64(z) >> 40 >= threshold, i.e. (mix64's
 * last step leaves bits 33..63 alone) z before that step >= t = threshold
 * << 40, as unsigned: z ^ 2^63 > (t - 1) ^ 2^63 signed (t > 0 here). */
AVX2 static inline __m256i keep4(__m256i z, __m256i t1_flipped) {
    const __m256i m1 = _mm256_set1_epi64x((long long)0xBF58476D1CE4E5B9ull);
    const __m256i m2 = _mm256_set1_epi64x((long long)0x94D049BB133111EBull);
    z = _mm256_add_epi64(z, _mm256_set1_epi64x((long long)0x9E3779B97F4A7C15ull));
    z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), m1, _mm256_srli_epi64(m1, 32));
    z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), m2, _mm256_srli_epi64(m2, 32));
    const __m256i sign = _mm256_set1_epi64x((long long)0x8000000000000000ull);
    return _mm256_cmpgt_epi64(_mm256_xor_si256(z, sign), t1_flipped);
}

/* Two 4-lane 64-bit masks as one 8-lane 32-bit mask, in order. */
AVX2 static inline __m256 mask8(__m256i k0, __m256i k1) {
    const __m256 lo = _mm256_shuffle_ps(_mm256_castsi256_ps(k0), _mm256_castsi256_ps(k1),
                                        _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(lo), _MM_SHUFFLE(3, 1, 2, 0)));
}

AVX2 static inline __m256i flipped_t1(uint32_t threshold) {
    return _mm256_set1_epi64x(
        (long long)((((uint64_t)threshold << 40) - 1) ^ 0x8000000000000000ull));
}

AVX2 static void rows_avx2(float *p, const uint64_t *row, int64_t n, int64_t j, uint32_t threshold,
                           float scale) {
    const __m256i jj = _mm256_set1_epi64x(j), t1 = flipped_t1(threshold);
    const __m256 sc = _mm256_set1_ps(scale);
    int64_t r = 0;
    for (; r + 8 <= n; r += 8) {
        const __m256i k0 =
            keep4(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(row + r)), jj), t1);
        const __m256i k1 =
            keep4(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(row + r + 4)), jj), t1);
        _mm256_storeu_ps(p + r,
                         _mm256_and_ps(mask8(k0, k1), _mm256_mul_ps(_mm256_loadu_ps(p + r), sc)));
    }
    for (; r < n; r++)
        p[r] = attn__dropout_keep_at(row[r], j, threshold) ? p[r] * scale : 0.0f;
}

AVX2 static void keys_avx2(float *p, uint64_t row, int64_t n, int64_t j0, uint32_t threshold,
                           float scale) {
    const __m256i rr = _mm256_set1_epi64x((long long)row), t1 = flipped_t1(threshold);
    const __m256i step = _mm256_setr_epi64x(0, 1, 2, 3), four = _mm256_set1_epi64x(4);
    const __m256 sc = _mm256_set1_ps(scale);
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        const __m256i j = _mm256_add_epi64(_mm256_set1_epi64x(j0 + c), step);
        const __m256i k0 = keep4(_mm256_xor_si256(rr, j), t1);
        const __m256i k1 = keep4(_mm256_xor_si256(rr, _mm256_add_epi64(j, four)), t1);
        _mm256_storeu_ps(p + c,
                         _mm256_and_ps(mask8(k0, k1), _mm256_mul_ps(_mm256_loadu_ps(p + c), sc)));
    }
    for (; c < n; c++)
        p[c] = attn__dropout_keep_at(row, j0 + c, threshold) ? p[c] * scale : 0.0f;
}

/* AVX2 when the selected ISA is avx2 (or avx512 without DQ); threshold 0
 * (p below 2^-24) keeps everything and takes the portable loop. */
static int use_avx2(uint32_t threshold) {
    const attn_isa isa = attn_get_isa();
    return threshold > 0 && (isa == ATTN_ISA_AVX2 || isa == ATTN_ISA_AVX512) &&
           __builtin_cpu_supports("avx2");
}
#endif

void attn__dropout_row_hashes(uint64_t seed, int64_t b, const int64_t *h, const int64_t *i,
                              int64_t n, uint64_t *out) {
    const uint64_t bh = attn__mix64(seed ^ (uint64_t)b); /* shared by the rows of batch b */
#if defined(__x86_64__)
    if (use_avx512()) {
        row_hashes_avx512(bh, h, i, n, out);
        return;
    }
#endif
    for (int64_t r = 0; r < n; r++)
        out[r] = attn__mix64(attn__mix64(bh ^ (uint64_t)h[r]) ^ (uint64_t)i[r]);
}

void attn__dropout_rows(float *p, int64_t ldp, int64_t nk, const uint64_t *row, int64_t n,
                        int64_t j0, uint32_t threshold, float scale) {
#if defined(__x86_64__)
    if (use_avx512()) {
        for (int64_t c = 0; c < nk; c++)
            rows_avx512(p + c * ldp, row, n, j0 + c, threshold, scale);
        return;
    }
    if (use_avx2(threshold)) {
        for (int64_t c = 0; c < nk; c++)
            rows_avx2(p + c * ldp, row, n, j0 + c, threshold, scale);
        return;
    }
#endif
    for (int64_t c = 0; c < nk; c++)
        for (int64_t r = 0; r < n; r++)
            p[c * ldp + r] =
                attn__dropout_keep_at(row[r], j0 + c, threshold) ? p[c * ldp + r] * scale : 0.0f;
}

void attn__dropout_keys(float *p, int64_t ldp, int64_t nr, const uint64_t *row, int64_t n,
                        int64_t j0, uint32_t threshold, float scale) {
#if defined(__x86_64__)
    if (use_avx512()) {
        for (int64_t r = 0; r < nr; r++)
            keys_avx512(p + r * ldp, row[r], n, j0, threshold, scale);
        return;
    }
    if (use_avx2(threshold)) {
        for (int64_t r = 0; r < nr; r++)
            keys_avx2(p + r * ldp, row[r], n, j0, threshold, scale);
        return;
    }
#endif
    for (int64_t r = 0; r < nr; r++)
        for (int64_t c = 0; c < n; c++)
            p[r * ldp + c] =
                attn__dropout_keep_at(row[r], j0 + c, threshold) ? p[r * ldp + c] * scale : 0.0f;
}
