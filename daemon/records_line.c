/*
 * records_line: see records_line.h. The stations table (heartbeats, the line
 * view), taking over a gone station's unfinished jobs, and counters of the
 * store's database work.
 *
 * Exactly once: the jobs are changed by one UPDATE ... RETURNING that names the
 * rows it changed, and only those rows get an event. Two stations racing run
 * the UPDATE one after the other (PostgreSQL: the second waits on the row
 * locks, then re-reads the rows, no longer 'running': it changes none; SQLite:
 * BEGIN IMMEDIATE), so a job is interrupted, and its event written, once. The
 * station's row is read FOR UPDATE first, so a heartbeat that arrives in between
 * wins (the station is back: nothing is taken) and only one station writes the
 * "gone" mark and its station.gone event.
 */
#include "records_line.h"
#include "records_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

static const char SQL_HEARTBEAT[] =
    "INSERT INTO stations (name, address, version, started_at, heartbeat_at, status) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO UPDATE SET "
    "address = excluded.address, version = excluded.version, started_at = excluded.started_at, "
    "heartbeat_at = excluded.heartbeat_at, status = excluded.status";

static const char SQL_LIST[] =
    "SELECT name, address, version, started_at, heartbeat_at, status FROM stations ORDER BY name";

/* The mark is the status key "gone" (a station's own status never has it). */
static const char SQL_GONE_CANDIDATES[] =
    "SELECT name FROM stations WHERE heartbeat_at < ?1 AND name <> ?2 "
    "AND (status IS NULL OR status NOT LIKE '%\"gone\":%') ORDER BY name LIMIT ?3";

static const char SQL_GONE_ROW[] =
    "SELECT heartbeat_at, status FROM stations WHERE name = ?1 AND heartbeat_at < ?2";
static const char SQL_GONE_ROW_PG[] =
    "SELECT heartbeat_at, status FROM stations WHERE name = ?1 AND heartbeat_at < ?2 FOR UPDATE";

static const char SQL_GONE_MARK[] = "UPDATE stations SET status = ?2 WHERE name = ?1";

/* A gone station's jobs (the other station's own unfinished jobs: records.c's recovery). */
static const char SQL_JOBS_TAKE[] =
    "UPDATE jobs SET state = 'interrupted', ended_at = ?2, result_code = ?3, "
    "error_stage = coalesce(nullif(stage, ''), state), "
    "error_message = ?4 || coalesce(nullif(stage, ''), state), "
    "error_advice = ?5, "
    "seconds = CASE WHEN ?2 > started_at THEN (?2 - started_at) / 1000.0 ELSE 0 END "
    "WHERE station = ?1 AND state IN ('queued', 'running') "
    "RETURNING id, board_mac, slot, error_stage";

static const char SQL_EVENT[] = "INSERT INTO events (ts, kind, board_mac, slot, job_id, data, "
                                "station) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id";

static const char SQL_COUNTS[] = "SELECT state, count(*) FROM jobs WHERE station = ?1 "
                                 "AND started_at >= ?2 GROUP BY state";

/* ---- heartbeat and list ---------------------------------------------------------- */

int records_station_heartbeat(struct records *r, const char *address, const char *version,
                              int64_t started_at, const char *status, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!r->station[0])
        return rec_set_err(err, -EINVAL, "records: a heartbeat needs a station name");
    if (status && *status && !rec_json_object_text(status))
        return rec_set_err(err, -EINVAL, "records: a station's status must be a JSON object");
    if (status && strlen(status) >= RECORDS_LINE_STATUS_LEN)
        return rec_set_err(err, -EINVAL, "records: the station's status is too long (%zu bytes)",
                           strlen(status));
    if ((ret = rec_prep(r, SQL_HEARTBEAT, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, r->station);
    rec_bind_trunc(st, 2, address, RECORDS_ADDRESS_LEN);
    rec_bind_trunc(st, 3, version, RECORDS_NAME_LEN);
    rec_bind_opt_int(st, 4, started_at > 0 ? started_at : -1);
    rdb_bind_int64(st, 5, records_now_ms(r));
    rdb_bind_text(st, 6, status && *status ? status : "{}");
    return rec_write_done(r, st, rdb_step(st), "cannot write the station's heartbeat", err);
}

static void read_station(struct rdb_stmt *st, struct records_station *s)
{
    rec_col_text(st, 0, s->name, sizeof(s->name));
    rec_col_text(st, 1, s->address, sizeof(s->address));
    rec_col_text(st, 2, s->version, sizeof(s->version));
    s->started_at = rec_col_int(st, 3, 0);
    s->heartbeat_at = rec_col_int(st, 4, 0);
    rec_col_text(st, 5, s->status, sizeof(s->status));
}

int records_station_list(struct records *r, records_station_cb cb, void *ctx,
                         struct records_error *err)
{
    struct rdb_stmt *st;
    struct records_station *row;
    int ret, rc, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, SQL_LIST, NULL, &st, err)) < 0)
        return ret;
    if (!(row = malloc(sizeof(*row)))) {
        rec_stmt_done(st);
        return rec_set_err(err, -ENOMEM, "records: out of memory");
    }
    while (rec_next_row(r, st, &rc, &n)) {
        read_station(st, row);
        if (cb && cb(row, ctx))
            break;
    }
    free(row);
    return rec_list_done(r, st, rc, n, "cannot list the line's stations", err);
}

int records_station_gone_candidates(struct records *r, int64_t before_ms,
                                    char (*names)[RECORDS_STATION_LEN], int max,
                                    struct records_error *err)
{
    struct rdb_stmt *st;
    int ret, rc, n = 0;
    ENTER(r, err);
    if (max <= 0)
        return 0;
    if ((ret = rec_prep(r, SQL_GONE_CANDIDATES, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, before_ms);
    rdb_bind_text(st, 2, r->station);
    rdb_bind_int64(st, 3, max);
    while (n < max && rec_next_row(r, st, &rc, &n))
        rec_col_text(st, 0, names[n - 1], RECORDS_STATION_LEN);
    return rec_list_done(r, st, rc, n, "cannot look for gone stations", err);
}

int records_station_job_counts(struct records *r, const char *station, int64_t since_ms,
                               int64_t counts[RECORDS_JOB_STATE_COUNT], struct records_error *err)
{
    struct rdb_stmt *st;
    int ret, rc, n = 0;
    ENTER(r, err);
    memset(counts, 0, sizeof(int64_t) * RECORDS_JOB_STATE_COUNT);
    if ((ret = rec_prep(r, SQL_COUNTS, NULL, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, station && *station ? station : r->station);
    rdb_bind_int64(st, 2, since_ms);
    while (rec_next_row(r, st, &rc, &n)) {
        enum records_job_state s;
        if (records_job_state_from_string(rdb_column_text(st, 0), &s) == 0 && s >= 0)
            counts[s] = rdb_column_int64(st, 1);
    }
    ret = rec_list_done(r, st, rc, n, "cannot count the station's jobs", err);
    return ret < 0 ? ret : 0;
}

/* ---- a gone station's jobs ---------------------------------------------------------- */

struct taken {
    int64_t id;
    char mac[RECORDS_MAC_LEN];
    char slot[RECORDS_SLOT_LEN];
    char stage[RECORDS_STATE_LEN];
};

static int cmp_taken(const void *a, const void *b)
{
    int64_t x = ((const struct taken *)a)->id, y = ((const struct taken *)b)->id;
    return x < y ? -1 : x > y;
}

static void json_text(struct json_object *o, char *buf, size_t n)
{
    rec_copy_trunc(
        buf, n,
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static int append_event(struct records *r, struct rdb_stmt *ev, int64_t now, const char *kind,
                        const char *mac, const char *slot, int64_t job, const char *data)
{
    int64_t id;
    int rc;
    rdb_bind_int64(ev, 1, now);
    rdb_bind_text(ev, 2, kind);
    rec_bind_text(ev, 3, mac);
    rec_bind_text(ev, 4, slot);
    rec_bind_opt_int(ev, 5, job > 0 ? job : -1);
    rdb_bind_text(ev, 6, data);
    rec_bind_text(ev, 7, r->station);
    rc = rec_step_insert_id(r, ev, false, &id);
    rec_stmt_done(ev);
    return rc;
}

/* The UPDATE's rows, sorted by job id; *n rows in *out (malloc'd). */
static int take_jobs(struct records *r, struct rdb_stmt *st, struct taken **out, int *n)
{
    struct taken *v = NULL;
    int cap = 0, rc;
    *n = 0;
    while ((rc = rdb_step(st)) == RDB_ROW) {
        if (*n == cap) {
            int ncap = cap ? cap * 2 : 16;
            struct taken *nv = realloc(v, sizeof(*v) * (size_t)ncap);
            if (!nv) {
                rc = -ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        struct taken *t = &v[(*n)++];
        t->id = rdb_column_int64(st, 0);
        rec_col_text(st, 1, t->mac, sizeof(t->mac));
        rec_col_text(st, 2, t->slot, sizeof(t->slot));
        rec_col_text(st, 3, t->stage, sizeof(t->stage));
    }
    rec_stmt_done(st);
    (void)r;
    if (rc < 0) {
        free(v);
        *n = 0;
        return rc;
    }
    if (*n > 1)
        qsort(v, (size_t)*n, sizeof(*v), cmp_taken);
    *out = v;
    return 0;
}

/* The gone station's row with the mark added. */
static void mark_status(const char *status, const char *by, int64_t now, int jobs,
                        const char *reason, char *buf, size_t n)
{
    struct json_object *o = status && *status ? json_tokener_parse(status) : NULL;
    if (!o || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = json_object_new_object();
    }
    struct json_object *g = json_object_new_object();
    json_object_object_add(g, "by", json_object_new_string(by));
    json_object_object_add(g, "at", json_object_new_int64(now));
    json_object_object_add(g, "jobs", json_object_new_int(jobs));
    json_object_object_add(g, "reason", json_object_new_string(reason));
    json_object_object_add(o, "gone", g);
    const char *s =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (strlen(s) < n)
        snprintf(buf, n, "%s", s);
    else /* too long to add to: the mark alone */
        snprintf(buf, n, "{\"gone\":%s}",
                 json_object_to_json_string_ext(g, JSON_C_TO_STRING_PLAIN |
                                                       JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static bool has_gone_mark(const char *status)
{
    struct json_object *o = status && *status ? json_tokener_parse(status) : NULL, *g;
    bool has =
        o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "gone", &g);
    json_object_put(o);
    return has;
}

int records_jobs_interrupt_station(struct records *r, const char *station, int64_t before_ms,
                                   const char *reason, int *jobs, bool *marked,
                                   struct records_error *err)
{
    struct rdb_stmt *row, *take, *ev, *mark;
    struct taken *t = NULL;
    int64_t now, heartbeat = 0;
    int ret, rc, n = 0;
    bool found = false, already = false, did_mark = false;
    char *status = NULL, *msg = NULL;
    if (jobs)
        *jobs = 0;
    if (marked)
        *marked = false;
    ENTER(r, err);
    if (!records_station_name_ok(station))
        return rec_set_err(err, -EINVAL, "records: bad station name");
    if (!strcmp(station, r->station))
        return rec_set_err(err, -EINVAL,
                           "records: a station does not take over its own jobs (recovery at "
                           "open does)");
    if (!reason || !*reason)
        reason = "no heartbeat";
    if ((ret = rec_prep(r, SQL_GONE_ROW, SQL_GONE_ROW_PG, &row, err)) < 0 ||
        (ret = rec_prep(r, SQL_JOBS_TAKE, NULL, &take, err)) < 0 ||
        (ret = rec_prep(r, SQL_EVENT, NULL, &ev, err)) < 0 ||
        (ret = rec_prep(r, SQL_GONE_MARK, NULL, &mark, err)) < 0)
        return ret;
    if (!(status = malloc(RECORDS_LINE_STATUS_LEN)) || !(msg = malloc(RECORDS_LINE_STATUS_LEN))) {
        free(status);
        return rec_set_err(err, -ENOMEM, "records: out of memory");
    }
    now = records_now_ms(r);
    rc = rdb_set_durable(r->db, true);
    if (rc >= 0)
        rc = rdb_begin(r->db);
    if (rc < 0)
        goto out;
    /* Still gone? (the row stays locked until the end on PostgreSQL) */
    rdb_bind_text(row, 1, station);
    rdb_bind_int64(row, 2, before_ms);
    rc = rdb_step(row);
    if (rc == RDB_ROW) {
        found = true;
        heartbeat = rdb_column_int64(row, 0);
        rec_col_text(row, 1, status, RECORDS_LINE_STATUS_LEN);
        already = has_gone_mark(status);
    }
    rec_stmt_done(row);
    if (rc < 0 || !found)
        goto end;

    char prefix[160], advice[RECORDS_TEXT_LEN];
    snprintf(prefix, sizeof(prefix), "station %s stopped while ", station);
    snprintf(advice, sizeof(advice),
             "station %s stopped heartbeating during this job (%s; found by station %s); the "
             "board is flashed again when it is next seen",
             station, reason, r->station);
    rdb_bind_text(take, 1, station);
    rdb_bind_int64(take, 2, now);
    rdb_bind_int64(take, 3, -ECANCELED);
    rdb_bind_text(take, 4, prefix);
    rec_bind_trunc(take, 5, advice, RECORDS_TEXT_LEN);
    if ((rc = take_jobs(r, take, &t, &n)) < 0)
        goto end;
    for (int i = 0; i < n && rc >= 0; i++) {
        struct json_object *o = json_object_new_object();
        char text[RECORDS_TEXT_LEN];
        snprintf(text, sizeof(text), "job %lld interrupted: station %s stopped while %s",
                 (long long)t[i].id, station, t[i].stage);
        json_object_object_add(o, "job", json_object_new_int64(t[i].id));
        json_object_object_add(o, "state", json_object_new_string("interrupted"));
        json_object_object_add(o, "stage", json_object_new_string(t[i].stage));
        json_object_object_add(o, "message", json_object_new_string(text));
        json_object_object_add(o, "station", json_object_new_string(station));
        json_object_object_add(o, "by", json_object_new_string(r->station));
        json_object_object_add(o, "reason", json_object_new_string(reason));
        json_text(o, msg, RECORDS_EVENT_DATA_LEN);
        rc = append_event(r, ev, now, "job.interrupted", t[i].mac, t[i].slot, t[i].id, msg);
    }
    if (rc >= 0 && !already) {
        mark_status(status, r->station, now, n, reason, msg, RECORDS_LINE_STATUS_LEN);
        rdb_bind_text(mark, 1, station);
        rdb_bind_text(mark, 2, msg);
        rc = rdb_step(mark);
        rec_stmt_done(mark);
        if (rc >= 0) {
            struct json_object *o = json_object_new_object();
            json_object_object_add(o, "station", json_object_new_string(station));
            json_object_object_add(o, "heartbeat_at", json_object_new_int64(heartbeat));
            json_object_object_add(o, "by", json_object_new_string(r->station));
            json_object_object_add(o, "jobs", json_object_new_int(n));
            json_object_object_add(o, "reason", json_object_new_string(reason));
            json_text(o, msg, RECORDS_EVENT_DATA_LEN);
            rc = append_event(r, ev, now, "station.gone", NULL, NULL, 0, msg);
            did_mark = rc >= 0;
        }
    }
end:
    if (rc >= 0)
        rc = rdb_commit(r->db);
    else
        rdb_rollback(r->db);
out:
    rdb_set_durable(r->db, false);
    free(t);
    free(status);
    free(msg);
    if (rc < 0) {
        char what[160];
        snprintf(what, sizeof(what), "cannot take over the jobs of station %s", station);
        return rec_db_err(r, err, rc, what);
    }
    if (jobs)
        *jobs = n;
    if (marked)
        *marked = did_mark;
    return 0;
}

/* ---- database work counters ----------------------------------------------------------- */

/* A wrapper around a backend's calls: each store that counts gets an entry holding the
 * backend's own table; the wrapper finds it by the connection. */
#define STATS_STORES 8
#define STATS_RUNNING 64

struct dbstats {
    struct rdb *db;
    const struct rdb_ops *orig;
    struct rdb_ops ops;
    struct records_db_stats s;
    bool in_tx;
    double tx_ms;
    /* statements stepped since their last reset, and time inside their steps */
    struct {
        struct rdb_stmt *st;
        double ms;
        bool in_tx; /* started inside a transaction: its time is the transaction's */
    } running[STATS_RUNNING];
    int n_running;
    float *win; /* ring of the last ops' ms */
    uint64_t win_next;
};

static struct dbstats *stats_tab[STATS_STORES];

static struct dbstats *stats_of(struct rdb *db)
{
    for (int i = 0; i < STATS_STORES; i++)
        if (stats_tab[i] && stats_tab[i]->db == db)
            return stats_tab[i];
    return NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void op_done(struct dbstats *d, double ms)
{
    float f = (float)ms; /* the window's precision, so max >= any percentile */
    d->s.ops++;
    d->s.total_ms += ms;
    if (f > d->s.max_ms)
        d->s.max_ms = f;
    d->win[d->win_next++ % RECORDS_DB_STATS_WINDOW] = f;
}

/* Time spent by exec: inside a transaction it adds to the transaction's op. */
static void spent(struct dbstats *d, double ms)
{
    if (d->in_tx)
        d->tx_ms += ms;
    else
        op_done(d, ms);
}

static int running_of(struct dbstats *d, struct rdb_stmt *st)
{
    for (int i = 0; i < d->n_running; i++)
        if (d->running[i].st == st)
            return i;
    return -1;
}

/* A statement's first step after a reset starts a run (a round trip); its time is one op
 * when it runs outside a transaction, else part of the transaction's. */
static int w_step(struct rdb_stmt *st)
{
    struct dbstats *d = stats_of(st->db);
    int i = running_of(d, st);
    double t0 = now_ms();
    int rc = d->orig->step(st);
    double ms = now_ms() - t0;
    if (i < 0) {
        d->s.round_trips++;
        if (d->n_running < STATS_RUNNING) {
            i = d->n_running++;
            d->running[i].st = st;
            d->running[i].ms = 0;
            d->running[i].in_tx = d->in_tx;
        }
    }
    if (d->in_tx)
        d->tx_ms += ms;
    else if (i >= 0)
        d->running[i].ms += ms;
    else
        op_done(d, ms);
    return rc;
}

static void w_reset(struct rdb_stmt *st)
{
    struct dbstats *d = stats_of(st->db);
    int i = running_of(d, st);
    if (i >= 0) {
        if (!d->running[i].in_tx)
            op_done(d, d->running[i].ms);
        d->running[i] = d->running[--d->n_running];
    }
    d->orig->reset(st);
}

static void w_finalize(struct rdb_stmt *st)
{
    struct dbstats *d = stats_of(st->db);
    for (int i = 0; i < d->n_running; i++)
        if (d->running[i].st == st) {
            d->running[i] = d->running[--d->n_running];
            break;
        }
    d->orig->finalize(st);
}

static int w_exec(struct rdb *db, const char *sql)
{
    struct dbstats *d = stats_of(db);
    double t0 = now_ms();
    int rc = d->orig->exec(db, sql);
    d->s.round_trips++;
    spent(d, now_ms() - t0);
    return rc;
}

static int w_begin(struct rdb *db)
{
    struct dbstats *d = stats_of(db);
    double t0 = now_ms();
    int rc = d->orig->begin(db);
    d->s.round_trips++;
    d->in_tx = rc >= 0;
    d->tx_ms = now_ms() - t0;
    return rc;
}

static void tx_end(struct dbstats *d, double ms)
{
    d->s.round_trips++;
    if (d->in_tx)
        op_done(d, d->tx_ms + ms);
    d->in_tx = false;
    d->tx_ms = 0;
}

static int w_commit(struct rdb *db)
{
    struct dbstats *d = stats_of(db);
    double t0 = now_ms();
    int rc = d->orig->commit(db);
    tx_end(d, now_ms() - t0);
    return rc;
}

static void w_rollback(struct rdb *db)
{
    struct dbstats *d = stats_of(db);
    double t0 = now_ms();
    d->orig->rollback(db);
    tx_end(d, now_ms() - t0);
}

static void w_close(struct rdb *db)
{
    struct dbstats *d = stats_of(db);
    const struct rdb_ops *orig = d->orig;
    for (int i = 0; i < STATS_STORES; i++)
        if (stats_tab[i] == d)
            stats_tab[i] = NULL;
    db->ops = orig;
    free(d->win);
    free(d);
    orig->close(db);
}

int records_db_stats_enable(struct records *r)
{
    if (!r || !r->db)
        return -EINVAL;
    if (stats_of(r->db))
        return 0;
    int slot = -1;
    for (int i = 0; i < STATS_STORES && slot < 0; i++)
        if (!stats_tab[i])
            slot = i;
    if (slot < 0)
        return -ENOSPC;
    struct dbstats *d = calloc(1, sizeof(*d));
    if (!d || !(d->win = calloc(RECORDS_DB_STATS_WINDOW, sizeof(*d->win)))) {
        free(d);
        return -ENOMEM;
    }
    d->db = r->db;
    d->orig = r->db->ops;
    d->ops = *r->db->ops;
    d->ops.step = w_step;
    d->ops.reset = w_reset;
    d->ops.finalize = w_finalize;
    d->ops.exec = w_exec;
    d->ops.begin = w_begin;
    d->ops.commit = w_commit;
    d->ops.rollback = w_rollback;
    d->ops.close = w_close;
    stats_tab[slot] = d;
    r->db->ops = &d->ops;
    return 0;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

void records_db_stats_get(struct records *r, struct records_db_stats *out)
{
    memset(out, 0, sizeof(*out));
    struct dbstats *d = r && r->db ? stats_of(r->db) : NULL;
    if (!d)
        return;
    *out = d->s;
    uint64_t n = d->win_next < RECORDS_DB_STATS_WINDOW ? d->win_next : RECORDS_DB_STATS_WINDOW;
    out->window = n;
    if (!n)
        return;
    float *v = malloc(sizeof(*v) * n);
    if (!v)
        return;
    memcpy(v, d->win, sizeof(*v) * n);
    qsort(v, n, sizeof(*v), cmp_float);
    out->p50_ms = v[(n - 1) / 2];
    out->p99_ms = v[(n * 99 + 99) / 100 - 1];
    free(v);
}
