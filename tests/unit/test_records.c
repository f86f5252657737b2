/*
 * test_records: opening the records store, on both backends (SQLite files in a
 * temporary directory, or PostgreSQL): schema and identity checks, board upsert
 * semantics, recovery and crash safety (a child process writing in a tight loop is
 * SIGKILLed and the reopened store must be intact, have the job marked interrupted and
 * keep every event the child saw committed), and bad files: garbage, foreign, corrupt
 * and read-only files must give clean errors. Jobs, events, CSV and counters:
 * test_records_jobs.c.
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

/* ---- fixtures ------------------------------------------------------------- */

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records.XXXXXX");
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
