/*
 * records_ota: network OTA (see records.h): each board's OTA check-in state, and
 * the bulk updates that roll a firmware over the network to many boards.
 */
#include "records.h"
#include "records_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define BULK_COLS                                                                                  \
    "id, firmware, version, method, selection, port, concurrency, retries, timeout_s, "            \
    "max_failure_rate, password_given, state, reason, created_at, ended_at, web_user, "            \
    "filesystem, "                                                                                 \
    "(SELECT count(*) FROM bulk_boards x WHERE x.bulk_id = bulks.id), "                            \
    "(SELECT count(*) FROM bulk_boards x WHERE x.bulk_id = bulks.id AND x.state = 'pending'), "    \
    "(SELECT count(*) FROM bulk_boards x WHERE x.bulk_id = bulks.id AND x.state = 'running'), "    \
    "(SELECT count(*) FROM bulk_boards x WHERE x.bulk_id = bulks.id AND x.state = 'passed'), "     \
    "(SELECT count(*) FROM bulk_boards x WHERE x.bulk_id = bulks.id AND x.state = 'failed'), "     \
    "(SELECT count(*) FROM bulk_boards x WHERE x.bulk_id = bulks.id AND x.state = 'skipped')"

/* ---- network OTA state ---------------------------------------------------- */

void records_board_ota_init(struct records_board_ota *o)
{
    memset(o, 0, sizeof(*o));
    o->free_space = o->sketch_size = o->chip_size = -1;
}

static const char sql_ota_put[] =
    "INSERT INTO board_ota (mac, free_space, sketch_size, sketch_md5, "
    "chip_size, sdk_version, last_checkin, checkins, served_md5, served_version, "
    "served_sketch_md5, served_at, problem) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
    "?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (mac) DO UPDATE SET "
    "free_space = excluded.free_space, sketch_size = excluded.sketch_size, "
    "sketch_md5 = excluded.sketch_md5, chip_size = excluded.chip_size, "
    "sdk_version = excluded.sdk_version, last_checkin = excluded.last_checkin, "
    "checkins = excluded.checkins, served_md5 = excluded.served_md5, "
    "served_version = excluded.served_version, "
    "served_sketch_md5 = excluded.served_sketch_md5, "
    "served_at = excluded.served_at, problem = excluded.problem";

int records_board_ota_put(struct records *r, const struct records_board_ota *o,
                          struct records_error *err)
{
    char mac[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!o)
        return rec_set_err(err, -EINVAL, "records: no OTA state");
    if ((ret = rec_check_array("OTA mac", o->mac, sizeof(o->mac), err)) < 0 ||
        (ret = rec_normalize_mac(o->mac, mac, err)) < 0 ||
        (ret = rec_check_array("OTA sketch_md5", o->sketch_md5, sizeof(o->sketch_md5), err)) < 0 ||
        (ret = rec_check_array("OTA sdk_version", o->sdk_version, sizeof(o->sdk_version), err)) <
            0 ||
        (ret = rec_check_array("OTA served_md5", o->served_md5, sizeof(o->served_md5), err)) < 0 ||
        (ret = rec_check_array("OTA served_version", o->served_version, sizeof(o->served_version),
                               err)) < 0 ||
        (ret = rec_check_array("OTA served_sketch_md5", o->served_sketch_md5,
                               sizeof(o->served_sketch_md5), err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_ota_put, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, mac);
    rec_bind_opt_int(st, 2, o->free_space);
    rec_bind_opt_int(st, 3, o->sketch_size);
    rec_bind_text(st, 4, o->sketch_md5);
    rec_bind_opt_int(st, 5, o->chip_size);
    rec_bind_text(st, 6, o->sdk_version);
    rec_bind_opt_int(st, 7, o->last_checkin > 0 ? o->last_checkin : -1);
    rdb_bind_int64(st, 8, o->checkins);
    rec_bind_text(st, 9, o->served_md5);
    rec_bind_text(st, 10, o->served_version);
    rec_bind_text(st, 11, o->served_sketch_md5);
    rec_bind_opt_int(st, 12, o->served_at > 0 ? o->served_at : -1);
    rec_bind_trunc(st, 13, o->problem, sizeof(o->problem));
    return rec_write_done(r, st, rdb_step(st), "cannot record OTA state", err);
}

static void read_ota(struct rdb_stmt *st, void *out)
{
    struct records_board_ota *o = out;
    records_board_ota_init(o);
    rec_col_text(st, 0, o->mac, sizeof(o->mac));
    o->free_space = rec_col_int(st, 1, -1);
    o->sketch_size = rec_col_int(st, 2, -1);
    rec_col_text(st, 3, o->sketch_md5, sizeof(o->sketch_md5));
    o->chip_size = rec_col_int(st, 4, -1);
    rec_col_text(st, 5, o->sdk_version, sizeof(o->sdk_version));
    o->last_checkin = rec_col_int(st, 6, 0);
    o->checkins = rec_col_int(st, 7, 0);
    rec_col_text(st, 8, o->served_md5, sizeof(o->served_md5));
    rec_col_text(st, 9, o->served_version, sizeof(o->served_version));
    rec_col_text(st, 10, o->served_sketch_md5, sizeof(o->served_sketch_md5));
    o->served_at = rec_col_int(st, 11, 0);
    rec_col_text(st, 12, o->problem, sizeof(o->problem));
}

static const char sql_ota_get[] =
    "SELECT mac, free_space, sketch_size, sketch_md5, chip_size, sdk_version, "
    "last_checkin, checkins, served_md5, served_version, served_sketch_md5, "
    "served_at, problem FROM board_ota WHERE mac = ?1";

int records_board_ota_get(struct records *r, const char *mac, struct records_board_ota *out,
                          struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output OTA state");
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_ota_get, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    return rec_get_one(r, st, read_ota, out, "cannot read OTA state", err,
                       "records: no OTA state for %s", norm);
}

/* ---- bulk updates ----------------------------------------------------------- */

static bool bulk_state_final(const char *s)
{
    return strcmp(s, "running") != 0;
}

static bool bulk_board_state_ok(const char *s)
{
    static const char *const ok[] = {"pending", "running", "passed", "failed", "skipped"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(s, ok[i]) == 0)
            return true;
    return false;
}

static const char sql_bulk_create[] =
    "INSERT INTO bulks (firmware, version, method, selection, port, "
    "concurrency, retries, timeout_s, max_failure_rate, password_given, state, "
    "reason, created_at, web_user, filesystem) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
    "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) RETURNING id";
static const char sql_bulk_board_add[] =
    "INSERT INTO bulk_boards (bulk_id, pos, mac, state, attempts, job_id, "
    "error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

int records_bulk_create(struct records *r, struct records_bulk *b,
                        const struct records_bulk_board *boards, size_t n,
                        struct records_error *err)
{
    struct rdb_stmt *cr, *add;
    int rc, ret;
    int64_t now;
    ENTER(r, err);
    if (!b || (n && !boards))
        return rec_set_err(err, -EINVAL, "records: no bulk");
    if ((ret = rec_check_array("bulk firmware", b->firmware, sizeof(b->firmware), err)) < 0 ||
        (ret = rec_check_array("bulk version", b->version, sizeof(b->version), err)) < 0 ||
        (ret = rec_check_token("bulk method", b->method, sizeof(b->method), err)) < 0 ||
        (ret = rec_check_array("bulk state", b->state, sizeof(b->state), err)) < 0 ||
        (ret = rec_check_array("bulk user", b->user, sizeof(b->user), err)) < 0)
        return ret;
    if (!memchr(b->selection, '\0', sizeof(b->selection)) ||
        !memchr(b->reason, '\0', sizeof(b->reason)))
        return rec_set_err(err, -EINVAL, "records: bulk text is not NUL-terminated");
    if (b->selection[0] && !rec_json_object_text(b->selection))
        return rec_set_err(err, -EINVAL, "records: bulk selection is not a JSON object");
    if (!b->firmware[0])
        return rec_set_err(err, -EINVAL, "records: bulk firmware missing");
    for (size_t i = 0; i < n; i++) {
        char mac[RECORDS_MAC_LEN];
        if ((ret = rec_check_array("bulk board MAC", boards[i].mac, sizeof(boards[i].mac), err)) <
                0 ||
            (ret = rec_normalize_mac(boards[i].mac, mac, err)) < 0)
            return ret;
        if (!memchr(boards[i].state, '\0', sizeof(boards[i].state)) ||
            !bulk_board_state_ok(boards[i].state))
            return rec_set_err(err, -EINVAL, "records: bad bulk board state");
        if (!memchr(boards[i].error, '\0', sizeof(boards[i].error)))
            return rec_set_err(err, -EINVAL, "records: bulk board error is not NUL-terminated");
    }
    if ((ret = rec_prep(r, sql_bulk_create, NULL, &cr, err)) < 0 ||
        (ret = rec_prep(r, sql_bulk_board_add, NULL, &add, err)) < 0)
        return ret;
    now = records_now_ms(r);
    rc = rdb_set_durable(r->db, true);
    if (rc >= 0)
        rc = rdb_begin(r->db);
    if (rc < 0) {
        ret = rec_db_err(r, err, rc, "cannot record the bulk update");
        rdb_set_durable(r->db, false);
        return ret;
    }
    rec_bind_text(cr, 1, b->firmware);
    rec_bind_text(cr, 2, b->version);
    rec_bind_text(cr, 3, b->method);
    rec_bind_text(cr, 4, b->selection);
    rdb_bind_int64(cr, 5, b->port);
    rdb_bind_int64(cr, 6, b->concurrency);
    rdb_bind_int64(cr, 7, b->retries);
    rdb_bind_int64(cr, 8, b->timeout_s);
    rdb_bind_double(cr, 9, b->max_failure_rate);
    rdb_bind_int64(cr, 10, b->password_given ? 1 : 0);
    rec_bind_text(cr, 11, b->state[0] ? b->state : "running");
    rec_bind_trunc(cr, 12, b->reason, RECORDS_TEXT_LEN);
    rdb_bind_int64(cr, 13, now);
    rec_bind_text(cr, 14, b->user);
    rdb_bind_int64(cr, 15, b->filesystem ? 1 : 0);
    int64_t id = 0;
    rc = rec_step_insert_id(r, cr, false, &id);
    rec_stmt_done(cr);
    for (size_t i = 0; rc >= 0 && i < n; i++) {
        char mac[RECORDS_MAC_LEN];
        rec_normalize_mac(boards[i].mac, mac, NULL);
        rdb_bind_int64(add, 1, id);
        rdb_bind_int64(add, 2, (int64_t)i);
        rdb_bind_text(add, 3, mac);
        rec_bind_text(add, 4, boards[i].state);
        rdb_bind_int64(add, 5, boards[i].attempts);
        rec_bind_opt_int(add, 6, boards[i].job_id > 0 ? boards[i].job_id : -1);
        rec_bind_trunc(add, 7, boards[i].error, RECORDS_TEXT_LEN);
        rc = rec_step_once(add);
    }
    if (rc >= 0)
        rc = rdb_commit(r->db);
    if (rc < 0) {
        ret = rec_db_err(r, err, rc, "cannot record the bulk update");
        rdb_rollback(r->db);
        rdb_set_durable(r->db, false);
        return ret;
    }
    rdb_set_durable(r->db, false);
    b->id = id;
    b->created_at = now;
    b->ended_at = 0;
    if (!b->state[0])
        snprintf(b->state, sizeof(b->state), "running");
    return 0;
}

static const char sql_bulk_set_state[] =
    "UPDATE bulks SET state = ?2, reason = ?3, ended_at = ?4 WHERE id = ?1";

int records_bulk_set_state(struct records *r, int64_t id, const char *state, const char *reason,
                           struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = rec_check_token("bulk state", state, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_bulk_set_state, NULL, &st, err)) < 0)
        return ret;
    bool final = bulk_state_final(state);
    rdb_bind_int64(st, 1, id);
    rec_bind_text(st, 2, state);
    rec_bind_trunc(st, 3, reason, RECORDS_TEXT_LEN);
    if (final)
        rdb_bind_int64(st, 4, records_now_ms(r));
    else
        rdb_bind_null(st, 4);
    return rec_change_one(r, st, final ? rec_step_durable(r, st) : rdb_step(st),
                          "cannot record the bulk state", err, "records: no bulk %lld",
                          (long long)id);
}

static const char sql_bulk_board_put[] =
    "UPDATE bulk_boards SET state = ?3, attempts = ?4, job_id = ?5, "
    "error = ?6 WHERE bulk_id = ?1 AND mac = ?2";

int records_bulk_board_put(struct records *r, int64_t bulk_id, const struct records_bulk_board *bb,
                           struct records_error *err)
{
    char mac[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!bb)
        return rec_set_err(err, -EINVAL, "records: no bulk board");
    if ((ret = rec_check_array("bulk board MAC", bb->mac, sizeof(bb->mac), err)) < 0 ||
        (ret = rec_normalize_mac(bb->mac, mac, err)) < 0)
        return ret;
    if (!memchr(bb->state, '\0', sizeof(bb->state)) || !bulk_board_state_ok(bb->state) ||
        !memchr(bb->error, '\0', sizeof(bb->error)))
        return rec_set_err(err, -EINVAL, "records: bad bulk board state");
    if ((ret = rec_prep(r, sql_bulk_board_put, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, bulk_id);
    rdb_bind_text(st, 2, mac);
    rec_bind_text(st, 3, bb->state);
    rdb_bind_int64(st, 4, bb->attempts);
    rec_bind_opt_int(st, 5, bb->job_id > 0 ? bb->job_id : -1);
    rec_bind_trunc(st, 6, bb->error, RECORDS_TEXT_LEN);
    return rec_change_one(r, st, rdb_step(st), "cannot record the bulk board", err,
                          "records: no board %s in bulk %lld", mac, (long long)bulk_id);
}

static void read_bulk(struct rdb_stmt *st, void *out)
{
    struct records_bulk *b = out;
    memset(b, 0, sizeof(*b));
    b->id = rec_col_int(st, 0, 0);
    rec_col_text(st, 1, b->firmware, sizeof(b->firmware));
    rec_col_text(st, 2, b->version, sizeof(b->version));
    rec_col_text(st, 3, b->method, sizeof(b->method));
    rec_col_text(st, 4, b->selection, sizeof(b->selection));
    b->port = (int)rec_col_int(st, 5, 0);
    b->concurrency = (int)rec_col_int(st, 6, 0);
    b->retries = (int)rec_col_int(st, 7, 0);
    b->timeout_s = (int)rec_col_int(st, 8, 0);
    b->max_failure_rate = rec_col_real(st, 9, 0);
    b->password_given = rec_col_int(st, 10, 0) != 0;
    rec_col_text(st, 11, b->state, sizeof(b->state));
    rec_col_text(st, 12, b->reason, sizeof(b->reason));
    b->created_at = rec_col_int(st, 13, 0);
    b->ended_at = rec_col_int(st, 14, 0);
    rec_col_text(st, 15, b->user, sizeof(b->user));
    b->filesystem = rec_col_int(st, 16, 0) != 0;
    b->total = rec_col_int(st, 17, 0);
    b->pending = rec_col_int(st, 18, 0);
    b->running = rec_col_int(st, 19, 0);
    b->passed = rec_col_int(st, 20, 0);
    b->failed = rec_col_int(st, 21, 0);
    b->skipped = rec_col_int(st, 22, 0);
}

static const char sql_bulk_get[] = "SELECT " BULK_COLS " FROM bulks WHERE id = ?1";

int records_bulk_get(struct records *r, int64_t id, struct records_bulk *out,
                     struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output bulk");
    if ((ret = rec_prep(r, sql_bulk_get, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    return rec_get_one(r, st, read_bulk, out, "cannot read the bulk update", err,
                       "records: no bulk %lld", (long long)id);
}

static const char sql_bulk_boards[] = "SELECT mac, state, attempts, job_id, error FROM bulk_boards "
                                      "WHERE bulk_id = ?1 ORDER BY pos";

int records_bulk_boards(struct records *r, int64_t id, records_bulk_board_cb cb, void *ctx,
                        struct records_error *err)
{
    struct records_bulk b;
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    if ((ret = records_bulk_get(r, id, &b, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_bulk_boards, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    while (rec_next_row(r, st, &rc, &n)) {
        struct records_bulk_board *bb = &r->row.bulk_board;
        memset(bb, 0, sizeof(*bb));
        rec_col_text(st, 0, bb->mac, sizeof(bb->mac));
        rec_col_text(st, 1, bb->state, sizeof(bb->state));
        bb->attempts = (int)rec_col_int(st, 2, 0);
        bb->job_id = rec_col_int(st, 3, 0);
        rec_col_text(st, 4, bb->error, sizeof(bb->error));
        if (cb && cb(bb, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list bulk boards", err);
}

static const char sql_bulk_list[] =
    "SELECT " BULK_COLS " FROM bulks WHERE (state = ?1 OR ?1 IS NULL) "
    "ORDER BY id DESC LIMIT ?2";

int records_bulk_list(struct records *r, const char *state, int limit, records_bulk_cb cb,
                      void *ctx, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_bulk_list, NULL, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, state);
    rdb_bind_int64(st, 2, limit > 0 ? limit : REC_NO_LIMIT);
    while (rec_next_row(r, st, &rc, &n)) {
        read_bulk(st, &r->row.bulk);
        if (cb && cb(&r->row.bulk, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list bulks", err);
}
