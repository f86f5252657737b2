/*
 * zcompress: zopfli or zlib level 9, whichever is smaller, as a zlib stream
 * (see zcompress.h). Owns nothing beyond the call; thread-safe (the catalog
 * import runs on the upload thread).
 *
 * zopfli's own allocations are not checked by the library (it would crash on
 * out-of-memory like any malloc it does not test); the images here are at
 * most a few MB, and its working set is a small multiple of that.
 */
#include "zcompress.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zopfli/zopfli.h>

#include "esp_loader.h"

const char *zcompress_method_to_string(enum zcompress_method m)
{
    switch (m) {
    case ZCOMPRESS_ZLIB9:
        return "zlib-9";
    case ZCOMPRESS_ZOPFLI:
        return "zopfli";
    }
    return "unknown";
}

/* True if z is one zlib stream that inflates to exactly data. */
static bool inflates_to(const uint8_t *z, size_t zlen, const uint8_t *data, size_t len)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    if (inflateInit(&s) != Z_OK)
        return false;
    uint8_t buf[16384];
    size_t pos = 0;
    bool ok = false;
    s.next_in = (Bytef *)(uintptr_t)z;
    s.avail_in = (uInt)zlen;
    for (;;) {
        s.next_out = buf;
        s.avail_out = sizeof(buf);
        int rc = inflate(&s, Z_NO_FLUSH);
        size_t got = sizeof(buf) - s.avail_out;
        if (got > len - pos || (got && memcmp(buf, data + pos, got) != 0))
            break;
        pos += got;
        if (rc == Z_STREAM_END) {
            ok = pos == len && s.avail_in == 0;
            break;
        }
        if (rc != Z_OK || (got == 0 && s.avail_in == 0))
            break;
    }
    inflateEnd(&s);
    return ok;
}

int zcompress_best(const uint8_t *data, size_t len, int iterations, uint8_t **out, size_t *out_len,
                   enum zcompress_method *method)
{
    if (!out || !out_len || (len && !data) || iterations < 1 || iterations > 100 ||
        len > (size_t)UINT32_MAX)
        return -EINVAL;
    *out = NULL;
    *out_len = 0;
    uint8_t *z9 = NULL;
    size_t z9len = 0;
    int rc = esp_region_compress(data, len, &z9, &z9len);
    if (rc < 0)
        return rc;
    if (z9len < ZCOMPRESS_MIN_ZLIB) {
        *out = z9;
        *out_len = z9len;
        if (method)
            *method = ZCOMPRESS_ZLIB9;
        return 0;
    }

    ZopfliOptions zo;
    ZopfliInitOptions(&zo);
    zo.numiterations = iterations;
    unsigned char *zz = NULL;
    size_t zzlen = 0;
    static const unsigned char empty[1];
    ZopfliCompress(&zo, ZOPFLI_FORMAT_ZLIB, len ? data : empty, len, &zz, &zzlen);
    if (zz && zzlen && zzlen < z9len && inflates_to(zz, zzlen, data, len)) {
        free(z9);
        *out = zz;
        *out_len = zzlen;
        if (method)
            *method = ZCOMPRESS_ZOPFLI;
        return 0;
    }
    free(zz);
    *out = z9;
    *out_len = z9len;
    if (method)
        *method = ZCOMPRESS_ZLIB9;
    return 0;
}
