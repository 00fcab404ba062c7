/* picture.h - the pictures of the attn command: PNG encoding (libpng), a
 * colour map, attention-weight heatmaps and key-visibility grids. */
#ifndef ATTN_CLI_PICTURE_H
#define ATTN_CLI_PICTURE_H

#include <stddef.h>
#include <stdint.h>

/* An RGB image, 3 bytes a pixel, rows top to bottom. */
typedef struct picture {
    int64_t w, h;
    unsigned char *rgb; /* (h, w, 3) */
} picture;

/* A w x h image filled with colour c. @return 0, or -1 (out of memory or a
 * size over 16384). */
int picture_new(picture *p, int64_t w, int64_t h, const unsigned char c[3]);
void picture_free(picture *p);

/* Fill the rectangle [x, x + w) x [y, y + h), clipped to the image. */
void picture_rect(picture *p, int64_t x, int64_t y, int64_t w, int64_t h, const unsigned char c[3]);

/* t in [0, 1] to a colour, dark violet (0) through blue and green to yellow
 * (1), evenly spaced in lightness; NaN is red, so it cannot pass unseen. */
void picture_colormap(float t, unsigned char rgb[3]);

/* Encode as PNG into a new malloc'd buffer. @return 0, or -1 (out of memory). */
int picture_encode_png(const picture *p, unsigned char **data, size_t *len);

/* Save as PNG, the file named by option opt (for messages) at path, through
 * outfile.h: written to a temporary file beside it and renamed when whole,
 * so a failed write loses nothing. @return 0, or -1 with a message in err. */
int picture_save_png(const picture *p, const char *opt, const char *path, char *err, size_t errlen);

/* Heatmaps of attention weights w (H, Nq, Nkv), C order, drawn into p (made
 * here): one panel per head, left to right in rows of up to 8 panels, cell
 * size chosen so the image stays within about 1600 pixels; each panel's
 * colours scale from 0 to that head's largest weight.
 * @return 0, or -1 with a message in err. */
int picture_heatmaps(picture *p, const float *w, int64_t H, int64_t Nq, int64_t Nkv, char *err,
                     size_t errlen);

/* A visibility grid drawn into p (made here): vis (Nq, Nkv), 1 where query i sees key j; diag
 * (Nq, Nkv) or NULL, 1 where query i and key j are at the same position;
 * keys j >= L are padding (drawn paler); with_sink adds a first column for
 * the sink logit every row takes.
 * @return 0, or -1 with a message in err. */
int picture_visibility(picture *p, const unsigned char *vis, const unsigned char *diag, int64_t Nq,
                       int64_t Nkv, int64_t L, int with_sink, char *err, size_t errlen);

#endif
