/*
 * records_events: what the station reports (see records.h): the event feed the web
 * UI follows, and the counters of its dashboard (jobs by state, boards flashed in
 * the last hour, seconds per slot).
 */
#include "records.h"
#include "records_priv.h"

#include <errno.h>
#include <string.h>

/* ---- events --------------------------------------------------------------- */

const char rec_sql_event_append[] =
    "INSERT INTO events (ts, kind, board_mac, slot, job_id, data, station) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id";

int records_event_append(struct records *r, const struct records_event_new *e, int64_t *id,
                         struct records_error *err)
{
    char mac[RECORDS_MAC_LEN] = "";
    struct rdb_stmt *st;
    int64_t new_id = 0;
    int rc, ret;
    ENTER(r, err);
    if (JOURNALED(r))
        return rj_event_append(r, e, id, err);
    if (!e)
        return rec_set_err(err, -EINVAL, "records: no event");
    if ((ret = rec_check_token("event kind", e->kind, RECORDS_STATE_LEN, err)) < 0 ||
        (e->board_mac && *e->board_mac && (ret = rec_normalize_mac(e->board_mac, mac, err)) < 0) ||
        (ret = rec_check_text("event slot", e->slot, RECORDS_SLOT_LEN, err)) < 0)
        return ret;
    if (e->data && strnlen(e->data, RECORDS_EVENT_DATA_LEN) >= RECORDS_EVENT_DATA_LEN)
        return rec_set_err(err, -EINVAL, "records: event data too long (max %d bytes)",
                           RECORDS_EVENT_DATA_LEN - 1);
    if (e->data && *e->data && !rec_json_object_text(e->data))
        return rec_set_err(err, -EINVAL, "records: event data is not valid JSON (an object)");
    if ((ret = rec_prep(r, rec_sql_event_append, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, records_now_ms(r));
    rec_bind_text(st, 2, e->kind);
    rec_bind_text(st, 3, mac);
    rec_bind_text(st, 4, e->slot);
    rec_bind_opt_int(st, 5, e->job_id > 0 ? e->job_id : -1);
    rec_bind_text(st, 6, e->data);
    rec_bind_text(st, 7, r->station);
    rc = rec_step_insert_id(r, st, true, &new_id);
    if (rc == RDB_DONE) {
        ret = 0;
        if (id)
            *id = new_id;
    } else {
        ret = rec_db_err(r, err, rc, "cannot append event");
    }
    rec_stmt_done(st);
    return ret;
}

static const char sql_events_since[] =
    "SELECT id, ts, kind, board_mac, slot, job_id, data, station FROM events "
    "WHERE id > ?1 ORDER BY id LIMIT ?2";

int records_events_since(struct records *r, int64_t after_id, int limit, records_event_cb cb,
                         void *ctx, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_events_since, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, after_id);
    rdb_bind_int64(st, 2, limit > 0 ? limit : REC_NO_LIMIT);
    while (rec_next_row(r, st, &rc, &n)) {
        struct records_event *e = &r->row.event;
        e->id = rdb_column_int64(st, 0);
        e->ts = rec_col_int(st, 1, 0);
        rec_col_text(st, 2, e->kind, sizeof(e->kind));
        rec_col_text(st, 3, e->board_mac, sizeof(e->board_mac));
        rec_col_text(st, 4, e->slot, sizeof(e->slot));
        e->job_id = rec_col_int(st, 5, 0);
        rec_col_text(st, 6, e->data, sizeof(e->data));
        rec_col_text(st, 7, e->station, sizeof(e->station));
        if (cb && cb(e, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot read events", err);
}

static const char sql_events_last[] = "SELECT coalesce(max(id), 0) FROM events";

int records_events_last_id(struct records *r, int64_t *id, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_events_last, NULL, &st, err)) < 0)
        return ret;
    rc = rdb_step(st);
    if (rc == RDB_ROW) {
        ret = 0;
        if (id)
            *id = rdb_column_int64(st, 0);
    } else {
        ret = rec_db_err(r, err, rc, "cannot read events");
    }
    rec_stmt_done(st);
    return ret;
}

/* ---- counters ------------------------------------------------------------- */

/* The station a station's own view counts: its own name on a line's shared
 * database, NULL (every job) on its SQLite file. */
static const char *own_station(const struct records *r)
{
    return r->db->ops->dialect == RDB_POSTGRESQL && r->station[0] ? r->station : NULL;
}

static const char sql_count_states[] = "SELECT state, count(*) FROM jobs "
                                       "WHERE coalesce(ended_at, started_at) >= ?1 "
                                       "AND (station = ?2 OR ?2 IS NULL) GROUP BY state";
static const char sql_count_boards[] =
    "SELECT count(DISTINCT board_mac) FROM jobs WHERE state = 'passed' "
    "AND board_mac IS NOT NULL AND ended_at >= ?1 AND ended_at <= ?2 "
    "AND (station = ?3 OR ?3 IS NULL)";

static int counters_of(struct records *r, int64_t since, const char *station,
                       struct records_counters *out, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret;
    int64_t now;
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output counters");
    memset(out, 0, sizeof(*out));
    if ((ret = rec_prep(r, sql_count_states, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, since);
    rec_bind_text(st, 2, station);
    while ((rc = rdb_step(st)) == RDB_ROW) {
        enum records_job_state s;
        if (records_job_state_from_string(rdb_column_text(st, 0), &s) == 0)
            out->by_state[s] = rdb_column_int64(st, 1);
    }
    ret = rc == RDB_DONE ? 0 : rec_db_err(r, err, rc, "cannot count jobs");
    rec_stmt_done(st);
    if (ret < 0)
        return ret;
    out->passed = out->by_state[RECORDS_JOB_PASSED];
    out->failed = out->by_state[RECORDS_JOB_FAILED];

    if ((ret = rec_prep(r, sql_count_boards, NULL, &st, err)) < 0)
        return ret;
    now = records_now_ms(r);
    rdb_bind_int64(st, 1, now - 3600 * 1000);
    rdb_bind_int64(st, 2, now);
    rec_bind_text(st, 3, station);
    rc = rdb_step(st);
    if (rc == RDB_ROW) {
        out->boards_last_hour = rdb_column_int64(st, 0);
        ret = 0;
    } else {
        ret = rec_db_err(r, err, rc, "cannot count boards");
    }
    rec_stmt_done(st);
    return ret;
}

int records_counters(struct records *r, int64_t since, struct records_counters *out,
                     struct records_error *err)
{
    ENTER(r, err);
    return counters_of(r, since, own_station(r), out, err);
}

int records_counters_line(struct records *r, int64_t since, struct records_counters *out,
                          struct records_error *err)
{
    ENTER(r, err);
    return counters_of(r, since, NULL, out, err);
}

static const char sql_slot_seconds[] =
    "SELECT slot, avg(seconds), count(*) FROM jobs WHERE kind = 'flash' "
    "AND state = 'passed' AND slot IS NOT NULL AND seconds IS NOT NULL "
    "AND started_at >= ?1 AND (station = ?2 OR ?2 IS NULL) "
    "GROUP BY slot ORDER BY slot";

int records_slot_flash_seconds(struct records *r, int64_t since, records_slot_stat_cb cb, void *ctx,
                               struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_slot_seconds, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, since);
    rec_bind_text(st, 2, own_station(r));
    while (rec_next_row(r, st, &rc, &n)) {
        char slot[RECORDS_SLOT_LEN];
        rec_col_text(st, 0, slot, sizeof(slot));
        if (cb && cb(slot, rdb_column_double(st, 1), rdb_column_int64(st, 2), ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot count slots", err);
}
