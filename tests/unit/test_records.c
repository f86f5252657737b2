/*
 * test_records: the records store against real SQLite files in a temporary
 * directory. Schema and identity checks, board upsert semantics, the job
 * lifecycle with full error detail, the append-only events journal (proved
 * with raw SQL, which the API cannot even express), CSV quoting (parsed back
 * with an RFC 4180 reader), counters under a fake clock, and crash safety: a
 * child process writing in a tight loop is SIGKILLed and the reopened store
 * must be intact, have the job marked interrupted and keep every event the
 * child saw committed. Garbage, foreign, corrupt and read-only files must give
 * clean errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "records.h"
#include "records_fixture.h"

/* ---- fixtures ------------------------------------------------------------- */

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records.XXXXXX");
}

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

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static size_t read_file(const char *path, char *buf, size_t n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    size_t got = fread(buf, 1, n, fp);
    fclose(fp);
    return got;
}

/* ---- schema and identity -------------------------------------------------- */

/* PostgreSQL: the same tables, the version in records_schema, the journal's triggers. */
static void schema_created_pg(struct fx *f, const char *const *tables, size_t n)
{
    char out[256], sql[160];
    for (size_t i = 0; i < n; i++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM pg_tables WHERE tablename = '%s'",
                 tables[i]);
        assert_int_equal(fx_pg_sql(f->path, sql, out, sizeof(out)), 0);
        assert_string_equal(out, "1");
    }
    assert_int_equal(fx_pg_sql(f->path, "SELECT version FROM records_schema", out, sizeof(out)), 0);
    assert_int_equal(atoi(out), records_schema_latest());
    assert_int_equal(fx_pg_sql(f->path,
                               "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'events'::regclass "
                               "AND NOT tgisinternal",
                               out, sizeof(out)),
                     0);
    assert_string_equal(out, "2");
}

static void test_schema_created(void **state)
{
    struct fx *f = *state;
    char out[256];
    records_close(NULL);
    fx_open(f);
    assert_int_equal(records_schema_version(f->r), records_schema_latest());
    assert_true(records_schema_latest() >= 1);
    assert_int_equal(records_recovered_jobs(f->r), 0);
    assert_int_equal(records_integrity_check(f->r, NULL), 0);
    records_close(f->r);
    f->r = NULL;

    const char *tables[] = {"boards", "jobs", "job_log", "events", "firmware"};
    if (fx_pg_dsn()) {
        schema_created_pg(f, tables, sizeof(tables) / sizeof(tables[0]));
        fx_open(f);
        assert_int_equal(records_schema_version(f->r), records_schema_latest());
        return;
    }
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM sqlite_master WHERE name = '%s'",
                 tables[i]);
        assert_int_equal(raw_sql(f->path, sql, out, sizeof(out)), SQLITE_OK);
        assert_string_equal(out, "1");
    }
    assert_int_equal(raw_sql(f->path, "PRAGMA journal_mode", out, sizeof(out)), SQLITE_OK);
    assert_string_equal(out, "wal");
    assert_int_equal(raw_sql(f->path, "PRAGMA user_version", out, sizeof(out)), SQLITE_OK);
    assert_int_equal(atoi(out), records_schema_latest());
    assert_int_equal(raw_sql(f->path, "PRAGMA application_id", out, sizeof(out)), SQLITE_OK);
    assert_int_equal(atoi(out), 0x45535052);
    assert_int_equal(raw_sql(f->path,
                             "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                             "AND tbl_name = 'events'",
                             out, sizeof(out)),
                     SQLITE_OK);
    assert_string_equal(out, "2");

    /* Reopening an up-to-date store changes nothing. */
    fx_open(f);
    assert_int_equal(records_schema_version(f->r), records_schema_latest());
    assert_int_equal(records_recovered_jobs(f->r), 0);
}

static void test_second_open_refused(void **state)
{
    struct fx *f = *state;
    struct records *r2 = (struct records *)0x1;
    struct records_error err;
    fx_open(f);
    assert_int_equal(fx_records_open(f->path, &r2, &err), -EBUSY);
    assert_null(r2);
    assert_int_equal(err.code, -EBUSY);
    assert_non_null(strstr(err.message, "in use by another process"));
    fx_reopen(f); /* closing releases the lock */
}

static void test_newer_schema_refused(void **state)
{
    struct fx *f = *state;
    struct records *r2 = NULL;
    struct records_error err;
    fx_open(f);
    records_close(f->r);
    f->r = NULL;
    if (fx_pg_dsn()) {
        char out[256];
        assert_int_equal(
            fx_pg_sql(f->path, "UPDATE records_schema SET version = 99", out, sizeof(out)), 0);
    } else {
        assert_int_equal(raw_sql(f->path, "PRAGMA user_version = 99", NULL, 0), SQLITE_OK);
    }
    assert_int_equal(fx_records_open(f->path, &r2, &err), -ENOTSUP);
    assert_null(r2);
    assert_non_null(strstr(err.message, "schema version 99"));
}

/* ---- boards --------------------------------------------------------------- */

static void test_board_upsert(void **state)
{
    struct fx *f = *state;
    struct records_board b, got;
    struct records_error err;
    fx_open(f);

    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "24-6F-28-7A-D8-84");
    snprintf(b.chip, sizeof(b.chip), "ESP32");
    b.revision = 3;
    b.flash_id = 0x1640ef;
    b.flash_size = 4 << 20;
    b.crystal_mhz = 40;
    snprintf(b.slot, sizeof(b.slot), "A3");
    assert_int_equal(records_board_upsert(f->r, &b, &err), 0);

    /* Later: the board checks in over the network; only ip/version known. */
    f->now += 60000;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "24:6f:28:7a:d8:84");
    snprintf(b.ip, sizeof(b.ip), "192.168.4.17");
    snprintf(b.running_version, sizeof(b.running_version), "1.2.0");
    snprintf(b.online_state, sizeof(b.online_state), "online");
    assert_int_equal(records_board_upsert(f->r, &b, &err), 0);

    assert_int_equal(records_board_get(f->r, "24:6F:28:7A:D8:84", &got, &err), 0);
    assert_string_equal(got.mac, "24:6f:28:7a:d8:84");
    assert_string_equal(got.chip, "ESP32");
    assert_int_equal(got.revision, 3);
    assert_int_equal(got.flash_id, 0x1640ef);
    assert_int_equal(got.flash_size, 4 << 20);
    assert_int_equal(got.crystal_mhz, 40);
    assert_string_equal(got.slot, "A3");
    assert_string_equal(got.ip, "192.168.4.17");
    assert_string_equal(got.running_version, "1.2.0");
    assert_string_equal(got.online_state, "online");
    assert_int_equal(got.first_seen, 1700000000000LL);
    assert_int_equal(got.last_seen, 1700000060000LL);
    assert_string_equal(got.current_firmware, "");

    /* Not there / not a MAC. */
    assert_int_equal(records_board_get(f->r, "00:11:22:33:44:55", &got, &err), -ENOENT);
    assert_non_null(strstr(err.message, "00:11:22:33:44:55"));
    assert_int_equal(records_board_get(f->r, "24:6f:28:7a:d8", &got, &err), -EINVAL);
    assert_int_equal(records_board_get(f->r, "24:6f:28-7a:d8:84", &got, &err), -EINVAL);
    assert_int_equal(records_board_get(f->r, "246f287ad8zz", &got, &err), -EINVAL);
    assert_int_equal(records_board_get(f->r, "246F287AD884", &got, &err), 0);
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "24:6f:28:7a:d8:84");
    snprintf(b.chip, sizeof(b.chip), "bad\nchip");
    assert_int_equal(records_board_upsert(f->r, &b, &err), -EINVAL);
    assert_non_null(strstr(err.message, "control character"));
}

struct board_list {
    int n;
    char macs[8][RECORDS_MAC_LEN];
};

static int collect_board(const struct records_board *b, void *ctx)
{
    struct board_list *l = ctx;
    if (l->n < 8)
        snprintf(l->macs[l->n], RECORDS_MAC_LEN, "%s", b->mac);
    l->n++;
    return 0;
}

static void test_board_list(void **state)
{
    struct fx *f = *state;
    struct board_list l;
    fx_open(f);
    put_board(f, "00:00:00:00:00:01", "ESP8266", "A1");
    f->now += 1000;
    put_board(f, "00:00:00:00:00:02", "ESP32", "A2");
    f->now += 1000;
    put_board(f, "00:00:00:00:00:03", "ESP32", "A3");

    memset(&l, 0, sizeof(l));
    assert_int_equal(records_board_list(f->r, NULL, collect_board, &l, NULL), 3);
    assert_string_equal(l.macs[0], "00:00:00:00:00:03"); /* most recently seen first */
    assert_string_equal(l.macs[2], "00:00:00:00:00:01");

    struct records_board_filter flt = {.chip = "ESP32", .limit = 1, .offset = 1};
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_board_list(f->r, &flt, collect_board, &l, NULL), 1);
    assert_string_equal(l.macs[0], "00:00:00:00:00:02");

    struct records_board b;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "00:00:00:00:00:01");
    snprintf(b.current_firmware, sizeof(b.current_firmware), "blink@2.0");
    assert_int_equal(records_board_upsert(f->r, &b, NULL), 0);
    struct records_board_filter byfw = {.firmware = "blink@2.0"};
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_board_list(f->r, &byfw, collect_board, &l, NULL), 1);
    assert_string_equal(l.macs[0], "00:00:00:00:00:01");
}

struct reenter_ctx {
    struct records *r;
    int rc;
};

static int reenter(const struct records_board *b, void *ctx)
{
    struct reenter_ctx *c = ctx;
    struct records_board tmp;
    c->rc = records_board_get(c->r, b->mac, &tmp, NULL);
    return 1; /* stop after the first */
}

static void test_callback_reentry_refused(void **state)
{
    struct fx *f = *state;
    struct reenter_ctx c;
    fx_open(f);
    put_board(f, "00:00:00:00:00:01", "ESP8266", "A1");
    put_board(f, "00:00:00:00:00:02", "ESP8266", "A1");
    c.r = f->r;
    c.rc = 0;
    assert_int_equal(records_board_list(f->r, NULL, reenter, &c, NULL), 1);
    assert_int_equal(c.rc, -EBUSY);
    /* And the store works normally afterwards. */
    struct records_board b;
    assert_int_equal(records_board_get(f->r, "00:00:00:00:00:02", &b, NULL), 0);
}

/* ---- jobs ----------------------------------------------------------------- */

struct log_list {
    int n;
    char lines[4][RECORDS_TEXT_LEN];
    char levels[4][RECORDS_STATE_LEN];
};

static int collect_log(const struct records_log_line *l, void *ctx)
{
    struct log_list *ll = ctx;
    if (ll->n < 4) {
        snprintf(ll->lines[ll->n], RECORDS_TEXT_LEN, "%s", l->line);
        snprintf(ll->levels[ll->n], RECORDS_STATE_LEN, "%s", l->level);
    }
    ll->n++;
    return 0;
}

/* Text from a board (a log line, notes) need not be valid UTF-8: it is stored on
 * both backends (PostgreSQL gets U+FFFD for each bad byte, SQLite the bytes). */
static void test_text_not_utf8(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_board b;
    struct log_list ll = {0};
    static const char line[] = "boot \xff\xfe mode \xc3(";
    fx_open(f);
    put_board(f, "00:00:00:00:00:07", "ESP32", "A1");
    int64_t id = begin_job(f, "flash", "00:00:00:00:00:07", "A1");
    assert_int_equal(records_job_log(f->r, id, "info", line, &err), 0);
    assert_int_equal(records_board_set_notes(f->r, "00:00:00:00:00:07", "note \x80", &err), 0);
    assert_int_equal(records_job_log_list(f->r, id, collect_log, &ll, &err), 1);
    assert_int_equal(records_board_get(f->r, "00:00:00:00:00:07", &b, &err), 0);
    if (fx_pg_dsn()) {
        assert_string_equal(ll.lines[0], "boot \xEF\xBF\xBD\xEF\xBF\xBD mode \xEF\xBF\xBD(");
        assert_string_equal(b.notes, "note \xEF\xBF\xBD");
    } else {
        assert_string_equal(ll.lines[0], line);
        assert_string_equal(b.notes, "note \x80");
    }
}

static void test_job_lifecycle(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_job j;
    fx_open(f);
    put_board(f, "24:6f:28:7a:d8:84", "ESP32", "A3");

    /* A job on a board the store never saw is refused. */
    struct records_job_new bad = {.kind = "flash", .board_mac = "00:00:00:00:00:09"};
    int64_t id = 0;
    assert_int_equal(records_job_begin(f->r, &bad, &id, &err), -ENOENT);
    assert_non_null(strstr(err.message, "00:00:00:00:00:09"));
    bad.board_mac = NULL;
    bad.kind = "Flash!";
    assert_int_equal(records_job_begin(f->r, &bad, &id, &err), -EINVAL);

    /* Begins before identify: no MAC yet. */
    struct records_job_new nj = {.kind = "flash", .slot = "A3", .firmware = "blink@1.0"};
    assert_int_equal(records_job_begin(f->r, &nj, &id, &err), 0);
    assert_int_equal(records_job_get(f->r, id, &j, &err), 0);
    assert_int_equal(j.state, RECORDS_JOB_RUNNING);
    assert_string_equal(j.board_mac, "");
    assert_int_equal(j.started_at, f->now);
    assert_int_equal(j.ended_at, 0);
    assert_int_equal(records_job_set_board(f->r, id, "24:6F:28:7A:D8:84", &err), 0);
    assert_int_equal(records_job_set_board(f->r, id, "00:00:00:00:00:09", &err), -ENOENT);
    assert_int_equal(records_job_set_board(f->r, 9999, "24:6f:28:7a:d8:84", &err), -ENOENT);

    assert_int_equal(records_job_progress(f->r, id, "write", 65536, 40000, &err), 0);
    assert_int_equal(records_job_progress(f->r, id, NULL, 131072, -1, &err), 0);
    assert_int_equal(records_job_log(f->r, id, "info", "sync ok after 2 tries", &err), 0);
    assert_int_equal(records_job_log(f->r, id, "error", "flash write failed", &err), 0);
    assert_int_equal(records_job_log(f->r, 9999, "info", "x", &err), -ENOENT);
    assert_int_equal(records_job_get(f->r, id, &j, &err), 0);
    assert_string_equal(j.stage, "write");
    assert_int_equal(j.bytes, 131072);
    assert_int_equal(j.wire_bytes, 40000);

    f->now += 12500;
    struct records_job_result res;
    records_job_result_init(&res);
    res.state = RECORDS_JOB_FAILED;
    res.result_code = -EIO;
    res.error_stage = "write";
    res.error_message = "flash write error at 0x10000 (\"FLASH_DEFL_DATA\" failed, status 1)";
    res.error_advice = "check the flash chip, the 3.3 V supply, and retry";
    res.device_status = 0x01;
    res.device_error = 0x08;
    res.error_op = 0x11;
    res.error_address = 0x10000;
    res.retries = 2;
    assert_int_equal(records_job_finish(f->r, id, &res, &err), 0);

    assert_int_equal(records_job_get(f->r, id, &j, &err), 0);
    assert_int_equal(j.id, id);
    assert_string_equal(j.kind, "flash");
    assert_string_equal(j.board_mac, "24:6f:28:7a:d8:84");
    assert_string_equal(j.slot, "A3");
    assert_string_equal(j.firmware, "blink@1.0");
    assert_int_equal(j.state, RECORDS_JOB_FAILED);
    assert_int_equal(j.ended_at, j.started_at + 12500);
    assert_int_equal(j.result_code, -EIO);
    assert_string_equal(j.error_stage, "write");
    assert_string_equal(j.error_message, res.error_message);
    assert_string_equal(j.error_advice, res.error_advice);
    assert_int_equal(j.device_status, 1);
    assert_int_equal(j.device_error, 8);
    assert_int_equal(j.error_op, 0x11);
    assert_int_equal(j.error_address, 0x10000);
    assert_int_equal(j.bytes, 131072); /* kept from progress (res.bytes = -1) */
    assert_int_equal(j.retries, 2);
    assert_true(j.seconds > 12.49 && j.seconds < 12.51); /* computed from the timestamps */
    assert_true(j.kbps > 83.8 && j.kbps < 83.9);         /* 131072 * 8 / 1000 / 12.5 */

    struct log_list ll;
    memset(&ll, 0, sizeof(ll));
    assert_int_equal(records_job_log_list(f->r, id, collect_log, &ll, &err), 2);
    assert_string_equal(ll.lines[0], "sync ok after 2 tries");
    assert_string_equal(ll.levels[1], "error");

    /* A finished job stays finished. */
    res.state = RECORDS_JOB_PASSED;
    assert_int_equal(records_job_finish(f->r, id, &res, &err), -EINVAL);
    assert_non_null(strstr(err.message, "already failed"));
    assert_int_equal(records_job_progress(f->r, id, "write", 1, 1, &err), -EINVAL);
    assert_int_equal(records_job_progress(f->r, 9999, "write", 1, 1, &err), -ENOENT);
    assert_int_equal(records_job_finish(f->r, 9999, &res, &err), -ENOENT);
    res.state = RECORDS_JOB_RUNNING;
    assert_int_equal(records_job_finish(f->r, id, &res, &err), -EINVAL);

    /* Survives a reopen unchanged (and is not "recovered"). */
    fx_reopen(f);
    assert_int_equal(records_recovered_jobs(f->r), 0);
    assert_int_equal(records_job_get(f->r, id, &j, &err), 0);
    assert_int_equal(j.state, RECORDS_JOB_FAILED);
    assert_string_equal(j.error_message, res.error_message);
}

static void test_job_queued_and_truncation(void **state)
{
    struct fx *f = *state;
    struct records_job j;
    fx_open(f);
    struct records_job_new nj = {.kind = "ota-push", .slot = "B1", .queued = true};
    int64_t id;
    assert_int_equal(records_job_begin(f->r, &nj, &id, NULL), 0);
    assert_int_equal(records_job_get(f->r, id, &j, NULL), 0);
    assert_int_equal(j.state, RECORDS_JOB_QUEUED);
    f->now += 5000;
    assert_int_equal(records_job_progress(f->r, id, "upload", 0, -1, NULL), 0);
    assert_int_equal(records_job_get(f->r, id, &j, NULL), 0);
    assert_int_equal(j.state, RECORDS_JOB_RUNNING);
    assert_int_equal(j.started_at, f->now); /* started when it left the queue */

    /* An over-long message is cut on a UTF-8 character boundary. */
    char msg[1200];
    size_t n = 0;
    while (n + 2 < sizeof(msg) - 1) {
        msg[n++] = (char)0xC3; /* "é" */
        msg[n++] = (char)0xA9;
    }
    msg[n] = '\0';
    struct records_job_result res;
    records_job_result_init(&res);
    res.state = RECORDS_JOB_CANCELLED;
    res.error_message = msg;
    res.seconds = 1.5;
    res.bytes = 3000;
    assert_int_equal(records_job_finish(f->r, id, &res, NULL), 0);
    assert_int_equal(records_job_get(f->r, id, &j, NULL), 0);
    assert_int_equal(j.state, RECORDS_JOB_CANCELLED);
    size_t len = strlen(j.error_message);
    assert_true(len > 0 && len < RECORDS_TEXT_LEN);
    assert_int_equal(len % 2, 0);
    assert_int_equal(memcmp(j.error_message, msg, len), 0);
    assert_true(j.seconds == 1.5);
    assert_true(j.kbps == 16.0); /* 3000 * 8 / 1000 / 1.5 */
    assert_int_equal(j.device_status, -1);
    assert_int_equal(j.error_address, -1);
}

/* A job whose duration is not known (an OTA pull whose board never closed cleanly) keeps
 * seconds and kbps NULL (-1), not ended_at - started_at and a rate computed from it. */
static void test_job_duration_unknown(void **state)
{
    struct fx *f = *state;
    struct records_job j;
    fx_open(f);
    struct records_job_new nj = {.kind = "ota-pull", .slot = "B1"};
    int64_t id, id2;
    assert_int_equal(records_job_begin(f->r, &nj, &id, NULL), 0);
    f->now += 2;
    struct records_job_result res;
    records_job_result_init(&res);
    res.state = RECORDS_JOB_PASSED;
    res.bytes = 262144;
    res.duration_unknown = true;
    assert_int_equal(records_job_finish(f->r, id, &res, NULL), 0);
    assert_int_equal(records_job_get(f->r, id, &j, NULL), 0);
    assert_int_equal(j.state, RECORDS_JOB_PASSED);
    assert_int_equal(j.bytes, 262144);
    assert_true(j.seconds < 0);
    assert_true(j.kbps < 0);
    assert_int_equal(j.ended_at, f->now);

    /* Measured: the given seconds, and kbps from the bytes over them. */
    assert_int_equal(records_job_begin(f->r, &nj, &id2, NULL), 0);
    f->now += 2;
    records_job_result_init(&res);
    res.state = RECORDS_JOB_PASSED;
    res.bytes = 262144;
    res.seconds = 2.5;
    assert_int_equal(records_job_finish(f->r, id2, &res, NULL), 0);
    assert_int_equal(records_job_get(f->r, id2, &j, NULL), 0);
    assert_true(j.seconds == 2.5);
    assert_true(j.kbps > 838.86 && j.kbps < 838.87); /* 262144 * 8 / 1000 / 2.5 */
}

struct id_list {
    int n;
    int64_t ids[32];
};

static int collect_job(const struct records_job *j, void *ctx)
{
    struct id_list *l = ctx;
    if (l->n < 32)
        l->ids[l->n] = j->id;
    l->n++;
    return 0;
}

static void test_job_list_filters(void **state)
{
    struct fx *f = *state;
    struct records_job_filter flt;
    struct id_list l;
    fx_open(f);
    put_board(f, "00:00:00:00:00:01", "ESP8266", "A1");
    put_board(f, "00:00:00:00:00:02", "ESP32", "A2");
    int64_t t0 = f->now;
    int64_t a = begin_job(f, "flash", "00:00:00:00:00:01", "A1");
    f->now += 1000;
    int64_t b = begin_job(f, "flash", "00:00:00:00:00:02", "A2");
    f->now += 1000;
    int64_t c = begin_job(f, "erase", "00:00:00:00:00:01", "A1");
    finish_job(f, a, RECORDS_JOB_PASSED, 10);
    finish_job(f, b, RECORDS_JOB_FAILED, 3);

    memset(&l, 0, sizeof(l));
    assert_int_equal(records_job_list(f->r, NULL, collect_job, &l, NULL), 3);
    assert_int_equal(l.ids[0], c); /* newest first */
    assert_int_equal(l.ids[2], a);

    records_job_filter_init(&flt);
    flt.board_mac = "00:00:00:00:00:01";
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_job_list(f->r, &flt, collect_job, &l, NULL), 2);
    assert_int_equal(l.ids[0], c);
    assert_int_equal(l.ids[1], a);

    records_job_filter_init(&flt);
    flt.slot = "A2";
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_job_list(f->r, &flt, collect_job, &l, NULL), 1);
    assert_int_equal(l.ids[0], b);

    records_job_filter_init(&flt);
    flt.state = RECORDS_JOB_RUNNING;
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_job_list(f->r, &flt, collect_job, &l, NULL), 1);
    assert_int_equal(l.ids[0], c);

    records_job_filter_init(&flt);
    flt.since = t0 + 500;
    flt.until = t0 + 1500;
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_job_list(f->r, &flt, collect_job, &l, NULL), 1);
    assert_int_equal(l.ids[0], b);

    records_job_filter_init(&flt);
    flt.kind = "flash";
    flt.limit = 1;
    flt.offset = 1;
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_job_list(f->r, &flt, collect_job, &l, NULL), 1);
    assert_int_equal(l.ids[0], a);

    records_job_filter_init(&flt);
    flt.board_mac = "nonsense";
    assert_int_equal(records_job_list(f->r, &flt, collect_job, &l, NULL), -EINVAL);
}

/* ---- events --------------------------------------------------------------- */

static void test_events_append_only(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    char out[256];
    int64_t id1 = 0, id2 = 0;
    fx_open(f);
    struct records_event_new e = {.kind = "board.seen",
                                  .board_mac = "24:6F:28:7A:D8:84",
                                  .slot = "A3",
                                  .data = "{\"chip\":\"ESP32\"}"};
    assert_int_equal(records_event_append(f->r, &e, &id1, &err), 0);
    e.kind = "job.finished";
    e.data = NULL;
    assert_int_equal(records_event_append(f->r, &e, &id2, &err), 0);
    assert_true(id2 > id1);
    e.data = "{not json";
    assert_int_equal(records_event_append(f->r, &e, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.message, "not valid JSON"));
    e.data = NULL;
    e.kind = "Board Seen";
    assert_int_equal(records_event_append(f->r, &e, NULL, &err), -EINVAL);
    records_close(f->r);
    f->r = NULL;

    /* The journal refuses UPDATE and DELETE, whoever asks. */
    if (fx_pg_dsn()) {
        assert_int_equal(fx_pg_sql(f->path, "UPDATE events SET kind = 'x'", out, sizeof(out)), -1);
        assert_non_null(strstr(out, "append-only"));
        assert_int_equal(fx_pg_sql(f->path, "DELETE FROM events", out, sizeof(out)), -1);
        assert_non_null(strstr(out, "append-only"));
        assert_int_equal(fx_pg_sql(f->path, "SELECT count(*) FROM events", out, sizeof(out)), 0);
        assert_string_equal(out, "2");
        assert_int_equal(
            fx_pg_sql(f->path, "SELECT kind FROM events ORDER BY id", out, sizeof(out)), 0);
        assert_string_equal(out, "board.seen");
        return;
    }
    assert_int_equal(raw_sql(f->path, "UPDATE events SET kind = 'x'", out, sizeof(out)),
                     SQLITE_CONSTRAINT_TRIGGER);
    assert_non_null(strstr(out, "append-only"));
    assert_int_equal(raw_sql(f->path, "DELETE FROM events", out, sizeof(out)),
                     SQLITE_CONSTRAINT_TRIGGER);
    assert_non_null(strstr(out, "append-only"));
    assert_int_equal(raw_sql(f->path, "SELECT count(*) FROM events", out, sizeof(out)), SQLITE_OK);
    assert_string_equal(out, "2");
    assert_int_equal(raw_sql(f->path, "SELECT kind FROM events ORDER BY id", out, sizeof(out)),
                     SQLITE_OK);
    assert_string_equal(out, "board.seen");
}

struct ev_list {
    int n;
    int stop_after;
    int64_t ids[64];
    char data[64][64];
};

static int collect_event(const struct records_event *e, void *ctx)
{
    struct ev_list *l = ctx;
    if (l->n < 64) {
        l->ids[l->n] = e->id;
        size_t k = strnlen(e->data, sizeof(l->data[0]) - 1);
        memcpy(l->data[l->n], e->data, k);
        l->data[l->n][k] = '\0';
    }
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

static void test_events_since(void **state)
{
    struct fx *f = *state;
    int64_t ids[10], last = -1;
    struct ev_list l;
    fx_open(f);
    assert_int_equal(records_events_last_id(f->r, &last, NULL), 0);
    assert_int_equal(last, 0);
    for (int i = 0; i < 10; i++) {
        char data[32];
        snprintf(data, sizeof(data), "{\"i\":%d}", i);
        struct records_event_new e = {.kind = "test.tick", .job_id = i + 1, .data = data};
        f->now += (i % 3 == 0) ? -5 : 7; /* a clock step back must not reorder */
        assert_int_equal(records_event_append(f->r, &e, &ids[i], NULL), 0);
        if (i)
            assert_true(ids[i] > ids[i - 1]);
    }
    assert_int_equal(records_events_last_id(f->r, &last, NULL), 0);
    assert_int_equal(last, ids[9]);

    memset(&l, 0, sizeof(l));
    assert_int_equal(records_events_since(f->r, ids[2], 4, collect_event, &l, NULL), 4);
    for (int i = 0; i < 4; i++) {
        char want[32];
        assert_int_equal(l.ids[i], ids[3 + i]);
        snprintf(want, sizeof(want), "{\"i\":%d}", 3 + i);
        assert_string_equal(l.data[i], want);
    }

    memset(&l, 0, sizeof(l));
    assert_int_equal(records_events_since(f->r, 0, 0, collect_event, &l, NULL), 10);
    assert_int_equal(l.ids[0], ids[0]);
    assert_int_equal(l.ids[9], ids[9]);

    memset(&l, 0, sizeof(l));
    l.stop_after = 2;
    assert_int_equal(records_events_since(f->r, 0, 0, collect_event, &l, NULL), 2);
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_events_since(f->r, ids[9], 0, collect_event, &l, NULL), 0);

    /* Ids keep growing across a reopen. */
    fx_reopen(f);
    struct records_event_new e = {.kind = "test.tick"};
    int64_t next;
    assert_int_equal(records_event_append(f->r, &e, &next, NULL), 0);
    assert_true(next > ids[9]);
}

static int collect_skipped(const struct records_job *j, void *ctx)
{
    struct id_list *l = ctx;
    if (l->n < 32)
        l->ids[l->n] = j->skipped_bytes;
    l->n++;
    return 0;
}

/* A re-flash of only what changed (issue 11): the job record says how many
 * bytes of the image were already on the board and not sent; unknown (-1) for a
 * job that never said, and kept through a finish without it. */
static void test_job_skipped_bytes(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_job j;
    fx_open(f);
    put_board(f, "24:6f:28:7a:d8:84", "ESP32", "A3");
    int64_t a = begin_job(f, "flash", "24:6f:28:7a:d8:84", "A3");
    assert_int_equal(records_job_get(f->r, a, &j, &err), 0);
    assert_int_equal(j.skipped_bytes, -1); /* running */
    struct records_job_result res;
    records_job_result_init(&res);
    assert_int_equal(res.skipped_bytes, -1);
    res.state = RECORDS_JOB_PASSED;
    res.result_code = 0;
    res.bytes = 1048576;
    res.skipped_bytes = 1048576 - 4096; /* one sector changed */
    f->now += 1000;
    assert_int_equal(records_job_finish(f->r, a, &res, &err), 0);
    assert_int_equal(records_job_get(f->r, a, &j, &err), 0);
    assert_int_equal(j.bytes, 1048576);
    assert_int_equal(j.skipped_bytes, 1048576 - 4096);

    /* A job that never said: unknown, not 0. */
    int64_t b = begin_job(f, "erase", "24:6f:28:7a:d8:84", "A3");
    records_job_result_init(&res);
    res.state = RECORDS_JOB_PASSED;
    assert_int_equal(records_job_finish(f->r, b, &res, &err), 0);
    assert_int_equal(records_job_get(f->r, b, &j, &err), 0);
    assert_int_equal(j.skipped_bytes, -1);

    /* 0 is a value (a fresh board: everything written). */
    int64_t c = begin_job(f, "flash", "24:6f:28:7a:d8:84", "A3");
    records_job_result_init(&res);
    res.state = RECORDS_JOB_PASSED;
    res.skipped_bytes = 0;
    assert_int_equal(records_job_finish(f->r, c, &res, &err), 0);
    assert_int_equal(records_job_get(f->r, c, &j, &err), 0);
    assert_int_equal(j.skipped_bytes, 0);

    /* The list reads it too. */
    struct records_job_filter flt;
    records_job_filter_init(&flt);
    flt.kind = "flash";
    struct id_list skipped;
    memset(&skipped, 0, sizeof(skipped));
    assert_int_equal(records_job_list(f->r, &flt, collect_skipped, &skipped, &err), 2);
    assert_int_equal(skipped.n, 2);
    assert_int_equal(skipped.ids[0], 0); /* newest first: c */
    assert_int_equal(skipped.ids[1], 1048576 - 4096);
}

/* ---- CSV ------------------------------------------------------------------ */

/* Minimal RFC 4180 reader: fields of one record into out[], returns the
 * number of fields and advances *p past the record's CRLF. */
static int csv_record(const char **p, char out[][256], int max)
{
    const char *s = *p;
    int n = 0;
    if (!*s)
        return 0;
    for (;;) {
        size_t k = 0;
        char *dst = out[n];
        if (*s == '"') {
            s++;
            for (;;) {
                if (*s == '\0')
                    return -1;
                if (*s == '"') {
                    if (s[1] == '"') {
                        dst[k++] = '"';
                        s += 2;
                        continue;
                    }
                    s++;
                    break;
                }
                dst[k++] = *s++;
            }
        } else {
            while (*s && *s != ',' && *s != '\r' && *s != '\n' && *s != '"')
                dst[k++] = *s++;
            if (*s == '"' || *s == '\n')
                return -1; /* bare quote or bare LF: not RFC 4180 */
        }
        dst[k] = '\0';
        n++;
        if (*s == ',') {
            s++;
            if (n >= max)
                return -1;
            continue;
        }
        if (s[0] == '\r' && s[1] == '\n') {
            *p = s + 2;
            return n;
        }
        return -1;
    }
}

static void test_csv_export(void **state)
{
    struct fx *f = *state;
    static char buf[8192];
    static char fields[32][256];
    fx_open(f);
    put_board(f, "24:6f:28:7a:d8:84", "ESP32", "A3");
    int64_t a = begin_job(f, "flash", "24:6f:28:7a:d8:84", "A3, left \"hub\"");
    f->now += 2500;
    struct records_job_result res;
    records_job_result_init(&res);
    res.state = RECORDS_JOB_FAILED;
    res.result_code = -ETIMEDOUT;
    res.error_stage = "sync";
    res.error_message = "no serial data, \"nothing\" at all";
    res.error_advice = "check the cable\r\nthen the auto-reset circuit\nand retry";
    res.device_status = 1;
    res.device_error = 5;
    res.bytes = 0;
    res.skipped_bytes = 4096;
    assert_int_equal(records_job_finish(f->r, a, &res, NULL), 0);
    int64_t b = begin_job(f, "flash", "24:6f:28:7a:d8:84", "A4");
    (void)b;

    FILE *fp = fmemopen(buf, sizeof(buf), "w");
    assert_non_null(fp);
    assert_int_equal(records_export_csv(f->r, fp, NULL, NULL), 2);
    fclose(fp);

    const char *p = buf;
    int n = csv_record(&p, fields, 32);
    assert_int_equal(n, 23);
    assert_string_equal(fields[0], "id");
    assert_string_equal(fields[20], "error_message");
    assert_string_equal(fields[21], "error_advice");
    assert_string_equal(fields[22], "skipped_bytes");

    n = csv_record(&p, fields, 32);
    assert_int_equal(n, 23);
    assert_int_equal(atoll(fields[0]), a);
    assert_string_equal(fields[1], "flash");
    assert_string_equal(fields[2], "failed");
    assert_string_equal(fields[3], "24:6f:28:7a:d8:84");
    assert_string_equal(fields[4], "A3, left \"hub\"");
    assert_string_equal(fields[7], "2023-11-14T22:13:20.000Z");
    assert_string_equal(fields[8], "2023-11-14T22:13:22.500Z");
    assert_string_equal(fields[9], "2.500");
    assert_int_equal(atoi(fields[14]), -ETIMEDOUT);
    assert_string_equal(fields[15], "sync");
    assert_string_equal(fields[16], "0x1");
    assert_string_equal(fields[17], "0x5");
    assert_string_equal(fields[18], "");
    assert_string_equal(fields[20], res.error_message);
    assert_string_equal(fields[21], res.error_advice);
    assert_string_equal(fields[22], "4096");

    n = csv_record(&p, fields, 32);
    assert_int_equal(n, 23);
    assert_string_equal(fields[2], "running");
    assert_string_equal(fields[8], "");  /* not ended */
    assert_string_equal(fields[22], ""); /* not known */
    assert_int_equal(csv_record(&p, fields, 32), 0);

    /* The raw bytes: quotes doubled, field quoted as a whole. */
    assert_non_null(strstr(buf, ",\"A3, left \"\"hub\"\"\","));
    assert_non_null(strstr(buf, ",\"no serial data, \"\"nothing\"\" at all\","));

    /* Filters apply. */
    struct records_job_filter flt;
    records_job_filter_init(&flt);
    flt.state = RECORDS_JOB_RUNNING;
    fp = fmemopen(buf, sizeof(buf), "w");
    assert_non_null(fp);
    assert_int_equal(records_export_csv(f->r, fp, &flt, NULL), 1);
    fclose(fp);
}

/* ---- counters ------------------------------------------------------------- */

struct slot_stats {
    int n;
    char slots[4][16];
    double mean[4];
    int64_t jobs[4];
};

static int collect_slot(const char *slot, double mean, int64_t jobs, void *ctx)
{
    struct slot_stats *s = ctx;
    if (s->n < 4) {
        snprintf(s->slots[s->n], sizeof(s->slots[0]), "%s", slot);
        s->mean[s->n] = mean;
        s->jobs[s->n] = jobs;
    }
    s->n++;
    return 0;
}

static void test_counters(void **state)
{
    struct fx *f = *state;
    struct records_counters c;
    struct slot_stats ss;
    fx_open(f);
    const char *macs[] = {"00:00:00:00:00:01", "00:00:00:00:00:02", "00:00:00:00:00:03"};
    for (int i = 0; i < 3; i++)
        put_board(f, macs[i], "ESP32", "A1");

    /* Two hours ago: one passed flash on A1 (outside the last hour). */
    int64_t t0 = f->now;
    int64_t j = begin_job(f, "flash", macs[0], "A1");
    finish_job(f, j, RECORDS_JOB_PASSED, 20);
    f->now += 2 * 3600 * 1000;
    int64_t since = f->now - 1000;
    /* Now: board 1 again and board 2 pass on A1/A2, board 2 passes twice,
     * board 3 fails, one erase passes (not a flash: no slot mean). */
    j = begin_job(f, "flash", macs[0], "A1");
    finish_job(f, j, RECORDS_JOB_PASSED, 10);
    j = begin_job(f, "flash", macs[1], "A2");
    finish_job(f, j, RECORDS_JOB_PASSED, 30);
    j = begin_job(f, "flash", macs[1], "A2");
    finish_job(f, j, RECORDS_JOB_PASSED, 40);
    j = begin_job(f, "flash", macs[2], "A1");
    finish_job(f, j, RECORDS_JOB_FAILED, 5);
    j = begin_job(f, "erase", macs[2], "A1");
    finish_job(f, j, RECORDS_JOB_PASSED, 2);
    j = begin_job(f, "flash", macs[2], "A3"); /* still running */

    assert_int_equal(records_counters(f->r, since, &c, NULL), 0);
    assert_int_equal(c.passed, 4);
    assert_int_equal(c.failed, 1);
    assert_int_equal(c.by_state[RECORDS_JOB_RUNNING], 1);
    assert_int_equal(c.by_state[RECORDS_JOB_INTERRUPTED], 0);
    assert_int_equal(c.boards_last_hour, 3); /* distinct boards with a pass */

    assert_int_equal(records_counters(f->r, t0, &c, NULL), 0);
    assert_int_equal(c.passed, 5);

    memset(&ss, 0, sizeof(ss));
    assert_int_equal(records_slot_flash_seconds(f->r, since, collect_slot, &ss, NULL), 2);
    assert_string_equal(ss.slots[0], "A1");
    assert_true(ss.mean[0] == 10.0);
    assert_int_equal(ss.jobs[0], 1);
    assert_string_equal(ss.slots[1], "A2");
    assert_true(ss.mean[1] == 35.0);
    assert_int_equal(ss.jobs[1], 2);

    memset(&ss, 0, sizeof(ss));
    assert_int_equal(records_slot_flash_seconds(f->r, t0, collect_slot, &ss, NULL), 2);
    assert_true(ss.mean[0] == 15.0);

    /* An hour later nothing passed in the last hour. */
    f->now += 2 * 3600 * 1000;
    assert_int_equal(records_counters(f->r, since, &c, NULL), 0);
    assert_int_equal(c.boards_last_hour, 0);
}

/* ---- firmware ------------------------------------------------------------- */

static int count_fw(const struct records_firmware *fw, void *ctx)
{
    (void)fw;
    (*(int *)ctx)++;
    return 0;
}

static void test_firmware(void **state)
{
    struct fx *f = *state;
    static struct records_firmware fw, got;
    struct records_error err;
    int n = 0;
    fx_open(f);
    memset(&fw, 0, sizeof(fw));
    snprintf(fw.name, sizeof(fw.name), "blink");
    snprintf(fw.version, sizeof(fw.version), "1.0.0");
    snprintf(fw.chip, sizeof(fw.chip), "ESP32");
    snprintf(fw.manifest, sizeof(fw.manifest),
             "{\"regions\":[{\"offset\":65536,\"size\":1024,\"sha256\":\"%064d\"}]}", 0);
    assert_int_equal(records_firmware_put(f->r, &fw, &err), 0);
    assert_int_equal(records_firmware_put(f->r, &fw, &err), -EEXIST);
    assert_non_null(strstr(err.message, "blink@1.0.0"));
    snprintf(fw.version, sizeof(fw.version), "1.1.0");
    snprintf(fw.chip, sizeof(fw.chip), "ESP8266");
    assert_int_equal(records_firmware_put(f->r, &fw, &err), 0);
    snprintf(fw.version, sizeof(fw.version), "2.0.0");
    snprintf(fw.manifest, sizeof(fw.manifest), "{\"regions\": [");
    assert_int_equal(records_firmware_put(f->r, &fw, &err), -EINVAL);
    assert_non_null(strstr(err.message, "not valid JSON"));

    assert_int_equal(records_firmware_get(f->r, "blink", "1.0.0", &got, &err), 0);
    assert_string_equal(got.chip, "ESP32");
    assert_non_null(strstr(got.manifest, "\"offset\":65536"));
    assert_int_equal(got.created_at, f->now);
    assert_int_equal(records_firmware_list(f->r, NULL, count_fw, &n, NULL), 2);
    assert_int_equal(n, 2);
    n = 0;
    assert_int_equal(records_firmware_list(f->r, "ESP8266", count_fw, &n, NULL), 1);
    assert_int_equal(records_firmware_delete(f->r, "blink", "1.0.0", &err), 0);
    assert_int_equal(records_firmware_delete(f->r, "blink", "1.0.0", &err), -ENOENT);
    assert_int_equal(records_firmware_get(f->r, "blink", "1.0.0", &got, &err), -ENOENT);
}

/* ---- recovery and crash safety -------------------------------------------- */

struct find_ev {
    int64_t job_id;
    int found;
    char data[RECORDS_EVENT_DATA_LEN];
};

static int find_interrupt(const struct records_event *e, void *ctx)
{
    struct find_ev *fe = ctx;
    if (strcmp(e->kind, "job.interrupted") == 0 && e->job_id == fe->job_id) {
        fe->found++;
        snprintf(fe->data, sizeof(fe->data), "%s", e->data);
    }
    return 0;
}

static void test_recovery_marks_interrupted(void **state)
{
    struct fx *f = *state;
    struct records_job j;
    fx_open(f);
    put_board(f, "00:00:00:00:00:01", "ESP32", "A1");
    int64_t a = begin_job(f, "flash", "00:00:00:00:00:01", "A1");
    assert_int_equal(records_job_progress(f->r, a, "write", 4096, 2048, NULL), 0);
    int64_t b = begin_job(f, "flash", NULL, "A2");
    finish_job(f, b, RECORDS_JOB_PASSED, 1);
    struct records_job_new q = {.kind = "ota-push", .queued = true};
    int64_t c;
    assert_int_equal(records_job_begin(f->r, &q, &c, NULL), 0);
    fx_reopen(f); /* the "daemon" left two jobs unfinished */

    assert_int_equal(records_recovered_jobs(f->r), 2);
    assert_int_equal(records_job_get(f->r, a, &j, NULL), 0);
    assert_int_equal(j.state, RECORDS_JOB_INTERRUPTED);
    assert_true(j.ended_at > 0);
    assert_string_equal(j.error_stage, "write");
    assert_string_equal(j.error_message, "daemon stopped while write");
    assert_int_equal(j.result_code, -ECANCELED);
    assert_true(strlen(j.error_advice) > 0);
    assert_int_equal(j.bytes, 4096);
    assert_int_equal(records_job_get(f->r, b, &j, NULL), 0);
    assert_int_equal(j.state, RECORDS_JOB_PASSED);
    assert_int_equal(records_job_get(f->r, c, &j, NULL), 0);
    assert_int_equal(j.state, RECORDS_JOB_INTERRUPTED);
    assert_string_equal(j.error_message, "daemon stopped while queued");

    struct find_ev fe = {.job_id = a};
    assert_true(records_events_since(f->r, 0, 0, find_interrupt, &fe, NULL) >= 2);
    assert_int_equal(fe.found, 1);
    assert_non_null(strstr(fe.data, "interrupted: daemon stopped while write"));

    fx_reopen(f); /* nothing left to recover */
    assert_int_equal(records_recovered_jobs(f->r), 0);
}

#define CRASH_WARMUP 20 /* events committed before the child counts as mid-loop */

static void crash_child(const char *path, int wfd)
{
    struct records *r;
    struct records_board b;
    int64_t job;
    if (fx_records_open(path, &r, NULL) < 0)
        _exit(2);
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "00:00:00:00:00:42");
    snprintf(b.chip, sizeof(b.chip), "ESP32");
    if (records_board_upsert(r, &b, NULL) < 0)
        _exit(3);
    struct records_job_new nj = {.kind = "flash", .board_mac = b.mac, .slot = "A1"};
    if (records_job_begin(r, &nj, &job, NULL) < 0)
        _exit(4);
    if (write(wfd, &job, sizeof(job)) != sizeof(job))
        _exit(5);
    for (int64_t i = 0;; i++) {
        char data[64];
        int64_t id;
        snprintf(data, sizeof(data), "{\"i\":%lld,\"pad\":\"%032d\"}", (long long)i, 0);
        struct records_event_new e = {
            .kind = "test.progress", .board_mac = b.mac, .job_id = job, .data = data};
        if (records_event_append(r, &e, &id, NULL) < 0)
            _exit(6);
        /* Committed: report it. */
        if (write(wfd, &id, sizeof(id)) != sizeof(id))
            _exit(7);
        if (records_job_progress(r, job, (i & 1) ? "write" : "verify", i * 4096, i * 2900, NULL) <
            0)
            _exit(8);
        if (records_job_log(r, job, "info", "wrote a block of 4096 bytes", NULL) < 0)
            _exit(9);
        if (i % 16 == 0 && records_board_upsert(r, &b, NULL) < 0)
            _exit(10);
    }
}

static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, (char *)buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

struct ev_ids {
    int64_t *ids;
    size_t n, cap;
};

static int collect_ids(const struct records_event *e, void *ctx)
{
    struct ev_ids *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->ids = realloc(l->ids, l->cap * sizeof(*l->ids));
        assert_non_null(l->ids);
    }
    l->ids[l->n++] = e->id;
    return 0;
}

static void test_crash_safety(void **state)
{
    struct fx *f = *state;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    print_message("crash test seed %u\n", seed);
    for (int round = 0; round < 6; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(f->path, fds[1]);
            _exit(1);
        }
        close(fds[1]);

        int64_t job = 0, *reported = NULL;
        size_t n = 0, cap = 0;
        assert_int_equal(read_full(fds[0], &job, sizeof(job)), 0);
        for (;;) {
            int64_t id;
            if (n == CRASH_WARMUP)
                break;
            assert_int_equal(read_full(fds[0], &id, sizeof(id)), 0);
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                reported = realloc(reported, cap * sizeof(*reported));
                assert_non_null(reported);
            }
            reported[n++] = id;
        }
        /* Mid-loop: let it run a random while, then kill -9. */
        struct timespec d = {0, (long)(rand_r(&seed) % 25000) * 1000};
        nanosleep(&d, NULL);
        assert_int_equal(kill(pid, SIGKILL), 0);
        for (;;) {
            int64_t id;
            if (read_full(fds[0], &id, sizeof(id)) < 0)
                break;
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                reported = realloc(reported, cap * sizeof(*reported));
                assert_non_null(reported);
            }
            reported[n++] = id;
        }
        close(fds[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGKILL);

        /* Reopen: recovered, intact, nothing committed lost. */
        struct records_error err;
        int rc = fx_records_open(f->path, &f->r, &err);
        /* PostgreSQL: the killed child's session (and its lock) ends when the server
         * reads the closed socket, a moment after the kill. */
        for (int t = 0; rc == -EBUSY && fx_pg_dsn() && t < 200; t++) {
            struct timespec w = {0, 20 * 1000 * 1000};
            nanosleep(&w, NULL);
            rc = fx_records_open(f->path, &f->r, &err);
        }
        if (rc < 0)
            print_error("reopen after kill: %s\n", err.message);
        assert_int_equal(rc, 0);
        assert_int_equal(records_recovered_jobs(f->r), 1);
        assert_int_equal(records_integrity_check(f->r, &err), 0);
        struct records_job j;
        assert_int_equal(records_job_get(f->r, job, &j, NULL), 0);
        assert_int_equal(j.state, RECORDS_JOB_INTERRUPTED);
        assert_non_null(strstr(j.error_message, "daemon stopped while "));
        assert_true(strcmp(j.error_stage, "write") == 0 || strcmp(j.error_stage, "verify") == 0);

        struct find_ev fe = {.job_id = job};
        assert_true(records_events_since(f->r, 0, 0, find_interrupt, &fe, NULL) > 0);
        assert_int_equal(fe.found, 1);

        struct ev_ids all = {0};
        assert_true(records_events_since(f->r, 0, 0, collect_ids, &all, NULL) > 0);
        for (size_t i = 0; i < n; i++)
            assert_non_null(bsearch(&reported[i], all.ids, all.n, sizeof(int64_t), cmp_i64));
        print_message("round %d: %zu events reported committed before SIGKILL, all present; "
                      "job %lld interrupted while %s\n",
                      round, n, (long long)job, j.error_stage);
        free(all.ids);
        free(reported);
        records_close(f->r);
        f->r = NULL;

        if (!fx_pg_dsn()) {
            char out[64];
            assert_int_equal(raw_sql(f->path, "PRAGMA integrity_check", out, sizeof(out)),
                             SQLITE_OK);
            assert_string_equal(out, "ok");
        }
    }
}

/* ---- bad files and permissions -------------------------------------------- */

/* PostgreSQL: the server ends the store's session (a restart, a DBA, a network
 * cut). The call that meets the dead connection fails with -EIO (whether a write
 * it carried was committed is not known, so it is not sent again); the next call
 * connects again, takes the lock, prepares its statement anew and works. */
static void test_pg_connection_lost(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_board b;
    char sql[256], out[256];
    if (!fx_pg_dsn())
        skip(); /* SQLite has no connection to lose */
    fx_open(f);
    put_board(f, "00:00:00:00:00:09", "ESP32", "A1");
    assert_int_equal(records_board_get(f->r, "00:00:00:00:00:09", &b, &err), 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
             "WHERE datname = '%s' AND application_name = 'espstationd'",
             f->pgdb);
    assert_int_equal(fx_pg_sql(fx_pg_dsn(), sql, out, sizeof(out)), 0);
    assert_string_equal(out, "1");
    int rc = records_board_get(f->r, "00:00:00:00:00:09", &b, &err);
    assert_int_equal(rc, -EIO);
    assert_non_null(strstr(err.message, "connection to PostgreSQL lost"));
    /* Connecting again never blocks the caller: calls fail at once with
     * "unreachable" until the background attempt is through. */
    for (int i = 0; (rc = records_board_get(f->r, "00:00:00:00:00:09", &b, &err)) < 0; i++) {
        assert_int_equal(rc, -EIO);
        assert_non_null(strstr(err.message, "records database unreachable"));
        assert_true(i < 1000); /* 10 s */
        usleep(10 * 1000);
    }
    assert_string_equal(b.chip, "ESP32");
    int64_t id = begin_job(f, "flash", "00:00:00:00:00:09", "A1");
    finish_job(f, id, RECORDS_JOB_PASSED, 1);
    assert_int_equal(records_integrity_check(f->r, &err), 0);
    /* Still one store per database: the lock came back with the session. */
    struct records *r2 = NULL;
    assert_int_equal(fx_records_open(f->path, &r2, &err), -EBUSY);
}

static void test_garbage_file(void **state)
{
    FX_SQLITE_ONLY();
    struct fx *f = *state;
    struct records *r = (struct records *)0x1;
    struct records_error err;
    char garbage[8192], after[8192];
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (char)(i * 131 + 7);
    memcpy(garbage, "espstation config\n", 18);
    write_file(f->path, garbage, sizeof(garbage));
    assert_int_equal(fx_records_open(f->path, &r, &err), -EBADMSG);
    assert_null(r);
    assert_int_equal(err.code, -EBADMSG);
    assert_non_null(strstr(err.message, f->path));
    assert_non_null(strstr(err.message, "not a records database"));
    assert_int_equal(read_file(f->path, after, sizeof(after)), sizeof(garbage));
    assert_memory_equal(garbage, after, sizeof(garbage)); /* untouched */

    /* Tiny non-database file. */
    write_file(f->path, "hello", 5);
    assert_int_equal(fx_records_open(f->path, &r, &err), -EBADMSG);
    assert_non_null(strstr(err.message, "not a records database"));
}

/* PostgreSQL: a database holding another application's tables is refused, untouched. */
static void foreign_pg_database(struct fx *f)
{
    struct records *r = NULL;
    struct records_error err;
    char out[256];
    assert_int_equal(fx_pg_sql(f->path, "CREATE TABLE jobs (x int); INSERT INTO jobs VALUES (1)",
                               out, sizeof(out)),
                     0);
    assert_int_equal(fx_records_open(f->path, &r, &err), -EBADMSG);
    assert_null(r);
    assert_non_null(strstr(err.message, "not a records database"));
    assert_non_null(strstr(err.message, "another application"));
    assert_int_equal(fx_pg_sql(f->path,
                               "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", out,
                               sizeof(out)),
                     0);
    assert_string_equal(out, "1"); /* nothing created */
}

static void test_foreign_sqlite_file(void **state)
{
    struct fx *f = *state;
    struct records *r = NULL;
    struct records_error err;
    char out[64];
    sqlite3 *db;
    if (fx_pg_dsn()) {
        foreign_pg_database(f);
        return;
    }
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "CREATE TABLE jobs (x); INSERT INTO jobs VALUES (1);", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(fx_records_open(f->path, &r, &err), -EBADMSG);
    assert_null(r);
    assert_non_null(strstr(err.message, "not a records database"));
    assert_non_null(strstr(err.message, "another application"));
    assert_int_equal(raw_sql(f->path, "PRAGMA journal_mode", out, sizeof(out)), SQLITE_OK);
    assert_string_equal(out, "delete"); /* not even switched to WAL */
}

/* Fills a store, closes it (checkpointed), then overwrites `pages` pages of
 * 0xA5 starting at page `first` (negative: counted from the end). */
static void make_corrupt_store(struct fx *f, int first, int pages)
{
    char page[4096];
    struct stat sb;
    fx_open(f);
    put_board(f, "00:00:00:00:00:01", "ESP32", "A1");
    for (int i = 0; i < 200; i++) {
        struct records_event_new e = {.kind = "test.fill",
                                      .data = "{\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}"};
        assert_int_equal(records_event_append(f->r, &e, NULL, NULL), 0);
    }
    records_close(f->r); /* checkpoints into the main file */
    f->r = NULL;
    assert_int_equal(stat(f->path, &sb), 0);
    int npages = (int)(sb.st_size / 4096);
    if (first < 0)
        first += npages;
    assert_true(first >= 1 && first + pages <= npages);
    int fd = open(f->path, O_WRONLY);
    assert_true(fd >= 0);
    memset(page, 0xA5, sizeof(page));
    for (int p = first; p < first + pages; p++)
        assert_int_equal(pwrite(fd, page, sizeof(page), (off_t)p * 4096), (ssize_t)sizeof(page));
    close(fd);
}

/* Damaged schema/job pages: refused at open with a clear message, no crash. */
static void test_corrupt_store_refused(void **state)
{
    FX_SQLITE_ONLY();
    struct fx *f = *state;
    struct records_error err;
    make_corrupt_store(f, 1, 11); /* keep page 0: it still looks like ours */
    int rc = fx_records_open(f->path, &f->r, &err);
    print_message("corrupt store: %s\n", err.message);
    assert_int_equal(rc, -EBADMSG);
    assert_null(f->r);
    assert_non_null(strstr(err.message, f->path));
    assert_non_null(strstr(err.message, "damaged"));
}

/* Damaged event pages the open does not touch: the integrity check finds them. */
static void test_corrupt_store_integrity(void **state)
{
    FX_SQLITE_ONLY();
    struct fx *f = *state;
    struct records_error err;
    make_corrupt_store(f, -3, 2);
    int rc = fx_records_open(f->path, &f->r, &err);
    if (rc == 0) {
        rc = records_integrity_check(f->r, &err);
        print_message("integrity: %s\n", err.message);
        assert_int_equal(rc, -EBADMSG);
        assert_non_null(strstr(err.message, "integrity check"));
    } else {
        print_message("corrupt store (tail): %s\n", err.message);
        assert_int_equal(rc, -EBADMSG);
    }
    /* Whatever happened, reading the events must fail cleanly, not crash. */
    if (f->r)
        assert_true(records_events_since(f->r, 0, 0, NULL, NULL, &err) < 0 ||
                    records_integrity_check(f->r, NULL) == -EBADMSG);
}

/* In a child (dropping root, which ignores permissions) opens path; reports
 * the return code and message through a pipe. */
static int open_unprivileged(const char *path, char *msg, size_t n)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct records *r = NULL;
        struct records_error err = {0};
        close(fds[0]);
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(2);
        int rc = fx_records_open(path, &r, &err);
        records_close(r);
        if (write(fds[1], &rc, sizeof(rc)) != sizeof(rc) ||
            write(fds[1], err.message, sizeof(err.message)) != sizeof(err.message))
            _exit(3);
        _exit(0);
    }
    close(fds[1]);
    int rc = 1;
    char buf[sizeof(((struct records_error *)0)->message)] = "";
    assert_int_equal(read_full(fds[0], &rc, sizeof(rc)), 0);
    assert_int_equal(read_full(fds[0], buf, sizeof(buf)), 0);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    snprintf(msg, n, "%s", buf);
    return rc;
}

static void test_readonly_directory(void **state)
{
    FX_SQLITE_ONLY();
    struct fx *f = *state;
    char msg[512];

    /* A new database in a directory we may not write. */
    assert_int_equal(chmod(f->dir, 0555), 0);
    int rc = open_unprivileged(f->path, msg, sizeof(msg));
    print_message("read-only dir, new db: %d %s\n", rc, msg);
    assert_int_equal(rc, -EACCES);
    assert_non_null(strstr(msg, "cannot open"));
    assert_non_null(strstr(msg, f->path));
    assert_non_null(strstr(msg, "permission denied"));

    /* An existing database (and lock file) we may read but not write. */
    assert_int_equal(chmod(f->dir, 0700), 0);
    fx_open(f);
    records_close(f->r);
    f->r = NULL;
    assert_int_equal(chmod(f->path, 0444), 0);
    assert_int_equal(chmod(f->dir, 0555), 0);
    rc = open_unprivileged(f->path, msg, sizeof(msg));
    print_message("read-only dir, existing db: %d %s\n", rc, msg);
    assert_true(rc == -EACCES || rc == -EROFS);
    assert_non_null(strstr(msg, "cannot open"));
    assert_non_null(strstr(msg, "permission denied"));
    assert_int_equal(chmod(f->dir, 0700), 0);
}

static void test_format_time(void **state)
{
    (void)state;
    char buf[RECORDS_TIME_LEN];
    assert_string_equal(records_format_time(1700000000123LL, buf, sizeof(buf)),
                        "2023-11-14T22:13:20.123Z");
    assert_string_equal(records_format_time(0, buf, sizeof(buf)), "1970-01-01T00:00:00.000Z");
    assert_string_equal(records_format_time(-1, buf, sizeof(buf)), "1969-12-31T23:59:59.999Z");
    enum records_job_state s;
    for (int i = 0; i < RECORDS_JOB_STATE_COUNT; i++) {
        assert_int_equal(records_job_state_from_string(
                             records_job_state_to_string((enum records_job_state)i), &s),
                         0);
        assert_int_equal(s, i);
    }
    assert_int_equal(records_job_state_from_string("done", &s), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_board_upsert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_board_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_reentry_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_not_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_queued_and_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_duration_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_list_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_append_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_skipped_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_firmware, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_marks_interrupted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_safety, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_connection_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_sqlite_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_store_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_store_integrity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_directory, setup, teardown),
        cmocka_unit_test(test_format_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
