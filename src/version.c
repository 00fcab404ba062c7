/* version.c - version and build description: what attn runs on, including
 * whose threads (include/attn.h "Threads"). */
#define _GNU_SOURCE /* dladdr */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <dlfcn.h>
#include <omp.h>
#endif
#ifdef ATTN_HAVE_BLAS
#include <cblas.h>
#endif

#ifndef ATTN_BUILD_TYPE
#define ATTN_BUILD_TYPE "unknown"
#endif

const char *attn_version(void) {
    return ATTN_VERSION_STRING;
}

/* "OpenBLAS 0.3.21 ..." -> "0.3.21" (the second word), or "?". */
static void blas_desc(char *buf, size_t n) {
#ifdef ATTN_HAVE_BLAS
    char ver[32] = "?";
    const char *cfg = openblas_get_config();
    if (cfg && sscanf(cfg, "%*s %31s", ver) != 1) snprintf(ver, sizeof ver, "?");
    const char *how =
#if defined(ATTN_BLAS_PRIVATE)
        "private static copy, single-threaded, GEMMs split over attn's threads";
#else
        openblas_get_parallel() == 2   ? "shared, OpenMP build, GEMMs split over attn's threads"
        : openblas_get_parallel() == 1 ? "shared, pthreads build: its own thread pool"
                                       : "shared, sequential build";
#endif
    snprintf(buf, n, "openblas %s (%s; core %s%s)", ver, how, openblas_get_corename(),
             attn__blas_core_note());
#else
    snprintf(buf, n, "none (built-in loops)");
#endif
}

/* The OpenMP runtime actually loaded (libgomp, libomp, ...) and the
 * environment that changes how its threads wait. */
static void threads_desc(char *buf, size_t n) {
#ifdef _OPENMP
    const char *lib = "?";
    Dl_info info;
    if (dladdr((void *)(uintptr_t)omp_get_max_threads, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        lib = slash ? slash + 1 : info.dli_fname;
    }
    const char *wait = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    snprintf(
        buf, n, "OpenMP %d (%s), one pool for attention, GEMV and GEMM; OMP_WAIT_POLICY %s%s%s",
        _OPENMP, lib, wait ? wait : "unset", spin ? ", GOMP_SPINCOUNT " : "", spin ? spin : "");
#else
    snprintf(buf, n, "none (built without OpenMP: one thread)");
#endif
}

const char *attn_build_info(void) {
    static _Thread_local char info[512];
    char blas[160], thr[160];
    blas_desc(blas, sizeof blas);
    threads_desc(thr, sizeof thr);
    snprintf(info, sizeof info,
             "attn %s; build %s; blas %s; threads %s; isa %s (kernels: generic, avx2, avx512)",
             ATTN_VERSION_STRING, ATTN_BUILD_TYPE, blas, thr,
             attn_get_isa() == ATTN_ISA_AUTO ? "none (ATTN_ISA is unusable)"
                                             : attn_isa_name(attn_get_isa()));
    return info;
}
