/* test_isa.c - instruction-set selection: names, set/get, and the ATTN_ISA
 * variable (run a second time by ctest with ATTN_ISA=bogus and with
 * ATTN_ISA=generic; see tests/CMakeLists.txt). */
#include "testutil.h"

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    float q[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
    attn_view qv = attn_view_4d(q, 1, 1, 2, 4), ov = attn_view_4d(out, 1, 1, 2, 4);
    if (strcmp(mode, "expect-bogus") == 0) {
        /* Every call fails with a message naming the variable, never SIGILL. */
        CHECK_FAIL(attn_sdpa(&qv, &qv, &qv, &ov, NULL), ATTN_ERR_ISA,
                   "attn_sdpa: ATTN_ISA=bogus is not one of generic, avx2, avx512, auto");
        attn_view x = attn_view_2d(q, 2, 4), y = attn_view_2d(out, 2, 4);
        CHECK_FAIL(attn_softmax(&x, &y), ATTN_ERR_ISA, "attn_softmax: ATTN_ISA=bogus");
        CHECK_FAIL(attn_layer_norm(&x, NULL, NULL, 1e-5f, &y), ATTN_ERR_ISA, "attn_layer_norm");
        attn_view w = attn_view_2d(q, 4, 2), y2 = attn_view_2d(out, 2, 2);
        CHECK_FAIL(attn_linear(&x, &w, NULL, &y2, 1), ATTN_ERR_ISA, "attn_linear");
        /* Nothing is selected, so nothing is claimed (issue 9 item 13). */
        CHECK(attn_get_isa() == ATTN_ISA_AUTO, "ATTN_ISA=bogus: get_isa says %s",
              attn_isa_name(attn_get_isa()));
        CHECK(strstr(attn_build_info(), "isa none") != NULL, "%s", attn_build_info());
        /* An explicit choice in code replaces the bad variable. */
        CHECK_OK(attn_set_isa(ATTN_ISA_AUTO));
        CHECK_OK(attn_sdpa(&qv, &qv, &qv, &ov, NULL));
        CHECK(attn_get_isa() != ATTN_ISA_AUTO, "after attn_set_isa(AUTO)");
        return tu_summary("test_isa (ATTN_ISA=bogus)");
    }
    if (strcmp(mode, "expect-generic") == 0) {
        CHECK(attn_get_isa() == ATTN_ISA_GENERIC, "ATTN_ISA=generic gave %s",
              attn_isa_name(attn_get_isa()));
        CHECK_OK(attn_sdpa(&qv, &qv, &qv, &ov, NULL));
        return tu_summary("test_isa (ATTN_ISA=generic)");
    }
    CHECK(strcmp(attn_isa_name(ATTN_ISA_AVX512), "avx512") == 0, "name");
    CHECK(attn_isa_supported(ATTN_ISA_GENERIC) && attn_isa_supported(ATTN_ISA_AUTO), "generic");
    CHECK(attn_get_isa() != ATTN_ISA_AUTO, "get_isa never returns AUTO");
    for (int isa = ATTN_ISA_GENERIC; isa <= ATTN_ISA_AVX512; isa++) {
        if (attn_isa_supported((attn_isa)isa)) {
            CHECK_OK(attn_set_isa((attn_isa)isa));
            CHECK(attn_get_isa() == (attn_isa)isa, "set %d, got %d", isa, (int)attn_get_isa());
            CHECK(strstr(attn_build_info(), attn_isa_name((attn_isa)isa)) != NULL, "%s",
                  attn_build_info());
        } else {
            attn_isa before = attn_get_isa();
            CHECK_FAIL(attn_set_isa((attn_isa)isa), ATTN_ERR_ISA, "is not supported");
            CHECK(attn_get_isa() == before, "a refused choice changed the ISA");
        }
    }
    /* An invalid value is an argument error, not an unsupported set. */
    const attn_isa before = attn_get_isa();
    CHECK_FAIL(attn_set_isa((attn_isa)9), ATTN_ERR_ARG, "isa=9 is not an attn_isa value");
    CHECK_FAIL(attn_set_isa((attn_isa)-1), ATTN_ERR_ARG, "isa=-1 is not an attn_isa value");
    CHECK(attn_get_isa() == before, "an invalid value changed the ISA");
    CHECK(strcmp(attn_version(), ATTN_VERSION_STRING) == 0, "version %s", attn_version());
    return tu_summary("test_isa");
}
