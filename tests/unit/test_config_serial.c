/*
 * test_config_serial: the profile key "serial" (config_serial.c through config.c):
 * defaults, the offset forms, and each refusal with its key path: a bad format
 * (no conversion, %s, two conversions, %%), start out of range, an unaligned or
 * duplicate offset, an unknown key, and "{serial}" in a boot check of a profile
 * without "serial". A pattern with "{serial}" compiles (it would not as written).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "config.h"

static int load(const char *profile, struct config **cfg, char *err, size_t n)
{
    char js[2048];
    snprintf(js, sizeof(js),
             "{\"profiles\": {\"p\": {\"firmware\": {\"esp32\": \"app@1.0\"}%s%s}}}",
             profile[0] ? ", " : "", profile);
    *cfg = NULL;
    return config_load_string(js, strlen(js), NULL, cfg, err, n);
}

static void test_serial_ok(void **state)
{
    (void)state;
    struct config *cfg;
    char err[512];
    assert_int_equal(load("\"serial\": {\"format\": \"ESP-%06u\"}", &cfg, err, sizeof(err)), 0);
    const struct config_profile *p = config_profile(cfg, "p");
    assert_true(p->serial.enabled);
    assert_string_equal(p->serial.format, "ESP-%06u");
    assert_int_equal(p->serial.start, 1);
    assert_false(p->serial.has_offset);
    config_free(cfg);
    assert_int_equal(
        load("\"serial\": {\"format\": \"%X\", \"start\": 0, \"offset\": \"0x3ff000\"},"
             "\"boot_check\": {\"pattern\": \"serial=({serial}) v([0-9]+)\","
             " \"capture\": [\"v\"]}",
             &cfg, err, sizeof(err)),
        0);
    p = config_profile(cfg, "p");
    assert_int_equal(p->serial.start, 0);
    assert_true(p->serial.has_offset);
    assert_int_equal(p->serial.offset, 0x3ff000);
    config_free(cfg);
    assert_int_equal(load("", &cfg, err, sizeof(err)), 0);
    assert_false(config_profile(cfg, "p")->serial.enabled);
    config_free(cfg);
}

static void test_serial_refused(void **state)
{
    (void)state;
    static const struct {
        const char *profile;
        const char *want; /* in the message */
    } cases[] = {
        {"\"serial\": {\"format\": \"ESP\"}", "profiles.p.serial.format: needs one"},
        {"\"serial\": {\"format\": \"%s\"}", "profiles.p.serial.format: the conversion"},
        {"\"serial\": {\"format\": \"%u-%u\"}", "profiles.p.serial.format: exactly one"},
        {"\"serial\": {\"format\": \"100%%-%u\"}", "profiles.p.serial.format: the conversion at 3"},
        {"\"serial\": {}", "profiles.p.serial.format: missing"},
        {"\"serial\": {\"format\": 5}", "profiles.p.serial.format: must be a string"},
        {"\"serial\": \"ESP-%u\"", "profiles.p.serial: must be an object"},
        {"\"serial\": {\"format\": \"%u\", \"start\": -1}", "profiles.p.serial.start: must be"},
        {"\"serial\": {\"format\": \"%u\", \"start\": \"1\"}", "profiles.p.serial.start: must be"},
        {"\"serial\": {\"format\": \"%u\", \"offset\": \"0x3ff001\"}",
         "profiles.p.serial.offset: must be"},
        {"\"serial\": {\"format\": \"%u\", \"next\": 1}",
         "profiles.p.serial: unknown key \"next\""},
        {"\"serial\": {\"format\": \"%u\", \"offset\": \"0x9000\"}, \"per_board\": [{\"name\": "
         "\"nvs\", \"offset\": \"0x9000\", \"dir\": \"/tmp\"}]",
         "profiles.p.serial.offset: 0x9000 is already the offset of pool \"nvs\""},
        {"\"boot_check\": {\"pattern\": \"id {serial}\"}",
         "profiles.p.boot_check.pattern: uses {serial} but the profile has no \"serial\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config *cfg;
        char err[512] = "";
        if (load(cases[i].profile, &cfg, err, sizeof(err)) == 0)
            fail_msg("accepted: %s", cases[i].profile);
        if (!strstr(err, cases[i].want))
            fail_msg("%s: message \"%s\" lacks \"%s\"", cases[i].profile, err, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serial_ok),
        cmocka_unit_test(test_serial_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
