/*
 * records_fixture: the cmocka fixture the records tests share (included by
 * test_records*.c after <cmocka.h>; static functions, one copy per test).
 *
 * A fixture is a fresh temporary directory holding the database path, a fake
 * clock (unix ms) and the open store. setup_in() makes the directory from a
 * mkdtemp template; teardown() closes the store and removes the directory
 * (made writable again first: some tests make it read-only).
 *
 * Backend: with ESPSTATION_TEST_PG_DSN set (a libpq connection string to a
 * server where the user may CREATE DATABASE; tests/integration/pg_with.sh starts
 * one), every fixture gets a fresh PostgreSQL database instead, f->path is its
 * connection string, and fx_records_open() opens it — so the same tests run on
 * both backends. Tests of SQLite's own file handling call FX_SQLITE_ONLY(),
 * which skips them on PostgreSQL.
 */
#ifndef RECORDS_FIXTURE_H
#define RECORDS_FIXTURE_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "records.h"

struct fx {
    char dir[64];
    char path[512]; /* SQLite file, or PostgreSQL connection string */
    char pgdb[64];  /* PostgreSQL: the fixture's database, "" on SQLite */
    int64_t now;    /* fake clock, unix ms */
    struct records *r;
};

static int64_t fake_clock(void *ctx)
{
    return ((struct fx *)ctx)->now;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static const char *fx_pg_dsn(void)
{
    const char *d = getenv("ESPSTATION_TEST_PG_DSN");
    return d && *d ? d : NULL;
}

#define FX_SQLITE_ONLY()                                                                           \
    do {                                                                                           \
        if (fx_pg_dsn())                                                                           \
            skip(); /* tests SQLite's file handling */                                             \
    } while (0)

/* Runs sql on the PostgreSQL server of the fixture (its own database when db,
 * else the DSN's); 0 or -1 with the server's message in out. First row's first
 * column in out on success. */
static int fx_pg_sql(const char *dsn, const char *sql, char *out, size_t n)
{
    PGconn *c = PQconnectdb(dsn);
    int ret = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *res = PQexec(c, sql);
        ExecStatusType s = PQresultStatus(res);
        ret = (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) ? 0 : -1;
        if (out && n)
            snprintf(out, n, "%s",
                     ret < 0                                    ? PQresultErrorMessage(res)
                     : PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0)
                                                                : "");
        PQclear(res);
    } else if (out && n) {
        snprintf(out, n, "%s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ret;
}

/* Opens the fixture's store on its backend. */
static int fx_records_open(const char *path, struct records **out, struct records_error *err)
{
    if (fx_pg_dsn())
        return records_open_backend(RECORDS_BACKEND_POSTGRESQL, path, out, err);
    return records_open(path, out, err);
}

/* A new fixture in a directory made from tmpl ("/tmp/name.XXXXXX"); the store
 * is not open yet (fx_open). */
static int setup_in(void **state, const char *tmpl)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s", tmpl);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/records.db", f->dir);
    if (fx_pg_dsn()) {
        static unsigned seq;
        char sql[128], out[256];
        snprintf(f->pgdb, sizeof(f->pgdb), "fx_%ld_%u", (long)getpid(), ++seq);
        snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->pgdb);
        if (fx_pg_sql(fx_pg_dsn(), sql, out, sizeof(out)) < 0)
            fail_msg("PostgreSQL test database: %s", out);
        snprintf(f->path, sizeof(f->path), "%s dbname=%s", fx_pg_dsn(), f->pgdb);
    }
    f->now = 1700000000000LL; /* 2023-11-14T22:13:20.000Z */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    records_close(f->r);
    if (f->pgdb[0]) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->pgdb);
        fx_pg_sql(fx_pg_dsn(), sql, NULL, 0);
    }
    chmod(f->dir, 0700);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Takes a latest-schema SQLite file back to schema 8 (before migration 9's
 * jobs.skipped_bytes). */
#define FX_UNDO_SCHEMA9 "ALTER TABLE jobs DROP COLUMN skipped_bytes;"

/* Takes a latest-schema SQLite file back to schema 7 (before migration 8's
 * journal keys). */
#define FX_UNDO_SCHEMA8                                                                            \
    FX_UNDO_SCHEMA9                                                                                \
    "DROP INDEX job_log_jkey;"                                                                     \
    "DROP INDEX events_jkey;"                                                                      \
    "ALTER TABLE job_log DROP COLUMN jkey;"                                                        \
    "ALTER TABLE events DROP COLUMN jkey;"

/* Takes a latest-schema SQLite file back to schema 6 (before migration 7's
 * line of stations), for the migration tests of older versions. */
#define FX_UNDO_SCHEMA7                                                                            \
    FX_UNDO_SCHEMA8                                                                                \
    "DROP TABLE stations;"                                                                         \
    "DROP TABLE serials;"                                                                          \
    "DROP TABLE blobs;"                                                                            \
    "DROP INDEX jobs_station;"                                                                     \
    "ALTER TABLE jobs DROP COLUMN station;"                                                        \
    "ALTER TABLE events DROP COLUMN station;"                                                      \
    "ALTER TABLE bulks DROP COLUMN owner;"                                                         \
    "ALTER TABLE bulks DROP COLUMN lease_until;"

/* Opens f->path with the fake clock (recovery at open uses the real clock). */
static void fx_open(struct fx *f)
{
    struct records_error err;
    int rc = fx_records_open(f->path, &f->r, &err);
    if (rc < 0)
        print_error("records_open: %s\n", err.message);
    assert_int_equal(rc, 0);
    assert_int_equal(records_backend(f->r),
                     fx_pg_dsn() ? RECORDS_BACKEND_POSTGRESQL : RECORDS_BACKEND_SQLITE);
    records_set_clock(f->r, fake_clock, f);
}

#endif
