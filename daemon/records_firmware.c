/*
 * records_firmware: what a station writes to a board (see records.h): the firmware
 * catalogue (name@version, immutable, with its manifest) and the per-board data
 * pools (each board gets one file of a pool, each file goes to one board).
 */
#include "records.h"
#include "records_priv.h"

#include <errno.h>
#include <string.h>

/* ---- firmware ------------------------------------------------------------- */

static int check_fw_key(const char *name, const char *version, struct records_error *err)
{
    int ret;
    if (!name || !*name || !version || !*version)
        return rec_set_err(err, -EINVAL, "records: firmware name and version are required");
    if ((ret = rec_check_text("firmware name", name, RECORDS_NAME_LEN, err)) < 0 ||
        (ret = rec_check_text("firmware version", version, RECORDS_NAME_LEN, err)) < 0)
        return ret;
    return 0;
}

static const char sql_fw_put[] = "INSERT INTO firmware (name, version, chip, manifest, created_at) "
                                 "VALUES (?1, ?2, ?3, ?4, ?5)";

int records_firmware_put(struct records *r, const struct records_firmware *fw,
                         struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if (!fw)
        return rec_set_err(err, -EINVAL, "records: no firmware");
    if (!memchr(fw->name, '\0', sizeof(fw->name)) ||
        !memchr(fw->version, '\0', sizeof(fw->version)) ||
        !memchr(fw->chip, '\0', sizeof(fw->chip)) ||
        !memchr(fw->manifest, '\0', sizeof(fw->manifest)))
        return rec_set_err(err, -EINVAL, "records: firmware field is not NUL-terminated");
    if ((ret = check_fw_key(fw->name, fw->version, err)) < 0 ||
        (ret = rec_check_text("firmware chip", fw->chip, sizeof(fw->chip), err)) < 0)
        return ret;
    if (!fw->chip[0])
        return rec_set_err(err, -EINVAL, "records: firmware %s@%s has no chip family", fw->name,
                           fw->version);
    if (!rec_json_object_text(fw->manifest))
        return rec_set_err(err, -EINVAL,
                           "records: manifest of firmware %s@%s is not valid JSON (an object)",
                           fw->name, fw->version);
    if ((ret = rec_prep(r, sql_fw_put, NULL, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, fw->name);
    rec_bind_text(st, 2, fw->version);
    rec_bind_text(st, 3, fw->chip);
    rdb_bind_text(st, 4, fw->manifest);
    rdb_bind_int64(st, 5, records_now_ms(r));
    rc = rec_step_durable(r, st);
    if (rc == RDB_DONE)
        ret = 0;
    else if (rc == -EEXIST)
        ret = rec_set_err(err, -EEXIST,
                          "records: firmware %s@%s already exists (versions are "
                          "immutable: import a new version)",
                          fw->name, fw->version);
    else
        ret = rec_db_err(r, err, rc, "cannot record firmware");
    rec_stmt_done(st);
    return ret;
}

static void read_fw(struct rdb_stmt *st, void *out)
{
    struct records_firmware *fw = out;
    rec_col_text(st, 0, fw->name, sizeof(fw->name));
    rec_col_text(st, 1, fw->version, sizeof(fw->version));
    rec_col_text(st, 2, fw->chip, sizeof(fw->chip));
    rec_col_text(st, 3, fw->manifest, sizeof(fw->manifest));
    fw->created_at = rec_col_int(st, 4, 0);
}

static const char sql_fw_get[] = "SELECT name, version, chip, manifest, created_at FROM firmware "
                                 "WHERE name = ?1 AND version = ?2";

int records_firmware_get(struct records *r, const char *name, const char *version,
                         struct records_firmware *out, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output firmware");
    if ((ret = check_fw_key(name, version, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_fw_get, NULL, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, name);
    rec_bind_text(st, 2, version);
    return rec_get_one(r, st, read_fw, out, "cannot read firmware", err,
                       "records: no firmware %s@%s", name, version);
}

static const char sql_fw_delete[] = "DELETE FROM firmware WHERE name = ?1 AND version = ?2";

int records_firmware_delete(struct records *r, const char *name, const char *version,
                            struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_fw_key(name, version, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_fw_delete, NULL, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, name);
    rec_bind_text(st, 2, version);
    return rec_change_one(r, st, rec_step_durable(r, st), "cannot delete firmware", err,
                          "records: no firmware %s@%s", name, version);
}

static const char sql_fw_list[] =
    "SELECT name, version, chip, manifest, created_at FROM firmware "
    "WHERE (chip = ?1 OR ?1 IS NULL) ORDER BY name, created_at DESC, version";

int records_firmware_list(struct records *r, const char *chip, records_firmware_cb cb, void *ctx,
                          struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_fw_list, NULL, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, chip);
    while (rec_next_row(r, st, &rc, &n)) {
        read_fw(st, &r->row.fw);
        if (cb && cb(&r->row.fw, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list firmware", err);
}

/* ---- per-board data pools -------------------------------------------------- */

static int check_pool_key(const char *what, const char *s, struct records_error *err)
{
    if (!s || !*s)
        return rec_set_err(err, -EINVAL, "records: %s missing", what);
    return rec_check_text(what, s, RECORDS_POOL_FILE_LEN, err);
}

static void read_pool_item(struct rdb_stmt *st, void *out)
{
    struct records_pool_item *it = out;
    memset(it, 0, sizeof(*it));
    rec_col_text(st, 0, it->pool, sizeof(it->pool));
    rec_col_text(st, 1, it->file, sizeof(it->file));
    rec_col_text(st, 2, it->mac, sizeof(it->mac));
    rec_col_text(st, 3, it->md5, sizeof(it->md5));
    it->job_id = rec_col_int(st, 4, 0);
    it->assigned_at = rec_col_int(st, 5, 0);
}

static const char sql_pool_of_mac[] =
    "SELECT pool, file, mac, md5, job_id, assigned_at FROM pool_items "
    "WHERE pool = ?1 AND mac = ?2";

int records_pool_item_of(struct records *r, const char *pool, const char *mac,
                         struct records_pool_item *out, struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_pool_key("pool name", pool, err)) < 0 ||
        (ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_pool_of_mac, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, pool);
    rdb_bind_text(st, 2, norm);
    return rec_get_one(r, st, read_pool_item, out, "cannot read the pool", err,
                       "records: %s has no file of pool %s", norm, pool);
}

static const char sql_pool_file_used[] = "SELECT 1 FROM pool_items WHERE pool = ?1 AND file = ?2";

int records_pool_file_used(struct records *r, const char *pool, const char *file,
                           struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_pool_key("pool name", pool, err)) < 0 ||
        (ret = check_pool_key("pool file", file, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_pool_file_used, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, pool);
    rdb_bind_text(st, 2, file);
    int rc = rdb_step(st);
    ret = rc == RDB_ROW ? 1 : rc == RDB_DONE ? 0 : rec_db_err(r, err, rc, "cannot read the pool");
    rec_stmt_done(st);
    return ret;
}

static const char sql_pool_assign[] =
    "INSERT INTO pool_items (pool, file, mac, md5, job_id, assigned_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

int records_pool_assign(struct records *r, const struct records_pool_item *it,
                        struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!it)
        return rec_set_err(err, -EINVAL, "records: no pool item");
    if ((ret = check_pool_key("pool name", it->pool, err)) < 0 ||
        (ret = check_pool_key("pool file", it->file, err)) < 0 ||
        (ret = rec_normalize_mac(it->mac, norm, err)) < 0 ||
        (ret = rec_check_text("pool file md5", it->md5, sizeof(it->md5), err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_pool_assign, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, it->pool);
    rdb_bind_text(st, 2, it->file);
    rdb_bind_text(st, 3, norm);
    rec_bind_text(st, 4, it->md5);
    rec_bind_opt_int(st, 5, it->job_id > 0 ? it->job_id : -1);
    rdb_bind_int64(st, 6, records_now_ms(r));
    int rc = rec_step_durable(r, st);
    if (rc == -EEXIST) {
        rec_stmt_done(st);
        return rec_set_err(err, -EEXIST, "records: %s of pool %s is taken, or %s already has one",
                           it->file, it->pool, norm);
    }
    return rec_write_done(r, st, rc, "cannot record the pool file", err);
}

static const char sql_pool_count[] = "SELECT count(*) FROM pool_items WHERE pool = ?1";

int records_pool_count(struct records *r, const char *pool, int64_t *used,
                       struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    *used = 0;
    if ((ret = check_pool_key("pool name", pool, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_pool_count, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, pool);
    int rc = rdb_step(st);
    if (rc == RDB_ROW)
        *used = rdb_column_int64(st, 0);
    ret = rc == RDB_ROW ? 0 : rec_db_err(r, err, rc, "cannot count the pool");
    rec_stmt_done(st);
    return ret;
}

static const char sql_pool_of_board[] =
    "SELECT pool, file, mac, md5, job_id, assigned_at FROM pool_items "
    "WHERE mac = ?1 ORDER BY pool";

int records_pool_items_of_board(struct records *r, const char *mac, records_pool_cb cb, void *ctx,
                                struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_pool_of_board, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    while (rec_next_row(r, st, &rc, &n)) {
        struct records_pool_item it;
        read_pool_item(st, &it);
        if (cb && cb(&it, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list the board's pool files", err);
}
