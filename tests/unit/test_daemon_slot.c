/*
 * test_daemon_slot: the board phase state machine (every allowed and refused
 * move, table-driven), removal during every stage of a job, failure counting
 * and slot flagging, and the slot table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "devsrc.h"
#include "esp_error.h"
#include "slot.h"

static void test_names_unique(void **state)
{
    (void)state;
    for (int a = 0; a < BOARD_PHASE_COUNT; a++) {
        const char *na = board_phase_to_string((enum board_phase)a);
        assert_string_not_equal(na, "unknown");
        for (int b = a + 1; b < BOARD_PHASE_COUNT; b++)
            assert_string_not_equal(na, board_phase_to_string((enum board_phase)b));
    }
    assert_string_equal(board_phase_to_string(BOARD_PHASE_COUNT), "unknown");
    assert_string_equal(board_phase_to_string(BOARD_AWAITING_NETWORK), "awaiting_network");
    assert_string_equal(board_phase_to_string(BOARD_BOOT_CHECK), "boot_check");
}

/* The happy path of a job and its variants, each move must be allowed. */
static void test_paths_allowed(void **state)
{
    (void)state;
    static const enum board_phase paths[][10] = {
        {BOARD_EMPTY, BOARD_CONNECTING, BOARD_IDENTIFYING, BOARD_FLASHING, BOARD_VERIFYING,
         BOARD_FLASHING, BOARD_VERIFYING, BOARD_RESETTING, BOARD_BOOT_CHECK,
         BOARD_AWAITING_NETWORK},
        {BOARD_EMPTY, BOARD_QUEUED, BOARD_CONNECTING, BOARD_IDENTIFYING, BOARD_FLASHING,
         BOARD_RESETTING, BOARD_SKIPPED, BOARD_EMPTY, BOARD_EMPTY, BOARD_EMPTY},
        {BOARD_EMPTY, BOARD_CONNECTING, BOARD_FAILED, BOARD_QUEUED, BOARD_CONNECTING,
         BOARD_IDENTIFYING, BOARD_RESETTING, BOARD_AWAITING_NETWORK, BOARD_ONLINE, BOARD_EMPTY},
        {BOARD_EMPTY, BOARD_CONNECTING, BOARD_IDENTIFYING, BOARD_SKIPPED, BOARD_CONNECTING,
         BOARD_CANCELLED, BOARD_IDLE, BOARD_QUEUED, BOARD_CANCELLED, BOARD_EMPTY},
    };
    for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
        struct slot s;
        memset(&s, 0, sizeof(s));
        s.phase = paths[p][0];
        for (size_t i = 1; i < 10; i++) {
            if (slot_set_phase(&s, paths[p][i]) != 0)
                fail_msg("path %zu: %s -> %s refused", p, board_phase_to_string(s.phase),
                         board_phase_to_string(paths[p][i]));
            assert_int_equal(s.phase, paths[p][i]);
        }
    }
}

/* Moves that must never happen. */
static void test_refused(void **state)
{
    (void)state;
    static const enum board_phase bad[][2] = {
        {BOARD_EMPTY, BOARD_FLASHING},        {BOARD_EMPTY, BOARD_AWAITING_NETWORK},
        {BOARD_CONNECTING, BOARD_FLASHING},   {BOARD_CONNECTING, BOARD_AWAITING_NETWORK},
        {BOARD_IDENTIFYING, BOARD_VERIFYING}, {BOARD_FLASHING, BOARD_AWAITING_NETWORK},
        {BOARD_FLASHING, BOARD_SKIPPED},      {BOARD_VERIFYING, BOARD_BOOT_CHECK},
        {BOARD_BOOT_CHECK, BOARD_FLASHING},   {BOARD_AWAITING_NETWORK, BOARD_FLASHING},
        {BOARD_FAILED, BOARD_FLASHING},       {BOARD_SKIPPED, BOARD_AWAITING_NETWORK},
        {BOARD_ONLINE, BOARD_FAILED},         {BOARD_QUEUED, BOARD_FLASHING},
        {BOARD_CANCELLED, BOARD_ONLINE},      {BOARD_IDLE, BOARD_FAILED},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct slot s;
        memset(&s, 0, sizeof(s));
        s.phase = bad[i][0];
        if (slot_set_phase(&s, bad[i][1]) != -EINVAL)
            fail_msg("%s -> %s allowed", board_phase_to_string(bad[i][0]),
                     board_phase_to_string(bad[i][1]));
        assert_int_equal(s.phase, bad[i][0]); /* unchanged */
    }
    assert_false(board_phase_transition_ok(BOARD_PHASE_COUNT, BOARD_EMPTY));
    assert_false(board_phase_transition_ok(BOARD_EMPTY, BOARD_PHASE_COUNT));
}

/* Every phase where a job runs can end in failed or cancelled, and any phase can be emptied
 * (unplug); the removal message names the stage, or the phase when no stage is known. */
static void test_removal_each_stage(void **state)
{
    (void)state;
    static const struct {
        enum board_phase phase;
        const char *stage;
        const char *msg;
    } cases[] = {
        {BOARD_CONNECTING, "open", "board removed during open"},
        {BOARD_CONNECTING, "sync", "board removed during sync"},
        {BOARD_IDENTIFYING, "identify", "board removed during identify"},
        {BOARD_FLASHING, "stub", "board removed during stub"},
        {BOARD_FLASHING, "compare", "board removed during compare"},
        {BOARD_FLASHING, "erase", "board removed during erase"},
        {BOARD_FLASHING, "write", "board removed during write"},
        {BOARD_VERIFYING, "verify", "board removed during verify"},
        {BOARD_RESETTING, "finish", "board removed during finish"},
        {BOARD_BOOT_CHECK, "boot_check", "board removed during boot_check"},
        {BOARD_FLASHING, "", "board removed during flashing"},
        {BOARD_QUEUED, NULL, "board removed during queued"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[128];
        assert_string_equal(slot_removed_message(cases[i].stage, cases[i].phase, buf, sizeof(buf)),
                            cases[i].msg);
        if (board_phase_is_active(cases[i].phase)) {
            assert_true(board_phase_transition_ok(cases[i].phase, BOARD_FAILED));
            assert_true(board_phase_transition_ok(cases[i].phase, BOARD_CANCELLED));
        }
        struct slot s;
        memset(&s, 0, sizeof(s));
        s.phase = cases[i].phase;
        s.done = 10;
        s.total = 20;
        assert_int_equal(slot_set_phase(&s, BOARD_EMPTY), 0);
        assert_int_equal(s.done, 0); /* progress cleared with the board */
    }
    for (int p = 0; p < BOARD_PHASE_COUNT; p++)
        assert_true(board_phase_transition_ok((enum board_phase)p, BOARD_EMPTY));
}

static void test_active(void **state)
{
    (void)state;
    assert_false(board_phase_is_active(BOARD_EMPTY));
    assert_false(board_phase_is_active(BOARD_QUEUED));
    assert_true(board_phase_is_active(BOARD_CONNECTING));
    assert_true(board_phase_is_active(BOARD_BOOT_CHECK));
    assert_false(board_phase_is_active(BOARD_AWAITING_NETWORK));
    assert_false(board_phase_is_active(BOARD_FAILED));
}

static void test_flagging(void **state)
{
    (void)state;
    struct slot s;
    memset(&s, 0, sizeof(s));
    assert_false(slot_count_result(&s, true, true, 3));
    assert_false(slot_count_result(&s, true, false, 3)); /* a removal does not count */
    assert_false(slot_count_result(&s, true, true, 3));
    assert_int_equal(s.failures, 2);
    assert_true(slot_count_result(&s, true, true, 3)); /* third in a row: flagged now */
    assert_true(s.flagged);
    assert_false(slot_count_result(&s, true, true, 3)); /* reported once */
    assert_int_equal(s.failures, 4);
    assert_false(slot_count_result(&s, false, true, 3)); /* a pass clears it */
    assert_false(s.flagged);
    assert_int_equal(s.failures, 0);
    assert_true(slot_count_result(&s, true, true, 1));
}

static void test_table(void **state)
{
    (void)state;
    struct slot_table t;
    slot_table_init(&t);
    char key[64];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "pci-0000:00:14.0-usb-0:1.%d:1.0", i);
        struct slot *s = slot_table_get(&t, key);
        assert_non_null(s);
        assert_int_equal(s->phase, BOARD_EMPTY);
        assert_int_equal(s->device_status, -1);
    }
    assert_int_equal(t.n, 40);
    struct slot *a = slot_table_find(&t, "pci-0000:00:14.0-usb-0:1.7:1.0");
    assert_non_null(a);
    assert_ptr_equal(a, slot_table_get(&t, "pci-0000:00:14.0-usb-0:1.7:1.0"));
    assert_null(slot_table_find(&t, "nope"));
    assert_string_equal(slot_name(a), "pci-0000:00:14.0-usb-0:1.7:1.0");
    snprintf(a->label, sizeof(a->label), "A7");
    assert_string_equal(slot_name(a), "A7");
    slot_table_free(&t);
}

static void test_manual_event(void **state)
{
    (void)state;
    struct port_event ev;
    devsrc_manual_event(PORT_ADDED, "tcp://10.0.0.5:4000", "bench", &ev);
    assert_int_equal(ev.kind, PORT_ADDED);
    assert_string_equal(ev.slot_key, "uri:tcp://10.0.0.5:4000");
    assert_string_equal(ev.uri, "tcp://10.0.0.5:4000");
    assert_string_equal(ev.label, "bench");
    assert_false(ev.usb_jtag);
    devsrc_manual_event(PORT_REMOVED, "/dev/pts/3", NULL, &ev);
    assert_string_equal(ev.label, "");
    assert_string_equal(port_event_kind_to_string(ev.kind), "removed");
    assert_string_equal(port_event_kind_to_string(PORT_ADDED), "added");
}

/* Link back-off: which errors mean "the link is bad at this rate", and the step down. */
static void test_link_backoff(void **state)
{
    (void)state;
    assert_int_equal(slot_baud_step_down(921600), 460800);
    assert_int_equal(slot_baud_step_down(460800), 230400);
    assert_int_equal(slot_baud_step_down(230400), 115200);
    assert_int_equal(slot_baud_step_down(115200), 0);
    assert_int_equal(slot_baud_step_down(9600), 0);
    assert_int_equal(slot_baud_step_down(300000), 230400);
    /* past 921600: the rungs the common bridges make exactly (issue 11) */
    assert_int_equal(slot_baud_step_down(6000000), 5000000);
    assert_int_equal(slot_baud_step_down(5000000), 4000000);
    assert_int_equal(slot_baud_step_down(4000000), 3000000);
    assert_int_equal(slot_baud_step_down(3000000), 2000000);
    assert_int_equal(slot_baud_step_down(2000000), 1500000);
    assert_int_equal(slot_baud_step_down(1500000), 921600);
    assert_int_equal(slot_baud_step_down(1000000), 921600); /* off the ladder: next rung */
    assert_int_equal(slot_baud_step_down(12000000), 6000000);

    /* timeouts and garbled replies after the baud change */
    assert_true(slot_link_error(-ETIMEDOUT, ESP_STAGE_WRITE, false, 0, 0));
    assert_true(slot_link_error(-EPROTO, ESP_STAGE_VERIFY, false, 0, 0));
    assert_true(slot_link_error(-ETIMEDOUT, ESP_STAGE_ATTACH, false, 0, 0));
    assert_true(slot_link_error(-EBADMSG, ESP_STAGE_READ, false, 0, 0));
    /* ... but not before it, nor an MD5 mismatch */
    assert_false(slot_link_error(-ETIMEDOUT, ESP_STAGE_SYNC, false, 0, 0));
    assert_false(slot_link_error(-ETIMEDOUT, ESP_STAGE_STUB, false, 0, 0));
    assert_false(slot_link_error(-EBADMSG, ESP_STAGE_VERIFY, false, 0, 0));
    assert_false(slot_link_error(-EINVAL, ESP_STAGE_WRITE, false, 0, 0));
    assert_false(slot_link_error(-ENODEV, ESP_STAGE_WRITE, false, 0, 0));
    /* stub: checksum / inflate / length are the data arriving corrupted */
    assert_true(slot_link_error(-EIO, ESP_STAGE_WRITE, true, 0xC1, 0));
    assert_true(slot_link_error(-EIO, ESP_STAGE_WRITE, true, 0xC7, 0));
    assert_true(slot_link_error(-EIO, ESP_STAGE_WRITE, true, 0xC0, 0));
    assert_false(slot_link_error(-EIO, ESP_STAGE_WRITE, true, 0xC4, 0)); /* SPI failed */
    assert_false(slot_link_error(-EIO, ESP_STAGE_WRITE, true, 0xC5, 0)); /* write-protected */
    /* ROM: checksum error yes, flash write error no */
    assert_true(slot_link_error(-EIO, ESP_STAGE_WRITE, true, 0x01, 0x07));
    assert_false(slot_link_error(-EIO, ESP_STAGE_WRITE, true, 0x01, 0x08));
    assert_false(slot_link_error(-EIO, ESP_STAGE_WRITE, false, 0, 0));
}

/* Step up: the next rung towards the ceiling, the ceiling itself when it is off the ladder. */
static void test_link_step_up(void **state)
{
    (void)state;
    assert_int_equal(slot_baud_step_up(2000000, 3000000), 3000000);
    assert_int_equal(slot_baud_step_up(921600, 3000000), 1500000);
    assert_int_equal(slot_baud_step_up(460800, 921600), 921600);
    assert_int_equal(slot_baud_step_up(921600, 1000000), 1000000); /* profile rate off-ladder */
    assert_int_equal(slot_baud_step_up(3000000, 3000000), 0);
    assert_int_equal(slot_baud_step_up(3000000, 2000000), 0);
    assert_int_equal(slot_baud_step_up(5000000, 12000000), 6000000);
    assert_int_equal(slot_baud_step_up(6000000, 12000000), 12000000);
}

/* The ladder on a slot whose adapter says 3 Mbaud ("baud": "auto") and a link that
 * carries 2 Mbaud: step down on link errors, remember, try one step up after N clean
 * jobs, fall back when that fails, move up when it passes. */
static void test_link_ladder(void **state)
{
    (void)state;
    struct slot s;
    memset(&s, 0, sizeof(s));
    const uint32_t ceiling = 3000000;
    const int n = 3;
    bool probe_failed = true;

    /* no limit yet: the job runs at the ceiling, passing jobs count nothing */
    assert_int_equal(slot_link_job_baud(&s, ceiling, n), 3000000);
    assert_int_equal(s.probe_baud, 0);
    assert_false(slot_link_passed(&s, 3000000, ceiling));
    assert_int_equal(s.clean_jobs, 0);

    /* link errors at 3 Mbaud: the slot learns 2 Mbaud, the retry runs there */
    assert_int_equal(slot_link_job_baud(&s, ceiling, n), 3000000);
    assert_int_equal(slot_link_failed(&s, 3000000, &probe_failed), 2000000);
    assert_false(probe_failed);
    assert_int_equal(s.baud_limit, 2000000);
    /* the same failure again teaches nothing new */
    assert_int_equal(slot_link_failed(&s, 3000000, &probe_failed), 0);
    assert_int_equal(s.baud_limit, 2000000);

    /* n clean jobs at 2 Mbaud, each at the limit */
    for (int i = 0; i < n; i++) {
        assert_int_equal(slot_link_job_baud(&s, ceiling, n), 2000000);
        assert_int_equal(s.probe_baud, 0);
        assert_false(slot_link_passed(&s, 2000000, ceiling));
    }
    assert_int_equal(s.clean_jobs, n);
    /* probing off (0) or for an API job: never a step up */
    assert_int_equal(slot_link_job_baud(&s, ceiling, 0), 2000000);
    assert_int_equal(s.probe_baud, 0);

    /* the next job tries 3 Mbaud once more; link errors: back to 2 Mbaud, count restarts */
    assert_int_equal(slot_link_job_baud(&s, ceiling, n), 3000000);
    assert_int_equal(s.probe_baud, 3000000);
    assert_int_equal(slot_link_failed(&s, 3000000, &probe_failed), 2000000);
    assert_true(probe_failed);
    assert_int_equal(s.baud_limit, 2000000);
    assert_int_equal(s.clean_jobs, 0);
    assert_int_equal(s.probe_baud, 0);
    assert_int_equal(slot_link_job_baud(&s, ceiling, n), 2000000); /* the retry */

    /* a probe that ends some other way (skipped, removed) leaves the count: probes again */
    s.clean_jobs = n;
    assert_int_equal(slot_link_job_baud(&s, ceiling, n), 3000000);
    assert_int_equal(slot_link_job_baud(&s, ceiling, n), 3000000);

    /* a probe that passes at the ceiling clears the limit */
    assert_true(slot_link_passed(&s, 3000000, ceiling));
    assert_int_equal(s.baud_limit, 0);
    assert_int_equal(s.clean_jobs, 0);
    assert_int_equal(slot_link_job_baud(&s, ceiling, n), 3000000);

    /* two rungs down: the probe moves up one rung and keeps a limit */
    memset(&s, 0, sizeof(s));
    assert_int_equal(slot_link_failed(&s, 3000000, &probe_failed), 2000000);
    assert_int_equal(slot_link_failed(&s, 2000000, &probe_failed), 1500000);
    assert_int_equal(s.baud_limit, 1500000);
    s.clean_jobs = n;
    assert_int_equal(slot_link_job_baud(&s, ceiling, n), 2000000);
    assert_true(slot_link_passed(&s, 2000000, ceiling));
    assert_int_equal(s.baud_limit, 2000000);

    /* a limit at or above the ceiling (the profile's rate was lowered) does not cap */
    memset(&s, 0, sizeof(s));
    s.baud_limit = 460800;
    assert_int_equal(slot_link_job_baud(&s, 230400, n), 230400);
    /* ceiling 0 (the chip's own USB: stay at the initial rate) */
    assert_int_equal(slot_link_job_baud(&s, 0, n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_unique), cmocka_unit_test(test_paths_allowed),
        cmocka_unit_test(test_refused),      cmocka_unit_test(test_removal_each_stage),
        cmocka_unit_test(test_active),       cmocka_unit_test(test_flagging),
        cmocka_unit_test(test_table),        cmocka_unit_test(test_manual_event),
        cmocka_unit_test(test_link_backoff), cmocka_unit_test(test_link_step_up),
        cmocka_unit_test(test_link_ladder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
