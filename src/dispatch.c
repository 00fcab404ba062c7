/* dispatch.c - which instruction set the kernels use, decided once.
 *
 * Detection runs newest ISA first: AVX-512 F needs the CPU flag and the OS
 * saving opmask and zmm state (XCR0 bits 5-7) besides the AVX ones (1-2);
 * AVX2 needs AVX2, FMA, and XCR0 bits 1-2. ATTN_ISA in the environment
 * forces a choice; a bad value there is remembered and reported by every
 * call, never turned into SIGILL. */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static int cpu_has(attn_isa isa) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0; /* SSE and AVX state */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    if (isa == ATTN_ISA_AVX2) return avx2 && fma;
    if (isa == ATTN_ISA_AVX512) return avx2 && fma && avx512f && (xcr0 & 0xe0) == 0xe0;
    return 0;
}
#else
static int cpu_has(attn_isa isa) {
    (void)isa;
    return 0;
}
#endif

int attn_isa_supported(attn_isa isa) {
    switch (isa) {
    case ATTN_ISA_AUTO:
    case ATTN_ISA_GENERIC:
        return 1;
    case ATTN_ISA_AVX2:
    case ATTN_ISA_AVX512:
        return cpu_has(isa);
    }
    return 0;
}

const char *attn_isa_name(attn_isa isa) {
    switch (isa) {
    case ATTN_ISA_AUTO:
        return "auto";
    case ATTN_ISA_GENERIC:
        return "generic";
    case ATTN_ISA_AVX2:
        return "avx2";
    case ATTN_ISA_AVX512:
        return "avx512";
    }
    return "unknown";
}

static attn_isa best_isa(void) {
    if (cpu_has(ATTN_ISA_AVX512)) return ATTN_ISA_AVX512;
    if (cpu_has(ATTN_ISA_AVX2)) return ATTN_ISA_AVX2;
    return ATTN_ISA_GENERIC;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static attn_isa selected = ATTN_ISA_GENERIC;
static char env_problem[160]; /* non-empty: ATTN_ISA was unusable */

static void init_isa(void) {
    selected = best_isa();
    const char *env = getenv("ATTN_ISA");
    if (!env || !*env || strcmp(env, "auto") == 0) return;
    attn_isa want;
    if (strcmp(env, "generic") == 0) {
        want = ATTN_ISA_GENERIC;
    } else if (strcmp(env, "avx2") == 0) {
        want = ATTN_ISA_AVX2;
    } else if (strcmp(env, "avx512") == 0) {
        want = ATTN_ISA_AVX512;
    } else {
        snprintf(env_problem, sizeof env_problem,
                 "ATTN_ISA=%.40s is not one of generic, avx2, avx512, auto", env);
        return;
    }
    if (!cpu_has(want) && want != ATTN_ISA_GENERIC) {
        snprintf(env_problem, sizeof env_problem, "ATTN_ISA=%s but this CPU/OS does not support %s",
                 env, env);
        return;
    }
    selected = want;
}

static bool isa_valid(attn_isa isa) {
    return isa == ATTN_ISA_AUTO || isa == ATTN_ISA_GENERIC || isa == ATTN_ISA_AVX2 ||
           isa == ATTN_ISA_AVX512;
}

attn_status attn_set_isa(attn_isa isa) {
    pthread_once(&init_once, init_isa);
    if (!isa_valid(isa))
        return attn__fail(ATTN_ERR_ARG,
                          "attn_set_isa: isa=%d is not an attn_isa value (AUTO 0, GENERIC 1, "
                          "AVX2 2, AVX512 3)",
                          (int)isa);
    if (isa == ATTN_ISA_AUTO) isa = best_isa();
    if (!attn_isa_supported(isa))
        return attn__fail(ATTN_ERR_ISA, "attn_set_isa: %s is not supported by this CPU/OS",
                          attn_isa_name(isa));
    selected = isa;
    env_problem[0] = '\0';
    return ATTN_OK;
}

attn_isa attn_get_isa(void) {
    pthread_once(&init_once, init_isa);
    /* An unusable ATTN_ISA selects nothing: no ISA is claimed while every
     * call fails. */
    return env_problem[0] ? ATTN_ISA_AUTO : selected;
}

attn_status attn__isa_ready(const char *fn) {
    pthread_once(&init_once, init_isa);
    if (env_problem[0]) return attn__fail(ATTN_ERR_ISA, "%s: %s", fn, env_problem);
    return ATTN_OK;
}

int attn__threads(int requested) {
    /* OpenMP runtimes exit the process when they cannot create a team, so
     * absurd requests are capped rather than passed on. */
    if (requested > ATTN_MAX_THREADS) return ATTN_MAX_THREADS;
    if (requested > 0) return requested;
#ifdef _OPENMP
    /* Called from inside a parallel region (PyTorch's intra-op pool, the
     * program's own): its threads already fill the CPUs, "all CPUs" per
     * caller would multiply them. */
    if (omp_in_parallel()) return 1;
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n < ATTN_MAX_THREADS ? n : ATTN_MAX_THREADS) : 1;
}
