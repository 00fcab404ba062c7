/* blas_core.c - which kernels attn's private OpenBLAS runs (include/attn.h
 * "Threads", docs/threads.md "OpenBLAS on CPUs newer than itself").
 *
 * OpenBLAS picks its kernels once, from the CPU model, when it loads. A model
 * newer than the OpenBLAS release is not in its table, and 0.3.21 (Debian
 * 12's) then falls back to its oldest x86-64 kernels, "Prescott" (SSE3): on
 * an Emerald Rapids Xeon, SGEMM ran at 40 GFLOP/s there against 210 with the
 * SkylakeX kernels the CPU can run. With attn's private static copy (and only
 * then: a shared OpenBLAS belongs to the whole process), attn redoes that
 * choice from the CPU's features when it loads:
 *   - only if OpenBLAS chose Prescott and OPENBLAS_CORETYPE is not set (the
 *     user's choice always stands);
 *   - SkylakeX when the CPU and OS run AVX-512 F, CD, BW, DQ and VL, else
 *     Haswell when they run AVX2 and FMA, else nothing changes.
 * OpenBLAS's only way in is the OPENBLAS_CORETYPE variable, read by
 * gotoblas_dynamic_init(); the library is linked with -Wl,--wrap=getenv
 * (CMakeLists.txt), so OpenBLAS's getenv comes here and sees the name, and
 * the process environment is never changed. attn_build_info() says when this
 * happened. Nothing runs in a build where the private archive lacks
 * gotoblas_dynamic_init (a single-architecture OpenBLAS). */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#if defined(ATTN_BLAS_RESELECT) && defined(ATTN_BLAS_PRIVATE) && defined(__x86_64__)
#include <cblas.h>
#include <cpuid.h>

void gotoblas_dynamic_init(void);
void gotoblas_dynamic_quit(void);
/* Weak: a program linking libattn.a without --wrap=getenv has none, and
 * OpenBLAS's choice then stands. */
char *__real_getenv(const char *name) __attribute__((weak));

static const char *volatile core_override; /* set only while re-initialising */
static char reselected[64];                /* "SkylakeX (OpenBLAS chose Prescott)" or "" */

/* Every getenv of the objects linked into libattn (attn's and OpenBLAS's). */
char *__wrap_getenv(const char *name) {
    const char *o = core_override;
    if (o && strcmp(name, "OPENBLAS_CORETYPE") == 0) return (char *)o;
    return __real_getenv(name);
}

static uint64_t xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* The best OpenBLAS 0.3.21 kernel family this CPU and OS can run, or NULL. */
static const char *best_core(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return NULL;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx || __get_cpuid_max(0, NULL) < 7) return NULL;
    const uint64_t x = xcr0();
    if ((x & 0x6) != 0x6) return NULL;
    __cpuid_count(7, 0, a, b, c, d);
    const int avx2 = (b >> 5) & 1;
    const unsigned avx512 = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
    if (avx2 && fma && (b & avx512) == avx512 && (x & 0xe0) == 0xe0) return "SkylakeX";
    if (avx2 && fma) return "Haswell";
    return NULL;
}

__attribute__((constructor)) static void reselect_core(void) {
    if (!__real_getenv || __real_getenv("OPENBLAS_CORETYPE")) return;
    gotoblas_dynamic_init(); /* a no-op when OpenBLAS's constructor ran first */
    if (strcmp(openblas_get_corename(), "Prescott") != 0) return;
    const char *want = best_core();
    if (!want) return;
    core_override = want;
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    core_override = NULL;
    if (strcmp(openblas_get_corename(), want) == 0)
        snprintf(reselected, sizeof reselected, "%s", " (attn's choice: OpenBLAS chose Prescott)");
}

const char *attn__blas_core_note(void) {
    return reselected;
}
#else
/* (No BLAS, a shared one, or an archive without gotoblas_dynamic_init.) */
const char *attn__blas_core_note(void) {
    return "";
}
#endif
