/*
 * test_records_journal_batch: the journal's replay writes its entries in
 * batches, one transaction each (records_journal.c, replay). On PostgreSQL
 * (through pg_with.sh; skipped on SQLite, which has no journal):
 *
 *  - lost midway: a trigger on job_log ends the station's own session (the
 *    database going away) at the first marked log line that is not the first
 *    write of its transaction, i.e. in the middle of a batch. Right after, the
 *    database holds exactly the entries the station counts as written (the
 *    killed batch left nothing: no partial commit, nothing counted that is
 *    not there); the station keeps journaling new jobs meanwhile; once it is
 *    back everything is there once, in the journal's order.
 *  - one refused entry (a log line for a job that does not exist) in the
 *    middle of a batch is dropped with the reason, as before batches, and
 *    every other entry of that batch and after it is written.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "records_fixture.h"

#define JOBS 60        /* jobs written during the outage */
#define PER_JOB 9      /* entries per job: U B L L L L L F E */
#define MARKED_FROM 40 /* jobs whose log lines are marked "kill" (the trigger's) */
#define MARKED_TO 50

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records_journal_batch.XXXXXX");
}

/* The fixture's opener is not used: these tests open the store journaled. */
static void (*const unused_fx_open)(struct fx *) __attribute__((unused)) = fx_open;

static int open_journaled(struct fx *f, struct records_error *err)
{
    char jp[128];
    snprintf(jp, sizeof(jp), "%s/records.journal", f->dir);
    int rc = records_open_journaled(RECORDS_BACKEND_POSTGRESQL, f->path, "st1", jp, &f->r, err);
    if (rc < 0)
        print_error("records_open_journaled: %s\n", err->message);
    return rc;
}

static void sql_ok(const struct fx *f, const char *sql)
{
    char out[512];
    if (fx_pg_sql(f->path, sql, out, sizeof(out)) < 0)
        fail_msg("%s: %s", sql, out);
}

static int64_t sql_int(const struct fx *f, const char *sql)
{
    char out[512];
    if (fx_pg_sql(f->path, sql, out, sizeof(out)) < 0)
        fail_msg("%s: %s", sql, out);
    return strtoll(out, NULL, 10);
}

/* The server ends the store's session: its next writes go to the journal. */
static void cut_off(struct fx *f)
{
    char sql[256], out[64];
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
             "WHERE datname = '%s' AND application_name = 'espstationd'",
             f->pgdb);
    assert_int_equal(fx_pg_sql(fx_pg_dsn(), sql, out, sizeof(out)), 0);
    assert_string_equal(out, "1");
}

/* Job k's writes: board upsert, begin, 5 log lines, result, event (9 entries). */
static void write_job(struct fx *f, int k, int64_t *id_out)
{
    struct records_error err;
    struct records_board b;
    int64_t id = 0, ev = -1;
    char line[64];
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "24:6f:28:00:%02x:%02x", k / 256, k % 256);
    snprintf(b.chip, sizeof(b.chip), "ESP32");
    assert_int_equal(records_board_upsert(f->r, &b, &err), 0);
    struct records_job_new jn = {.kind = "flash", .board_mac = b.mac, .slot = "A1"};
    assert_int_equal(records_job_begin(f->r, &jn, &id, &err), 0);
    for (int i = 0; i < 5; i++) {
        snprintf(line, sizeof(line), "%s job %d line %d",
                 k >= MARKED_FROM && k < MARKED_TO ? "kill" : "log", k, i);
        assert_int_equal(records_job_log(f->r, id, "info", line, &err), 0);
    }
    struct records_job_result res;
    records_job_result_init(&res);
    res.state = RECORDS_JOB_PASSED;
    res.bytes = 1000 + k;
    assert_int_equal(records_job_finish(f->r, id, &res, &err), 0);
    struct records_event_new e = {
        .kind = "job.finished", .board_mac = b.mac, .job_id = id, .data = "{}"};
    assert_int_equal(records_event_append(f->r, &e, &ev, &err), 0);
    if (id_out)
        *id_out = id;
}

struct rows {
    int64_t boards, jobs, logs, passed, events;
};

/* The rows the first n entries of jobs written by write_job make. */
static struct rows rows_of_prefix(int64_t n)
{
    int64_t q = n / PER_JOB, rem = n % PER_JOB;
    struct rows w = {q, q, 5 * q, q, q};
    w.boards += rem >= 1;
    w.jobs += rem >= 2;
    w.logs += rem > 2 ? (rem - 2 < 5 ? rem - 2 : 5) : 0;
    w.passed += rem >= 8;
    return w;
}

static struct rows rows_in_db(const struct fx *f)
{
    struct rows g;
    g.boards = sql_int(f, "SELECT count(*) FROM boards");
    g.jobs = sql_int(f, "SELECT count(*) FROM jobs");
    g.logs = sql_int(f, "SELECT count(*) FROM job_log");
    g.passed = sql_int(f, "SELECT count(*) FROM jobs WHERE state = 'passed'");
    g.events = sql_int(f, "SELECT count(*) FROM events WHERE kind = 'job.finished'");
    return g;
}

static void rows_equal(const struct rows *got, const struct rows *want, const char *when)
{
    if (memcmp(got, want, sizeof(*got)) != 0)
        fail_msg("%s: boards/jobs/logs/passed/events in the database %lld/%lld/%lld/%lld/%lld, "
                 "want %lld/%lld/%lld/%lld/%lld",
                 when, (long long)got->boards, (long long)got->jobs, (long long)got->logs,
                 (long long)got->passed, (long long)got->events, (long long)want->boards,
                 (long long)want->jobs, (long long)want->logs, (long long)want->passed,
                 (long long)want->events);
}

/* Ticks until the journal is written (connected, nothing pending). */
static void tick_until_written(struct fx *f, struct records_journal_status *js)
{
    struct records_error err;
    for (int i = 0; i < 3000; i++) {
        records_tick(f->r, &err);
        assert_int_equal(records_journal_status(f->r, js), 0);
        if (js->connected && js->pending == 0)
            return;
        usleep(10 * 1000);
    }
    fail_msg("the journal was not written: %lld pending, connected %d (%s)", (long long)js->pending,
             js->connected, js->unreachable);
}

/*
 * Ends the session that runs it at the first "kill" log line inserted after
 * other rows in the same transaction (once: a sequence, which a rollback does
 * not undo), after noting in sequences how many rows that transaction had
 * written before (probe_rows) and that it fired (kill_once).
 */
static const char KILL_TRIGGER[] =
    "CREATE SEQUENCE kill_once; CREATE SEQUENCE probe_rows MINVALUE 0 START 0;"
    "CREATE FUNCTION kill_mid_batch() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "DECLARE mine bigint; x text := (txid_current() % 4294967296)::text;\n"
    "BEGIN\n"
    "  IF NEW.line NOT LIKE 'kill%' THEN RETURN NEW; END IF;\n"
    "  SELECT (SELECT count(*) FROM job_log WHERE xmin::text = x AND id <> NEW.id)\n"
    "       + (SELECT count(*) FROM jobs WHERE xmin::text = x)\n"
    "       + (SELECT count(*) FROM boards WHERE xmin::text = x)\n"
    "       + (SELECT count(*) FROM events WHERE xmin::text = x) INTO mine;\n"
    "  IF mine > 0 AND (SELECT last_value FROM kill_once) = 1\n"
    "     AND NOT (SELECT is_called FROM kill_once) THEN\n"
    "    PERFORM nextval('kill_once');\n"
    "    PERFORM setval('probe_rows', mine, true);\n"
    "    PERFORM pg_terminate_backend(pg_backend_pid());\n"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END $$;"
    "CREATE TRIGGER kill_mid_batch AFTER INSERT ON job_log FOR EACH ROW "
    "EXECUTE FUNCTION kill_mid_batch();";

static void test_pg_batch_lost_midway(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_journal_status js;
    int64_t id_after = 0;
    if (!fx_pg_dsn())
        skip();
    assert_int_equal(open_journaled(f, &err), 0);
    sql_ok(f, KILL_TRIGGER);
    cut_off(f);
    for (int k = 0; k < JOBS; k++)
        write_job(f, k, NULL);
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_int_equal(js.pending, JOBS * PER_JOB);

    /* Replay until the database goes away under it. */
    bool killed = false;
    for (int i = 0; i < 3000 && !killed; i++) {
        records_tick(f->r, &err);
        killed = sql_int(f, "SELECT is_called::int FROM kill_once") != 0 ||
                 sql_int(f, "SELECT count(*) FROM job_log WHERE line LIKE 'kill%'") > 0;
        assert_int_equal(records_journal_status(f->r, &js), 0);
        if (!killed && js.pending == 0)
            break;
        if (!killed)
            usleep(10 * 1000);
    }
    if (sql_int(f, "SELECT is_called::int FROM kill_once") == 0)
        fail_msg("no transaction wrote a marked log line after another row: the replay did not "
                 "batch (replayed %lld, %lld transactions)",
                 (long long)js.replayed, (long long)js.batches);
    int64_t in_batch = sql_int(f, "SELECT last_value FROM probe_rows");
    assert_true(in_batch > 0); /* the database went away in the middle of a batch */
    /* Before the station reconnects (no attempt within 2 s of the loss): */
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_false(js.connected);
    assert_int_equal(js.replayed + js.pending, JOBS * PER_JOB);
    assert_true(js.replayed < MARKED_TO * PER_JOB);
    print_message("lost after %lld entries written in %lld transactions; the lost one had "
                  "written %lld rows\n",
                  (long long)js.replayed, (long long)js.batches, (long long)in_batch);
    struct rows want = rows_of_prefix(js.replayed), got = rows_in_db(f);
    /* Exactly what the station counts as written: the lost batch left nothing. */
    rows_equal(&got, &want, "after the loss");

    /* The station goes on meanwhile: a new job is journaled behind the rest. */
    write_job(f, JOBS, &id_after);
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_true(js.pending > PER_JOB);

    tick_until_written(f, &js);
    assert_int_equal(js.dropped, 0);
    assert_int_equal(js.replayed, (JOBS + 1) * PER_JOB);
    want = rows_of_prefix((JOBS + 1) * PER_JOB);
    got = rows_in_db(f);
    rows_equal(&got, &want, "once back");
    /* Each job once with its 5 lines; the lines in the order they were written (the key's
     * number grows with each write). */
    assert_int_equal(sql_int(f, "SELECT count(*) FROM (SELECT job_id FROM job_log GROUP BY "
                                "job_id HAVING count(*) <> 5) t"),
                     0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM (SELECT split_part(jkey, '/', 3)::bigint n, "
                                "lag(split_part(jkey, '/', 3)::bigint) OVER (ORDER BY id) p "
                                "FROM job_log) t WHERE p > n"),
                     0);
    assert_int_equal(sql_int(f, "SELECT count(*) FROM jobs WHERE bytes <> 1000 + "
                                "(SELECT count(*) FROM jobs j2 WHERE j2.id < jobs.id)"),
                     0);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM job_log WHERE job_id = %lld",
             (long long)id_after);
    assert_int_equal(sql_int(f, sql), 5);
}

static void test_pg_batch_refused_entry(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_journal_status js;
    if (!fx_pg_dsn())
        skip();
    assert_int_equal(open_journaled(f, &err), 0);
    cut_off(f);
    for (int k = 0; k < JOBS; k++) {
        write_job(f, k, NULL);
        if (k == 11) /* the database refuses it: no such job (foreign key) */
            assert_int_equal(records_job_log(f->r, 987654321, "info", "orphan line", &err), 0);
    }
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_int_equal(js.pending, JOBS * PER_JOB + 1);
    tick_until_written(f, &js);
    assert_int_equal(js.dropped, 1);
    assert_non_null(strstr(js.last_error, "refused by the database and dropped"));
    assert_non_null(strstr(js.last_error, "no job 987654321"));
    assert_int_equal(js.replayed, JOBS * PER_JOB + 1);
    struct rows want = rows_of_prefix(JOBS * PER_JOB), got = rows_in_db(f);
    rows_equal(&got, &want, "after the replay");
    assert_int_equal(sql_int(f, "SELECT count(*) FROM job_log WHERE line = 'orphan line'"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pg_batch_lost_midway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_batch_refused_entry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
