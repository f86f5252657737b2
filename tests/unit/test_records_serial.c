/*
 * test_records_serial: serial numbers per profile (records_serial.h, serial_fmt.h)
 * and the per-board pool files (pool.h) as a line of stations allocates them.
 *
 * On both backends (CTest runs this file again on a private PostgreSQL: the
 * unit_test_records_serial_pg entry): the format rules and rendering, the
 * "{serial}" boot-check substitution, the sequence (start, max + 1, a board keeps
 * its number and its text, profiles apart, a raised start), bad input.
 *
 * The races (PostgreSQL only: a SQLite store is one process by design, its file
 * is flock'ed): several processes, each its own station and connection, released
 * at once through a pipe, allocate serial numbers and the last files of one pool
 * for their own boards and for boards they all share. Afterwards: the numbers
 * are start .. start + boards - 1, each board one number and each number one
 * board, every process saw the same number and file for a shared board, every
 * file went to one board, the boards left over failed with -ENOSPC ("exhausted")
 * and nothing else failed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "pool.h"
#include "records.h"
#include "records_fixture.h"
#include "records_serial.h"
#include "serial_fmt.h"

static int setup(void **state)
{
    return setup_in(state, "/tmp/test_records_serial.XXXXXX");
}

/* ---- format ------------------------------------------------------------------------ */

static void test_format_check(void **state)
{
    (void)state;
    static const char *const good[] = {"ESP-%06u", "%u",   "SN%x-A", "%08X",   "%#o",
                                       "%-8u|",    "%.6u", "%012u",  "x%02.1u"};
    static const char *const bad[] = {"",
                                      "ESP",
                                      "%d",
                                      "%s",
                                      "%n",
                                      "%u%u",
                                      "%%%u",
                                      "%u%%",
                                      "%lu",
                                      "%llu",
                                      "%123u",
                                      "%.u",
                                      "%.123u",
                                      "a\tb%u",
                                      "%*u",
                                      "%",
                                      "ESP-%06",
                                      "\xc3\xa9%u",
                                      "0123456789012345678901234567890123456789012345678%u"};
    char why[200];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (serial_fmt_check(good[i], why, sizeof(why)) != 0)
            fail_msg("\"%s\" refused: %s", good[i], why);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (serial_fmt_check(bad[i], why, sizeof(why)) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_true(why[0] != '\0');
    }
    assert_int_equal(serial_fmt_check(NULL, why, sizeof(why)), -EINVAL);
}

static void test_format_render(void **state)
{
    (void)state;
    static const struct {
        const char *fmt;
        uint64_t n;
        const char *want;
    } cases[] = {
        {"ESP-%06u", 1, "ESP-000001"},
        {"ESP-%06u", 1234567, "ESP-1234567"},
        {"SN%x-A", 255, "SNff-A"},
        {"%08X", 48879, "0000BEEF"},
        {"%#o", 8, "010"},
        {"%-4u|", 7, "7   |"},
        {"%u", 999999999999ULL, "999999999999"},
        {"%.3u", 5, "005"},
    };
    char out[SERIAL_TEXT_MAX];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(serial_fmt_render(cases[i].fmt, cases[i].n, out, sizeof(out)), 0);
        assert_string_equal(out, cases[i].want);
    }
    assert_int_equal(serial_fmt_render("%u%u", 1, out, sizeof(out)), -EINVAL);
    assert_int_equal(serial_fmt_render("ESP-%06u", 1, out, 6), -ENAMETOOLONG);
    assert_string_equal(out, "");
}

static void test_pattern_expand(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(serial_pattern_expand("serial=({serial}) ok", "A.1+(b)", out, sizeof(out)), 1);
    assert_string_equal(out, "serial=(A\\.1\\+\\(b\\)) ok");
    /* the escaped text matches itself literally, and only itself */
    regex_t re;
    assert_int_equal(regcomp(&re, out, REG_EXTENDED), 0);
    assert_int_equal(regexec(&re, "serial=A.1+(b) ok", 0, NULL, 0), 0);
    assert_int_not_equal(regexec(&re, "serial=AX1+(b) ok", 0, NULL, 0), 0);
    regfree(&re);
    assert_int_equal(serial_pattern_expand("{serial}/{serial}", "S1", out, sizeof(out)), 2);
    assert_string_equal(out, "S1/S1");
    assert_int_equal(serial_pattern_expand("no token", "S1", out, sizeof(out)), 0);
    assert_string_equal(out, "no token");
    assert_int_equal(serial_pattern_expand("{serial}", "0123456789", out, 8), -ENAMETOOLONG);
}

/* ---- the sequence ---------------------------------------------------------------------- */

static const char *const MAC_A = "24:6f:28:00:00:0a";
static const char *const MAC_B = "24:6f:28:00:00:0b";
static const char *const MAC_C = "24:6F:28:00:00:0C";

static void test_assign_sequence(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    struct records_serial s;
    int64_t n;
    char text[RECORDS_SERIAL_TEXT_LEN];
    fx_open(f);
    assert_int_equal(records_serial_of(f->r, "line1", MAC_A, &s, &err), -ENOENT);
    assert_int_equal(records_serial_assign(f->r, "line1", MAC_A, 1, "ESP-%06u", 7, &n, text, &err),
                     0);
    assert_int_equal(n, 1);
    assert_string_equal(text, "ESP-000001");
    assert_int_equal(records_serial_assign(f->r, "line1", MAC_B, 1, "ESP-%06u", 8, &n, text, &err),
                     0);
    assert_int_equal(n, 2);
    assert_string_equal(text, "ESP-000002");
    /* a board keeps its number, and its text even when the format changed since */
    assert_int_equal(records_serial_assign(f->r, "line1", MAC_A, 1, "NEW-%u", 9, &n, text, &err),
                     1);
    assert_int_equal(n, 1);
    assert_string_equal(text, "ESP-000001");
    /* upper-case MAC is the same board */
    assert_int_equal(
        records_serial_assign(f->r, "line1", "24:6F:28:00:00:0B", 1, "ESP-%06u", 0, &n, text, &err),
        1);
    assert_int_equal(n, 2);
    /* another profile has its own sequence */
    assert_int_equal(records_serial_assign(f->r, "line2", MAC_A, 100, "L2-%u", 0, &n, text, &err),
                     0);
    assert_int_equal(n, 100);
    assert_string_equal(text, "L2-100");
    /* a start above the highest number jumps; below it, max + 1 wins */
    assert_int_equal(
        records_serial_assign(f->r, "line1", MAC_C, 500, "ESP-%06u", 0, &n, text, &err), 0);
    assert_int_equal(n, 500);
    assert_int_equal(records_serial_assign(f->r, "line2", MAC_B, 1, "L2-%u", 0, &n, text, &err), 0);
    assert_int_equal(n, 101);

    assert_int_equal(records_serial_of(f->r, "line1", MAC_A, &s, &err), 0);
    assert_int_equal(s.number, 1);
    assert_string_equal(s.text, "ESP-000001");
    assert_string_equal(s.mac, MAC_A);
    assert_int_equal(s.job_id, 7);
    assert_int_equal(s.assigned_at, f->now);
    int64_t count = 0;
    assert_int_equal(records_serial_count(f->r, "line1", &count, &err), 0);
    assert_int_equal(count, 3);
    assert_int_equal(records_serials_of_board(f->r, MAC_A, NULL, NULL, &err), 2);
    /* the number survives a reopen */
    records_close(f->r);
    f->r = NULL;
    fx_open(f);
    assert_int_equal(records_serial_assign(f->r, "line1", MAC_C, 1, "ESP-%06u", 0, &n, text, &err),
                     1);
    assert_int_equal(n, 500);
}

static int newest_cb(const struct records_serial *s, void *ctx)
{
    snprintf(ctx, RECORDS_SERIAL_PROFILE_LEN, "%s", s->profile);
    return 1; /* stop after the first */
}

static void test_assign_list_and_zero_start(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    int64_t n;
    char text[RECORDS_SERIAL_TEXT_LEN], first[RECORDS_SERIAL_PROFILE_LEN] = "";
    fx_open(f);
    assert_int_equal(records_serial_assign(f->r, "p0", MAC_A, 0, "%u", 0, &n, text, &err), 0);
    assert_int_equal(n, 0);
    assert_string_equal(text, "0");
    f->now += 1000;
    assert_int_equal(records_serial_assign(f->r, "p1", MAC_A, 0, "%u", 0, &n, text, &err), 0);
    assert_int_equal(records_serials_of_board(f->r, MAC_A, newest_cb, first, &err), 1);
    assert_string_equal(first, "p1");
    assert_int_equal(records_serials_of_board(f->r, MAC_B, NULL, NULL, &err), 0);
}

static void test_assign_bad_input(void **state)
{
    struct fx *f = *state;
    struct records_error err;
    int64_t n = 5;
    char text[RECORDS_SERIAL_TEXT_LEN] = "x";
    fx_open(f);
    assert_int_equal(records_serial_assign(f->r, "p", MAC_A, 1, "%s", 0, &n, text, &err), -EINVAL);
    assert_non_null(strstr(err.message, "format"));
    assert_int_equal(n, -1);
    assert_string_equal(text, "");
    assert_int_equal(records_serial_assign(f->r, "p", "nope", 1, "%u", 0, &n, text, &err), -EINVAL);
    assert_int_equal(records_serial_assign(f->r, "", MAC_A, 1, "%u", 0, &n, text, &err), -EINVAL);
    assert_int_equal(records_serial_assign(f->r, "p", MAC_A, -1, "%u", 0, &n, text, &err), -EINVAL);
    assert_int_equal(records_serial_assign(f->r, "p", MAC_A, RECORDS_SERIAL_MAX_NUMBER + 1, "%u", 0,
                                           &n, text, &err),
                     -EINVAL);
    assert_int_equal(records_serial_assign(f->r, "p", MAC_A, 1, "%u", 0, NULL, text, &err),
                     -EINVAL);
    /* the last number is given; the next one is out of range, and nothing was written */
    assert_int_equal(
        records_serial_assign(f->r, "p", MAC_A, RECORDS_SERIAL_MAX_NUMBER, "%u", 0, &n, text, &err),
        0);
    assert_int_equal(records_serial_assign(f->r, "p", MAC_B, 1, "%u", 0, &n, text, &err), -ERANGE);
    int64_t count = 0;
    assert_int_equal(records_serial_count(f->r, "p", &count, &err), 0);
    assert_int_equal(count, 1);
    assert_int_equal(records_serial_assign(NULL, "p", MAC_B, 1, "%u", 0, &n, text, &err), -EINVAL);
}

/* ---- races across stations (PostgreSQL) -------------------------------------------------- */

#define RACE_PROCS 6
#define RACE_OWN 6    /* boards only one process flashes */
#define RACE_SHARED 4 /* boards every process allocates for at once */
#define RACE_BOARDS (RACE_PROCS * RACE_OWN + RACE_SHARED)
#define RACE_FILES 30 /* fewer files than boards: the last ones are raced for */
#define RACE_START 1000

struct race_row {
    char mac[RECORDS_MAC_LEN];
    int serial_rc;
    int64_t number;
    char text[RECORDS_SERIAL_TEXT_LEN];
    int pool_rc;
    char file[64];
    char msg[160];      /* the serial's error */
    char pool_msg[256]; /* pool_take's message */
};

static void race_mac(int board, char out[RECORDS_MAC_LEN])
{
    snprintf(out, RECORDS_MAC_LEN, "a4:cf:12:00:%02x:%02x", board / 256, board % 256);
}

/* One station: waits for the start signal, then allocates for its boards (its own,
 * interleaved with the shared ones) and writes one race_row per board to out. */
static void race_child(const char *dsn, const struct config_per_board *pb, int id, int go_fd,
                       int out_fd)
{
    char name[16];
    struct records *r = NULL;
    struct records_error err;
    snprintf(name, sizeof(name), "st%d", id);
    if (records_open_station(RECORDS_BACKEND_POSTGRESQL, dsn, name, &r, &err) < 0) {
        fprintf(stderr, "child %d: %s\n", id, err.message);
        _exit(2);
    }
    char c;
    if (write(out_fd, "R", 1) != 1 || read(go_fd, &c, 1) != 1)
        _exit(3);
    int boards[RACE_OWN + RACE_SHARED], nb = 0;
    for (int k = 0; k < RACE_OWN || k < RACE_SHARED; k++) {
        if (k < RACE_SHARED)
            boards[nb++] = RACE_PROCS * RACE_OWN + (k + id) % RACE_SHARED;
        if (k < RACE_OWN)
            boards[nb++] = id * RACE_OWN + k;
    }
    for (int i = 0; i < nb; i++) {
        struct race_row row;
        memset(&row, 0, sizeof(row));
        race_mac(boards[i], row.mac);
        row.serial_rc = records_serial_assign(r, "line", row.mac, RACE_START, "SN-%06u",
                                              100 * id + i + 1, &row.number, row.text, &err);
        if (row.serial_rc < 0)
            snprintf(row.msg, sizeof(row.msg), "%s", err.message);
        struct job_extra x;
        struct pool_status ps;
        char advice[256];
        row.pool_rc = pool_take(r, pb, row.mac, 100 * id + i + 1, &x, &ps, row.pool_msg,
                                sizeof(row.pool_msg), advice, sizeof(advice));
        if (row.pool_rc == 0) {
            snprintf(row.file, sizeof(row.file), "%s", ps.file);
            free(x.data);
        }
        if (write(out_fd, &row, sizeof(row)) != (ssize_t)sizeof(row))
            _exit(4);
    }
    records_close(r);
    _exit(0);
}

static void make_pool(const char *dir, int files)
{
    assert_int_equal(mkdir(dir, 0700), 0);
    for (int i = 0; i < files; i++) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%04d.bin", dir, i);
        FILE *fp = fopen(p, "wb");
        assert_non_null(fp);
        fprintf(fp, "per-board data %d\n", i);
        fclose(fp);
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

static void test_race_serials_and_last_files(void **state)
{
    struct fx *f = *state;
    if (!fx_pg_dsn())
        skip(); /* a SQLite store is one process (flock): no second station to race */
    fx_open(f); /* the schema, before the stations start */
    char pooldir[128];
    snprintf(pooldir, sizeof(pooldir), "%s/pool", f->dir);
    make_pool(pooldir, RACE_FILES);
    struct config_per_board pb = {.name = "nvs", .dir = pooldir, .offset = 0x9000};

    int go[2], out[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(out), 0);
    pid_t pids[RACE_PROCS];
    for (int i = 0; i < RACE_PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(go[1]);
            close(out[0]);
            race_child(f->path, &pb, i, go[0], out[1]);
        }
    }
    close(go[0]);
    close(out[1]);
    /* every station connected: release them together */
    for (int i = 0; i < RACE_PROCS; i++) {
        char c;
        assert_int_equal(read_full(out[0], &c, 1), 0);
    }
    char starts[RACE_PROCS];
    memset(starts, 'G', sizeof(starts));
    assert_int_equal(write(go[1], starts, sizeof(starts)), (ssize_t)sizeof(starts));
    close(go[1]);

    enum { ROWS = RACE_PROCS * (RACE_OWN + RACE_SHARED) };
    struct race_row *rows = calloc(ROWS, sizeof(*rows));
    assert_non_null(rows);
    size_t nrows = 0;
    while (nrows < ROWS && read_full(out[0], &rows[nrows], sizeof(rows[0])) == 0)
        nrows++;
    close(out[0]);
    for (int i = 0; i < RACE_PROCS; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(nrows, ROWS);

    /* Per board: what the records say, and every process that served it saw the same. */
    struct records_error err;
    int64_t seen_number[RACE_BOARDS];
    char seen_file[RACE_BOARDS][64];
    int enospc_boards = 0, served_boards = 0;
    bool number_used[RACE_BOARDS] = {false};
    bool file_used[RACE_FILES] = {false};
    for (int b = 0; b < RACE_BOARDS; b++) {
        char mac[RECORDS_MAC_LEN];
        race_mac(b, mac);
        struct records_serial s;
        assert_int_equal(records_serial_of(f->r, "line", mac, &s, &err), 0);
        seen_number[b] = s.number;
        assert_true(s.number >= RACE_START && s.number < RACE_START + RACE_BOARDS);
        assert_false(number_used[s.number - RACE_START]); /* never one number to two boards */
        number_used[s.number - RACE_START] = true;
        char want[RECORDS_SERIAL_TEXT_LEN];
        snprintf(want, sizeof(want), "SN-%06d", (int)s.number);
        assert_string_equal(s.text, want);
        struct records_pool_item it;
        int rc = records_pool_item_of(f->r, "nvs", mac, &it, &err);
        seen_file[b][0] = '\0';
        if (rc == 0) {
            int k = atoi(it.file);
            assert_true(k >= 0 && k < RACE_FILES);
            assert_false(file_used[k]); /* never one file to two boards */
            file_used[k] = true;
            snprintf(seen_file[b], sizeof(seen_file[b]), "%s", it.file);
            served_boards++;
        } else {
            assert_int_equal(rc, -ENOENT);
            enospc_boards++;
        }
    }
    /* consecutive: the numbers are exactly start .. start + boards - 1 */
    for (int i = 0; i < RACE_BOARDS; i++)
        assert_true(number_used[i]);
    assert_int_equal(served_boards, RACE_FILES);
    assert_int_equal(enospc_boards, RACE_BOARDS - RACE_FILES);
    int64_t count = 0;
    assert_int_equal(records_serial_count(f->r, "line", &count, &err), 0);
    assert_int_equal(count, RACE_BOARDS);
    assert_int_equal(records_pool_count(f->r, "nvs", &count, &err), 0);
    assert_int_equal(count, RACE_FILES);

    for (size_t i = 0; i < nrows; i++) {
        const struct race_row *row = &rows[i];
        int b = 0;
        unsigned hi = 0, lo = 0;
        assert_int_equal(sscanf(row->mac, "a4:cf:12:00:%x:%x", &hi, &lo), 2);
        b = (int)(hi * 256 + lo);
        if (row->serial_rc < 0)
            fail_msg("%s: serial failed %d: %s", row->mac, row->serial_rc, row->msg);
        assert_int_equal(row->number, seen_number[b]);
        if (row->pool_rc == 0) {
            assert_string_equal(row->file, seen_file[b]); /* a board keeps what it got */
        } else if (row->pool_rc == -ENOSPC) {
            assert_string_equal(seen_file[b], "");
            assert_non_null(strstr(row->pool_msg, "exhausted"));
        } else {
            fail_msg("%s: pool_take failed %d (not -ENOSPC): %s", row->mac, row->pool_rc,
                     row->pool_msg);
        }
    }
    free(rows);
}

/* A board two stations flash at once (a board moved between fixtures): one number. */
static void test_race_same_board(void **state)
{
    struct fx *f = *state;
    if (!fx_pg_dsn())
        skip(); /* as above */
    fx_open(f);
    enum { PROCS = 8, ROUNDS = 12 };
    int out[2], go[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(out[0]);
            close(go[1]);
            char name[16];
            struct records *r = NULL;
            struct records_error err;
            snprintf(name, sizeof(name), "same%d", i);
            if (records_open_station(RECORDS_BACKEND_POSTGRESQL, f->path, name, &r, &err) < 0)
                _exit(2);
            char c;
            if (write(out[1], "R", 1) != 1 || read(go[0], &c, 1) != 1)
                _exit(3);
            for (int k = 0; k < ROUNDS; k++) {
                char mac[RECORDS_MAC_LEN], text[RECORDS_SERIAL_TEXT_LEN];
                int64_t n[1];
                race_mac(k, mac);
                int rc = records_serial_assign(r, "moved", mac, 1, "%u", 0, n, text, &err);
                int64_t rec[3] = {k, rc, n[0]};
                if (write(out[1], rec, sizeof(rec)) != (ssize_t)sizeof(rec))
                    _exit(4);
            }
            records_close(r);
            _exit(0);
        }
    }
    close(out[1]);
    close(go[0]);
    for (int i = 0; i < PROCS; i++) {
        char c;
        assert_int_equal(read_full(out[0], &c, 1), 0);
    }
    char starts[PROCS];
    memset(starts, 'G', sizeof(starts));
    assert_int_equal(write(go[1], starts, sizeof(starts)), (ssize_t)sizeof(starts));
    close(go[1]);
    int64_t got[PROCS * ROUNDS][3];
    for (int i = 0; i < PROCS * ROUNDS; i++)
        assert_int_equal(read_full(out[0], got[i], sizeof(got[i])), 0);
    close(out[0]);
    for (int i = 0; i < PROCS; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    /* One number per board, 1..ROUNDS without a gap. */
    struct records_error err;
    bool used[ROUNDS] = {false};
    for (int k = 0; k < ROUNDS; k++) {
        char mac[RECORDS_MAC_LEN];
        struct records_serial s;
        race_mac(k, mac);
        assert_int_equal(records_serial_of(f->r, "moved", mac, &s, &err), 0);
        assert_true(s.number >= 1 && s.number <= ROUNDS);
        assert_false(used[s.number - 1]);
        used[s.number - 1] = true;
        /* every station got this number for it, and exactly one of them gave it */
        int given = 0;
        for (int i = 0; i < PROCS * ROUNDS; i++) {
            if (got[i][0] != k)
                continue;
            if (got[i][1] < 0)
                fail_msg("%s: a station failed with %lld", mac, (long long)got[i][1]);
            assert_int_equal(got[i][2], s.number);
            given += got[i][1] == 0;
        }
        assert_int_equal(given, 1);
    }
    int64_t count = 0;
    assert_int_equal(records_serial_count(f->r, "moved", &count, &err), 0);
    assert_int_equal(count, ROUNDS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_check),
        cmocka_unit_test(test_format_render),
        cmocka_unit_test(test_pattern_expand),
        cmocka_unit_test_setup_teardown(test_assign_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assign_list_and_zero_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assign_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_serials_and_last_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_same_board, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
