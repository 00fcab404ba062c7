/* zipread.c - ZIP directory parsing and member extraction (see zipread.h).
 * Layout references: APPNOTE.TXT sections 4.3.7 (local header), 4.3.12
 * (central header), 4.3.14-16 (ZIP64 and classic end records), 4.5.3 (ZIP64
 * extra field). All multi-byte fields are little-endian. */
#include "zipread.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIG_LOCAL   0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END     0x06054b50u
#define SIG_END64   0x06064b50u
#define SIG_LOC64   0x07064b50u

#define LOCAL_HDR   30 /* fixed part of a local header */
#define CENTRAL_HDR 46 /* fixed part of a central directory header */
#define END_HDR     22
#define END64_HDR   56
#define LOC64_HDR   20

/* Deflate cannot expand by more than about 1032:1; a member that declares a
 * larger ratio lies about its size (or is a bomb) and is refused early. */
#define MAX_DEFLATE_RATIO 1032u

static uint16_t rd16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t rd64(const unsigned char *p) {
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

int zip_fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* True when [off, off + n) lies within [0, end). */
static int in_range(uint64_t off, uint64_t n, uint64_t end) {
    return off <= end && n <= end - off;
}

/* Find the classic end record, scanning back over at most a 65535-byte
 * comment. @return its offset, or -1. */
static int64_t find_end_record(const unsigned char *buf, size_t len) {
    if (len < END_HDR) return -1;
    size_t lowest = len - END_HDR > 65535 ? len - END_HDR - 65535 : 0;
    for (size_t pos = len - END_HDR + 1; pos-- > lowest;) {
        if (rd32(buf + pos) == SIG_END && pos + END_HDR + rd16(buf + pos + 20) == len)
            return (int64_t)pos;
    }
    return -1;
}

/* Read the ZIP64 extra field (id 0x0001) of a central header: it holds, in
 * this order, only those of size, comp_size, local_offset whose 32-bit field
 * is 0xFFFFFFFF. */
static int read_zip64_extra(const unsigned char *x, size_t xlen, zip_entry *e, int need_size,
                            int need_comp, int need_off, const char *name, char *err,
                            size_t errlen) {
    size_t pos = 0;
    while (pos + 4 <= xlen) {
        uint16_t id = rd16(x + pos), sz = rd16(x + pos + 2);
        if (sz > xlen - pos - 4)
            return zip_fail(err, errlen, "%s: member '%s': extra field overruns its header", name,
                            e->name);
        if (id == 0x0001) {
            const unsigned char *f = x + pos + 4;
            size_t want = 8u * (size_t)(need_size + need_comp + need_off);
            if (sz < want)
                return zip_fail(err, errlen,
                                "%s: member '%s': ZIP64 extra field has %u bytes, needs %zu", name,
                                e->name, (unsigned)sz, want);
            if (need_size) e->size = rd64(f), f += 8;
            if (need_comp) e->comp_size = rd64(f), f += 8;
            if (need_off) e->local_offset = rd64(f);
            return 0;
        }
        pos += 4 + (size_t)sz;
    }
    if (need_size || need_comp || need_off)
        return zip_fail(err, errlen,
                        "%s: member '%s': sizes are 0xFFFFFFFF but no ZIP64 extra field", name,
                        e->name);
    return 0;
}

int zip_open(const unsigned char *buf, size_t len, const char *name, zip_archive *z, char *err,
             size_t errlen) {
    memset(z, 0, sizeof *z);
    z->buf = buf;
    z->len = len;
    int64_t endpos = find_end_record(buf, len);
    if (endpos < 0)
        return zip_fail(err, errlen,
                        "%s: not a valid .npz (zip) archive: no end of central directory", name);
    const unsigned char *end = buf + endpos;
    uint64_t n = rd16(end + 10), cd_size = rd32(end + 12), cd_off = rd32(end + 16);
    uint64_t cd_limit = (uint64_t)endpos; /* the directory ends before the end record */
    if (rd16(end + 4) != 0 && rd16(end + 4) != 0xFFFF)
        return zip_fail(err, errlen, "%s: multi-disk zip archives are not supported", name);

    if (endpos >= LOC64_HDR && rd32(buf + endpos - LOC64_HDR) == SIG_LOC64) {
        const unsigned char *loc = buf + endpos - LOC64_HDR;
        uint64_t off64 = rd64(loc + 8);
        if (!in_range(off64, END64_HDR, (uint64_t)endpos - LOC64_HDR) ||
            rd32(buf + off64) != SIG_END64)
            return zip_fail(err, errlen, "%s: ZIP64 end record offset %llu is invalid", name,
                            (unsigned long long)off64);
        const unsigned char *e64 = buf + off64;
        n = rd64(e64 + 32);
        cd_size = rd64(e64 + 40);
        cd_off = rd64(e64 + 48);
        cd_limit = off64;
    } else if (n == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
        return zip_fail(err, errlen,
                        "%s: zip end record needs ZIP64 but the ZIP64 locator is missing", name);
    }
    if (!in_range(cd_off, cd_size, cd_limit))
        return zip_fail(err, errlen,
                        "%s: central directory (offset %llu, %llu bytes) lies outside the file "
                        "(%zu bytes): truncated or corrupt",
                        name, (unsigned long long)cd_off, (unsigned long long)cd_size, len);
    if (n > cd_size / CENTRAL_HDR)
        return zip_fail(err, errlen, "%s: zip directory claims %llu entries in %llu bytes", name,
                        (unsigned long long)n, (unsigned long long)cd_size);
    z->cd_offset = cd_off;
    z->entries = calloc(n ? (size_t)n : 1, sizeof *z->entries);
    if (!z->entries)
        return zip_fail(err, errlen, "%s: out of memory reading the zip directory", name);
    z->n = (int64_t)n;

    uint64_t pos = cd_off, cd_end = cd_off + cd_size;
    for (uint64_t i = 0; i < n; i++) {
        if (!in_range(pos, CENTRAL_HDR, cd_end) || rd32(buf + pos) != SIG_CENTRAL) {
            zip_close(z);
            return zip_fail(err, errlen, "%s: zip directory entry %llu is corrupt", name,
                            (unsigned long long)i);
        }
        const unsigned char *h = buf + pos;
        zip_entry *e = &z->entries[i];
        uint64_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
        if (!in_range(pos + CENTRAL_HDR, nlen + xlen + clen, cd_end)) {
            zip_close(z);
            return zip_fail(err, errlen, "%s: zip directory entry %llu overruns the directory",
                            name, (unsigned long long)i);
        }
        e->flags = rd16(h + 8);
        e->method = rd16(h + 10);
        e->crc32 = rd32(h + 16);
        e->comp_size = rd32(h + 20);
        e->size = rd32(h + 24);
        e->local_offset = rd32(h + 42);
        e->name = malloc((size_t)nlen + 1);
        if (!e->name) {
            zip_close(z);
            return zip_fail(err, errlen, "%s: out of memory reading the zip directory", name);
        }
        memcpy(e->name, h + CENTRAL_HDR, (size_t)nlen);
        e->name[nlen] = '\0';
        if (strlen(e->name) != nlen) {
            zip_close(z);
            return zip_fail(err, errlen, "%s: zip member %llu has a NUL byte in its name", name,
                            (unsigned long long)i);
        }
        for (uint64_t c = 0; c < nlen; c++) {
            unsigned char ch = (unsigned char)e->name[c];
            if (ch < 0x20 || ch == 0x7F) {
                zip_close(z);
                return zip_fail(err, errlen,
                                "%s: zip member %llu has a control character in its name", name,
                                (unsigned long long)i);
            }
        }
        if (read_zip64_extra(h + CENTRAL_HDR + nlen, (size_t)xlen, e, e->size == 0xFFFFFFFFu,
                             e->comp_size == 0xFFFFFFFFu, e->local_offset == 0xFFFFFFFFu, name, err,
                             errlen) != 0) {
            zip_close(z);
            return -1;
        }
        pos += CENTRAL_HDR + nlen + xlen + clen;
    }
    return 0;
}

/* Inflate a raw deflate stream of e->comp_size bytes into exactly e->size
 * bytes. One byte of headroom detects a stream that inflates further. */
static int inflate_member(const unsigned char *src, const zip_entry *e, unsigned char *dst,
                          const char *name, char *err, size_t errlen) {
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -MAX_WBITS) != Z_OK)
        return zip_fail(err, errlen, "%s: member '%s': zlib initialisation failed", name, e->name);
    uint64_t in_left = e->comp_size, out_left = e->size + 1;
    const unsigned char *in = src;
    unsigned char *out = dst;
    int ret = Z_OK;
    while (ret != Z_STREAM_END) {
        if (s.avail_in == 0 && in_left > 0) {
            s.next_in = (unsigned char *)in;
            s.avail_in = in_left > 0x40000000u ? 0x40000000u : (uInt)in_left;
            in += s.avail_in;
            in_left -= s.avail_in;
        }
        if (s.avail_out == 0 && out_left > 0) {
            s.next_out = out;
            s.avail_out = out_left > 0x40000000u ? 0x40000000u : (uInt)out_left;
            out += s.avail_out;
            out_left -= s.avail_out;
        }
        uInt before_in = s.avail_in, before_out = s.avail_out;
        ret = inflate(&s, Z_NO_FLUSH);
        if ((uint64_t)s.total_out > e->size) {
            inflateEnd(&s);
            return zip_fail(err, errlen,
                            "%s: member '%s' inflates to more than its declared size of %llu bytes "
                            "(lying header or decompression bomb)",
                            name, e->name, (unsigned long long)e->size);
        }
        if (ret == Z_STREAM_END) break;
        if (ret == Z_BUF_ERROR && s.avail_in == before_in && s.avail_out == before_out &&
            in_left == 0 && s.avail_in == 0) {
            inflateEnd(&s);
            return zip_fail(err, errlen, "%s: member '%s': deflate data ends early (truncated)",
                            name, e->name);
        }
        if (ret != Z_OK && ret != Z_BUF_ERROR) {
            const char *why = s.msg ? s.msg : "invalid data";
            char msg[128];
            snprintf(msg, sizeof msg, "%s", why);
            inflateEnd(&s);
            return zip_fail(err, errlen, "%s: member '%s': corrupt deflate data (%s)", name,
                            e->name, msg);
        }
    }
    uint64_t produced = (uint64_t)s.total_out;
    inflateEnd(&s);
    if (produced != e->size)
        return zip_fail(err, errlen, "%s: member '%s' inflates to %llu bytes but declares %llu",
                        name, e->name, (unsigned long long)produced, (unsigned long long)e->size);
    return 0;
}

int zip_extract(const zip_archive *z, int64_t i, const char *name, uint64_t limit,
                unsigned char **out, size_t *out_len, char *err, size_t errlen) {
    *out = NULL;
    *out_len = 0;
    if (i < 0 || i >= z->n)
        return zip_fail(err, errlen, "%s: no zip member %lld", name, (long long)i);
    const zip_entry *e = &z->entries[i];
    if (e->flags & 1u)
        return zip_fail(err, errlen, "%s: member '%s' is encrypted (not supported)", name, e->name);
    if (e->method != 0 && e->method != 8)
        return zip_fail(err, errlen,
                        "%s: member '%s' uses compression method %u (only stored and deflate are "
                        "supported)",
                        name, e->name, (unsigned)e->method);
    if (e->size > limit)
        return zip_fail(err, errlen,
                        "%s: member '%s' declares %llu bytes, more than the limit of %llu", name,
                        e->name, (unsigned long long)e->size, (unsigned long long)limit);
    if (e->method == 0 && e->comp_size != e->size)
        return zip_fail(
            err, errlen, "%s: stored member '%s' has compressed size %llu but size %llu (corrupt)",
            name, e->name, (unsigned long long)e->comp_size, (unsigned long long)e->size);
    if (e->method == 8 && e->size / MAX_DEFLATE_RATIO > e->comp_size + 1)
        return zip_fail(
            err, errlen,
            "%s: member '%s' declares %llu bytes from %llu compressed bytes, beyond what "
            "deflate can produce (lying header or decompression bomb)",
            name, e->name, (unsigned long long)e->size, (unsigned long long)e->comp_size);

    /* The local header: only its name and extra lengths are used (its sizes
     * may be zero with a data descriptor, or 0xFFFFFFFF with ZIP64). */
    uint64_t off = e->local_offset;
    if (!in_range(off, LOCAL_HDR, z->cd_offset) || rd32(z->buf + off) != SIG_LOCAL)
        return zip_fail(err, errlen,
                        "%s: member '%s': local header at offset %llu is missing or corrupt", name,
                        e->name, (unsigned long long)off);
    const unsigned char *h = z->buf + off;
    uint64_t nlen = rd16(h + 26), xlen = rd16(h + 28);
    uint64_t data = off + LOCAL_HDR + nlen + xlen;
    if (!in_range(off + LOCAL_HDR, nlen + xlen, z->cd_offset) || nlen != strlen(e->name) ||
        memcmp(h + LOCAL_HDR, e->name, (size_t)nlen) != 0)
        return zip_fail(err, errlen, "%s: member '%s': local header does not match the directory",
                        name, e->name);
    if (!in_range(data, e->comp_size, z->cd_offset))
        return zip_fail(
            err, errlen,
            "%s: member '%s' claims %llu bytes of data at offset %llu, past the end of the "
            "member area (truncated or lying size)",
            name, e->name, (unsigned long long)e->comp_size, (unsigned long long)data);
    if (e->size > (uint64_t)SIZE_MAX - 1)
        return zip_fail(err, errlen, "%s: member '%s' is too large for this machine", name,
                        e->name);

    unsigned char *buf = malloc((size_t)e->size + 1);
    if (!buf)
        return zip_fail(err, errlen, "%s: out of memory for member '%s' (%llu bytes)", name,
                        e->name, (unsigned long long)e->size);
    if (e->method == 0) {
        memcpy(buf, z->buf + data, (size_t)e->size);
    } else if (inflate_member(z->buf + data, e, buf, name, err, errlen) != 0) {
        free(buf);
        return -1;
    }
    uint32_t crc = (uint32_t)crc32_z(0L, buf, (size_t)e->size);
    if (crc != e->crc32) {
        free(buf);
        return zip_fail(
            err, errlen,
            "%s: member '%s' fails its CRC-32 check (stored %08x, computed %08x): corrupt", name,
            e->name, (unsigned)e->crc32, (unsigned)crc);
    }
    *out = buf;
    *out_len = (size_t)e->size;
    return 0;
}

void zip_close(zip_archive *z) {
    if (z->entries) {
        for (int64_t i = 0; i < z->n; i++)
            free(z->entries[i].name);
        free(z->entries);
    }
    z->entries = NULL;
    z->n = 0;
}
