/* npy.c - the .npy format (NEP 1): magic "\x93NUMPY", major and minor
 * version bytes, a little-endian header length (2 bytes in version 1.0, 4 in
 * 2.0 and 3.0), then an ASCII (3.0: UTF-8) Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ended by '\n', then the raw data. */
#include "npy.h"
#include "zipread.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *npy_shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t pos = 0;
    pos += (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (pos < len) snprintf(buf + pos, len - pos, ndim == 1 ? ",)" : ")");
    return buf;
}

/* ---- header dict parser ------------------------------------------------ */

typedef struct hdr_parser {
    const char *p, *end;
    const char *name;
    char *err;
    size_t errlen;
} hdr_parser;

static void skip_ws(hdr_parser *h) {
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static int expect(hdr_parser *h, char c) {
    skip_ws(h);
    if (h->p >= h->end || *h->p != c)
        return zip_fail(h->err, h->errlen, "%s: malformed header: expected '%c'", h->name, c);
    h->p++;
    return 0;
}

/* A quoted string ('...' or "..."), no escapes (NumPy writes none). */
static int parse_string(hdr_parser *h, char *out, size_t outlen) {
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return zip_fail(h->err, h->errlen, "%s: malformed header: expected a quoted string",
                        h->name);
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (*h->p == '\\' || (unsigned char)*h->p < 0x20)
            return zip_fail(h->err, h->errlen, "%s: malformed header: bad character in a string",
                            h->name);
        if (n + 1 >= outlen)
            return zip_fail(h->err, h->errlen, "%s: malformed header: string too long", h->name);
        out[n++] = *h->p++;
    }
    if (h->p >= h->end)
        return zip_fail(h->err, h->errlen, "%s: malformed header: unterminated string", h->name);
    h->p++;
    out[n] = '\0';
    return 0;
}

static int parse_bool(hdr_parser *h, int *out) {
    skip_ws(h);
    size_t left = (size_t)(h->end - h->p);
    if (left >= 4 && memcmp(h->p, "True", 4) == 0) {
        h->p += 4;
        *out = 1;
        return 0;
    }
    if (left >= 5 && memcmp(h->p, "False", 5) == 0) {
        h->p += 5;
        *out = 0;
        return 0;
    }
    return zip_fail(h->err, h->errlen,
                    "%s: malformed header: 'fortran_order' must be True or False", h->name);
}

/* A tuple of non-negative integers: "()", "(5,)", "(2, 3)", "(2, 3,)". */
static int parse_shape(hdr_parser *h, int *ndim, int64_t *shape) {
    if (expect(h, '(') != 0)
        return zip_fail(h->err, h->errlen, "%s: malformed header: 'shape' must be a tuple",
                        h->name);
    *ndim = 0;
    for (;;) {
        skip_ws(h);
        if (h->p < h->end && *h->p == ')') {
            h->p++;
            return 0;
        }
        if (h->p >= h->end || *h->p < '0' || *h->p > '9')
            return zip_fail(h->err, h->errlen,
                            "%s: malformed header: 'shape' entry %d is not a non-negative integer",
                            h->name, *ndim);
        if (*h->p == '0' && h->p + 1 < h->end && h->p[1] >= '0' && h->p[1] <= '9')
            return zip_fail(h->err, h->errlen,
                            "%s: malformed header: 'shape' entry %d has a leading zero (not a "
                            "Python integer)",
                            h->name, *ndim);
        int64_t v = 0;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            int digit = *h->p++ - '0';
            if (v > (INT64_MAX - digit) / 10)
                return zip_fail(h->err, h->errlen, "%s: header: 'shape' entry %d overflows int64",
                                h->name, *ndim);
            v = v * 10 + digit;
        }
        if (h->p < h->end && *h->p == 'L') h->p++; /* Python 2 long literal */
        if (*ndim >= NPY_MAX_NDIM)
            return zip_fail(h->err, h->errlen, "%s: header: array has more than %d dimensions",
                            h->name, NPY_MAX_NDIM);
        shape[(*ndim)++] = v;
        skip_ws(h);
        if (h->p < h->end && *h->p == ',') {
            h->p++;
            continue;
        }
        /* "(6)" is the integer 6 in Python, not a tuple: one entry needs its comma. */
        if (h->p < h->end && *h->p == ')' && *ndim == 1)
            return zip_fail(h->err, h->errlen,
                            "%s: malformed header: 'shape' (%lld) is not a tuple (a 1-d shape is "
                            "written (%lld,))",
                            h->name, (long long)v, (long long)v);
        if (h->p < h->end && *h->p == ')') continue;
        return zip_fail(h->err, h->errlen, "%s: malformed header: bad 'shape' tuple", h->name);
    }
}

/* dtype: byte order, kind, item size. */
typedef struct dtype_info {
    int big_endian;
    char kind; /* 'f', 'i', 'u' */
    int itemsize;
} dtype_info;

static int parse_descr(const char *descr, const char *name, int flags, dtype_info *dt, char *err,
                       size_t errlen) {
    char order = descr[0];
    char kind = order ? descr[1] : '\0';
    const char *size = order && kind ? descr + 2 : "";
    int itemsize = 0;
    if (strcmp(size, "1") == 0) itemsize = 1;
    if (strcmp(size, "2") == 0) itemsize = 2;
    if (strcmp(size, "4") == 0) itemsize = 4;
    if (strcmp(size, "8") == 0) itemsize = 8;
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return zip_fail(err, errlen, "%s: dtype '%s' is not supported (need float32 or float64)",
                        name, descr);
    if (kind == 'O')
        return zip_fail(err, errlen,
                        "%s: object arrays (dtype '%s') are refused: they need pickle; save a "
                        "numeric array",
                        name, descr);
    if (kind == 'f' && (itemsize == 4 || itemsize == 8)) {
        dt->kind = 'f';
    } else if ((kind == 'i' || kind == 'u') && itemsize != 0) {
        if (!(flags & NPY_ALLOW_INT))
            return zip_fail(err, errlen,
                            "%s: integer dtype '%s' is not accepted here: save a float array, e.g. "
                            "x.astype(np.float32)",
                            name, descr);
        dt->kind = kind;
    } else if (kind == 'b' && (flags & NPY_MASK_HINT)) {
        return zip_fail(err, errlen,
                        "%s: a boolean mask (dtype '%s'); attn takes an additive float mask (0 = "
                        "visible, -inf = hidden) because libraries disagree on what True means: "
                        "save np.where(keep, 0.0, -np.inf).astype(np.float32), keep being True "
                        "where a key is visible",
                        name, descr);
    } else {
        return zip_fail(err, errlen,
                        "%s: dtype '%s' is not supported (need float32 '<f4' or float64 '<f8'%s)",
                        name, descr, (flags & NPY_ALLOW_INT) ? ", or an integer type" : "");
    }
    if (itemsize > 1 && order == '|')
        return zip_fail(err, errlen, "%s: dtype '%s' has no byte order", name, descr);
    if (order == '=') {
        uint16_t probe = 1;
        unsigned char first;
        memcpy(&first, &probe, 1);
        dt->big_endian = first == 0;
    } else {
        dt->big_endian = order == '>';
    }
    dt->itemsize = itemsize;
    return 0;
}

/* ---- data conversion --------------------------------------------------- */

static uint64_t load_uint(const unsigned char *p, int n, int big) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v |= (uint64_t)p[big ? n - 1 - i : i] << (8 * i);
    return v;
}

static int convert(const unsigned char *src, const dtype_info *dt, npy_array *a, char *err,
                   size_t errlen, const char *name) {
    size_t n = (size_t)a->size;
    if (dt->kind == 'f') {
        float *dst = malloc(n ? n * sizeof(float) : 1);
        if (!dst) return zip_fail(err, errlen, "%s: out of memory (%zu elements)", name, n);
        for (size_t i = 0; i < n; i++) {
            uint64_t bits = load_uint(src + i * (size_t)dt->itemsize, dt->itemsize, dt->big_endian);
            if (dt->itemsize == 4) {
                uint32_t b32 = (uint32_t)bits;
                memcpy(&dst[i], &b32, 4);
            } else {
                double d;
                memcpy(&d, &bits, 8);
                if (isfinite(d) && fabs(d) > FLT_MAX) {
                    free(dst);
                    return zip_fail(err, errlen,
                                    "%s: element %zu (%g) is beyond float32's range (+-3.4e38), "
                                    "the precision attn computes in; scale the data, or write "
                                    "-inf/inf explicitly",
                                    name, i, d);
                }
                dst[i] = (float)d;
            }
        }
        a->kind = NPY_FLOAT32;
        a->data = dst;
        return 0;
    }
    int64_t *dst = malloc(n ? n * sizeof(int64_t) : 1);
    if (!dst) return zip_fail(err, errlen, "%s: out of memory (%zu elements)", name, n);
    int bits = 8 * dt->itemsize;
    for (size_t i = 0; i < n; i++) {
        uint64_t u = load_uint(src + i * (size_t)dt->itemsize, dt->itemsize, dt->big_endian);
        if (dt->kind == 'u') {
            if (u > (uint64_t)INT64_MAX) {
                free(dst);
                return zip_fail(err, errlen, "%s: element %zu (%llu) does not fit int64", name, i,
                                (unsigned long long)u);
            }
            dst[i] = (int64_t)u;
        } else if (bits < 64 && (u >> (bits - 1)) & 1u) {
            dst[i] = (int64_t)(u | (~(uint64_t)0 << bits)); /* sign-extend */
        } else {
            dst[i] = (int64_t)u;
        }
    }
    a->kind = NPY_INT64;
    a->data = dst;
    return 0;
}

/* ---- .npy ---------------------------------------------------------------- */

int npy_parse(const unsigned char *buf, size_t len, const char *name, int flags, npy_array *out,
              char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    if (len < 8 || memcmp(buf, magic, 6) != 0)
        return zip_fail(err, errlen, "%s: not a .npy file (bad magic%s)", name,
                        len < 8 ? ", file shorter than 8 bytes" : "");
    int major = buf[6], minor = buf[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0)
        return zip_fail(err, errlen,
                        "%s: unsupported .npy format version %d.%d (1.0, 2.0, 3.0 are read)", name,
                        major, minor);
    size_t prefix = major == 1 ? 10 : 12;
    if (len < prefix)
        return zip_fail(err, errlen, "%s: truncated .npy file (%zu bytes, header length missing)",
                        name, len);
    uint64_t hlen = major == 1 ? load_uint(buf + 8, 2, 0) : load_uint(buf + 8, 4, 0);
    if (hlen > NPY_MAX_HEADER_LEN)
        return zip_fail(err, errlen, "%s: header length %llu exceeds the limit of %d bytes", name,
                        (unsigned long long)hlen, NPY_MAX_HEADER_LEN);
    if (hlen > len - prefix)
        return zip_fail(err, errlen,
                        "%s: truncated .npy file: header needs %llu bytes, only %zu present", name,
                        (unsigned long long)hlen, len - prefix);
    const char *hdr = (const char *)buf + prefix;
    if (hlen == 0 || hdr[hlen - 1] != '\n')
        return zip_fail(err, errlen, "%s: malformed header: it must end with a newline", name);

    hdr_parser h = {hdr, hdr + hlen, name, err, errlen};
    char descr[32] = "", key[32];
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    if (expect(&h, '{') != 0) return -1;
    for (;;) {
        skip_ws(&h);
        if (h.p < h.end && *h.p == '}') {
            h.p++;
            break;
        }
        if (parse_string(&h, key, sizeof key) != 0 || expect(&h, ':') != 0) return -1;
        if (strcmp(key, "descr") == 0 && !have_descr) {
            skip_ws(&h);
            if (h.p < h.end && *h.p == '[')
                return zip_fail(err, errlen, "%s: structured dtypes are not supported", name);
            if (parse_string(&h, descr, sizeof descr) != 0) return -1;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if (parse_bool(&h, &out->fortran_order) != 0) return -1;
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (parse_shape(&h, &out->ndim, out->shape) != 0) return -1;
            have_shape = 1;
        } else {
            return zip_fail(err, errlen, "%s: malformed header: unexpected or repeated key '%s'",
                            name, key);
        }
        skip_ws(&h);
        if (h.p < h.end && *h.p == ',')
            h.p++;
        else if (h.p < h.end && *h.p == '}')
            continue;
        else
            return zip_fail(err, errlen, "%s: malformed header: expected ',' or '}'", name);
    }
    skip_ws(&h);
    if (h.p != h.end)
        return zip_fail(err, errlen, "%s: malformed header: text after the '}'", name);
    if (!have_descr || !have_fortran || !have_shape)
        return zip_fail(err, errlen, "%s: malformed header: missing key '%s'", name,
                        !have_descr     ? "descr"
                        : !have_fortran ? "fortran_order"
                                        : "shape");

    dtype_info dt = {0, 0, 0};
    if (parse_descr(descr, name, flags, &dt, err, errlen) != 0) return -1;
    snprintf(out->descr, sizeof out->descr, "%s", descr);

    int64_t size = 1;
    for (int i = 0; i < out->ndim; i++) {
        if (out->shape[i] != 0 && size > INT64_MAX / out->shape[i])
            return zip_fail(err, errlen, "%s: shape overflows int64 at dimension %d", name, i);
        size *= out->shape[i];
    }
    if (size > NPY_MAX_BYTES / 8)
        return zip_fail(err, errlen, "%s: array of %lld elements exceeds the limit of %lld bytes",
                        name, (long long)size, (long long)NPY_MAX_BYTES);
    out->size = size;
    uint64_t need = (uint64_t)size * (uint64_t)dt.itemsize;
    uint64_t have = len - prefix - hlen;
    char sbuf[256];
    if (have < need)
        return zip_fail(
            err, errlen,
            "%s: truncated: shape %s of '%s' needs %llu bytes of data, only %llu present", name,
            npy_shape_str(out->ndim, out->shape, sbuf, sizeof sbuf), descr,
            (unsigned long long)need, (unsigned long long)have);
    if (have > need)
        return zip_fail(
            err, errlen,
            "%s: size mismatch: shape %s of '%s' needs %llu bytes of data but %llu follow "
            "the header",
            name, npy_shape_str(out->ndim, out->shape, sbuf, sizeof sbuf), descr,
            (unsigned long long)need, (unsigned long long)have);

    /* Strides in elements; Fortran order keeps the file's layout. */
    int64_t s = 1;
    for (int k = 0; k < out->ndim; k++) {
        int i = out->fortran_order ? k : out->ndim - 1 - k;
        out->stride[i] = s;
        /* An empty array passes the size check whatever its other sizes. */
        if (__builtin_mul_overflow(s, out->shape[i] > 0 ? out->shape[i] : 1, &s))
            return zip_fail(err, errlen, "%s: shape %s is too large", name,
                            npy_shape_str(out->ndim, out->shape, sbuf, sizeof sbuf));
    }
    return convert(buf + prefix + hlen, &dt, out, err, errlen, name);
}

void npy_free(npy_array *a) {
    free(a->data);
    a->data = NULL;
}

/* Read a whole file into memory, refusing files above NPY_MAX_BYTES. */
static int read_file(const char *path, unsigned char **out, size_t *len, char *err, size_t errlen) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return zip_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return zip_fail(err, errlen, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)NPY_MAX_BYTES + NPY_MAX_HEADER_LEN + 64) {
        fclose(f);
        return zip_fail(err, errlen, "%s: file of %lld bytes exceeds the limit", path,
                        (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return zip_fail(err, errlen, "%s: out of memory (%zu bytes)", path, n);
    }
    size_t got = n ? fread(buf, 1, n, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (got != n || bad) {
        free(buf);
        return zip_fail(err, errlen, "%s: read error", path);
    }
    *out = buf;
    *len = n;
    return 0;
}

/* The file part of a spec: "file.npz:member" is cut at the last ':' that
 * follows ".npz"; *member points into spec (or at ""). malloc'd; NULL when
 * out of memory. */
char *npy_spec_path(const char *spec, const char **member) {
    const char *cut = NULL;
    for (const char *p = spec; (p = strstr(p, ".npz:")) != NULL; p++)
        cut = p + 4;
    size_t n = cut ? (size_t)(cut - spec) : strlen(spec);
    char *path = malloc(n + 1);
    if (!path) return NULL;
    memcpy(path, spec, n);
    path[n] = '\0';
    if (member) *member = cut ? cut + 1 : "";
    return path;
}

/* "x.npy" and "x" both name member x; NumPy stores array x as "x.npy". */
static int member_matches(const char *entry, const char *want) {
    size_t n = strlen(want), m = strlen(entry);
    if (strcmp(entry, want) == 0) return 1;
    return m == n + 4 && strncmp(entry, want, n) == 0 && strcmp(entry + n, ".npy") == 0;
}

/* Member names with ".npy" stripped, compared for sorting. */
static const zip_entry *dup_entries;

static size_t stem_len(const char *name) {
    size_t m = strlen(name);
    return m >= 4 && strcmp(name + m - 4, ".npy") == 0 ? m - 4 : m;
}

static int cmp_stem(const void *a, const void *b) {
    const char *x = dup_entries[*(const int64_t *)a].name;
    const char *y = dup_entries[*(const int64_t *)b].name;
    size_t nx = stem_len(x), ny = stem_len(y);
    int c = memcmp(x, y, nx < ny ? nx : ny);
    return c ? c : (nx > ny) - (nx < ny);
}

/* Two members that name one array ("x.npy" twice, or "x" and "x.npy"):
 * NumPy would read the last, silently; refuse. */
static int check_duplicates(const npy_archive *ar, char *err, size_t errlen) {
    if (ar->z.n < 2) return 0;
    int64_t *idx = malloc((size_t)ar->z.n * sizeof *idx);
    if (!idx) return zip_fail(err, errlen, "%s: out of memory", ar->path);
    for (int64_t i = 0; i < ar->z.n; i++)
        idx[i] = i;
    dup_entries = ar->z.entries;
    qsort(idx, (size_t)ar->z.n, sizeof *idx, cmp_stem);
    int rc = 0;
    for (int64_t i = 1; i < ar->z.n && rc == 0; i++)
        if (cmp_stem(&idx[i - 1], &idx[i]) == 0) {
            const char *a = ar->z.entries[idx[i - 1]].name, *b = ar->z.entries[idx[i]].name;
            rc = zip_fail(err, errlen,
                          "%s: members '%s' and '%s' name the same array '%.*s'; NumPy would "
                          "read only one of them: rewrite the archive with unique names",
                          ar->path, a, b, (int)stem_len(a), a);
        }
    free(idx);
    return rc;
}

int npy_archive_open(const char *path, npy_archive *ar, char *err, size_t errlen) {
    memset(ar, 0, sizeof *ar);
    ar->path = strdup(path);
    if (!ar->path) return zip_fail(err, errlen, "out of memory");
    if (read_file(path, &ar->buf, &ar->len, err, errlen) != 0) {
        npy_archive_close(ar);
        return -1;
    }
    if (ar->len < 4 || ar->buf[0] != 'P' || ar->buf[1] != 'K') {
        npy_archive_close(ar);
        return zip_fail(err, errlen, "%s: not a .npz archive (it does not start with PK)", path);
    }
    if (zip_open(ar->buf, ar->len, path, &ar->z, err, errlen) != 0 ||
        check_duplicates(ar, err, errlen) != 0) {
        npy_archive_close(ar);
        return -1;
    }
    return 0;
}

int64_t npy_archive_find(const npy_archive *ar, const char *name) {
    for (int64_t i = 0; i < ar->z.n; i++)
        if (member_matches(ar->z.entries[i].name, name)) return i;
    return -1;
}

int npy_archive_load(const npy_archive *ar, int64_t index, int flags, npy_array *out, char *err,
                     size_t errlen) {
    memset(out, 0, sizeof *out);
    if (index < 0 || index >= ar->z.n)
        return zip_fail(err, errlen, "%s: no member %lld", ar->path, (long long)index);
    const char *ename = ar->z.entries[index].name;
    size_t ml = strlen(ar->path) + 1 + stem_len(ename) + 1;
    char *mname = malloc(ml);
    if (!mname) return zip_fail(err, errlen, "%s: out of memory", ar->path);
    snprintf(mname, ml, "%s:%.*s", ar->path, (int)stem_len(ename), ename);
    unsigned char *data;
    size_t dlen;
    int rc = zip_extract(&ar->z, index, ar->path, (uint64_t)NPY_MAX_BYTES + NPY_MAX_HEADER_LEN + 64,
                         &data, &dlen, err, errlen);
    if (rc == 0) {
        rc = npy_parse(data, dlen, mname, flags, out, err, errlen);
        free(data);
    }
    free(mname);
    return rc;
}

void npy_archive_close(npy_archive *ar) {
    zip_close(&ar->z);
    free(ar->buf);
    free(ar->path);
    ar->buf = NULL;
    ar->path = NULL;
    ar->len = 0;
}

static int load_from_zip(const char *path, const char *member, const char *default_member,
                         int flags, npy_array *out, char *err, size_t errlen) {
    npy_archive ar;
    if (npy_archive_open(path, &ar, err, errlen) != 0) return -1;
    int64_t found = -1;
    const char *want = member[0] ? member : NULL;
    if (!want && ar.z.n == 1) {
        found = 0;
    } else {
        if (!want) want = default_member;
        if (want) found = npy_archive_find(&ar, want);
    }
    if (found < 0) {
        char names[512];
        size_t pos = 0;
        names[0] = '\0';
        for (int64_t i = 0; i < ar.z.n && pos + 1 < sizeof names; i++)
            pos += (size_t)snprintf(names + pos, sizeof names - pos, "%s%s", i ? ", " : "",
                                    ar.z.entries[i].name);
        if (want)
            zip_fail(err, errlen, "%s: no array '%s' in the archive (members: %s)", path, want,
                     ar.z.n ? names : "none");
        else
            zip_fail(err, errlen, "%s: archive holds %lld arrays (%s): name one as %s:NAME", path,
                     (long long)ar.z.n, ar.z.n ? names : "none", path);
        npy_archive_close(&ar);
        return -1;
    }
    int rc = npy_archive_load(&ar, found, flags, out, err, errlen);
    npy_archive_close(&ar);
    return rc;
}

int npy_load(const char *spec, const char *default_member, int flags, npy_array *out, char *err,
             size_t errlen) {
    memset(out, 0, sizeof *out);
    const char *member;
    char *path = npy_spec_path(spec, &member);
    if (!path) return zip_fail(err, errlen, "out of memory");
    unsigned char *buf;
    size_t len;
    if (read_file(path, &buf, &len, err, errlen) != 0) {
        free(path);
        return -1;
    }
    int rc;
    if (len >= 4 && buf[0] == 'P' && buf[1] == 'K') {
        free(buf); /* read again, indexed, by the archive reader */
        rc = load_from_zip(path, member, default_member, flags, out, err, errlen);
        free(path);
        return rc;
    } else if (member[0]) {
        rc = zip_fail(err, errlen, "%s: member '%s' requested but the file is not a .npz archive",
                      path, member);
    } else {
        rc = npy_parse(buf, len, path, flags, out, err, errlen);
    }
    free(buf);
    free(path);
    return rc;
}

/* ---- writer -------------------------------------------------------------- */

int npy_write(FILE *f, const char *path, const float *data, int ndim, const int64_t *shape,
              const int64_t *stride, char *err, size_t errlen) {
    if (ndim < 0 || ndim > NPY_MAX_NDIM)
        return zip_fail(err, errlen, "%s: cannot write an array of rank %d", path, ndim);
    char sbuf[256], hdr[512];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                     npy_shape_str(ndim, shape, sbuf, sizeof sbuf));
    /* Pad so that the data starts at a multiple of 64 bytes, as NumPy does. */
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    size_t hlen = padded - 10;
    memset(hdr + n, ' ', hlen - 1 - (size_t)n);
    hdr[hlen - 1] = '\n';

    unsigned char pre[10] = {0x93,
                             'N',
                             'U',
                             'M',
                             'P',
                             'Y',
                             1,
                             0,
                             (unsigned char)(hlen & 0xFF),
                             (unsigned char)(hlen >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, hlen, f) == hlen;

    int64_t size = 1;
    for (int i = 0; i < ndim; i++)
        size *= shape[i];
    int64_t idx[NPY_MAX_NDIM] = {0};
    unsigned char chunk[4096];
    size_t fill = 0;
    for (int64_t e = 0; ok && e < size; e++) {
        int64_t off = 0;
        for (int i = 0; i < ndim; i++)
            off += idx[i] * stride[i];
        uint32_t bits;
        memcpy(&bits, &data[off], 4);
        for (int b = 0; b < 4; b++)
            chunk[fill++] = (unsigned char)(bits >> (8 * b));
        if (fill == sizeof chunk) {
            ok = fwrite(chunk, 1, fill, f) == fill;
            fill = 0;
        }
        for (int i = ndim - 1; i >= 0; i--) {
            if (++idx[i] < shape[i]) break;
            idx[i] = 0;
        }
    }
    if (ok && fill) ok = fwrite(chunk, 1, fill, f) == fill;
    if (ok) ok = fflush(f) == 0;
    if (!ok) return zip_fail(err, errlen, "%s: write failed: %s", path, strerror(errno));
    return 0;
}
