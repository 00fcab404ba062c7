/* npy.h - read and write NumPy .npy files and .npz archives (the attn CLI).
 *
 * Reads everything np.save / np.savez / np.savez_compressed write for real
 * arrays: format versions 1.0, 2.0 and 3.0; dtypes <f4 >f4 <f8 >f8 (float64
 * and big-endian data are converted to native float32; a finite float64
 * beyond float32's range is an error, not an inf); C or Fortran order
 * (Fortran order is kept as strides, no copy). Integer dtypes are read only
 * when the caller asks (key lengths), converted to int64.
 *
 * Input is treated as hostile: every size is checked against the bytes
 * present and for overflow, headers are capped, and a bad file gives a
 * message naming the file, the array and what is wrong - never a crash.
 */
#ifndef ATTN_CLI_NPY_H
#define ATTN_CLI_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "zipread.h"

#define NPY_MAX_NDIM 8
/* Longest header accepted, in bytes (NumPy's own default cap is 10000). */
#define NPY_MAX_HEADER_LEN 65536
/* Largest array or .npz member, in bytes, that is ever allocated. */
#define NPY_MAX_BYTES ((int64_t)1 << 34)

typedef enum npy_kind {
    NPY_FLOAT32 = 0, /* data is float *  (from f4 or f8) */
    NPY_INT64 = 1,   /* data is int64_t * (from i1..i8, u1..u8; only on request) */
} npy_kind;

/* An array read from a file. data is owned (npy_free). Strides are in
 * elements: C order gives row-major strides, Fortran order column-major. */
typedef struct npy_array {
    npy_kind kind;
    int ndim;
    int64_t shape[NPY_MAX_NDIM];
    int64_t stride[NPY_MAX_NDIM];
    int64_t size; /* number of elements (product of shape; 1 for rank 0) */
    int fortran_order;
    char descr[32]; /* the dtype as written in the file, e.g. ">f8" */
    void *data;
} npy_array;

/* Loader flags. */
#define NPY_ALLOW_INT 1 /* accept integer dtypes, converted to int64 */
#define NPY_MASK_HINT 2 /* a boolean array gets the additive-mask advice */

/* Parse a complete .npy image of len bytes. name is used in messages.
 * @return 0 on success; else -1 with a message in err. */
int npy_parse(const unsigned char *buf, size_t len, const char *name, int flags, npy_array *out,
              char *err, size_t errlen);

/* Load an array from spec, which is one of
 *   file.npy            a .npy file
 *   file.npz:member     member "member" (stored as member.npy) of an archive
 *   file.npz            an archive with exactly one member, or the member
 *                       named default_member when that is not NULL
 * The file type is told by its first bytes, not its name.
 * @return 0 on success; else -1 with a message naming the file in err. */
int npy_load(const char *spec, const char *default_member, int flags, npy_array *out, char *err,
             size_t errlen);

/* An opened .npz archive, to look members up by name and load several. */
typedef struct npy_archive {
    char *path; /* malloc'd */
    unsigned char *buf;
    size_t len;
    zip_archive z;
} npy_archive;

/* Read and index the archive at path. @return 0, or -1 with a message. */
int npy_archive_open(const char *path, npy_archive *ar, char *err, size_t errlen);

/* @return the index of member name (or name.npy), or -1 if absent. */
int64_t npy_archive_find(const npy_archive *ar, const char *name);

/* Load member index as an array. @return 0, or -1 with a message. */
int npy_archive_load(const npy_archive *ar, int64_t index, int flags, npy_array *out, char *err,
                     size_t errlen);

void npy_archive_close(npy_archive *ar);

/* Free the data of an array (a zeroed or failed array is fine). */
void npy_free(npy_array *a);

/* Write a float32 array as a version 1.0 .npy file to f (named path in
 * messages), little-endian, C order, reading element [i0, i1, ...] at
 * data[i0*stride[0] + i1*stride[1] + ...]. ndim 0..NPY_MAX_NDIM. The caller
 * opens and closes f (outfile.h decides where it goes).
 * @return 0 on success; else -1 with a message. */
int npy_write(FILE *f, const char *path, const float *data, int ndim, const int64_t *shape,
              const int64_t *stride, char *err, size_t errlen);

/* The file part of an array spec ("file.npz:member" -> "file.npz"), malloc'd
 * (NULL: out of memory); *member, if asked, points at the member or "". */
char *npy_spec_path(const char *spec, const char **member);

/* Format a shape as NumPy prints it, "(2, 3)" or "(5,)", into buf. */
const char *npy_shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

#endif /* ATTN_CLI_NPY_H */
