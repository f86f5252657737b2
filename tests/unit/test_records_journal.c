/*
 * test_records_journal: the records store's write-behind journal
 * (records_journal.h, records_open_journaled). The file format on its own
 * (round trip, a truncated or corrupt tail: a clear error and the good prefix
 * kept); on PostgreSQL (run through pg_with.sh) the store: a journal left by an
 * earlier process is written at open before the crash recovery, twice over
 * writes nothing twice (a crash during replay), a damaged tail is set aside;
 * a lost connection sends writes to the journal and records_tick writes them
 * once when it is back. On SQLite the journal is not used.
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
#include "records_journal.h"

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records_journal.XXXXXX");
}

/* The fixture's opener is not used: these tests open the store journaled. */
static void (*const unused_fx_open)(struct fx *) __attribute__((unused)) = fx_open;

/* ---- the format ---------------------------------------------------------------------- */

struct got {
    int n;
    struct {
        char op;
        int64_t seq, ts;
        int nf;
        char f[4][64];
        bool null[4];
    } e[8];
};

static int collect(const struct rj_entry *e, void *ctx)
{
    struct got *g = ctx;
    if (g->n >= 8)
        return 1;
    g->e[g->n].op = e->op;
    g->e[g->n].seq = e->seq;
    g->e[g->n].ts = e->ts;
    g->e[g->n].nf = e->nf;
    for (int i = 0; i < e->nf && i < 4; i++) {
        g->e[g->n].null[i] = !e->f[i];
        snprintf(g->e[g->n].f[i], sizeof(g->e[g->n].f[i]), "%s", e->f[i] ? e->f[i] : "");
    }
    g->n++;
    return 0;
}

/* Three entries in buf (no header); *ends gets each line's end offset. */
static size_t three(char *buf, size_t cap, size_t ends[3])
{
    const char *f1[] = {"12", "info", "tab\there\nnew line \\ back", NULL};
    const char *f2[] = {"", "x"};
    const char *f3[] = {"\\N"};
    struct rj_entry e[3] = {{.op = 'L', .seq = 1, .ts = 1000, .nf = 4},
                            {.op = 'P', .seq = 2, .ts = 1001, .nf = 2},
                            {.op = 'E', .seq = 3, .ts = 1002, .nf = 1}};
    memcpy(e[0].f, f1, sizeof(f1));
    memcpy(e[1].f, f2, sizeof(f2));
    memcpy(e[2].f, f3, sizeof(f3));
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        size_t len;
        char *line = rj_encode(&e[i], &len);
        assert_non_null(line);
        assert_true(off + len < cap);
        assert_non_null(memchr(line, '\n', len));
        assert_ptr_equal(memchr(line, '\n', len), line + len - 1); /* one line each */
        memcpy(buf + off, line, len);
        off += len;
        ends[i] = off;
        free(line);
    }
    return off;
}

static void test_format_round_trip(void **state)
{
    (void)state;
    char buf[4096], msg[160];
    size_t ends[3], good, len = three(buf, sizeof(buf), ends);
    struct got g = {0};
    assert_int_equal(rj_parse(buf, len, 0, collect, &g, &good, msg, sizeof(msg)), 3);
    assert_int_equal(good, len);
    assert_string_equal(msg, "");
    assert_int_equal(g.e[0].op, 'L');
    assert_int_equal(g.e[0].seq, 1);
    assert_int_equal(g.e[0].ts, 1000);
    assert_int_equal(g.e[0].nf, 4);
    assert_string_equal(g.e[0].f[2], "tab\there\nnew line \\ back");
    assert_true(g.e[0].null[3]);
    assert_false(g.e[1].null[0]); /* "" is not NULL */
    assert_string_equal(g.e[1].f[0], "");
    assert_string_equal(g.e[2].f[0], "\\N"); /* the text \N, escaped: not NULL */
    assert_false(g.e[2].null[0]);
    /* A callback that stops: the entry is not consumed. */
    struct got g2 = {.n = 7};
    assert_int_equal(rj_parse(buf, len, 0, collect, &g2, &good, msg, sizeof(msg)), 1);
    assert_int_equal(good, ends[0]);
}

static void test_format_truncated_tail(void **state)
{
    (void)state;
    char buf[4096], msg[160];
    size_t ends[3], good;
    three(buf, sizeof(buf), ends);
    struct got g = {0};
    /* The process died while writing the third line. */
    size_t cut = ends[1] + (ends[2] - ends[1]) / 2;
    assert_int_equal(rj_parse(buf, cut, 0, collect, &g, &good, msg, sizeof(msg)), -EBADMSG);
    assert_int_equal(g.n, 2); /* the good prefix was delivered */
    assert_int_equal(good, ends[1]);
    assert_non_null(strstr(msg, "truncated last entry"));
    /* Read in chunks, a partial last line only ends the call. */
    memset(&g, 0, sizeof(g));
    assert_int_equal(rj_parse(buf, cut, 1, collect, &g, &good, msg, sizeof(msg)), 2);
    assert_int_equal(good, ends[1]);
}

static void test_format_corrupt_entry(void **state)
{
    (void)state;
    char buf[4096], msg[160];
    size_t ends[3], good, len = three(buf, sizeof(buf), ends);
    struct got g = {0};
    buf[ends[0] + 12] ^= 0x20; /* one flipped bit in the second entry */
    assert_int_equal(rj_parse(buf, len, 0, collect, &g, &good, msg, sizeof(msg)), -EBADMSG);
    assert_int_equal(g.n, 1);
    assert_int_equal(good, ends[0]);
    assert_non_null(strstr(msg, "checksum mismatch"));
    char want[64];
    snprintf(want, sizeof(want), "corrupt entry at byte %zu", ends[0]);
    assert_non_null(strstr(msg, want));
    /* Garbage that is no entry at all. */
    memset(&g, 0, sizeof(g));
    assert_int_equal(rj_parse("hello\n", 6, 0, collect, &g, &good, msg, sizeof(msg)), -EBADMSG);
    assert_int_equal(g.n, 0);
    assert_int_equal(good, 0);
    /* A valid checksum over a payload that does not parse. */
    const char *payload = "L\tx\t1";
    char line[64];
    struct rj_entry e = {.op = 'L', .seq = 1, .ts = 1, .nf = 0};
    size_t l;
    char *ok = rj_encode(&e, &l);
    assert_non_null(ok);
    snprintf(line, sizeof(line), "%.8s %s\n", ok, payload); /* a wrong crc for this payload */
    free(ok);
    assert_int_equal(rj_parse(line, strlen(line), 0, NULL, NULL, &good, msg, sizeof(msg)),
                     -EBADMSG);
}

/* ---- the store --------------------------------------------------------------------------- */

static void journal_path(const struct fx *f, char *out, size_t n)
{
    snprintf(out, n, "%s/records.journal", f->dir);
}

static int open_journaled(struct fx *f, struct records_error *err)
{
    char jp[128];
    journal_path(f, jp, sizeof(jp));
    int rc =
        records_open_journaled(fx_pg_dsn() ? RECORDS_BACKEND_POSTGRESQL : RECORDS_BACKEND_SQLITE,
                               f->path, "st1", jp, &f->r, err);
    if (rc < 0)
        print_error("records_open_journaled: %s\n", err->message);
    return rc;
}

static void test_sqlite_has_no_journal(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_journal_status js;
    if (fx_pg_dsn())
        skip();
    assert_int_equal(open_journaled(f, &err), 0);
    assert_int_equal(records_journal_status(f->r, &js), -ENOENT);
    assert_int_equal(records_tick(f->r, &err), 0);
    char jp[128];
    journal_path(f, jp, sizeof(jp));
    assert_int_equal(access(jp, F_OK), -1);
}

/* Writes a journal file: a board, a job begun, two log lines, its result, an
 * event; the job's id is `id` (reserved: not in the database yet). */
static void write_journal(const char *path, int64_t id, bool bad_tail)
{
    FILE *fp = fopen(path, "w");
    char idb[24];
    assert_non_null(fp);
    fputs(RJ_HEADER, fp);
    snprintf(idb, sizeof(idb), "%lld", (long long)id);
    const char *u[14] = {
        "24:6f:28:00:00:07", "ESP32", "300", "-1", "-1", "40", "A1", "", "", "", "", "", "", ""};
    const char *b[7] = {idb, "flash", "24:6f:28:00:00:07", "A1", "app@1.0", "0", "open"};
    const char *l1[4] = {idb, "info", "sync ok", "st1/1/1"};
    const char *l2[4] = {idb, "info", "wrote 100 bytes", "st1/1/2"};
    const char *fin[16] = {idb,  "passed", "0",   NULL,  NULL, NULL, "-1", "-1",
                           "-1", "-1",     "100", "120", "-1", "0",  "-1", "0"};
    char data[64];
    snprintf(data, sizeof(data), "{\"state\":\"passed\",\"job\":%s}", idb);
    const char *ev[6] = {"job.finished", "24:6f:28:00:00:07", "A1", idb, data, "st1/1/3"};
    struct rj_entry e[6] = {{'U', 1, 1700000001000, 14, {0}}, {'B', 2, 1700000001000, 7, {0}},
                            {'L', 3, 1700000002000, 4, {0}},  {'L', 4, 1700000003000, 4, {0}},
                            {'F', 5, 1700000004000, 16, {0}}, {'E', 6, 1700000004000, 6, {0}}};
    memcpy(e[0].f, u, sizeof(u));
    memcpy(e[1].f, b, sizeof(b));
    memcpy(e[2].f, l1, sizeof(l1));
    memcpy(e[3].f, l2, sizeof(l2));
    memcpy(e[4].f, fin, sizeof(fin));
    memcpy(e[5].f, ev, sizeof(ev));
    for (int i = 0; i < 6; i++) {
        size_t len;
        char *line = rj_encode(&e[i], &len);
        assert_non_null(line);
        assert_int_equal(fwrite(line, 1, len, fp), len);
        free(line);
    }
    if (bad_tail)
        fputs("0badc0de L\t7\t1700000005000\tcut sho", fp);
    assert_int_equal(fclose(fp), 0);
}

static void pg_count(const struct fx *f, const char *sql, const char *want)
{
    char out[256];
    assert_int_equal(fx_pg_sql(f->path, sql, out, sizeof(out)), 0);
    if (strcmp(out, want) != 0)
        fail_msg("%s: got %s, want %s", sql, out, want);
}

static void check_once(const struct fx *f, int64_t id)
{
    char sql[256], want[64];
    snprintf(sql, sizeof(sql),
             "SELECT state || '|' || bytes || '|' || ended_at || '|' || seconds || '|' || "
             "coalesce(board_mac, '') || '|' || station FROM jobs WHERE id = %lld",
             (long long)id);
    /* ended_at and seconds from the entries' own times (1700000001000 .. 04000) */
    pg_count(f, sql, "passed|100|1700000004000|3|24:6f:28:00:00:07|st1");
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM job_log WHERE job_id = %lld", (long long)id);
    pg_count(f, sql, "2");
    pg_count(f, "SELECT count(*) FROM events WHERE kind = 'job.finished'", "1");
    pg_count(f, "SELECT count(*) FROM events WHERE kind = 'job.interrupted'", "0");
    pg_count(f, "SELECT count(*) FROM boards", "1");
    snprintf(want, sizeof(want), "%d", 1);
    pg_count(f, "SELECT count(*) FROM jobs", want);
}

static void test_pg_replay_at_open_twice(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_journal_status js;
    char jp[128], copy[160], cmd[400];
    if (!fx_pg_dsn())
        skip();
    /* The schema first (an empty journal), then the id the journal's job has. */
    assert_int_equal(open_journaled(f, &err), 0);
    records_close(f->r);
    f->r = NULL;
    journal_path(f, jp, sizeof(jp));
    write_journal(jp, 900001, false);
    snprintf(copy, sizeof(copy), "%s.copy", jp);
    snprintf(cmd, sizeof(cmd), "cp %s %s", jp, copy);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(open_journaled(f, &err), 0);
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_int_equal(js.replayed_at_open, 6);
    assert_int_equal(js.pending, 0);
    assert_int_equal(js.dropped, 0);
    assert_int_equal(records_recovered_jobs(f->r), 0); /* its result came first */
    check_once(f, 900001);
    records_close(f->r);
    f->r = NULL;
    /* A crash during the replay leaves the whole file: written again, nothing twice. */
    snprintf(cmd, sizeof(cmd), "cp %s %s", copy, jp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(open_journaled(f, &err), 0);
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_int_equal(js.replayed_at_open, 6);
    assert_int_equal(js.dropped, 0);
    check_once(f, 900001);
}

static void test_pg_damaged_tail_set_aside(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_journal_status js;
    char jp[128];
    if (!fx_pg_dsn())
        skip();
    assert_int_equal(open_journaled(f, &err), 0);
    records_close(f->r);
    f->r = NULL;
    journal_path(f, jp, sizeof(jp));
    write_journal(jp, 900002, true);
    assert_int_equal(open_journaled(f, &err), 0);
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_int_equal(js.replayed_at_open, 6); /* the good part */
    assert_non_null(strstr(js.last_error, "truncated last entry"));
    assert_non_null(strstr(js.last_error, "set aside in"));
    check_once(f, 900002);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "grep -q 'cut sho' %s.bad-*", jp);
    assert_int_equal(system(cmd), 0);
    /* A file that is not a journal is refused, and left as it was. */
    records_close(f->r);
    f->r = NULL;
    FILE *fp = fopen(jp, "w");
    assert_non_null(fp);
    fputs("something else\n", fp);
    fclose(fp);
    char jp2[128];
    journal_path(f, jp2, sizeof(jp2));
    assert_int_equal(
        records_open_journaled(RECORDS_BACKEND_POSTGRESQL, f->path, "st1", jp2, &f->r, &err),
        -EBADMSG);
    assert_non_null(strstr(err.message, "is not a records journal"));
}

static void test_pg_connection_lost_journaled(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_journal_status js;
    struct records_board b;
    char sql[256], out[64];
    int64_t id = 0, ev = -1;
    if (!fx_pg_dsn())
        skip();
    assert_int_equal(open_journaled(f, &err), 0);
    records_set_clock(f->r, fake_clock, f);
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "24:6f:28:00:00:08");
    snprintf(b.chip, sizeof(b.chip), "ESP32");
    assert_int_equal(records_board_upsert(f->r, &b, &err), 0);
    struct records_job_new jn = {.kind = "flash", .board_mac = b.mac, .slot = "A1"};
    assert_int_equal(records_job_begin(f->r, &jn, &id, &err), 0);
    /* The server ends the session: the job's writes go to the journal. */
    snprintf(sql, sizeof(sql),
             "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
             "WHERE datname = '%s' AND application_name = 'espstationd'",
             f->pgdb);
    assert_int_equal(fx_pg_sql(fx_pg_dsn(), sql, out, sizeof(out)), 0);
    f->now += 1000;
    assert_int_equal(records_job_log(f->r, id, "info", "while cut off", &err), 0);
    assert_int_equal(records_job_progress(f->r, id, "write", 50, 60, &err), 0);
    struct records_job_result res;
    records_job_result_init(&res);
    res.state = RECORDS_JOB_PASSED;
    res.bytes = 100;
    f->now += 1000;
    assert_int_equal(records_job_finish(f->r, id, &res, &err), 0);
    struct records_event_new e = {.kind = "job.finished", .job_id = id, .data = "{}"};
    assert_int_equal(records_event_append(f->r, &e, &ev, &err), 0);
    assert_int_equal(ev, 0); /* no id until written */
    int64_t id2 = 0;         /* a job begun in the outage has its final id already */
    assert_int_equal(records_job_begin(f->r, &jn, &id2, &err), 0);
    assert_true(id2 > 0 && id2 != id);
    assert_int_equal(records_job_finish(f->r, id2, &res, &err), 0);
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_true(js.pending >= 5);
    /* Reads do not hang: they fail at once or answer. */
    struct records_job j;
    int rc = records_job_get(f->r, id, &j, &err);
    assert_true(rc == 0 || rc == -EIO);
    /* The tick reconnects (never blocking) and writes the journal. */
    for (int i = 0; i < 1000; i++) {
        records_tick(f->r, &err);
        assert_int_equal(records_journal_status(f->r, &js), 0);
        if (js.connected && js.pending == 0)
            break;
        usleep(10 * 1000);
    }
    assert_true(js.connected);
    assert_int_equal(js.pending, 0);
    assert_int_equal(js.dropped, 0);
    assert_int_equal(records_job_get(f->r, id, &j, &err), 0);
    assert_int_equal(j.state, RECORDS_JOB_PASSED);
    assert_int_equal(j.bytes, 100);
    assert_int_equal(j.ended_at, f->now);
    assert_int_equal(records_job_get(f->r, id2, &j, &err), 0);
    assert_int_equal(j.state, RECORDS_JOB_PASSED);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM job_log WHERE line = 'while cut off'");
    pg_count(f, sql, "1");
    pg_count(f, "SELECT count(*) FROM events WHERE kind = 'job.finished'", "1");
    pg_count(f, "SELECT count(*) FROM jobs", "2");
}

/* ---- the state file and the offline start ------------------------------------------------- */

static void state_path(const struct fx *f, char *out, size_t n)
{
    snprintf(out, n, "%s/records.journal.state", f->dir);
}

static void flip_byte(const char *path, long at)
{
    FILE *fp = fopen(path, "r+");
    int c;
    assert_non_null(fp);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    c = fgetc(fp);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    fputc(c ^ 0x01, fp);
    fclose(fp);
}

static void test_state_round_trip(void **state)
{
    struct fx *f = *state;
    char sp[128], msg[256];
    int64_t ids[8] = {5, 6, 7, 10, 12, 13}, back[8];
    struct rj_state st = {.schema = 8, .ids = ids, .n_ids = 6};
    struct rj_state rd = {.ids = back, .max_ids = 8};
    state_path(f, sp, sizeof(sp));
    assert_int_equal(rj_state_read(sp, &rd, msg, sizeof(msg)), -ENOENT);
    snprintf(st.station, sizeof(st.station), "st1");
    snprintf(st.dsn, sizeof(st.dsn), "host=db1 dbname=line");
    snprintf(st.identity, sizeof(st.identity), "7301:16384:line");
    assert_int_equal(rj_state_write(sp, &st, msg, sizeof(msg)), 0);
    assert_int_equal(rj_state_read(sp, &rd, msg, sizeof(msg)), 0);
    assert_string_equal(rd.station, "st1");
    assert_string_equal(rd.dsn, "host=db1 dbname=line");
    assert_string_equal(rd.identity, "7301:16384:line");
    assert_int_equal(rd.schema, 8);
    assert_int_equal(rd.n_ids, 6);
    assert_memory_equal(back, ids, 6 * sizeof(ids[0]));
    /* More ids than the reader holds: refused, not cut. */
    rd.max_ids = 5;
    assert_int_equal(rj_state_read(sp, &rd, msg, sizeof(msg)), -EBADMSG);
    rd.max_ids = 8;
    /* A flipped bit anywhere: the checksum refuses the whole file. */
    flip_byte(sp, 40);
    assert_int_equal(rj_state_read(sp, &rd, msg, sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "checksum mismatch"));
    /* Cut short. */
    assert_int_equal(rj_state_write(sp, &st, msg, sizeof(msg)), 0);
    assert_int_equal(truncate(sp, 60), 0);
    assert_int_equal(rj_state_read(sp, &rd, msg, sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "cut short"));
    /* Not a state file at all. */
    FILE *fp = fopen(sp, "w");
    assert_non_null(fp);
    fputs(RJ_HEADER, fp);
    fclose(fp);
    assert_int_equal(rj_state_read(sp, &rd, msg, sizeof(msg)), -EBADMSG);
    assert_non_null(strstr(msg, "not a records state file"));
}

/* Nothing listens on port 1: refused at once. */
#define OFFLINE_DSN "host=127.0.0.1 port=1 user=x dbname=line connect_timeout=2"

static int open_offline(struct fx *f, const char *station, struct records_error *err)
{
    char jp[128];
    journal_path(f, jp, sizeof(jp));
    return records_open_journaled(RECORDS_BACKEND_POSTGRESQL, OFFLINE_DSN, station, jp, &f->r, err);
}

static void write_offline_state(struct fx *f, const char *station)
{
    char sp[128], msg[256];
    int64_t ids[3] = {100, 101, 102};
    struct rj_state st = {.schema = records_schema_latest(), .ids = ids, .n_ids = 3};
    state_path(f, sp, sizeof(sp));
    snprintf(st.station, sizeof(st.station), "%s", station);
    snprintf(st.dsn, sizeof(st.dsn), "%s", OFFLINE_DSN);
    snprintf(st.identity, sizeof(st.identity), "7301:16384:line");
    assert_int_equal(rj_state_write(sp, &st, msg, sizeof(msg)), 0);
}

static void test_offline_start(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_journal_status js;
    struct records_job j;
    struct records_job_new nj = {.kind = "flash", .slot = "A1", .stage = "connect"};
    int64_t id = 0;
    char sp[128];
    state_path(f, sp, sizeof(sp));

    /* A first start (no state): today's error, nothing to trust. */
    assert_int_equal(open_offline(f, "st1", &err), -ECONNREFUSED);
    assert_null(f->r);
    assert_non_null(strstr(err.message, "cannot connect to PostgreSQL"));

    /* This data directory worked with that database as st1: it starts offline. */
    write_offline_state(f, "st1");
    assert_int_equal(open_offline(f, "st1", &err), 0);
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_true(js.offline);
    assert_false(js.connected);
    assert_int_equal(js.reserved_ids, 3);
    assert_non_null(strstr(js.unreachable, "unreachable"));
    assert_int_equal(records_job_begin(f->r, &nj, &id, &err), 0);
    assert_int_equal(id, 100);
    /* Reads fail at once, naming the outage. */
    assert_true(records_job_get(f->r, id, &j, &err) < 0);
    assert_non_null(strstr(err.message, "records database unreachable"));
    assert_true(records_tick(f->r, &err) <= 0); /* still nothing there */
    records_close(f->r);
    f->r = NULL;

    /* Restarted again during the outage: the id the journal used is not handed out again. */
    assert_int_equal(open_offline(f, "st1", &err), 0);
    assert_int_equal(records_journal_status(f->r, &js), 0);
    assert_int_equal(js.reserved_ids, 2);
    assert_int_equal(js.pending, 1);
    assert_int_equal(records_job_begin(f->r, &nj, &id, &err), 0);
    assert_int_equal(id, 101);
    records_close(f->r);
    f->r = NULL;

    /* Another station's state: refused, saying so. */
    assert_int_equal(open_offline(f, "st2", &err), -EBADMSG);
    assert_null(f->r);
    assert_non_null(strstr(err.message, "belongs to station \"st1\""));
    assert_non_null(strstr(err.message, "cannot connect to PostgreSQL"));

    /* A damaged state file: refused, naming it. */
    flip_byte(sp, 30);
    assert_int_equal(open_offline(f, "st1", &err), -EBADMSG);
    assert_null(f->r);
    assert_non_null(strstr(err.message, "cannot start while the database is unreachable"));
    assert_non_null(strstr(err.message, "records.journal.state is damaged"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_format_truncated_tail),
        cmocka_unit_test(test_format_corrupt_entry),
        cmocka_unit_test_setup_teardown(test_sqlite_has_no_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_replay_at_open_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_damaged_tail_set_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_connection_lost_journaled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_start, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
