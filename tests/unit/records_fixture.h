/*
 * records_fixture: the cmocka fixture the records tests share (included by
 * test_records*.c after <cmocka.h>; static functions, one copy per test).
 *
 * A fixture is a fresh temporary directory holding the database path, a fake
 * clock (unix ms) and the open store. setup_in() makes the directory from a
 * mkdtemp template; teardown() closes the store and removes the directory
 * (made writable again first: some tests make it read-only).
 */
#ifndef RECORDS_FIXTURE_H
#define RECORDS_FIXTURE_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "records.h"

struct fx {
    char dir[64];
    char path[128];
    int64_t now; /* fake clock, unix ms */
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

/* A new fixture in a directory made from tmpl ("/tmp/name.XXXXXX"); the store
 * is not open yet (fx_open). */
static int setup_in(void **state, const char *tmpl)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s", tmpl);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/records.db", f->dir);
    f->now = 1700000000000LL; /* 2023-11-14T22:13:20.000Z */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    records_close(f->r);
    chmod(f->dir, 0700);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Opens f->path with the fake clock (recovery at open uses the real clock). */
static void fx_open(struct fx *f)
{
    struct records_error err;
    int rc = records_open(f->path, &f->r, &err);
    if (rc < 0)
        print_error("records_open: %s\n", err.message);
    assert_int_equal(rc, 0);
    records_set_clock(f->r, fake_clock, f);
}

#endif
