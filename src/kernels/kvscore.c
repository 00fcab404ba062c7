/* kernels/kvscore.c - the KV-cache kernel table of each ISA. */
#include "kernels/kvscore.h"

#if defined(__x86_64__)
#include <cpuid.h>

extern const attn__kvkernels attn__kvkernels_avx2_nof16c;

/* CPUID leaf 1, ECX bit 29 (every AVX2 CPU so far has it; checked anyway). */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1);
}
#endif

const attn__kvkernels *attn__kvkernels_for(attn_isa isa) {
    if (isa == ATTN_ISA_AUTO) isa = attn_get_isa();
#if defined(__x86_64__)
    if (isa == ATTN_ISA_AVX512) return &attn__kvkernels_avx512; /* AVX-512 F has VCVTPH2PS */
    if (isa == ATTN_ISA_AVX2)
        return has_f16c() ? &attn__kvkernels_avx2 : &attn__kvkernels_avx2_nof16c;
#endif
    return &attn__kvkernels_generic;
}
