/*
 * records: the SQLite backend of the records store (see records.h for the API
 * contract). All SQL of the store lives in this file.
 *
 * Invariants:
 *  - One connection per struct records, used by one thread (opened NOMUTEX).
 *    An advisory lock file "<db>.lock" (flock) is held while open, so a second
 *    daemon on the same data directory is refused instead of "recovering" the
 *    jobs the first one is running.
 *  - The file is ours only if PRAGMA application_id says so (or it is empty);
 *    anything else is refused and never written to.
 *  - Schema versions are PRAGMA user_version; migrations[] is applied in
 *    order, each in its own IMMEDIATE transaction together with the version
 *    bump, so an interrupted migration leaves the previous version intact.
 *  - Events are append-only: triggers RAISE on UPDATE and DELETE, ids come
 *    from AUTOINCREMENT and never go back (SSE Last-Event-ID).
 *  - Every cached statement is reset before its function returns: in WAL mode
 *    a statement left mid-step pins a read snapshot and blocks checkpoints.
 *
 * Durability: the connection runs WAL with synchronous=NORMAL. In WAL mode a
 * commit appends frames to the -wal file; NORMAL skips the fsync at commit and
 * syncs at checkpoints. A committed transaction therefore survives the process
 * dying (kill -9, crash: the frames are in the OS page cache and SQLite's
 * recovery replays them), and the database can never be corrupted by a power
 * loss — the most such a loss costs is the last few commits. That is fine for
 * progress updates and log lines, which are frequent and re-derivable, but not
 * for a job's final result or an event the stream already announced. Those
 * writes switch the connection to synchronous=FULL for their commit, which
 * fsyncs the WAL — and with it every earlier NORMAL commit, because the WAL is
 * one sequential file — and then switch back.
 */
#include "records.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>
#include <sqlite3.h>

/* "ESPR": PRAGMA application_id of a records database. */
#define RECORDS_APP_ID 0x45535052
#define RECORDS_BUSY_TIMEOUT_MS 5000
#define RECORDS_WAL_LIMIT (16 * 1024 * 1024)

/* ---- schema --------------------------------------------------------------- */

/* migrations[i] takes user_version i to i + 1. Append, never edit. */
static const char *const migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE boards ("
    "  mac TEXT PRIMARY KEY NOT NULL CHECK (length(mac) = 17),"
    "  chip TEXT, revision INTEGER, flash_id INTEGER, flash_size INTEGER,"
    "  crystal_mhz INTEGER,"
    "  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
    "  slot TEXT, current_firmware TEXT, current_md5 TEXT, ip TEXT,"
    "  running_version TEXT, target_firmware TEXT, online_state TEXT, notes TEXT);"
    "CREATE INDEX boards_last_seen ON boards (last_seen);"
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind TEXT NOT NULL,"
    "  board_mac TEXT REFERENCES boards (mac),"
    "  slot TEXT, firmware TEXT,"
    "  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'passed', 'failed',"
    "                                       'interrupted', 'cancelled', 'skipped')),"
    "  stage TEXT,"
    "  started_at INTEGER NOT NULL, ended_at INTEGER,"
    "  result_code INTEGER, error_stage TEXT, error_message TEXT, error_advice TEXT,"
    "  device_status INTEGER, device_error INTEGER, error_op INTEGER, error_address INTEGER,"
    "  bytes INTEGER NOT NULL DEFAULT 0, wire_bytes INTEGER NOT NULL DEFAULT 0,"
    "  kbps REAL, retries INTEGER NOT NULL DEFAULT 0, seconds REAL);"
    "CREATE INDEX jobs_board ON jobs (board_mac, id);"
    "CREATE INDEX jobs_slot ON jobs (slot, id);"
    "CREATE INDEX jobs_state ON jobs (state);"
    "CREATE INDEX jobs_started ON jobs (started_at);"
    "CREATE INDEX jobs_ended ON jobs (ended_at);"
    "CREATE TABLE job_log ("
    "  id INTEGER PRIMARY KEY,"
    "  job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,"
    "  ts INTEGER NOT NULL, level TEXT NOT NULL, line TEXT NOT NULL);"
    "CREATE INDEX job_log_job ON job_log (job_id, id);"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  ts INTEGER NOT NULL, kind TEXT NOT NULL,"
    "  board_mac TEXT, slot TEXT, job_id INTEGER,"
    "  data TEXT);"
    "CREATE INDEX events_board ON events (board_mac, id);"
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
    "  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
    "  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
    "CREATE TABLE firmware ("
    "  name TEXT NOT NULL, version TEXT NOT NULL, chip TEXT NOT NULL,"
    "  manifest TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (name, version));",
    /* 2: network OTA state per board (what the updater reported at its last
     * check-in, what the station served it) */
    "CREATE TABLE board_ota ("
    "  mac TEXT PRIMARY KEY NOT NULL REFERENCES boards (mac),"
    "  free_space INTEGER, sketch_size INTEGER, sketch_md5 TEXT, chip_size INTEGER,"
    "  sdk_version TEXT, last_checkin INTEGER, checkins INTEGER NOT NULL DEFAULT 0,"
    "  served_md5 TEXT, served_version TEXT, served_sketch_md5 TEXT, served_at INTEGER,"
    "  problem TEXT);",
    /* 3: board groups (replacing "group=" tags in notes) and bulk updates that
     * survive a restart (ota_bulk.c); a bulk's password is never stored */
    "CREATE TABLE board_groups ("
    "  mac TEXT NOT NULL REFERENCES boards (mac),"
    "  name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),"
    "  PRIMARY KEY (mac, name)) WITHOUT ROWID;"
    "CREATE INDEX board_groups_name ON board_groups (name, mac);"
    "CREATE TABLE bulks ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  firmware TEXT NOT NULL, version TEXT NOT NULL, method TEXT NOT NULL,"
    "  selection TEXT, port INTEGER NOT NULL DEFAULT 0,"
    "  concurrency INTEGER NOT NULL, retries INTEGER NOT NULL, timeout_s INTEGER NOT NULL,"
    "  max_failure_rate REAL NOT NULL, password_given INTEGER NOT NULL DEFAULT 0,"
    "  web_user TEXT, filesystem INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL, reason TEXT,"
    "  created_at INTEGER NOT NULL, ended_at INTEGER);"
    "CREATE INDEX bulks_state ON bulks (state);"
    "CREATE TABLE bulk_boards ("
    "  bulk_id INTEGER NOT NULL REFERENCES bulks (id) ON DELETE CASCADE,"
    "  pos INTEGER NOT NULL,"
    "  mac TEXT NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'passed', 'failed',"
    "                                       'skipped')),"
    "  attempts INTEGER NOT NULL DEFAULT 0, job_id INTEGER, error TEXT,"
    "  PRIMARY KEY (bulk_id, mac)) WITHOUT ROWID;"
    "CREATE UNIQUE INDEX bulk_boards_pos ON bulk_boards (bulk_id, pos);",
    /* 4: what the station learned about a slot's link (by slot key: the
     * physical port), kept across restarts */
    "CREATE TABLE slot_link ("
    "  slot_key TEXT PRIMARY KEY NOT NULL,"
    "  baud_limit INTEGER NOT NULL CHECK (baud_limit > 0),"
    "  updated INTEGER NOT NULL) WITHOUT ROWID;",
    /* 5: per-board data pools (profile "per_board"): which file of a pool went to
     * which board; a file is never given to a second board */
    "CREATE TABLE pool_items ("
    "  pool TEXT NOT NULL, file TEXT NOT NULL,"
    "  mac TEXT NOT NULL CHECK (length(mac) = 17),"
    "  md5 TEXT, job_id INTEGER, assigned_at INTEGER NOT NULL,"
    "  PRIMARY KEY (pool, file)) WITHOUT ROWID;"
    "CREATE UNIQUE INDEX pool_items_mac ON pool_items (pool, mac);"
    "CREATE INDEX pool_items_board ON pool_items (mac);",
    /* 6: how far the station trusts a board's address (a check-in without
     * credentials can come from anyone): ip_confirmed when a boot check or an
     * authenticated check-in gave it, its source, and the last different address
     * an unconfirmed source claimed while ip was confirmed. An address a boot
     * check captured before this schema (the last boot-check board.online event
     * names it) stays confirmed; any other stored address is unconfirmed. */
    "ALTER TABLE boards ADD COLUMN ip_confirmed INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE boards ADD COLUMN ip_source TEXT;"
    "ALTER TABLE boards ADD COLUMN ip_changed_at INTEGER;"
    "ALTER TABLE boards ADD COLUMN ip_claim TEXT;"
    "ALTER TABLE boards ADD COLUMN ip_claim_source TEXT;"
    "ALTER TABLE boards ADD COLUMN ip_claim_at INTEGER;"
    "UPDATE boards SET ip_confirmed = 1, ip_source = 'boot-check' WHERE ip IS NOT NULL AND "
    "  ip = (SELECT json_extract(e.data, '$.ip') FROM events e WHERE e.board_mac = boards.mac"
    "        AND e.kind = 'board.online' AND json_extract(e.data, '$.source') = 'boot-check'"
    "        ORDER BY e.id DESC LIMIT 1);"
    "CREATE INDEX boards_target ON boards (target_firmware);",
};

#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ---- cached statements ---------------------------------------------------- */

#define BOARD_COLS                                                                                 \
    "mac, chip, revision, flash_id, flash_size, crystal_mhz, first_seen, last_seen, slot, "        \
    "current_firmware, current_md5, ip, running_version, target_firmware, online_state, notes"
/* BOARD_COLS plus the board's groups, comma-separated (names never hold a comma), and its
 * address state (schema 6). */
#define BOARD_SELECT                                                                               \
    BOARD_COLS ", (SELECT group_concat(name, ',') FROM board_groups g WHERE g.mac = boards.mac), " \
               "ip_confirmed, ip_source, ip_changed_at, ip_claim, ip_claim_source, ip_claim_at"
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
    "error_address, bytes, wire_bytes, kbps, retries, seconds"
#define JOB_WHERE                                                                                  \
    " WHERE (?1 IS NULL OR board_mac = ?1) AND (?2 IS NULL OR slot = ?2)"                          \
    " AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR state = ?4)"                                \
    " AND (?5 IS NULL OR started_at >= ?5) AND (?6 IS NULL OR started_at < ?6)"

enum stmt_id {
    ST_SYNC_FULL,
    ST_SYNC_NORMAL,
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
    [ST_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [ST_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
    [ST_BOARD_UPSERT] =
        "INSERT INTO boards (" BOARD_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, "
        "?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT (mac) DO UPDATE SET "
        "chip = coalesce(excluded.chip, chip), revision = coalesce(excluded.revision, revision), "
        "flash_id = coalesce(excluded.flash_id, flash_id), "
        "flash_size = coalesce(excluded.flash_size, flash_size), "
        "crystal_mhz = coalesce(excluded.crystal_mhz, crystal_mhz), "
        "last_seen = excluded.last_seen, slot = coalesce(excluded.slot, slot), "
        "current_firmware = coalesce(excluded.current_firmware, current_firmware), "
        "current_md5 = coalesce(excluded.current_md5, current_md5), "
        "ip_confirmed = CASE WHEN excluded.ip IS NULL OR excluded.ip IS ip THEN ip_confirmed "
        "ELSE 0 END, "
        "ip_source = CASE WHEN excluded.ip IS NULL OR excluded.ip IS ip THEN ip_source "
        "ELSE NULL END, "
        "ip = coalesce(excluded.ip, ip), "
        "running_version = coalesce(excluded.running_version, running_version), "
        "target_firmware = coalesce(excluded.target_firmware, target_firmware), "
        "online_state = coalesce(excluded.online_state, online_state), "
        "notes = coalesce(excluded.notes, notes)",
    [ST_BOARD_GET] = "SELECT " BOARD_SELECT " FROM boards WHERE mac = ?1",
    [ST_OTA_PUT] = "INSERT OR REPLACE INTO board_ota (mac, free_space, sketch_size, sketch_md5, "
                   "chip_size, sdk_version, last_checkin, checkins, served_md5, served_version, "
                   "served_sketch_md5, served_at, problem) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                   "?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_OTA_GET] = "SELECT mac, free_space, sketch_size, sketch_md5, chip_size, sdk_version, "
                   "last_checkin, checkins, served_md5, served_version, served_sketch_md5, "
                   "served_at, problem FROM board_ota WHERE mac = ?1",
    [ST_BOARD_SET_TARGET] = "UPDATE boards SET target_firmware = ?2 WHERE mac = ?1",
    [ST_BOARD_LIST] = "SELECT " BOARD_SELECT " FROM boards WHERE (?1 IS NULL OR chip = ?1) "
                      "AND (?2 IS NULL OR current_firmware = ?2) "
                      "AND (?5 IS NULL OR EXISTS (SELECT 1 FROM board_groups g "
                      "WHERE g.mac = boards.mac AND g.name = ?5)) "
                      "ORDER BY last_seen DESC, mac LIMIT ?3 OFFSET ?4",
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
        "UPDATE boards SET ip_changed_at = CASE WHEN ip IS ?2 THEN ip_changed_at ELSE ?7 END, "
        "ip = ?2, ip_confirmed = ?3, ip_source = ?4, ip_claim = ?5, ip_claim_source = ?6, "
        "ip_claim_at = CASE WHEN ?5 IS NULL THEN NULL WHEN ip_claim IS ?5 THEN ip_claim_at "
        "ELSE ?7 END WHERE mac = ?1",
    [ST_BOARD_TARGET_USED] = "SELECT 1 FROM boards WHERE target_firmware = ?1 LIMIT 1",
    [ST_BOARD_COUNT_UNCONFIRMED] =
        "SELECT count(*) FROM boards b WHERE b.ip_confirmed = 0 AND "
        "b.ip_source IN ('checkin', 'mdns') AND "
        "NOT EXISTS (SELECT 1 FROM jobs j WHERE j.board_mac = b.mac AND j.kind = 'flash')",
    [ST_GROUPS_CLEAR] = "DELETE FROM board_groups WHERE mac = ?1",
    [ST_GROUP_ADD] = "INSERT OR IGNORE INTO board_groups (mac, name) VALUES (?1, ?2)",
    [ST_BULK_CREATE] = "INSERT INTO bulks (firmware, version, method, selection, port, "
                       "concurrency, retries, timeout_s, max_failure_rate, password_given, state, "
                       "reason, created_at, web_user, filesystem) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
                       "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    [ST_BULK_BOARD_ADD] = "INSERT INTO bulk_boards (bulk_id, pos, mac, state, attempts, job_id, "
                          "error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_BULK_SET_STATE] = "UPDATE bulks SET state = ?2, reason = ?3, ended_at = ?4 WHERE id = ?1",
    [ST_BULK_BOARD_PUT] = "UPDATE bulk_boards SET state = ?3, attempts = ?4, job_id = ?5, "
                          "error = ?6 WHERE bulk_id = ?1 AND mac = ?2",
    [ST_BULK_GET] = "SELECT " BULK_COLS " FROM bulks WHERE id = ?1",
    [ST_BULK_BOARDS] = "SELECT mac, state, attempts, job_id, error FROM bulk_boards "
                       "WHERE bulk_id = ?1 ORDER BY pos",
    [ST_BULK_LIST] = "SELECT " BULK_COLS " FROM bulks WHERE (?1 IS NULL OR state = ?1) "
                     "ORDER BY id DESC LIMIT ?2",
    [ST_JOB_BEGIN] = "INSERT INTO jobs (kind, board_mac, slot, firmware, state, stage, "
                     "started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
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
    [ST_EVENT_APPEND] = "INSERT INTO events (ts, kind, board_mac, slot, job_id, data) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_EVENTS_SINCE] = "SELECT id, ts, kind, board_mac, slot, job_id, data FROM events "
                        "WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_EVENTS_LAST] = "SELECT coalesce(max(id), 0) FROM events",
    [ST_FW_PUT] = "INSERT INTO firmware (name, version, chip, manifest, created_at) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_FW_GET] = "SELECT name, version, chip, manifest, created_at FROM firmware "
                  "WHERE name = ?1 AND version = ?2",
    [ST_FW_DELETE] = "DELETE FROM firmware WHERE name = ?1 AND version = ?2",
    [ST_FW_LIST] = "SELECT name, version, chip, manifest, created_at FROM firmware "
                   "WHERE (?1 IS NULL OR chip = ?1) ORDER BY name, created_at DESC, version",
    [ST_COUNT_STATES] = "SELECT state, count(*) FROM jobs "
                        "WHERE coalesce(ended_at, started_at) >= ?1 GROUP BY state",
    [ST_COUNT_BOARDS] = "SELECT count(DISTINCT board_mac) FROM jobs WHERE state = 'passed' "
                        "AND board_mac IS NOT NULL AND ended_at >= ?1 AND ended_at <= ?2",
    [ST_SLOT_SECONDS] = "SELECT slot, avg(seconds), count(*) FROM jobs WHERE kind = 'flash' "
                        "AND state = 'passed' AND slot IS NOT NULL AND seconds IS NOT NULL "
                        "AND started_at >= ?1 GROUP BY slot ORDER BY slot",
};

struct records {
    sqlite3 *db;
    char *path;
    int lock_fd;
    sqlite3_stmt *st[ST_COUNT];
    records_clock_fn clock;
    void *clock_ctx;
    int recovered;
    int schema_version;
    bool in_callback;
    /* Row buffer handed to list callbacks (keeps large rows off the stack). */
    union {
        struct records_board board;
        struct records_job job;
        struct records_event event;
        struct records_firmware fw;
        struct records_log_line log;
        struct records_bulk bulk;
        struct records_bulk_board bulk_board;
    } row;
};

/* ---- errors --------------------------------------------------------------- */

static int set_err(struct records_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int vset_err(struct records_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static int vset_err(struct records_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
    }
    return code;
}

static int set_err(struct records_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset_err(err, code, fmt, ap);
    va_end(ap);
    return code;
}

static void clear_err(struct records_error *err)
{
    if (err) {
        err->code = 0;
        err->message[0] = '\0';
    }
}

static int map_rc(sqlite3 *db, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN: {
        int e = db ? sqlite3_system_errno(db) : 0;
        return e > 0 ? -e : -EACCES;
    }
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
        return -EBADMSG;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
            return -EEXIST;
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
            return -ENOENT;
        return -EINVAL;
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
        return -EINVAL;
    case SQLITE_IOERR: {
        int e = db ? sqlite3_system_errno(db) : 0;
        return e == ENOSPC ? -ENOSPC : -EIO;
    }
    default:
        return -EIO;
    }
}

/* Why a call failed, in words for a technician: the OS error for open/IO
 * failures, "not a records database" for foreign/corrupt files, else SQLite's. */
static const char *why(sqlite3 *db, int rc, char *buf, size_t n)
{
    int prim = rc & 0xff;
    int e = db ? sqlite3_system_errno(db) : 0;
    if ((prim == SQLITE_CANTOPEN || prim == SQLITE_IOERR || prim == SQLITE_READONLY) && e > 0) {
        snprintf(buf, n, "%s", strerror(e));
        if (buf[0] >= 'A' && buf[0] <= 'Z')
            buf[0] = (char)(buf[0] - 'A' + 'a');
        return buf;
    }
    if (prim == SQLITE_NOTADB) {
        snprintf(buf, n, "not a records database (%s)", db ? sqlite3_errmsg(db) : "not sqlite");
        return buf;
    }
    if (prim == SQLITE_CORRUPT) {
        snprintf(buf, n,
                 "records database damaged (%s): move it aside and restore a backup; "
                 "espstationd starts a new one when the file is absent",
                 db ? sqlite3_errmsg(db) : "malformed");
        return buf;
    }
    snprintf(buf, n, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    return buf;
}

static int db_err(struct records *r, struct records_error *err, int rc, const char *what)
{
    char buf[384];
    int code = map_rc(r->db, rc);
    if (code == 0)
        code = -EIO;
    return set_err(err, code, "records: %s: %s", what, why(r->db, rc, buf, sizeof(buf)));
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
static void copy_trunc(char *dst, size_t n, const char *s)
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
static int check_text(const char *what, const char *s, size_t max, struct records_error *err)
{
    size_t len;
    if (!s)
        return 0;
    len = strnlen(s, max);
    if (len >= max)
        return set_err(err, -EINVAL, "records: %s too long (max %zu bytes)", what, max - 1);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return set_err(err, -EINVAL, "records: %s contains a control character", what);
    return 0;
}

/* A token: [a-z0-9._-]+, shorter than max. */
static int check_token(const char *what, const char *s, size_t max, struct records_error *err)
{
    size_t len;
    if (!s || !*s)
        return set_err(err, -EINVAL, "records: %s missing", what);
    len = strnlen(s, max);
    if (len >= max)
        return set_err(err, -EINVAL, "records: %s too long (max %zu bytes)", what, max - 1);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return set_err(err, -EINVAL, "records: %s \"%s\" is not a lower-case token", what, s);
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
static int normalize_mac(const char *in, char out[RECORDS_MAC_LEN], struct records_error *err)
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
    return set_err(err, -EINVAL, "records: \"%.32s\" is not a MAC address (aa:bb:cc:dd:ee:ff)",
                   in ? in : "(null)");
}

/* A caller-filled fixed array must hold a NUL. */
static int check_array(const char *what, const char *a, size_t size, struct records_error *err)
{
    if (!memchr(a, '\0', size))
        return set_err(err, -EINVAL, "records: %s is not NUL-terminated", what);
    return check_text(what, a, size, err);
}

/* JSON text holding one object (and nothing else but white space). Checked
 * here, not by a CHECK constraint: SQLite's json_valid() is not allowed in a
 * schema with trusted_schema off, and a PostgreSQL backend needs the same
 * check anyway. */
static bool json_object_text(const char *s)
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

static int stmt_get(struct records *r, enum stmt_id id, sqlite3_stmt **out,
                    struct records_error *err)
{
    if (!r->st[id]) {
        int rc = sqlite3_prepare_v3(r->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &r->st[id],
                                    NULL);
        if (rc != SQLITE_OK) {
            r->st[id] = NULL;
            return db_err(r, err, rc, "cannot prepare statement");
        }
    }
    *out = r->st[id];
    return 0;
}

static void stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* NULL or "" binds SQL NULL. */
static void bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    if (s && *s)
        sqlite3_bind_text(st, idx, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, idx);
}

/* Free text: truncated to max on a character boundary. */
static void bind_trunc(sqlite3_stmt *st, int idx, const char *s, size_t max)
{
    char buf[RECORDS_TEXT_LEN];
    if (max > sizeof(buf))
        max = sizeof(buf);
    copy_trunc(buf, max, s);
    bind_text(st, idx, buf);
}

/* Negative binds SQL NULL ("unknown"). */
static void bind_opt_int(sqlite3_stmt *st, int idx, int64_t v)
{
    if (v < 0)
        sqlite3_bind_null(st, idx);
    else
        sqlite3_bind_int64(st, idx, v);
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t n)
{
    copy_trunc(dst, n, (const char *)sqlite3_column_text(st, i));
}

static int64_t col_int(sqlite3_stmt *st, int i, int64_t dflt)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_int64(st, i);
}

static double col_real(sqlite3_stmt *st, int i, double dflt)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_double(st, i);
}

static int run_stmt(struct records *r, enum stmt_id id)
{
    sqlite3_stmt *st;
    int rc;
    if (stmt_get(r, id, &st, NULL) < 0)
        return SQLITE_ERROR;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    stmt_done(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Steps a write statement with the commit fsynced (see the top comment). */
static int step_durable(struct records *r, sqlite3_stmt *st)
{
    int rc = run_stmt(r, ST_SYNC_FULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    run_stmt(r, ST_SYNC_NORMAL);
    return rc;
}

/*
 * The endings every accessor shares. The caller has bound the statement (and,
 * for writes, stepped it: rc); each ending maps the result to 0 / -errno with
 * the message, and resets the statement. `missing` is the printf format of the
 * -ENOENT message ("records: no job %lld").
 */

/* Fills a caller's struct (void *: one reader serves get and list). */
typedef void (*row_reader)(sqlite3_stmt *st, void *out);

/* Steps a one-row query: read(st, out) on the row, -ENOENT without one. */
static int get_one(struct records *r, sqlite3_stmt *st, row_reader read, void *out,
                   const char *what, struct records_error *err, const char *missing, ...)
    __attribute__((format(printf, 7, 8)));

static int get_one(struct records *r, sqlite3_stmt *st, row_reader read, void *out,
                   const char *what, struct records_error *err, const char *missing, ...)
{
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        read(st, out);
    } else if (rc == SQLITE_DONE) {
        va_list ap;
        va_start(ap, missing);
        ret = vset_err(err, -ENOENT, missing, ap);
        va_end(ap);
    } else {
        ret = db_err(r, err, rc, what);
    }
    stmt_done(st);
    return ret;
}

/* A write that needs no row to match. */
static int write_done(struct records *r, sqlite3_stmt *st, int rc, const char *what,
                      struct records_error *err)
{
    int ret = rc == SQLITE_DONE ? 0 : db_err(r, err, rc, what);
    stmt_done(st);
    return ret;
}

/* A write by key that must change its row: -ENOENT when none matched. */
static int change_one(struct records *r, sqlite3_stmt *st, int rc, const char *what,
                      struct records_error *err, const char *missing, ...)
    __attribute__((format(printf, 6, 7)));

static int change_one(struct records *r, sqlite3_stmt *st, int rc, const char *what,
                      struct records_error *err, const char *missing, ...)
{
    int ret = 0;
    if (rc != SQLITE_DONE) {
        ret = db_err(r, err, rc, what);
    } else if (sqlite3_changes(r->db) == 0) {
        va_list ap;
        va_start(ap, missing);
        ret = vset_err(err, -ENOENT, missing, ap);
        va_end(ap);
    }
    stmt_done(st);
    return ret;
}

/*
 * A list: `while (next_row(r, st, &rc, &n)) { read; call back; }` then
 * `return list_done(...)`. The caller's callback runs with r->in_callback set,
 * so it cannot re-enter the store; the result is the number of rows read.
 */
static bool next_row(struct records *r, sqlite3_stmt *st, int *rc, int *n)
{
    r->in_callback = true;
    *rc = sqlite3_step(st);
    if (*rc != SQLITE_ROW)
        return false;
    (*n)++;
    return true;
}

static int list_done(struct records *r, sqlite3_stmt *st, int rc, int n, const char *what,
                     struct records_error *err)
{
    int ret;
    r->in_callback = false;
    ret = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? n : db_err(r, err, rc, what);
    stmt_done(st);
    return ret;
}

#define ENTER(r, err)                                                                              \
    do {                                                                                           \
        clear_err(err);                                                                            \
        if (!(r))                                                                                  \
            return set_err((err), -EINVAL, "records: store not open");                             \
        if ((r)->in_callback)                                                                      \
            return set_err((err), -EBUSY, "records: called from inside a records callback");       \
    } while (0)

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

static int exec_sql(struct records *r, const char *sql)
{
    return sqlite3_exec(r->db, sql, NULL, NULL, NULL);
}

/* Runs a one-row integer query; -1 on failure (rc in *rc_out). */
static int64_t query_int(struct records *r, const char *sql, int *rc_out)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    int rc = sqlite3_prepare_v2(r->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            v = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    *rc_out = rc;
    return v;
}

static int open_fail(struct records *r, struct records_error *err, int rc, const char *path)
{
    char what[512];
    snprintf(what, sizeof(what), "cannot open %s", path);
    return db_err(r, err, rc, what);
}

static int take_lock(struct records *r, const char *path, struct records_error *err)
{
    size_t n = strlen(path) + sizeof(".lock");
    char *lock = malloc(n);
    if (!lock)
        return set_err(err, -ENOMEM, "records: out of memory");
    snprintf(lock, n, "%s.lock", path);
    r->lock_fd = open(lock, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    free(lock);
    if (r->lock_fd < 0) {
        int e = errno;
        char msg[128];
        snprintf(msg, sizeof(msg), "%s", strerror(e));
        if (msg[0] >= 'A' && msg[0] <= 'Z')
            msg[0] = (char)(msg[0] - 'A' + 'a');
        return set_err(err, -e, "records: cannot open %s: %s", path, msg);
    }
    if (flock(r->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        if (e == EWOULDBLOCK)
            return set_err(err, -EBUSY,
                           "records: %s is in use by another process (is espstationd already "
                           "running on this data directory?)",
                           path);
        return set_err(err, -e, "records: cannot lock %s: %s", path, strerror(e));
    }
    return 0;
}

/* Decides whether the file is ours, new, or foreign; sets r->schema_version. */
static int check_identity(struct records *r, const char *path, struct records_error *err)
{
    int rc;
    int64_t tables = query_int(r, "SELECT count(*) FROM sqlite_master", &rc);
    if (rc != SQLITE_OK)
        return open_fail(r, err, rc, path);
    int64_t app = query_int(r, "PRAGMA application_id", &rc);
    if (rc != SQLITE_OK)
        return open_fail(r, err, rc, path);
    int64_t version = query_int(r, "PRAGMA user_version", &rc);
    if (rc != SQLITE_OK)
        return open_fail(r, err, rc, path);
    if (app != RECORDS_APP_ID && !(app == 0 && version == 0 && tables == 0))
        return set_err(err, -EBADMSG,
                       "records: %s is not a records database (an SQLite file of another "
                       "application: application_id 0x%08llx, %lld schema objects); "
                       "refusing to touch it",
                       path, (unsigned long long)(uint32_t)app, (long long)tables);
    if (version > N_MIGRATIONS)
        return set_err(err, -ENOTSUP,
                       "records: %s has schema version %lld, newer than this espstationd "
                       "supports (%d): upgrade espstationd",
                       path, (long long)version, N_MIGRATIONS);
    r->schema_version = (int)version;
    return 0;
}

static int migrate(struct records *r, const char *path, struct records_error *err)
{
    while (r->schema_version < N_MIGRATIONS) {
        char sql[96];
        int rc = exec_sql(r, "BEGIN IMMEDIATE");
        if (rc != SQLITE_OK)
            return open_fail(r, err, rc, path);
        /* Another process may have migrated while we waited for the lock. */
        int64_t v = query_int(r, "PRAGMA user_version", &rc);
        if (rc == SQLITE_OK && v > r->schema_version) {
            exec_sql(r, "COMMIT");
            r->schema_version = (int)v;
            continue;
        }
        if (rc == SQLITE_OK)
            rc = exec_sql(r, migrations[r->schema_version]);
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d; PRAGMA application_id = %d;",
                 r->schema_version + 1, RECORDS_APP_ID);
        if (rc == SQLITE_OK)
            rc = exec_sql(r, sql);
        if (rc == SQLITE_OK)
            rc = exec_sql(r, "COMMIT");
        if (rc != SQLITE_OK) {
            char what[512];
            int ret;
            snprintf(what, sizeof(what), "cannot migrate %s to schema version %d", path,
                     r->schema_version + 1);
            ret = db_err(r, err, rc, what);
            exec_sql(r, "ROLLBACK");
            return ret;
        }
        r->schema_version++;
    }
    return 0;
}

/* Jobs the previous process left queued/running become interrupted, each with
 * an event, in one synced transaction. */
static int recover(struct records *r, const char *path, struct records_error *err)
{
    static const char *const sql_events =
        "INSERT INTO events (ts, kind, board_mac, slot, job_id, data) "
        "SELECT ?1, 'job.interrupted', board_mac, slot, id, json_object('job', id, "
        "'state', 'interrupted', 'stage', coalesce(nullif(stage, ''), state), 'message', "
        "'job ' || id || ' interrupted: daemon stopped while ' || "
        "coalesce(nullif(stage, ''), state)) "
        "FROM jobs WHERE state IN ('queued', 'running') ORDER BY id";
    static const char *const sql_jobs =
        "UPDATE jobs SET state = 'interrupted', ended_at = ?1, result_code = ?2, "
        "error_stage = coalesce(nullif(stage, ''), state), "
        "error_message = 'daemon stopped while ' || coalesce(nullif(stage, ''), state), "
        "error_advice = 'the station stopped (crash, kill or power loss) during this job; "
        "the board is flashed again when it is next seen', "
        "seconds = max(0, (?1 - started_at) / 1000.0) "
        "WHERE state IN ('queued', 'running')";
    sqlite3_stmt *ev = NULL, *jobs = NULL;
    int64_t now = records_now_ms(r);
    bool in_txn = false;
    int rc = run_stmt(r, ST_SYNC_FULL);
    if (rc == SQLITE_OK) {
        rc = exec_sql(r, "BEGIN IMMEDIATE");
        in_txn = rc == SQLITE_OK;
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(r->db, sql_events, -1, &ev, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(r->db, sql_jobs, -1, &jobs, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(ev, 1, now);
        rc = sqlite3_step(ev);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(jobs, 1, now);
        sqlite3_bind_int(jobs, 2, -ECANCELED);
        rc = sqlite3_step(jobs);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    if (rc == SQLITE_OK) {
        r->recovered = sqlite3_changes(r->db);
        rc = exec_sql(r, "COMMIT");
    }
    sqlite3_finalize(ev);
    sqlite3_finalize(jobs);
    if (rc != SQLITE_OK) {
        char what[512];
        int ret;
        snprintf(what, sizeof(what), "cannot recover interrupted jobs in %s", path);
        ret = db_err(r, err, rc, what);
        if (in_txn)
            exec_sql(r, "ROLLBACK");
        r->recovered = 0;
        return ret;
    }
    run_stmt(r, ST_SYNC_NORMAL);
    return 0;
}

static void destroy(struct records *r)
{
    if (!r)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(r->st[i]);
    if (r->db)
        sqlite3_close(r->db);
    if (r->lock_fd >= 0)
        close(r->lock_fd); /* after the database: the next opener finds it closed */
    free(r->path);
    free(r);
}

int records_open(const char *path, struct records **out, struct records_error *err)
{
    struct records *r;
    int rc, ret;
    char mode[16] = "";

    clear_err(err);
    if (!out)
        return set_err(err, -EINVAL, "records: no output pointer");
    *out = NULL;
    if (!path || !*path)
        return set_err(err, -EINVAL, "records: no database path");
    r = calloc(1, sizeof(*r));
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return set_err(err, -ENOMEM, "records: out of memory");
    }
    r->lock_fd = -1;
    r->clock = default_clock;

    ret = take_lock(r, path, err);
    if (ret < 0)
        goto fail;
    rc = sqlite3_open_v2(path, &r->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_NOFOLLOW,
                         NULL);
    if (rc != SQLITE_OK) {
        ret = open_fail(r, err, rc, path);
        goto fail;
    }
    sqlite3_extended_result_codes(r->db, 1);
    sqlite3_busy_timeout(r->db, RECORDS_BUSY_TIMEOUT_MS);
    /* A damaged or hostile file must not be able to do more than fail: no
     * writable_schema tricks, no non-innocuous functions in its schema. */
    sqlite3_db_config(r->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(r->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    if (sqlite3_db_readonly(r->db, "main") == 1) {
        ret = set_err(err, -EACCES, "records: cannot open %s: permission denied (read-only)", path);
        goto fail;
    }

    ret = check_identity(r, path, err);
    if (ret < 0)
        goto fail;

    {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(r->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            copy_trunc(mode, sizeof(mode), (const char *)sqlite3_column_text(st, 0));
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) {
            ret = open_fail(r, err, rc, path);
            goto fail;
        }
        if (strcmp(mode, "wal") != 0) {
            ret = set_err(err, -ENOTSUP,
                          "records: cannot open %s: WAL journal not available (got \"%s\"; "
                          "is the data directory on a network filesystem?)",
                          path, mode);
            goto fail;
        }
    }
    rc = exec_sql(r, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
                     "PRAGMA journal_size_limit = " /* bytes kept after a checkpoint */
                     "16777216;");
    if (rc != SQLITE_OK) {
        ret = open_fail(r, err, rc, path);
        goto fail;
    }
    ret = migrate(r, path, err);
    if (ret < 0)
        goto fail;
    ret = recover(r, path, err);
    if (ret < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    destroy(r);
    return ret;
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
    return N_MIGRATIONS;
}

int records_integrity_check(struct records *r, struct records_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc, ret = 0;
    ENTER(r, err);
    rc = sqlite3_prepare_v2(r->db, "PRAGMA integrity_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *res = (const char *)sqlite3_column_text(st, 0);
        if (!res || strcmp(res, "ok") != 0) {
            ret = set_err(err, -EBADMSG, "records: %s failed its integrity check: %s", r->path,
                          res ? res : "(no result)");
            for (char *p = err ? err->message : NULL; p && *p; p++)
                if (*p == '\n' || *p == '\r')
                    *p = ' '; /* one log line */
        }
    } else {
        ret = db_err(r, err, rc, "cannot run the integrity check");
    }
    sqlite3_finalize(st);
    return ret;
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
static void read_groups(sqlite3_stmt *st, int i, struct records_board *b)
{
    const char *p = (const char *)sqlite3_column_text(st, i);
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

static void read_board(sqlite3_stmt *st, void *out)
{
    struct records_board *b = out;
    records_board_init(b);
    col_text(st, 0, b->mac, sizeof(b->mac));
    col_text(st, 1, b->chip, sizeof(b->chip));
    b->revision = (int)col_int(st, 2, -1);
    b->flash_id = col_int(st, 3, -1);
    b->flash_size = col_int(st, 4, -1);
    b->crystal_mhz = (int)col_int(st, 5, -1);
    b->first_seen = col_int(st, 6, 0);
    b->last_seen = col_int(st, 7, 0);
    col_text(st, 8, b->slot, sizeof(b->slot));
    col_text(st, 9, b->current_firmware, sizeof(b->current_firmware));
    col_text(st, 10, b->current_md5, sizeof(b->current_md5));
    col_text(st, 11, b->ip, sizeof(b->ip));
    col_text(st, 12, b->running_version, sizeof(b->running_version));
    col_text(st, 13, b->target_firmware, sizeof(b->target_firmware));
    col_text(st, 14, b->online_state, sizeof(b->online_state));
    col_text(st, 15, b->notes, sizeof(b->notes));
    read_groups(st, 16, b);
    b->ip_confirmed = col_int(st, 17, 0) != 0;
    col_text(st, 18, b->ip_source, sizeof(b->ip_source));
    b->ip_changed_at = col_int(st, 19, 0);
    col_text(st, 20, b->ip_claim, sizeof(b->ip_claim));
    col_text(st, 21, b->ip_claim_source, sizeof(b->ip_claim_source));
    b->ip_claim_at = col_int(st, 22, 0);
}

int records_board_upsert(struct records *r, const struct records_board *b,
                         struct records_error *err)
{
    char mac[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!b)
        return set_err(err, -EINVAL, "records: no board");
    if ((ret = check_array("board MAC", b->mac, sizeof(b->mac), err)) < 0 ||
        (ret = normalize_mac(b->mac, mac, err)) < 0 ||
        (ret = check_array("board chip", b->chip, sizeof(b->chip), err)) < 0 ||
        (ret = check_array("board slot", b->slot, sizeof(b->slot), err)) < 0 ||
        (ret = check_array("board current_firmware", b->current_firmware,
                           sizeof(b->current_firmware), err)) < 0 ||
        (ret = check_array("board current_md5", b->current_md5, sizeof(b->current_md5), err)) < 0 ||
        (ret = check_array("board ip", b->ip, sizeof(b->ip), err)) < 0 ||
        (ret = check_array("board running_version", b->running_version, sizeof(b->running_version),
                           err)) < 0 ||
        (ret = check_array("board target_firmware", b->target_firmware, sizeof(b->target_firmware),
                           err)) < 0 ||
        (ret = check_array("board online_state", b->online_state, sizeof(b->online_state), err)) <
            0)
        return ret;
    if (!memchr(b->notes, '\0', sizeof(b->notes)))
        return set_err(err, -EINVAL, "records: board notes is not NUL-terminated");
    if ((ret = stmt_get(r, ST_BOARD_UPSERT, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, mac, -1, SQLITE_TRANSIENT);
    bind_text(st, 2, b->chip);
    bind_opt_int(st, 3, b->revision);
    bind_opt_int(st, 4, b->flash_id);
    bind_opt_int(st, 5, b->flash_size);
    bind_opt_int(st, 6, b->crystal_mhz);
    sqlite3_bind_int64(st, 7, records_now_ms(r));
    bind_text(st, 8, b->slot);
    bind_text(st, 9, b->current_firmware);
    bind_text(st, 10, b->current_md5);
    bind_text(st, 11, b->ip);
    bind_text(st, 12, b->running_version);
    bind_text(st, 13, b->target_firmware);
    bind_text(st, 14, b->online_state);
    bind_text(st, 15, b->notes);
    return write_done(r, st, sqlite3_step(st), "cannot record board", err);
}

int records_board_get(struct records *r, const char *mac, struct records_board *out,
                      struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return set_err(err, -EINVAL, "records: no output board");
    if ((ret = normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_BOARD_GET, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    return get_one(r, st, read_board, out, "cannot read board", err, "records: no board %s", norm);
}

int records_board_list(struct records *r, const struct records_board_filter *f, records_board_cb cb,
                       void *ctx, struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_BOARD_LIST, &st, err)) < 0)
        return ret;
    bind_text(st, 1, f ? f->chip : NULL);
    bind_text(st, 2, f ? f->firmware : NULL);
    sqlite3_bind_int64(st, 3, f && f->limit > 0 ? f->limit : -1);
    sqlite3_bind_int64(st, 4, f && f->offset > 0 ? f->offset : 0);
    bind_text(st, 5, f ? f->group : NULL);
    while (next_row(r, st, &rc, &n)) {
        read_board(st, &r->row.board);
        if (cb && cb(&r->row.board, ctx))
            break;
    }
    return list_done(r, st, rc, n, "cannot list boards", err);
}

int records_board_set_address(struct records *r, const char *mac, const char *ip, bool confirmed,
                              const char *source, const char *claim, const char *claim_source,
                              struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = normalize_mac(mac, norm, err)) < 0 ||
        (ret = check_text("board ip", ip, RECORDS_IP_LEN, err)) < 0 ||
        (ret = check_text("board ip_source", source, RECORDS_STATE_LEN, err)) < 0 ||
        (ret = check_text("board ip_claim", claim, RECORDS_IP_LEN, err)) < 0 ||
        (ret = check_text("board ip_claim_source", claim_source, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if (confirmed && (!ip || !*ip))
        return set_err(err, -EINVAL, "records: a confirmed address needs an ip");
    if ((ret = stmt_get(r, ST_BOARD_SET_ADDRESS, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    bind_text(st, 2, ip);
    sqlite3_bind_int(st, 3, confirmed ? 1 : 0);
    bind_text(st, 4, source);
    bind_text(st, 5, claim);
    bind_text(st, 6, claim && *claim ? claim_source : NULL);
    sqlite3_bind_int64(st, 7, records_now_ms(r));
    return change_one(r, st, sqlite3_step(st), "cannot record the board's address", err,
                      "records: no board %s", norm);
}

int records_board_target_used(struct records *r, const char *target, struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!target || !*target)
        return 0;
    if ((ret = stmt_get(r, ST_BOARD_TARGET_USED, &st, err)) < 0)
        return ret;
    bind_text(st, 1, target);
    int rc = sqlite3_step(st);
    ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : db_err(r, err, rc, "cannot read targets");
    stmt_done(st);
    return ret;
}

int records_board_count_unconfirmed(struct records *r, int64_t *n, struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    *n = 0;
    if ((ret = stmt_get(r, ST_BOARD_COUNT_UNCONFIRMED, &st, err)) < 0)
        return ret;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    ret = rc == SQLITE_ROW ? 0 : db_err(r, err, rc, "cannot count boards");
    stmt_done(st);
    return ret;
}

/* ---- jobs ----------------------------------------------------------------- */

int records_job_begin(struct records *r, const struct records_job_new *j, int64_t *id,
                      struct records_error *err)
{
    char mac[RECORDS_MAC_LEN] = "";
    sqlite3_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if (!j)
        return set_err(err, -EINVAL, "records: no job");
    if ((ret = check_token("job kind", j->kind, RECORDS_STATE_LEN, err)) < 0 ||
        (j->board_mac && *j->board_mac && (ret = normalize_mac(j->board_mac, mac, err)) < 0) ||
        (ret = check_text("job slot", j->slot, RECORDS_SLOT_LEN, err)) < 0 ||
        (ret = check_text("job firmware", j->firmware, RECORDS_FIRMWARE_LEN, err)) < 0 ||
        (ret = check_text("job stage", j->stage, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_JOB_BEGIN, &st, err)) < 0)
        return ret;
    bind_text(st, 1, j->kind);
    bind_text(st, 2, mac);
    bind_text(st, 3, j->slot);
    bind_text(st, 4, j->firmware);
    bind_text(st, 5, j->queued ? "queued" : "running");
    bind_text(st, 6, j->stage);
    sqlite3_bind_int64(st, 7, records_now_ms(r));
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        ret = 0;
        if (id)
            *id = sqlite3_last_insert_rowid(r->db);
    } else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        ret = set_err(err, -ENOENT, "records: no board %s: record the board before its job", mac);
    } else {
        ret = db_err(r, err, rc, "cannot record job start");
    }
    stmt_done(st);
    return ret;
}

/* Reads a job's state; -ENOENT when unknown. */
static int job_state(struct records *r, int64_t id, enum records_job_state *state, int64_t *started,
                     int64_t *bytes, int64_t *wire, struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret;
    if ((ret = stmt_get(r, ST_JOB_STATE, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ret = records_job_state_from_string((const char *)sqlite3_column_text(st, 0), state);
        if (ret < 0)
            ret = set_err(err, -EBADMSG, "records: job %lld has an unknown state", (long long)id);
        if (started)
            *started = col_int(st, 1, 0);
        if (bytes)
            *bytes = col_int(st, 2, 0);
        if (wire)
            *wire = col_int(st, 3, 0);
    } else if (rc == SQLITE_DONE) {
        ret = set_err(err, -ENOENT, "records: no job %lld", (long long)id);
    } else {
        ret = db_err(r, err, rc, "cannot read job");
    }
    stmt_done(st);
    return ret;
}

/* Ends an UPDATE of a queued or running job (rc: its step). When it matched
 * no row, says why: no such job, or the job is already final. */
static int job_update_done(struct records *r, sqlite3_stmt *st, int rc, int64_t id,
                           const char *what, struct records_error *err)
{
    enum records_job_state s;
    int ret;
    if (rc != SQLITE_DONE)
        ret = db_err(r, err, rc, what);
    else
        ret = sqlite3_changes(r->db) == 1 ? 0 : 1;
    stmt_done(st);
    if (ret != 1)
        return ret;
    ret = job_state(r, id, &s, NULL, NULL, NULL, err);
    if (ret < 0)
        return ret;
    return set_err(err, -EINVAL, "records: job %lld is already %s", (long long)id,
                   records_job_state_to_string(s));
}

int records_job_set_board(struct records *r, int64_t id, const char *mac, struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if ((ret = normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_JOB_SET_BOARD, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, norm, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        stmt_done(st);
        return set_err(err, -ENOENT, "records: no board %s: record the board before its job", norm);
    }
    return change_one(r, st, rc, "cannot attach board to job", err, "records: no job %lld",
                      (long long)id);
}

int records_job_set_firmware(struct records *r, int64_t id, const char *firmware,
                             struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_text("job firmware", firmware, RECORDS_FIRMWARE_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_JOB_SET_FIRMWARE, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, firmware);
    return change_one(r, st, sqlite3_step(st), "cannot set the job's firmware", err,
                      "records: no job %lld", (long long)id);
}

int records_job_progress(struct records *r, int64_t id, const char *stage, int64_t bytes,
                         int64_t wire_bytes, struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_text("job stage", stage, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_JOB_PROGRESS, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, stage);
    bind_opt_int(st, 3, bytes);
    bind_opt_int(st, 4, wire_bytes);
    sqlite3_bind_int64(st, 5, records_now_ms(r));
    return job_update_done(r, st, sqlite3_step(st), id, "cannot record job progress", err);
}

int records_job_log(struct records *r, int64_t id, const char *level, const char *line,
                    struct records_error *err)
{
    char buf[RECORDS_TEXT_LEN];
    sqlite3_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if ((ret = check_token("log level", level, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_JOB_LOG, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, records_now_ms(r));
    bind_text(st, 3, level);
    copy_trunc(buf, sizeof(buf), line ? line : "");
    sqlite3_bind_text(st, 4, buf, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        ret = 0;
    else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        ret = set_err(err, -ENOENT, "records: no job %lld", (long long)id);
    else
        ret = db_err(r, err, rc, "cannot append job log line");
    stmt_done(st);
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
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!res)
        return set_err(err, -EINVAL, "records: no job result");
    if (!records_job_state_is_final(res->state))
        return set_err(err, -EINVAL, "records: \"%s\" is not a final job state",
                       records_job_state_to_string(res->state));
    if ((ret = check_text("job error stage", res->error_stage, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = job_state(r, id, &cur, &started, &bytes, &wire, err)) < 0)
        return ret;
    if (records_job_state_is_final(cur))
        return set_err(err, -EINVAL, "records: job %lld is already %s", (long long)id,
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
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, records_job_state_to_string(res->state));
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int(st, 4, res->result_code);
    bind_text(st, 5, res->error_stage);
    bind_trunc(st, 6, res->error_message, RECORDS_TEXT_LEN);
    bind_trunc(st, 7, res->error_advice, RECORDS_TEXT_LEN);
    bind_opt_int(st, 8, res->device_status);
    bind_opt_int(st, 9, res->device_error);
    bind_opt_int(st, 10, res->error_op);
    bind_opt_int(st, 11, res->error_address);
    sqlite3_bind_int64(st, 12, bytes);
    sqlite3_bind_int64(st, 13, wire);
    if (kbps >= 0)
        sqlite3_bind_double(st, 14, kbps);
    else
        sqlite3_bind_null(st, 14);
    sqlite3_bind_int(st, 15, res->retries > 0 ? res->retries : 0);
    if (secs >= 0)
        sqlite3_bind_double(st, 16, secs);
    else
        sqlite3_bind_null(st, 16);
    return job_update_done(r, st, step_durable(r, st), id, "cannot record job result", err);
}

static void read_job(sqlite3_stmt *st, void *out)
{
    struct records_job *j = out;
    memset(j, 0, sizeof(*j));
    j->id = sqlite3_column_int64(st, 0);
    col_text(st, 1, j->kind, sizeof(j->kind));
    col_text(st, 2, j->board_mac, sizeof(j->board_mac));
    col_text(st, 3, j->slot, sizeof(j->slot));
    col_text(st, 4, j->firmware, sizeof(j->firmware));
    if (records_job_state_from_string((const char *)sqlite3_column_text(st, 5), &j->state) < 0)
        j->state = RECORDS_JOB_FAILED; /* CHECK constraint makes this unreachable */
    col_text(st, 6, j->stage, sizeof(j->stage));
    j->started_at = col_int(st, 7, 0);
    j->ended_at = col_int(st, 8, 0);
    j->result_code = (int)col_int(st, 9, 0);
    col_text(st, 10, j->error_stage, sizeof(j->error_stage));
    col_text(st, 11, j->error_message, sizeof(j->error_message));
    col_text(st, 12, j->error_advice, sizeof(j->error_advice));
    j->device_status = (int)col_int(st, 13, -1);
    j->device_error = (int)col_int(st, 14, -1);
    j->error_op = (int)col_int(st, 15, -1);
    j->error_address = col_int(st, 16, -1);
    j->bytes = col_int(st, 17, 0);
    j->wire_bytes = col_int(st, 18, 0);
    j->kbps = col_real(st, 19, -1);
    j->retries = (int)col_int(st, 20, 0);
    j->seconds = col_real(st, 21, -1);
}

int records_job_get(struct records *r, int64_t id, struct records_job *out,
                    struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return set_err(err, -EINVAL, "records: no output job");
    if ((ret = stmt_get(r, ST_JOB_GET, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    return get_one(r, st, read_job, out, "cannot read job", err, "records: no job %lld",
                   (long long)id);
}

void records_job_filter_init(struct records_job_filter *f)
{
    if (!f)
        return;
    memset(f, 0, sizeof(*f));
    f->state = RECORDS_JOB_ANY;
}

static int bind_job_filter(sqlite3_stmt *st, const struct records_job_filter *f,
                           struct records_error *err)
{
    char mac[RECORDS_MAC_LEN];
    int ret;
    if (!f) {
        sqlite3_bind_int64(st, 7, -1);
        sqlite3_bind_int64(st, 8, 0);
        return 0;
    }
    if (f->board_mac && *f->board_mac) {
        if ((ret = normalize_mac(f->board_mac, mac, err)) < 0)
            return ret;
        sqlite3_bind_text(st, 1, mac, -1, SQLITE_TRANSIENT);
    }
    bind_text(st, 2, f->slot);
    bind_text(st, 3, f->kind);
    if (f->state != RECORDS_JOB_ANY) {
        if (f->state < 0 || f->state >= RECORDS_JOB_STATE_COUNT)
            return set_err(err, -EINVAL, "records: unknown job state %d in filter", f->state);
        bind_text(st, 4, records_job_state_to_string(f->state));
    }
    if (f->since > 0)
        sqlite3_bind_int64(st, 5, f->since);
    if (f->until > 0)
        sqlite3_bind_int64(st, 6, f->until);
    sqlite3_bind_int64(st, 7, f->limit > 0 ? f->limit : -1);
    sqlite3_bind_int64(st, 8, f->offset > 0 ? f->offset : 0);
    return 0;
}

int records_job_list(struct records *r, const struct records_job_filter *f, records_job_cb cb,
                     void *ctx, struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_JOB_LIST, &st, err)) < 0)
        return ret;
    if ((ret = bind_job_filter(st, f, err)) < 0) {
        stmt_done(st);
        return ret;
    }
    while (next_row(r, st, &rc, &n)) {
        read_job(st, &r->row.job);
        if (cb && cb(&r->row.job, ctx))
            break;
    }
    return list_done(r, st, rc, n, "cannot list jobs", err);
}

int records_job_log_list(struct records *r, int64_t id, records_log_cb cb, void *ctx,
                         struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_JOB_LOG_LIST, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    while (next_row(r, st, &rc, &n)) {
        struct records_log_line *l = &r->row.log;
        l->ts = col_int(st, 0, 0);
        col_text(st, 1, l->level, sizeof(l->level));
        col_text(st, 2, l->line, sizeof(l->line));
        if (cb && cb(l, ctx))
            break;
    }
    return list_done(r, st, rc, n, "cannot read job log", err);
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
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if (!out)
        return set_err(err, -EINVAL, "records: no output file");
    if ((ret = stmt_get(r, ST_JOB_EXPORT, &st, err)) < 0)
        return ret;
    if ((ret = bind_job_filter(st, f, err)) < 0) {
        stmt_done(st);
        return ret;
    }
    fputs("id,kind,state,board_mac,slot,firmware,stage,started_at,ended_at,seconds,bytes,"
          "wire_bytes,kbps,retries,result_code,error_stage,device_status,device_error,error_op,"
          "error_address,error_message,error_advice\r\n",
          out);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_job(st, &r->row.job);
        csv_job(out, &r->row.job);
        n++;
    }
    ret = rc == SQLITE_DONE ? n : db_err(r, err, rc, "cannot export jobs");
    stmt_done(st);
    if (ret >= 0 && (fflush(out) != 0 || ferror(out)))
        ret = set_err(err, -EIO, "records: cannot write the CSV export: %s", strerror(errno));
    return ret;
}

/* ---- events --------------------------------------------------------------- */

int records_event_append(struct records *r, const struct records_event_new *e, int64_t *id,
                         struct records_error *err)
{
    char mac[RECORDS_MAC_LEN] = "";
    sqlite3_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if (!e)
        return set_err(err, -EINVAL, "records: no event");
    if ((ret = check_token("event kind", e->kind, RECORDS_STATE_LEN, err)) < 0 ||
        (e->board_mac && *e->board_mac && (ret = normalize_mac(e->board_mac, mac, err)) < 0) ||
        (ret = check_text("event slot", e->slot, RECORDS_SLOT_LEN, err)) < 0)
        return ret;
    if (e->data && strnlen(e->data, RECORDS_EVENT_DATA_LEN) >= RECORDS_EVENT_DATA_LEN)
        return set_err(err, -EINVAL, "records: event data too long (max %d bytes)",
                       RECORDS_EVENT_DATA_LEN - 1);
    if (e->data && *e->data && !json_object_text(e->data))
        return set_err(err, -EINVAL, "records: event data is not valid JSON (an object)");
    if ((ret = stmt_get(r, ST_EVENT_APPEND, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, records_now_ms(r));
    bind_text(st, 2, e->kind);
    bind_text(st, 3, mac);
    bind_text(st, 4, e->slot);
    bind_opt_int(st, 5, e->job_id > 0 ? e->job_id : -1);
    bind_text(st, 6, e->data);
    rc = step_durable(r, st);
    if (rc == SQLITE_DONE) {
        ret = 0;
        if (id)
            *id = sqlite3_last_insert_rowid(r->db);
    } else {
        ret = db_err(r, err, rc, "cannot append event");
    }
    stmt_done(st);
    return ret;
}

int records_events_since(struct records *r, int64_t after_id, int limit, records_event_cb cb,
                         void *ctx, struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_EVENTS_SINCE, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, after_id);
    sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
    while (next_row(r, st, &rc, &n)) {
        struct records_event *e = &r->row.event;
        e->id = sqlite3_column_int64(st, 0);
        e->ts = col_int(st, 1, 0);
        col_text(st, 2, e->kind, sizeof(e->kind));
        col_text(st, 3, e->board_mac, sizeof(e->board_mac));
        col_text(st, 4, e->slot, sizeof(e->slot));
        e->job_id = col_int(st, 5, 0);
        col_text(st, 6, e->data, sizeof(e->data));
        if (cb && cb(e, ctx))
            break;
    }
    return list_done(r, st, rc, n, "cannot read events", err);
}

int records_events_last_id(struct records *r, int64_t *id, struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_EVENTS_LAST, &st, err)) < 0)
        return ret;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        ret = 0;
        if (id)
            *id = sqlite3_column_int64(st, 0);
    } else {
        ret = db_err(r, err, rc, "cannot read events");
    }
    stmt_done(st);
    return ret;
}

/* ---- firmware ------------------------------------------------------------- */

static int check_fw_key(const char *name, const char *version, struct records_error *err)
{
    int ret;
    if (!name || !*name || !version || !*version)
        return set_err(err, -EINVAL, "records: firmware name and version are required");
    if ((ret = check_text("firmware name", name, RECORDS_NAME_LEN, err)) < 0 ||
        (ret = check_text("firmware version", version, RECORDS_NAME_LEN, err)) < 0)
        return ret;
    return 0;
}

int records_firmware_put(struct records *r, const struct records_firmware *fw,
                         struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret;
    ENTER(r, err);
    if (!fw)
        return set_err(err, -EINVAL, "records: no firmware");
    if (!memchr(fw->name, '\0', sizeof(fw->name)) ||
        !memchr(fw->version, '\0', sizeof(fw->version)) ||
        !memchr(fw->chip, '\0', sizeof(fw->chip)) ||
        !memchr(fw->manifest, '\0', sizeof(fw->manifest)))
        return set_err(err, -EINVAL, "records: firmware field is not NUL-terminated");
    if ((ret = check_fw_key(fw->name, fw->version, err)) < 0 ||
        (ret = check_text("firmware chip", fw->chip, sizeof(fw->chip), err)) < 0)
        return ret;
    if (!fw->chip[0])
        return set_err(err, -EINVAL, "records: firmware %s@%s has no chip family", fw->name,
                       fw->version);
    if (!json_object_text(fw->manifest))
        return set_err(err, -EINVAL,
                       "records: manifest of firmware %s@%s is not valid JSON (an object)",
                       fw->name, fw->version);
    if ((ret = stmt_get(r, ST_FW_PUT, &st, err)) < 0)
        return ret;
    bind_text(st, 1, fw->name);
    bind_text(st, 2, fw->version);
    bind_text(st, 3, fw->chip);
    sqlite3_bind_text(st, 4, fw->manifest, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, records_now_ms(r));
    rc = step_durable(r, st);
    if (rc == SQLITE_DONE)
        ret = 0;
    else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        ret = set_err(err, -EEXIST,
                      "records: firmware %s@%s already exists (versions are "
                      "immutable: import a new version)",
                      fw->name, fw->version);
    else
        ret = db_err(r, err, rc, "cannot record firmware");
    stmt_done(st);
    return ret;
}

static void read_fw(sqlite3_stmt *st, void *out)
{
    struct records_firmware *fw = out;
    col_text(st, 0, fw->name, sizeof(fw->name));
    col_text(st, 1, fw->version, sizeof(fw->version));
    col_text(st, 2, fw->chip, sizeof(fw->chip));
    col_text(st, 3, fw->manifest, sizeof(fw->manifest));
    fw->created_at = col_int(st, 4, 0);
}

int records_firmware_get(struct records *r, const char *name, const char *version,
                         struct records_firmware *out, struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return set_err(err, -EINVAL, "records: no output firmware");
    if ((ret = check_fw_key(name, version, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_FW_GET, &st, err)) < 0)
        return ret;
    bind_text(st, 1, name);
    bind_text(st, 2, version);
    return get_one(r, st, read_fw, out, "cannot read firmware", err, "records: no firmware %s@%s",
                   name, version);
}

int records_firmware_delete(struct records *r, const char *name, const char *version,
                            struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_fw_key(name, version, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_FW_DELETE, &st, err)) < 0)
        return ret;
    bind_text(st, 1, name);
    bind_text(st, 2, version);
    return change_one(r, st, step_durable(r, st), "cannot delete firmware", err,
                      "records: no firmware %s@%s", name, version);
}

int records_firmware_list(struct records *r, const char *chip, records_firmware_cb cb, void *ctx,
                          struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_FW_LIST, &st, err)) < 0)
        return ret;
    bind_text(st, 1, chip);
    while (next_row(r, st, &rc, &n)) {
        read_fw(st, &r->row.fw);
        if (cb && cb(&r->row.fw, ctx))
            break;
    }
    return list_done(r, st, rc, n, "cannot list firmware", err);
}

/* ---- counters ------------------------------------------------------------- */

int records_counters(struct records *r, int64_t since, struct records_counters *out,
                     struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret;
    int64_t now;
    ENTER(r, err);
    if (!out)
        return set_err(err, -EINVAL, "records: no output counters");
    memset(out, 0, sizeof(*out));
    if ((ret = stmt_get(r, ST_COUNT_STATES, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, since);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        enum records_job_state s;
        if (records_job_state_from_string((const char *)sqlite3_column_text(st, 0), &s) == 0)
            out->by_state[s] = sqlite3_column_int64(st, 1);
    }
    ret = rc == SQLITE_DONE ? 0 : db_err(r, err, rc, "cannot count jobs");
    stmt_done(st);
    if (ret < 0)
        return ret;
    out->passed = out->by_state[RECORDS_JOB_PASSED];
    out->failed = out->by_state[RECORDS_JOB_FAILED];

    if ((ret = stmt_get(r, ST_COUNT_BOARDS, &st, err)) < 0)
        return ret;
    now = records_now_ms(r);
    sqlite3_bind_int64(st, 1, now - 3600 * 1000);
    sqlite3_bind_int64(st, 2, now);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->boards_last_hour = sqlite3_column_int64(st, 0);
        ret = 0;
    } else {
        ret = db_err(r, err, rc, "cannot count boards");
    }
    stmt_done(st);
    return ret;
}

int records_slot_flash_seconds(struct records *r, int64_t since, records_slot_stat_cb cb, void *ctx,
                               struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_SLOT_SECONDS, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, since);
    while (next_row(r, st, &rc, &n)) {
        char slot[RECORDS_SLOT_LEN];
        col_text(st, 0, slot, sizeof(slot));
        if (cb && cb(slot, sqlite3_column_double(st, 1), sqlite3_column_int64(st, 2), ctx))
            break;
    }
    return list_done(r, st, rc, n, "cannot count slots", err);
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
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!o)
        return set_err(err, -EINVAL, "records: no OTA state");
    if ((ret = check_array("OTA mac", o->mac, sizeof(o->mac), err)) < 0 ||
        (ret = normalize_mac(o->mac, mac, err)) < 0 ||
        (ret = check_array("OTA sketch_md5", o->sketch_md5, sizeof(o->sketch_md5), err)) < 0 ||
        (ret = check_array("OTA sdk_version", o->sdk_version, sizeof(o->sdk_version), err)) < 0 ||
        (ret = check_array("OTA served_md5", o->served_md5, sizeof(o->served_md5), err)) < 0 ||
        (ret = check_array("OTA served_version", o->served_version, sizeof(o->served_version),
                           err)) < 0 ||
        (ret = check_array("OTA served_sketch_md5", o->served_sketch_md5,
                           sizeof(o->served_sketch_md5), err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_OTA_PUT, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, mac, -1, SQLITE_TRANSIENT);
    bind_opt_int(st, 2, o->free_space);
    bind_opt_int(st, 3, o->sketch_size);
    bind_text(st, 4, o->sketch_md5);
    bind_opt_int(st, 5, o->chip_size);
    bind_text(st, 6, o->sdk_version);
    bind_opt_int(st, 7, o->last_checkin > 0 ? o->last_checkin : -1);
    sqlite3_bind_int64(st, 8, o->checkins);
    bind_text(st, 9, o->served_md5);
    bind_text(st, 10, o->served_version);
    bind_text(st, 11, o->served_sketch_md5);
    bind_opt_int(st, 12, o->served_at > 0 ? o->served_at : -1);
    bind_trunc(st, 13, o->problem, sizeof(o->problem));
    return write_done(r, st, sqlite3_step(st), "cannot record OTA state", err);
}

static void read_ota(sqlite3_stmt *st, void *out)
{
    struct records_board_ota *o = out;
    records_board_ota_init(o);
    col_text(st, 0, o->mac, sizeof(o->mac));
    o->free_space = col_int(st, 1, -1);
    o->sketch_size = col_int(st, 2, -1);
    col_text(st, 3, o->sketch_md5, sizeof(o->sketch_md5));
    o->chip_size = col_int(st, 4, -1);
    col_text(st, 5, o->sdk_version, sizeof(o->sdk_version));
    o->last_checkin = col_int(st, 6, 0);
    o->checkins = col_int(st, 7, 0);
    col_text(st, 8, o->served_md5, sizeof(o->served_md5));
    col_text(st, 9, o->served_version, sizeof(o->served_version));
    col_text(st, 10, o->served_sketch_md5, sizeof(o->served_sketch_md5));
    o->served_at = col_int(st, 11, 0);
    col_text(st, 12, o->problem, sizeof(o->problem));
}

int records_board_ota_get(struct records *r, const char *mac, struct records_board_ota *out,
                          struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return set_err(err, -EINVAL, "records: no output OTA state");
    if ((ret = normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_OTA_GET, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    return get_one(r, st, read_ota, out, "cannot read OTA state", err,
                   "records: no OTA state for %s", norm);
}

int records_board_set_target(struct records *r, const char *mac, const char *target,
                             struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = normalize_mac(mac, norm, err)) < 0)
        return ret;
    if (target && strlen(target) >= RECORDS_FIRMWARE_LEN)
        return set_err(err, -EINVAL, "records: target firmware too long");
    if ((ret = stmt_get(r, ST_BOARD_SET_TARGET, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    bind_text(st, 2, target);
    return change_one(r, st, sqlite3_step(st), "cannot set the target firmware", err,
                      "records: no board %s", norm);
}

/* ---- board notes and groups ----------------------------------------------- */

int records_board_set_notes(struct records *r, const char *mac, const char *notes,
                            struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_BOARD_SET_NOTES, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    bind_trunc(st, 2, notes, RECORDS_TEXT_LEN);
    return change_one(r, st, sqlite3_step(st), "cannot set the board's notes", err,
                      "records: no board %s", norm);
}

int records_slot_baud_limit_set(struct records *r, const char *slot_key, uint32_t baud,
                                struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!slot_key || !*slot_key)
        return set_err(err, -EINVAL, "records: slot key missing");
    if ((ret = check_text("slot key", slot_key, RECORDS_TEXT_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, baud ? ST_SLOT_BAUD_SET : ST_SLOT_BAUD_CLEAR, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, slot_key, -1, SQLITE_TRANSIENT);
    if (baud) {
        sqlite3_bind_int64(st, 2, baud);
        sqlite3_bind_int64(st, 3, records_now_ms(r));
    }
    return write_done(r, st, step_durable(r, st), "cannot store the slot's baud limit", err);
}

static void read_baud(sqlite3_stmt *st, void *out)
{
    int64_t v = col_int(st, 0, 0);
    *(uint32_t *)out = v > 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

int records_slot_baud_limit_get(struct records *r, const char *slot_key, uint32_t *baud,
                                struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    *baud = 0;
    if (!slot_key || !*slot_key)
        return set_err(err, -EINVAL, "records: slot key missing");
    if ((ret = check_text("slot key", slot_key, RECORDS_TEXT_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_SLOT_BAUD_GET, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, slot_key, -1, SQLITE_TRANSIENT);
    ret = get_one(r, st, read_baud, baud, "cannot read the slot's baud limit", err,
                  "records: no baud limit for slot %s", slot_key);
    return ret == -ENOENT ? 0 : ret;
}

/* ---- per-board data pools -------------------------------------------------- */

static int check_pool_key(const char *what, const char *s, struct records_error *err)
{
    if (!s || !*s)
        return set_err(err, -EINVAL, "records: %s missing", what);
    return check_text(what, s, RECORDS_POOL_FILE_LEN, err);
}

static void read_pool_item(sqlite3_stmt *st, void *out)
{
    struct records_pool_item *it = out;
    memset(it, 0, sizeof(*it));
    col_text(st, 0, it->pool, sizeof(it->pool));
    col_text(st, 1, it->file, sizeof(it->file));
    col_text(st, 2, it->mac, sizeof(it->mac));
    col_text(st, 3, it->md5, sizeof(it->md5));
    it->job_id = col_int(st, 4, 0);
    it->assigned_at = col_int(st, 5, 0);
}

int records_pool_item_of(struct records *r, const char *pool, const char *mac,
                         struct records_pool_item *out, struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_pool_key("pool name", pool, err)) < 0 ||
        (ret = normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_POOL_OF_MAC, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, pool, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, norm, -1, SQLITE_TRANSIENT);
    return get_one(r, st, read_pool_item, out, "cannot read the pool", err,
                   "records: %s has no file of pool %s", norm, pool);
}

int records_pool_file_used(struct records *r, const char *pool, const char *file,
                           struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_pool_key("pool name", pool, err)) < 0 ||
        (ret = check_pool_key("pool file", file, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_POOL_FILE_USED, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, pool, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, file, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    ret = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : db_err(r, err, rc, "cannot read the pool");
    stmt_done(st);
    return ret;
}

int records_pool_assign(struct records *r, const struct records_pool_item *it,
                        struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!it)
        return set_err(err, -EINVAL, "records: no pool item");
    if ((ret = check_pool_key("pool name", it->pool, err)) < 0 ||
        (ret = check_pool_key("pool file", it->file, err)) < 0 ||
        (ret = normalize_mac(it->mac, norm, err)) < 0 ||
        (ret = check_text("pool file md5", it->md5, sizeof(it->md5), err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_POOL_ASSIGN, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, it->pool, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, it->file, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, norm, -1, SQLITE_TRANSIENT);
    bind_text(st, 4, it->md5);
    bind_opt_int(st, 5, it->job_id > 0 ? it->job_id : -1);
    sqlite3_bind_int64(st, 6, records_now_ms(r));
    int rc = step_durable(r, st);
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        stmt_done(st);
        return set_err(err, -EEXIST, "records: %s of pool %s is taken, or %s already has one",
                       it->file, it->pool, norm);
    }
    return write_done(r, st, rc, "cannot record the pool file", err);
}

int records_pool_count(struct records *r, const char *pool, int64_t *used,
                       struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    *used = 0;
    if ((ret = check_pool_key("pool name", pool, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_POOL_COUNT, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, pool, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *used = sqlite3_column_int64(st, 0);
    ret = rc == SQLITE_ROW ? 0 : db_err(r, err, rc, "cannot count the pool");
    stmt_done(st);
    return ret;
}

int records_pool_items_of_board(struct records *r, const char *mac, records_pool_cb cb, void *ctx,
                                struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = normalize_mac(mac, norm, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_POOL_OF_BOARD, &st, err)) < 0)
        return ret;
    sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
    while (next_row(r, st, &rc, &n)) {
        struct records_pool_item it;
        read_pool_item(st, &it);
        if (cb && cb(&it, ctx))
            break;
    }
    return list_done(r, st, rc, n, "cannot list the board's pool files", err);
}

bool records_group_name_ok(const char *name)
{
    size_t len = name ? strnlen(name, RECORDS_GROUP_LEN) : 0;
    if (len == 0 || len >= RECORDS_GROUP_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Steps a one-shot cached write statement; SQLite rc. */
static int step_once(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    stmt_done(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int records_board_set_groups(struct records *r, const char *mac, const char *const *names, size_t n,
                             struct records_error *err)
{
    char norm[RECORDS_MAC_LEN];
    sqlite3_stmt *ex, *clear, *add;
    size_t distinct = 0;
    int rc, ret;
    ENTER(r, err);
    if ((ret = normalize_mac(mac, norm, err)) < 0)
        return ret;
    if (n && !names)
        return set_err(err, -EINVAL, "records: no group names");
    for (size_t i = 0; i < n; i++) {
        bool dup = false;
        if (!records_group_name_ok(names[i]))
            return set_err(err, -EINVAL,
                           "records: group name \"%.80s\" is not 1 to 64 of A-Z a-z 0-9 . _ -",
                           names[i] ? names[i] : "(null)");
        for (size_t k = 0; k < i && !dup; k++)
            dup = strcmp(names[k], names[i]) == 0;
        distinct += !dup;
    }
    if (distinct > RECORDS_GROUPS_MAX)
        return set_err(err, -EINVAL, "records: %zu groups, at most %d per board", distinct,
                       RECORDS_GROUPS_MAX);
    if ((ret = stmt_get(r, ST_BOARD_EXISTS, &ex, err)) < 0 ||
        (ret = stmt_get(r, ST_GROUPS_CLEAR, &clear, err)) < 0 ||
        (ret = stmt_get(r, ST_GROUP_ADD, &add, err)) < 0)
        return ret;
    sqlite3_bind_text(ex, 1, norm, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(ex);
    stmt_done(ex);
    if (rc == SQLITE_DONE)
        return set_err(err, -ENOENT, "records: no board %s", norm);
    if (rc != SQLITE_ROW)
        return db_err(r, err, rc, "cannot read board");
    rc = exec_sql(r, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK)
        return db_err(r, err, rc, "cannot set the board's groups");
    sqlite3_bind_text(clear, 1, norm, -1, SQLITE_TRANSIENT);
    rc = step_once(clear);
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        sqlite3_bind_text(add, 1, norm, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(add, 2, names[i], -1, SQLITE_TRANSIENT);
        rc = step_once(add);
    }
    if (rc == SQLITE_OK)
        rc = exec_sql(r, "COMMIT");
    if (rc != SQLITE_OK) {
        ret = db_err(r, err, rc, "cannot set the board's groups");
        exec_sql(r, "ROLLBACK");
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
    sqlite3_stmt *cr, *add;
    int rc, ret;
    int64_t now;
    ENTER(r, err);
    if (!b || (n && !boards))
        return set_err(err, -EINVAL, "records: no bulk");
    if ((ret = check_array("bulk firmware", b->firmware, sizeof(b->firmware), err)) < 0 ||
        (ret = check_array("bulk version", b->version, sizeof(b->version), err)) < 0 ||
        (ret = check_token("bulk method", b->method, sizeof(b->method), err)) < 0 ||
        (ret = check_array("bulk state", b->state, sizeof(b->state), err)) < 0 ||
        (ret = check_array("bulk user", b->user, sizeof(b->user), err)) < 0)
        return ret;
    if (!memchr(b->selection, '\0', sizeof(b->selection)) ||
        !memchr(b->reason, '\0', sizeof(b->reason)))
        return set_err(err, -EINVAL, "records: bulk text is not NUL-terminated");
    if (b->selection[0] && !json_object_text(b->selection))
        return set_err(err, -EINVAL, "records: bulk selection is not a JSON object");
    if (!b->firmware[0])
        return set_err(err, -EINVAL, "records: bulk firmware missing");
    for (size_t i = 0; i < n; i++) {
        char mac[RECORDS_MAC_LEN];
        if ((ret = check_array("bulk board MAC", boards[i].mac, sizeof(boards[i].mac), err)) < 0 ||
            (ret = normalize_mac(boards[i].mac, mac, err)) < 0)
            return ret;
        if (!memchr(boards[i].state, '\0', sizeof(boards[i].state)) ||
            !bulk_board_state_ok(boards[i].state))
            return set_err(err, -EINVAL, "records: bad bulk board state");
        if (!memchr(boards[i].error, '\0', sizeof(boards[i].error)))
            return set_err(err, -EINVAL, "records: bulk board error is not NUL-terminated");
    }
    if ((ret = stmt_get(r, ST_BULK_CREATE, &cr, err)) < 0 ||
        (ret = stmt_get(r, ST_BULK_BOARD_ADD, &add, err)) < 0)
        return ret;
    now = records_now_ms(r);
    rc = run_stmt(r, ST_SYNC_FULL);
    if (rc == SQLITE_OK)
        rc = exec_sql(r, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK) {
        ret = db_err(r, err, rc, "cannot record the bulk update");
        run_stmt(r, ST_SYNC_NORMAL);
        return ret;
    }
    bind_text(cr, 1, b->firmware);
    bind_text(cr, 2, b->version);
    bind_text(cr, 3, b->method);
    bind_text(cr, 4, b->selection);
    sqlite3_bind_int(cr, 5, b->port);
    sqlite3_bind_int(cr, 6, b->concurrency);
    sqlite3_bind_int(cr, 7, b->retries);
    sqlite3_bind_int(cr, 8, b->timeout_s);
    sqlite3_bind_double(cr, 9, b->max_failure_rate);
    sqlite3_bind_int(cr, 10, b->password_given ? 1 : 0);
    bind_text(cr, 11, b->state[0] ? b->state : "running");
    bind_trunc(cr, 12, b->reason, RECORDS_TEXT_LEN);
    sqlite3_bind_int64(cr, 13, now);
    bind_text(cr, 14, b->user);
    sqlite3_bind_int(cr, 15, b->filesystem ? 1 : 0);
    rc = step_once(cr);
    int64_t id = sqlite3_last_insert_rowid(r->db);
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        char mac[RECORDS_MAC_LEN];
        normalize_mac(boards[i].mac, mac, NULL);
        sqlite3_bind_int64(add, 1, id);
        sqlite3_bind_int64(add, 2, (int64_t)i);
        sqlite3_bind_text(add, 3, mac, -1, SQLITE_TRANSIENT);
        bind_text(add, 4, boards[i].state);
        sqlite3_bind_int(add, 5, boards[i].attempts);
        bind_opt_int(add, 6, boards[i].job_id > 0 ? boards[i].job_id : -1);
        bind_trunc(add, 7, boards[i].error, RECORDS_TEXT_LEN);
        rc = step_once(add);
    }
    if (rc == SQLITE_OK)
        rc = exec_sql(r, "COMMIT");
    if (rc != SQLITE_OK) {
        ret = db_err(r, err, rc, "cannot record the bulk update");
        exec_sql(r, "ROLLBACK");
        run_stmt(r, ST_SYNC_NORMAL);
        return ret;
    }
    run_stmt(r, ST_SYNC_NORMAL);
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
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if ((ret = check_token("bulk state", state, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_BULK_SET_STATE, &st, err)) < 0)
        return ret;
    bool final = bulk_state_final(state);
    sqlite3_bind_int64(st, 1, id);
    bind_text(st, 2, state);
    bind_trunc(st, 3, reason, RECORDS_TEXT_LEN);
    if (final)
        sqlite3_bind_int64(st, 4, records_now_ms(r));
    else
        sqlite3_bind_null(st, 4);
    return change_one(r, st, final ? step_durable(r, st) : sqlite3_step(st),
                      "cannot record the bulk state", err, "records: no bulk %lld", (long long)id);
}

int records_bulk_board_put(struct records *r, int64_t bulk_id, const struct records_bulk_board *bb,
                           struct records_error *err)
{
    char mac[RECORDS_MAC_LEN];
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!bb)
        return set_err(err, -EINVAL, "records: no bulk board");
    if ((ret = check_array("bulk board MAC", bb->mac, sizeof(bb->mac), err)) < 0 ||
        (ret = normalize_mac(bb->mac, mac, err)) < 0)
        return ret;
    if (!memchr(bb->state, '\0', sizeof(bb->state)) || !bulk_board_state_ok(bb->state) ||
        !memchr(bb->error, '\0', sizeof(bb->error)))
        return set_err(err, -EINVAL, "records: bad bulk board state");
    if ((ret = stmt_get(r, ST_BULK_BOARD_PUT, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, bulk_id);
    sqlite3_bind_text(st, 2, mac, -1, SQLITE_TRANSIENT);
    bind_text(st, 3, bb->state);
    sqlite3_bind_int(st, 4, bb->attempts);
    bind_opt_int(st, 5, bb->job_id > 0 ? bb->job_id : -1);
    bind_trunc(st, 6, bb->error, RECORDS_TEXT_LEN);
    return change_one(r, st, sqlite3_step(st), "cannot record the bulk board", err,
                      "records: no board %s in bulk %lld", mac, (long long)bulk_id);
}

static void read_bulk(sqlite3_stmt *st, void *out)
{
    struct records_bulk *b = out;
    memset(b, 0, sizeof(*b));
    b->id = col_int(st, 0, 0);
    col_text(st, 1, b->firmware, sizeof(b->firmware));
    col_text(st, 2, b->version, sizeof(b->version));
    col_text(st, 3, b->method, sizeof(b->method));
    col_text(st, 4, b->selection, sizeof(b->selection));
    b->port = (int)col_int(st, 5, 0);
    b->concurrency = (int)col_int(st, 6, 0);
    b->retries = (int)col_int(st, 7, 0);
    b->timeout_s = (int)col_int(st, 8, 0);
    b->max_failure_rate = col_real(st, 9, 0);
    b->password_given = col_int(st, 10, 0) != 0;
    col_text(st, 11, b->state, sizeof(b->state));
    col_text(st, 12, b->reason, sizeof(b->reason));
    b->created_at = col_int(st, 13, 0);
    b->ended_at = col_int(st, 14, 0);
    col_text(st, 15, b->user, sizeof(b->user));
    b->filesystem = col_int(st, 16, 0) != 0;
    b->total = col_int(st, 17, 0);
    b->pending = col_int(st, 18, 0);
    b->running = col_int(st, 19, 0);
    b->passed = col_int(st, 20, 0);
    b->failed = col_int(st, 21, 0);
    b->skipped = col_int(st, 22, 0);
}

int records_bulk_get(struct records *r, int64_t id, struct records_bulk *out,
                     struct records_error *err)
{
    sqlite3_stmt *st;
    int ret;
    ENTER(r, err);
    if (!out)
        return set_err(err, -EINVAL, "records: no output bulk");
    if ((ret = stmt_get(r, ST_BULK_GET, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    return get_one(r, st, read_bulk, out, "cannot read the bulk update", err,
                   "records: no bulk %lld", (long long)id);
}

int records_bulk_boards(struct records *r, int64_t id, records_bulk_board_cb cb, void *ctx,
                        struct records_error *err)
{
    struct records_bulk b;
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    if ((ret = records_bulk_get(r, id, &b, err)) < 0)
        return ret;
    if ((ret = stmt_get(r, ST_BULK_BOARDS, &st, err)) < 0)
        return ret;
    sqlite3_bind_int64(st, 1, id);
    while (next_row(r, st, &rc, &n)) {
        struct records_bulk_board *bb = &r->row.bulk_board;
        memset(bb, 0, sizeof(*bb));
        col_text(st, 0, bb->mac, sizeof(bb->mac));
        col_text(st, 1, bb->state, sizeof(bb->state));
        bb->attempts = (int)col_int(st, 2, 0);
        bb->job_id = col_int(st, 3, 0);
        col_text(st, 4, bb->error, sizeof(bb->error));
        if (cb && cb(bb, ctx))
            break;
    }
    return list_done(r, st, rc, n, "cannot list bulk boards", err);
}

int records_bulk_list(struct records *r, const char *state, int limit, records_bulk_cb cb,
                      void *ctx, struct records_error *err)
{
    sqlite3_stmt *st;
    int rc, ret, n = 0;
    ENTER(r, err);
    if ((ret = stmt_get(r, ST_BULK_LIST, &st, err)) < 0)
        return ret;
    bind_text(st, 1, state);
    sqlite3_bind_int64(st, 2, limit > 0 ? limit : -1);
    while (next_row(r, st, &rc, &n)) {
        read_bulk(st, &r->row.bulk);
        if (cb && cb(&r->row.bulk, ctx))
            break;
    }
    return list_done(r, st, rc, n, "cannot list bulks", err);
}
