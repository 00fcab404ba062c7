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
static const char *note = "";              /* attn__blas_core_note() */

/* Every getenv of the objects linked into libattn (attn's and OpenBLAS's). */
char *__wrap_getenv(const char *name) {
    const char *o = core_override;
    if (o && strcmp(name, "OPENBLAS_CORETYPE") == 0) return (char *)o;
    return __real_getenv(name);
}

/* The best OpenBLAS 0.3.21 kernel family this CPU and OS can run, or NULL:
 * SkylakeX's kernels use AVX-512 CD, BW, DQ and VL besides F. */
static const char *best_core(void) {
    if (attn_isa_supported(ATTN_ISA_AVX512)) {
        unsigned a, b, c, d;
        __cpuid_count(7, 0, a, b, c, d);
        const unsigned cd_bw_dq_vl = (1u << 28) | (1u << 30) | (1u << 17) | (1u << 31);
        if ((b & cd_bw_dq_vl) == cd_bw_dq_vl) return "SkylakeX";
    }
    return attn_isa_supported(ATTN_ISA_AVX2) ? "Haswell" : NULL;
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
        note = " (attn's choice: OpenBLAS chose Prescott)";
}

const char *attn__blas_core_note(void) {
    return note;
}
#else
/* (No BLAS, a shared one, or an archive without gotoblas_dynamic_init.) */
const char *attn__blas_core_note(void) {
    return "";
}
#endif
