/* test_rmsnorm.c - attn_rms_norm against the formula in double, in place,
 * strided, and its errors. */
#include "testutil.h"

static void test_values(void) {
    static const int64_t shapes[][3] = {
        {1, 1, 1}, {3, 7, 13}, {2, 5, 4096}, {1, 17, 1}, {4, 1, 97}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int64_t A = shapes[c][0], R = shapes[c][1], D = shapes[c][2], n = A * R * D;
        /* x read every other float: (A, R, D) with strides (2RD, 2D, 2). */
        float *buf = tu_rand(2 * n, -3, 3), *g = tu_rand(D, 0.5f, 2), *y = tu_zeros(n);
        attn_view x = {buf, 3, {A, R, D}, {2 * R * D, 2 * D, 2}};
        attn_view gv = attn_view_1d(g, D), yv = attn_view_3d(y, A, R, D);
        for (int eps_i = 0; eps_i < 2; eps_i++) {
            const float eps = eps_i ? 1e-6f : 0.0f;
            CHECK_OK(attn_rms_norm(&x, &gv, eps, &yv));
            double worst = 0;
            for (int64_t r = 0; r < A * R; r++) {
                double ms = 0;
                for (int64_t j = 0; j < D; j++)
                    ms += (double)buf[2 * (r * D + j)] * buf[2 * (r * D + j)];
                ms /= (double)D;
                for (int64_t j = 0; j < D; j++) {
                    double want = buf[2 * (r * D + j)] / sqrt(ms + (double)eps) * g[j];
                    worst = fmax(worst, fabs(y[r * D + j] - want) / (fabs(want) + 1e-30));
                }
            }
            CHECK(worst < 1.2e-7, "case %zu eps %g: relative error %g", c, (double)eps, worst);
        }
        /* Without gamma the mean square of a row is 1. */
        CHECK_OK(attn_rms_norm(&x, NULL, 0.0f, &yv));
        double ms = 0;
        for (int64_t j = 0; j < D; j++)
            ms += (double)y[j] * y[j];
        CHECK(fabs(ms / (double)D - 1) < 1e-6, "case %zu: mean square %g", c, ms / (double)D);
        /* In place on the strided view equals out of place. */
        CHECK_OK(attn_rms_norm(&x, &gv, 1e-5f, &yv));
        CHECK_OK(attn_rms_norm(&x, &gv, 1e-5f, &x));
        int same = 1;
        for (int64_t i = 0; i < n; i++)
            same &= buf[2 * i] == y[i];
        CHECK(same, "case %zu: in place differs", c);
        free(buf), free(g), free(y);
    }
    /* Zeros stay zeros with eps = 0; huge values do not overflow the sum. */
    float z[4] = {0, 0, 0, 0}, big[2] = {3e38f, -3e38f}, out[4];
    attn_view zv = attn_view_1d(z, 4), ov = attn_view_1d(out, 4);
    CHECK_OK(attn_rms_norm(&zv, NULL, 0.0f, &ov));
    CHECK(out[0] == 0 && out[3] == 0, "zeros: %g", out[0]);
    attn_view bv = attn_view_1d(big, 2), ob = attn_view_1d(out, 2);
    CHECK_OK(attn_rms_norm(&bv, NULL, 1e-5f, &ob));
    CHECK(fabsf(out[0] - 1) < 1e-6f && fabsf(out[1] + 1) < 1e-6f, "big: %g %g", out[0], out[1]);
    /* NaN propagates to its row. */
    float nn[4] = {1, NAN, 2, 3};
    attn_view nv = attn_view_2d(nn, 2, 2), onv = attn_view_2d(out, 2, 2);
    CHECK_OK(attn_rms_norm(&nv, NULL, 1e-5f, &onv));
    CHECK(isnan(out[0]) && isnan(out[1]) && !isnan(out[2]), "NaN row");
}

static void test_errors(void) {
    float x[12], y[12], g[4];
    for (int i = 0; i < 12; i++)
        x[i] = (float)i, y[i] = -1;
    for (int i = 0; i < 4; i++)
        g[i] = 1;
    attn_view xv = attn_view_2d(x, 3, 4), yv = attn_view_2d(y, 3, 4);
    attn_view gb = attn_view_1d(g, 3);
    CHECK_FAIL(attn_rms_norm(&xv, &gb, 1e-5f, &yv), ATTN_ERR_SHAPE,
               "attn_rms_norm: gamma.shape[0]=3 but x.shape[1]=4 (one gain per feature)");
    CHECK_FAIL(attn_rms_norm(&xv, NULL, -1e-5f, &yv), ATTN_ERR_ARG, "eps=-1e-05");
    CHECK_FAIL(attn_rms_norm(&xv, NULL, NAN, &yv), ATTN_ERR_ARG, "eps=nan");
    attn_view yb = attn_view_2d(y, 4, 3);
    CHECK_FAIL(attn_rms_norm(&xv, NULL, 0, &yb), ATTN_ERR_SHAPE, "y.shape[0]=4 but x.shape[0]=3");
    attn_view gy = attn_view_1d(y, 4);
    CHECK_FAIL(attn_rms_norm(&xv, &gy, 0, &yv), ATTN_ERR_STRIDE, "overlaps input gamma");
    CHECK_FAIL(attn_rms_norm(NULL, NULL, 0, &yv), ATTN_ERR_NULL, "x is NULL");
    int untouched = 1;
    for (int i = 0; i < 12; i++)
        untouched &= y[i] == -1;
    CHECK(untouched, "a failed call wrote y");
}

int main(void) {
    test_values();
    test_errors();
    return tu_summary("test_rmsnorm");
}
