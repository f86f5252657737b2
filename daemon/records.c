/*
 * records: the records store's logic (see records.h for the API contract),
 * written once for every backend. It validates input, maps rows to the API's
 * structs, runs transactions and crash recovery, and holds the store's DML.
 * The database itself is behind records_db.h: records_sqlite.c (the default,
 * one file under the data directory) and records_pg.c (PostgreSQL, shared by
 * a line of stations); each owns its connection, error mapping and schema DDL.
 *
 * Invariants:
 *  - The DML below is one text for both backends, in the subset both speak
 *    ("?N" placeholders, ON CONFLICT, RETURNING, IS NOT DISTINCT FROM). Where
 *    the dialects differ a statement has a PostgreSQL text in stmt_sql_pg[].
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

/* LIMIT for "no limit": both dialects take a bigint (PostgreSQL refuses -1). */
#define NO_LIMIT INT64_MAX

/* ---- cached statements ---------------------------------------------------- */

#define BOARD_COLS                                                                                 \
    "mac, chip, revision, flash_id, flash_size, crystal_mhz, first_seen, last_seen, slot, "        \
    "current_firmware, current_md5, ip, running_version, target_firmware, online_state, notes"
/* BOARD_COLS plus the board's groups, comma-separated (names never hold a comma), and its
 * address state (schema 6). AGG is the dialect's string aggregate. */
#define BOARD_SELECT(AGG)                                                                          \
    BOARD_COLS ", (SELECT " AGG "(name, ',') FROM board_groups g WHERE g.mac = boards.mac), "      \
               "ip_confirmed, ip_source, ip_changed_at, ip_claim, ip_claim_source, ip_claim_at"
#define BOARD_LIST(AGG)                                                                            \
    "SELECT " BOARD_SELECT(AGG) " FROM boards WHERE (chip = ?1 OR ?1 IS NULL) "                    \
                                "AND (current_firmware = ?2 OR ?2 IS NULL) "                       \
                                "AND (EXISTS (SELECT 1 FROM board_groups g "                       \
                                "WHERE g.mac = boards.mac AND g.name = ?5) OR ?5 IS NULL) "        \
                                "ORDER BY last_seen DESC, mac LIMIT ?3 OFFSET ?4"
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
#define JOB_COLS                                                                                   \
    "id, kind, board_mac, slot, firmware, state, stage, started_at, ended_at, result_code, "       \
    "error_stage, error_message, error_advice, device_status, device_error, error_op, "            \
    "error_address, bytes, wire_bytes, kbps, retries, seconds, station"
#define JOB_WHERE                                                                                  \
    " WHERE (board_mac = ?1 OR ?1 IS NULL) AND (slot = ?2 OR ?2 IS NULL)"                          \
    " AND (kind = ?3 OR ?3 IS NULL) AND (state = ?4 OR ?4 IS NULL)"                                \
    " AND (started_at >= ?5 OR ?5 IS NULL) AND (started_at < ?6 OR ?6 IS NULL)"                    \
    " AND (station = ?9 OR ?9 IS NULL)"

enum stmt_id {
    ST_BOARD_UPSERT,
    ST_BOARD_GET,
    ST_BOARD_LIST,
    ST_JOB_BEGIN,
    ST_JOB_SET_BOARD,
    ST_JOB_SET_FIRMWARE,
    ST_JOB_PROGRESS,
    ST_JOB_STATE,
    ST_JOB_FINISH,
    ST_JOB_GET,
    ST_JOB_LIST,
    ST_JOB_EXPORT,
    ST_JOB_LOG,
    ST_JOB_LOG_LIST,
    ST_JOBS_UNFINISHED,
    ST_JOBS_INTERRUPT,
    ST_EVENT_APPEND,
    ST_EVENTS_SINCE,
    ST_EVENTS_LAST,
    ST_FW_PUT,
    ST_FW_GET,
    ST_FW_DELETE,
    ST_FW_LIST,
    ST_COUNT_STATES,
    ST_COUNT_BOARDS,
    ST_SLOT_SECONDS,
    ST_OTA_PUT,
    ST_OTA_GET,
    ST_BOARD_SET_TARGET,
    ST_BOARD_SET_NOTES,
    ST_BOARD_EXISTS,
    ST_GROUPS_CLEAR,
    ST_GROUP_ADD,
    ST_BULK_CREATE,
    ST_BULK_BOARD_ADD,
    ST_BULK_SET_STATE,
    ST_BULK_BOARD_PUT,
    ST_BULK_GET,
    ST_BULK_BOARDS,
    ST_BULK_LIST,
    ST_SLOT_BAUD_GET,
    ST_SLOT_BAUD_SET,
    ST_SLOT_BAUD_CLEAR,
    ST_POOL_OF_MAC,
    ST_POOL_FILE_USED,
    ST_POOL_ASSIGN,
    ST_POOL_COUNT,
    ST_POOL_OF_BOARD,
    ST_BOARD_SET_ADDRESS,
    ST_BOARD_TARGET_USED,
    ST_BOARD_COUNT_UNCONFIRMED,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BOARD_UPSERT] =
        "INSERT INTO boards (" BOARD_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, "
        "?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT (mac) DO UPDATE SET "
        "chip = coalesce(excluded.chip, boards.chip), "
        "revision = coalesce(excluded.revision, boards.revision), "
        "flash_id = coalesce(excluded.flash_id, boards.flash_id), "
        "flash_size = coalesce(excluded.flash_size, boards.flash_size), "
        "crystal_mhz = coalesce(excluded.crystal_mhz, boards.crystal_mhz), "
        "last_seen = excluded.last_seen, slot = coalesce(excluded.slot, boards.slot), "
        "current_firmware = coalesce(excluded.current_firmware, boards.current_firmware), "
        "current_md5 = coalesce(excluded.current_md5, boards.current_md5), "
        "ip_confirmed = CASE WHEN excluded.ip IS NULL OR excluded.ip IS NOT DISTINCT FROM "
        "boards.ip THEN boards.ip_confirmed ELSE 0 END, "
        "ip_source = CASE WHEN excluded.ip IS NULL OR excluded.ip IS NOT DISTINCT FROM "
        "boards.ip THEN boards.ip_source ELSE NULL END, "
        "ip = coalesce(excluded.ip, boards.ip), "
        "running_version = coalesce(excluded.running_version, boards.running_version), "
        "target_firmware = coalesce(excluded.target_firmware, boards.target_firmware), "
        "online_state = coalesce(excluded.online_state, boards.online_state), "
        "notes = coalesce(excluded.notes, boards.notes)",
    [ST_BOARD_GET] = "SELECT " BOARD_SELECT("group_concat") " FROM boards WHERE mac = ?1",
    [ST_OTA_PUT] = "INSERT INTO board_ota (mac, free_space, sketch_size, sketch_md5, "
                   "chip_size, sdk_version, last_checkin, checkins, served_md5, served_version, "
                   "served_sketch_md5, served_at, problem) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                   "?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (mac) DO UPDATE SET "
                   "free_space = excluded.free_space, sketch_size = excluded.sketch_size, "
                   "sketch_md5 = excluded.sketch_md5, chip_size = excluded.chip_size, "
                   "sdk_version = excluded.sdk_version, last_checkin = excluded.last_checkin, "
                   "checkins = excluded.checkins, served_md5 = excluded.served_md5, "
                   "served_version = excluded.served_version, "
                   "served_sketch_md5 = excluded.served_sketch_md5, "
                   "served_at = excluded.served_at, problem = excluded.problem",
    [ST_OTA_GET] = "SELECT mac, free_space, sketch_size, sketch_md5, chip_size, sdk_version, "
                   "last_checkin, checkins, served_md5, served_version, served_sketch_md5, "
                   "served_at, problem FROM board_ota WHERE mac = ?1",
    [ST_BOARD_SET_TARGET] = "UPDATE boards SET target_firmware = ?2 WHERE mac = ?1",
    [ST_BOARD_LIST] = BOARD_LIST("group_concat"),
    [ST_BOARD_SET_NOTES] = "UPDATE boards SET notes = ?2 WHERE mac = ?1",
    [ST_SLOT_BAUD_GET] = "SELECT baud_limit FROM slot_link WHERE slot_key = ?1",
    [ST_SLOT_BAUD_SET] =
        "INSERT INTO slot_link (slot_key, baud_limit, updated) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (slot_key) DO UPDATE SET baud_limit = ?2, updated = ?3",
    [ST_SLOT_BAUD_CLEAR] = "DELETE FROM slot_link WHERE slot_key = ?1",
    [ST_POOL_OF_MAC] = "SELECT pool, file, mac, md5, job_id, assigned_at FROM pool_items "
                       "WHERE pool = ?1 AND mac = ?2",
    [ST_POOL_FILE_USED] = "SELECT 1 FROM pool_items WHERE pool = ?1 AND file = ?2",
    [ST_POOL_ASSIGN] = "INSERT INTO pool_items (pool, file, mac, md5, job_id, assigned_at) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_POOL_COUNT] = "SELECT count(*) FROM pool_items WHERE pool = ?1",
    [ST_POOL_OF_BOARD] = "SELECT pool, file, mac, md5, job_id, assigned_at FROM pool_items "
                         "WHERE mac = ?1 ORDER BY pool",
    [ST_BOARD_EXISTS] = "SELECT 1 FROM boards WHERE mac = ?1",
    [ST_BOARD_SET_ADDRESS] =
        "UPDATE boards SET ip_changed_at = CASE WHEN ip IS NOT DISTINCT FROM ?2 "
        "THEN ip_changed_at ELSE ?7 END, "
        "ip = ?2, ip_confirmed = ?3, ip_source = ?4, ip_claim = ?5, ip_claim_source = ?6, "
        "ip_claim_at = CASE WHEN ip_claim = ?5 THEN ip_claim_at WHEN ?5 IS NULL THEN NULL "
        "ELSE ?7 END WHERE mac = ?1",
    [ST_BOARD_TARGET_USED] = "SELECT 1 FROM boards WHERE target_firmware = ?1 LIMIT 1",
    [ST_BOARD_COUNT_UNCONFIRMED] =
        "SELECT count(*) FROM boards b WHERE b.ip_confirmed = 0 AND "
        "b.ip_source IN ('checkin', 'mdns') AND "
        "NOT EXISTS (SELECT 1 FROM jobs j WHERE j.board_mac = b.mac AND j.kind = 'flash')",
    [ST_GROUPS_CLEAR] = "DELETE FROM board_groups WHERE mac = ?1",
    [ST_GROUP_ADD] = "INSERT INTO board_groups (mac, name) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    [ST_BULK_CREATE] = "INSERT INTO bulks (firmware, version, method, selection, port, "
                       "concurrency, retries, timeout_s, max_failure_rate, password_given, state, "
                       "reason, created_at, web_user, filesystem) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                       "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) RETURNING id",
    [ST_BULK_BOARD_ADD] = "INSERT INTO bulk_boards (bulk_id, pos, mac, state, attempts, job_id, "
                          "error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_BULK_SET_STATE] = "UPDATE bulks SET state = ?2, reason = ?3, ended_at = ?4 WHERE id = ?1",
    [ST_BULK_BOARD_PUT] = "UPDATE bulk_boards SET state = ?3, attempts = ?4, job_id = ?5, "
                          "error = ?6 WHERE bulk_id = ?1 AND mac = ?2",
    [ST_BULK_GET] = "SELECT " BULK_COLS " FROM bulks WHERE id = ?1",
    [ST_BULK_BOARDS] = "SELECT mac, state, attempts, job_id, error FROM bulk_boards "
                       "WHERE bulk_id = ?1 ORDER BY pos",
    [ST_BULK_LIST] = "SELECT " BULK_COLS " FROM bulks WHERE (state = ?1 OR ?1 IS NULL) "
                     "ORDER BY id DESC LIMIT ?2",
    [ST_JOB_BEGIN] = "INSERT INTO jobs (kind, board_mac, slot, firmware, state, stage, "
                     "started_at, station) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
    [ST_JOB_SET_BOARD] = "UPDATE jobs SET board_mac = ?2 WHERE id = ?1",
    [ST_JOB_SET_FIRMWARE] = "UPDATE jobs SET firmware = ?2 WHERE id = ?1",
    [ST_JOB_PROGRESS] = "UPDATE jobs SET stage = coalesce(?2, stage), "
                        "bytes = coalesce(?3, bytes), wire_bytes = coalesce(?4, wire_bytes), "
                        "started_at = CASE WHEN state = 'queued' THEN ?5 ELSE started_at END, "
                        "state = 'running' WHERE id = ?1 AND state IN ('queued', 'running')",
    [ST_JOB_STATE] = "SELECT state, started_at, bytes, wire_bytes FROM jobs WHERE id = ?1",
    [ST_JOB_FINISH] = "UPDATE jobs SET state = ?2, ended_at = ?3, result_code = ?4, "
                      "error_stage = ?5, error_message = ?6, error_advice = ?7, "
                      "device_status = ?8, device_error = ?9, error_op = ?10, "
                      "error_address = ?11, bytes = ?12, wire_bytes = ?13, kbps = ?14, "
                      "retries = ?15, seconds = ?16 "
                      "WHERE id = ?1 AND state IN ('queued', 'running')",
    [ST_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
    [ST_JOB_LIST] =
        "SELECT " JOB_COLS " FROM jobs" JOB_WHERE " ORDER BY id DESC LIMIT ?7 OFFSET ?8",
    [ST_JOB_EXPORT] = "SELECT " JOB_COLS " FROM jobs" JOB_WHERE " ORDER BY id LIMIT ?7 OFFSET ?8",
    [ST_JOB_LOG] = "INSERT INTO job_log (job_id, ts, level, line) VALUES (?1, ?2, ?3, ?4)",
    [ST_JOB_LOG_LIST] = "SELECT ts, level, line FROM job_log WHERE job_id = ?1 ORDER BY id",
    [ST_JOBS_UNFINISHED] = "SELECT id, board_mac, slot, coalesce(nullif(stage, ''), state) "
                           "FROM jobs WHERE state IN ('queued', 'running') "
                           "AND (station = ?1 OR station IS NULL OR ?1 IS NULL) ORDER BY id",
    [ST_JOBS_INTERRUPT] =
        "UPDATE jobs SET state = 'interrupted', ended_at = ?1, result_code = ?2, "
        "error_stage = coalesce(nullif(stage, ''), state), "
        "error_message = 'daemon stopped while ' || coalesce(nullif(stage, ''), state), "
        "error_advice = 'the station stopped (crash, kill or power loss) during this job; "
        "the board is flashed again when it is next seen', "
        "seconds = CASE WHEN ?1 > started_at THEN (?1 - started_at) / 1000.0 ELSE 0 END "
        "WHERE state IN ('queued', 'running') "
        "AND (station = ?3 OR station IS NULL OR ?3 IS NULL)",
    [ST_EVENT_APPEND] = "INSERT INTO events (ts, kind, board_mac, slot, job_id, data, station) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
    [ST_EVENTS_SINCE] = "SELECT id, ts, kind, board_mac, slot, job_id, data, station FROM events "
                        "WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_EVENTS_LAST] = "SELECT coalesce(max(id), 0) FROM events",
    [ST_FW_PUT] = "INSERT INTO firmware (name, version, chip, manifest, created_at) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_FW_GET] = "SELECT name, version, chip, manifest, created_at FROM firmware "
                  "WHERE name = ?1 AND version = ?2",
    [ST_FW_DELETE] = "DELETE FROM firmware WHERE name = ?1 AND version = ?2",
    [ST_FW_LIST] = "SELECT name, version, chip, manifest, created_at FROM firmware "
                   "WHERE (chip = ?1 OR ?1 IS NULL) ORDER BY name, created_at DESC, version",
    [ST_COUNT_STATES] = "SELECT state, count(*) FROM jobs "
                        "WHERE coalesce(ended_at, started_at) >= ?1 "
                        "AND (station = ?2 OR ?2 IS NULL) GROUP BY state",
    [ST_COUNT_BOARDS] = "SELECT count(DISTINCT board_mac) FROM jobs WHERE state = 'passed' "
                        "AND board_mac IS NOT NULL AND ended_at >= ?1 AND ended_at <= ?2 "
                        "AND (station = ?3 OR ?3 IS NULL)",
    [ST_SLOT_SECONDS] = "SELECT slot, avg(seconds), count(*) FROM jobs WHERE kind = 'flash' "
                        "AND state = 'passed' AND slot IS NOT NULL AND seconds IS NOT NULL "
                        "AND started_at >= ?1 AND (station = ?2 OR ?2 IS NULL) "
                        "GROUP BY slot ORDER BY slot",
};

/* PostgreSQL's text where its dialect differs (NULL: stmt_sql's). */
static const char *const stmt_sql_pg[ST_COUNT] = {
    [ST_BOARD_GET] = "SELECT " BOARD_SELECT("string_agg") " FROM boards WHERE mac = ?1",
    [ST_BOARD_LIST] = BOARD_LIST("string_agg"),
    /* Locks the rows: a station taking over this one's jobs at the same moment
     * (records_line.c) waits, or has taken them and they no longer match: each job
     * gets one job.interrupted event. */
    [ST_JOBS_UNFINISHED] = "SELECT id, board_mac, slot, coalesce(nullif(stage, ''), state) "
                           "FROM jobs WHERE state IN ('queued', 'running') "
                           "AND (station = ?1 OR station IS NULL OR ?1 IS NULL) ORDER BY id "
                           "FOR UPDATE",
};

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

static int stmt_get(struct records *r, enum stmt_id id, struct rdb_stmt **out,
                    struct records_error *err)
{
    if (!r->st[id]) {
        const char *sql = stmt_sql[id];
        int rc;
        if (r->db->ops->dialect == RDB_POSTGRESQL && stmt_sql_pg[id])
            sql = stmt_sql_pg[id];
        rc = r->db->ops->prepare(r->db, sql, &r->st[id]);
        if (rc < 0) {
            r->st[id] = NULL;
            return rec_db_err(r, err, rc, "cannot prepare statement");
        }
    }
    *out = r->st[id];
    return 0;
}

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

/* ---- enum names ----------------------------------------------------------- */

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

/* ---- open / close --------------------------------------------------------- */

static int migrate(struct records *r, struct records_error *err)
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

/* Jobs the previous process left queued/running become interrupted, each with
 * an event, in one durable transaction. */
static int recover(struct records *r, struct records_error *err)
{
    struct rdb_stmt *jobs, *ev, *upd;
    int64_t now = records_now_ms(r);
    int rc, ret;
    if ((ret = stmt_get(r, ST_JOBS_UNFINISHED, &jobs, err)) < 0 ||
        (ret = stmt_get(r, ST_EVENT_APPEND, &ev, err)) < 0 ||
        (ret = stmt_get(r, ST_JOBS_INTERRUPT, &upd, err)) < 0)
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
        if (rc < 0)
            break;
    }
    rec_stmt_done(jobs);
    if (rc >= 0) {
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
    for (int i = 0; r->st && i < ST_COUNT; i++)
        if (r->st[i])
            r->db->ops->finalize(r->st[i]);
    for (int i = 0; i < r->n_prep; i++)
        r->db->ops->finalize(r->prep[i].st);
    free(r->st);
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
static bool name_ok(const char *name, size_t max)
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
    return name_ok(name, RECORDS_STATION_LEN);
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
    if (r && !(r->st = calloc(ST_COUNT, sizeof(*r->st)))) {
        free(r);
        r = NULL;
    }
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
        goto fail;
    }
    ret = migrate(r, err);
    if (ret < 0)
        goto fail;
    /* The journal's writes first: a job whose result waits there is not interrupted. */
    if (journal && (ret = rj_attach(r, journal, err)) < 0)
        goto fail;
    ret = recover(r, err);
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

/* ---- boards --------------------------------------------------------------- */

void records_board_init(struct records_board *b)
{
    if (!b)
        return;
    memset(b, 0, sizeof(*b));
    b->revision = -1;
    b->flash_id = -1;
    b->flash_size = -1;
    b->crystal_mhz = -1;
}

static int cmp_group(const void *x, const void *y)
{
    return strcmp((const char *)x, (const char *)y);
}

/* Column i: group names joined by ',' -> b->groups (sorted), b->n_groups. */
static void read_groups(struct rdb_stmt *st, int i, struct records_board *b)
{
    const char *p = rdb_column_text(st, i);
    b->n_groups = 0;
    while (p && *p && b->n_groups < RECORDS_GROUPS_MAX) {
        size_t len = strcspn(p, ",");
        if (len > 0 && len < RECORDS_GROUP_LEN) {
            memcpy(b->groups[b->n_groups], p, len);
            b->groups[b->n_groups][len] = '\0';
            b->n_groups++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    qsort(b->groups, (size_t)b->n_groups, sizeof(b->groups[0]), cmp_group);
}

static void read_board(struct rdb_stmt *st, void *out)
{
    struct records_board *b = out;
    records_board_init(b);
    rec_col_text(st, 0, b->mac, sizeof(b->mac));
    rec_col_text(st, 1, b->chip, sizeof(b->chip));
    b->revision = (int)rec_col_int(st, 2, -1);
    b->flash_id = rec_col_int(st, 3, -1);
    b->flash_size = rec_col_int(st, 4, -1);
    b->crystal_mhz = (int)rec_col_int(st, 5, -1);
    b->first_seen = rec_col_int(st, 6, 0);
    b->last_seen = rec_col_int(st, 7, 0);
    rec_col_text(st, 8, b->slot, sizeof(b->slot));
    rec_col_text(st, 9, b->current_firmware, sizeof(b->current_firmware));
    rec_col_text(st, 10, b->current_md5, sizeof(b->current_md5));
    rec_col_text(st, 11, b->ip, sizeof(b->ip));
    rec_col_text(st, 12, b->running_version, sizeof(b->running_version));
    rec_col_text(st, 13, b->target_firmware, sizeof(b->target_firmware));
    rec_col_text(st, 14, b->online_state, sizeof(b->online_state));
    rec_col_text(st, 15, b->notes, sizeof(b->notes));
    read_groups(st, 16, b);
    b->ip_confirmed = rec_col_int(st, 17, 0) != 0;
    rec_col_text(st, 18, b->ip_source, sizeof(b->ip_source));
    b->ip_changed_at = rec_col_int(st, 19, 0);
    rec_col_text(st, 20, b->ip_claim, sizeof(b->ip_claim));
    rec_col_text(st, 21, b->ip_claim_source, sizeof(b->ip_claim_source));
    b->ip_claim_at = rec_col_int(st, 22, 0);
}

int records_board_upsert(struct records *r, const struct records_board *b,
                         struct records_error *err)
{
    char mac[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (JOURNALED(r))
        return rj_board_upsert(r, b, err);
    if (!b)
        return rec_set_err(err, -EINVAL, "records: no board");
    if ((ret = rec_check_array("board MAC", b->mac, sizeof(b->mac), err)) < 0 ||
        (ret = rec_normalize_mac(b->mac, mac, err)) < 0 ||
        (ret = rec_check_array("board chip", b->chip, sizeof(b->chip), err)) < 0 ||
        (ret = rec_check_array("board slot", b->slot, sizeof(b->slot), err)) < 0 ||
        (ret = rec_check_array("board current_firmware", b->current_firmware,
                               sizeof(b->current_firmware), err)) < 0 ||
        (ret = rec_check_array("board current_md5", b->current_md5, sizeof(b->current_md5), err)) <
            0 ||
        (ret = rec_check_array("board ip", b->ip, sizeof(b->ip), err)) < 0 ||
        (ret = rec_check_array("board running_version", b->running_version,
                               sizeof(b->running_version), err)) < 0 ||
        (ret = rec_check_array("board target_firmware", b->target_firmware,
                               sizeof(b->target_firmware), err)) < 0 ||
        (ret = rec_check_array("board online_state", b->online_state, sizeof(b->online_state),
                               err)) < 0)
        return ret;
    if (!memchr(b->notes, '\0', sizeof(b->notes)))
        return rec_set_err(err, -EINVAL, "records: board notes is not NUL-terminated");
    if ((ret = stmt_get(r, ST_BOARD_UPSERT, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, mac);
    rec_bind_text(st, 2, b->chip);
    rec_bind_opt_int(st, 3, b->revision);
    rec_bind_opt_int(st, 4, b->flash_id);
    rec_bind_opt_int(st, 5, b->flash_size);
    rec_bind_opt_int(st, 6, b->crystal_mhz);
    rdb_bind_int64(st, 7, records_now_ms(r));
    rec_bind_text(st, 8, b->slot);
    rec_bind_text(st, 9, b->current_firmware);
    rec_bind_text(st, 10, b->current_md5);
    rec_bind_text(st, 11, b->ip);
    rec_bind_text(st, 12, b->running_version);
    rec_bind_text(st, 13, b->target_firmware);
    rec_bind_text(st, 14, b->online_state);
    rec_bind_text(st, 15, b->notes);
    return rec_write_done(r, st, rdb_step(st), "cannot record board", err);
}

int records_board_get(struct records *r, const char *mac, struct records_board *out,
                      struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output board");
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_BOARD_GET, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    return rec_get_one(r, st, read_board, out, "cannot read board", err, "records: no board %s",
                       norm);
}

int records_board_list(struct records *r, const struct records_board_filter *f, records_board_cb cb,
                       void *ctx, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_BOARD_LIST, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, f ? f->chip : NULL);
    rec_bind_text(st, 2, f ? f->firmware : NULL);
    rdb_bind_int64(st, 3, f && f->limit > 0 ? f->limit : NO_LIMIT);
    rdb_bind_int64(st, 4, f && f->offset > 0 ? f->offset : 0);
    rec_bind_text(st, 5, f ? f->group : NULL);
    while (rec_next_row(r, st, &rc, &n)) {
        read_board(st, &r->row.board);
        if (cb && cb(&r->row.board, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list boards", err);
}

int records_board_set_address(struct records *r, const char *mac, const char *ip, bool confirmed,
                              const char *source, const char *claim, const char *claim_source,
                              struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0 ||
        (ret = rec_check_text("board ip", ip, RECORDS_IP_LEN, err)) < 0 ||
        (ret = rec_check_text("board ip_source", source, RECORDS_STATE_LEN, err)) < 0 ||
        (ret = rec_check_text("board ip_claim", claim, RECORDS_IP_LEN, err)) < 0 ||
        (ret = rec_check_text("board ip_claim_source", claim_source, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if (confirmed && (!ip || !*ip))
        return rec_set_err(err, -EINVAL, "records: a confirmed address needs an ip");
    if ((ret = stmt_get(r, ST_BOARD_SET_ADDRESS, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    rec_bind_text(st, 2, ip);
    rdb_bind_int64(st, 3, confirmed ? 1 : 0);
    rec_bind_text(st, 4, source);
    rec_bind_text(st, 5, claim);
    rec_bind_text(st, 6, claim && *claim ? claim_source : NULL);
    rdb_bind_int64(st, 7, records_now_ms(r));
    return rec_change_one(r, st, rdb_step(st), "cannot record the board's address", err,
                          "records: no board %s", norm);
}

int records_board_target_used(struct records *r, const char *target, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!target || !*target)
        return 0;
    if ((ret = stmt_get(r, ST_BOARD_TARGET_USED, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, target);
    int rc = rdb_step(st);
    ret = rc == RDB_ROW ? 1 : rc == RDB_DONE ? 0 : rec_db_err(r, err, rc, "cannot read targets");
    rec_stmt_done(st);
    return ret;
}

int records_board_count_unconfirmed(struct records *r, int64_t *n, struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    *n = 0;
    if ((ret = stmt_get(r, ST_BOARD_COUNT_UNCONFIRMED, &st, err)) < 0)
        return ret;
    int rc = rdb_step(st);
    if (rc == RDB_ROW)
        *n = rdb_column_int64(st, 0);
    ret = rc == RDB_ROW ? 0 : rec_db_err(r, err, rc, "cannot count boards");
    rec_stmt_done(st);
    return ret;
}

/* ---- jobs ----------------------------------------------------------------- */

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
    if ((ret = stmt_get(r, ST_JOB_BEGIN, &st, err)) < 0)
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

/* Reads a job's state; -ENOENT when unknown. */
static int job_state(struct records *r, int64_t id, enum records_job_state *state, int64_t *started,
                     int64_t *bytes, int64_t *wire, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret;
    if ((ret = stmt_get(r, ST_JOB_STATE, &st, err)) < 0)
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
    if ((ret = stmt_get(r, ST_JOB_SET_BOARD, &st, err)) < 0)
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
    if ((ret = stmt_get(r, ST_JOB_SET_FIRMWARE, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    rec_bind_text(st, 2, firmware);
    return rec_change_one(r, st, rdb_step(st), "cannot set the job's firmware", err,
                          "records: no job %lld", (long long)id);
}

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
    if ((ret = stmt_get(r, ST_JOB_PROGRESS, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    rec_bind_text(st, 2, stage);
    rec_bind_opt_int(st, 3, bytes);
    rec_bind_opt_int(st, 4, wire_bytes);
    rdb_bind_int64(st, 5, records_now_ms(r));
    return job_update_done(r, st, rdb_step(st), id, "cannot record job progress", err);
}

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
    if ((ret = stmt_get(r, ST_JOB_LOG, &st, err)) < 0)
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
    res->kbps = -1;
    res->seconds = -1;
}

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
    if (records_job_state_is_final(cur))
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

    if ((ret = stmt_get(r, ST_JOB_FINISH, &st, err)) < 0)
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
}

int records_job_get(struct records *r, int64_t id, struct records_job *out,
                    struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output job");
    if ((ret = stmt_get(r, ST_JOB_GET, &st, err)) < 0)
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
        rdb_bind_int64(st, 7, NO_LIMIT);
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
    rdb_bind_int64(st, 7, f->limit > 0 ? f->limit : NO_LIMIT);
    rdb_bind_int64(st, 8, f->offset > 0 ? f->offset : 0);
    rec_bind_text(st, 9, f->station);
    return 0;
}

int records_job_list(struct records *r, const struct records_job_filter *f, records_job_cb cb,
                     void *ctx, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_JOB_LIST, &st, err)) < 0)
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

int records_job_log_list(struct records *r, int64_t id, records_log_cb cb, void *ctx,
                         struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_JOB_LOG_LIST, &st, err)) < 0)
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
    csv_field(out, j->error_advice, true);
}

int records_export_csv(struct records *r, FILE *out, const struct records_job_filter *f,
                       struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output file");
    if ((ret = stmt_get(r, ST_JOB_EXPORT, &st, err)) < 0)
        return ret;
    if ((ret = bind_job_filter(st, f, err)) < 0) {
        rec_stmt_done(st);
        return ret;
    }
    fputs("id,kind,state,board_mac,slot,firmware,stage,started_at,ended_at,seconds,bytes,"
          "wire_bytes,kbps,retries,result_code,error_stage,device_status,device_error,error_op,"
          "error_address,error_message,error_advice\r\n",
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

/* ---- events --------------------------------------------------------------- */

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
    if ((ret = stmt_get(r, ST_EVENT_APPEND, &st, err)) < 0)
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

int records_events_since(struct records *r, int64_t after_id, int limit, records_event_cb cb,
                         void *ctx, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_EVENTS_SINCE, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, after_id);
    rdb_bind_int64(st, 2, limit > 0 ? limit : NO_LIMIT);
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

int records_events_last_id(struct records *r, int64_t *id, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_EVENTS_LAST, &st, err)) < 0)
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
    if ((ret = stmt_get(r, ST_FW_PUT, &st, err)) < 0)
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
    if ((ret = stmt_get(r, ST_FW_GET, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, name);
    rec_bind_text(st, 2, version);
    return rec_get_one(r, st, read_fw, out, "cannot read firmware", err,
                       "records: no firmware %s@%s", name, version);
}

int records_firmware_delete(struct records *r, const char *name, const char *version,
                            struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_fw_key(name, version, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_FW_DELETE, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, name);
    rec_bind_text(st, 2, version);
    return rec_change_one(r, st, rec_step_durable(r, st), "cannot delete firmware", err,
                          "records: no firmware %s@%s", name, version);
}

int records_firmware_list(struct records *r, const char *chip, records_firmware_cb cb, void *ctx,
                          struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_FW_LIST, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, chip);
    while (rec_next_row(r, st, &rc, &n)) {
        read_fw(st, &r->row.fw);
        if (cb && cb(&r->row.fw, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list firmware", err);
}

/* ---- counters ------------------------------------------------------------- */

/* The station a station's own view counts: its own name on a line's shared
 * database, NULL (every job) on its SQLite file. */
static const char *own_station(const struct records *r)
{
    return r->db->ops->dialect == RDB_POSTGRESQL && r->station[0] ? r->station : NULL;
}

static int counters_of(struct records *r, int64_t since, const char *station,
                       struct records_counters *out, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret;
    int64_t now;
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output counters");
    memset(out, 0, sizeof(*out));
    if ((ret = stmt_get(r, ST_COUNT_STATES, &st, err)) < 0)
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

    if ((ret = stmt_get(r, ST_COUNT_BOARDS, &st, err)) < 0)
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

int records_slot_flash_seconds(struct records *r, int64_t since, records_slot_stat_cb cb, void *ctx,
                               struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_SLOT_SECONDS, &st, err)) < 0)
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

/* ---- network OTA state ---------------------------------------------------- */

void records_board_ota_init(struct records_board_ota *o)
{
    memset(o, 0, sizeof(*o));
    o->free_space = o->sketch_size = o->chip_size = -1;
}

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
    if ((ret = stmt_get(r, ST_OTA_PUT, &st, err)) < 0)
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
    if ((ret = stmt_get(r, ST_OTA_GET, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    return rec_get_one(r, st, read_ota, out, "cannot read OTA state", err,
                       "records: no OTA state for %s", norm);
}

int records_board_set_target(struct records *r, const char *mac, const char *target,
                             struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if (target && strlen(target) >= RECORDS_FIRMWARE_LEN)
        return rec_set_err(err, -EINVAL, "records: target firmware too long");
    if ((ret = stmt_get(r, ST_BOARD_SET_TARGET, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    rec_bind_text(st, 2, target);
    return rec_change_one(r, st, rdb_step(st), "cannot set the target firmware", err,
                          "records: no board %s", norm);
}

/* ---- board notes and groups ----------------------------------------------- */

int records_board_set_notes(struct records *r, const char *mac, const char *notes,
                            struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_BOARD_SET_NOTES, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, norm);
    rec_bind_trunc(st, 2, notes, RECORDS_TEXT_LEN);
    return rec_change_one(r, st, rdb_step(st), "cannot set the board's notes", err,
                          "records: no board %s", norm);
}

/* slot_link's key: on a line's shared database the station's name comes first
 * ("st1/pci-0000:00:14.0-usb-0:2:1.0"), so two stations' ports of the same path keep
 * their own limits; a SQLite file is one station's and keeps the bare key. */
static const char *slot_link_key(struct records *r, const char *slot_key, char *buf, size_t n)
{
    if (r->db->ops->dialect != RDB_POSTGRESQL || !r->station[0])
        return slot_key;
    snprintf(buf, n, "%s/%s", r->station, slot_key);
    return buf;
}

int records_slot_baud_limit_set(struct records *r, const char *slot_key, uint32_t baud,
                                struct records_error *err)
{
    char key[RECORDS_STATION_LEN + RECORDS_TEXT_LEN + 1];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!slot_key || !*slot_key)
        return rec_set_err(err, -EINVAL, "records: slot key missing");
    if ((ret = rec_check_text("slot key", slot_key, RECORDS_TEXT_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, baud ? ST_SLOT_BAUD_SET : ST_SLOT_BAUD_CLEAR, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, slot_link_key(r, slot_key, key, sizeof(key)));
    if (baud) {
        rdb_bind_int64(st, 2, baud);
        rdb_bind_int64(st, 3, records_now_ms(r));
    }
    return rec_write_done(r, st, rec_step_durable(r, st), "cannot store the slot's baud limit",
                          err);
}

static void read_baud(struct rdb_stmt *st, void *out)
{
    int64_t v = rec_col_int(st, 0, 0);
    *(uint32_t *)out = v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

int records_slot_baud_limit_get(struct records *r, const char *slot_key, uint32_t *baud,
                                struct records_error *err)
{
    char key[RECORDS_STATION_LEN + RECORDS_TEXT_LEN + 1];
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    *baud = 0;
    if (!slot_key || !*slot_key)
        return rec_set_err(err, -EINVAL, "records: slot key missing");
    if ((ret = rec_check_text("slot key", slot_key, RECORDS_TEXT_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_SLOT_BAUD_GET, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, slot_link_key(r, slot_key, key, sizeof(key)));
    ret = rec_get_one(r, st, read_baud, baud, "cannot read the slot's baud limit", err,
                      "records: no baud limit for slot %s", slot_key);
    return ret == -ENOENT ? 0 : ret;
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
    if ((ret = stmt_get(r, ST_POOL_OF_MAC, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, pool);
    rdb_bind_text(st, 2, norm);
    return rec_get_one(r, st, read_pool_item, out, "cannot read the pool", err,
                       "records: %s has no file of pool %s", norm, pool);
}

int records_pool_file_used(struct records *r, const char *pool, const char *file,
                           struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_pool_key("pool name", pool, err)) < 0 ||
        (ret = check_pool_key("pool file", file, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_POOL_FILE_USED, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, pool);
    rdb_bind_text(st, 2, file);
    int rc = rdb_step(st);
    ret = rc == RDB_ROW ? 1 : rc == RDB_DONE ? 0 : rec_db_err(r, err, rc, "cannot read the pool");
    rec_stmt_done(st);
    return ret;
}

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
    if ((ret = stmt_get(r, ST_POOL_ASSIGN, &st, err)) < 0)
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

int records_pool_count(struct records *r, const char *pool, int64_t *used,
                       struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    *used = 0;
    if ((ret = check_pool_key("pool name", pool, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_POOL_COUNT, &st, err)) < 0)
        return ret;
    rdb_bind_text(st, 1, pool);
    int rc = rdb_step(st);
    if (rc == RDB_ROW)
        *used = rdb_column_int64(st, 0);
    ret = rc == RDB_ROW ? 0 : rec_db_err(r, err, rc, "cannot count the pool");
    rec_stmt_done(st);
    return ret;
}

int records_pool_items_of_board(struct records *r, const char *mac, records_pool_cb cb, void *ctx,
                                struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_POOL_OF_BOARD, &st, err)) < 0)
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

bool records_group_name_ok(const char *name)
{
    return name_ok(name, RECORDS_GROUP_LEN);
}

/* Steps a one-shot cached write statement: 0 or -errno. */
static int step_once(struct rdb_stmt *st)
{
    int rc = rdb_step(st);
    rec_stmt_done(st);
    return rc == RDB_DONE ? 0 : rc < 0 ? rc : -EIO;
}

int records_board_set_groups(struct records *r, const char *mac, const char *const *names, size_t n,
                             struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    struct rdb_stmt *ex, *clear, *add;
    size_t distinct = 0;
    int rc, ret;
    ENTER(r, err);
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    if (n && !names)
        return rec_set_err(err, -EINVAL, "records: no group names");
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        if (!records_group_name_ok(names[i]))
            return rec_set_err(err, -EINVAL,
                               "records: group name \"%.80s\" is not 1 to 64 of A-Z a-z 0-9 . _ -",
                               names[i] ? names[i] : "(null)");
        for (size_t k = 0; k < i && !dup; k++)
            dup = strcmp(names[k], names[i]) == 0;
        distinct += !dup;
    }
    if (distinct > RECORDS_GROUPS_MAX)
        return rec_set_err(err, -EINVAL, "records: %zu groups, at most %d per board", distinct,
                           RECORDS_GROUPS_MAX);
    if ((ret = stmt_get(r, ST_BOARD_EXISTS, &ex, err)) < 0 ||
        (ret = stmt_get(r, ST_GROUPS_CLEAR, &clear, err)) < 0 ||
        (ret = stmt_get(r, ST_GROUP_ADD, &add, err)) < 0)
        return ret;
    rdb_bind_text(ex, 1, norm);
    rc = rdb_step(ex);
    rec_stmt_done(ex);
    if (rc == RDB_DONE)
        return rec_set_err(err, -ENOENT, "records: no board %s", norm);
    if (rc != RDB_ROW)
        return rec_db_err(r, err, rc, "cannot read board");
    rc = rdb_begin(r->db);
    if (rc < 0)
        return rec_db_err(r, err, rc, "cannot set the board's groups");
    rdb_bind_text(clear, 1, norm);
    rc = step_once(clear);
    for (size_t i = 0; rc >= 0 && i < n; i++) {
        rdb_bind_text(add, 1, norm);
        rdb_bind_text(add, 2, names[i]);
        rc = step_once(add);
    }
    if (rc >= 0)
        rc = rdb_commit(r->db);
    if (rc < 0) {
        ret = rec_db_err(r, err, rc, "cannot set the board's groups");
        rdb_rollback(r->db);
        return ret;
    }
    return 0;
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
    if ((ret = stmt_get(r, ST_BULK_CREATE, &cr, err)) < 0 ||
        (ret = stmt_get(r, ST_BULK_BOARD_ADD, &add, err)) < 0)
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
        rc = step_once(add);
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

int records_bulk_set_state(struct records *r, int64_t id, const char *state, const char *reason,
                           struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = rec_check_token("bulk state", state, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_BULK_SET_STATE, &st, err)) < 0)
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
    if ((ret = stmt_get(r, ST_BULK_BOARD_PUT, &st, err)) < 0)
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

int records_bulk_get(struct records *r, int64_t id, struct records_bulk *out,
                     struct records_error *err)
{
    struct rdb_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return rec_set_err(err, -EINVAL, "records: no output bulk");
    if ((ret = stmt_get(r, ST_BULK_GET, &st, err)) < 0)
        return ret;
    rdb_bind_int64(st, 1, id);
    return rec_get_one(r, st, read_bulk, out, "cannot read the bulk update", err,
                       "records: no bulk %lld", (long long)id);
}

int records_bulk_boards(struct records *r, int64_t id, records_bulk_board_cb cb, void *ctx,
                        struct records_error *err)
{
    struct records_bulk b;
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    if ((ret = records_bulk_get(r, id, &b, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_BULK_BOARDS, &st, err)) < 0)
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

int records_bulk_list(struct records *r, const char *state, int limit, records_bulk_cb cb,
                      void *ctx, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_BULK_LIST, &st, err)) < 0)
        return ret;
    rec_bind_text(st, 1, state);
    rdb_bind_int64(st, 2, limit > 0 ? limit : NO_LIMIT);
    while (rec_next_row(r, st, &rc, &n)) {
        read_bulk(st, &r->row.bulk);
        if (cb && cb(&r->row.bulk, ctx))
            break;
    }
    return rec_list_done(r, st, rc, n, "cannot list bulks", err);
}
