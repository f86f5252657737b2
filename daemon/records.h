/*
 * records: the station's history store — boards keyed by MAC, jobs with their
 * per-job log and full error detail, the append-only events journal, and the
 * firmware catalog index. The embedded backend is SQLite (WAL) in one file
 * under the data directory; PostgreSQL (records_open_backend) serves a line of
 * stations. This header carries no database types; records_db.h is the
 * backends' interface.
 *
 * Ownership and threads: a struct records is used by ONE thread (the daemon's
 * loop thread owns it; workers report by messages). Input strings are copied
 * in during the call; outputs fill caller-owned structs whose text fields are
 * fixed-size arrays, so nothing returned needs freeing. List functions call a
 * callback per row; the callback must not call into the same store (such calls
 * fail with -EBUSY) and returns non-zero to stop early.
 *
 * Time: every timestamp is int64 unix time in milliseconds, UTC, in the API
 * and in the database (INTEGER columns). Text forms (CSV, JSON) use
 * records_format_time(): ISO-8601 UTC with milliseconds.
 *
 * Durability: records_job_finish(), records_event_append() and the crash
 * recovery in records_open() are committed and synced (survive power loss)
 * when they return; progress and log lines are committed (survive kill -9)
 * and become power-loss durable with the next synced write. See records.c.
 *
 * Errors: >= 0 success, -errno failure (-EINVAL bad argument, -ENOENT no such
 * row, -EEXIST duplicate, -EBUSY locked/reentrant, -EBADMSG not a records
 * database or corrupt, -ENOTSUP schema newer than this build, -EACCES/-EROFS
 * permissions, -ENOSPC disk full, -EIO, -ENOMEM). When an optional
 * struct records_error is passed it gets the code and a message naming what
 * failed ("records: cannot open /x/records.db: permission denied").
 *
 * Input: the store reads nothing from outside except the database file itself;
 * all other input arrives through this API from the daemon. A damaged or
 * foreign file is reported, never trusted (no libFuzzer target needed here;
 * the garbage-file and corruption cases are unit-tested).
 */
#ifndef RECORDS_H
#define RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct records;

/* Text limits (including the NUL). Identifiers longer than this are rejected
 * with -EINVAL; free text (messages, advice, log lines, notes) is truncated on
 * a UTF-8 boundary, so what is read back always fits. */
#define RECORDS_MAC_LEN 18 /* "aa:bb:cc:dd:ee:ff" */
#define RECORDS_CHIP_LEN 24
#define RECORDS_SLOT_LEN 96      /* label "A1" or udev ID_PATH */
#define RECORDS_FIRMWARE_LEN 128 /* "name@version" as the daemon writes it */
#define RECORDS_NAME_LEN 64      /* firmware name, version */
#define RECORDS_MD5_LEN 33
#define RECORDS_IP_LEN 46
#define RECORDS_STATE_LEN 24 /* board online_state, job stage, job kind, event kind */
#define RECORDS_TEXT_LEN 512 /* error message/advice, log line, notes */
#define RECORDS_EVENT_DATA_LEN 2048
#define RECORDS_MANIFEST_LEN 16384
#define RECORDS_STATION_LEN 64 /* a station's name in a line ([A-Za-z0-9._-]) */
#define RECORDS_TIME_LEN 32
#define RECORDS_GROUP_LEN 65  /* board group name: [A-Za-z0-9._-], 1..64 chars */
#define RECORDS_GROUPS_MAX 16 /* groups per board */

struct records_error {
    int code;           /* negative errno, 0 when no error */
    char message[1024]; /* "records: <what failed>: <why>" (room for a DSN and libpq's text) */
};

/* ---- open / close --------------------------------------------------------- */

/*
 * Opens or creates the store at path, applies pending schema migrations, and
 * recovers after a crash: every job still 'queued' or 'running' becomes
 * 'interrupted' (ended now, error "daemon stopped while <stage>") with a
 * "job.interrupted" event. A file that is not a records database (or is
 * damaged) is refused with -EBADMSG and left untouched; -EBUSY when another
 * struct records (this or another process) has the file open — one per data
 * directory; -EACCES/-EROFS when the file or directory is not writable.
 * Do not carry an open store across fork().
 */
int records_open(const char *path, struct records **out, struct records_error *err);

/* The database behind the store. SQLite (records_open) is the embedded default:
 * one file, one station. PostgreSQL is for a line of stations; its target is a
 * libpq connection string ("host=db1 dbname=line user=station" or a
 * postgresql:// URI). On PostgreSQL, records_open_backend() connects, applies
 * the same schema versions, and takes a session advisory lock for its station
 * (records_open_station; unnamed stores share one: -EBUSY "in use by another
 * process"); it
 * fails with -ECONNREFUSED/-EHOSTUNREACH/-ETIMEDOUT/-EACCES/-ENOENT (no such
 * database)/-EIO and a message naming the server, the DSN without its password
 * and what to check when the database cannot be reached. Timestamps, limits,
 * errors and every accessor behave the same on both; text that is not valid
 * UTF-8 is stored with U+FFFD on PostgreSQL. No call waits on the network
 * for long: after open every answer is awaited at most 5 s (statement_timeout
 * 4 s; TCP keepalives and tcp_user_timeout 5 s by default, a DSN may set its
 * own), so a partition that drops packets is noticed in bounded time. When the
 * connection is lost, the call that meets it fails with -EIO (a write it
 * carried may or may not be committed: it is not sent twice) and the store
 * connects again in the background (PQconnectStart: a new attempt at most
 * every 2 s, each given the DSN's connect_timeout, default 10 s, never blocking
 * the caller); until then every call fails at once with -EIO "records database
 * unreachable (<why>)". With a journal (records_open_journaled) the writes of
 * jobs, events and boards go on through the outage. */
enum records_backend {
    RECORDS_BACKEND_SQLITE,
    RECORDS_BACKEND_POSTGRESQL,
};

int records_open_backend(enum records_backend backend, const char *target, struct records **out,
                         struct records_error *err);
/* As records_open_backend, as the station `station` of a line ([A-Za-z0-9._-],
 * 1..63 characters; -EINVAL otherwise): its jobs and events carry the name, and
 * the crash recovery at open interrupts only the jobs this station left running
 * (and those of no station, written before schema 7). On PostgreSQL the lock
 * taken is this station's (-EBUSY "in use by another process" when another
 * process runs as the same station); stations with other names share the
 * database. NULL or "": no name (the store's every unfinished job is its own).
 * A SQLite file is one station's: its recovery takes every unfinished job
 * whatever name it carries (a renamed host does not strand its jobs). */
int records_open_station(enum records_backend backend, const char *target, const char *station,
                         struct records **out, struct records_error *err);
/*
 * As records_open_station, with a write-behind journal at journal_path (a file
 * in the data directory; PostgreSQL only: ignored on SQLite, NULL for none).
 * While the database is unreachable — restarted, or behind a partition — these
 * writes succeed and go to the journal, and are written to the database in
 * order when it answers again (records_tick): records_board_upsert,
 * records_job_begin / set_board / set_firmware / progress / log / finish and
 * records_event_append. They keep their promises: job_finish and event_append
 * are fsync'd to the journal before they return; a job begun in an outage has
 * its final id (each station reserves job ids while connected; they run out
 * after 64 jobs begun in one outage: then job_begin fails -EIO); an event's id
 * is 0 until it is written. Replaying is idempotent (schema 8 keys), so a crash
 * mid-replay writes nothing twice; byte counts of progress are journaled at
 * most once a second per job. Every other call fails at once with -EIO
 * "records database unreachable" (reads answer nothing; pool files, serial
 * numbers and other allocations are never guessed locally), and while the
 * journal holds writes not yet in the database, reads miss them.
 * At open a journal left by an earlier process (kill -9, power loss) is written
 * first, before the crash recovery; a damaged tail (a line cut short, a bad
 * checksum) is set aside in journal_path.bad-<ms> and the good part written
 * (records_journal_status().last_error says so); a file that is not a journal
 * is refused with -EBADMSG. The open fails when the journal cannot be written
 * (the database must be reachable at open).
 */
int records_open_journaled(enum records_backend backend, const char *target, const char *station,
                           const char *journal_path, struct records **out,
                           struct records_error *err);

/* Drives a journaled store from a timer (every 100..500 ms): one non-blocking
 * step of a reconnect, then writes of the journal for at most 50 ms, then the
 * job ids reserved for an outage topped up. Never waits on the network for
 * long. 0, or < 0 with the reason (the database is unreachable, the journal
 * cannot be read). A store without a journal: 0. */
int records_tick(struct records *r, struct records_error *err);
/* records_tick, but while the journal is far behind (more than 1000 writes) its
 * writes run for up to long_ms (when more than 50) instead of 50 ms, to catch up
 * sooner after a long outage. The caller passes 0 whenever something on its
 * thread waits for the store or must be served soon (the daemon: a job waiting
 * for its plan), and keeps long_ms well under its tick interval. */
int records_tick_budget(struct records *r, int long_ms, struct records_error *err);

struct records_journal_status {
    bool connected;                    /* the database answers */
    int64_t pending;                   /* writes in the journal not yet in the database */
    int64_t bytes;                     /* the journal file's size */
    int64_t journaled;                 /* writes journaled since open */
    int64_t replayed;                  /* journal writes done since open (at open included) */
    int64_t replayed_at_open;          /* of which left by an earlier process */
    int64_t dropped;                   /* journal writes the database refused (last_error) */
    int64_t batches;                   /* replay transactions committed since open */
    int64_t reserved_ids;              /* job ids in hand for an outage */
    bool offline;                      /* opened offline: the open's rest waits for the db */
    int recovered_late;                /* jobs that late open's crash recovery interrupted */
    char path[256];                    /* the journal file */
    char unreachable[512];             /* why the database is unreachable, "" when connected */
    char last_error[RECORDS_TEXT_LEN]; /* a dropped write or a damaged tail, "" none */
};

/* -ENOENT when the store has no journal. */
int records_journal_status(struct records *r, struct records_journal_status *out);

/* The name the store was opened as ("" for none). */
const char *records_station(const struct records *r);
/* Checks a station name as records_open_station does. */
bool records_station_name_ok(const char *name);
const char *records_backend_to_string(enum records_backend b); /* "sqlite", "postgresql" */
/* -EINVAL for an unknown name. */
int records_backend_from_string(const char *name, enum records_backend *out);
enum records_backend records_backend(const struct records *r);

/* Closes the store (NULL allowed). */
void records_close(struct records *r);

/* Number of jobs records_open() marked interrupted. */
int records_recovered_jobs(const struct records *r);

/* Schema version of the open database (== records_schema_latest() after open). */
int records_schema_version(const struct records *r);
int records_schema_latest(void);

/* Runs the database's full integrity check: 0 when "ok", -EBADMSG otherwise
 * with the first problem in err. Reads the whole file: use at start-up or on
 * demand, not per request. */
int records_integrity_check(struct records *r, struct records_error *err);

/* Clock used for all timestamps (default: CLOCK_REALTIME). For tests. */
typedef int64_t (*records_clock_fn)(void *ctx);
void records_set_clock(struct records *r, records_clock_fn fn, void *ctx);
int64_t records_now_ms(const struct records *r);

/* Formats unix ms as "2024-05-01T12:34:56.789Z" into buf (>= RECORDS_TIME_LEN).
 * Returns buf. */
char *records_format_time(int64_t ms, char *buf, size_t size);

/* ---- boards --------------------------------------------------------------- */

/*
 * A board record. On upsert, text fields left "" and numbers left -1 keep the
 * stored value (the daemon learns chip data at identify time and IP/version at
 * OTA check-in); first_seen is set once, last_seen is set to now on every
 * upsert; the *_seen fields of the input are ignored.
 */
struct records_board {
    char mac[RECORDS_MAC_LEN]; /* normalised to lower case "aa:bb:cc:dd:ee:ff" */
    char chip[RECORDS_CHIP_LEN];
    int revision;       /* -1 unknown */
    int64_t flash_id;   /* JEDEC id, -1 unknown */
    int64_t flash_size; /* bytes, -1 unknown */
    int crystal_mhz;    /* -1 unknown */
    int64_t first_seen; /* unix ms (output only) */
    int64_t last_seen;  /* unix ms (output only) */
    char slot[RECORDS_SLOT_LEN];
    char current_firmware[RECORDS_FIRMWARE_LEN];
    char current_md5[RECORDS_MD5_LEN];
    char ip[RECORDS_IP_LEN];
    char running_version[RECORDS_NAME_LEN];
    char target_firmware[RECORDS_FIRMWARE_LEN];
    char online_state[RECORDS_STATE_LEN];
    char notes[RECORDS_TEXT_LEN];
    /* Output only (schema 3; set with records_board_set_groups): the board's
     * groups, sorted by name. Ignored by upsert. */
    char groups[RECORDS_GROUPS_MAX][RECORDS_GROUP_LEN];
    int n_groups;
    /* Output only (schema 6; set with records_board_set_address): how far the
     * station trusts ip. A check-in without credentials can come from anyone, so
     * an address it gives is not confirmed; a boot check or an authenticated
     * check-in confirms one. An upsert that changes ip makes it unconfirmed. */
    bool ip_confirmed;
    char ip_source[RECORDS_STATE_LEN]; /* "boot-check", "checkin-auth", "operator", "checkin",
                                          "mdns"; "taken" (another board's address was
                                          confirmed as ip since); "" unknown */
    int64_t ip_changed_at;             /* unix ms ip last changed, 0 unknown */
    char ip_claim[RECORDS_IP_LEN];     /* another address an unconfirmed source claimed
                                          while ip was confirmed, "" none */
    char ip_claim_source[RECORDS_STATE_LEN];
    int64_t ip_claim_at; /* unix ms of that claim (first seen), 0 none */
};

/* Clears b: strings "", numbers -1 ("keep stored" on upsert). */
void records_board_init(struct records_board *b);

int records_board_upsert(struct records *r, const struct records_board *b,
                         struct records_error *err);

/* -ENOENT when the MAC has no record. mac in any case, ':' or '-' separated. */
int records_board_get(struct records *r, const char *mac, struct records_board *out,
                      struct records_error *err);

struct records_board_filter {
    const char *chip;     /* NULL = any */
    const char *firmware; /* current_firmware, NULL = any */
    const char *group;    /* member of this group (exact, case-sensitive), NULL = any */
    int limit;            /* <= 0: no limit */
    int offset;
};

typedef int (*records_board_cb)(const struct records_board *b, void *ctx);

/* Boards ordered by last_seen, most recent first. Returns rows delivered. */
int records_board_list(struct records *r, const struct records_board_filter *f, records_board_cb cb,
                       void *ctx, struct records_error *err);

/* ---- board addresses (schema 6) --------------------------------------------- */

/* Replaces a board's address state: ip (NULL or "" none), whether it is confirmed
 * (needs an ip), its source, and a pending claim (NULL or "" none; its time is
 * kept while the claim stays the same). ip_changed_at is set when ip changes.
 * -ENOENT when the MAC has no record, -EINVAL bad text. */
int records_board_set_address(struct records *r, const char *mac, const char *ip, bool confirmed,
                              const char *source, const char *claim, const char *claim_source,
                              struct records_error *err);

/* One address, one confirmed board: every other board whose confirmed address is
 * ip loses the confirmation (ip kept, ip_confirmed false, ip_source "taken").
 * Called after mac's own address was confirmed as ip (in that order, two stations
 * of a line confirming one address for two boards at once leave neither
 * confirmed rather than both). Returns how many boards lost it; the first max of
 * their MACs in others (may be NULL). */
int records_board_take_address(struct records *r, const char *mac, const char *ip,
                               char (*others)[RECORDS_MAC_LEN], int max, struct records_error *err);

/* 1 when some board's pinned target is target ("name@version"), 0 when none, < 0 error. */
int records_board_target_used(struct records *r, const char *target, struct records_error *err);

/* Boards known only from unconfirmed network sources: address unconfirmed, learned
 * from a check-in without credentials or mDNS, never flashed over serial. */
int records_board_count_unconfirmed(struct records *r, int64_t *n, struct records_error *err);

/* ---- board notes and groups (schema 3) -------------------------------------- */

/* Sets a board's notes (free text, truncated to RECORDS_TEXT_LEN on a UTF-8
 * boundary; NULL or "" clears them). -ENOENT when the MAC has no record. */
int records_board_set_notes(struct records *r, const char *mac, const char *notes,
                            struct records_error *err);

/* A slot's learned baud limit (0 = none), by slot key, kept across restarts.
 * set with 0 clears it; get gives 0 when none is stored. */
int records_slot_baud_limit_set(struct records *r, const char *slot_key, uint32_t baud,
                                struct records_error *err);
int records_slot_baud_limit_get(struct records *r, const char *slot_key, uint32_t *baud,
                                struct records_error *err);

/* Per-board data pools (profile "per_board"): file `file` of pool `pool` went to
 * board `mac`. A file goes to one board only, and a board holds at most one file
 * of each pool (a re-flash gets the same file again). */
#define RECORDS_POOL_FILE_LEN 256
struct records_pool_item {
    char pool[RECORDS_POOL_FILE_LEN];
    char file[RECORDS_POOL_FILE_LEN]; /* file name inside the pool directory */
    char mac[RECORDS_MAC_LEN];
    char md5[33];        /* of the file when assigned, "" unknown */
    int64_t job_id;      /* the job that took it, 0 none */
    int64_t assigned_at; /* unix ms */
};
typedef int (*records_pool_cb)(const struct records_pool_item *it, void *ctx);

/* The board's file of the pool: 0, -ENOENT when it has none. */
int records_pool_item_of(struct records *r, const char *pool, const char *mac,
                         struct records_pool_item *out, struct records_error *err);
/* 1 when the file of the pool went to some board, 0 when it is free, < 0 error. */
int records_pool_file_used(struct records *r, const char *pool, const char *file,
                           struct records_error *err);
/* Gives it->file to it->mac (durable). -EEXIST when the file is taken or the board
 * already holds a file of that pool. */
int records_pool_assign(struct records *r, const struct records_pool_item *it,
                        struct records_error *err);
/* How many files of the pool went to boards. */
int records_pool_count(struct records *r, const char *pool, int64_t *used,
                       struct records_error *err);
/* The board's files, by pool name; returns how many or < 0. */
int records_pool_items_of_board(struct records *r, const char *mac, records_pool_cb cb, void *ctx,
                                struct records_error *err);

/* True when name is a valid group name: 1..64 of [A-Za-z0-9._-]. */
bool records_group_name_ok(const char *name);

/* Replaces a board's groups with names[0..n) (n 0 clears; duplicates count
 * once). -EINVAL for a bad name or more than RECORDS_GROUPS_MAX distinct
 * names, -ENOENT when the MAC has no record. One transaction. */
int records_board_set_groups(struct records *r, const char *mac, const char *const *names, size_t n,
                             struct records_error *err);

/* ---- network OTA state (schema 2) ------------------------------------------- */

/* What a board's updater reported at its last HTTP check-in and what the station
 * served it (the ota_http "served" memory). Replaced whole by put; the board
 * record must exist. Numbers -1 unknown, strings "" none. */
struct records_board_ota {
    char mac[RECORDS_MAC_LEN];
    int64_t free_space, sketch_size, chip_size;
    char sketch_md5[RECORDS_MD5_LEN];
    char sdk_version[RECORDS_NAME_LEN];
    int64_t last_checkin; /* unix ms, 0 never */
    int64_t checkins;
    char served_md5[RECORDS_MD5_LEN]; /* last image served with a complete 200 */
    char served_version[RECORDS_NAME_LEN];
    char served_sketch_md5[RECORDS_MD5_LEN]; /* the sketch MD5 reported when it was served */
    int64_t served_at;                       /* unix ms, 0 never */
    char problem[RECORDS_TEXT_LEN];          /* why the station holds back, "" none */
};

void records_board_ota_init(struct records_board_ota *o);
int records_board_ota_put(struct records *r, const struct records_board_ota *o,
                          struct records_error *err);
/* -ENOENT when the board never checked in. */
int records_board_ota_get(struct records *r, const char *mac, struct records_board_ota *out,
                          struct records_error *err);
/* Pins (target "name@version") or unpins (NULL or "") a board's target firmware.
 * -ENOENT when the MAC has no record. */
int records_board_set_target(struct records *r, const char *mac, const char *target,
                             struct records_error *err);

/* ---- jobs ----------------------------------------------------------------- */

enum records_job_state {
    RECORDS_JOB_ANY = -1, /* filters only */
    RECORDS_JOB_QUEUED = 0,
    RECORDS_JOB_RUNNING,
    RECORDS_JOB_PASSED,
    RECORDS_JOB_FAILED,
    RECORDS_JOB_INTERRUPTED, /* the daemon stopped under it (crash, kill -9) */
    RECORDS_JOB_CANCELLED,   /* stopped on purpose (API cancel, SIGTERM, unplug) */
    RECORDS_JOB_SKIPPED,     /* nothing to do (image already on the board) */
    RECORDS_JOB_STATE_COUNT
};

const char *records_job_state_to_string(enum records_job_state s);
/* -EINVAL for an unknown name. */
int records_job_state_from_string(const char *name, enum records_job_state *out);
bool records_job_state_is_final(enum records_job_state s);

struct records_job_new {
    const char *kind;      /* "flash", "erase", "ota-pull", "ota-push", ...: [a-z0-9._-]+ */
    const char *board_mac; /* NULL when not known yet (see records_job_set_board) */
    const char *slot;      /* NULL allowed */
    const char *firmware;  /* "name@version", NULL allowed */
    const char *stage;     /* initial stage, NULL allowed */
    bool queued;           /* start 'queued' instead of 'running' */
};

/* Creates a job ('running', or 'queued'); *id gets its id (ids never reused).
 * A board_mac must already have a board record (-ENOENT otherwise). */
int records_job_begin(struct records *r, const struct records_job_new *j, int64_t *id,
                      struct records_error *err);

/* Attaches the board once identify has read its MAC (board record must exist). */
int records_job_set_board(struct records *r, int64_t id, const char *mac,
                          struct records_error *err);

/* Sets the job's firmware ("name@version") once the daemon has chosen it
 * (after identify; NULL clears). -ENOENT for an unknown job. */
int records_job_set_firmware(struct records *r, int64_t id, const char *firmware,
                             struct records_error *err);

/*
 * Cheap progress update (prepared statement, no fsync): stage (NULL keeps it),
 * bytes and wire_bytes (-1 keeps). A 'queued' job becomes 'running' (and its
 * started_at is reset to now). -ENOENT for an unknown job, -EINVAL for a
 * finished one.
 */
int records_job_progress(struct records *r, int64_t id, const char *stage, int64_t bytes,
                         int64_t wire_bytes, struct records_error *err);

/* Appends one line to the job's log (level e.g. "info", "warn", "error"). */
int records_job_log(struct records *r, int64_t id, const char *level, const char *line,
                    struct records_error *err);

struct records_job_result {
    enum records_job_state state; /* a final state */
    int result_code;              /* 0 or negative errno */
    const char *error_stage;      /* NULL when none */
    const char *error_message;    /* what failed */
    const char *error_advice;     /* what to do */
    int device_status;            /* device status byte, -1 none */
    int device_error;             /* device error byte, -1 none */
    int error_op;                 /* ROM/stub opcode involved, -1 none */
    int64_t error_address;        /* flash address involved, -1 none */
    int64_t bytes;                /* image bytes written, -1 keeps progress value */
    int64_t wire_bytes;           /* bytes on the wire, -1 keeps progress value */
    int64_t skipped_bytes;        /* of bytes, already on the board and not sent; -1 unknown */
    double kbps;                  /* effective kbit/s; < 0: bytes*8/1000/seconds */
    int retries;
    double seconds; /* measured duration; < 0: ended_at - started_at */
    /* The duration is not known (e.g. an OTA pull whose board never said it had the whole
     * image): seconds and, unless kbps >= 0 is given, kbps are stored NULL. */
    bool duration_unknown;
};

/* Sets numbers to -1 ("none"/"compute"), strings NULL, state FAILED. */
void records_job_result_init(struct records_job_result *res);

/* Finishes a job (durable on return). -EINVAL if already finished or if the
 * state is not final, -ENOENT for an unknown job. A job marked 'interrupted'
 * without its worker (crash recovery, or another station's take-over) takes the
 * result its worker reports later: the real result replaces the guess. */
int records_job_finish(struct records *r, int64_t id, const struct records_job_result *res,
                       struct records_error *err);

struct records_job {
    int64_t id;
    char kind[RECORDS_STATE_LEN];
    char board_mac[RECORDS_MAC_LEN];
    char slot[RECORDS_SLOT_LEN];
    char firmware[RECORDS_FIRMWARE_LEN];
    enum records_job_state state;
    char stage[RECORDS_STATE_LEN];
    int64_t started_at; /* unix ms */
    int64_t ended_at;   /* unix ms, 0 while not finished */
    int result_code;
    char error_stage[RECORDS_STATE_LEN];
    char error_message[RECORDS_TEXT_LEN];
    char error_advice[RECORDS_TEXT_LEN];
    int device_status;     /* -1 none */
    int device_error;      /* -1 none */
    int error_op;          /* -1 none */
    int64_t error_address; /* -1 none */
    int64_t bytes;
    int64_t wire_bytes;
    double kbps; /* -1 unknown */
    int retries;
    double seconds;                    /* -1 unknown */
    char station[RECORDS_STATION_LEN]; /* the station that ran it ("" before schema 7) */
    int64_t skipped_bytes; /* of bytes, already on the board and not sent (diff); -1 unknown */
};

int records_job_get(struct records *r, int64_t id, struct records_job *out,
                    struct records_error *err);

struct records_job_filter {
    const char *board_mac;        /* NULL = any */
    const char *slot;             /* NULL = any */
    const char *kind;             /* NULL = any */
    enum records_job_state state; /* RECORDS_JOB_ANY = any */
    int64_t since;                /* started_at >= since; 0 = open */
    int64_t until;                /* started_at < until; 0 = open */
    const char *station;          /* the station that ran it; NULL = any */
    int limit;                    /* <= 0: no limit */
    int offset;
};

/* Zero filter with state = RECORDS_JOB_ANY. */
void records_job_filter_init(struct records_job_filter *f);

typedef int (*records_job_cb)(const struct records_job *j, void *ctx);

/* Jobs newest first (id descending). f NULL = all. Returns rows delivered. */
int records_job_list(struct records *r, const struct records_job_filter *f, records_job_cb cb,
                     void *ctx, struct records_error *err);

struct records_log_line {
    int64_t ts;
    char level[RECORDS_STATE_LEN];
    char line[RECORDS_TEXT_LEN];
};

typedef int (*records_log_cb)(const struct records_log_line *l, void *ctx);

/* The job's log in order of appending. Returns lines delivered. */
int records_job_log_list(struct records *r, int64_t id, records_log_cb cb, void *ctx,
                         struct records_error *err);

/* Job history as CSV (RFC 4180: header row, CRLF line ends, fields with
 * comma/quote/CR/LF quoted and quotes doubled; times ISO-8601), oldest first.
 * f NULL = all. Returns rows written (excluding the header). */
int records_export_csv(struct records *r, FILE *out, const struct records_job_filter *f,
                       struct records_error *err);

/* ---- events (append-only journal; ids are monotonic: SSE Last-Event-ID) -- */

struct records_event_new {
    const char *kind;      /* "board.seen", "job.finished", ...: [a-z0-9._-]+ */
    const char *board_mac; /* NULL allowed; need not have a board record */
    const char *slot;      /* NULL allowed */
    int64_t job_id;        /* 0 = none */
    const char *data;      /* a JSON object as text, or NULL; anything else is refused */
};

/* Appends an event (durable on return); *id (may be NULL) gets its id. */
int records_event_append(struct records *r, const struct records_event_new *e, int64_t *id,
                         struct records_error *err);

struct records_event {
    int64_t id;
    int64_t ts; /* unix ms */
    char kind[RECORDS_STATE_LEN];
    char board_mac[RECORDS_MAC_LEN];
    char slot[RECORDS_SLOT_LEN];
    int64_t job_id;                    /* 0 = none */
    char data[RECORDS_EVENT_DATA_LEN]; /* JSON, "" when none */
    char station[RECORDS_STATION_LEN]; /* the station that wrote it ("" before schema 7) */
};

typedef int (*records_event_cb)(const struct records_event *e, void *ctx);

/* Events with id > after_id in id order, at most limit (<= 0: no limit).
 * Returns events delivered. */
int records_events_since(struct records *r, int64_t after_id, int limit, records_event_cb cb,
                         void *ctx, struct records_error *err);

/* Highest event id (0 when none). */
int records_events_last_id(struct records *r, int64_t *id, struct records_error *err);

/* ---- firmware catalog index ---------------------------------------------- */

struct records_firmware {
    char name[RECORDS_NAME_LEN];
    char version[RECORDS_NAME_LEN];
    char chip[RECORDS_CHIP_LEN];
    char manifest[RECORDS_MANIFEST_LEN]; /* JSON: regions with offsets, sizes, sha256, md5 */
    int64_t created_at;                  /* unix ms (output only) */
};

/* Adds a firmware set (name, version) — versions are immutable: -EEXIST when
 * present. manifest must be a JSON object. */
int records_firmware_put(struct records *r, const struct records_firmware *fw,
                         struct records_error *err);
int records_firmware_get(struct records *r, const char *name, const char *version,
                         struct records_firmware *out, struct records_error *err);
/* -ENOENT when absent. Jobs keep their "name@version" text. */
int records_firmware_delete(struct records *r, const char *name, const char *version,
                            struct records_error *err);

typedef int (*records_firmware_cb)(const struct records_firmware *fw, void *ctx);

/* By name, then newest first. chip NULL = any. Returns rows delivered. */
int records_firmware_list(struct records *r, const char *chip, records_firmware_cb cb, void *ctx,
                          struct records_error *err);

/* ---- bulk updates (schema 3) ---------------------------------------------- */

/* A bulk update's parameters and state, as the OTA manager (ota_bulk.c) keeps
 * them so a bulk survives a restart. Board states are "pending", "running",
 * "passed", "failed", "skipped"; bulk states "running", "passed", "failed",
 * "stopped", "cancelled" (any non-"running" state is final). The bulk's
 * password is never stored: only whether one was given. */
struct records_bulk {
    int64_t id;                          /* output (create) */
    char firmware[RECORDS_FIRMWARE_LEN]; /* "name@version" */
    char version[RECORDS_NAME_LEN];
    char method[RECORDS_STATE_LEN];   /* pull, espota, webform, tcp */
    char selection[RECORDS_TEXT_LEN]; /* how boards were chosen, JSON object text or "" */
    int port, concurrency, retries, timeout_s;
    double max_failure_rate;
    bool password_given;
    char user[65];   /* webform: HTTP Basic user, "" = the config's */
    bool filesystem; /* pushes the set's filesystem image, not the app */
    char state[RECORDS_STATE_LEN];
    char reason[RECORDS_TEXT_LEN];
    int64_t created_at; /* unix ms (output: set by create) */
    int64_t ended_at;   /* unix ms, 0 while running (output) */
    /* output: boards per state */
    int64_t total, pending, running, passed, failed, skipped;
};

struct records_bulk_board {
    char mac[RECORDS_MAC_LEN];
    char state[RECORDS_STATE_LEN];
    int attempts;
    int64_t job_id; /* last push job, 0 none */
    char error[RECORDS_TEXT_LEN];
};

/* Stores a new bulk with its boards (in order; MACs distinct) in one durable
 * transaction; b->id and b->created_at are set. State "running" when b->state
 * is "". -EINVAL bad field, -EEXIST a MAC listed twice. */
int records_bulk_create(struct records *r, struct records_bulk *b,
                        const struct records_bulk_board *boards, size_t n,
                        struct records_error *err);

/* Sets a bulk's state and reason (NULL/"" none); a final state also sets
 * ended_at and is durable on return. -ENOENT unknown bulk. */
int records_bulk_set_state(struct records *r, int64_t id, const char *state, const char *reason,
                           struct records_error *err);

/* Updates one board of a bulk (state, attempts, job_id, error) by its MAC.
 * Committed (survives kill -9), not synced. -ENOENT not in that bulk. */
int records_bulk_board_put(struct records *r, int64_t bulk_id, const struct records_bulk_board *bb,
                           struct records_error *err);

/* -ENOENT when there is no such bulk. */
int records_bulk_get(struct records *r, int64_t id, struct records_bulk *out,
                     struct records_error *err);

typedef int (*records_bulk_cb)(const struct records_bulk *b, void *ctx);
typedef int (*records_bulk_board_cb)(const struct records_bulk_board *bb, void *ctx);

/* A bulk's boards in their stored order. Returns rows delivered (-ENOENT
 * unknown bulk). */
int records_bulk_boards(struct records *r, int64_t id, records_bulk_board_cb cb, void *ctx,
                        struct records_error *err);

/* Bulks newest first; state NULL = any; limit <= 0 = all. Returns rows delivered. */
int records_bulk_list(struct records *r, const char *state, int limit, records_bulk_cb cb,
                      void *ctx, struct records_error *err);

/* ---- counters ------------------------------------------------------------- */

struct records_counters {
    int64_t by_state[RECORDS_JOB_STATE_COUNT]; /* jobs that ended (or began, for
                                                  queued/running) since `since` */
    int64_t passed;                            /* == by_state[RECORDS_JOB_PASSED] */
    int64_t failed;                            /* == by_state[RECORDS_JOB_FAILED] */
    int64_t boards_last_hour; /* distinct boards with a passed job ended in the last hour */
};

/* This station's jobs (on a line's shared database its own; on SQLite the file's). */
int records_counters(struct records *r, int64_t since, struct records_counters *out,
                     struct records_error *err);
/* Every station's jobs on the database. */
int records_counters_line(struct records *r, int64_t since, struct records_counters *out,
                          struct records_error *err);

typedef int (*records_slot_stat_cb)(const char *slot, double mean_seconds, int64_t jobs, void *ctx);

/* Mean duration of passed "flash" jobs per slot of this station, started since
 * `since`, ordered by slot. Returns slots delivered. */
int records_slot_flash_seconds(struct records *r, int64_t since, records_slot_stat_cb cb, void *ctx,
                               struct records_error *err);

#endif
