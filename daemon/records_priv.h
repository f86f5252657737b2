/*
 * records_priv: what the records store's files share (records.c, the core written
 * once for every backend, and the records_*.c files that each hold a part of the
 * API on top of it). Not for anyone else: the daemon uses records.h.
 *
 * A part prepares its statements with rec_prep() (cached per store by the SQL
 * text's address, so the text must be a string constant) and ends each call with
 * the shared endings (rec_get_one, rec_write_done, rec_change_one,
 * rec_next_row/rec_list_done).
 */
#ifndef RECORDS_PRIV_H
#define RECORDS_PRIV_H

#include "records.h"
#include "records_db.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every part's statements together (records.c and the records_*.c files hold 76). */
#define RECORDS_PREP_MAX 128

/* LIMIT for "no limit": both dialects take a bigint (PostgreSQL refuses -1). */
#define REC_NO_LIMIT INT64_MAX

struct rec_journal;

struct records {
    struct rdb *db;
    char *path; /* the file, or the DSN without its password, for messages */
    /* the prepared statements of every part, cached by their SQL text */
    struct {
        const char *sql;
        struct rdb_stmt *st;
    } prep[RECORDS_PREP_MAX];
    int n_prep;
    char station[RECORDS_STATION_LEN]; /* this station's name (jobs, events, recovery) */
    records_clock_fn clock;
    void *clock_ctx;
    int recovered;
    int schema_version;
    bool in_callback;
    struct rec_journal *jr; /* PostgreSQL's write-behind journal (records_journal.c), or NULL */
    bool jr_direct;         /* inside the journal: the API function's own code runs */
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

/* ---- backend calls ---------------------------------------------------------- */

static inline int rdb_step(struct rdb_stmt *st)
{
    return st->db->ops->step(st);
}

static inline void rdb_bind_int64(struct rdb_stmt *st, int idx, int64_t v)
{
    st->db->ops->bind_int64(st, idx, v);
}

static inline void rdb_bind_double(struct rdb_stmt *st, int idx, double v)
{
    st->db->ops->bind_double(st, idx, v);
}

static inline void rdb_bind_null(struct rdb_stmt *st, int idx)
{
    st->db->ops->bind_null(st, idx);
}

static inline void rdb_bind_text(struct rdb_stmt *st, int idx, const char *s)
{
    st->db->ops->bind_text(st, idx, s);
}

static inline int64_t rdb_column_int64(struct rdb_stmt *st, int i)
{
    return st->db->ops->column_int64(st, i);
}

static inline double rdb_column_double(struct rdb_stmt *st, int i)
{
    return st->db->ops->column_double(st, i);
}

static inline const char *rdb_column_text(struct rdb_stmt *st, int i)
{
    return st->db->ops->column_text(st, i);
}

static inline int64_t rdb_changes(struct rdb *db)
{
    return db->ops->changes(db);
}

static inline int rdb_begin(struct rdb *db)
{
    return db->ops->begin(db);
}

static inline int rdb_commit(struct rdb *db)
{
    return db->ops->commit(db);
}

static inline void rdb_rollback(struct rdb *db)
{
    db->ops->rollback(db);
}

static inline int rdb_set_durable(struct rdb *db, bool durable)
{
    return db->ops->set_durable(db, durable);
}

/* ---- shared helpers (records.c) ------------------------------------------------ */

int rec_set_err(struct records_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int rec_vset_err(struct records_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
void rec_clear_err(struct records_error *err);
/* A backend failure (code: its -errno) with the backend's words. */
int rec_db_err(struct records *r, struct records_error *err, int code, const char *what);
/* Copies s into dst (size n), cut on a UTF-8 character boundary if too long. */
void rec_copy_trunc(char *dst, size_t n, const char *s);
int rec_check_text(const char *what, const char *s, size_t max, struct records_error *err);
int rec_check_token(const char *what, const char *s, size_t max, struct records_error *err);
int rec_normalize_mac(const char *in, char out[RECORDS_MAC_LEN], struct records_error *err);
int rec_check_array(const char *what, const char *a, size_t size, struct records_error *err);
bool rec_json_object_text(const char *s);

/* A statement of a records_*.c file: sql is a string constant (its address is the
 * cache key), sql_pg PostgreSQL's text where the dialects differ (or NULL). */
int rec_prep(struct records *r, const char *sql, const char *sql_pg, struct rdb_stmt **out,
             struct records_error *err);
void rec_stmt_done(struct rdb_stmt *st);
/* NULL or "" binds SQL NULL. */
void rec_bind_text(struct rdb_stmt *st, int idx, const char *s);
void rec_bind_trunc(struct rdb_stmt *st, int idx, const char *s, size_t max);
/* Negative binds SQL NULL ("unknown"). */
void rec_bind_opt_int(struct rdb_stmt *st, int idx, int64_t v);
void rec_col_text(struct rdb_stmt *st, int i, char *dst, size_t n);
int64_t rec_col_int(struct rdb_stmt *st, int i, int64_t dflt);
double rec_col_real(struct rdb_stmt *st, int i, double dflt);
int rec_step_durable(struct records *r, struct rdb_stmt *st);
int rec_step_insert_id(struct records *r, struct rdb_stmt *st, bool durable, int64_t *id);
/* Steps a one-shot cached write statement (and resets it): 0 or -errno. */
int rec_step_once(struct rdb_stmt *st);
/* 1 to max - 1 of A-Z a-z 0-9 . _ - (group and station names). */
bool rec_name_ok(const char *name, size_t max);

/* The events INSERT (records_events.c), also run by records.c's crash recovery. */
extern const char rec_sql_event_append[];

/* Fills a caller's struct (void *: one reader serves get and list). */
typedef void (*row_reader)(struct rdb_stmt *st, void *out);
int rec_get_one(struct records *r, struct rdb_stmt *st, row_reader read, void *out,
                const char *what, struct records_error *err, const char *missing, ...)
    __attribute__((format(printf, 7, 8)));
int rec_write_done(struct records *r, struct rdb_stmt *st, int rc, const char *what,
                   struct records_error *err);
int rec_change_one(struct records *r, struct rdb_stmt *st, int rc, const char *what,
                   struct records_error *err, const char *missing, ...)
    __attribute__((format(printf, 6, 7)));
bool rec_next_row(struct records *r, struct rdb_stmt *st, int *rc, int *n);
int rec_list_done(struct records *r, struct rdb_stmt *st, int rc, int n, const char *what,
                  struct records_error *err);

/* ---- the write-behind journal (records_journal.c) ------------------------------ */

/* True when a journaled write goes through the journal first (it calls the
 * API function (records_*.c) again with jr_direct set for the direct write). */
#define JOURNALED(r) ((r)->jr && !(r)->jr_direct)
/* offline_why: the open could not reach the database (that error): the store
 * starts offline when the journal's state file allows it, else fails with it. */
int rj_attach(struct records *r, const char *path, const char *offline_why,
              struct records_error *err);
/* records.c's open steps, run late by an offline start (records_tick). */
int rec_migrate(struct records *r, struct records_error *err);
int rec_recover(struct records *r, bool (*mine_fn)(void *ctx, int64_t id), void *ctx,
                struct records_error *err);
void rj_free(struct rec_journal *jr);
int rj_board_upsert(struct records *r, const struct records_board *b, struct records_error *err);
int rj_job_begin(struct records *r, const struct records_job_new *j, int64_t *id,
                 struct records_error *err);
int rj_job_set_board(struct records *r, int64_t id, const char *mac, struct records_error *err);
int rj_job_set_firmware(struct records *r, int64_t id, const char *firmware,
                        struct records_error *err);
int rj_job_progress(struct records *r, int64_t id, const char *stage, int64_t bytes,
                    int64_t wire_bytes, struct records_error *err);
int rj_job_log(struct records *r, int64_t id, const char *level, const char *line,
               struct records_error *err);
int rj_job_finish(struct records *r, int64_t id, const struct records_job_result *res,
                  struct records_error *err);
int rj_event_append(struct records *r, const struct records_event_new *e, int64_t *id,
                    struct records_error *err);
const char *rdb_errmsg_of(struct records *r);

#define ENTER(r, err)                                                                              \
    do {                                                                                           \
        rec_clear_err(err);                                                                        \
        if (!(r))                                                                                  \
            return rec_set_err((err), -EINVAL, "records: store not open");                         \
        if ((r)->in_callback)                                                                      \
            return rec_set_err((err), -EBUSY, "records: called from inside a records callback");   \
    } while (0)

#endif
