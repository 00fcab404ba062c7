/* The README's example: causal self-attention of one head over 4 tokens. */
#include <attn.h>
#include <stdio.h>

int main(void) {
    enum { N = 4, D = 8, HS = 4 };
    float x[N][D], Wq[D][HS], Wk[D][HS], Wv[D][HS], out[N][HS];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            x[i][j] = (float)((i * 7 + j * 3) % 5) / 5.0f - 0.4f;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < HS; j++) {
            Wq[i][j] = (float)((i + 2 * j) % 3) - 1.0f;
            Wk[i][j] = (float)((2 * i + j) % 3) - 1.0f;
            Wv[i][j] = (float)((i * j) % 4) / 4.0f;
        }

    attn_view xv = attn_view_2d(&x[0][0], N, D), out_v = attn_view_2d(&out[0][0], N, HS);
    attn_view wq = attn_view_2d(&Wq[0][0], D, HS), wk = attn_view_2d(&Wk[0][0], D, HS),
              wv = attn_view_2d(&Wv[0][0], D, HS);
    attn_opts opts = attn_opts_default();
    opts.causal = ATTN_CAUSAL_TOP_LEFT; /* token i sees tokens 0..i */

    if (attn_self_attention(&xv, &wq, &wk, &wv, &out_v, &opts) != ATTN_OK) {
        fprintf(stderr, "attn: %s\n", attn_last_error());
        return 1;
    }
    for (int i = 0; i < N; i++)
        printf("out[%d] = %7.4f %7.4f %7.4f %7.4f\n", i, out[i][0], out[i][1], out[i][2],
               out[i][3]);
    return 0;
}
