/* zipread.h - read members of a ZIP archive held in memory (for .npz).
 *
 * Supports what NumPy's np.savez / np.savez_compressed produce through
 * Python's zipfile: stored and deflate members, ZIP64 end records and extra
 * fields (sizes or offsets set to 0xFFFFFFFF), data descriptors (flag bit 3).
 * The central directory is authoritative for sizes; every offset and size is
 * checked against the buffer, CRC-32 and sizes are verified after
 * extraction, and inflation stops at the declared size (decompression bombs).
 */
#ifndef ATTN_CLI_ZIPREAD_H
#define ATTN_CLI_ZIPREAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct zip_entry {
    char *name; /* NUL-terminated copy of the member name */
    uint16_t flags, method;
    uint32_t crc32;
    uint64_t comp_size, size, local_offset;
} zip_entry;

typedef struct zip_archive {
    const unsigned char *buf; /* not owned */
    size_t len;
    uint64_t cd_offset; /* members' data lies before the central directory */
    int64_t n;
    zip_entry *entries;
} zip_archive;

/* Parse the directory of an archive of len bytes at buf (kept, not copied).
 * name is used in messages. @return 0, or -1 with a message in err. */
int zip_open(const unsigned char *buf, size_t len, const char *name, zip_archive *z, char *err,
             size_t errlen);

/* Extract entry i into a new malloc'd buffer (*out, *out_len bytes).
 * Refuses members larger than limit bytes before allocating.
 * @return 0, or -1 with a message naming the member in err. */
int zip_extract(const zip_archive *z, int64_t i, const char *name, uint64_t limit,
                unsigned char **out, size_t *out_len, char *err, size_t errlen);

/* Free what zip_open allocated (a zeroed archive is fine). */
void zip_close(zip_archive *z);

/* Write a printf-style message to err (errlen bytes) and return -1: the error
 * convention of the reader (zipread.c, npy.c). */
int zip_fail(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif /* ATTN_CLI_ZIPREAD_H */
