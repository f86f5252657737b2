/*
 * records_blobs.c: the line's content-addressed firmware files (which station
 * holds which SHA-256) and the bulk update leases. See records_blobs.h.
 * Statements go through rec_prep (records_priv.h); the SQL is written once for
 * SQLite and PostgreSQL.
 */
#include "records_blobs.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "records_priv.h"

static int check_sha(const char *sha, struct records_error *err)
{
    size_t n = sha ? strlen(sha) : 0;
    if (n != 64)
        return rec_set_err(err, -EINVAL, "records: a blob hash is 64 hex digits (SHA-256)");
    for (size_t i = 0; i < n; i++)
        if (!((sha[i] >= '0' && sha[i] <= '9') || (sha[i] >= 'a' && sha[i] <= 'f')))
            return rec_set_err(err, -EINVAL,
                               "records: a blob hash is 64 lowercase hex digits (SHA-256)");
    return 0;
}

static const char sql_blob_put[] =
    "INSERT INTO blobs (sha256, size, station, created_at) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (sha256, station) DO UPDATE SET size = excluded.size";

int records_blob_put(struct records *r, const char *sha256, int64_t size, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_sha(sha256, err)) < 0)
        return ret;
    if (size < 0)
        return rec_set_err(err, -EINVAL, "records: a blob's size is not negative");
    if ((ret = rec_prep(r, sql_blob_put, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, sha256);
    rdb_bind_int64(st, 2, size);
    rdb_bind_text(st, 3, r->station);
    rdb_bind_int64(st, 4, records_now_ms(r));
    return rec_write_done(r, st, rdb_step(st), "cannot record a held blob", err);
}

static const char sql_blob_drop[] = "DELETE FROM blobs WHERE sha256 = ?1 AND station = ?2";

int records_blob_drop(struct records *r, const char *sha256, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_sha(sha256, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_blob_drop, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, sha256);
    rdb_bind_text(st, 2, r->station);
    return rec_write_done(r, st, rdb_step(st), "cannot drop a held blob", err);
}

/* Fresh stations first (newest heartbeat first), then the rest; a station without a row
 * (no heartbeat yet) last. COALESCE: PostgreSQL sorts NULL first in DESC, SQLite last. */
static const char sql_blob_holders[] =
    "SELECT b.station, s.address, COALESCE(s.heartbeat_at, 0), b.size "
    "FROM blobs b LEFT JOIN stations s ON s.name = b.station "
    "WHERE b.sha256 = ?1 AND b.station <> ?2 "
    "ORDER BY CASE WHEN COALESCE(s.heartbeat_at, 0) >= ?3 THEN 0 ELSE 1 END, "
    "COALESCE(s.heartbeat_at, 0) DESC, b.station";

int records_blob_holders(struct records *r, const char *sha256, int64_t fresh_since,
                         records_blob_holder_cb cb, void *ctx, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = check_sha(sha256, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_blob_holders, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, sha256);
    rdb_bind_text(st, 2, r->station);
    rdb_bind_int64(st, 3, fresh_since);
    while (rec_next_row(r, st, &rc, &n)) {
        struct records_blob_holder h;
        memset(&h, 0, sizeof(h));
        rec_col_text(st, 0, h.station, sizeof(h.station));
        rec_col_text(st, 1, h.address, sizeof(h.address));
        h.heartbeat_at = rec_col_int(st, 2, 0);
        h.size = rec_col_int(st, 3, 0);
        if (cb && cb(&h, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list the holders of a blob", err);
}

static const char sql_blob_mine[] =
    "SELECT sha256, size FROM blobs WHERE station = ?1 ORDER BY sha256";

int records_blob_list_mine(struct records *r, records_blob_cb cb, void *ctx,
                           struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_blob_mine, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, r->station);
    while (rec_next_row(r, st, &rc, &n)) {
        char sha[RECORDS_SHA256_LEN];
        rec_col_text(st, 0, sha, sizeof(sha));
        if (cb && cb(sha, rec_col_int(st, 1, 0), ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list the blobs this station holds", err);
}

/* ---- bulk leases ------------------------------------------------------------------------ */

static const char sql_lease_get[] = "SELECT id, owner, lease_until FROM bulks WHERE id = ?1";

static void read_lease(struct rdb_stmt *st, void *out)
{
    struct records_bulk_lease *l = out;
    memset(l, 0, sizeof(*l));
    l->id = rec_col_int(st, 0, 0);
    rec_col_text(st, 1, l->owner, sizeof(l->owner));
    l->lease_until = rec_col_int(st, 2, 0);
}

/* The WHERE decides, in the database, with the row locked for the update: under
 * PostgreSQL's READ COMMITTED a second UPDATE waiting on the row re-checks it after the
 * first commits, and then finds the new owner's lease running. */
static const char sql_bulk_claim[] =
    "UPDATE bulks SET owner = ?2, lease_until = ?3 "
    "WHERE id = ?1 AND state = 'running' "
    "AND (owner IS NULL OR owner = ?2 OR lease_until IS NULL OR lease_until < ?4) "
    "RETURNING id";

int records_bulk_claim(struct records *r, int64_t id, int64_t lease_ms,
                       struct records_bulk_lease *prev, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (lease_ms <= 0)
        return rec_set_err(err, -EINVAL, "records: a lease lasts a positive time");
    if (prev) {
        if ((ret = rec_prep(r, sql_lease_get, NULL, &st, err)) < 0)
            return ret;
        rdb_bind_int64(st, 1, id);
        if ((ret = rec_get_one(r, st, read_lease, prev, "cannot read a bulk's lease", err,
                               "records: no bulk %lld", (long long)id)) < 0)
            return ret;
    }
    if ((ret = rec_prep(r, sql_bulk_claim, NULL, &st, err)) < 0)
        return ret;
    int64_t now = records_now_ms(r);
    rdb_bind_int64(st, 1, id);
    rdb_bind_text(st, 2, r->station);
    rdb_bind_int64(st, 3, now + lease_ms);
    rdb_bind_int64(st, 4, now);
    int rc = rdb_step(st), won = 0;
    if (rc == RDB_ROW) {
        won = 1;
        rc = rdb_step(st);
    }
    ret = rec_write_done(r, st, rc, "cannot claim a bulk update", err);
    return ret < 0 ? ret : won;
}

static const char sql_bulk_renew[] = "UPDATE bulks SET lease_until = ?3 "
                                     "WHERE id = ?1 AND owner = ?2 AND state = 'running'";

int records_bulk_renew(struct records *r, int64_t id, int64_t lease_ms, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (lease_ms <= 0)
        return rec_set_err(err, -EINVAL, "records: a lease lasts a positive time");
    if ((ret = rec_prep(r, sql_bulk_renew, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    rdb_bind_text(st, 2, r->station);
    rdb_bind_int64(st, 3, records_now_ms(r) + lease_ms);
    int rc = rdb_step(st);
    int64_t changed = rc == RDB_DONE ? rdb_changes(r->db) : 0;
    ret = rec_write_done(r, st, rc, "cannot renew a bulk's lease", err);
    return ret < 0 ? ret : changed > 0;
}

static const char sql_bulk_leases[] =
    "SELECT id, owner, lease_until FROM bulks WHERE state = 'running' ORDER BY id";

int records_bulk_leases(struct records *r, records_bulk_lease_cb cb, void *ctx,
                        struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_bulk_leases, NULL, &st, err)) < 0)
        return ret;
    while (rec_next_row(r, st, &rc, &n)) {
        struct records_bulk_lease l;
        read_lease(st, &l);
        if (cb && cb(&l, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list the bulk leases", err);
}
