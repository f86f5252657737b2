/*
 * records_basic: the board and job helpers test_records.c and test_records_jobs.c share
 * (included after records_fixture.h; static functions, one copy per test): reopen the
 * fixture's store, upsert a board, begin and finish a job, one raw SQLite statement.
 */
#ifndef RECORDS_BASIC_H
#define RECORDS_BASIC_H

#include <stdio.h>

#include <sqlite3.h>

#include "records.h"
#include "records_fixture.h"

static void fx_reopen(struct fx *f)
{
    records_close(f->r);
    f->r = NULL;
    fx_open(f);
}

static void put_board(struct fx *f, const char *mac, const char *chip, const char *slot)
{
    struct records_board b;
    struct records_error err;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", mac);
    snprintf(b.chip, sizeof(b.chip), "%s", chip);
    snprintf(b.slot, sizeof(b.slot), "%s", slot);
    assert_int_equal(records_board_upsert(f->r, &b, &err), 0);
}

static int64_t begin_job(struct fx *f, const char *kind, const char *mac, const char *slot)
{
    struct records_job_new j = {
        .kind = kind, .board_mac = mac, .slot = slot, .firmware = "blink@1.0", .stage = "sync"};
    int64_t id = 0;
    struct records_error err;
    int rc = records_job_begin(f->r, &j, &id, &err);
    if (rc < 0)
        print_error("job_begin: %s\n", err.message);
    assert_int_equal(rc, 0);
    assert_true(id > 0);
    return id;
}

static void finish_job(struct fx *f, int64_t id, enum records_job_state s, double secs)
{
    struct records_job_result res;
    records_job_result_init(&res);
    res.state = s;
    res.seconds = secs;
    res.bytes = 1000000;
    assert_int_equal(records_job_finish(f->r, id, &res, NULL), 0);
}

/* Runs one SQL statement on a raw connection; returns the SQLite code and the
 * first column of the first row in out. */
static int raw_sql(const char *path, const char *sql, char *out, size_t n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (out && n)
        out[0] = '\0';
    sqlite3_extended_result_codes(db, 1);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && out && sqlite3_column_text(st, 0))
            snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            rc = SQLITE_OK;
        else if (out && n)
            snprintf(out, n, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

#endif
