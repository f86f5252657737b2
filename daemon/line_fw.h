/*
 * line_fw: firmware shared across a line of stations (issue 12).
 *
 * Publishing: every set of this station's catalog is described in the records'
 * `firmware` table (shared by the line on PostgreSQL) -- its manifest and each
 * file's SHA-256, MD5 and size -- and each file is registered in `blobs` with this
 * station as a holder (records_blobs.h). Done at start, after every catalog
 * change and after every fetch; blobs this station no longer holds are dropped.
 *
 * Fetching: a set that is in the shared table but not in the local catalog (a
 * profile names it, a flash job or an OTA target needs it) is fetched from a
 * station that holds its files (GET <address>/api/v1/blobs/<sha256>, fresh
 * heartbeats first, with this station's api.token when it has one) by a worker
 * thread, so the loop thread never waits on the network. Every file is checked
 * against the manifest's size, SHA-256 and MD5 before use; the set then goes
 * through the catalog's own import (validated, stored atomically, cached for
 * good), this station registers as a holder too and a "firmware.fetched" event
 * names where each file came from. A hash mismatch or no reachable holder is an
 * error naming the set, the file and the station(s); jobs waiting for the set
 * then fail with it. One fetch per set at a time; a failed set is not tried again
 * for LINE_FW_RETRY_MS.
 *
 * Threads: everything here runs on the loop thread except the fetch workers,
 * which touch only their own fetch (and the catalog, which is thread-safe); they
 * hand it back through a pipe. NULL is accepted wherever a struct line_fw * is.
 *
 * Files: line_fw.c (fetching), line_fw_publish.c (publishing, line_fw_find_blob),
 * line_fw_desc.c (the description's text, written and read), line_fetch.c (the
 * HTTP client).
 */
#ifndef ESPSTATION_LINE_FW_H
#define ESPSTATION_LINE_FW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct station;
struct loop;
struct catalog;
struct line_fw;

#define LINE_FW_RETRY_MS 5000
/* A station whose heartbeat is older than this is asked last. */
#define LINE_FW_FRESH_MS 60000

/* NULL on failure (logged): the station then neither publishes nor fetches. */
struct line_fw *line_fw_new(struct station *st, struct loop *loop);
/* Waits for the fetches in flight (bounded by their socket timeouts). */
void line_fw_free(struct line_fw *lf);

/* Describes every local set in the records and registers its blobs. */
void line_fw_publish(struct line_fw *lf);

/* name@version is in the line's shared firmware table. */
bool line_fw_known(struct line_fw *lf, const char *name, const char *version);

/* Called on the loop thread when a fetch ends: rc 0 (the set is in the local catalog)
 * or -errno with the message. data: the waiter's copy of what it gave line_fw_need. */
typedef void (*line_fw_done_fn)(void *ctx, int64_t key, int rc, const char *err, const void *data);

/*
 * The set name@version is missing from the local catalog: fetch it from the line.
 * Returns 1 when a fetch runs (done, if not NULL, is called when it ends, with key
 * and a copy of data[0..len)), 0 when the line does not know the set either, or
 * -errno with err (no holder, the last fetch failed less than LINE_FW_RETRY_MS ago:
 * its message, ...). A job's key is its records id: the fetch is noted in its log.
 */
int line_fw_need(struct line_fw *lf, const char *name, const char *version, line_fw_done_fn done,
                 void *ctx, int64_t key, const void *data, size_t len, char *err, size_t errlen);

/* The station (one of them) a running fetch of name@version asks, "" none. */
const char *line_fw_fetching_from(struct line_fw *lf, const char *name, const char *version);

/* The local catalog file whose SHA-256 is sha (64 lowercase hex): its path (in path,
 * size n) and size. 0, -ENOENT, -EINVAL (bad hash), -ENOMEM. Any thread. */
int line_fw_find_blob(struct catalog *cat, const char *sha, char *path, size_t n, int64_t *size);

#endif
