/*
 * records_sqlite: the embedded backend of the records store (records_db.h),
 * SQLite in WAL mode in one file under the data directory, and its schema.
 *
 * Invariants:
 *  - One connection per store, used by one thread (opened NOMUTEX). An
 *    advisory lock file "<db>.lock" (flock) is held while open, so a second
 *    daemon on the same data directory is refused instead of "recovering" the
 *    jobs the first one is running.
 *  - The file is ours only if PRAGMA application_id says so (or it is empty);
 *    anything else is refused and never written to.
 *  - Schema versions are PRAGMA user_version, set in the migration's own
 *    IMMEDIATE transaction (records.c), with application_id.
 *  - Events are append-only: triggers RAISE on UPDATE and DELETE, ids come
 *    from AUTOINCREMENT and never go back (SSE Last-Event-ID).
 *
 * Durability: the connection runs WAL with synchronous=NORMAL. In WAL mode a
 * commit appends frames to the -wal file; NORMAL skips the fsync at commit and
 * syncs at checkpoints. A committed transaction therefore survives the process
 * dying (kill -9, crash: the frames are in the OS page cache and SQLite's
 * recovery replays them), and the database can never be corrupted by a power
 * loss — the most such a loss costs is the last few commits. That is fine for
 * progress updates and log lines, which are frequent and re-derivable, but not
 * for a job's final result or an event the stream already announced. For
 * those, records.c calls set_durable(true): the connection switches to
 * synchronous=FULL for their commit, which fsyncs the WAL — and with it every
 * earlier NORMAL commit, because the WAL is one sequential file — and then
 * back.
 */
#include "records_db.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sqlite3.h>

/* "ESPR": PRAGMA application_id of a records database. */
#define RECORDS_APP_ID 0x45535052
#define RECORDS_BUSY_TIMEOUT_MS 5000

/* migrations[i] takes user_version i to i + 1. Append, never edit (and add the
 * same step to rdb_pg_migrations in records_pg.c). */
const char *const rdb_sqlite_migrations[] = {
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
    /* 7: a line of stations sharing one database (in practice PostgreSQL; the
     * same schema here): the station that ran each job and wrote each event;
     * the stations' heartbeats and status (the line view); serial numbers
     * allocated per profile, one per board; content-addressed firmware files
     * (SHA-256) and which stations hold them; the station that owns a bulk
     * update and until when its lease runs. */
    "ALTER TABLE jobs ADD COLUMN station TEXT;"
    "ALTER TABLE events ADD COLUMN station TEXT;"
    "CREATE INDEX jobs_station ON jobs (station, state);"
    "CREATE TABLE stations ("
    "  name TEXT PRIMARY KEY NOT NULL CHECK (length(name) BETWEEN 1 AND 63),"
    "  address TEXT, version TEXT, started_at INTEGER,"
    "  heartbeat_at INTEGER NOT NULL, status TEXT) WITHOUT ROWID;"
    "CREATE TABLE serials ("
    "  profile TEXT NOT NULL, number INTEGER NOT NULL CHECK (number >= 0),"
    "  text TEXT NOT NULL, mac TEXT NOT NULL CHECK (length(mac) = 17),"
    "  job_id INTEGER, station TEXT, assigned_at INTEGER NOT NULL,"
    "  PRIMARY KEY (profile, number)) WITHOUT ROWID;"
    "CREATE UNIQUE INDEX serials_mac ON serials (profile, mac);"
    "CREATE INDEX serials_board ON serials (mac);"
    "CREATE TABLE blobs ("
    "  sha256 TEXT NOT NULL CHECK (length(sha256) = 64), size INTEGER NOT NULL,"
    "  station TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (sha256, station)) WITHOUT ROWID;"
    "ALTER TABLE bulks ADD COLUMN owner TEXT;"
    "ALTER TABLE bulks ADD COLUMN lease_until INTEGER;",
    /* 8: the write-behind journal (records_journal.c): a job log line or event
     * written during a database outage carries a key unique across the line
     * ("<station>/<start ms>/<n>"), so writing it again when the journal is
     * replayed (after a crash mid-replay) adds nothing. NULL for rows written
     * without a journal (SQLite, tools). */
    "ALTER TABLE job_log ADD COLUMN jkey TEXT;"
    "ALTER TABLE events ADD COLUMN jkey TEXT;"
    "CREATE UNIQUE INDEX job_log_jkey ON job_log (jkey);"
    "CREATE UNIQUE INDEX events_jkey ON events (jkey);",
    /* 9: a re-flash of only what changed (profile diff): the bytes of a job's
     * image already on the board and not sent; NULL when not known (not a flash
     * job, one that never reached the write, or recorded before this schema). */
    "ALTER TABLE jobs ADD COLUMN skipped_bytes INTEGER;",
};

const int rdb_migrations_count =
    (int)(sizeof(rdb_sqlite_migrations) / sizeof(rdb_sqlite_migrations[0]));

struct sdb {
    struct rdb base;
    sqlite3 *db;
    int lock_fd;
    sqlite3_stmt *sync_full, *sync_normal;
    char msg[512];
};

struct sstmt {
    struct rdb_stmt base;
    sqlite3_stmt *st;
};

#define SDB(d) ((struct sdb *)(d))
#define SST(s) (((struct sstmt *)(s))->st)

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
static void why(sqlite3 *db, int rc, char *buf, size_t n)
{
    int prim = rc & 0xff;
    int e = db ? sqlite3_system_errno(db) : 0;
    if ((prim == SQLITE_CANTOPEN || prim == SQLITE_IOERR || prim == SQLITE_READONLY) && e > 0) {
        snprintf(buf, n, "%s", strerror(e));
        if (buf[0] >= 'A' && buf[0] <= 'Z')
            buf[0] = (char)(buf[0] - 'A' + 'a');
    } else if (prim == SQLITE_NOTADB) {
        snprintf(buf, n, "not a records database (%s)", db ? sqlite3_errmsg(db) : "not sqlite");
    } else if (prim == SQLITE_CORRUPT) {
        snprintf(buf, n,
                 "records database damaged (%s): move it aside and restore a backup; "
                 "espstationd starts a new one when the file is absent",
                 db ? sqlite3_errmsg(db) : "malformed");
    } else {
        snprintf(buf, n, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    }
}

/* A failed rc: remembers why, returns -errno (never 0). */
static int fail(struct sdb *d, int rc)
{
    int code = map_rc(d->db, rc);
    why(d->db, rc, d->msg, sizeof(d->msg));
    return code ? code : -EIO;
}

static int s_prepare(struct rdb *db, const char *sql, struct rdb_stmt **out)
{
    struct sstmt *s = calloc(1, sizeof(*s));
    int rc;
    *out = NULL;
    if (!s) {
        snprintf(SDB(db)->msg, sizeof(SDB(db)->msg), "out of memory");
        return -ENOMEM;
    }
    rc = sqlite3_prepare_v3(SDB(db)->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st, NULL);
    if (rc != SQLITE_OK) {
        free(s);
        return fail(SDB(db), rc);
    }
    s->base.db = db;
    *out = &s->base;
    return 0;
}

static void s_finalize(struct rdb_stmt *st)
{
    if (!st)
        return;
    sqlite3_finalize(SST(st));
    free(st);
}

static void s_reset(struct rdb_stmt *st)
{
    sqlite3_reset(SST(st));
    sqlite3_clear_bindings(SST(st));
}

static void s_bind_null(struct rdb_stmt *st, int idx)
{
    sqlite3_bind_null(SST(st), idx);
}

static void s_bind_int64(struct rdb_stmt *st, int idx, int64_t v)
{
    sqlite3_bind_int64(SST(st), idx, v);
}

static void s_bind_double(struct rdb_stmt *st, int idx, double v)
{
    sqlite3_bind_double(SST(st), idx, v);
}

static void s_bind_text(struct rdb_stmt *st, int idx, const char *s)
{
    sqlite3_bind_text(SST(st), idx, s, -1, SQLITE_TRANSIENT);
}

static int s_step(struct rdb_stmt *st)
{
    int rc = sqlite3_step(SST(st));
    if (rc == SQLITE_ROW)
        return RDB_ROW;
    if (rc == SQLITE_DONE)
        return RDB_DONE;
    return fail(SDB(st->db), rc);
}

static bool s_column_null(struct rdb_stmt *st, int i)
{
    return sqlite3_column_type(SST(st), i) == SQLITE_NULL;
}

static int64_t s_column_int64(struct rdb_stmt *st, int i)
{
    return sqlite3_column_int64(SST(st), i);
}

static double s_column_double(struct rdb_stmt *st, int i)
{
    return sqlite3_column_double(SST(st), i);
}

static const char *s_column_text(struct rdb_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(SST(st), i);
}

static int64_t s_changes(struct rdb *db)
{
    return sqlite3_changes(SDB(db)->db);
}

static int s_exec(struct rdb *db, const char *sql)
{
    int rc = sqlite3_exec(SDB(db)->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : fail(SDB(db), rc);
}

static int s_begin(struct rdb *db)
{
    return s_exec(db, "BEGIN IMMEDIATE");
}

static int s_commit(struct rdb *db)
{
    return s_exec(db, "COMMIT");
}

static void s_rollback(struct rdb *db)
{
    sqlite3_exec(SDB(db)->db, "ROLLBACK", NULL, NULL, NULL);
}

static int run_cached(struct sdb *d, sqlite3_stmt **st, const char *sql)
{
    int rc = SQLITE_OK;
    if (!*st)
        rc = sqlite3_prepare_v3(d->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(*st)) == SQLITE_ROW)
            ;
        sqlite3_reset(*st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    return rc == SQLITE_OK ? 0 : fail(d, rc);
}

static int s_set_durable(struct rdb *db, bool durable)
{
    struct sdb *d = SDB(db);
    return durable ? run_cached(d, &d->sync_full, "PRAGMA synchronous = FULL")
                   : run_cached(d, &d->sync_normal, "PRAGMA synchronous = NORMAL");
}

/* Runs a one-row integer query. */
static int query_int(struct sdb *d, const char *sql, int64_t *v)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(d->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *v = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : fail(d, rc);
}

static int s_get_version(struct rdb *db, int64_t *version)
{
    return query_int(SDB(db), "PRAGMA user_version", version);
}

static int s_set_version(struct rdb *db, int version)
{
    char sql[96];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d; PRAGMA application_id = %d;", version,
             RECORDS_APP_ID);
    return s_exec(db, sql);
}

static int s_integrity_check(struct rdb *db)
{
    struct sdb *d = SDB(db);
    sqlite3_stmt *st = NULL;
    int rc, ret = 0;
    rc = sqlite3_prepare_v2(d->db, "PRAGMA integrity_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *res = (const char *)sqlite3_column_text(st, 0);
        if (!res || strcmp(res, "ok") != 0) {
            snprintf(d->msg, sizeof(d->msg), "%s", res ? res : "(no result)");
            for (char *p = d->msg; *p; p++)
                if (*p == '\n' || *p == '\r')
                    *p = ' '; /* one log line */
            ret = -EBADMSG;
        }
    } else {
        ret = fail(d, rc);
    }
    sqlite3_finalize(st);
    return ret;
}

static const char *s_errmsg(struct rdb *db)
{
    return SDB(db)->msg;
}

static void s_close(struct rdb *db)
{
    struct sdb *d = SDB(db);
    if (!d)
        return;
    sqlite3_finalize(d->sync_full);
    sqlite3_finalize(d->sync_normal);
    if (d->db)
        sqlite3_close(d->db);
    if (d->lock_fd >= 0)
        close(d->lock_fd); /* after the database: the next opener finds it closed */
    free(d);
}

static const struct rdb_ops sqlite_ops = {
    .name = "sqlite",
    .dialect = RDB_SQLITE,
    .prepare = s_prepare,
    .finalize = s_finalize,
    .reset = s_reset,
    .bind_null = s_bind_null,
    .bind_int64 = s_bind_int64,
    .bind_double = s_bind_double,
    .bind_text = s_bind_text,
    .step = s_step,
    .column_null = s_column_null,
    .column_int64 = s_column_int64,
    .column_double = s_column_double,
    .column_text = s_column_text,
    .changes = s_changes,
    .exec = s_exec,
    .begin = s_begin,
    .commit = s_commit,
    .rollback = s_rollback,
    .set_durable = s_set_durable,
    .get_version = s_get_version,
    .set_version = s_set_version,
    .integrity_check = s_integrity_check,
    .errmsg = s_errmsg,
    .close = s_close,
};

/* ---- open ----------------------------------------------------------------- */

static int lower_strerror(int e, char *buf, size_t n)
{
    snprintf(buf, n, "%s", strerror(e));
    if (buf[0] >= 'A' && buf[0] <= 'Z')
        buf[0] = (char)(buf[0] - 'A' + 'a');
    return -e;
}

static int take_lock(struct sdb *d, const char *path, char *msg, size_t n)
{
    size_t len = strlen(path) + sizeof(".lock");
    char *lock = malloc(len), why_buf[128];
    if (!lock) {
        snprintf(msg, n, "records: out of memory");
        return -ENOMEM;
    }
    snprintf(lock, len, "%s.lock", path);
    d->lock_fd = open(lock, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    free(lock);
    if (d->lock_fd < 0) {
        int ret = lower_strerror(errno, why_buf, sizeof(why_buf));
        snprintf(msg, n, "records: cannot open %s: %s", path, why_buf);
        return ret;
    }
    if (flock(d->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            snprintf(msg, n,
                     "records: %s is in use by another process (is espstationd already "
                     "running on this data directory?)",
                     path);
            return -EBUSY;
        }
        snprintf(msg, n, "records: cannot lock %s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

static int open_fail(struct sdb *d, int code, const char *path, char *msg, size_t n)
{
    snprintf(msg, n, "records: cannot open %s: %s", path, d->msg);
    return code;
}

/* Decides whether the file is ours, new, or foreign. */
static int check_identity(struct sdb *d, const char *path, int latest, char *msg, size_t n)
{
    int64_t tables, app, version;
    int ret;
    if ((ret = query_int(d, "SELECT count(*) FROM sqlite_master", &tables)) < 0 ||
        (ret = query_int(d, "PRAGMA application_id", &app)) < 0 ||
        (ret = query_int(d, "PRAGMA user_version", &version)) < 0)
        return open_fail(d, ret, path, msg, n);
    if (app != RECORDS_APP_ID && !(app == 0 && version == 0 && tables == 0)) {
        snprintf(msg, n,
                 "records: %s is not a records database (an SQLite file of another "
                 "application: application_id 0x%08llx, %lld schema objects); "
                 "refusing to touch it",
                 path, (unsigned long long)(uint32_t)app, (long long)tables);
        return -EBADMSG;
    }
    if (version > latest) {
        snprintf(msg, n,
                 "records: %s has schema version %lld, newer than this espstationd "
                 "supports (%d): upgrade espstationd",
                 path, (long long)version, latest);
        return -ENOTSUP;
    }
    return 0;
}

int rdb_sqlite_open(const char *path, int latest, struct rdb **out, char *msg, size_t msg_size)
{
    struct sdb *d = calloc(1, sizeof(*d));
    char mode[16] = "";
    int rc, ret;

    *out = NULL;
    if (!d) {
        snprintf(msg, msg_size, "records: out of memory");
        return -ENOMEM;
    }
    d->base.ops = &sqlite_ops;
    d->lock_fd = -1;
    ret = take_lock(d, path, msg, msg_size);
    if (ret < 0)
        goto fail;
    rc = sqlite3_open_v2(path, &d->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                             SQLITE_OPEN_NOFOLLOW,
                         NULL);
    if (rc != SQLITE_OK) {
        ret = open_fail(d, fail(d, rc), path, msg, msg_size);
        goto fail;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, RECORDS_BUSY_TIMEOUT_MS);
    /* A damaged or hostile file must not be able to do more than fail: no
     * writable_schema tricks, no non-innocuous functions in its schema. */
    sqlite3_db_config(d->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
    sqlite3_db_config(d->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
    if (sqlite3_db_readonly(d->db, "main") == 1) {
        snprintf(msg, msg_size, "records: cannot open %s: permission denied (read-only)", path);
        ret = -EACCES;
        goto fail;
    }
    ret = check_identity(d, path, latest, msg, msg_size);
    if (ret < 0)
        goto fail;
    {
        sqlite3_stmt *st = NULL;
        rc = sqlite3_prepare_v2(d->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) {
            ret = open_fail(d, fail(d, rc), path, msg, msg_size);
            goto fail;
        }
        if (strcmp(mode, "wal") != 0) {
            snprintf(msg, msg_size,
                     "records: cannot open %s: WAL journal not available (got \"%s\"; "
                     "is the data directory on a network filesystem?)",
                     path, mode);
            ret = -ENOTSUP;
            goto fail;
        }
    }
    ret = s_exec(&d->base, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
                           "PRAGMA journal_size_limit = " /* bytes kept after a checkpoint */
                           "16777216;");
    if (ret < 0) {
        ret = open_fail(d, ret, path, msg, msg_size);
        goto fail;
    }
    *out = &d->base;
    return 0;
fail:
    s_close(&d->base);
    return ret;
}
