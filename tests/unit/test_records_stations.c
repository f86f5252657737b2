/*
 * test_records_stations: the stations of a line on one records database
 * (records_open_station, schema 7). Runs on SQLite and, as
 * unit_test_records_stations_pg, on a private PostgreSQL 15.
 *
 *  - stations starting together on a fresh database all open it (the first
 *    migration is serialised; a station that waited sees the other's tables);
 *  - a name is one process's at a time, other names share the database;
 *  - jobs and events carry the station; crash recovery at open interrupts only
 *    the opening station's jobs on a shared database, every job on a SQLite file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "records_fixture.h"
#include "records_line.h"

static int setup(void **state)
{
    return setup_in(state, "test_records_st.XXXXXX");
}

static int open_as(struct fx *f, const char *station, struct records **r, struct records_error *err)
{
    return records_open_station(fx_pg_dsn() ? RECORDS_BACKEND_POSTGRESQL : RECORDS_BACKEND_SQLITE,
                                f->path, station, r, err);
}

/* Four stations started at the same moment on a database nobody migrated yet. */
static void test_first_open_together(void **state)
{
    struct fx *f = *state;
    enum { N = 4 };
    pid_t pids[N];
    int go[2];
    if (!fx_pg_dsn())
        skip(); /* a SQLite file is one process's (its lock file) */
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char name[16], c;
            struct records *r = NULL;
            struct records_error err;
            close(go[1]);
            if (read(go[0], &c, 1) < 0)
                _exit(3);
            snprintf(name, sizeof(name), "st%d", i);
            if (open_as(f, name, &r, &err) < 0) {
                fprintf(stderr, "station %s: %s\n", name, err.message);
                _exit(1);
            }
            records_close(r);
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]); /* all children read EOF at once */
    for (int i = 0; i < N; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    fx_open(f);
    assert_int_equal(records_schema_version(f->r), records_schema_latest());
}

static void test_names_share_the_database(void **state)
{
    struct fx *f = *state;
    struct records *a = NULL, *b = NULL, *a2 = (struct records *)0x1;
    struct records_error err;
    if (!fx_pg_dsn())
        skip();
    assert_int_equal(open_as(f, "line-1", &a, &err), 0);
    assert_string_equal(records_station(a), "line-1");
    assert_int_equal(open_as(f, "line-2", &b, &err), 0);
    assert_int_equal(open_as(f, "line-1", &a2, &err), -EBUSY);
    assert_null(a2);
    assert_non_null(strstr(err.message, "in use by another process as station \"line-1\""));
    records_close(a);
    a = NULL;
    assert_int_equal(open_as(f, "line-1", &a, &err), 0); /* closing released the name */
    records_close(a);
    records_close(b);
}

static void test_bad_name_refused(void **state)
{
    struct fx *f = *state;
    struct records *r = (struct records *)0x1;
    struct records_error err;
    assert_int_equal(open_as(f, "line 1", &r, &err), -EINVAL);
    assert_null(r);
    assert_non_null(strstr(err.message, "station name"));
    assert_false(records_station_name_ok(""));
    assert_false(records_station_name_ok("a/b"));
    assert_true(records_station_name_ok("st-1.line_A"));
    char longname[80];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_false(records_station_name_ok(longname));
    longname[RECORDS_STATION_LEN - 1] = '\0';
    assert_true(records_station_name_ok(longname));
}

static int ev_copy(const struct records_event *e, void *ctx)
{
    memcpy(ctx, e, sizeof(*e));
    return 0;
}

static int64_t running_job(struct records *r, const char *mac)
{
    struct records_board b;
    struct records_job_new j = {.kind = "flash", .board_mac = mac, .slot = "A1"};
    int64_t id = 0;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", mac);
    snprintf(b.chip, sizeof(b.chip), "ESP32");
    assert_int_equal(records_board_upsert(r, &b, NULL), 0);
    assert_int_equal(records_job_begin(r, &j, &id, NULL), 0);
    return id;
}

static enum records_job_state job_state(struct records *r, int64_t id, char *station, size_t n)
{
    struct records_job j;
    assert_int_equal(records_job_get(r, id, &j, NULL), 0);
    snprintf(station, n, "%s", j.station);
    return j.state;
}

/* Jobs and events carry the station; a restart of one station interrupts its
 * own jobs only (PostgreSQL) or every job of the file (SQLite). */
static void test_recovery_per_station(void **state)
{
    struct fx *f = *state;
    struct records *a = NULL, *b = NULL;
    struct records_error err;
    char st[RECORDS_STATION_LEN];
    assert_int_equal(open_as(f, "st-a", &a, &err), 0);
    int64_t ja = running_job(a, "24:6f:28:00:00:0a");
    struct records_event_new ev = {.kind = "port.added", .slot = "A1"};
    int64_t evid = 0;
    assert_int_equal(records_event_append(a, &ev, &evid, NULL), 0);
    records_close(a); /* as a kill would leave it: the job still running */
    a = NULL;
    assert_int_equal(open_as(f, "st-b", &b, &err), 0);
    int64_t jb = running_job(b, "24:6f:28:00:00:0b");
    if (fx_pg_dsn()) {
        /* st-b's start did not touch st-a's job */
        assert_int_equal(records_recovered_jobs(b), 0);
        assert_int_equal(job_state(b, ja, st, sizeof(st)), RECORDS_JOB_RUNNING);
        assert_string_equal(st, "st-a");
        assert_int_equal(open_as(f, "st-a", &a, &err), 0);
        assert_int_equal(records_recovered_jobs(a), 1);
        assert_int_equal(job_state(a, ja, st, sizeof(st)), RECORDS_JOB_INTERRUPTED);
        assert_int_equal(job_state(a, jb, st, sizeof(st)), RECORDS_JOB_RUNNING);
        assert_string_equal(st, "st-b");
        records_close(a);
    } else {
        /* one station's file: the renamed station recovers the old name's job */
        assert_int_equal(records_recovered_jobs(b), 1);
        assert_int_equal(job_state(b, ja, st, sizeof(st)), RECORDS_JOB_INTERRUPTED);
        assert_string_equal(st, "st-a");
        assert_int_equal(job_state(b, jb, st, sizeof(st)), RECORDS_JOB_RUNNING);
        assert_string_equal(st, "st-b");
    }
    struct records_event e;
    memset(&e, 0, sizeof(e));
    assert_int_equal(records_events_since(b, evid - 1, 1, ev_copy, &e, NULL), 1);
    assert_string_equal(e.kind, "port.added");
    assert_string_equal(e.station, "st-a");
    records_close(b);
}

static struct records_job_result passed_result(void)
{
    struct records_job_result res;
    records_job_result_init(&res);
    res.state = RECORDS_JOB_PASSED;
    res.bytes = 4096;
    return res;
}

/* A job marked interrupted without its worker (a take-over by another station, or a
 * crash recovery) takes the result the worker reports later; a real result stays. */
static void test_result_replaces_interruption(void **state)
{
    struct fx *f = *state;
    struct records *a = NULL, *b = NULL;
    struct records_error err;
    char st[RECORDS_STATION_LEN];
    struct records_job_result res = passed_result();
    assert_int_equal(open_as(f, "st-a", &a, &err), 0);
    int64_t ja = running_job(a, "24:6f:28:00:00:1a");
    if (fx_pg_dsn()) {
        /* st-b finds st-a gone (no heartbeat) while st-a's worker is still flashing */
        int jobs = 0;
        bool marked = false;
        assert_int_equal(records_station_heartbeat(a, "http://a", "1", 1, "{}", &err), 0);
        assert_int_equal(open_as(f, "st-b", &b, &err), 0);
        assert_int_equal(records_jobs_interrupt_station(b, "st-a", records_now_ms(b) + 60000,
                                                        "no heartbeat", &jobs, &marked, &err),
                         0);
        assert_int_equal(jobs, 1);
        assert_int_equal(job_state(b, ja, st, sizeof(st)), RECORDS_JOB_INTERRUPTED);
        /* st-a's worker ends: its result is the truth */
        assert_int_equal(records_job_finish(a, ja, &res, &err), 0);
        assert_int_equal(job_state(b, ja, st, sizeof(st)), RECORDS_JOB_PASSED);
        records_close(b);
    } else {
        /* the file's own crash recovery guessed, then the result arrives (a journal) */
        records_close(a);
        a = NULL;
        assert_int_equal(open_as(f, "st-a", &a, &err), 0);
        assert_int_equal(job_state(a, ja, st, sizeof(st)), RECORDS_JOB_INTERRUPTED);
        assert_int_equal(records_job_finish(a, ja, &res, &err), 0);
        assert_int_equal(job_state(a, ja, st, sizeof(st)), RECORDS_JOB_PASSED);
    }
    /* a real result is never replaced */
    res.state = RECORDS_JOB_FAILED;
    assert_int_equal(records_job_finish(a, ja, &res, &err), -EINVAL);
    assert_non_null(strstr(err.message, "is already passed"));
    struct records_counters c;
    assert_int_equal(records_counters_line(a, 0, &c, &err), 0);
    assert_int_equal(c.passed, 1);
    assert_int_equal(c.by_state[RECORDS_JOB_INTERRUPTED], 0); /* counted once */
    records_close(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_open_together, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_share_the_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_name_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_per_station, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_replaces_interruption, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
