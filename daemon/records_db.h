/*
 * records_db: the small statement interface records.c runs its SQL through, so
 * the store's logic (validation, row mapping, transactions, recovery) is written
 * once and each database is one file: records_sqlite.c (embedded, the default)
 * and records_pg.c (PostgreSQL via libpq, for a line of stations).
 *
 * The shape follows SQLite's: prepare once, bind numbered parameters (1-based;
 * one not bound is NULL), step through rows, read columns of the current row,
 * reset for the next use. Placeholders are written "?N" (SQLite's numbered
 * form); a backend that spells them otherwise ("$N") translates them itself.
 *
 * Errors: functions return >= 0 on success and a negative errno from the store's
 * vocabulary (records.h) on failure; a constraint violation maps to -EEXIST
 * (unique / primary key), -ENOENT (foreign key) or -EINVAL (check, not null).
 * rdb_errmsg() gives the words of the last failure for the technician.
 *
 * Ownership: a struct rdb_stmt belongs to the connection that prepared it and
 * is finalized before the connection closes. One thread uses a connection.
 */
#ifndef RECORDS_DB_H
#define RECORDS_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rdb;
struct rdb_stmt;

enum rdb_dialect {
    RDB_SQLITE,
    RDB_POSTGRESQL,
};

/* step() results besides -errno */
#define RDB_DONE 0
#define RDB_ROW 1

struct rdb_ops {
    const char *name; /* "sqlite", "postgresql" */
    enum rdb_dialect dialect;
    int (*prepare)(struct rdb *db, const char *sql, struct rdb_stmt **out);
    void (*finalize)(struct rdb_stmt *st);
    /* Ends the current run and clears the bindings. */
    void (*reset)(struct rdb_stmt *st);
    void (*bind_null)(struct rdb_stmt *st, int idx);
    void (*bind_int64)(struct rdb_stmt *st, int idx, int64_t v);
    void (*bind_double)(struct rdb_stmt *st, int idx, double v);
    void (*bind_text)(struct rdb_stmt *st, int idx, const char *s); /* copied */
    /* RDB_ROW, RDB_DONE or -errno. The first step of a write runs it. */
    int (*step)(struct rdb_stmt *st);
    bool (*column_null)(struct rdb_stmt *st, int i);
    int64_t (*column_int64)(struct rdb_stmt *st, int i);
    double (*column_double)(struct rdb_stmt *st, int i);
    const char *(*column_text)(struct rdb_stmt *st, int i); /* NULL for NULL */
    /* Rows the last finished write changed. */
    int64_t (*changes)(struct rdb *db);
    /* Runs one or more statements without parameters or rows. */
    int (*exec)(struct rdb *db, const char *sql);
    /* A write transaction (taking the write lock at once). */
    int (*begin)(struct rdb *db);
    int (*commit)(struct rdb *db);
    void (*rollback)(struct rdb *db);
    /* Makes the commits that follow durable against power loss (true) or only
     * against the process dying (false); a backend whose commits are always
     * durable ignores it. */
    int (*set_durable)(struct rdb *db, bool durable);
    /* Schema version as the backend stores it. */
    int (*get_version)(struct rdb *db, int64_t *version);
    /* Sets it, inside the migration's transaction. */
    int (*set_version)(struct rdb *db, int version);
    /* Full check: 0 ok, -EBADMSG with the problem in rdb_errmsg(). */
    int (*integrity_check)(struct rdb *db);
    const char *(*errmsg)(struct rdb *db);
    void (*close)(struct rdb *db);
};

/* Every backend's connection struct begins with this. */
struct rdb {
    const struct rdb_ops *ops;
};

/* Every backend's statement struct begins with this. */
struct rdb_stmt {
    struct rdb *db;
};

/* ---- backends ---------------------------------------------------------------- */

/* Opens (creating) the SQLite file at path with its lock file, WAL, and the
 * identity check (application_id; a schema version above latest is -ENOTSUP).
 * On failure msg holds the whole message ("records: cannot open <path>: <why>"). */
int rdb_sqlite_open(const char *path, int latest, struct rdb **out, char *msg, size_t msg_size);

/* Connects to PostgreSQL with a libpq connection string ("host=... dbname=..."
 * or a postgresql:// URI), takes the advisory lock of the station (its name,
 * "" for an unnamed store; -EBUSY when another session holds it: stations of
 * other names share the database) and checks the database is ours or empty
 * (-EBADMSG). msg as above. */
int rdb_pg_open(const char *dsn, const char *station, struct rdb **out, char *msg, size_t msg_size);

/* PostgreSQL only (false / 0 / no-op on another backend): whether the
 * connection is up and holds the station's lock; one step of a reconnect that
 * never waits on the network (0 connected, -EIO not yet, -EBUSY the station's
 * name taken); the longest wait for any answer (ms, 0 none: a partition that
 * drops packets is then noticed in that time, the connection closed and -EIO
 * returned). */
bool rdb_pg_connected(struct rdb *db);
/* A store opened while its server was unreachable: nothing connected yet; the
 * first connection (made by rdb_pg_poll) stays held (callers get "records
 * database unreachable") until rdb_pg_hold(db, false). why: the open's failure. */
int rdb_pg_open_offline(const char *dsn, const char *station, const char *why, struct rdb **out,
                        char *msg, size_t msg_size);
bool rdb_pg_ready(struct rdb *db); /* connected and locked, held or not */
void rdb_pg_hold(struct rdb *db, bool hold);
/* The database's identity "<system id>:<oid>:<name>" (connected only). */
int rdb_pg_identity(struct rdb *db, char *buf, size_t n);
int rdb_pg_poll(struct rdb *db);
void rdb_pg_set_answer_ms(struct rdb *db, int ms);

/* The schema of each dialect: migrations[i] takes version i to i + 1. */
extern const char *const rdb_sqlite_migrations[];
extern const char *const rdb_pg_migrations[];
extern const int rdb_migrations_count;

#endif
