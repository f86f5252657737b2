/*
 * records_journal: the write-behind journal of a store on PostgreSQL. A station
 * of a line keeps flashing when its database goes away (restarted, or behind a
 * network partition): the writes of a job (begin, board, firmware, progress,
 * log lines, result), events and board upserts that cannot reach the database
 * are appended to a local file (records_journal.h: the format) and written in
 * order when it answers again. Nothing is lost and nothing is written twice.
 *
 * Invariants:
 *  - Order: while the journal holds entries not yet written (pending), every
 *    journaled kind of write goes to the journal too, so the database sees the
 *    writes in the order they were made. Other writes (pool files, serials,
 *    OTA state, bulks, notes) are not journaled: while the database is
 *    unreachable they fail at once with "records database unreachable", and a
 *    job that needs them fails with that message (they must not be guessed).
 *  - Idempotent replay: an entry may reach the database twice (a write whose
 *    answer was lost; a crash during replay replays the file again). Job ids
 *    are chosen before the insert (nextval of jobs' sequence, or a block the
 *    station reserved while connected) and inserted ON CONFLICT DO NOTHING; log
 *    lines and events carry a key unique in the line (schema 8: jkey) and are
 *    inserted ON CONFLICT DO NOTHING; progress, results and board upserts are
 *    updates that land on the same state twice (a result already recorded is
 *    not recorded again). During replay the store's clock gives each entry's
 *    own time, so last_seen, started_at, ended_at and seconds are as they were.
 *  - Durability: entries of records_job_finish and records_event_append are
 *    fsync'd before the call returns (the API promises them durable); the
 *    others are written (survive kill -9) and synced with the next fsync.
 *  - Bounded: no call waits on the network (records_pg.c: non-blocking
 *    reconnect, every answer awaited at most RJ_ANSWER_MS); replay runs from
 *    records_tick() for at most RJ_TICK_BUDGET_MS at a time (records_tick_budget:
 *    longer, as its caller allows, while more than RJ_LONG_PENDING entries wait).
 *  - Atomic batches: replay commits up to RJ_BATCH entries (or what one tick's
 *    budget wrote) in one transaction, and counts them written only once the
 *    commit answered; a batch the database lost midway is rolled back whole
 *    and written again later (see "replay" below).
 *  - At open the whole journal is written before the crash recovery runs (so a
 *    job whose result is in the journal is not marked interrupted); a journal
 *    that cannot be written then fails the open.
 *  - Offline start: a store whose database is unreachable at open starts when
 *    its state file (records_journal.h; journal path + ".state") shows this data
 *    directory worked with that database as this station: every journaled
 *    write goes to the journal, job ids come from the ids the state file kept
 *    (minus those the journal already used), and the connection, once made, is
 *    held from the store's callers (rdb_pg_hold) while records_tick finishes
 *    the open in the order the online open has: the database's identity
 *    checked, migrations, the journal written, then crash recovery of the jobs
 *    an earlier process left unfinished (this process's own jobs, all begun
 *    with reserved ids while offline, are spared).
 *  - The state file is written (fsync'd, renamed) whenever the reserved ids
 *    change while connected and before an emptied journal is cut back, so an
 *    id the journal used is never handed out again after a restart.
 */

#include "records_journal.h"
#include "records_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RJ_ANSWER_MS 5000 /* longest wait for the database's answer */
/* Job ids reserved ahead for an outage: a 16-slot station starting a job every ~20 s per
 * slot begins ~50 jobs a minute, so 4096 carry it through more than an hour cut off (64
 * lasted about a minute). Unused ones are a gap in the ids after a restart. */
#define RJ_IDS 4096
#define RJ_TICK_BUDGET_MS 50 /* replay time per records_tick() */
/* A journal more than this many entries behind may take the longer budget its caller
 * allows (records_tick_budget): a 16-slot station journals ~34 entries a job, so 1000 is
 * about 30 jobs, more than 2 s of catch-up at 50 ms a tick. */
#define RJ_LONG_PENDING 1000
/* Consecutive job_log rows of a replay batch sent as one INSERT: up to this many (a
 * power of two: a group of n rows goes as INSERTs of 64, 32, ..., 1 rows, so at most
 * 6 more statements are prepared; 64 rows of 5 parameters, ~40 KB at most). */
#define RJ_LOG_ROWS 64
#define RJ_LOG_SIZES 7 /* 1, 2, 4, ... RJ_LOG_ROWS */
/* Entries per replay transaction: one commit (a WAL flush on the server) per batch instead of
 * one per entry; 200 entries take ~20-60 ms, about one tick's budget. */
#define RJ_BATCH 200
#define RJ_CHUNK (256 * 1024) /* bytes of the file read at a time */
#define RJ_PROGRESS_MS 1000   /* a job's byte counts journaled at most this often */
#define RJ_PROGRESS_JOBS 64

/* Entry kinds (op letters). */
enum {
    OP_BEGIN = 'B',    /* id kind mac slot firmware queued stage */
    OP_BOARD = 'S',    /* id mac */
    OP_FIRMWARE = 'W', /* id firmware */
    OP_PROGRESS = 'P', /* id stage bytes wire */
    OP_LOG = 'L',      /* id level line jkey */
    OP_FINISH = 'F',   /* id + result fields */
    OP_EVENT = 'E',    /* kind mac slot job_id data jkey */
    OP_UPSERT = 'U',   /* board fields */
};

struct rec_journal {
    char *path;
    int fd;
    off_t size;      /* bytes in the file */
    off_t applied;   /* of which written to the database */
    int64_t pending; /* entries not yet written */
    int64_t seq;     /* last entry's number */
    char key_prefix[RECORDS_STATION_LEN + 24];
    int64_t key_n;
    int64_t ids[RJ_IDS];
    int n_ids;
    struct {
        int64_t job, ts;
    } progress[RJ_PROGRESS_JOBS];
    int64_t replay_ts; /* the clock during replay */
    struct records_journal_status stat;
    char *state_path;
    char identity[RJ_STATE_TEXT]; /* the database's (rdb_pg_identity) */
    bool offline;                 /* opened offline; the open not finished yet */
    char *log_sql[RJ_LOG_SIZES];  /* job_log INSERTs of 2^i rows (made when first needed) */
    int64_t own[RJ_IDS];          /* job ids this process began while offline */
    int n_own;
};

/* ---- helpers -------------------------------------------------------------------------- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool reachable(struct records *r)
{
    return rdb_pg_connected(r->db);
}

/* Whether a write goes to the journal rather than the database now. */
static bool queueing(struct records *r)
{
    return r->jr->pending > 0 || !reachable(r);
}

/* -EIO with the connection gone: the write may or may not have landed. */
static bool lost(struct records *r, int rc)
{
    return (rc == -EIO || rc == -EBUSY) && !reachable(r);
}

static const char *num(char *buf, int64_t v)
{
    sprintf(buf, "%" PRId64, v);
    return buf;
}

static int64_t field_int(const struct rj_entry *e, int i, int64_t dflt)
{
    return i < e->nf && e->f[i] ? strtoll(e->f[i], NULL, 10) : dflt;
}

static const char *field(const struct rj_entry *e, int i)
{
    return i < e->nf ? e->f[i] : NULL;
}

static void next_key(struct rec_journal *jr, char *out, size_t n)
{
    snprintf(out, n, "%s/%" PRId64, jr->key_prefix, ++jr->key_n);
}

/* Appends an entry (fsync'd when sync). */
static int append(struct records *r, char op, const char *const *f, int nf, bool sync,
                  struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    struct rj_entry e = {.op = op, .seq = jr->seq + 1, .ts = records_now_ms(r), .nf = nf};
    size_t len, off = 0;
    char *line;
    for (int i = 0; i < nf; i++)
        e.f[i] = f[i];
    if (!(line = rj_encode(&e, &len)))
        return rec_set_err(err, -ENOMEM, "records: out of memory");
    while (off < len) {
        ssize_t w = write(jr->fd, line + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int code = -errno;
            free(line);
            /* a partial line is cut off again: the file stays whole */
            if (ftruncate(jr->fd, jr->size) < 0) {
            }
            return rec_set_err(err, code,
                               "records database unreachable and the journal %s cannot be "
                               "written: %s",
                               jr->path, strerror(-code));
        }
        off += (size_t)w;
    }
    free(line);
    if (sync && fdatasync(jr->fd) < 0)
        return rec_set_err(err, -errno, "records: cannot sync the journal %s: %s", jr->path,
                           strerror(errno));
    jr->size += (off_t)len;
    jr->seq++;
    jr->pending++;
    jr->stat.journaled++;
    rec_clear_err(err);
    return 0;
}

/* ---- job ids ---------------------------------------------------------------------------- */

static const char SQL_NEXT_IDS[] =
    "SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, ?1)";

/* n ids from the database into out; how many, or < 0. */
static int fetch_ids(struct records *r, int n, int64_t *out, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc, got = 0;
    if ((rc = rec_prep(r, SQL_NEXT_IDS, NULL, &st, err)) < 0)
        return rc;
    rdb_bind_int64(st, 1, n);
    while ((rc = rdb_step(st)) == RDB_ROW && got < n)
        out[got++] = rdb_column_int64(st, 0);
    rec_stmt_done(st);
    if (rc < 0)
        return rec_db_err(r, err, rc, "cannot reserve job ids");
    return got;
}

/* The state file as of now (connected: identity and schema known). */
static int write_state(struct records *r, struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    struct rj_state st = {.schema = r->schema_version, .ids = jr->ids, .n_ids = jr->n_ids};
    char msg[PATH_MAX + 128];
    int ret;
    snprintf(st.station, sizeof(st.station), "%s", r->station);
    snprintf(st.dsn, sizeof(st.dsn), "%s", r->path);
    snprintf(st.identity, sizeof(st.identity), "%s", jr->identity);
    if ((ret = rj_state_write(jr->state_path, &st, msg, sizeof(msg))) < 0) {
        snprintf(jr->stat.last_error, sizeof(jr->stat.last_error), "journal state: %s", msg);
        return rec_set_err(err, ret, "records: %s", msg);
    }
    return 0;
}

static void refill_ids(struct records *r)
{
    struct rec_journal *jr = r->jr;
    int n;
    if (jr->n_ids >= RJ_IDS / 2 || !reachable(r))
        return;
    n = fetch_ids(r, RJ_IDS - jr->n_ids, jr->ids + jr->n_ids, NULL);
    if (n > 0) {
        jr->n_ids += n;
        write_state(r, NULL); /* a failure leaves last_error: the ids still serve this run */
    }
    jr->stat.reserved_ids = jr->n_ids;
}

/* ---- direct writes (connected) ------------------------------------------------------------ */

static const char SQL_JOB_BEGIN[] =
    "INSERT INTO jobs (id, kind, board_mac, slot, firmware, state, stage, started_at, station) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING";
static const char SQL_JOB_LOG[] = "INSERT INTO job_log (job_id, ts, level, line, jkey) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (jkey) DO NOTHING";
static const char SQL_EVENT[] =
    "INSERT INTO events (ts, kind, board_mac, slot, job_id, data, station, jkey) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (jkey) DO NOTHING RETURNING id";

static int db_job_begin(struct records *r, int64_t id, const char *const *f,
                        struct records_error *err)
{
    struct rdb_stmt *st;
    int rc;
    if ((rc = rec_prep(r, SQL_JOB_BEGIN, NULL, &st, err)) < 0)
        return rc;
    rdb_bind_int64(st, 1, id);
    for (int i = 0; i < 6; i++)
        rec_bind_text(st, 2 + i,
                      i == 4 ? (f[4] && strcmp(f[4], "1") == 0 ? "queued" : "running") : f[i]);
    rdb_bind_int64(st, 8, records_now_ms(r));
    rec_bind_text(st, 9, r->station);
    rc = rdb_step(st);
    rec_stmt_done(st);
    if (rc == -ENOENT)
        return rec_set_err(err, -ENOENT, "records: no board %s: record the board before its job",
                           f[1] ? f[1] : "");
    return rc < 0 ? rec_db_err(r, err, rc, "cannot record job start") : 0;
}

static int db_job_log(struct records *r, int64_t id, const char *level, const char *line,
                      const char *key, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc;
    if ((rc = rec_prep(r, SQL_JOB_LOG, NULL, &st, err)) < 0)
        return rc;
    rdb_bind_int64(st, 1, id);
    rdb_bind_int64(st, 2, records_now_ms(r));
    rec_bind_text(st, 3, level);
    rdb_bind_text(st, 4, line ? line : "");
    rec_bind_text(st, 5, key);
    rc = rdb_step(st);
    rec_stmt_done(st);
    if (rc == -ENOENT)
        return rec_set_err(err, -ENOENT, "records: no job %lld", (long long)id);
    return rc < 0 ? rec_db_err(r, err, rc, "cannot append job log line") : 0;
}

static int db_event(struct records *r, const char *const *f, int64_t *id, struct records_error *err)
{
    struct rdb_stmt *st;
    int rc;
    int64_t job = f[3] ? strtoll(f[3], NULL, 10) : 0;
    if ((rc = rec_prep(r, SQL_EVENT, NULL, &st, err)) < 0)
        return rc;
    rdb_bind_int64(st, 1, records_now_ms(r));
    rec_bind_text(st, 2, f[0]);
    rec_bind_text(st, 3, f[1]);
    rec_bind_text(st, 4, f[2]);
    rec_bind_opt_int(st, 5, job > 0 ? job : -1);
    rec_bind_text(st, 6, f[4]);
    rec_bind_text(st, 7, r->station);
    rec_bind_text(st, 8, f[5]);
    rc = rdb_step(st);
    if (rc == RDB_ROW) {
        if (id)
            *id = rdb_column_int64(st, 0);
        rc = rdb_step(st);
    }
    rec_stmt_done(st);
    return rc < 0 ? rec_db_err(r, err, rc, "cannot append event") : 0;
}

/* ---- the hooked API (records.c calls these first when a journal is attached) ------------ */

/* ret = call, run past the hook (records.c's own code for the write). */
#define DIRECT(r, ret, call)                                                                       \
    do {                                                                                           \
        (r)->jr_direct = true;                                                                     \
        (ret) = (call);                                                                            \
        (r)->jr_direct = false;                                                                    \
    } while (0)

int rj_job_begin(struct records *r, const struct records_job_new *j, int64_t *id,
                 struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    char mac[RECORDS_MAC_LEN] = "", idbuf[24];
    int64_t new_id = 0;
    int ret;
    if (!j)
        return rec_set_err(err, -EINVAL, "records: no job");
    if ((ret = rec_check_token("job kind", j->kind, RECORDS_STATE_LEN, err)) < 0 ||
        (j->board_mac && *j->board_mac && (ret = rec_normalize_mac(j->board_mac, mac, err)) < 0) ||
        (ret = rec_check_text("job slot", j->slot, RECORDS_SLOT_LEN, err)) < 0 ||
        (ret = rec_check_text("job firmware", j->firmware, RECORDS_FIRMWARE_LEN, err)) < 0 ||
        (ret = rec_check_text("job stage", j->stage, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    const char *f[7] = {
        j->kind, mac[0] ? mac : NULL, j->slot, j->firmware, j->queued ? "1" : "0", j->stage, NULL};
    if (!queueing(r)) {
        ret = fetch_ids(r, 1, &new_id, err);
        if (ret == 1) {
            ret = db_job_begin(r, new_id, f, err);
            if (ret >= 0 || !lost(r, ret)) {
                if (ret >= 0 && id)
                    *id = new_id;
                return ret;
            }
        } else if (ret >= 0 || !lost(r, ret)) {
            return ret < 0 ? ret : rec_set_err(err, -EIO, "records: no job id");
        }
    }
    if (!new_id) {
        if (!jr->n_ids)
            return rec_set_err(err, -EIO,
                               "records database unreachable and this station's reserved job "
                               "ids are used up: cannot record a new job (%s)",
                               rdb_errmsg_of(r));
        new_id = jr->ids[0];
        memmove(jr->ids, jr->ids + 1, (size_t)--jr->n_ids * sizeof(jr->ids[0]));
        jr->stat.reserved_ids = jr->n_ids;
        if (jr->offline && jr->n_own < RJ_IDS)
            jr->own[jr->n_own++] = new_id;
    }
    const char *g[8] = {num(idbuf, new_id), f[0], f[1], f[2], f[3], f[4], f[5], NULL};
    if ((ret = append(r, OP_BEGIN, g, 7, false, err)) < 0)
        return ret;
    if (id)
        *id = new_id;
    return 0;
}

int rj_job_set_board(struct records *r, int64_t id, const char *mac, struct records_error *err)
{
    char norm[RECORDS_MAC_LEN], idbuf[24];
    int ret;
    if (!queueing(r)) {
        DIRECT(r, ret, records_job_set_board(r, id, mac, err));
        if (!lost(r, ret))
            return ret;
    }
    if ((ret = rec_normalize_mac(mac, norm, err)) < 0)
        return ret;
    const char *f[2] = {num(idbuf, id), norm};
    return append(r, OP_BOARD, f, 2, false, err);
}

int rj_job_set_firmware(struct records *r, int64_t id, const char *firmware,
                        struct records_error *err)
{
    char idbuf[24];
    int ret;
    if (!queueing(r)) {
        DIRECT(r, ret, records_job_set_firmware(r, id, firmware, err));
        if (!lost(r, ret))
            return ret;
    }
    if ((ret = rec_check_text("job firmware", firmware, RECORDS_FIRMWARE_LEN, err)) < 0)
        return ret;
    const char *f[2] = {num(idbuf, id), firmware && *firmware ? firmware : NULL};
    return append(r, OP_FIRMWARE, f, 2, false, err);
}

int rj_job_progress(struct records *r, int64_t id, const char *stage, int64_t bytes,
                    int64_t wire_bytes, struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    char a[24], b[24], c[24];
    int ret, slot = (int)((uint64_t)id % RJ_PROGRESS_JOBS);
    int64_t now = records_now_ms(r);
    if (!queueing(r)) {
        DIRECT(r, ret, records_job_progress(r, id, stage, bytes, wire_bytes, err));
        if (!lost(r, ret))
            return ret;
    }
    if ((ret = rec_check_text("job stage", stage, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    /* Byte counts only: one entry a second per job is enough (the result has
     * the final counts); a stage change is always kept. */
    if (!stage && jr->progress[slot].job == id && now - jr->progress[slot].ts < RJ_PROGRESS_MS)
        return 0;
    jr->progress[slot].job = id;
    jr->progress[slot].ts = now;
    const char *f[4] = {num(a, id), stage, bytes >= 0 ? num(b, bytes) : NULL,
                        wire_bytes >= 0 ? num(c, wire_bytes) : NULL};
    return append(r, OP_PROGRESS, f, 4, false, err);
}

int rj_job_log(struct records *r, int64_t id, const char *level, const char *line,
               struct records_error *err)
{
    char buf[RECORDS_TEXT_LEN], key[sizeof(r->jr->key_prefix) + 24], idbuf[24];
    int ret;
    if ((ret = rec_check_token("log level", level, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    rec_copy_trunc(buf, sizeof(buf), line ? line : "");
    next_key(r->jr, key, sizeof(key));
    if (!queueing(r)) {
        ret = db_job_log(r, id, level, buf, key, err);
        if (!lost(r, ret))
            return ret;
    }
    const char *f[4] = {num(idbuf, id), level, buf, key};
    return append(r, OP_LOG, f, 4, false, err);
}

int rj_job_finish(struct records *r, int64_t id, const struct records_job_result *res,
                  struct records_error *err)
{
    char n[12][24];
    int ret;
    if (!queueing(r)) {
        DIRECT(r, ret, records_job_finish(r, id, res, err));
        if (!lost(r, ret))
            return ret;
    }
    if (!res)
        return rec_set_err(err, -EINVAL, "records: no job result");
    if (!records_job_state_is_final(res->state))
        return rec_set_err(err, -EINVAL, "records: \"%s\" is not a final job state",
                           records_job_state_to_string(res->state));
    if ((ret = rec_check_text("job error stage", res->error_stage, RECORDS_STATE_LEN, err)) < 0)
        return ret;
    char msg[RECORDS_TEXT_LEN], advice[RECORDS_TEXT_LEN], kbps[40], secs[40];
    rec_copy_trunc(msg, sizeof(msg), res->error_message ? res->error_message : "");
    rec_copy_trunc(advice, sizeof(advice), res->error_advice ? res->error_advice : "");
    snprintf(kbps, sizeof(kbps), "%.17g", res->kbps);
    snprintf(secs, sizeof(secs), "%.17g", res->seconds);
    const char *f[17] = {num(n[0], id),
                         records_job_state_to_string(res->state),
                         num(n[1], res->result_code),
                         res->error_stage,
                         res->error_message ? msg : NULL,
                         res->error_advice ? advice : NULL,
                         num(n[2], res->device_status),
                         num(n[3], res->device_error),
                         num(n[4], res->error_op),
                         num(n[5], res->error_address),
                         num(n[6], res->bytes),
                         num(n[7], res->wire_bytes),
                         kbps,
                         num(n[8], res->retries),
                         secs,
                         res->duration_unknown ? "1" : "0",
                         num(n[11], res->skipped_bytes)}; /* absent in older journals */
    return append(r, OP_FINISH, f, 17, true, err);
}

int rj_event_append(struct records *r, const struct records_event_new *e, int64_t *id,
                    struct records_error *err)
{
    char mac[RECORDS_MAC_LEN] = "", key[sizeof(r->jr->key_prefix) + 24], job[24];
    int ret;
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
    next_key(r->jr, key, sizeof(key));
    const char *f[6] = {e->kind,
                        mac[0] ? mac : NULL,
                        e->slot && *e->slot ? e->slot : NULL,
                        e->job_id > 0 ? num(job, e->job_id) : NULL,
                        e->data && *e->data ? e->data : NULL,
                        key};
    if (id)
        *id = 0;
    if (!queueing(r)) {
        ret = db_event(r, f, id, err);
        if (!lost(r, ret))
            return ret;
    }
    return append(r, OP_EVENT, f, 6, true, err); /* its id comes when it is written */
}

int rj_board_upsert(struct records *r, const struct records_board *b, struct records_error *err)
{
    char n[5][24];
    int ret;
    if (!queueing(r)) {
        DIRECT(r, ret, records_board_upsert(r, b, err));
        if (!lost(r, ret))
            return ret;
    }
    if (!b)
        return rec_set_err(err, -EINVAL, "records: no board");
    char mac[RECORDS_MAC_LEN];
    if ((ret = rec_normalize_mac(b->mac, mac, err)) < 0)
        return ret;
    /* The arrays are NUL-terminated (checked by the direct call or here). */
    const char *arr[] = {b->chip,
                         b->slot,
                         b->current_firmware,
                         b->current_md5,
                         b->ip,
                         b->running_version,
                         b->target_firmware,
                         b->online_state,
                         b->notes};
    const size_t sizes[] = {sizeof(b->chip),
                            sizeof(b->slot),
                            sizeof(b->current_firmware),
                            sizeof(b->current_md5),
                            sizeof(b->ip),
                            sizeof(b->running_version),
                            sizeof(b->target_firmware),
                            sizeof(b->online_state),
                            sizeof(b->notes)};
    for (size_t i = 0; i < sizeof(arr) / sizeof(arr[0]); i++)
        if (!memchr(arr[i], '\0', sizes[i]))
            return rec_set_err(err, -EINVAL, "records: a board field is not NUL-terminated");
    const char *f[14] = {mac,
                         b->chip,
                         num(n[0], b->revision),
                         num(n[1], b->flash_id),
                         num(n[2], b->flash_size),
                         num(n[3], b->crystal_mhz),
                         b->slot,
                         b->current_firmware,
                         b->current_md5,
                         b->ip,
                         b->running_version,
                         b->target_firmware,
                         b->online_state,
                         b->notes};
    return append(r, OP_UPSERT, f, 14, false, err);
}

/* ---- replay ----------------------------------------------------------------------------- */

static int64_t replay_clock(void *ctx)
{
    return ((struct rec_journal *)ctx)->replay_ts;
}

static void copy_field(char *dst, size_t n, const struct rj_entry *e, int i)
{
    snprintf(dst, n, "%s", field(e, i) ? field(e, i) : "");
}

/* Writes one entry to the database: 0 done (or already there), -EIO try again
 * later, other < 0: the database refuses it (err says why). */
static int apply(struct records *r, const struct rj_entry *e, struct records_error *err)
{
    int64_t id = field_int(e, 0, 0);
    int rc;
    switch (e->op) {
    case OP_BEGIN: {
        const char *f[6] = {field(e, 1), field(e, 2), field(e, 3),
                            field(e, 4), field(e, 5), field(e, 6)};
        return db_job_begin(r, id, f, err);
    }
    case OP_BOARD:
        DIRECT(r, rc, records_job_set_board(r, id, field(e, 1), err));
        return rc;
    case OP_FIRMWARE:
        DIRECT(r, rc, records_job_set_firmware(r, id, field(e, 1), err));
        return rc;
    case OP_PROGRESS:
        DIRECT(r, rc,
               records_job_progress(r, id, field(e, 1), field_int(e, 2, -1), field_int(e, 3, -1),
                                    err));
        return rc == -EINVAL ? 0 : rc; /* the job ended meanwhile: nothing to do */
    case OP_LOG:
        return db_job_log(r, id, field(e, 1), field(e, 2), field(e, 3), err);
    case OP_FINISH: {
        struct records_job_result res;
        records_job_result_init(&res);
        if (records_job_state_from_string(field(e, 1), &res.state) < 0)
            return rec_set_err(err, -EINVAL, "records: bad job state in the journal");
        res.result_code = (int)field_int(e, 2, 0);
        res.error_stage = field(e, 3);
        res.error_message = field(e, 4);
        res.error_advice = field(e, 5);
        res.device_status = (int)field_int(e, 6, -1);
        res.device_error = (int)field_int(e, 7, -1);
        res.error_op = (int)field_int(e, 8, -1);
        res.error_address = field_int(e, 9, -1);
        res.bytes = field_int(e, 10, -1);
        res.wire_bytes = field_int(e, 11, -1);
        res.kbps = field(e, 12) ? strtod(field(e, 12), NULL) : -1;
        res.retries = (int)field_int(e, 13, 0);
        res.seconds = field(e, 14) ? strtod(field(e, 14), NULL) : -1;
        res.duration_unknown = field_int(e, 15, 0) != 0;
        res.skipped_bytes = field_int(e, 16, -1);
        DIRECT(r, rc, records_job_finish(r, id, &res, err));
        if (rc == -EINVAL && strstr(err->message, "is already"))
            return 0; /* written before (its answer was lost, or an earlier replay) */
        return rc;
    }
    case OP_EVENT: {
        const char *f[6] = {field(e, 0), field(e, 1), field(e, 2),
                            field(e, 3), field(e, 4), field(e, 5)};
        if (!f[0] || !f[5])
            return rec_set_err(err, -EINVAL, "records: event entry without kind or key");
        return db_event(r, f, NULL, err);
    }
    case OP_UPSERT: {
        struct records_board *b = &r->row.board;
        records_board_init(b);
        copy_field(b->mac, sizeof(b->mac), e, 0);
        copy_field(b->chip, sizeof(b->chip), e, 1);
        b->revision = (int)field_int(e, 2, -1);
        b->flash_id = field_int(e, 3, -1);
        b->flash_size = field_int(e, 4, -1);
        b->crystal_mhz = (int)field_int(e, 5, -1);
        copy_field(b->slot, sizeof(b->slot), e, 6);
        copy_field(b->current_firmware, sizeof(b->current_firmware), e, 7);
        copy_field(b->current_md5, sizeof(b->current_md5), e, 8);
        copy_field(b->ip, sizeof(b->ip), e, 9);
        copy_field(b->running_version, sizeof(b->running_version), e, 10);
        copy_field(b->target_firmware, sizeof(b->target_firmware), e, 11);
        copy_field(b->online_state, sizeof(b->online_state), e, 12);
        copy_field(b->notes, sizeof(b->notes), e, 13);
        DIRECT(r, rc, records_board_upsert(r, b, err));
        return rc;
    }
    default:
        return rec_set_err(err, -EINVAL, "records: unknown journal entry kind '%c'", e->op);
    }
}

/*
 * Replay writes the entries in units: a batch is one transaction of up to
 * RJ_BATCH entries (fewer when the tick's budget runs out: what was applied is
 * committed then), so a long outage costs one commit per batch, not one per
 * entry. The file position and the counters move only when a unit's commit
 * succeeded: a batch the database lost in its middle (rolled back by the
 * server) is read and sent again later, and an entry that reached the
 * database in a commit whose answer was lost is written again harmlessly
 * (idempotent). An entry the database refuses inside a batch rolls the batch
 * back; the entries before it are written again as a batch and it alone, out
 * of any transaction, where it is dropped with the reason as before batches:
 * one bad entry never holds the rest.
 */
struct rj_logrow {
    int64_t job, ts;
    char level[RECORDS_STATE_LEN];
    char line[RECORDS_TEXT_LEN];
    char key[RECORDS_STATION_LEN + 48];
};

struct replay {
    struct records *r;
    int64_t until; /* mono ms budget, 0 none */
    int limit;     /* entries in this unit */
    bool txn;      /* the unit is a transaction (else each entry on its own) */
    bool began;    /* its BEGIN was sent */
    bool stop;     /* the callback stopped before an entry */
    bool spent;    /* out of budget */
    bool refused;  /* an entry was refused inside the transaction: redo the unit */
    int n;         /* entries applied in the unit (the log rows held below included) */
    int rc;        /* -EIO when the database went away */
    /* Log lines of the unit held back and sent together (flush_logs): a log row
     * depends only on its job's begin, which came before it in the file and is
     * written already, so holding it past other entries of the transaction changes
     * nothing another session can see; the rows keep their order among themselves. */
    struct rj_logrow *rows;
    int nrows;
    int n_at_rows; /* n before the first held row */
};

/* The job_log INSERT of 2^i rows (i >= 1; i == 0 is SQL_JOB_LOG). */
static const char *log_sql(struct rec_journal *jr, int i)
{
    if (!jr->log_sql[i]) {
        static const char head[] = "INSERT INTO job_log (job_id, ts, level, line, jkey) VALUES ";
        static const char tail[] = " ON CONFLICT (jkey) DO NOTHING";
        int rows = 1 << i;
        size_t cap = sizeof(head) + sizeof(tail) + (size_t)rows * 48, len;
        char *sql = malloc(cap);
        if (!sql)
            return NULL;
        len = (size_t)snprintf(sql, cap, "%s", head);
        for (int k = 0; k < rows; k++)
            len +=
                (size_t)snprintf(sql + len, cap - len, "%s(?%d, ?%d, ?%d, ?%d, ?%d)", k ? ", " : "",
                                 5 * k + 1, 5 * k + 2, 5 * k + 3, 5 * k + 4, 5 * k + 5);
        snprintf(sql + len, cap - len, "%s", tail);
        jr->log_sql[i] = sql;
    }
    return jr->log_sql[i];
}

/* Sends the held log rows (as INSERTs of 64, 32, ... rows, in their order): 0, or < 0
 * with rp->rc = -EIO (the database went away) or rp->refused (one of them is refused:
 * the unit is redone up to the first held row, which then goes alone). */
static int flush_logs(struct replay *rp)
{
    struct records *r = rp->r;
    struct rec_journal *jr = r->jr;
    int done = 0;
    while (done < rp->nrows) {
        int i = RJ_LOG_SIZES - 1, rc;
        while ((1 << i) > rp->nrows - done)
            i--;
        struct records_error err;
        struct rdb_stmt *st;
        const char *sql = i ? log_sql(jr, i) : SQL_JOB_LOG;
        rec_clear_err(&err);
        rc = sql ? rec_prep(r, sql, NULL, &st, &err) : -ENOMEM;
        if (rc == 0) {
            for (int k = 0; k < (1 << i); k++) {
                const struct rj_logrow *w = &rp->rows[done + k];
                rdb_bind_int64(st, 5 * k + 1, w->job);
                rdb_bind_int64(st, 5 * k + 2, w->ts);
                rec_bind_text(st, 5 * k + 3, w->level);
                rdb_bind_text(st, 5 * k + 4, w->line);
                rec_bind_text(st, 5 * k + 5, w->key);
            }
            rc = rdb_step(st);
            rec_stmt_done(st);
        }
        if (rc < 0) {
            if (rc == -EBUSY || lost(r, rc) || !reachable(r))
                rp->rc = -EIO;
            else
                rp->refused = true, rp->n = rp->n_at_rows;
            rp->nrows = 0;
            return rc;
        }
        done += 1 << i;
    }
    rp->nrows = 0;
    return 0;
}

/* Holds a log entry back for flush_logs: 1 held, 0 not (a field too long for a
 * row, or the unit is not a transaction: written the usual way), < 0 the held
 * rows could not be written. */
static int hold_log(struct replay *rp, const struct rj_entry *e)
{
    const char *level = field(e, 1), *line = field(e, 2), *key = field(e, 3);
    if (!rp->rows || !rp->began || (level && strlen(level) >= RECORDS_STATE_LEN) ||
        (line && strlen(line) >= RECORDS_TEXT_LEN) ||
        (key && strlen(key) >= sizeof(rp->rows[0].key)))
        return 0;
    if (rp->nrows == RJ_LOG_ROWS) {
        int rc = flush_logs(rp);
        if (rc < 0)
            return rc;
    }
    if (rp->nrows == 0)
        rp->n_at_rows = rp->n;
    struct rj_logrow *w = &rp->rows[rp->nrows++];
    w->job = field_int(e, 0, 0);
    w->ts = e->ts;
    snprintf(w->level, sizeof(w->level), "%s", level ? level : "");
    snprintf(w->line, sizeof(w->line), "%s", line ? line : "");
    snprintf(w->key, sizeof(w->key), "%s", key ? key : "");
    return 1;
}

static int replay_one(const struct rj_entry *e, void *ctx)
{
    struct replay *rp = ctx;
    struct records *r = rp->r;
    struct rec_journal *jr = r->jr;
    struct records_error err;
    records_clock_fn clock = r->clock;
    void *clock_ctx = r->clock_ctx;
    int rc;
    rp->stop = true;
    if (rp->n >= rp->limit)
        return 1;
    if (rp->until && mono_ms() >= rp->until) {
        rp->spent = true;
        return 1;
    }
    if (rp->txn && !rp->began) {
        if (rdb_begin(r->db) < 0) {
            rp->rc = -EIO; /* unreachable, or it cannot take a transaction now: later */
            return 1;
        }
        rp->began = true;
    }
    if (e->op == OP_LOG) {
        rc = hold_log(rp, e);
        if (rc < 0)
            return 1; /* rp says what happened */
        if (rc > 0) {
            rp->n++;
            rp->stop = false;
            return 0;
        }
    }
    jr->replay_ts = e->ts;
    r->clock = replay_clock;
    r->clock_ctx = jr;
    rec_clear_err(&err);
    rc = apply(r, e, &err);
    r->clock = clock;
    r->clock_ctx = clock_ctx;
    if (rc < 0 && (rc == -EBUSY || lost(r, rc) || !reachable(r))) {
        rp->rc = -EIO;
        return 1; /* kept for the next try */
    }
    if (rc < 0 && rp->began) {
        rp->refused = true;
        return 1;
    }
    if (rc < 0) {
        jr->stat.dropped++;
        snprintf(jr->stat.last_error, sizeof(jr->stat.last_error),
                 "journal entry %" PRId64 " ('%c') refused by the database and dropped: %s", e->seq,
                 e->op, err.message);
    }
    rp->n++;
    rp->stop = false;
    return 0;
}

/* Applies one unit from *pos (advanced past what was applied): 0, or < 0 the
 * file cannot be read or changed under us (err says why). */
static int replay_unit(struct records *r, struct replay *rp, char *buf, off_t *pos,
                       struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    char msg[160];
    int ret = 0;
    while (*pos < jr->size && !rp->stop) {
        size_t want = (size_t)(jr->size - *pos), good = 0;
        ssize_t got;
        if (want > RJ_CHUNK)
            want = RJ_CHUNK;
        got = pread(jr->fd, buf, want, *pos);
        if (got <= 0) {
            ret = rec_set_err(err, -EIO, "records: cannot read the journal %s: %s", jr->path,
                              got < 0 ? strerror(errno) : "file shorter than written");
            break;
        }
        int n = rj_parse(buf, (size_t)got, 1, replay_one, rp, &good, msg, sizeof(msg));
        *pos += (off_t)good;
        if (n < 0) {
            ret = rec_set_err(err, -EBADMSG, "records: journal %s: %s", jr->path, msg);
            break;
        }
        if (good == 0)
            break; /* an entry longer than a chunk (refused when written) */
    }
    /* the held log rows go before the commit (a failure is in rp) */
    if (rp->nrows > 0 && rp->rc == 0 && !rp->refused)
        flush_logs(rp);
    rp->nrows = 0;
    return ret;
}

/* Writes pending entries until done, out of budget (budget_ms, 0 none) or
 * the database is gone: 0 all written, 1 more to do, -EIO unreachable,
 * -EBADMSG the file changed under us. */
static int replay(struct records *r, int budget_ms, struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    int64_t until = budget_ms ? mono_ms() + budget_ms : 0;
    int redo = 0;  /* after a refusal: the entries before the refused one, as one batch */
    int alone = 0; /* then this many entries each on its own */
    char *buf = malloc(RJ_CHUNK);
    /* without it each log line is written on its own, as the rest */
    struct rj_logrow *rows = malloc(RJ_LOG_ROWS * sizeof(*rows));
    if (!buf) {
        free(rows);
        return rec_set_err(err, -ENOMEM, "records: out of memory");
    }
    while (jr->applied < jr->size) {
        struct replay rp = {.r = r, .until = until, .limit = RJ_BATCH, .txn = true, .rows = rows};
        off_t pos = jr->applied;
        int ret;
        if (redo > 0)
            rp.limit = redo;
        else if (alone > 0)
            rp.limit = 1, rp.txn = false;
        bool commit_refused = false;
        ret = replay_unit(r, &rp, buf, &pos, err);
        if (rp.began && rp.rc == 0 && !rp.refused) {
            int rc = rdb_commit(r->db);
            if (rc < 0 && (rc == -EBUSY || lost(r, rc) || !reachable(r)))
                rp.rc = -EIO;
            else if (rc < 0) /* an error a write let pass aborted it: which one is unknown */
                commit_refused = rp.refused = true;
        }
        if (rp.began && (rp.rc < 0 || rp.refused))
            rdb_rollback(r->db); /* nothing of the unit stays; its entries are read again */
        if (rp.rc < 0) {
            free(buf);
            free(rows);
            return rec_set_err(err, -EIO, "records: %s", rdb_errmsg_of(r));
        }
        if (rp.refused) {
            if (commit_refused)
                redo = 0, alone = rp.n;
            else
                redo = rp.n, alone = 1;
            if (ret < 0) {
                free(buf);
                free(rows);
                return ret;
            }
            continue;
        }
        /* The unit is in the database. */
        jr->applied = pos;
        jr->pending -= rp.n;
        jr->stat.replayed += rp.n;
        jr->stat.batches += rp.began;
        if (redo > 0)
            redo = 0;
        else if (alone > 0)
            alone -= rp.n;
        if (ret < 0) {
            free(buf);
            free(rows);
            return ret;
        }
        if (rp.spent || rp.n == 0)
            break;
    }
    free(buf);
    free(rows);
    if (jr->applied >= jr->size) {
        /* Everything written: the file starts again (a crash before this is
         * harmless: replaying written entries adds nothing). The state file
         * first: the ids the journal used must not come back from it. */
        if (jr->applied > (off_t)strlen(RJ_HEADER) && write_state(r, err) < 0) {
            jr->pending = 0;
            return 0; /* written; the file is cut back when the state can be written */
        }
        if (ftruncate(jr->fd, (off_t)strlen(RJ_HEADER)) == 0) {
            jr->size = jr->applied = (off_t)strlen(RJ_HEADER);
            jr->seq = 0;
        }
        jr->pending = 0;
        return 0;
    }
    return 1;
}

/* ---- open / tick / status ----------------------------------------------------------------- */

struct count {
    int64_t last_seq, n;
    struct rec_journal *jr;
};

/* Counts the entries; a job begun in the journal used its id: out of the reserve. */
static int count_cb(const struct rj_entry *e, void *ctx)
{
    struct count *c = ctx;
    struct rec_journal *jr = c->jr;
    c->last_seq = e->seq;
    c->n++;
    if (e->op == OP_BEGIN && jr->n_ids > 0) {
        int64_t id = field_int(e, 0, 0);
        for (int i = 0; i < jr->n_ids; i++)
            if (jr->ids[i] == id) {
                memmove(jr->ids + i, jr->ids + i + 1, (size_t)(jr->n_ids - i - 1) * sizeof(id));
                jr->n_ids--;
                break;
            }
    }
    return 0;
}

/* Sets the damaged tail of the file aside (path.bad-<ms>) and cuts it off. */
static void set_aside(struct rec_journal *jr, const char *buf, size_t good, size_t len,
                      const char *why)
{
    char bad[PATH_MAX + 32];
    int fd;
    snprintf(bad, sizeof(bad), "%s.bad-%" PRId64, jr->path, wall_ms());
    fd = open(bad, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, buf + good, len - good) < 0 || fsync(fd) < 0) {
        }
        close(fd);
    }
    if (ftruncate(jr->fd, (off_t)good) < 0) {
    }
    snprintf(jr->stat.last_error, sizeof(jr->stat.last_error),
             "journal %s: %s; the %zu bytes from there were set aside in %s", jr->path, why,
             len - good, bad);
}

/* Reads the file: header, entries (the damaged tail set aside). */
static int load(struct records *r, struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    struct stat sb;
    size_t hl = strlen(RJ_HEADER), good = 0;
    char *buf, msg[200];
    int n;
    if (fstat(jr->fd, &sb) < 0)
        return rec_set_err(err, -errno, "records: cannot read the journal %s: %s", jr->path,
                           strerror(errno));
    if (sb.st_size == 0) {
        if (write(jr->fd, RJ_HEADER, hl) != (ssize_t)hl || fsync(jr->fd) < 0)
            return rec_set_err(err, -EIO, "records: cannot write the journal %s: %s", jr->path,
                               strerror(errno));
        jr->size = jr->applied = (off_t)hl;
        return 0;
    }
    if (!(buf = malloc((size_t)sb.st_size)))
        return rec_set_err(err, -ENOMEM, "records: journal %s: out of memory", jr->path);
    if (pread(jr->fd, buf, (size_t)sb.st_size, 0) != sb.st_size) {
        free(buf);
        return rec_set_err(err, -EIO, "records: cannot read the journal %s", jr->path);
    }
    if ((size_t)sb.st_size < hl || memcmp(buf, RJ_HEADER, hl) != 0) {
        free(buf);
        return rec_set_err(err, -EBADMSG,
                           "records: %s is not a records journal (no '%.26s' header); move it "
                           "away to start the station (it may hold records not yet written)",
                           jr->path, RJ_HEADER);
    }
    struct count c = {0, 0, jr};
    n = rj_parse(buf + hl, (size_t)sb.st_size - hl, 0, count_cb, &c, &good, msg, sizeof(msg));
    if (n == -EBADMSG) { /* the good part is kept and written; the rest set aside */
        set_aside(jr, buf, hl + good, (size_t)sb.st_size, msg);
        n = 0;
    }
    free(buf);
    if (n < 0)
        return rec_set_err(err, n, "records: journal %s: %s", jr->path, msg);
    jr->size = (off_t)(hl + good);
    jr->applied = (off_t)hl;
    jr->pending = c.n;
    jr->seq = c.last_seq;
    return 0;
}

/* Offline: the state file must show this station worked with this database:
 * -ENODATA none (a first start), other < 0 refused (err says why). */
static int offline_state(struct records *r, const char *why, struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    struct rj_state st = {.ids = jr->ids, .max_ids = RJ_IDS};
    char msg[PATH_MAX + 128];
    int ret = rj_state_read(jr->state_path, &st, msg, sizeof(msg));
    if (ret == -ENOENT)
        return -ENODATA;
    if (ret < 0)
        return rec_set_err(err, ret,
                           "records: cannot start while the database is unreachable: %s (move it "
                           "away and start with the database reachable) [%s]",
                           msg, why);
    if (strcmp(st.station, r->station) != 0 || strcmp(st.dsn, r->path) != 0) {
        jr->n_ids = 0;
        return rec_set_err(err, -EBADMSG,
                           "records: cannot start while the database is unreachable: %s belongs "
                           "to station \"%s\" on \"%s\", not \"%s\" on \"%s\" (start once "
                           "with the database reachable) [%s]",
                           jr->state_path, st.station, st.dsn, r->station, r->path, why);
    }
    if (st.schema > rdb_migrations_count) {
        jr->n_ids = 0;
        return rec_set_err(err, -ENOTSUP,
                           "records: cannot start while the database is unreachable: it has "
                           "schema version %d, newer than this espstationd supports (%d) [%s]",
                           st.schema, rdb_migrations_count, why);
    }
    jr->n_ids = st.n_ids;
    r->schema_version = st.schema;
    snprintf(jr->identity, sizeof(jr->identity), "%s", st.identity);
    return 0;
}

/* Online: the database's identity; a journal holding writes for another
 * database is not written to this one. */
static int online_state(struct records *r, struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    int64_t scratch[1];
    struct rj_state st = {.ids = scratch, .max_ids = 0};
    char msg[PATH_MAX + 128];
    int ret = rdb_pg_identity(r->db, jr->identity, sizeof(jr->identity));
    if (ret < 0)
        return rec_db_err(r, err, ret, "cannot read the database's identity");
    if (jr->pending == 0 || rj_state_read(jr->state_path, &st, msg, sizeof(msg)) == -ENOENT)
        return 0;
    /* an unreadable state with pending writes: the journal is taken as this database's (as
     * before state files) */
    if (st.identity[0] && strcmp(st.identity, jr->identity) != 0)
        return rec_set_err(err, -EBADMSG,
                           "records: the journal %s holds %" PRId64
                           " writes for database %s, but the records DSN reaches database %s: "
                           "they are not written there (move the journal and %s away, or "
                           "point records.dsn at that database)",
                           jr->path, jr->pending, st.identity, jr->identity, jr->state_path);
    return 0;
}

int rj_attach(struct records *r, const char *path, const char *offline_why,
              struct records_error *err)
{
    struct rec_journal *jr;
    int ret;
    if (!path || !*path || r->db->ops->dialect != RDB_POSTGRESQL)
        return 0; /* SQLite: the store is local, nothing to journal */
    if (!(jr = calloc(1, sizeof(*jr))) || !(jr->path = strdup(path)) ||
        asprintf(&jr->state_path, "%s.state", path) < 0) {
        if (jr)
            free(jr->path);
        free(jr);
        return rec_set_err(err, -ENOMEM, "records: out of memory");
    }
    jr->fd = -1;
    r->jr = jr;
    snprintf(jr->key_prefix, sizeof(jr->key_prefix), "%s/%" PRId64, r->station, wall_ms());
    if (offline_why && (ret = offline_state(r, offline_why, err)) < 0)
        return ret;
    jr->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (jr->fd < 0)
        return rec_set_err(err, -errno, "records: cannot open the journal %s: %s", path,
                           strerror(errno));
    if ((ret = load(r, err)) < 0)
        return ret;
    rdb_pg_set_answer_ms(r->db, RJ_ANSWER_MS);
    if (offline_why) {
        jr->offline = jr->stat.offline = true;
        jr->stat.reserved_ids = jr->n_ids;
        return 0;
    }
    if ((ret = online_state(r, err)) < 0)
        return ret;
    if (jr->pending > 0) {
        int64_t n = jr->pending;
        ret = replay(r, 0, err);
        if (ret < 0)
            return rec_set_err(err, ret,
                               "records: the journal %s holds %" PRId64
                               " writes the database did not take yet: %s",
                               path, jr->pending, err ? err->message : "");
        jr->stat.replayed_at_open = n;
    }
    refill_ids(r);
    if (jr->n_ids > 0 && (ret = write_state(r, err)) < 0) /* (refill wrote it if it fetched) */
        return ret;
    return 0;
}

void rj_free(struct rec_journal *jr)
{
    if (!jr)
        return;
    if (jr->fd >= 0)
        close(jr->fd);
    free(jr->path);
    free(jr->state_path);
    for (int i = 0; i < RJ_LOG_SIZES; i++)
        free(jr->log_sql[i]);
    free(jr);
}

const char *rdb_errmsg_of(struct records *r)
{
    return r->db->ops->errmsg(r->db);
}

static bool own_job(void *ctx, int64_t id)
{
    struct rec_journal *jr = ctx;
    for (int i = 0; i < jr->n_own; i++)
        if (jr->own[i] == id)
            return true;
    return false;
}

/* The rest of an offline start, once connected (the connection is held from
 * the store's callers meanwhile): 0 done, 1 more to do, < 0 not now. */
static int finish_offline(struct records *r, int budget_ms, struct records_error *err)
{
    struct rec_journal *jr = r->jr;
    char id[RJ_STATE_TEXT];
    int ret;
    if (!rdb_pg_ready(r->db)) {
        ret = rdb_pg_poll(r->db); /* steps the connection attempt; held: -EIO */
        if (!rdb_pg_ready(r->db))
            return ret < 0 && ret != -EIO ? rec_set_err(err, ret, "records: %s", rdb_errmsg_of(r))
                                          : 1;
    }
    if ((ret = rdb_pg_identity(r->db, id, sizeof(id))) < 0)
        return rec_db_err(r, err, ret, "cannot read the database's identity");
    if (strcmp(id, jr->identity) != 0) {
        char m[sizeof(jr->stat.last_error)];
        snprintf(m, sizeof(m),
                 "the records DSN now reaches database %s, not %s this station worked with "
                 "(%s): its journal is not written there and it stays offline",
                 id, jr->identity, jr->state_path);
        snprintf(jr->stat.last_error, sizeof(jr->stat.last_error), "%s", m);
        return rec_set_err(err, -EBADMSG, "records: %s", m);
    }
    rdb_pg_hold(r->db, false);
    ret = rec_migrate(r, err);
    if (ret >= 0 && jr->pending > 0)
        ret = replay(r, budget_ms, err);
    if (ret == 0) {
        /* The journal is in: what an earlier process left unfinished is
         * interrupted now, this process's own jobs spared. */
        ret = rec_recover(r, own_job, jr, err);
        if (ret == 0) {
            jr->offline = false;
            jr->stat.offline = false;
            jr->stat.recovered_late = r->recovered;
            refill_ids(r);
            write_state(r, NULL);
            return 0;
        }
    }
    rdb_pg_hold(r->db, true);
    return ret;
}

int records_tick(struct records *r, struct records_error *err)
{
    return records_tick_budget(r, 0, err);
}

int records_tick_budget(struct records *r, int long_ms, struct records_error *err)
{
    struct rec_journal *jr;
    int ret, budget = RJ_TICK_BUDGET_MS;
    rec_clear_err(err);
    if (!r || !(jr = r->jr) || r->in_callback)
        return 0;
    if (long_ms > budget && jr->pending > RJ_LONG_PENDING)
        budget = long_ms; /* far behind and nothing waits on the caller's thread */
    if (jr->offline) {
        ret = finish_offline(r, budget, err);
        return ret < 0 ? ret : 0;
    }
    if (!reachable(r)) {
        ret = rdb_pg_poll(r->db);
        if (ret < 0)
            return rec_set_err(err, ret, "records: %s", rdb_errmsg_of(r));
    }
    if (jr->pending > 0) {
        ret = replay(r, budget, err);
        if (ret < 0)
            return ret;
        if (ret > 0)
            return 0;
    }
    refill_ids(r);
    return 0;
}

int records_journal_status(struct records *r, struct records_journal_status *out)
{
    memset(out, 0, sizeof(*out));
    if (!r || !r->jr)
        return -ENOENT;
    *out = r->jr->stat;
    out->connected = reachable(r);
    out->offline = r->jr->offline;
    out->pending = r->jr->pending;
    out->reserved_ids = r->jr->n_ids;
    out->bytes = (int64_t)r->jr->size;
    snprintf(out->path, sizeof(out->path), "%s", r->jr->path);
    if (!out->connected)
        snprintf(out->unreachable, sizeof(out->unreachable), "%s", rdb_errmsg_of(r));
    return 0;
}
