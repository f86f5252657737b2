/*
 * test_records_line: the line of stations in the records (records_line.h), on both
 * backends (ctest runs it again on PostgreSQL):
 *  - a heartbeat upserts the station's row; the list shows every station;
 *  - a station whose heartbeat is older than the cut-off is a gone candidate; taking
 *    over its jobs interrupts its queued/running jobs (not its finished ones, not
 *    another station's), each with one job.interrupted event naming both stations,
 *    and one station.gone event; a second call changes nothing (exactly once); a
 *    fresh heartbeat clears the mark and a later death is reported again (PostgreSQL; on
 *    SQLite, one station per file, the recovery at open takes every unfinished job and the
 *    take-over only reports the station gone, once);
 *  - a station that is not old enough is left alone, and a store cannot take its own;
 *  - job counts by state for a station;
 *  - PostgreSQL: two stations race to take over one gone station's 60 jobs from two
 *    threads: each job interrupted once, 60 events, one station.gone;
 *  - PostgreSQL: slot_link keys are the station's (the same port path on two stations
 *    keeps two baud limits);
 *  - the database work counters count round trips and ops.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "records_fixture.h"
#include "records_line.h"

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records_line.XXXXXX");
}

static struct records *open_as(struct fx *f, const char *station)
{
    (void)fx_open; /* the fixture's single store is not used: stations open their own */
    struct records *r;
    struct records_error err;
    int rc = records_open_station(fx_pg_dsn() ? RECORDS_BACKEND_POSTGRESQL : RECORDS_BACKEND_SQLITE,
                                  f->path, station, &r, &err);
    if (rc < 0)
        print_error("open as %s: %s\n", station, err.message);
    assert_int_equal(rc, 0);
    records_set_clock(r, fake_clock, f);
    return r;
}

static int64_t begin_job(struct records *r, const char *mac, const char *slot, bool queued)
{
    struct records_board b;
    struct records_error err;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", mac);
    assert_int_equal(records_board_upsert(r, &b, &err), 0);
    struct records_job_new j = {
        .kind = "flash", .board_mac = mac, .slot = slot, .stage = "write", .queued = queued};
    int64_t id;
    assert_int_equal(records_job_begin(r, &j, &id, &err), 0);
    return id;
}

struct evcount {
    int interrupted, gone;
    char by[RECORDS_STATION_LEN];
    char data[RECORDS_EVENT_DATA_LEN];
};

static int ev_cb(const struct records_event *e, void *ctx)
{
    struct evcount *c = ctx;
    if (!strcmp(e->kind, "job.interrupted") && strstr(e->data, "\"by\"")) {
        c->interrupted++;
        snprintf(c->by, sizeof(c->by), "%s", e->station);
        snprintf(c->data, sizeof(c->data), "%s", e->data);
    }
    if (!strcmp(e->kind, "station.gone"))
        c->gone++;
    return 0;
}

static struct evcount events(struct records *r)
{
    struct evcount c;
    memset(&c, 0, sizeof(c));
    assert_true(records_events_since(r, 0, 0, ev_cb, &c, NULL) >= 0);
    return c;
}

struct list {
    int n;
    char names[8][RECORDS_STATION_LEN];
    char status[8][256];
    int64_t hb[8];
};

static int list_cb(const struct records_station *s, void *ctx)
{
    struct list *l = ctx;
    if (l->n < 8) {
        snprintf(l->names[l->n], RECORDS_STATION_LEN, "%s", s->name);
        snprintf(l->status[l->n], 256, "%s", s->status);
        l->hb[l->n] = s->heartbeat_at;
    }
    l->n++;
    return 0;
}

static enum records_job_state job_state(struct records *r, int64_t id, char *msg, size_t n)
{
    struct records_job j;
    assert_int_equal(records_job_get(r, id, &j, NULL), 0);
    if (msg)
        snprintf(msg, n, "%s", j.error_message);
    return j.state;
}

static void test_heartbeat_list(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records *a = open_as(f, "st-a");
    assert_int_equal(
        records_station_heartbeat(a, "http://a:8080", "1.0", f->now - 5, "{\"slots\":[]}", &err),
        0);
    struct list l = {0};
    assert_int_equal(records_station_list(a, list_cb, &l, &err), 1);
    assert_string_equal(l.names[0], "st-a");
    assert_int_equal(l.hb[0], f->now);
    assert_string_equal(l.status[0], "{\"slots\":[]}");
    /* not an object: refused */
    assert_int_equal(records_station_heartbeat(a, NULL, NULL, 0, "[1]", &err), -EINVAL);
    f->now += 1000;
    assert_int_equal(records_station_heartbeat(a, "http://a:8080", "1.0", 1, NULL, &err), 0);
    memset(&l, 0, sizeof(l));
    assert_int_equal(records_station_list(a, list_cb, &l, &err), 1);
    assert_int_equal(l.hb[0], f->now);
    assert_string_equal(l.status[0], "{}");
    /* an unnamed store has no row */
    records_close(a);
    struct records *u;
    assert_int_equal(fx_records_open(f->path, &u, &err), 0);
    assert_int_equal(records_station_heartbeat(u, NULL, NULL, 0, NULL, &err), -EINVAL);
    records_close(u);
}

static void test_take_over(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    int jobs;
    bool marked;
    /* station B runs two jobs, one queued, one finished, then dies */
    struct records *b = open_as(f, "st-b");
    int64_t t0 = f->now;
    assert_int_equal(records_station_heartbeat(b, "http://b:8080", "1.0", t0, "{}", &err), 0);
    int64_t j1 = begin_job(b, "24:6f:28:00:00:01", "A1", false);
    int64_t j2 = begin_job(b, "24:6f:28:00:00:02", "A2", false);
    int64_t j3 = begin_job(b, "24:6f:28:00:00:03", "A3", true);
    int64_t j4 = begin_job(b, "24:6f:28:00:00:04", "A4", false);
    struct records_job_result res = {.state = RECORDS_JOB_PASSED,
                                     .device_status = -1,
                                     .device_error = -1,
                                     .error_op = -1,
                                     .error_address = -1,
                                     .bytes = -1,
                                     .wire_bytes = -1,
                                     .kbps = -1,
                                     .seconds = -1};
    assert_int_equal(records_job_finish(b, j4, &res, &err), 0);
    records_close(b); /* kill -9 leaves the same rows */

    /* station A: its own running job stays its own */
    struct records *a = open_as(f, "st-a");
    if (!fx_pg_dsn()) {
        /* SQLite: a file is one station's; its recovery at open takes every unfinished job
         * whatever name it carries (a renamed host): nothing is left to take over, and the
         * take-over only reports the station gone, once. */
        assert_int_equal(records_recovered_jobs(a), 3);
        f->now += 20000;
        assert_int_equal(
            records_jobs_interrupt_station(a, "st-b", f->now - 15000, "test", &jobs, &marked, &err),
            0);
        assert_int_equal(jobs, 0);
        assert_true(marked);
        assert_int_equal(
            records_jobs_interrupt_station(a, "st-b", f->now - 15000, "test", &jobs, &marked, &err),
            0);
        assert_false(marked);
        assert_int_equal(events(a).gone, 1);
        assert_int_equal(job_state(a, j4, NULL, 0), RECORDS_JOB_PASSED);
        records_close(a);
        return;
    }
    assert_int_equal(records_station_heartbeat(a, "http://a:8080", "1.0", t0, "{}", &err), 0);
    int64_t ja = begin_job(a, "24:6f:28:00:00:0a", "B1", false);
    char names[4][RECORDS_STATION_LEN];

    /* not old enough: nothing */
    assert_int_equal(records_station_gone_candidates(a, t0 - 1, names, 4, &err), 0);
    assert_int_equal(
        records_jobs_interrupt_station(a, "st-b", t0 - 1, "test", &jobs, &marked, &err), 0);
    assert_int_equal(jobs, 0);
    assert_false(marked);
    assert_int_equal(job_state(a, j1, NULL, 0), RECORDS_JOB_RUNNING);
    /* not its own */
    assert_int_equal(
        records_jobs_interrupt_station(a, "st-a", f->now + 1, "x", &jobs, &marked, &err), -EINVAL);

    /* B is gone */
    f->now += 20000;
    int64_t before = f->now - 15000;
    assert_int_equal(records_station_gone_candidates(a, before, names, 4, &err), 1);
    assert_string_equal(names[0], "st-b");
    assert_int_equal(records_jobs_interrupt_station(a, "st-b", before, "no heartbeat for 15 s",
                                                    &jobs, &marked, &err),
                     0);
    assert_int_equal(jobs, 3);
    assert_true(marked);
    char msg[RECORDS_TEXT_LEN];
    assert_int_equal(job_state(a, j1, msg, sizeof(msg)), RECORDS_JOB_INTERRUPTED);
    assert_string_equal(msg, "station st-b stopped while write");
    assert_int_equal(job_state(a, j2, NULL, 0), RECORDS_JOB_INTERRUPTED);
    assert_int_equal(job_state(a, j3, NULL, 0), RECORDS_JOB_INTERRUPTED);
    assert_int_equal(job_state(a, j4, NULL, 0), RECORDS_JOB_PASSED);
    assert_int_equal(job_state(a, ja, NULL, 0), RECORDS_JOB_RUNNING);
    struct evcount c = events(a);
    assert_int_equal(c.interrupted, 3);
    assert_int_equal(c.gone, 1);
    assert_string_equal(c.by, "st-a");
    assert_non_null(strstr(c.data, "\"station\":\"st-b\""));
    assert_non_null(strstr(c.data, "\"by\":\"st-a\""));

    /* again: nothing more, and it is no longer a candidate */
    assert_int_equal(
        records_jobs_interrupt_station(a, "st-b", before, "again", &jobs, &marked, &err), 0);
    assert_int_equal(jobs, 0);
    assert_false(marked);
    assert_int_equal(records_station_gone_candidates(a, before, names, 4, &err), 0);
    c = events(a);
    assert_int_equal(c.interrupted, 3);
    assert_int_equal(c.gone, 1);
    struct list l = {0};
    assert_int_equal(records_station_list(a, list_cb, &l, &err), 2);
    assert_string_equal(l.names[1], "st-b");
    assert_non_null(strstr(l.status[1], "\"gone\":{\"by\":\"st-a\""));

    int64_t counts[RECORDS_JOB_STATE_COUNT];
    assert_int_equal(records_station_job_counts(a, "st-b", 0, counts, &err), 0);
    assert_int_equal(counts[RECORDS_JOB_INTERRUPTED], 3);
    assert_int_equal(counts[RECORDS_JOB_PASSED], 1);
    assert_int_equal(records_station_job_counts(a, NULL, 0, counts, &err), 0);
    assert_int_equal(counts[RECORDS_JOB_RUNNING], 1);
    assert_int_equal(counts[RECORDS_JOB_INTERRUPTED], 0);
    records_close(a);

    /* B comes back (its recovery finds nothing), heartbeats: the mark is gone */
    b = open_as(f, "st-b");
    assert_int_equal(records_recovered_jobs(b), 0);
    assert_int_equal(records_station_heartbeat(b, "http://b:8080", "1.0", f->now, "{}", &err), 0);
    records_close(b);
    a = open_as(f, "st-a");
    assert_int_equal(records_station_gone_candidates(a, f->now - 15000, names, 4, &err), 0);
    /* and dies again: reported once more */
    f->now += 20000;
    assert_int_equal(records_station_gone_candidates(a, f->now - 15000, names, 4, &err), 1);
    assert_int_equal(
        records_jobs_interrupt_station(a, "st-b", f->now - 15000, "again", &jobs, &marked, &err),
        0);
    assert_int_equal(jobs, 0);
    assert_true(marked);
    assert_int_equal(events(a).gone, 2);
    records_close(a);
}

struct racer {
    struct records *r;
    int64_t before;
    int jobs;
    int marked;
    int rc;
};

static void *race(void *arg)
{
    struct racer *x = arg;
    bool m = false;
    struct records_error err;
    x->rc = records_jobs_interrupt_station(x->r, "st-b", x->before, "race", &x->jobs, &m, &err);
    if (x->rc < 0)
        fprintf(stderr, "race: %s\n", err.message);
    x->marked = m;
    return NULL;
}

static void test_race_pg(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    if (!fx_pg_dsn())
        skip(); /* one process per SQLite file: BEGIN IMMEDIATE serialises anyway */
    struct records *b = open_as(f, "st-b");
    assert_int_equal(records_station_heartbeat(b, NULL, NULL, 0, "{}", &err), 0);
    for (int i = 0; i < 60; i++) {
        char mac[18];
        snprintf(mac, sizeof(mac), "24:6f:28:00:01:%02x", i);
        begin_job(b, mac, "A1", i % 2);
    }
    records_close(b);
    f->now += 60000;
    for (int round = 0; round < 3; round++) {
        struct racer x[2] = {{.r = open_as(f, "st-a")}, {.r = open_as(f, "st-c")}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++) {
            x[i].before = f->now - 1000;
            assert_int_equal(pthread_create(&t[i], NULL, race, &x[i]), 0);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        assert_int_equal(x[0].rc, 0);
        assert_int_equal(x[1].rc, 0);
        assert_int_equal(x[0].jobs + x[1].jobs, round == 0 ? 60 : 0);
        assert_int_equal(x[0].marked + x[1].marked, round == 0 ? 1 : 0);
        struct evcount c = events(x[0].r);
        assert_int_equal(c.interrupted, 60);
        assert_int_equal(c.gone, 1);
        records_close(x[0].r);
        records_close(x[1].r);
    }
}

static void test_slot_link_per_station_pg(void **state)
{
    struct fx *f = *state;
    if (!fx_pg_dsn())
        skip(); /* a SQLite file is one station's */
    struct records *a = open_as(f, "st-a"), *b = open_as(f, "st-b");
    const char *key = "pci-0000:00:14.0-usb-0:2:1.0";
    uint32_t v;
    assert_int_equal(records_slot_baud_limit_set(a, key, 460800, NULL), 0);
    assert_int_equal(records_slot_baud_limit_get(b, key, &v, NULL), 0);
    assert_int_equal(v, 0);
    assert_int_equal(records_slot_baud_limit_set(b, key, 921600, NULL), 0);
    assert_int_equal(records_slot_baud_limit_get(a, key, &v, NULL), 0);
    assert_int_equal(v, 460800);
    assert_int_equal(records_slot_baud_limit_get(b, key, &v, NULL), 0);
    assert_int_equal(v, 921600);
    assert_int_equal(records_slot_baud_limit_set(a, key, 0, NULL), 0);
    assert_int_equal(records_slot_baud_limit_get(b, key, &v, NULL), 0);
    assert_int_equal(v, 921600);
    records_close(a);
    records_close(b);
}

static void test_db_stats(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records *a = open_as(f, "st-a");
    struct records_db_stats s;
    records_db_stats_get(a, &s);
    assert_int_equal(s.round_trips, 0);
    assert_int_equal(records_db_stats_enable(a), 0);
    assert_int_equal(records_db_stats_enable(a), 0);
    assert_int_equal(records_station_heartbeat(a, NULL, NULL, 0, "{}", &err), 0);
    records_db_stats_get(a, &s);
    assert_int_equal(s.round_trips, 1);
    assert_int_equal(s.ops, 1);
    assert_int_equal(s.window, 1);
    begin_job(a, "24:6f:28:00:00:01", "A1", false);
    records_db_stats_get(a, &s);
    assert_true(s.round_trips >= 3);
    assert_true(s.ops >= 3);
    assert_true(s.p99_ms >= s.p50_ms);
    assert_true(s.max_ms >= s.p99_ms);
    assert_true(s.total_ms > 0);
    records_close(a); /* the counters end with the store */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_heartbeat_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_pg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_link_per_station_pg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_db_stats, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
