/*
 * api_blobs.c: GET /api/v1/blobs/{sha256} -- a firmware file this station holds, by
 * its SHA-256 (content addressed), for the other stations of the line (line_fw.h).
 * Read-only, under the read policy of every GET (the token when
 * api.read_requires_token). The file is sent as stored: the fetching station checks
 * it against the line's manifest (size, SHA-256, MD5) before using it, so a copy
 * damaged on this disk is refused there, by hash.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_priv.h"
#include "catalog.h"
#include "line_fw.h"
#include "station.h"

/* Largest file served (the catalog's own limit). */
#define BLOB_MAX CATALOG_MAX_FILE_BYTES

API_HANDLER(api_h_blob)
{
    (void)rq;
    const char *in = p->n ? p->v[0] : "";
    char sha[65];
    size_t n = strlen(in);
    bool ok = n == 64;
    for (size_t i = 0; ok && i < n; i++) {
        ok = isxdigit((unsigned char)in[i]) != 0;
        sha[i] = (char)tolower((unsigned char)in[i]);
    }
    if (!ok) {
        api_error(resp, 400, "bad_request", "sha256",
                  "a blob is named by its SHA-256: 64 hex digits");
        return;
    }
    sha[64] = '\0';
    char path[4096];
    int64_t size = 0;
    int rc = line_fw_find_blob(station_catalog(api_station(a)), sha, path, sizeof(path), &size);
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "sha256",
                  "this station holds no firmware file with SHA-256 %s", sha);
        return;
    }
    if (rc < 0 || size < 0 || size > (int64_t)BLOB_MAX) {
        api_error(resp, 500, "internal", NULL, "cannot look up blob %s: %s", sha,
                  strerror(rc < 0 ? -rc : EFBIG));
        return;
    }
    FILE *f = fopen(path, "rb");
    uint8_t *buf = malloc((size_t)size + 1);
    size_t got = f && buf ? fread(buf, 1, (size_t)size + 1, f) : 0;
    if (f)
        fclose(f);
    if (!f || !buf || got > (size_t)size) {
        free(buf);
        api_error(resp, 500, "internal", NULL, "cannot read blob %s (%s)", sha, path);
        return;
    }
    /* a short read is sent as it is: the fetching station refuses it by size and hash */
    free(resp->body);
    resp->body = (char *)buf;
    resp->len = got;
    resp->status = 200;
    resp->content_type = "application/octet-stream";
}
