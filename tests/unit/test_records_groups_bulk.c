/*
 * test_records_groups_bulk: the records store's schema 3 against real SQLite
 * files in a temporary directory: the in-place migration of a schema-2
 * database (boards, jobs and notes kept; the new tables usable), board notes
 * and groups (validation, replacement, duplicates, the 16-group limit, the
 * group filter of the board list, unknown MACs), and the persistent bulk
 * updates (create with boards, per-board updates, state changes with
 * ended_at, counts, listing newest first with a state filter, survival across
 * a close/reopen, bad input refused, and the password never stored); schema 4's
 * per-slot baud limit; schema 5's per-board pools.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "records.h"
#include "records_fixture.h"

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records_gb.XXXXXX");
}

static void fx_close(struct fx *f)
{
    records_close(f->r);
    f->r = NULL;
}

/* One statement on a raw connection; first column of the first row into out. */
static int raw_sql(const char *path, const char *sql, char *out, size_t n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (out && n)
        out[0] = '\0';
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && out && sqlite3_column_text(st, 0))
            snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

static void put_board(struct fx *f, const char *mac, const char *chip)
{
    struct records_board b;
    struct records_error err;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", mac);
    snprintf(b.chip, sizeof(b.chip), "%s", chip);
    assert_int_equal(records_board_upsert(f->r, &b, &err), 0);
}

static void set_groups(struct fx *f, const char *mac, const char *const *names, size_t n)
{
    struct records_error err;
    int rc = records_board_set_groups(f->r, mac, names, n, &err);
    if (rc < 0)
        print_error("set_groups: %s\n", err.message);
    assert_int_equal(rc, 0);
}

/* ---- migration ------------------------------------------------------------ */

static void test_migrates_schema2_in_place(void **state)
{
    FX_SQLITE_ONLY();
    struct fx *f = *state;
    char out[256];
    /* A schema-2 database: today's store without the objects of schemas 3 to 9. */
    fx_open(f);
    assert_true(records_schema_latest() >= 3);
    fx_close(f);
    static const char *const to_v2[] = {
        "ALTER TABLE jobs DROP COLUMN skipped_bytes",
        "DROP INDEX job_log_jkey",
        "DROP INDEX events_jkey",
        "ALTER TABLE job_log DROP COLUMN jkey",
        "ALTER TABLE events DROP COLUMN jkey",
        "DROP TABLE stations",
        "DROP TABLE serials",
        "DROP TABLE blobs",
        "DROP INDEX jobs_station",
        "ALTER TABLE jobs DROP COLUMN station",
        "ALTER TABLE events DROP COLUMN station",
        "ALTER TABLE bulks DROP COLUMN owner",
        "ALTER TABLE bulks DROP COLUMN lease_until",
        "DROP INDEX boards_target",
        "ALTER TABLE boards DROP COLUMN ip_confirmed",
        "ALTER TABLE boards DROP COLUMN ip_source",
        "ALTER TABLE boards DROP COLUMN ip_changed_at",
        "ALTER TABLE boards DROP COLUMN ip_claim",
        "ALTER TABLE boards DROP COLUMN ip_claim_source",
        "ALTER TABLE boards DROP COLUMN ip_claim_at",
        "DROP TABLE pool_items",
        "DROP TABLE slot_link",
        "DROP TABLE bulk_boards",
        "DROP TABLE bulks",
        "DROP TABLE board_groups",
        "PRAGMA user_version = 2",
        "INSERT INTO boards (mac, chip, first_seen, last_seen, notes) VALUES "
        "('24:6f:28:00:00:01', 'ESP32', 1, 2, 'group=line-a; bench 3')",
        "INSERT INTO jobs (kind, board_mac, state, started_at) VALUES "
        "('flash', '24:6f:28:00:00:01', 'passed', 5)"};
    for (size_t i = 0; i < sizeof(to_v2) / sizeof(to_v2[0]); i++)
        assert_int_equal(raw_sql(f->path, to_v2[i], out, sizeof(out)), SQLITE_OK);
    assert_int_equal(raw_sql(f->path, "PRAGMA user_version", out, sizeof(out)), SQLITE_OK);
    assert_string_equal(out, "2");

    fx_open(f);
    assert_int_equal(records_schema_version(f->r), records_schema_latest());
    assert_int_equal(records_integrity_check(f->r, NULL), 0);
    struct records_board b;
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_string_equal(b.chip, "ESP32");
    assert_string_equal(b.notes, "group=line-a; bench 3"); /* kept as text */
    assert_int_equal(b.n_groups, 0);
    struct records_job j;
    assert_int_equal(records_job_get(f->r, 1, &j, NULL), 0);
    assert_int_equal(j.state, RECORDS_JOB_PASSED);
    const char *g[] = {"line-a"};
    set_groups(f, "24:6f:28:00:00:01", g, 1);
    fx_close(f);
    static const char *const tables[] = {"board_groups", "bulks", "bulk_boards", "slot_link",
                                         "pool_items"};
    for (size_t i = 0; i < 5; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM sqlite_master WHERE name = '%s'",
                 tables[i]);
        assert_int_equal(raw_sql(f->path, sql, out, sizeof(out)), SQLITE_OK);
        assert_string_equal(out, "1");
    }
    assert_int_equal(raw_sql(f->path, "SELECT name FROM board_groups", out, sizeof(out)),
                     SQLITE_OK);
    assert_string_equal(out, "line-a");
}

/* ---- notes and groups ----------------------------------------------------- */

static void test_board_notes(void **state)
{
    struct fx *f = *state;
    struct records_board b;
    struct records_error err;
    fx_open(f);
    put_board(f, "24:6f:28:00:00:01", "ESP32");
    assert_int_equal(
        records_board_set_notes(f->r, "24-6F-28-00-00-01", "bench 3, cracked USB", &err), 0);
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_string_equal(b.notes, "bench 3, cracked USB");
    /* an upsert without notes keeps them */
    put_board(f, "24:6f:28:00:00:01", "ESP32");
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_string_equal(b.notes, "bench 3, cracked USB");
    /* too long: truncated on a character boundary */
    char longtext[1200];
    for (size_t i = 0; i + 2 < sizeof(longtext); i += 2)
        memcpy(longtext + i, "\xc3\xa9", 2); /* é */
    longtext[sizeof(longtext) - 2] = '\0';
    assert_int_equal(records_board_set_notes(f->r, "24:6f:28:00:00:01", longtext, NULL), 0);
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_true(strlen(b.notes) <= RECORDS_TEXT_LEN - 1);
    assert_int_equal(strlen(b.notes) % 2, 0);
    /* NULL clears */
    assert_int_equal(records_board_set_notes(f->r, "24:6f:28:00:00:01", NULL, NULL), 0);
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_string_equal(b.notes, "");
    assert_int_equal(records_board_set_notes(f->r, "24:6f:28:00:00:99", "x", &err), -ENOENT);
    assert_non_null(strstr(err.message, "no board 24:6f:28:00:00:99"));
    assert_int_equal(records_board_set_notes(f->r, "not-a-mac", "x", &err), -EINVAL);
}

/* A slot's learnt baud limit: stored by slot key, replaced, cleared, kept across
 * a close/reopen, independent per slot; bad keys refused. */
static void test_slot_baud_limit(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    uint32_t baud = 7;
    const char *a1 = "pci-0000:00:14.0-usb-0:1.1:1.0-port0", *a2 = "uri:tcp://10.0.0.5:4000";
    fx_open(f);
    assert_int_equal(records_slot_baud_limit_get(f->r, a1, &baud, &err), 0);
    assert_int_equal(baud, 0);
    assert_int_equal(records_slot_baud_limit_set(f->r, a1, 460800, &err), 0);
    assert_int_equal(records_slot_baud_limit_set(f->r, a2, 230400, &err), 0);
    assert_int_equal(records_slot_baud_limit_set(f->r, a1, 230400, &err), 0);
    fx_close(f);
    fx_open(f);
    assert_int_equal(records_slot_baud_limit_get(f->r, a1, &baud, &err), 0);
    assert_int_equal(baud, 230400);
    assert_int_equal(records_slot_baud_limit_set(f->r, a1, 0, &err), 0);
    assert_int_equal(records_slot_baud_limit_get(f->r, a1, &baud, &err), 0);
    assert_int_equal(baud, 0);
    assert_int_equal(records_slot_baud_limit_get(f->r, a2, &baud, &err), 0);
    assert_int_equal(baud, 230400);
    /* clearing what is not there is fine */
    assert_int_equal(records_slot_baud_limit_set(f->r, "uri:/dev/pts/9", 0, &err), 0);
    assert_int_equal(records_slot_baud_limit_set(f->r, "bad\nkey", 460800, &err), -EINVAL);
    assert_int_equal(records_slot_baud_limit_get(f->r, "", &baud, &err), -EINVAL);
}

static int count_items(const struct records_pool_item *it, void *ctx)
{
    (void)it;
    (*(int *)ctx)++;
    return 0;
}

/* Per-board pools (schema 5): a file goes to one board, a board holds one file per
 * pool, both kept across a reopen; lookups by board; bad input refused. */
static void test_pool_items(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_pool_item it = {.job_id = 7}, got;
    int64_t used = -1;
    fx_open(f);
    snprintf(it.pool, sizeof(it.pool), "nvs");
    snprintf(it.file, sizeof(it.file), "0001.bin");
    snprintf(it.mac, sizeof(it.mac), "24-6F-28-00-00-01");
    snprintf(it.md5, sizeof(it.md5), "0123456789abcdef0123456789abcdef");
    assert_int_equal(records_pool_file_used(f->r, "nvs", "0001.bin", &err), 0);
    assert_int_equal(records_pool_assign(f->r, &it, &err), 0);
    assert_int_equal(records_pool_file_used(f->r, "nvs", "0001.bin", &err), 1);
    assert_int_equal(records_pool_file_used(f->r, "certs", "0001.bin", &err), 0);
    /* the same file to another board, or a second file to the same board: refused */
    snprintf(it.mac, sizeof(it.mac), "24:6f:28:00:00:02");
    assert_int_equal(records_pool_assign(f->r, &it, &err), -EEXIST);
    assert_non_null(strstr(err.message, "0001.bin of pool nvs is taken"));
    snprintf(it.mac, sizeof(it.mac), "24:6f:28:00:00:01");
    snprintf(it.file, sizeof(it.file), "0002.bin");
    assert_int_equal(records_pool_assign(f->r, &it, &err), -EEXIST);
    /* another pool is independent */
    snprintf(it.pool, sizeof(it.pool), "certs");
    assert_int_equal(records_pool_assign(f->r, &it, &err), 0);
    fx_close(f);
    fx_open(f);
    assert_int_equal(records_pool_item_of(f->r, "nvs", "24:6f:28:00:00:01", &got, &err), 0);
    assert_string_equal(got.file, "0001.bin");
    assert_string_equal(got.mac, "24:6f:28:00:00:01");
    assert_string_equal(got.md5, "0123456789abcdef0123456789abcdef");
    assert_int_equal(got.job_id, 7);
    assert_true(got.assigned_at > 0);
    assert_int_equal(records_pool_item_of(f->r, "nvs", "24:6f:28:00:00:02", &got, &err), -ENOENT);
    assert_int_equal(records_pool_count(f->r, "nvs", &used, &err), 0);
    assert_int_equal(used, 1);
    int n = 0;
    assert_int_equal(records_pool_items_of_board(f->r, "24:6f:28:00:00:01", count_items, &n, &err),
                     2);
    assert_int_equal(n, 2);
    /* bad input */
    assert_int_equal(records_pool_file_used(f->r, "", "x.bin", &err), -EINVAL);
    assert_int_equal(records_pool_item_of(f->r, "nvs", "not-a-mac", &got, &err), -EINVAL);
    snprintf(it.file, sizeof(it.file), "bad\x01name.bin");
    assert_int_equal(records_pool_assign(f->r, &it, &err), -EINVAL);
}

struct names {
    char v[8][RECORDS_MAC_LEN];
    int n;
};

static int collect_mac(const struct records_board *b, void *ctx)
{
    struct names *n = ctx;
    if (n->n < 8)
        snprintf(n->v[n->n++], RECORDS_MAC_LEN, "%s", b->mac);
    return 0;
}

static void test_board_groups(void **state)
{
    struct fx *f = *state;
    struct records_board b;
    struct records_error err;
    fx_open(f);
    put_board(f, "24:6f:28:00:00:01", "ESP32");
    f->now += 1000;
    put_board(f, "24:6f:28:00:00:02", "ESP32");
    f->now += 1000;
    put_board(f, "24:6f:28:00:00:03", "ESP8266");

    const char *g1[] = {"line-a", "batch-42", "line-a"}; /* duplicate counts once */
    set_groups(f, "24:6f:28:00:00:01", g1, 3);
    const char *g2[] = {"line-a"};
    set_groups(f, "24:6f:28:00:00:02", g2, 1);
    const char *g3[] = {"Line-A"}; /* case matters */
    set_groups(f, "24:6f:28:00:00:03", g3, 1);

    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_int_equal(b.n_groups, 2);
    assert_string_equal(b.groups[0], "batch-42"); /* sorted */
    assert_string_equal(b.groups[1], "line-a");

    struct names n = {0};
    struct records_board_filter flt = {.group = "line-a"};
    assert_int_equal(records_board_list(f->r, &flt, collect_mac, &n, NULL), 2);
    assert_string_equal(n.v[0], "24:6f:28:00:00:02"); /* newest last_seen first */
    assert_string_equal(n.v[1], "24:6f:28:00:00:01");
    memset(&n, 0, sizeof(n));
    flt.group = "batch-42";
    assert_int_equal(records_board_list(f->r, &flt, collect_mac, &n, NULL), 1);
    flt.group = "nobody";
    assert_int_equal(records_board_list(f->r, &flt, NULL, NULL, NULL), 0);
    flt.group = "line-a";
    flt.chip = "ESP8266";
    assert_int_equal(records_board_list(f->r, &flt, NULL, NULL, NULL), 0);
    /* the list fills groups too */
    memset(&n, 0, sizeof(n));
    assert_int_equal(records_board_list(f->r, NULL, collect_mac, &n, NULL), 3);

    /* replace, then clear */
    const char *g4[] = {"rework"};
    set_groups(f, "24:6f:28:00:00:01", g4, 1);
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_int_equal(b.n_groups, 1);
    assert_string_equal(b.groups[0], "rework");
    set_groups(f, "24:6f:28:00:00:01", NULL, 0);
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_int_equal(b.n_groups, 0);

    /* bad names and too many groups change nothing */
    set_groups(f, "24:6f:28:00:00:01", g1, 2);
    const char *bad[][1] = {{""}, {"has space"}, {"comma,name"}, {"ü"}, {NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(records_board_set_groups(f->r, "24:6f:28:00:00:01", bad[i], 1, &err),
                         -EINVAL);
        assert_non_null(strstr(err.message, "group name"));
    }
    char long_name[80];
    memset(long_name, 'x', sizeof(long_name));
    long_name[65] = '\0';
    const char *lg[] = {long_name};
    assert_int_equal(records_board_set_groups(f->r, "24:6f:28:00:00:01", lg, 1, NULL), -EINVAL);
    long_name[64] = '\0'; /* 64 is allowed */
    set_groups(f, "24:6f:28:00:00:02", lg, 1);
    char many[17][8];
    const char *mp[17];
    for (int i = 0; i < 17; i++) {
        snprintf(many[i], sizeof(many[i]), "g%d", i);
        mp[i] = many[i];
    }
    assert_int_equal(records_board_set_groups(f->r, "24:6f:28:00:00:01", mp, 17, &err), -EINVAL);
    assert_non_null(strstr(err.message, "at most 16"));
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_int_equal(b.n_groups, 2);
    set_groups(f, "24:6f:28:00:00:01", mp, 16);
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_int_equal(b.n_groups, 16);

    assert_int_equal(records_board_set_groups(f->r, "24:6f:28:00:00:99", g2, 1, &err), -ENOENT);
    assert_true(records_group_name_ok("A.b_c-9"));
    assert_false(records_group_name_ok("a/b"));
    assert_false(records_group_name_ok(NULL));

    /* groups survive a reopen */
    fx_close(f);
    fx_open(f);
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:02", &b, NULL), 0);
    assert_int_equal(b.n_groups, 1);
    assert_string_equal(b.groups[0], long_name);
    assert_int_equal(records_board_get(f->r, "24:6f:28:00:00:01", &b, NULL), 0);
    assert_int_equal(b.n_groups, 16);
}

/* ---- bulks ------------------------------------------------------------------ */

static void bulk_params(struct records_bulk *b, const char *fw, const char *method)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->firmware, sizeof(b->firmware), "%s", fw);
    snprintf(b->version, sizeof(b->version), "%s", strchr(fw, '@') + 1);
    snprintf(b->method, sizeof(b->method), "%s", method);
    snprintf(b->selection, sizeof(b->selection), "{\"group\":\"line-a\"}");
    b->concurrency = 2;
    b->retries = 1;
    b->timeout_s = 300;
    b->max_failure_rate = 0.25;
    b->password_given = true;
    snprintf(b->user, sizeof(b->user), "admin");
    b->filesystem = strcmp(method, "webform") == 0;
}

static void bulk_board(struct records_bulk_board *bb, const char *mac, const char *state)
{
    memset(bb, 0, sizeof(*bb));
    snprintf(bb->mac, sizeof(bb->mac), "%s", mac);
    snprintf(bb->state, sizeof(bb->state), "%s", state);
}

struct bb_list {
    struct records_bulk_board v[8];
    int n;
};

static int collect_bb(const struct records_bulk_board *bb, void *ctx)
{
    struct bb_list *l = ctx;
    if (l->n < 8)
        l->v[l->n++] = *bb;
    return 0;
}

struct bulk_list {
    int64_t ids[8];
    char states[8][RECORDS_STATE_LEN];
    int n;
};

static int collect_bulk(const struct records_bulk *b, void *ctx)
{
    struct bulk_list *l = ctx;
    if (l->n < 8) {
        l->ids[l->n] = b->id;
        snprintf(l->states[l->n], RECORDS_STATE_LEN, "%s", b->state);
        l->n++;
    }
    return 0;
}

static void test_bulk_lifecycle(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_bulk b, got;
    struct records_bulk_board bbs[3];
    fx_open(f);
    bulk_params(&b, "demo@2.0.0", "espota");
    bulk_board(&bbs[0], "24:6F:28:00:00:03", "pending");
    bulk_board(&bbs[1], "24:6f:28:00:00:01", "pending");
    bulk_board(&bbs[2], "24:6f:28:00:00:02", "skipped");
    snprintf(bbs[2].error, sizeof(bbs[2].error), "already runs 2.0.0");
    assert_int_equal(records_bulk_create(f->r, &b, bbs, 3, &err), 0);
    assert_true(b.id > 0);
    assert_int_equal(b.created_at, f->now);
    assert_string_equal(b.state, "running");

    assert_int_equal(records_bulk_get(f->r, b.id, &got, NULL), 0);
    assert_string_equal(got.firmware, "demo@2.0.0");
    assert_string_equal(got.version, "2.0.0");
    assert_string_equal(got.method, "espota");
    assert_string_equal(got.selection, "{\"group\":\"line-a\"}");
    assert_int_equal(got.concurrency, 2);
    assert_int_equal(got.retries, 1);
    assert_int_equal(got.timeout_s, 300);
    assert_true(got.max_failure_rate > 0.249 && got.max_failure_rate < 0.251);
    assert_true(got.password_given);
    assert_string_equal(got.user, "admin");
    assert_false(got.filesystem);
    assert_string_equal(got.state, "running");
    assert_int_equal(got.ended_at, 0);
    assert_int_equal(got.total, 3);
    assert_int_equal(got.pending, 2);
    assert_int_equal(got.skipped, 1);

    /* boards come back in their stored order, MACs normalised */
    struct bb_list l = {0};
    assert_int_equal(records_bulk_boards(f->r, b.id, collect_bb, &l, NULL), 3);
    assert_string_equal(l.v[0].mac, "24:6f:28:00:00:03");
    assert_string_equal(l.v[1].mac, "24:6f:28:00:00:01");
    assert_string_equal(l.v[2].state, "skipped");
    assert_string_equal(l.v[2].error, "already runs 2.0.0");
    assert_int_equal(l.v[0].job_id, 0);

    /* per-board updates */
    struct records_bulk_board u;
    bulk_board(&u, "24:6f:28:00:00:03", "running");
    u.attempts = 1;
    u.job_id = 17;
    assert_int_equal(records_bulk_board_put(f->r, b.id, &u, &err), 0);
    bulk_board(&u, "24:6f:28:00:00:01", "failed");
    u.attempts = 2;
    u.job_id = 18;
    snprintf(u.error, sizeof(u.error), "the board reported an MD5 error");
    assert_int_equal(records_bulk_board_put(f->r, b.id, &u, &err), 0);
    bulk_board(&u, "24:6f:28:00:00:77", "failed");
    assert_int_equal(records_bulk_board_put(f->r, b.id, &u, &err), -ENOENT);
    bulk_board(&u, "24:6f:28:00:00:03", "exploded");
    assert_int_equal(records_bulk_board_put(f->r, b.id, &u, &err), -EINVAL);
    assert_int_equal(records_bulk_get(f->r, b.id, &got, NULL), 0);
    assert_int_equal(got.running, 1);
    assert_int_equal(got.failed, 1);
    assert_int_equal(got.pending, 0);

    /* a second, pull bulk; list newest first, filter by state */
    f->now += 5000;
    struct records_bulk b2;
    bulk_params(&b2, "demo@3.0.0", "pull");
    b2.password_given = false;
    b2.selection[0] = '\0';
    bulk_board(&bbs[0], "24:6f:28:00:00:05", "pending");
    assert_int_equal(records_bulk_create(f->r, &b2, bbs, 1, &err), 0);
    assert_true(b2.id > b.id);
    assert_int_equal(records_bulk_set_state(f->r, b2.id, "passed", NULL, &err), 0);
    assert_int_equal(records_bulk_get(f->r, b2.id, &got, NULL), 0);
    assert_string_equal(got.state, "passed");
    assert_int_equal(got.ended_at, f->now);
    assert_string_equal(got.selection, "");

    struct bulk_list bl = {0};
    assert_int_equal(records_bulk_list(f->r, NULL, 0, collect_bulk, &bl, NULL), 2);
    assert_int_equal(bl.ids[0], b2.id);
    assert_int_equal(bl.ids[1], b.id);
    memset(&bl, 0, sizeof(bl));
    assert_int_equal(records_bulk_list(f->r, "running", 0, collect_bulk, &bl, NULL), 1);
    assert_int_equal(bl.ids[0], b.id);
    assert_int_equal(records_bulk_list(f->r, NULL, 1, NULL, NULL, NULL), 1);

    /* everything survives a reopen */
    fx_close(f);
    fx_open(f);
    assert_int_equal(records_bulk_get(f->r, b.id, &got, NULL), 0);
    assert_string_equal(got.state, "running");
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_bulk_boards(f->r, b.id, collect_bb, &l, NULL), 3);
    assert_string_equal(l.v[0].state, "running");
    assert_int_equal(l.v[0].attempts, 1);
    assert_int_equal(l.v[0].job_id, 17);
    assert_string_equal(l.v[1].error, "the board reported an MD5 error");
    f->now += 1000;
    assert_int_equal(records_bulk_set_state(f->r, b.id, "stopped", "stopped: 1 of 3 failed", &err),
                     0);
    assert_int_equal(records_bulk_get(f->r, b.id, &got, NULL), 0);
    assert_string_equal(got.reason, "stopped: 1 of 3 failed");
    assert_int_equal(got.ended_at, f->now);

    assert_int_equal(records_bulk_get(f->r, 999, &got, &err), -ENOENT);
    assert_int_equal(records_bulk_boards(f->r, 999, NULL, NULL, NULL), -ENOENT);
    assert_int_equal(records_bulk_set_state(f->r, 999, "passed", NULL, NULL), -ENOENT);
    assert_int_equal(records_bulk_set_state(f->r, b.id, "Bad State", NULL, NULL), -EINVAL);
    fx_close(f);

    /* no password column at all: only the flag */
    char out[64];
    if (fx_pg_dsn()) {
        assert_int_equal(fx_pg_sql(f->path,
                                   "SELECT count(*) FROM information_schema.columns WHERE "
                                   "table_name = 'bulks' AND column_name LIKE '%password%' "
                                   "AND column_name != 'password_given'",
                                   out, sizeof(out)),
                         0);
        assert_string_equal(out, "0");
        return;
    }
    assert_int_equal(raw_sql(f->path,
                             "SELECT count(*) FROM pragma_table_info('bulks') "
                             "WHERE name LIKE '%password%' AND name != 'password_given'",
                             out, sizeof(out)),
                     SQLITE_OK);
    assert_string_equal(out, "0");
}

static void test_bulk_bad_input(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_bulk b;
    struct records_bulk_board bbs[2];
    fx_open(f);
    bulk_params(&b, "demo@2.0.0", "espota");
    bulk_board(&bbs[0], "24:6f:28:00:00:01", "pending");
    bulk_board(&bbs[1], "24:6f:28:00:00:01", "pending");
    assert_int_equal(records_bulk_create(f->r, &b, bbs, 2, &err), -EEXIST);  /* duplicate MAC */
    assert_int_equal(records_bulk_list(f->r, NULL, 0, NULL, NULL, NULL), 0); /* rolled back */
    bulk_board(&bbs[1], "nonsense", "pending");
    assert_int_equal(records_bulk_create(f->r, &b, bbs, 2, &err), -EINVAL);
    bulk_board(&bbs[1], "24:6f:28:00:00:02", "weird");
    assert_int_equal(records_bulk_create(f->r, &b, bbs, 2, &err), -EINVAL);
    bulk_board(&bbs[1], "24:6f:28:00:00:02", "pending");
    snprintf(b.selection, sizeof(b.selection), "[1, 2]");
    assert_int_equal(records_bulk_create(f->r, &b, bbs, 2, &err), -EINVAL);
    bulk_params(&b, "demo@2.0.0", "Bad Method");
    assert_int_equal(records_bulk_create(f->r, &b, bbs, 2, &err), -EINVAL);
    bulk_params(&b, "demo@2.0.0", "espota");
    b.firmware[0] = '\0';
    assert_int_equal(records_bulk_create(f->r, &b, bbs, 2, &err), -EINVAL);
    assert_int_equal(records_bulk_create(f->r, NULL, bbs, 2, &err), -EINVAL);
    assert_int_equal(records_bulk_list(f->r, NULL, 0, NULL, NULL, NULL), 0);
    bulk_params(&b, "demo@2.0.0", "espota");
    assert_int_equal(records_bulk_create(f->r, &b, bbs, 2, &err), 0);
    assert_int_equal(records_integrity_check(f->r, NULL), 0);
}

/* A callback may not call into the store. */
static int reenter_cb(const struct records_bulk *b, void *ctx)
{
    struct records *r = ctx;
    struct records_bulk got;
    assert_int_equal(records_bulk_get(r, b->id, &got, NULL), -EBUSY);
    return 0;
}

static void test_bulk_callback_reentry(void **state)
{
    struct fx *f = *state;
    struct records_bulk b;
    struct records_bulk_board bb;
    fx_open(f);
    bulk_params(&b, "demo@2.0.0", "webform");
    bulk_board(&bb, "24:6f:28:00:00:01", "pending");
    assert_int_equal(records_bulk_create(f->r, &b, &bb, 1, NULL), 0);
    assert_int_equal(records_bulk_list(f->r, NULL, 0, reenter_cb, f->r, NULL), 1);
    struct records_bulk got;
    assert_int_equal(records_bulk_get(f->r, b.id, &got, NULL), 0);
    assert_true(got.filesystem);
    assert_string_equal(got.method, "webform");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrates_schema2_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_board_notes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_baud_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_board_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bulk_callback_reentry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
