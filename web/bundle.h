/*
 * bundle: safe extraction of a firmware set sent as one archive (tar, tar.gz
 * or zip) for POST /api/v1/firmware[/validate].
 *
 * The archive holds manifest.json and the region files, at its root or in a
 * top-level directory (the directory holding manifest.json is the set's
 * directory). Extraction never goes through libarchive's own extract-to-disk
 * code: every entry's path is checked and rebuilt here, and only two levels
 * are ever written ("file" and "dir/file", both safe catalog names) with
 * O_EXCL | O_NOFOLLOW below a directory fd.
 *
 * Refused (the bundle as a whole, message naming the entry and the problem):
 * absolute paths, ".." components, symbolic and hard links, devices, FIFOs,
 * sockets, the same path twice, more than max_entries entries, more than
 * max_bytes of unpacked data (zip/gzip bombs: every entry's data is counted
 * as it is decompressed, used or not, so the work is bounded too), unreadable
 * or unknown archive formats, no manifest.json, manifest.json in two
 * directories. Files the manifest does not use are not errors: each is
 * listed in warnings.
 *
 * With allow_build, a bundle without the station's manifest.json is a build's
 * output (an ESP-IDF build/, a PlatformIO env directory, an Arduino export, an
 * ESP Web Tools manifest.json with builds[]; recognised later by buildsrc):
 * entries up to BUNDLE_MAX_DEPTH directories deep are extracted, each path
 * component a safe name (or '.' and a safe name, as in ".pio"), and the result
 * says build.
 *
 * No globals; one call per archive; safe to run on any thread.
 */
#ifndef ESPSTATION_BUNDLE_H
#define ESPSTATION_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.h"

#define BUNDLE_MAX_ENTRIES 1000 /* the daemon's limit; regions are at most 32 */
#define BUNDLE_MAX_WARNINGS 16  /* further ignored entries are summed up in one line */
#define BUNDLE_MAX_DEPTH 8      /* path components of a build tree's entries */

struct bundle_limits {
    size_t max_entries; /* archive entries of any kind */
    uint64_t max_bytes; /* unpacked data of all entries together */
    bool allow_build;   /* a build's output instead of manifest.json (see above) */
};

struct bundle_result {
    /* on success: "" (manifest.json at the root) or the top-level directory holding it;
     * the set's directory is <dir>/<root> */
    char root[CATALOG_NAME_MAX];
    bool build; /* allow_build: no station manifest; <dir>/<root> holds a build's output */
    size_t n_entries;
    uint64_t bytes; /* unpacked data read */
    /* "bundle entry "docs/x.txt" ignored: the manifest does not use it"; owned */
    char **warnings;
    size_t n_warnings;
    /* on failure: what happened, naming the entry, and what to do */
    char err[384];
};

/*
 * True if a Content-Type (parameters allowed) announces an archive body:
 * application/x-tar, application/gzip, application/x-gzip,
 * application/x-compressed-tar, application/zip, application/x-zip-compressed
 * or application/octet-stream. The format itself is always recognised from
 * the content.
 */
bool bundle_content_type(const char *content_type);

/*
 * Extracts the archive in the file at path (or in memory) into dir, an existing
 * empty directory. Returns 0; -EINVAL for an unreadable or unsafe bundle,
 * -EFBIG over a limit (res->err says which entry and what to do in both cases);
 * -ENOMEM, or another -errno when dir cannot be written (res->err too). Whatever
 * the outcome the caller removes dir; res must be freed with bundle_result_free().
 */
int bundle_extract_file(const char *path, const char *dir, const struct bundle_limits *lim,
                        struct bundle_result *res);
int bundle_extract_mem(const void *data, size_t len, const char *dir,
                       const struct bundle_limits *lim, struct bundle_result *res);

void bundle_result_free(struct bundle_result *res); /* leaves an empty result */

#endif
