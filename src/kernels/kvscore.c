/* kernels/kvscore.c - the KV-cache kernel table of each ISA. */
#include "kernels/kvscore.h"

#if defined(__x86_64__)
extern const attn__kvkernels attn__kvkernels_avx2_nof16c;

static int has_f16c(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("f16c");
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
