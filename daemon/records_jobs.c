/*
 * records_jobs: the jobs' history (see records.h): a job's life from begin through
 * progress and log lines to its result, reading jobs back, and their CSV export.
 */
#include "records.h"
#include "records_priv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define JOB_COLS                                                                                   \
    "id, kind, board_mac, slot, firmware, state, stage, started_at, ended_at, result_code, "       \
    "error_stage, error_message, error_advice, device_status, device_error, error_op, "            \
    "error_address, bytes, wire_bytes, kbps, retries, seconds, station, skipped_bytes"
#define JOB_WHERE                                                                                  \
    " WHERE (board_mac = ?1 OR ?1 IS NULL) AND (slot = ?2 OR ?2 IS NULL)"                          \
    " AND (kind = ?3 OR ?3 IS NULL) AND (state = ?4 OR ?4 IS NULL)"                                \
    " AND (started_at >= ?5 OR ?5 IS NULL) AND (started_at < ?6 OR ?6 IS NULL)"                    \
    " AND (station = ?9 OR ?9 IS NULL)"

/* ---- job states ---------------------------------------------------------- */

static const char *const job_state_names[RECORDS_JOB_STATE_COUNT] = {
    [RECORDS_JOB_QUEUED] = "queued",           [RECORDS_JOB_RUNNING] = "running",
    [RECORDS_JOB_PASSED] = "passed",           [RECORDS_JOB_FAILED] = "failed",
    [RECORDS_JOB_INTERRUPTED] = "interrupted", [RECORDS_JOB_CANCELLED] = "cancelled",
    [RECORDS_JOB_SKIPPED] = "skipped",
};

const char *records_job_state_to_string(enum records_job_state s)
{
    if (s < 0 || s >= RECORDS_JOB_STATE_COUNT)
        return s == RECORDS_JOB_ANY ? "any" : "unknown";
    return job_state_names[s];
}

int records_job_state_from_string(const char *name, enum records_job_state *out)
{
    for (int i = 0; name && i < RECORDS_JOB_STATE_COUNT; i++) {
        if (strcmp(name, job_state_names[i]) == 0) {
            if (out)
                *out = (enum records_job_state)i;
            return 0;
        }
    }
    return -EINVAL;
}

bool records_job_state_is_final(enum records_job_state s)
{
    return s >= RECORDS_JOB_PASSED && s < RECORDS_JOB_STATE_COUNT;
}

/* ---- jobs ----------------------------------------------------------------- */

static const char sql_job_begin[] =
    "INSERT INTO jobs (kind, board_mac, slot, firmware, state, stage, "
    "started_at, station) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id";

int records_job_begin(struct records *r, const struct records_job_new *j, int64_t *id,
                      struct records_error *err)
{
    char mac[RECORDS_MAC_LEN] = "";
    struct rdb_stmt *st;
    int64_t new_id = 0;
    int rc, ret;
    ENTER(r, err);
    if (JOURNALED(r))
        return rj_job_begin(r, j, id, err);
    if (!j)
        return rec_set_err(err, -EINVAL, "records: no job");
    if ((ret = rec_check_token("job kind", j->kind, RECORDS_STATE_LEN, err)) < 0 ||
        (j->board_mac && *j->board_mac && (ret = rec_normalize_mac(j->board_mac, mac, err)) < 0) ||
        (ret = rec_check_text("job slot", j->slot, RECORDS_SLOT_LEN, err)) < 0 ||
        (ret = rec_check_text("job firmware", j->firmware, RECORDS_FIRMWARE_LEN, err)) < 0 ||
        (ret = rec_check_text("job stage", j->stage, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_job_begin, NULL, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, j->kind);
    rec_bind_text(st, 2, mac);
    rec_bind_text(st, 3, j->slot);
    rec_bind_text(st, 4, j->firmware);
    rec_bind_text(st, 5, j->queued ? "queued" : "running");
    rec_bind_text(st, 6, j->stage);
    rdb_bind_int64(st, 7, records_now_ms(r));
    rec_bind_text(st, 8, r->station);
    rc = rec_step_insert_id(r, st, false, &new_id);
    if (rc == RDB_DONE) {
        ret = 0;
        if (id)
            *id = new_id;
    } else if (rc == -ENOENT) {
        ret =
            rec_set_err(err, -ENOENT, "records: no board %s: record the board before its job", mac);
    } else {
        ret = rec_db_err(r, err, rc, "cannot record job start");
    }
    rec_stmt_done(st);
    return ret;
}

static const char sql_job_state[] =
    "SELECT state, started_at, bytes, wire_bytes FROM jobs WHERE id = ?1";

/* Reads a job's state; -ENOENT when unknown. */
static int job_state(struct records *r, int64_t id, enum records_job_state *state, int64_t *started,
                     int64_t *bytes, int64_t *wire, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret;
    if ((ret = rec_prep(r, sql_job_state, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    rc = rdb_step(st);
    if (rc == RDB_ROW) {
        ret = records_job_state_from_string(rdb_column_text(st, 0), state);
        if (ret < 0)
            ret =
                rec_set_err(err, -EBADMSG, "records: job %lld has an unknown state", (long long)id);
        if (started)
            *started = rec_col_int(st, 1, 0);
        if (bytes)
            *bytes = rec_col_int(st, 2, 0);
        if (wire)
            *wire = rec_col_int(st, 3, 0);
    } else if (rc == RDB_DONE) {
        ret = rec_set_err(err, -ENOENT, "records: no job %lld", (long long)id);
    } else {
        ret = rec_db_err(r, err, rc, "cannot read job");
    }
    rec_stmt_done(st);
    return ret;
}

/* Ends an UPDATE of a queued or running job (rc: its step). When it matched
 * no row, says why: no such job, or the job is already final. */
static int job_update_done(struct records *r, struct rdb_stmt *st, int rc, int64_t id,
                           const char *what, struct records_error *err)
{
    enum records_job_state s;
    int ret;
    if (rc != RDB_DONE)
        ret = rec_db_err(r, err, rc, what);
    else
        ret = rdb_changes(r->db) == 1 ? 0 : 1;
    rec_stmt_done(st);
    if (ret != 1)
        return ret;
    ret = job_state(r, id, &s, NULL, NULL, NULL, err);
    if (ret < 0)
        return ret;
    return rec_set_err(err, -EINVAL, "records: job %lld is already %s", (long long)id,
                       records_job_state_to_string(s));
}

static const char sql_job_set_board[] = "UPDATE jobs SET board_mac = ?2 WHERE id = ?1";

int records_job_set_board(struct records *r, int64_t id, const char *mac, struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if (JOURNALED(r))
        return rj_job_set_board(r, id, mac, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_job_set_board, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    rdb_bind_text(st, 2, norm);
    rc = rdb_step(st);
    if (rc == -ENOENT) {
        rec_stmt_done(st);
        return rec_set_err(err, -ENOENT, "records: no board %s: record the board before its job",
                           norm);
    }
    return rec_change_one(r, st, rc, "cannot attach board to job", err, "records: no job %lld",
                          (long long)id);
}

static const char sql_job_set_firmware[] = "UPDATE jobs SET firmware = ?2 WHERE id = ?1";

int records_job_set_firmware(struct records *r, int64_t id, const char *firmware,
                             struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (JOURNALED(r))
        return rj_job_set_firmware(r, id, firmware, err);
    if ((ret = rec_check_text("job firmware", firmware, RECORDS_FIRMWARE_LEN, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_job_set_firmware, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    rec_bind_text(st, 2, firmware);
    return rec_change_one(r, st, rdb_step(st), "cannot set the job's firmware", err,
                          "records: no job %lld", (long long)id);
}

static const char sql_job_progress[] =
    "UPDATE jobs SET stage = coalesce(?2, stage), "
    "bytes = coalesce(?3, bytes), wire_bytes = coalesce(?4, wire_bytes), "
    "started_at = CASE WHEN state = 'queued' THEN ?5 ELSE started_at END, "
    "state = 'running' WHERE id = ?1 AND state IN ('queued', 'running')";

int records_job_progress(struct records *r, int64_t id, const char *stage, int64_t bytes,
                         int64_t wire_bytes, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (JOURNALED(r))
        return rj_job_progress(r, id, stage, bytes, wire_bytes, err);
    if ((ret = rec_check_text("job stage", stage, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_job_progress, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    rec_bind_text(st, 2, stage);
    rec_bind_opt_int(st, 3, bytes);
    rec_bind_opt_int(st, 4, wire_bytes);
    rdb_bind_int64(st, 5, records_now_ms(r));
    return job_update_done(r, st, rdb_step(st), id, "cannot record job progress", err);
}

static const char sql_job_log[] =
    "INSERT INTO job_log (job_id, ts, level, line) VALUES (?1, ?2, ?3, ?4)";

int records_job_log(struct records *r, int64_t id, const char *level, const char *line,
                    struct records_error *err)
{
    char buf[RECORDS_TEXT_LEN];
    struct rdb_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if (JOURNALED(r))
        return rj_job_log(r, id, level, line, err);
    if ((ret = rec_check_token("log level", level, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = rec_prep(r, sql_job_log, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    rdb_bind_int64(st, 2, records_now_ms(r));
    rec_bind_text(st, 3, level);
    rec_copy_trunc(buf, sizeof(buf), line ? line : "");
    rdb_bind_text(st, 4, buf);
    rc = rdb_step(st);
    if (rc == RDB_DONE)
        ret = 0;
    else if (rc == -ENOENT)
        ret = rec_set_err(err, -ENOENT, "records: no job %lld", (long long)id);
    else
        ret = rec_db_err(r, err, rc, "cannot append job log line");
    rec_stmt_done(st);
    return ret;
}

void records_job_result_init(struct records_job_result *res)
{
    if (!res)
        return;
    memset(res, 0, sizeof(*res));
    res->state = RECORDS_JOB_FAILED;
    res->device_status = -1;
    res->device_error = -1;
    res->error_op = -1;
    res->error_address = -1;
    res->bytes = -1;
    res->wire_bytes = -1;
    res->skipped_bytes = -1;
    res->kbps = -1;
    res->seconds = -1;
}

static const char sql_job_finish[] =
    "UPDATE jobs SET state = ?2, ended_at = ?3, result_code = ?4, "
    "error_stage = ?5, error_message = ?6, error_advice = ?7, "
    "device_status = ?8, device_error = ?9, error_op = ?10, "
    "error_address = ?11, bytes = ?12, wire_bytes = ?13, kbps = ?14, "
    "retries = ?15, seconds = ?16, skipped_bytes = ?17 "
    "WHERE id = ?1 AND state IN ('queued', 'running', 'interrupted')";

int records_job_finish(struct records *r, int64_t id, const struct records_job_result *res,
                       struct records_error *err)
{
    enum records_job_state cur;
    int64_t started, bytes, wire, now;
    double secs, kbps;
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (JOURNALED(r))
        return rj_job_finish(r, id, res, err);
    if (!res)
        return rec_set_err(err, -EINVAL, "records: no job result");
    if (!records_job_state_is_final(res->state))
        return rec_set_err(err, -EINVAL, "records: \"%s\" is not a final job state",
                           records_job_state_to_string(res->state));
    if ((ret = rec_check_text("job error stage", res->error_stage, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = job_state(r, id, &cur, &started, &bytes, &wire, err)) < 0)
        return ret;
    /* 'interrupted' is a guess made without the job's worker (a crash recovery, or
     * another station taking over from one it thought gone: cut off from the
     * database, or journaling through an outage, longer than line.gone_after_s).
     * The worker's own result, arriving later, is the truth and replaces it; a
     * job counts once whatever its state, so nothing is counted twice. */
    if (records_job_state_is_final(cur) && cur != RECORDS_JOB_INTERRUPTED)
        return rec_set_err(err, -EINVAL, "records: job %lld is already %s", (long long)id,
                           records_job_state_to_string(cur));
    now = records_now_ms(r);
    if (res->bytes >= 0)
        bytes = res->bytes;
    if (res->wire_bytes >= 0)
        wire = res->wire_bytes;
    secs = res->duration_unknown ? -1
           : res->seconds >= 0   ? res->seconds
                                 : (now > started ? (double)(now - started) / 1e3 : 0);
    kbps = res->kbps >= 0 ? res->kbps : (secs > 0 ? (double)bytes * 8 / 1000 / secs : -1);

    if ((ret = rec_prep(r, sql_job_finish, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    rec_bind_text(st, 2, records_job_state_to_string(res->state));
    rdb_bind_int64(st, 3, now);
    rdb_bind_int64(st, 4, res->result_code);
    rec_bind_text(st, 5, res->error_stage);
    rec_bind_trunc(st, 6, res->error_message, RECORDS_TEXT_LEN);
    rec_bind_trunc(st, 7, res->error_advice, RECORDS_TEXT_LEN);
    rec_bind_opt_int(st, 8, res->device_status);
    rec_bind_opt_int(st, 9, res->device_error);
    rec_bind_opt_int(st, 10, res->error_op);
    rec_bind_opt_int(st, 11, res->error_address);
    rdb_bind_int64(st, 12, bytes);
    rdb_bind_int64(st, 13, wire);
    if (kbps >= 0)
        rdb_bind_double(st, 14, kbps);
    else
        rdb_bind_null(st, 14);
    rdb_bind_int64(st, 15, res->retries > 0 ? res->retries : 0);
    if (secs >= 0)
        rdb_bind_double(st, 16, secs);
    else
        rdb_bind_null(st, 16);
    rec_bind_opt_int(st, 17, res->skipped_bytes);
    return job_update_done(r, st, rec_step_durable(r, st), id, "cannot record job result", err);
}

static void read_job(struct rdb_stmt *st, void *out)
{
    struct records_job *j = out;
    memset(j, 0, sizeof(*j));
    j->id = rdb_column_int64(st, 0);
    rec_col_text(st, 1, j->kind, sizeof(j->kind));
    rec_col_text(st, 2, j->board_mac, sizeof(j->board_mac));
    rec_col_text(st, 3, j->slot, sizeof(j->slot));
    rec_col_text(st, 4, j->firmware, sizeof(j->firmware));
    if (records_job_state_from_string(rdb_column_text(st, 5), &j->state) < 0)
        j->state = RECORDS_JOB_FAILED; /* CHECK constraint makes this unreachable */
    rec_col_text(st, 6, j->stage, sizeof(j->stage));
    j->started_at = rec_col_int(st, 7, 0);
    j->ended_at = rec_col_int(st, 8, 0);
    j->result_code = (int)rec_col_int(st, 9, 0);
    rec_col_text(st, 10, j->error_stage, sizeof(j->error_stage));
    rec_col_text(st, 11, j->error_message, sizeof(j->error_message));
    rec_col_text(st, 12, j->error_advice, sizeof(j->error_advice));
    j->device_status = (int)rec_col_int(st, 13, -1);
    j->device_error = (int)rec_col_int(st, 14, -1);
    j->error_op = (int)rec_col_int(st, 15, -1);
    j->error_address = rec_col_int(st, 16, -1);
    j->bytes = rec_col_int(st, 17, 0);
    j->wire_bytes = rec_col_int(st, 18, 0);
    j->kbps = rec_col_real(st, 19, -1);
    j->retries = (int)rec_col_int(st, 20, 0);
    j->seconds = rec_col_real(st, 21, -1);
    rec_col_text(st, 22, j->station, sizeof(j->station));
    j->skipped_bytes = rec_col_int(st, 23, -1);
}

static const char sql_job_get[] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1";

int records_job_get(struct records *r, int64_t id, struct records_job *out,
                    struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output job");
    if ((ret = rec_prep(r, sql_job_get, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    return rec_get_one(r, st, read_job, out, "cannot read job", err, "records: no job %lld",
                       (long long)id);
}

void records_job_filter_init(struct records_job_filter *f)
{
    if (!f)
        return;
    memset(f, 0, sizeof(*f));
    f->state = RECORDS_JOB_ANY;
}

static int bind_job_filter(struct rdb_stmt *st, const struct records_job_filter *f,
                           struct records_error *err)
{
    char mac[RECORDS_MAC_LEN];
    int ret;
    if (!f) {
        rdb_bind_int64(st, 7, REC_NO_LIMIT);
        rdb_bind_int64(st, 8, 0);
        return 0;
    }
    if (f->board_mac && *f->board_mac) {
        if ((ret = rec_normalize_mac(f->board_mac, mac, err)) < 0)
            return ret;
        rdb_bind_text(st, 1, mac);
    }
    rec_bind_text(st, 2, f->slot);
    rec_bind_text(st, 3, f->kind);
    if (f->state != RECORDS_JOB_ANY) {
        if (f->state < 0 || f->state >= RECORDS_JOB_STATE_COUNT)
            return rec_set_err(err, -EINVAL, "records: unknown job state %d in filter", f->state);
        rec_bind_text(st, 4, records_job_state_to_string(f->state));
    }
    if (f->since > 0)
        rdb_bind_int64(st, 5, f->since);
    if (f->until > 0)
        rdb_bind_int64(st, 6, f->until);
    rdb_bind_int64(st, 7, f->limit > 0 ? f->limit : REC_NO_LIMIT);
    rdb_bind_int64(st, 8, f->offset > 0 ? f->offset : 0);
    rec_bind_text(st, 9, f->station);
    return 0;
}

static const char sql_job_list[] =
    "SELECT " JOB_COLS " FROM jobs" JOB_WHERE " ORDER BY id DESC LIMIT ?7 OFFSET ?8";

int records_job_list(struct records *r, const struct records_job_filter *f, records_job_cb cb,
                     void *ctx, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_job_list, NULL, &st, err)) < 0)
        return ret;
    if ((ret = bind_job_filter(st, f, err)) < 0) {
        rec_stmt_done(st);
        return ret;
    }
    while (rec_next_row(r, st, &rc, &n)) {
        read_job(st, &r->row.job);
        if (cb && cb(&r->row.job, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list jobs", err);
}

static const char sql_job_log_list[] =
    "SELECT ts, level, line FROM job_log WHERE job_id = ?1 ORDER BY id";

int records_job_log_list(struct records *r, int64_t id, records_log_cb cb, void *ctx,
                         struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_prep(r, sql_job_log_list, NULL, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    while (rec_next_row(r, st, &rc, &n)) {
        struct records_log_line *l = &r->row.log;
        l->ts = rec_col_int(st, 0, 0);
        rec_col_text(st, 1, l->level, sizeof(l->level));
        rec_col_text(st, 2, l->line, sizeof(l->line));
        if (cb && cb(l, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot read job log", err);
}

/* ---- CSV ------------------------------------------------------------------ */

/* RFC 4180: quote a field holding a comma, quote, CR or LF; double quotes. */
static void csv_field(FILE *out, const char *s, bool last)
{
    if (s && strpbrk(s, ",\"\r\n")) {
        fputc('"', out);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', out);
            fputc(*s, out);
        }
        fputc('"', out);
    } else if (s) {
        fputs(s, out);
    }
    fputs(last ? "\r\n" : ",", out);
}

static const char *csv_int(char *buf, size_t n, int64_t v, bool present, bool hex)
{
    if (!present)
        return "";
    snprintf(buf, n, hex ? "0x%llx" : "%lld", (long long)v);
    return buf;
}

static const char *csv_real(char *buf, size_t n, double v, int decimals)
{
    if (v < 0)
        return "";
    snprintf(buf, n, "%.*f", decimals, v);
    return buf;
}

static void csv_job(FILE *out, const struct records_job *j)
{
    char b[12][RECORDS_TIME_LEN];
    csv_field(out, csv_int(b[0], sizeof(b[0]), j->id, true, false), false);
    csv_field(out, j->kind, false);
    csv_field(out, records_job_state_to_string(j->state), false);
    csv_field(out, j->board_mac, false);
    csv_field(out, j->slot, false);
    csv_field(out, j->firmware, false);
    csv_field(out, j->stage, false);
    csv_field(out, records_format_time(j->started_at, b[1], sizeof(b[1])), false);
    csv_field(out, j->ended_at ? records_format_time(j->ended_at, b[2], sizeof(b[2])) : "", false);
    csv_field(out, csv_real(b[3], sizeof(b[3]), j->seconds, 3), false);
    csv_field(out, csv_int(b[4], sizeof(b[4]), j->bytes, true, false), false);
    csv_field(out, csv_int(b[5], sizeof(b[5]), j->wire_bytes, true, false), false);
    csv_field(out, csv_real(b[6], sizeof(b[6]), j->kbps, 1), false);
    csv_field(out, csv_int(b[7], sizeof(b[7]), j->retries, true, false), false);
    csv_field(out, csv_int(b[8], sizeof(b[8]), j->result_code, j->ended_at != 0, false), false);
    csv_field(out, j->error_stage, false);
    csv_field(out, csv_int(b[9], sizeof(b[9]), j->device_status, j->device_status >= 0, true),
              false);
    csv_field(out, csv_int(b[10], sizeof(b[10]), j->device_error, j->device_error >= 0, true),
              false);
    csv_field(out, csv_int(b[11], sizeof(b[11]), j->error_op, j->error_op >= 0, true), false);
    csv_field(out, csv_int(b[0], sizeof(b[0]), j->error_address, j->error_address >= 0, true),
              false);
    csv_field(out, j->error_message, false);
    csv_field(out, j->error_advice, false);
    csv_field(out, csv_int(b[1], sizeof(b[1]), j->skipped_bytes, j->skipped_bytes >= 0, false),
              true);
}

static const char sql_job_export[] =
    "SELECT " JOB_COLS " FROM jobs" JOB_WHERE " ORDER BY id LIMIT ?7 OFFSET ?8";

int records_export_csv(struct records *r, FILE *out, const struct records_job_filter *f,
                       struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output file");
    if ((ret = rec_prep(r, sql_job_export, NULL, &st, err)) < 0)
        return ret;
    if ((ret = bind_job_filter(st, f, err)) < 0) {
        rec_stmt_done(st);
        return ret;
    }
    fputs("id,kind,state,board_mac,slot,firmware,stage,started_at,ended_at,seconds,bytes,"
          "wire_bytes,kbps,retries,result_code,error_stage,device_status,device_error,error_op,"
          "error_address,error_message,error_advice,skipped_bytes\r\n",
          out);
    while ((rc = rdb_step(st)) == RDB_ROW) {
        read_job(st, &r->row.job);
        csv_job(out, &r->row.job);
        n++;
    }
    ret = rc == RDB_DONE ? n : rec_db_err(r, err, rc, "cannot export jobs");
    rec_stmt_done(st);
    if (ret >= 0 && (fflush(out) != 0 || ferror(out)))
        ret = rec_set_err(err, -EIO, "records: cannot write the CSV export: %s", strerror(errno));
    return ret;
}
