/* version.c - version and build description. */
#include "internal.h"

#include <stdio.h>

#ifndef ATTN_BUILD_TYPE
#define ATTN_BUILD_TYPE "unknown"
#endif

const char *attn_version(void) {
    return ATTN_VERSION_STRING;
}

const char *attn_build_info(void) {
    static _Thread_local char info[256];
    snprintf(info, sizeof info,
             "attn %s; build %s; blas %s; openmp %s; isa %s (kernels: generic, avx2, avx512)",
             ATTN_VERSION_STRING, ATTN_BUILD_TYPE,
#ifdef ATTN_HAVE_BLAS
             "cblas (openblas)",
#else
             "none (built-in loops)",
#endif
#ifdef _OPENMP
             "yes",
#else
             "no",
#endif
             attn_get_isa() == ATTN_ISA_AUTO ? "none (ATTN_ISA is unusable)"
                                             : attn_isa_name(attn_get_isa()));
    return info;
}
