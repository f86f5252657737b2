/*
 * records_blobs: the line's shared firmware files and the bulk update leases
 * (schema 7, a part of the records API in its own file; records.h's rules on
 * threads, errors and time apply).
 *
 * Blobs: a firmware file is known to the line by its SHA-256 (content
 * addressed). A row (sha256, station) says that station holds the file in its
 * own catalog and serves it at GET <address>/api/v1/blobs/<sha256> (address:
 * the station's row in `stations`). The manifests themselves are the records'
 * `firmware` rows (records_firmware_*), shared by every station of the line.
 *
 * Bulk leases: a running bulk update is run by one station, its owner, until
 * lease_until (unix ms). The owner renews the lease while it runs the bulk; a
 * station that finds a running bulk whose lease ran out (its owner died) takes
 * it over with one conditional UPDATE, so of several stations trying at once
 * exactly one wins.
 */
#ifndef RECORDS_BLOBS_H
#define RECORDS_BLOBS_H

#include <stdint.h>

#include "records.h"

#define RECORDS_SHA256_LEN 65 /* 64 lowercase hex digits */
#ifndef RECORDS_ADDRESS_LEN
#define RECORDS_ADDRESS_LEN 256 /* a station's REST base URL (also records_line.h) */
#endif

/* This station holds the file sha256 (lowercase hex) of size bytes. Adding it
 * again updates the size. -EINVAL for a malformed hash or a negative size. */
int records_blob_put(struct records *r, const char *sha256, int64_t size,
                     struct records_error *err);

/* This station no longer holds sha256 (0 also when it did not). */
int records_blob_drop(struct records *r, const char *sha256, struct records_error *err);

/* Another station that holds a blob, with what the line knows of it. */
struct records_blob_holder {
    char station[RECORDS_STATION_LEN];
    char address[RECORDS_ADDRESS_LEN]; /* base URL of its REST API, "" unknown */
    int64_t heartbeat_at;              /* unix ms, 0 when the station has no row */
    int64_t size;
};

typedef int (*records_blob_holder_cb)(const struct records_blob_holder *h, void *ctx);

/* The other stations holding sha256: those that heartbeat at or after
 * fresh_since first (newest heartbeat first), then the others. Returns rows
 * delivered. */
int records_blob_holders(struct records *r, const char *sha256, int64_t fresh_since,
                         records_blob_holder_cb cb, void *ctx, struct records_error *err);

typedef int (*records_blob_cb)(const char *sha256, int64_t size, void *ctx);

/* The blobs this station holds, by hash. Returns rows delivered. */
int records_blob_list_mine(struct records *r, records_blob_cb cb, void *ctx,
                           struct records_error *err);

/* ---- bulk leases -------------------------------------------------------------------- */

struct records_bulk_lease {
    int64_t id;
    char owner[RECORDS_STATION_LEN]; /* "" none */
    int64_t lease_until;             /* unix ms, 0 none */
};

/*
 * Takes the running bulk id for this station until now + lease_ms, when it has
 * no owner, this station already owns it, or its lease ran out (lease_until <
 * now). One conditional UPDATE: of stations claiming at once, one wins.
 * Returns 1 won, 0 not (another station's lease runs, or the bulk is not
 * running), -errno. *prev (may be NULL) gets the owner and lease before.
 */
int records_bulk_claim(struct records *r, int64_t id, int64_t lease_ms,
                       struct records_bulk_lease *prev, struct records_error *err);

/* Extends this station's lease of the running bulk id to now + lease_ms.
 * Returns 1, or 0 when the bulk is no longer this station's or not running
 * (another station took it over, or it ended). */
int records_bulk_renew(struct records *r, int64_t id, int64_t lease_ms, struct records_error *err);

typedef int (*records_bulk_lease_cb)(const struct records_bulk_lease *l, void *ctx);

/* Every running bulk with its owner and lease, oldest first. Returns rows delivered. */
int records_bulk_leases(struct records *r, records_bulk_lease_cb cb, void *ctx,
                        struct records_error *err);

#endif
