/* picture.c - PNG pictures for attn explain and attn run (see picture.h). */
#define _POSIX_C_SOURCE 200809L
#include "picture.h"
#include "outfile.h"

#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_SIDE = 16384 };

int picture_new(picture *p, int64_t w, int64_t h, const unsigned char c[3]) {
    p->w = w;
    p->h = h;
    p->rgb = NULL;
    if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE) return -1;
    p->rgb = malloc((size_t)(w * h * 3));
    if (!p->rgb) return -1;
    for (int64_t i = 0; i < w * h; i++)
        memcpy(p->rgb + 3 * i, c, 3);
    return 0;
}

void picture_free(picture *p) {
    free(p->rgb);
    p->rgb = NULL;
}

void picture_rect(picture *p, int64_t x, int64_t y, int64_t w, int64_t h,
                  const unsigned char c[3]) {
    for (int64_t r = y < 0 ? 0 : y; r < y + h && r < p->h; r++)
        for (int64_t q = x < 0 ? 0 : x; q < x + w && q < p->w; q++)
            memcpy(p->rgb + 3 * (r * p->w + q), c, 3);
}

void picture_colormap(float t, unsigned char rgb[3]) {
    /* Control points of a violet-blue-green-yellow ramp, interpolated linearly. */
    static const float stops[5][3] = {{0.27f, 0.00f, 0.33f},
                                      {0.23f, 0.32f, 0.55f},
                                      {0.13f, 0.57f, 0.55f},
                                      {0.37f, 0.79f, 0.38f},
                                      {0.99f, 0.91f, 0.14f}};
    if (isnan(t)) {
        rgb[0] = 255, rgb[1] = 0, rgb[2] = 0;
        return;
    }
    t = t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t;
    const float x = t * 4.0f;
    int k = (int)x;
    if (k > 3) k = 3;
    const float f = x - (float)k;
    for (int c = 0; c < 3; c++)
        rgb[c] =
            (unsigned char)lrintf(255.0f * (stops[k][c] + f * (stops[k + 1][c] - stops[k][c])));
}

/* libpng's output callback: append to a growing buffer. */
typedef struct membuf {
    unsigned char *data;
    size_t len, cap;
    int failed;
} membuf;

static void mem_write(png_structp png, png_bytep data, png_size_t n) {
    membuf *m = png_get_io_ptr(png);
    if (m->failed) return;
    if (m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->len + n)
            cap *= 2;
        unsigned char *d = realloc(m->data, cap);
        if (!d) {
            m->failed = 1;
            return;
        }
        m->data = d;
        m->cap = cap;
    }
    memcpy(m->data + m->len, data, n);
    m->len += n;
}

static void mem_flush(png_structp png) {
    (void)png;
}

static int encode(const picture *p, membuf *m) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, m, mem_write, mem_flush);
    png_set_IHDR(png, info, (png_uint_32)p->w, (png_uint_32)p->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t r = 0; r < p->h; r++)
        png_write_row(png, p->rgb + 3 * r * p->w);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return m->failed ? -1 : 0;
}

int picture_encode_png(const picture *p, unsigned char **data, size_t *len) {
    membuf m = {0};
    if (encode(p, &m) != 0) {
        free(m.data);
        return -1;
    }
    *data = m.data;
    *len = m.len;
    return 0;
}

int picture_save_png(const picture *p, const char *opt, const char *path, char *err,
                     size_t errlen) {
    unsigned char *data;
    size_t len;
    if (picture_encode_png(p, &data, &len) != 0) {
        snprintf(err, errlen, "cannot encode the %lldx%lld PNG for %s (out of memory)",
                 (long long)p->w, (long long)p->h, path);
        return -1;
    }
    outset outs = {0};
    const int i = outset_add(&outs, opt, path);
    int rc = outset_check(&outs, NULL, NULL, 0, err, errlen);
    if (rc == 0) rc = outset_write_bytes(&outs, i, data, len, err, errlen);
    if (rc == 0) rc = outset_commit(&outs, err, errlen);
    outset_close(&outs);
    free(data);
    return rc;
}

static const unsigned char WHITE[3] = {255, 255, 255}, GREY[3] = {210, 210, 210},
                           PALE[3] = {243, 243, 243}, BLUE[3] = {49, 104, 142},
                           NAVY[3] = {20, 40, 90}, ORANGE[3] = {230, 140, 30};

/* Cell size so that n cells span about `target` pixels: 1..32. */
static int64_t cell_for(int64_t n, int64_t target) {
    int64_t c = target / (n > 0 ? n : 1);
    return c < 1 ? 1 : c > 32 ? 32 : c;
}

int picture_heatmaps(picture *p, const float *w, int64_t H, int64_t Nq, int64_t Nkv, char *err,
                     size_t errlen) {
    const int64_t per_row = H < 8 ? H : 8, rows = (H + per_row - 1) / per_row, gap = 4;
    const int64_t big = Nq > Nkv ? Nq : Nkv;
    const int64_t cell = cell_for(big * per_row, 1600);
    const int64_t pw = Nkv * cell, ph = Nq * cell;
    if (pw * per_row > MAX_SIDE || ph * rows > MAX_SIDE ||
        picture_new(p, per_row * (pw + gap) + gap, rows * (ph + gap) + gap, WHITE) != 0) {
        snprintf(err, errlen, "a heatmap of %lld heads of (%lld, %lld) is too large to draw",
                 (long long)H, (long long)Nq, (long long)Nkv);
        return -1;
    }
    for (int64_t h = 0; h < H; h++) {
        const float *wh = w + h * Nq * Nkv;
        float mx = 0.0f;
        for (int64_t e = 0; e < Nq * Nkv; e++)
            if (wh[e] > mx) mx = wh[e];
        const int64_t x0 = gap + (h % per_row) * (pw + gap), y0 = gap + (h / per_row) * (ph + gap);
        for (int64_t i = 0; i < Nq; i++)
            for (int64_t j = 0; j < Nkv; j++) {
                unsigned char c[3];
                const float v = wh[i * Nkv + j];
                picture_colormap(mx > 0.0f ? v / mx : (isnan(v) ? v : 0.0f), c);
                picture_rect(p, x0 + j * cell, y0 + i * cell, cell, cell, c);
            }
    }
    return 0;
}

int picture_visibility(picture *p, const unsigned char *vis, const unsigned char *diag, int64_t Nq,
                       int64_t Nkv, int64_t L, int with_sink, char *err, size_t errlen) {
    const int64_t cols = Nkv + (with_sink ? 1 : 0), big = Nq > cols ? Nq : cols;
    const int64_t cell = cell_for(big, 800), border = cell > 4 ? 1 : 0, gap = with_sink ? cell : 0;
    if (cols * cell + gap > MAX_SIDE || Nq * cell > MAX_SIDE ||
        picture_new(p, cols * cell + gap + 2, Nq * cell + 2, WHITE) != 0) {
        snprintf(err, errlen, "a (%lld, %lld) grid is too large to draw", (long long)Nq,
                 (long long)Nkv);
        return -1;
    }
    for (int64_t i = 0; i < Nq; i++) {
        const int64_t y = 1 + i * cell;
        if (with_sink)
            picture_rect(p, 1 + border, y + border, cell - 2 * border, cell - 2 * border, ORANGE);
        for (int64_t j = 0; j < Nkv; j++) {
            const unsigned char *c = j >= L                      ? PALE
                                     : !vis[i * Nkv + j]         ? GREY
                                     : diag && diag[i * Nkv + j] ? NAVY
                                                                 : BLUE;
            const int64_t x = 1 + (with_sink ? cell + gap : 0) + j * cell;
            picture_rect(p, x + border, y + border, cell - 2 * border, cell - 2 * border, c);
        }
    }
    return 0;
}
