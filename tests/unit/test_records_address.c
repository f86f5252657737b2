/*
 * test_records_address: a board's address state (records schema 6).
 *  - records_board_set_address stores ip, its trust and source, and a claim; the
 *    change time moves only when ip changes, the claim time only when the claim does;
 *  - an upsert that changes ip makes the address unconfirmed (nothing but
 *    board_addr may vouch for an address);
 *  - records_board_target_used and records_board_count_unconfirmed (the endpoint's
 *    serving scope and the enrolment cap);
 *  - migration from schema 5: an address the last boot-check board.online event
 *    names stays confirmed, any other stored address becomes unconfirmed.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "records_fixture.h"

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records_addr.XXXXXX");
}

static void put_board(struct fx *f, const char *mac, const char *ip)
{
    struct records_board b;
    struct records_error err;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", mac);
    snprintf(b.chip, sizeof(b.chip), "ESP32");
    if (ip)
        snprintf(b.ip, sizeof(b.ip), "%s", ip);
    assert_int_equal(records_board_upsert(f->r, &b, &err), 0);
}

static struct records_board get(struct fx *f, const char *mac)
{
    struct records_board b;
    assert_int_equal(records_board_get(f->r, mac, &b, NULL), 0);
    return b;
}

static void test_set_address(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    fx_open(f);
    const char *m = "24:6f:28:00:00:01";
    put_board(f, m, NULL);
    struct records_board b = get(f, m);
    assert_string_equal(b.ip, "");
    assert_false(b.ip_confirmed);
    assert_string_equal(b.ip_source, "");

    f->now += 1000;
    assert_int_equal(
        records_board_set_address(f->r, m, "10.0.0.5", false, "checkin", NULL, NULL, &err), 0);
    b = get(f, m);
    assert_string_equal(b.ip, "10.0.0.5");
    assert_false(b.ip_confirmed);
    assert_string_equal(b.ip_source, "checkin");
    assert_int_equal(b.ip_changed_at, f->now);
    int64_t t1 = f->now;

    /* the same ip, now confirmed: the change time stays */
    f->now += 1000;
    assert_int_equal(
        records_board_set_address(f->r, m, "10.0.0.5", true, "boot-check", NULL, NULL, &err), 0);
    b = get(f, m);
    assert_true(b.ip_confirmed);
    assert_string_equal(b.ip_source, "boot-check");
    assert_int_equal(b.ip_changed_at, t1);

    /* a claim: recorded with its time, kept while it stays the same */
    f->now += 1000;
    assert_int_equal(records_board_set_address(f->r, m, "10.0.0.5", true, "boot-check", "10.0.0.66",
                                               "checkin", &err),
                     0);
    int64_t tc = f->now;
    f->now += 1000;
    assert_int_equal(records_board_set_address(f->r, m, "10.0.0.5", true, "boot-check", "10.0.0.66",
                                               "checkin", &err),
                     0);
    b = get(f, m);
    assert_string_equal(b.ip, "10.0.0.5");
    assert_true(b.ip_confirmed);
    assert_string_equal(b.ip_claim, "10.0.0.66");
    assert_string_equal(b.ip_claim_source, "checkin");
    assert_int_equal(b.ip_claim_at, tc);
    /* cleared */
    assert_int_equal(
        records_board_set_address(f->r, m, "10.0.0.5", true, "boot-check", NULL, NULL, &err), 0);
    b = get(f, m);
    assert_string_equal(b.ip_claim, "");
    assert_string_equal(b.ip_claim_source, "");
    assert_int_equal(b.ip_claim_at, 0);

    /* an upsert with another ip: unconfirmed, source unknown; with the same ip: kept */
    put_board(f, m, "10.0.0.5");
    assert_true(get(f, m).ip_confirmed);
    put_board(f, m, NULL);
    assert_true(get(f, m).ip_confirmed);
    put_board(f, m, "10.0.0.9");
    b = get(f, m);
    assert_string_equal(b.ip, "10.0.0.9");
    assert_false(b.ip_confirmed);
    assert_string_equal(b.ip_source, "");

    /* bad input */
    assert_int_equal(records_board_set_address(f->r, "24:6f:28:00:00:99", "10.0.0.1", false,
                                               "checkin", NULL, NULL, &err),
                     -ENOENT);
    assert_int_equal(records_board_set_address(f->r, m, "", true, "boot-check", NULL, NULL, &err),
                     -EINVAL);
    assert_int_equal(
        records_board_set_address(f->r, m, "10.0.0.1\n", false, "checkin", NULL, NULL, &err),
        -EINVAL);
}

/* One address, one confirmed board: records_board_take_address unconfirms every
 * other board holding the address confirmed (ip kept, source "taken") and names
 * them; unconfirmed holders, other addresses and the taker are left alone. */
static void test_take_address(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    char others[1][RECORDS_MAC_LEN];
    fx_open(f);
    const char *a = "24:6f:28:00:00:01", *b = "24:6f:28:00:00:02", *c = "24:6f:28:00:00:03",
               *d = "24:6f:28:00:00:04", *e = "24:6f:28:00:00:05";
    for (const char *const *m = (const char *const[]){a, b, c, d, e, NULL}; *m; m++)
        put_board(f, *m, NULL);
    assert_int_equal(
        records_board_set_address(f->r, a, "10.0.0.5", true, "boot-check", NULL, NULL, &err), 0);
    assert_int_equal(records_board_set_address(f->r, b, "10.0.0.5", true, "operator", "10.0.0.9",
                                               "checkin", &err),
                     0);
    assert_int_equal(
        records_board_set_address(f->r, c, "10.0.0.5", false, "checkin", NULL, NULL, &err), 0);
    assert_int_equal(
        records_board_set_address(f->r, d, "10.0.0.6", true, "boot-check", NULL, NULL, &err), 0);
    assert_int_equal(
        records_board_set_address(f->r, e, "10.0.0.5", true, "checkin-auth", NULL, NULL, &err), 0);

    /* e took 10.0.0.5: a and b lose it (only the first named: max 1). */
    assert_int_equal(records_board_take_address(f->r, e, "10.0.0.5", others, 1, &err), 2);
    assert_true(strcmp(others[0], a) == 0 || strcmp(others[0], b) == 0);
    struct records_board r = get(f, a);
    assert_string_equal(r.ip, "10.0.0.5");
    assert_false(r.ip_confirmed);
    assert_string_equal(r.ip_source, "taken");
    r = get(f, b);
    assert_false(r.ip_confirmed);
    assert_string_equal(r.ip_source, "taken");
    assert_string_equal(r.ip_claim, "10.0.0.9"); /* its pending claim stays */
    r = get(f, c);
    assert_false(r.ip_confirmed);
    assert_string_equal(r.ip_source, "checkin"); /* was not confirmed: untouched */
    r = get(f, d);
    assert_true(r.ip_confirmed); /* another address */
    r = get(f, e);
    assert_true(r.ip_confirmed);
    assert_string_equal(r.ip_source, "checkin-auth");

    /* Nobody else holds it now. */
    assert_int_equal(records_board_take_address(f->r, e, "10.0.0.5", NULL, 0, &err), 0);
    assert_int_equal(records_board_take_address(f->r, e, "", NULL, 0, &err), -EINVAL);
    assert_int_equal(records_board_take_address(f->r, "nope", "10.0.0.5", NULL, 0, &err), -EINVAL);
}

static void test_target_used_and_unconfirmed_count(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    int64_t n = -1;
    fx_open(f);
    assert_int_equal(records_board_target_used(f->r, "app@1.0", &err), 0);
    assert_int_equal(records_board_count_unconfirmed(f->r, &n, &err), 0);
    assert_int_equal(n, 0);

    put_board(f, "24:6f:28:00:00:01", NULL);
    put_board(f, "24:6f:28:00:00:02", NULL);
    put_board(f, "24:6f:28:00:00:03", NULL);
    put_board(f, "24:6f:28:00:00:04", NULL);
    assert_int_equal(records_board_set_target(f->r, "24:6f:28:00:00:01", "app@1.0", &err), 0);
    assert_int_equal(records_board_target_used(f->r, "app@1.0", &err), 1);
    assert_int_equal(records_board_target_used(f->r, "app@2.0", &err), 0);

    /* 02: enrolled by a check-in, unconfirmed: counts. 03: the same, but flashed over
     * serial once: does not. 04: confirmed by an authenticated check-in: does not. 01: no
     * address at all: does not. */
    assert_int_equal(records_board_set_address(f->r, "24:6f:28:00:00:02", "10.0.0.2", false,
                                               "checkin", NULL, NULL, &err),
                     0);
    assert_int_equal(records_board_set_address(f->r, "24:6f:28:00:00:03", "10.0.0.3", false, "mdns",
                                               NULL, NULL, &err),
                     0);
    struct records_job_new jn = {.kind = "flash", .board_mac = "24:6f:28:00:00:03"};
    int64_t id;
    assert_int_equal(records_job_begin(f->r, &jn, &id, &err), 0);
    assert_int_equal(records_board_set_address(f->r, "24:6f:28:00:00:04", "10.0.0.4", true,
                                               "checkin-auth", NULL, NULL, &err),
                     0);
    assert_int_equal(records_board_count_unconfirmed(f->r, &n, &err), 0);
    assert_int_equal(n, 1);
}

/* One statement on a raw connection. */
static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static void test_migrates_schema5(void **state)
{
    FX_SQLITE_ONLY();
    struct fx *f = *state;
    fx_open(f);
    assert_true(records_schema_latest() >= 6);
    records_close(f->r);
    f->r = NULL;
    /* A schema-5 database: boards 01 (ip from a boot check, the last boot-check event names
     * it), 02 (ip from a check-in), 03 (a boot check named 10.0.0.3, a check-in moved it to
     * 10.0.0.99 since). */
    static const char *const to_v5 = FX_UNDO_SCHEMA7
        "DROP INDEX boards_target;"
        "ALTER TABLE boards DROP COLUMN ip_confirmed;"
        "ALTER TABLE boards DROP COLUMN ip_source;"
        "ALTER TABLE boards DROP COLUMN ip_changed_at;"
        "ALTER TABLE boards DROP COLUMN ip_claim;"
        "ALTER TABLE boards DROP COLUMN ip_claim_source;"
        "ALTER TABLE boards DROP COLUMN ip_claim_at;"
        "PRAGMA user_version = 5;"
        "INSERT INTO boards (mac, chip, first_seen, last_seen, ip) VALUES "
        "('24:6f:28:00:00:01', 'ESP32', 1, 2, '10.0.0.1'),"
        "('24:6f:28:00:00:02', 'ESP32', 1, 2, '10.0.0.2'),"
        "('24:6f:28:00:00:03', 'ESP32', 1, 2, '10.0.0.99');"
        "INSERT INTO events (ts, kind, board_mac, data) VALUES "
        "(1, 'board.online', '24:6f:28:00:00:01', "
        "'{\"ip\":\"10.0.0.7\",\"source\":\"boot-check\"}'),"
        "(2, 'board.online', '24:6f:28:00:00:01', "
        "'{\"ip\":\"10.0.0.1\",\"source\":\"boot-check\"}'),"
        "(3, 'board.online', '24:6f:28:00:00:02', '{\"ip\":\"10.0.0.2\",\"version\":\"1.0\"}'),"
        "(4, 'board.online', '24:6f:28:00:00:03', "
        "'{\"ip\":\"10.0.0.3\",\"source\":\"boot-check\"}');";
    assert_int_equal(raw_exec(f->path, to_v5), SQLITE_OK);
    fx_open(f);
    assert_int_equal(records_schema_version(f->r), records_schema_latest());
    assert_int_equal(records_integrity_check(f->r, NULL), 0);
    struct records_board b = get(f, "24:6f:28:00:00:01");
    assert_string_equal(b.ip, "10.0.0.1");
    assert_true(b.ip_confirmed);
    assert_string_equal(b.ip_source, "boot-check");
    b = get(f, "24:6f:28:00:00:02");
    assert_string_equal(b.ip, "10.0.0.2");
    assert_false(b.ip_confirmed);
    assert_string_equal(b.ip_source, "");
    b = get(f, "24:6f:28:00:00:03");
    assert_string_equal(b.ip, "10.0.0.99");
    assert_false(b.ip_confirmed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_used_and_unconfirmed_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_schema5, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
