/* kernels/kernels.c - one kernel table per ISA, chosen by attn_get_isa(). */
#include "kernels/impl.h"

#define ATTN_TABLE(isa)                                                                            \
    {                                                                                              \
#isa, attn__score_##isa, attn__scale_max_##isa, attn__softmax_##isa, attn__pv_##isa,       \
            attn__merge_##isa, attn__exp_##isa, attn__madd_##isa                                   \
    }

const attn__kernels attn__kernels_generic = ATTN_TABLE(generic);
#if defined(__x86_64__)
const attn__kernels attn__kernels_avx2 = ATTN_TABLE(avx2);
const attn__kernels attn__kernels_avx512 = ATTN_TABLE(avx512);
#endif

const attn__kernels *attn__kernels_for(attn_isa isa) {
    if (isa == ATTN_ISA_AUTO) isa = attn_get_isa();
#if defined(__x86_64__)
    if (isa == ATTN_ISA_AVX512) return &attn__kernels_avx512;
    if (isa == ATTN_ISA_AVX2) return &attn__kernels_avx2;
#endif
    return &attn__kernels_generic;
}
