/*
 * records: the records store's core (see records.h for the API contract),
 * written once for every backend: opening a store (schema migration, crash
 * recovery, the journal), the statement cache and the helpers every part of the
 * API shares (records_priv.h). The parts are records_boards.c, records_jobs.c,
 * records_events.c, records_firmware.c, records_ota.c (and records_line.c,
 * records_serial.c, records_blobs.c); each validates its input, maps rows to
 * the API's structs and holds its DML next to the code that runs it.
 * The database itself is behind records_db.h: records_sqlite.c (the default,
 * one file under the data directory) and records_pg.c (PostgreSQL, shared by
 * a line of stations); each owns its connection, error mapping and schema DDL.
 *
 * Invariants (of every records_*.c part):
 *  - The DML is one text for both backends, in the subset both speak
 *    ("?N" placeholders, ON CONFLICT, RETURNING, IS NOT DISTINCT FROM). Where
 *    the dialects differ a statement has a PostgreSQL text (sql_..._pg, the
 *    second text given to rec_prep).
 *    A parameter compared with NULL ("?1 IS NULL") is first used against a
 *    column ("chip = ?1 OR ?1 IS NULL"), so PostgreSQL can infer its type.
 *  - Every cached statement is reset before its function returns: in SQLite's
 *    WAL mode a statement left mid-step pins a read snapshot and blocks
 *    checkpoints.
 *  - Writes the API promises durable (a job's result, an event, a bulk, a pool
 *    file) run between set_durable(true) and set_durable(false) and are stepped
 *    to completion before the switch back (see records_sqlite.c).
 */
#include "records.h"
#include "records_db.h"
#include "records_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

/* ---- errors --------------------------------------------------------------- */

int rec_vset_err(struct records_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
    }
    return code;
}

int rec_set_err(struct records_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rec_vset_err(err, code, fmt, ap);
    va_end(ap);
    return code;
}

void rec_clear_err(struct records_error *err)
{
    if (err) {
        err->code = 0;
        err->message[0] = '\0';
    }
}

/* A backend failure (code: its -errno) with the backend's words. */
int rec_db_err(struct records *r, struct records_error *err, int code, const char *what)
{
    if (code >= 0)
        code = -EIO;
    return rec_set_err(err, code, "records: %s: %s", what, r->db->ops->errmsg(r->db));
}

/* ---- small helpers -------------------------------------------------------- */

static int64_t default_clock(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t records_now_ms(const struct records *r)
{
    if (!r || !r->clock)
        return default_clock(NULL);
    return r->clock(r->clock_ctx);
}

void records_set_clock(struct records *r, records_clock_fn fn, void *ctx)
{
    if (!r)
        return;
    r->clock = fn ? fn : default_clock;
    r->clock_ctx = fn ? ctx : NULL;
}

char *records_format_time(int64_t ms, char *buf, size_t size)
{
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    char date[24];
    if (!buf || size == 0)
        return buf;
    if (!gmtime_r(&t, &tm) || strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, size, "%lld", (long long)ms);
        return buf;
    }
    snprintf(buf, size, "%s.%03dZ", date, (int)rem);
    return buf;
}

/* Copies s into dst (size n), cut on a UTF-8 character boundary if too long. */
void rec_copy_trunc(char *dst, size_t n, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (n == 0)
        return;
    if (len >= n) {
        len = n - 1;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
}

/* An identifier-like text: shorter than max, no control characters. */
int rec_check_text(const char *what, const char *s, size_t max, struct records_error *err)
{
    size_t len;
    if (!s)
        return 0;
    len = strnlen(s, max);
    if (len >= max)
        return rec_set_err(err, -EINVAL, "records: %s too long (max %zu bytes)", what, max - 1);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return rec_set_err(err, -EINVAL, "records: %s contains a control character", what);
    return 0;
}

/* A token: [a-z0-9._-]+, shorter than max. */
int rec_check_token(const char *what, const char *s, size_t max, struct records_error *err)
{
    size_t len;
    if (!s || !*s)
        return rec_set_err(err, -EINVAL, "records: %s missing", what);
    len = strnlen(s, max);
    if (len >= max)
        return rec_set_err(err, -EINVAL, "records: %s too long (max %zu bytes)", what, max - 1);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return rec_set_err(err, -EINVAL, "records: %s \"%s\" is not a lower-case token", what,
                               s);
    }
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Normalises "AA:BB:CC:DD:EE:FF", "aa-bb-..." or "aabbccddeeff" to lower-case
 * colon form. */
int rec_normalize_mac(const char *in, char out[RECORDS_MAC_LEN], struct records_error *err)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = in ? strnlen(in, 32) : 0;
    int digits = 0, pos = 0;
    if (len != 17 && len != 12)
        goto bad;
    for (size_t i = 0; i < len; i++) {
        int v = hexval(in[i]);
        if (len == 17 && i % 3 == 2) {
            if (in[i] != ':' && in[i] != '-')
                goto bad;
            if (i > 2 && in[i] != in[2])
                goto bad;
            continue;
        }
        if (v < 0)
            goto bad;
        if (digits > 0 && digits % 2 == 0)
            out[pos++] = ':';
        out[pos++] = hex[v];
        digits++;
    }
    out[pos] = '\0';
    return 0;
bad:
    return rec_set_err(err, -EINVAL, "records: \"%.32s\" is not a MAC address (aa:bb:cc:dd:ee:ff)",
                       in ? in : "(null)");
}

/* A caller-filled fixed array must hold a NUL. */
int rec_check_array(const char *what, const char *a, size_t size, struct records_error *err)
{
    if (!memchr(a, '\0', size))
        return rec_set_err(err, -EINVAL, "records: %s is not NUL-terminated", what);
    return rec_check_text(what, a, size, err);
}

/* JSON text holding one object (and nothing else but white space). Checked
 * here, not by a CHECK constraint: SQLite's json_valid() is not allowed in a
 * schema with trusted_schema off, and a PostgreSQL backend needs the same
 * check anyway. */
bool rec_json_object_text(const char *s)
{
    struct json_tokener *tok;
    struct json_object *o;
    size_t len = strlen(s), end;
    bool ok;
    if (len > (size_t)RECORDS_MANIFEST_LEN || !(tok = json_tokener_new()))
        return false;
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, s, (int)len + 1); /* the NUL ends a trailing number */
    ok = o && json_tokener_get_error(tok) == json_tokener_success &&
         json_object_is_type(o, json_type_object);
    end = json_tokener_get_parse_end(tok);
    for (; ok && end < len; end++)
        if (!strchr(" \t\r\n", s[end]))
            ok = false;
    json_object_put(o);
    json_tokener_free(tok);
    return ok;
}

/* ---- statements ----------------------------------------------------------- */

int rec_prep(struct records *r, const char *sql, const char *sql_pg, struct rdb_stmt **out,
             struct records_error *err)
{
    int i, rc;
    for (i = 0; i < r->n_prep; i++)
        if (r->prep[i].sql == sql) {
            *out = r->prep[i].st;
            return 0;
        }
    if (r->n_prep >= RECORDS_PREP_MAX)
        return rec_set_err(err, -ENOSPC, "records: too many statements (RECORDS_PREP_MAX)");
    rc = r->db->ops->prepare(r->db, r->db->ops->dialect == RDB_POSTGRESQL && sql_pg ? sql_pg : sql,
                             &r->prep[i].st);
    if (rc < 0)
        return rec_db_err(r, err, rc, "cannot prepare statement");
    r->prep[i].sql = sql;
    r->n_prep++;
    *out = r->prep[i].st;
    return 0;
}

void rec_stmt_done(struct rdb_stmt *st)
{
    st->db->ops->reset(st);
}

/* NULL or "" binds SQL NULL. */
void rec_bind_text(struct rdb_stmt *st, int idx, const char *s)
{
    if (s && *s)
        rdb_bind_text(st, idx, s);
    else
        rdb_bind_null(st, idx);
}

/* Free text: truncated to max on a character boundary. */
void rec_bind_trunc(struct rdb_stmt *st, int idx, const char *s, size_t max)
{
    char buf[RECORDS_TEXT_LEN];
    if (max > sizeof(buf))
        max = sizeof(buf);
    rec_copy_trunc(buf, max, s);
    rec_bind_text(st, idx, buf);
}

/* Negative binds SQL NULL ("unknown"). */
void rec_bind_opt_int(struct rdb_stmt *st, int idx, int64_t v)
{
    if (v < 0)
        rdb_bind_null(st, idx);
    else
        rdb_bind_int64(st, idx, v);
}

void rec_col_text(struct rdb_stmt *st, int i, char *dst, size_t n)
{
    rec_copy_trunc(dst, n, rdb_column_text(st, i));
}

int64_t rec_col_int(struct rdb_stmt *st, int i, int64_t dflt)
{
    return st->db->ops->column_null(st, i) ? dflt : rdb_column_int64(st, i);
}

double rec_col_real(struct rdb_stmt *st, int i, double dflt)
{
    return st->db->ops->column_null(st, i) ? dflt : rdb_column_double(st, i);
}

/* Steps a write statement with the commit durable (see the top comment). */
int rec_step_durable(struct records *r, struct rdb_stmt *st)
{
    int rc = rdb_set_durable(r->db, true);
    if (rc < 0)
        return rc;
    rc = rdb_step(st);
    rdb_set_durable(r->db, false);
    return rc;
}

/* Steps an INSERT ... RETURNING id to its end (so its commit is done before
 * a durability switch back), *id gets the id. RDB_DONE or -errno. */
int rec_step_insert_id(struct records *r, struct rdb_stmt *st, bool durable, int64_t *id)
{
    int rc = durable ? rdb_set_durable(r->db, true) : 0;
    if (rc < 0)
        return rc;
    rc = rdb_step(st);
    if (rc == RDB_ROW) {
        *id = rdb_column_int64(st, 0);
        rc = rdb_step(st);
    } else if (rc == RDB_DONE) {
        rc = -EIO; /* RETURNING gave no row */
    }
    if (durable)
        rdb_set_durable(r->db, false);
    return rc;
}

/* Steps a one-shot cached write statement: 0 or -errno. */
int rec_step_once(struct rdb_stmt *st)
{
    int rc = rdb_step(st);
    rec_stmt_done(st);
    return rc == RDB_DONE ? 0 : rc < 0 ? rc : -EIO;
}

/*
 * The endings every accessor shares. The caller has bound the statement (and,
 * for writes, stepped it: rc); each ending maps the result to 0 / -errno with
 * the message, and resets the statement. `missing` is the printf format of the
 * -ENOENT message ("records: no job %lld").
 */

/* Fills a caller's struct (void *: one reader serves get and list). */

/* Steps a one-row query: read(st, out) on the row, -ENOENT without one. */

int rec_get_one(struct records *r, struct rdb_stmt *st, row_reader read, void *out,
                const char *what, struct records_error *err, const char *missing, ...)
{
    int rc = rdb_step(st), ret = 0;
    if (rc == RDB_ROW) {
        read(st, out);
    } else if (rc == RDB_DONE) {
        va_list ap;
        va_start(ap, missing);
        ret = rec_vset_err(err, -ENOENT, missing, ap);
        va_end(ap);
    } else {
        ret = rec_db_err(r, err, rc, what);
    }
    rec_stmt_done(st);
    return ret;
}

/* A write that needs no row to match. */
int rec_write_done(struct records *r, struct rdb_stmt *st, int rc, const char *what,
                   struct records_error *err)
{
    int ret = rc == RDB_DONE ? 0 : rec_db_err(r, err, rc, what);
    rec_stmt_done(st);
    return ret;
}

/* A write by key that must change its row: -ENOENT when none matched. */

int rec_change_one(struct records *r, struct rdb_stmt *st, int rc, const char *what,
                   struct records_error *err, const char *missing, ...)
{
    int ret = 0;
    if (rc != RDB_DONE) {
        ret = rec_db_err(r, err, rc, what);
    } else if (rdb_changes(r->db) == 0) {
        va_list ap;
        va_start(ap, missing);
        ret = rec_vset_err(err, -ENOENT, missing, ap);
        va_end(ap);
    }
    rec_stmt_done(st);
    return ret;
}

/*
 * A list: `while (rec_next_row(r, st, &rc, &n)) { read; call back; }` then
 * `return rec_list_done(...)`. The caller's callback runs with r->in_callback set,
 * so it cannot re-enter the store; the result is the number of rows read.
 */
bool rec_next_row(struct records *r, struct rdb_stmt *st, int *rc, int *n)
{
    r->in_callback = true;
    *rc = rdb_step(st);
    if (*rc != RDB_ROW)
        return false;
    (*n)++;
    return true;
}

int rec_list_done(struct records *r, struct rdb_stmt *st, int rc, int n, const char *what,
                  struct records_error *err)
{
    int ret;
    r->in_callback = false;
    ret = (rc == RDB_ROW || rc == RDB_DONE) ? n : rec_db_err(r, err, rc, what);
    rec_stmt_done(st);
    return ret;
}

/* ---- open / close --------------------------------------------------------- */

int rec_migrate(struct records *r, struct records_error *err)
{
    const char *const *migrations =
        r->db->ops->dialect == RDB_POSTGRESQL ? rdb_pg_migrations : rdb_sqlite_migrations;
    int64_t v;
    int rc = r->db->ops->get_version(r->db, &v);
    if (rc < 0)
        return rec_db_err(r, err, rc, "cannot read the schema version");
    if (v > rdb_migrations_count)
        return rec_set_err(err, -ENOTSUP,
                           "records: %s has schema version %lld, newer than this espstationd "
                           "supports (%d): upgrade espstationd",
                           r->path, (long long)v, rdb_migrations_count);
    r->schema_version = (int)v;
    while (r->schema_version < rdb_migrations_count) {
        rc = rdb_begin(r->db);
        if (rc < 0) {
            char what[512];
            snprintf(what, sizeof(what), "cannot open %s", r->path);
            return rec_db_err(r, err, rc, what);
        }
        /* Another process may have migrated while we waited for the lock. */
        rc = r->db->ops->get_version(r->db, &v);
        if (rc >= 0 && v > r->schema_version) {
            rdb_commit(r->db);
            r->schema_version = (int)v;
            continue;
        }
        if (rc >= 0)
            rc = r->db->ops->exec(r->db, migrations[r->schema_version]);
        if (rc >= 0)
            rc = r->db->ops->set_version(r->db, r->schema_version + 1);
        if (rc >= 0)
            rc = rdb_commit(r->db);
        if (rc < 0) {
            char what[512];
            int ret;
            snprintf(what, sizeof(what), "cannot migrate %s to schema version %d", r->path,
                     r->schema_version + 1);
            ret = rec_db_err(r, err, rc, what);
            rdb_rollback(r->db);
            return ret;
        }
        r->schema_version++;
    }
    return 0;
}

/* The job.interrupted event's data: the JSON object the API shows. */
static void interrupted_json(char *buf, size_t n, int64_t id, const char *stage)
{
    struct json_object *o = json_object_new_object();
    char msg[RECORDS_TEXT_LEN];
    snprintf(msg, sizeof(msg), "job %lld interrupted: daemon stopped while %s", (long long)id,
             stage);
    json_object_object_add(o, "job", json_object_new_int64(id));
    json_object_object_add(o, "state", json_object_new_string("interrupted"));
    json_object_object_add(o, "stage", json_object_new_string(stage));
    json_object_object_add(o, "message", json_object_new_string(msg));
    rec_copy_trunc(
        buf, n,
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static const char sql_jobs_unfinished[] =
    "SELECT id, board_mac, slot, coalesce(nullif(stage, ''), state) "
    "FROM jobs WHERE state IN ('queued', 'running') "
    "AND (station = ?1 OR station IS NULL OR ?1 IS NULL) ORDER BY id";
/* Locks the rows: a station taking over this one's jobs at the same moment
 * (records_line.c) waits, or has taken them and they no longer match: each job
 * gets one job.interrupted event. */
static const char sql_jobs_unfinished_pg[] =
    "SELECT id, board_mac, slot, coalesce(nullif(stage, ''), state) "
    "FROM jobs WHERE state IN ('queued', 'running') "
    "AND (station = ?1 OR station IS NULL OR ?1 IS NULL) ORDER BY id "
    "FOR UPDATE";
static const char sql_jobs_interrupt[] =
    "UPDATE jobs SET state = 'interrupted', ended_at = ?1, result_code = ?2, "
    "error_stage = coalesce(nullif(stage, ''), state), "
    "error_message = 'daemon stopped while ' || coalesce(nullif(stage, ''), state), "
    "error_advice = 'the station stopped (crash, kill or power loss) during this job; "
    "the board is flashed again when it is next seen', "
    "seconds = CASE WHEN ?1 > started_at THEN (?1 - started_at) / 1000.0 ELSE 0 END "
    "WHERE state IN ('queued', 'running') "
    "AND (station = ?3 OR station IS NULL OR ?3 IS NULL)";
/* One job (recovery that spares this process's own jobs: rec_recover). */
static const char sql_job_interrupt[] =
    "UPDATE jobs SET state = 'interrupted', ended_at = ?1, result_code = ?2, "
    "error_stage = coalesce(nullif(stage, ''), state), "
    "error_message = 'daemon stopped while ' || coalesce(nullif(stage, ''), state), "
    "error_advice = 'the station stopped (crash, kill or power loss) during this job; "
    "the board is flashed again when it is next seen', "
    "seconds = CASE WHEN ?1 > started_at THEN (?1 - started_at) / 1000.0 ELSE 0 END "
    "WHERE id = ?3 AND state IN ('queued', 'running')";

/* Jobs the previous process left queued/running become interrupted, each with
 * an event, in one durable transaction. With mine (an offline start finished
 * late: the journal already wrote this process's own jobs), the jobs it says
 * are this process's are left alone, and the others updated one by one. */
int rec_recover(struct records *r, bool (*mine_fn)(void *ctx, int64_t id), void *ctx,
                struct records_error *err)
{
    struct rdb_stmt *jobs, *ev, *upd, *one = NULL;
    int64_t now = records_now_ms(r);
    int rc, ret, n_one = 0;
    if ((ret = rec_prep(r, sql_jobs_unfinished, sql_jobs_unfinished_pg, &jobs, err)) < 0 ||
        (ret = rec_prep(r, rec_sql_event_append, NULL, &ev, err)) < 0 ||
        (ret = rec_prep(r, sql_jobs_interrupt, NULL, &upd, err)) < 0 ||
        (mine_fn && (ret = rec_prep(r, sql_job_interrupt, NULL, &one, err)) < 0))
        return ret;
    /* A line's shared database: this station's jobs only. A SQLite file is one
     * station's whatever its name was (a renamed host must not strand its jobs). */
    const char *mine = r->db->ops->dialect == RDB_POSTGRESQL ? r->station : NULL;
    rec_bind_text(jobs, 1, mine);
    rc = rdb_set_durable(r->db, true);
    if (rc >= 0)
        rc = rdb_begin(r->db);
    if (rc < 0) {
        char what[512];
        rec_stmt_done(jobs);
        snprintf(what, sizeof(what), "cannot recover interrupted jobs in %s", r->path);
        ret = rec_db_err(r, err, rc, what);
        rdb_set_durable(r->db, false);
        return ret;
    }
    while ((rc = rdb_step(jobs)) == RDB_ROW) {
        char data[RECORDS_EVENT_DATA_LEN], stage[RECORDS_STATE_LEN];
        int64_t id = rdb_column_int64(jobs, 0), ev_id;
        if (mine_fn && mine_fn(ctx, id))
            continue;
        rec_col_text(jobs, 3, stage, sizeof(stage));
        interrupted_json(data, sizeof(data), id, stage);
        rdb_bind_int64(ev, 1, now);
        rdb_bind_text(ev, 2, "job.interrupted");
        rec_bind_text(ev, 3, rdb_column_text(jobs, 1));
        rec_bind_text(ev, 4, rdb_column_text(jobs, 2));
        rdb_bind_int64(ev, 5, id);
        rdb_bind_text(ev, 6, data);
        rec_bind_text(ev, 7, r->station);
        rc = rec_step_insert_id(r, ev, false, &ev_id);
        rec_stmt_done(ev);
        if (rc >= 0 && one) {
            rdb_bind_int64(one, 1, now);
            rdb_bind_int64(one, 2, -ECANCELED);
            rdb_bind_int64(one, 3, id);
            rc = rdb_step(one);
            n_one += rc >= 0 ? (int)rdb_changes(r->db) : 0;
            rec_stmt_done(one);
        }
        if (rc < 0)
            break;
    }
    rec_stmt_done(jobs);
    if (one) {
        r->recovered = n_one;
    } else if (rc >= 0) {
        rdb_bind_int64(upd, 1, now);
        rdb_bind_int64(upd, 2, -ECANCELED);
        rec_bind_text(upd, 3, mine);
        rc = rdb_step(upd);
        r->recovered = rc >= 0 ? (int)rdb_changes(r->db) : 0;
        rec_stmt_done(upd);
    }
    if (rc >= 0)
        rc = rdb_commit(r->db);
    if (rc < 0) {
        char what[512];
        snprintf(what, sizeof(what), "cannot recover interrupted jobs in %s", r->path);
        ret = rec_db_err(r, err, rc, what);
        rdb_rollback(r->db);
        rdb_set_durable(r->db, false);
        r->recovered = 0;
        return ret;
    }
    rdb_set_durable(r->db, false);
    return 0;
}

static void destroy(struct records *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_prep; i++)
        r->db->ops->finalize(r->prep[i].st);
    rj_free(r->jr);
    if (r->db)
        r->db->ops->close(r->db);
    free(r->path);
    free(r);
}

/* The part of a libpq connection string that names the server and database,
 * without a password, for messages ("host=db1 port=5432 dbname=line"). */
static char *dsn_for_messages(const char *dsn)
{
    size_t n = strlen(dsn) + 1;
    char *out = malloc(n), *o = out;
    const char *p = dsn;
    if (!out)
        return NULL;
    if (strstr(dsn, "://")) { /* URI: drop "user:password@" */
        const char *at = strchr(dsn, '@'), *scheme = strstr(dsn, "://");
        if (at && at > scheme)
            snprintf(out, n, "%.*s%s", (int)(scheme + 3 - dsn), dsn, at + 1);
        else
            snprintf(out, n, "%s", dsn);
        return out;
    }
    while (*p) {
        size_t len;
        while (*p == ' ')
            p++;
        len = strcspn(p, " ");
        if (len && strncmp(p, "password", 8) != 0) {
            if (o != out)
                *o++ = ' ';
            memcpy(o, p, len);
            o += len;
        }
        p += len;
    }
    *o = '\0';
    return out;
}

/* 1 to max - 1 of A-Z a-z 0-9 . _ - (group and station names). */
bool rec_name_ok(const char *name, size_t max)
{
    size_t len = name ? strnlen(name, max) : 0;
    if (len == 0 || len >= max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool records_station_name_ok(const char *name)
{
    return rec_name_ok(name, RECORDS_STATION_LEN);
}

const char *records_station(const struct records *r)
{
    return r ? r->station : "";
}

static int open_store(enum records_backend backend, const char *target, const char *station,
                      const char *journal, struct records **out, struct records_error *err)
{
    struct records *r;
    char msg[768] = "";
    int ret;

    rec_clear_err(err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output pointer");
    *out = NULL;
    if (station && *station && !records_station_name_ok(station))
        return rec_set_err(err, -EINVAL,
                           "records: station name \"%.64s\" is not 1 to %d of A-Z a-z 0-9 . _ -",
                           station, RECORDS_STATION_LEN - 1);
    if (!target || !*target)
        return rec_set_err(err, -EINVAL,
                           backend == RECORDS_BACKEND_POSTGRESQL
                               ? "records: no PostgreSQL connection string (dsn)"
                               : "records: no database path");
    r = calloc(1, sizeof(*r));
    if (!r)
        return rec_set_err(err, -ENOMEM, "records: out of memory");
    r->path = backend == RECORDS_BACKEND_POSTGRESQL ? dsn_for_messages(target) : strdup(target);
    if (!r->path) {
        free(r);
        return rec_set_err(err, -ENOMEM, "records: out of memory");
    }
    r->clock = default_clock;
    if (station)
        snprintf(r->station, sizeof(r->station), "%s", station);
    if (backend == RECORDS_BACKEND_POSTGRESQL)
        ret = rdb_pg_open(target, r->station, &r->db, msg, sizeof(msg));
    else
        ret = rdb_sqlite_open(target, rdb_migrations_count, &r->db, msg, sizeof(msg));
    if (ret < 0) {
        if (backend == RECORDS_BACKEND_POSTGRESQL)
            rec_set_err(err, ret, "%s [records.dsn \"%s\"]", msg, r->path);
        else
            rec_set_err(err, ret, "%s", msg);
        /* Unreachable (not refused): a station that worked with this database
         * before starts offline; the rest of the open waits for it (records_tick). */
        if (backend == RECORDS_BACKEND_POSTGRESQL && journal &&
            (ret == -ECONNREFUSED || ret == -ETIMEDOUT || ret == -EHOSTUNREACH || ret == -EAGAIN)) {
            char why[sizeof(err->message)];
            int cret;
            snprintf(why, sizeof(why), "%s [records.dsn \"%s\"]", msg, r->path);
            cret = rdb_pg_open_offline(target, r->station, msg, &r->db, msg, sizeof(msg));
            if (cret < 0) {
                ret = rec_set_err(err, cret, "%s", msg);
                goto fail;
            }
            cret = rj_attach(r, journal, why, err);
            if (cret == -ENODATA) /* never worked with it: nothing to start from */
                rec_set_err(err, ret, "%s", why);
            else
                ret = cret;
            if (ret < 0)
                goto fail;
            *out = r;
            return 0;
        }
        goto fail;
    }
    ret = rec_migrate(r, err);
    if (ret < 0)
        goto fail;
    /* The journal's writes first: a job whose result waits there is not interrupted. */
    if (journal && (ret = rj_attach(r, journal, NULL, err)) < 0)
        goto fail;
    ret = rec_recover(r, NULL, NULL, err);
    if (ret < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    destroy(r);
    return ret;
}

int records_open(const char *path, struct records **out, struct records_error *err)
{
    return open_store(RECORDS_BACKEND_SQLITE, path, NULL, NULL, out, err);
}

int records_open_backend(enum records_backend backend, const char *target, struct records **out,
                         struct records_error *err)
{
    return records_open_station(backend, target, NULL, out, err);
}

int records_open_station(enum records_backend backend, const char *target, const char *station,
                         struct records **out, struct records_error *err)
{
    return records_open_journaled(backend, target, station, NULL, out, err);
}

int records_open_journaled(enum records_backend backend, const char *target, const char *station,
                           const char *journal, struct records **out, struct records_error *err)
{
    if (backend != RECORDS_BACKEND_SQLITE && backend != RECORDS_BACKEND_POSTGRESQL) {
        rec_clear_err(err);
        if (out)
            *out = NULL;
        return rec_set_err(err, -EINVAL, "records: unknown backend %d", (int)backend);
    }
    return open_store(backend, target, station, journal, out, err);
}

const char *records_backend_to_string(enum records_backend b)
{
    return b == RECORDS_BACKEND_POSTGRESQL ? "postgresql"
           : b == RECORDS_BACKEND_SQLITE   ? "sqlite"
                                           : "unknown";
}

int records_backend_from_string(const char *name, enum records_backend *out)
{
    if (name && strcmp(name, "sqlite") == 0)
        *out = RECORDS_BACKEND_SQLITE;
    else if (name && strcmp(name, "postgresql") == 0)
        *out = RECORDS_BACKEND_POSTGRESQL;
    else
        return -EINVAL;
    return 0;
}

enum records_backend records_backend(const struct records *r)
{
    return r && r->db->ops->dialect == RDB_POSTGRESQL ? RECORDS_BACKEND_POSTGRESQL
                                                      : RECORDS_BACKEND_SQLITE;
}

void records_close(struct records *r)
{
    destroy(r);
}

int records_recovered_jobs(const struct records *r)
{
    return r ? r->recovered : 0;
}

int records_schema_version(const struct records *r)
{
    return r ? r->schema_version : 0;
}

int records_schema_latest(void)
{
    return rdb_migrations_count;
}

int records_integrity_check(struct records *r, struct records_error *err)
{
    int rc;
    ENTER(r, err);
    rc = r->db->ops->integrity_check(r->db);
    if (rc == -EBADMSG)
        return rec_set_err(err, -EBADMSG, "records: %s failed its integrity check: %s", r->path,
                           r->db->ops->errmsg(r->db));
    if (rc < 0)
        return rec_db_err(r, err, rc, "cannot run the integrity check");
    return 0;
}
