/*
 * test_daemon_log: the log line format (journald "<N>" prefix, terminal
 * timestamp + level), board scopes, one line per message whatever the device
 * sent, truncation, and level names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "log.h"

static void test_journal(void **state)
{
    (void)state;
    char buf[256], scope[64];
    size_t n = log_format(buf, sizeof(buf), true, 0, LOG_LEVEL_INFO,
                          log_scope(scope, sizeof(scope), "A3", "24:6f:28:7a:d8:84"),
                          "sync ok after 2 tries");
    assert_string_equal(buf, "<6>[slot A3 24:6f:28:7a:d8:84] sync ok after 2 tries\n");
    assert_int_equal(n, strlen(buf));
    log_format(buf, sizeof(buf), true, 0, LOG_LEVEL_ERROR, "", "records: disk full");
    assert_string_equal(buf, "<3>records: disk full\n");
    log_format(buf, sizeof(buf), true, 0, LOG_LEVEL_WARN, log_scope(scope, sizeof(scope), "A1", ""),
               "x");
    assert_string_equal(buf, "<4>[slot A1] x\n");
    log_format(buf, sizeof(buf), true, 0, LOG_LEVEL_NOTICE,
               log_scope(scope, sizeof(scope), NULL, "aa:bb:cc:dd:ee:ff"), "y");
    assert_string_equal(buf, "<5>[aa:bb:cc:dd:ee:ff] y\n");
}

static void test_terminal(void **state)
{
    (void)state;
    char buf[256];
    log_format(buf, sizeof(buf), false, 1714566896789LL, LOG_LEVEL_WARN, "slot A1",
               "flash id unknown");
    assert_string_equal(buf, "2024-05-01T12:34:56.789Z warn [slot A1] flash id unknown\n");
    log_format(buf, sizeof(buf), false, 1714566896007LL, LOG_LEVEL_DEBUG, NULL, "d");
    assert_string_equal(buf, "2024-05-01T12:34:56.007Z debug d\n");
}

static void test_one_line(void **state)
{
    (void)state;
    char buf[256];
    log_format(buf, sizeof(buf), true, 0, LOG_LEVEL_INFO, "slot A1",
               "boot:\r\n0x13\tSPI_FAST_FLASH_BOOT\r\n");
    assert_string_equal(buf, "<6>[slot A1] boot:  0x13 SPI_FAST_FLASH_BOOT\n");
    assert_null(strchr(buf, '\r'));
    assert_ptr_equal(strchr(buf, '\n'), buf + strlen(buf) - 1);
}

static void test_truncation(void **state)
{
    (void)state;
    char msg[600];
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    char buf[64];
    size_t n = log_format(buf, sizeof(buf), true, 0, LOG_LEVEL_INFO, "slot A1", msg);
    assert_true(n < sizeof(buf));
    assert_int_equal(strlen(buf), n);
    assert_int_equal(buf[n - 1], '\n');
    assert_memory_equal(buf, "<6>[slot A1] xxx", 16);
    char tiny[1];
    assert_int_equal(log_format(tiny, 0, true, 0, LOG_LEVEL_INFO, NULL, "m"), 0);
}

/* A boot banner received at the wrong baud is binary noise: the log line must stay valid
 * UTF-8 (journald, JSON), while real UTF-8 passes through untouched. */
static void test_binary_noise(void **state)
{
    (void)state;
    char buf[256];
    log_format(buf, sizeof(buf), true, 0, LOG_LEVEL_INFO, "",
               "boot: \xff\x80\xc3 x \xe2\x9c\x93 ok \xf0\x28");
    assert_string_equal(buf, "<6>boot: ??? x \xe2\x9c\x93 ok ?(\n");
}

static void test_levels(void **state)
{
    (void)state;
    assert_int_equal(log_level_from_string("error"), LOG_LEVEL_ERROR);
    assert_int_equal(log_level_from_string("debug"), LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_from_string("notice"), LOG_LEVEL_NOTICE);
    assert_int_equal(log_level_from_string("verbose"), -EINVAL);
    assert_int_equal(log_level_from_string(NULL), -EINVAL);
    assert_string_equal(log_level_to_string(LOG_LEVEL_WARN), "warn");
    log_init(LOG_MODE_JOURNAL, LOG_LEVEL_NOTICE);
    assert_true(log_enabled(LOG_LEVEL_ERROR));
    assert_true(log_enabled(LOG_LEVEL_NOTICE));
    assert_false(log_enabled(LOG_LEVEL_INFO));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_journal),  cmocka_unit_test(test_terminal),
        cmocka_unit_test(test_one_line), cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_levels),   cmocka_unit_test(test_binary_noise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
