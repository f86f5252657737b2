/*
 * test_records_jobs: the records store's jobs and what is read from them, on both
 * backends: the job lifecycle with full error detail, text that is not UTF-8, the
 * append-only events journal (proved with raw SQL, which the API cannot even
 * express), skipped bytes of a partial re-flash, CSV quoting (parsed back with an
 * RFC 4180 reader), counters under a fake clock, and the firmware table.
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
#include "records_basic.h"

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records_jobs.XXXXXX");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
