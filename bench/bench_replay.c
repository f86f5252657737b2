/*
 * bench_replay: how fast a station writes its records journal to PostgreSQL
 * after an outage (daemon/records_journal.c, replay). Figures, never pass/fail.
 *
 * One store opened journaled on the DSN (station "bench"); its session is
 * ended by the server (pg_terminate_backend), so every write goes to the
 * journal, as during an outage; then a busy station's outage is written
 * through the records API: 16 slots flashing at once, JOBS jobs (default
 * 2000), each a board upsert, the job's begin, job.started and job.finished
 * events, stage changes and byte progress once a second, 16 log lines and
 * its result: 34 entries a job on a clock that advances a second a step
 * (2000 jobs: 31 minutes of outage). Then, timed:
 *
 *   tick  the daemon's way: records_tick_budget(LONG_MS) called back to back
 *         (no 200 ms timer between) until the journal is written; each call
 *         replays for at most its budget (50 ms, or LONG_MS while the journal
 *         is more than 1000 entries behind, as the daemon allows when no job
 *         waits for its plan; LONG_MS 0: always 50 ms, records_tick). Round trips from the store's
 * own counters (records_db_stats: statements + BEGIN/COMMIT/ROLLBACK), commits from
 *         pg_stat_database.xact_commit (delta; the bench's own queries out).
 *   open  the same outage again, the store closed and opened: the whole
 *         journal is written inside records_open_journaled (no budget).
 *
 * Usage: bench_replay DSN [JOBS [LONG_MS]]   (bench/bench_replay.sh starts a server;
 * LONG_MS defaults to 150, the daemon's)
 * Prints one "key value" line per figure.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "records.h"
#include "records_line.h"

#define SLOTS 16
#define STEPS 15 /* a job's steps, one a second */

static int64_t clock_now = 1700000000000LL;

static int64_t fake_clock(void *ctx)
{
    (void)ctx;
    return clock_now;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_replay: %s: %s\n", what, why);
    exit(1);
}

/* First column of the first row of sql on dsn, as an integer. */
static int64_t sql_int(const char *dsn, const char *sql)
{
    PGconn *c = PQconnectdb(dsn);
    int64_t v = -1;
    if (PQstatus(c) != CONNECTION_OK)
        die("connect", PQerrorMessage(c));
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        die(sql, PQresultErrorMessage(res));
    if (PQntuples(res) > 0)
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    PQfinish(c);
    return v;
}

static void cut_off(const char *dsn)
{
    sql_int(dsn, "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND application_name = 'espstationd'");
}

/* Commits the database counted. Read while the station has no session: a session's
 * counts reach pg_stat_database when it ends (or after seconds idle). */
static int64_t xact_commit(const char *dsn)
{
    usleep(500 * 1000);
    return sql_int(dsn, "SELECT xact_commit FROM pg_stat_database WHERE datname = "
                        "current_database()");
}

static void ok(int rc, const struct records_error *err, const char *what)
{
    if (rc < 0)
        die(what, err->message);
}

struct slot {
    int64_t job;
    char mac[RECORDS_MAC_LEN];
};

/* Step `step` of the job in slot s (n: the job's number, for its MAC). */
static void job_step(struct records *r, struct slot *sl, int s, int n, int step)
{
    struct records_error err;
    char line[128], name[8];
    snprintf(name, sizeof(name), "A%d", s + 1);
    if (step == 0) {
        struct records_board b;
        records_board_init(&b);
        snprintf(sl->mac, sizeof(sl->mac), "24:6f:28:%02x:%02x:%02x", (n >> 16) & 0xff,
                 (n >> 8) & 0xff, n & 0xff);
        snprintf(b.mac, sizeof(b.mac), "%s", sl->mac);
        snprintf(b.chip, sizeof(b.chip), "ESP32");
        snprintf(b.slot, sizeof(b.slot), "%s", name);
        ok(records_board_upsert(r, &b, &err), &err, "board upsert");
        struct records_job_new jn = {.kind = "flash",
                                     .board_mac = sl->mac,
                                     .slot = name,
                                     .firmware = "app@1.0",
                                     .stage = "connect"};
        ok(records_job_begin(r, &jn, &sl->job, &err), &err, "job begin");
        struct records_event_new e = {
            .kind = "job.started", .board_mac = sl->mac, .slot = name, .job_id = sl->job};
        ok(records_event_append(r, &e, NULL, &err), &err, "event");
        ok(records_job_log(r, sl->job, "info", "job started: flash app@1.0", &err), &err, "log");
        return;
    }
    if (step == 1) {
        ok(records_job_progress(r, sl->job, "sync", -1, -1, &err), &err, "progress");
        ok(records_job_log(r, sl->job, "info", "sync ok after 1 try", &err), &err, "log");
        ok(records_job_log(r, sl->job, "info", "chip ESP32 rev 3, 4 MiB flash, 40 MHz", &err), &err,
           "log");
    } else if (step == 2) {
        ok(records_job_progress(r, sl->job, "write", 0, 0, &err), &err, "progress");
        ok(records_job_log(r, sl->job, "info", "stub running, 921600 baud", &err), &err, "log");
    } else if (step < STEPS - 2) {
        int64_t bytes = (int64_t)(step - 2) * 26214;
        ok(records_job_progress(r, sl->job, NULL, bytes, bytes / 2, &err), &err, "progress");
        snprintf(line, sizeof(line), "wrote %" PRId64 " of 262144 bytes at 0x10000", bytes);
        ok(records_job_log(r, sl->job, "debug", line, &err), &err, "log");
    } else if (step == STEPS - 2) {
        ok(records_job_progress(r, sl->job, "verify", 262144, 131072, &err), &err, "progress");
        ok(records_job_log(r, sl->job, "info", "md5 ok", &err), &err, "log");
    } else {
        struct records_job_result res;
        records_job_result_init(&res);
        res.state = RECORDS_JOB_PASSED;
        res.bytes = 262144;
        res.wire_bytes = 131072;
        ok(records_job_finish(r, sl->job, &res, &err), &err, "finish");
        snprintf(line, sizeof(line), "{\"state\":\"passed\",\"job\":%" PRId64 "}", sl->job);
        struct records_event_new e = {.kind = "job.finished",
                                      .board_mac = sl->mac,
                                      .slot = name,
                                      .job_id = sl->job,
                                      .data = line};
        ok(records_event_append(r, &e, NULL, &err), &err, "event");
        ok(records_job_log(r, sl->job, "info", "job passed", &err), &err, "log");
    }
}

/* The outage: jobs jobs on SLOTS slots, all written to the journal. */
static int64_t outage(struct records *r, int jobs)
{
    struct records_journal_status js;
    struct slot sl[SLOTS];
    for (int round = 0; round * SLOTS < jobs; round++)
        for (int step = 0; step < STEPS; step++) {
            clock_now += 1000;
            for (int s = 0; s < SLOTS && round * SLOTS + s < jobs; s++)
                job_step(r, &sl[s], s, round * SLOTS + s, step);
        }
    records_journal_status(r, &js);
    if (js.connected)
        die("outage", "the store is still connected");
    return js.pending;
}

int main(int argc, char **argv)
{
    struct records *r = NULL;
    struct records_error err;
    struct records_journal_status js;
    struct records_db_stats st;
    char journal[] = "/tmp/bench_replay.XXXXXX";
    char jpath[64];
    if (argc < 2)
        die("usage", "bench_replay DSN [JOBS]");
    const char *dsn = argv[1];
    int jobs = argc > 2 ? atoi(argv[2]) : 2000;
    int long_ms = argc > 3 ? atoi(argv[3]) : 150;
    if (!mkdtemp(journal))
        die("mkdtemp", strerror(errno));
    snprintf(jpath, sizeof(jpath), "%s/records.journal", journal);

    ok(records_open_journaled(RECORDS_BACKEND_POSTGRESQL, dsn, "bench", jpath, &r, &err), &err,
       "open");
    records_set_clock(r, fake_clock, NULL);
    records_db_stats_enable(r);

    /* tick: the daemon's catch-up, back to back */
    cut_off(dsn);
    int64_t entries = outage(r, jobs);
    int64_t bytes = (records_journal_status(r, &js), js.bytes);
    int64_t x0 = xact_commit(dsn);
    /* timed from the first tick: it starts the reconnect (a few ms on a local server) */
    records_db_stats_get(r, &st);
    uint64_t rt0 = st.round_trips;
    int64_t b0 = js.batches, r0 = js.replayed, ticks = 0;
    double t0 = mono_s();
    do {
        if (records_tick_budget(r, long_ms, &err) < 0 && err.code != -EIO)
            die("tick", err.message);
        ticks++;
        records_journal_status(r, &js);
        if (!js.connected)
            usleep(1000);
    } while (js.pending > 0);
    double wall = mono_s() - t0;
    records_db_stats_get(r, &st);
    cut_off(dsn); /* its counts to pg_stat_database */
    int64_t x1 = xact_commit(dsn);
    if (js.replayed - r0 != entries)
        die("tick", "replayed a different number of entries than journaled");
    printf("long_ms %d\njobs %d\nentries %" PRId64 "\njournal_bytes %" PRId64 "\n", long_ms, jobs,
           entries, bytes);
    printf("tick_wall_s %.3f\ntick_entries_per_s %.0f\ntick_ticks %" PRId64
           "\ntick_daemon_s %.1f\n",
           wall, (double)entries / wall, ticks, (double)ticks * 0.2);
    printf("tick_round_trips %" PRIu64 "\ntick_rt_per_entry %.2f\n", st.round_trips - rt0,
           (double)(st.round_trips - rt0) / (double)entries);
    /* x0's own read is a transaction too; the reconnect's few are in (a handful) */
    printf("tick_commits %" PRId64 "\ntick_batches %" PRId64 "\ntick_dropped %" PRId64 "\n",
           x1 - x0 - 1, js.batches - b0, js.dropped);

    /* open: the same outage left in the journal by a stopped station */
    entries = outage(r, jobs);
    records_close(r);
    r = NULL;
    x0 = xact_commit(dsn);
    t0 = mono_s();
    ok(records_open_journaled(RECORDS_BACKEND_POSTGRESQL, dsn, "bench", jpath, &r, &err), &err,
       "open with the journal");
    wall = mono_s() - t0;
    records_journal_status(r, &js);
    records_close(r);
    x1 = xact_commit(dsn);
    printf("open_entries %" PRId64 "\nopen_wall_s %.3f\nopen_entries_per_s %.0f\n",
           js.replayed_at_open, wall, (double)js.replayed_at_open / wall);
    printf("open_commits %" PRId64 "\nopen_batches %" PRId64 "\n", x1 - x0 - 1, js.batches);
    int64_t want_jobs = 2 * (int64_t)jobs;
    int64_t got_jobs = sql_int(dsn, "SELECT count(*) FROM jobs WHERE state = 'passed'");
    int64_t logs = sql_int(dsn, "SELECT count(*) FROM job_log");
    printf("rows_passed_jobs %" PRId64 " (want %" PRId64 ")\nrows_job_log %" PRId64
           " (want %" PRId64 ")\n",
           got_jobs, want_jobs, logs, want_jobs * 16);
    if (entries <= 0 || got_jobs != want_jobs || logs != want_jobs * 16)
        die("rows", "lost or duplicated rows");
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", journal);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_replay: cannot remove %s\n", journal);
    return 0;
}
