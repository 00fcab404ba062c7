// consumer.cpp - attn.h used from C++: softmax of one row, checked.
#include <attn.h>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
    std::vector<float> x = {1.0f, 2.0f, 3.0f}, y(3);
    attn_view xv = attn_view_1d(x.data(), 3), yv = attn_view_1d(y.data(), 3);
    if (attn_softmax(&xv, &yv) != ATTN_OK) {
        std::fprintf(stderr, "attn: %s\n", attn_last_error());
        return 1;
    }
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    for (int j = 0; j < 3; j++)
        if (std::fabs(y[j] - std::exp(j + 1.0) / z) > 1e-6) {
            std::fprintf(stderr, "softmax[%d] = %g, want %g\n", j, y[j], std::exp(j + 1.0) / z);
            return 1;
        }
    std::printf("C++ consumer: attn %s, softmax ok\n", attn_version());
    return 0;
}
