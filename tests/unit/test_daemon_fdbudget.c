/*
 * test_daemon_fdbudget: the open-file budget (daemon/fdbudget.c) and what a job
 * reports when the descriptors run out anyway.
 *
 *  - fd_budget_compute, table-driven: the configured caps when they fit, both
 *    lowered in proportion when not, the minimum caps and short_by when the limit
 *    cannot hold the reserve, a reload keeping the REST API's cap; and, over a
 *    sweep of limits and settings, the invariant reserve + 2 * api + ota <= limit.
 *  - fd_budget_raise_limit takes the soft RLIMIT_NOFILE to the hard one.
 *  - A board attached while no descriptor is left: its job is recorded failed at
 *    stage "open" with the true errno (-EMFILE, "Too many open files") and advice
 *    about the open-file limit -- not "Cannot allocate memory" with no stage, as the
 *    station reported it before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "fdbudget.h"
#include "loop.h"
#include "records.h"
#include "station.h"

static struct config *cfg_of(int max_parallel, int api, int ota)
{
    char text[256];
    snprintf(text, sizeof(text),
             "{\"max_parallel\": %d, \"api\": {\"max_connections\": %d}, "
             "\"ota\": {\"max_connections\": %d}}",
             max_parallel, api, ota);
    struct config *cfg = NULL;
    char err[256];
    if (config_load_string(text, strlen(text), NULL, &cfg, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
    return cfg;
}

static void test_compute_table(void **state)
{
    (void)state;
    static const struct {
        long limit;
        int max_parallel, api, ota, api_fixed;
        int want_api, want_ota;
        bool short_of;
    } cases[] = {
        /* systemd's LimitNOFILE=65536: everything as configured */
        {65536, 8, 1000, 256, 0, 1000, 256, false},
        /* the test's 512: reserve 96 + 10 * 8 = 176, 336 left for 2 * 1000 + 256 wanted */
        {512, 2, 1000, 256, 0, 148, 38, false},
        /* a plain 1024 soft limit with the defaults: reserve 224, 800 left */
        {1024, 8, 1000, 256, 0, 354, 90, false},
        /* small caps that fit are kept */
        {1024, 8, 10, 5, 0, 10, 5, false},
        /* a reload keeps the REST API's cap; the OTA cap takes the rest */
        {1024, 8, 1000, 256, 354, 354, 92, false},
        {1024, 40, 1000, 256, 354, 354, 4, true},
        /* no room for the reserve: minimum caps, and the shortfall reported */
        {128, 8, 1000, 256, 0, 4, 4, true},
        /* the minimum never exceeds what is configured */
        {128, 8, 2, 1, 0, 2, 1, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config *cfg = cfg_of(cases[i].max_parallel, cases[i].api, cases[i].ota);
        struct fd_budget b;
        memset(&b, 0, sizeof(b));
        b.raised_from = b.hard = cases[i].limit;
        fd_budget_compute(&b, cases[i].limit, cfg, cases[i].api_fixed);
        char line[400];
        fd_budget_describe(&b, line, sizeof(line));
        print_message("case %zu: %s (short by %ld)\n", i, line, b.short_by);
        assert_int_equal(b.api_max, cases[i].want_api);
        assert_int_equal(b.ota_max, cases[i].want_ota);
        assert_int_equal(b.short_by > 0, cases[i].short_of);
        assert_int_equal(b.reserve,
                         FD_BUDGET_DAEMON +
                             (long)(cases[i].max_parallel + FD_BUDGET_PUSHES) * FD_BUDGET_PER_JOB);
        config_free(cfg);
    }
}

/* The invariant over a sweep: caps within the configured values and, unless short,
 * within the limit beside the reserve; never below the minimum (or the configured
 * value when that is smaller). */
static void test_compute_invariant(void **state)
{
    (void)state;
    static const int parallel[] = {1, 8, 64, 256};
    static const int apis[] = {1, 3, 100, 1000, 65536};
    static const int otas[] = {1, 4, 256, 4096};
    for (long limit = 16; limit <= 70000; limit = limit * 5 / 4 + 1)
        for (size_t p = 0; p < 4; p++)
            for (size_t a = 0; a < 5; a++)
                for (size_t o = 0; o < 4; o++) {
                    struct config *cfg = cfg_of(parallel[p], apis[a], otas[o]);
                    struct fd_budget b;
                    memset(&b, 0, sizeof(b));
                    fd_budget_compute(&b, limit, cfg, 0);
                    assert_true(b.api_max <= apis[a] && b.ota_max <= otas[o]);
                    int amin = apis[a] < FD_BUDGET_MIN_CONN ? apis[a] : FD_BUDGET_MIN_CONN;
                    int omin = otas[o] < FD_BUDGET_MIN_CONN ? otas[o] : FD_BUDGET_MIN_CONN;
                    assert_true(b.api_max >= amin && b.ota_max >= omin);
                    long used = b.reserve + (long)FD_BUDGET_PER_API_CONN * b.api_max + b.ota_max;
                    if (b.short_by == 0)
                        assert_true(used <= limit);
                    else
                        assert_true(b.api_max == amin && b.ota_max == omin &&
                                    used == limit + b.short_by);
                    /* a reload with the cap kept stays within the limit too */
                    struct fd_budget r = b;
                    fd_budget_compute(&r, limit, cfg, b.api_max);
                    assert_int_equal(r.api_max, b.api_max);
                    if (r.short_by == 0)
                        assert_true(r.reserve + (long)FD_BUDGET_PER_API_CONN * r.api_max +
                                        r.ota_max <=
                                    limit);
                    config_free(cfg);
                }
}

static void test_raise_limit(void **state)
{
    (void)state;
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < 64) {
        skip();
        return;
    }
    struct rlimit low = {.rlim_cur = 48, .rlim_max = old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    long before = 0, soft = 0, hard = 0;
    assert_int_equal(fd_budget_raise_limit(&before, &soft, &hard), 0);
    assert_int_equal(before, 48);
    assert_true(soft > 48);
    struct rlimit now;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
    assert_int_equal((long)now.rlim_cur, soft);
    if (old.rlim_max != RLIM_INFINITY) {
        assert_int_equal(hard, (long)old.rlim_max);
        assert_true(soft <= hard);
    }
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void test_job_without_descriptors(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_daemon_fdbudget.XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct station_options o;
    memset(&o, 0, sizeof(o));
    o.data_dir = dir;
    o.no_udev = true;
    struct loop *loop = NULL;
    struct station *st = NULL;
    char err[512];
    assert_int_equal(loop_new(&loop), 0);
    if (station_new(&o, loop, &st, err, sizeof(err)) != 0)
        fail_msg("station_new: %s", err);

    /* Every descriptor taken: a low soft limit, filled up with copies of stdin. */
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    int top = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            top = fd;
    struct rlimit tight = {.rlim_cur = (rlim_t)top + 17, .rlim_max = old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
    int *held = calloc((size_t)top + 17, sizeof(int));
    assert_non_null(held);
    int n = 0;
    for (;;) {
        int fd = dup(0);
        if (fd < 0) {
            assert_int_equal(errno, EMFILE);
            break;
        }
        assert_true(n < top + 17);
        held[n++] = fd;
    }
    /* The board is attached: its job cannot get its cancel eventfd. */
    int rc = station_attach(st, "/nonexistent/fd-tty", "F1");
    while (n > 0)
        close(held[--n]);
    free(held);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(rc, 0);

    struct records_job j;
    struct records_error re;
    assert_int_equal(records_job_get(station_records(st), 1, &j, &re), 0);
    print_message("job 1: %s, code %d, stage '%s', '%s' (advice: %s)\n",
                  records_job_state_to_string(j.state), j.result_code, j.error_stage,
                  j.error_message, j.error_advice);
    assert_int_equal(j.state, RECORDS_JOB_FAILED);
    assert_int_equal(j.result_code, -EMFILE);
    assert_string_equal(j.error_stage, "open");
    assert_non_null(strstr(j.error_message, strerror(EMFILE)));
    assert_non_null(strstr(j.error_advice, "LimitNOFILE"));

    station_stop(st);
    station_free(st);
    loop_free(loop);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compute_table),
        cmocka_unit_test(test_compute_invariant),
        cmocka_unit_test(test_raise_limit),
        cmocka_unit_test(test_job_without_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
