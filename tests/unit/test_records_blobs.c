/*
 * test_records_blobs: schema 7's line calls of records_blobs.h on both backends
 * (run again on PostgreSQL by unit_test_records_blobs_pg): which station holds
 * which firmware blob (put, again, drop, bad hashes refused), the holders another
 * station sees (fresh heartbeats first, its own rows never), and the bulk leases:
 * a claim wins on a bulk without owner, loses while another station's lease runs,
 * wins once it ran out (one winner of two), renewals by the owner only, nothing
 * claimed on a finished bulk. Stations are stores opened under their names one
 * after another (a SQLite file is one process's at a time).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "records.h"
#include "records_blobs.h"
#include "records_fixture.h"

static const char SHA_A[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char SHA_B[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records_blobs.XXXXXX");
}

/* Closes the fixture's store and opens it again as station name (fake clock). */
static void open_as(struct fx *f, const char *name)
{
    records_close(f->r);
    f->r = NULL;
    struct records_error err;
    int rc = records_open_station(fx_pg_dsn() ? RECORDS_BACKEND_POSTGRESQL : RECORDS_BACKEND_SQLITE,
                                  f->path, name, &f->r, &err);
    if (rc < 0)
        print_error("open as %s: %s\n", name, err.message);
    assert_int_equal(rc, 0);
    records_set_clock(f->r, fake_clock, f);
}

/* One statement outside the store (the stations table has no records call here). */
static void raw(struct fx *f, const char *sql)
{
    if (fx_pg_dsn()) {
        char out[256];
        if (fx_pg_sql(f->path, sql, out, sizeof(out)) < 0)
            fail_msg("%s: %s", sql, out);
        return;
    }
    sqlite3 *db = NULL;
    char *msg = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

struct holders {
    int n;
    char names[8][RECORDS_STATION_LEN];
    char addr[8][RECORDS_ADDRESS_LEN];
    int64_t size[8];
};

static int holder_cb(const struct records_blob_holder *h, void *ctx)
{
    struct holders *hs = ctx;
    if (hs->n < 8) {
        snprintf(hs->names[hs->n], RECORDS_STATION_LEN, "%s", h->station);
        snprintf(hs->addr[hs->n], RECORDS_ADDRESS_LEN, "%s", h->address);
        hs->size[hs->n] = h->size;
    }
    hs->n++;
    return 0;
}

static int count_cb(const char *sha, int64_t size, void *ctx)
{
    (void)sha;
    (void)size;
    (*(int *)ctx)++;
    return 0;
}

static void test_blobs_holders(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct holders hs;
    fx_open(f); /* an unnamed store first: the schema */
    open_as(f, "st1");
    assert_int_equal(records_blob_put(f->r, SHA_A, 1000, &err), 0);
    assert_int_equal(records_blob_put(f->r, SHA_A, 1001, &err), 0); /* again: the size */
    assert_int_equal(records_blob_put(f->r, SHA_B, 5, &err), 0);
    assert_int_equal(records_blob_put(f->r, "ABCD", 5, &err), -EINVAL);
    assert_int_equal(records_blob_put(f->r, NULL, 5, &err), -EINVAL);
    char upper[65];
    snprintf(upper, sizeof(upper), "%s", SHA_B);
    upper[10] = 'A';
    assert_int_equal(records_blob_put(f->r, upper, 5, &err), -EINVAL);
    assert_int_equal(records_blob_put(f->r, SHA_A, -1, &err), -EINVAL);
    int mine = 0;
    assert_int_equal(records_blob_list_mine(f->r, count_cb, &mine, &err), 2);
    /* a station never lists itself as a holder */
    memset(&hs, 0, sizeof(hs));
    assert_int_equal(records_blob_holders(f->r, SHA_A, 0, holder_cb, &hs, &err), 0);

    open_as(f, "st3");
    assert_int_equal(records_blob_put(f->r, SHA_A, 1001, &err), 0);
    open_as(f, "st2");
    memset(&hs, 0, sizeof(hs));
    /* no station rows yet: both holders, by name */
    assert_int_equal(records_blob_holders(f->r, SHA_A, f->now - 30000, holder_cb, &hs, &err), 2);
    assert_string_equal(hs.names[0], "st1");
    assert_string_equal(hs.addr[0], "");
    assert_int_equal(hs.size[0], 1001);
    assert_string_equal(hs.names[1], "st3");
    /* st3 heartbeats now, st1 stopped a minute ago: st3 first, with its address */
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO stations (name, address, heartbeat_at) VALUES "
             "('st1', 'http://10.0.0.1:8080', %lld), ('st3', 'http://10.0.0.3:8080', %lld)",
             (long long)(f->now - 60000), (long long)f->now);
    raw(f, sql);
    memset(&hs, 0, sizeof(hs));
    assert_int_equal(records_blob_holders(f->r, SHA_A, f->now - 30000, holder_cb, &hs, &err), 2);
    assert_string_equal(hs.names[0], "st3");
    assert_string_equal(hs.addr[0], "http://10.0.0.3:8080");
    assert_string_equal(hs.names[1], "st1");
    memset(&hs, 0, sizeof(hs));
    assert_int_equal(records_blob_holders(f->r, SHA_B, 0, holder_cb, &hs, &err), 1);
    assert_int_equal(hs.size[0], 5);

    /* st3 drops it: st1 is the only holder left */
    open_as(f, "st3");
    assert_int_equal(records_blob_drop(f->r, SHA_A, &err), 0);
    assert_int_equal(records_blob_drop(f->r, SHA_A, &err), 0);
    open_as(f, "st2");
    memset(&hs, 0, sizeof(hs));
    assert_int_equal(records_blob_holders(f->r, SHA_A, 0, holder_cb, &hs, &err), 1);
    assert_string_equal(hs.names[0], "st1");
    mine = 0;
    assert_int_equal(records_blob_list_mine(f->r, count_cb, &mine, &err), 0);
}

static int64_t make_bulk(struct fx *f)
{
    struct records_bulk b;
    struct records_bulk_board bb;
    struct records_error err;
    memset(&b, 0, sizeof(b));
    memset(&bb, 0, sizeof(bb));
    snprintf(b.firmware, sizeof(b.firmware), "app@2.0");
    snprintf(b.version, sizeof(b.version), "2.0");
    snprintf(b.method, sizeof(b.method), "espota");
    b.concurrency = 1;
    b.retries = 1;
    b.timeout_s = 60;
    b.max_failure_rate = 0.5;
    snprintf(bb.mac, sizeof(bb.mac), "aa:bb:cc:00:00:01");
    snprintf(bb.state, sizeof(bb.state), "pending");
    int rc = records_bulk_create(f->r, &b, &bb, 1, &err);
    if (rc < 0)
        print_error("bulk_create: %s\n", err.message);
    assert_int_equal(rc, 0);
    return b.id;
}

static int lease_cb(const struct records_bulk_lease *l, void *ctx)
{
    *(struct records_bulk_lease *)ctx = *l;
    return 0;
}

static void test_bulk_lease(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_bulk_lease prev, seen;
    fx_open(f);
    open_as(f, "st1");
    int64_t id = make_bulk(f);
    /* no owner yet: st1 takes it */
    assert_int_equal(records_bulk_claim(f->r, id, 15000, &prev, &err), 1);
    assert_string_equal(prev.owner, "");
    assert_int_equal(records_bulk_claim(f->r, id, 15000, NULL, &err), 1); /* its own again */
    assert_int_equal(records_bulk_claim(f->r, id, 0, NULL, &err), -EINVAL);
    assert_int_equal(records_bulk_claim(f->r, 9999, 15000, &prev, &err), -ENOENT);
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(records_bulk_leases(f->r, lease_cb, &seen, &err), 1);
    assert_int_equal(seen.id, id);
    assert_string_equal(seen.owner, "st1");
    assert_int_equal(seen.lease_until, f->now + 15000);
    f->now += 10000;
    assert_int_equal(records_bulk_renew(f->r, id, 15000, &err), 1);

    /* st2 while st1's lease runs: refused */
    open_as(f, "st2");
    f->now += 14000;
    assert_int_equal(records_bulk_claim(f->r, id, 15000, &prev, &err), 0);
    assert_string_equal(prev.owner, "st1");
    assert_int_equal(records_bulk_renew(f->r, id, 15000, &err), 0); /* not st2's */
    /* st1 died: its lease (until t0 + 25 s) runs out; st2 takes the bulk over */
    f->now += 1001;
    assert_int_equal(records_bulk_claim(f->r, id, 15000, &prev, &err), 1);
    assert_string_equal(prev.owner, "st1");
    assert_int_equal(prev.lease_until, 1700000000000LL + 25000);

    /* st3 at the same moment: st2's new lease runs, st3 loses */
    open_as(f, "st3");
    assert_int_equal(records_bulk_claim(f->r, id, 15000, &prev, &err), 0);
    assert_string_equal(prev.owner, "st2");

    /* st1 comes back: its renewal says the bulk is no longer its own */
    open_as(f, "st1");
    assert_int_equal(records_bulk_renew(f->r, id, 15000, &err), 0);

    /* a finished bulk is claimed by nobody, even with its lease run out */
    open_as(f, "st2");
    assert_int_equal(records_bulk_set_state(f->r, id, "passed", NULL, &err), 0);
    f->now += 60000;
    open_as(f, "st3");
    assert_int_equal(records_bulk_claim(f->r, id, 15000, NULL, &err), 0);
    assert_int_equal(records_bulk_leases(f->r, lease_cb, &seen, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_blobs_holders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_lease, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
