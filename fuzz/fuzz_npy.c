/* fuzz_npy.c - the CLI's .npy / .npz reader on hostile bytes.
 *
 * The input is parsed as a .npy image (both with and without integer dtypes
 * allowed) and as a ZIP archive whose members are extracted (limit 1 MiB)
 * and parsed in turn. On success the array must be self-consistent: rank
 * within NPY_MAX_NDIM, size the product of the shape, and every element,
 * reached through the strides, inside the data (each is read, so
 * AddressSanitizer catches a stride or size that lies). Failures must leave
 * a message. Nothing may crash, leak or read outside the input. */
#include "npy.h"
#include "zipread.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_array(const npy_array *a) {
    if (a->ndim < 0 || a->ndim > NPY_MAX_NDIM) {
        fprintf(stderr, "npy_parse: ndim %d out of range\n", a->ndim);
        abort();
    }
    int64_t n = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] < 0) {
            fprintf(stderr, "npy_parse: negative size %lld\n", (long long)a->shape[i]);
            abort();
        }
        n *= a->shape[i];
    }
    if (n != a->size) {
        fprintf(stderr, "npy_parse: size %lld but the shape holds %lld\n", (long long)a->size,
                (long long)n);
        abort();
    }
    if (n > 0 && !a->data) {
        fprintf(stderr, "npy_parse: %lld elements but no data\n", (long long)n);
        abort();
    }
    /* Visit every element through the strides. */
    int64_t idx[NPY_MAX_NDIM] = {0};
    volatile double sink = 0;
    for (int64_t e = 0; e < n; e++) {
        int64_t off = 0;
        for (int i = 0; i < a->ndim; i++)
            off += idx[i] * a->stride[i];
        if (a->kind == NPY_FLOAT32)
            sink += ((const float *)a->data)[off];
        else
            sink += (double)((const int64_t *)a->data)[off];
        for (int i = a->ndim - 1; i >= 0; i--) {
            if (++idx[i] < a->shape[i]) break;
            idx[i] = 0;
        }
    }
    (void)sink;
    char buf[256];
    npy_shape_str(a->ndim, a->shape, buf, sizeof buf);
}

static void parse(const uint8_t *data, size_t size, const char *name) {
    char err[512];
    for (int flags = 0; flags <= NPY_ALLOW_INT; flags++) {
        npy_array a;
        err[0] = '\0';
        if (npy_parse(data, size, name, flags, &a, err, sizeof err) == 0) {
            check_array(&a);
        } else if (err[0] == '\0') {
            fprintf(stderr, "npy_parse failed without a message\n");
            abort();
        }
        npy_free(&a);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse(data, size, "fuzz.npy");
    zip_archive z;
    char err[512];
    memset(&z, 0, sizeof z);
    if (zip_open(data, size, "fuzz.npz", &z, err, sizeof err) == 0) {
        for (int64_t i = 0; i < z.n && i < 16; i++) {
            unsigned char *m = NULL;
            size_t mlen = 0;
            if (zip_extract(&z, i, "fuzz.npz", (uint64_t)1 << 20, &m, &mlen, err, sizeof err) ==
                0) {
                parse(m, mlen, z.entries[i].name ? z.entries[i].name : "member");
                free(m);
            }
        }
    }
    zip_close(&z);
    return 0;
}
