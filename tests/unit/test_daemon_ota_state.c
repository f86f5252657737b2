/*
 * test_daemon_ota_state: what the network-OTA hand-over adds to the config and
 * the records store — the "ota" section and the profile keys (ota_firmware,
 * require_signed, public_key, ota_password) with their defaults and errors, and
 * the board_ota table (schema 2) and target pinning round trips.
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

#include "config.h"
#include "records.h"

static struct config *load(const char *js, int want, const char *err_part)
{
    char err[512] = "";
    struct config *cfg = NULL;
    int rc = config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err));
    if (rc != want)
        fail_msg("config %s: rc %d (want %d): %s", js, rc, want, err);
    if (err_part && !strstr(err, err_part))
        fail_msg("config %s: message '%s' lacks '%s'", js, err, err_part);
    return cfg;
}

static void test_ota_defaults(void **state)
{
    (void)state;
    struct config *cfg = load("{}", 0, NULL);
    assert_false(cfg->ota.enabled);
    assert_true(cfg->ota.enrol_unknown);
    assert_false(cfg->ota.strict);
    assert_int_equal(cfg->ota.espota_port, 0);
    assert_int_equal(cfg->ota.max_connections, 256);
    config_free(cfg);
}

static void test_ota_section(void **state)
{
    (void)state;
    struct config *cfg =
        load("{\"ota\": {\"listen\": \"0.0.0.0:8266\", \"unknown_boards\": \"refuse\", "
             "\"strict\": true, \"espota_port\": 8270, \"max_connections\": 9}}",
             0, NULL);
    assert_true(cfg->ota.enabled);
    assert_string_equal(cfg->ota.listen_host, "0.0.0.0");
    assert_int_equal(cfg->ota.listen_port, 8266);
    assert_false(cfg->ota.enrol_unknown);
    assert_true(cfg->ota.strict);
    assert_int_equal(cfg->ota.espota_port, 8270);
    assert_int_equal(cfg->ota.max_connections, 9);
    config_free(cfg);
    cfg = load("{\"ota\": {\"listen\": \"127.0.0.1:0\"}}", 0, NULL);
    assert_int_equal(cfg->ota.listen_port, 0);
    config_free(cfg);
}

static void test_ota_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json, *part;
    } bad[] = {
        {"{\"ota\": {\"listen\": \"nohost\"}}", "ota.listen"},
        {"{\"ota\": {\"listen\": \"1.2.3.4:99999\"}}", "ota.listen"},
        {"{\"ota\": {\"unknown_boards\": \"maybe\"}}", "ota.unknown_boards"},
        {"{\"ota\": {\"espota_port\": -1}}", "ota.espota_port"},
        {"{\"ota\": {\"lisen\": \"1.2.3.4:1\"}}", "lisen"},
        {"{\"profiles\": {\"p\": {\"require_signed\": true}}}", "public_key"},
        {"{\"profiles\": {\"p\": {\"ota_firmware\": {\"esp32\": \"nover\"}}}}",
         "profiles.p.ota_firmware.esp32"},
        {"{\"profiles\": {\"p\": {\"ota_firmware\": {\"esp99\": \"a@1\"}}}}", "esp99"},
        {"{\"profiles\": {\"p\": {\"ota_password\": 5}}}", "profiles.p.ota_password"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(load(bad[i].json, -EINVAL, bad[i].part));
}

static void test_profile_ota_keys(void **state)
{
    (void)state;
    struct config *cfg =
        load("{\"profiles\": {\"p\": {\"firmware\": {\"esp32\": \"a@1\", \"esp8266\": \"b@1\"}, "
             "\"ota_firmware\": {\"esp32\": \"a@2\"}, \"require_signed\": true, "
             "\"public_key\": \"/k.pem\", \"ota_password\": \"pw\"}}}",
             0, NULL);
    const struct config_profile *p = config_profile(cfg, "p");
    assert_non_null(p);
    assert_true(p->require_signed);
    assert_string_equal(p->public_key, "/k.pem");
    assert_string_equal(p->ota_password, "pw");
    const struct config_firmware_ref *r = config_profile_ota_firmware(p, ESP_CHIP_ESP32);
    assert_non_null(r);
    assert_string_equal(r->version, "2");
    r = config_profile_ota_firmware(p, ESP_CHIP_ESP8266); /* falls back to firmware */
    assert_non_null(r);
    assert_string_equal(r->name, "b");
    assert_null(config_profile_ota_firmware(p, ESP_CHIP_ESP32C3));
    config_free(cfg);
}

static void test_records_board_ota(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_ota_state.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/records.db", dir);
    struct records *r = NULL;
    struct records_error re;
    assert_int_equal(records_open(path, &r, &re), 0);
    assert_true(records_schema_latest() >= 2);

    struct records_board_ota o, got;
    records_board_ota_init(&o);
    snprintf(o.mac, sizeof(o.mac), "24:6F:28:00:00:01");
    assert_true(records_board_ota_put(r, &o, &re) < 0); /* no board record yet */
    assert_int_equal(records_board_ota_get(r, "24:6f:28:00:00:01", &got, &re), -ENOENT);

    struct records_board b;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "24:6f:28:00:00:01");
    snprintf(b.chip, sizeof(b.chip), "ESP32");
    assert_int_equal(records_board_upsert(r, &b, &re), 0);
    o.free_space = 1310720;
    o.sketch_size = 60080;
    o.chip_size = 4194304;
    snprintf(o.sketch_md5, sizeof(o.sketch_md5), "0123456789abcdef0123456789abcdef");
    snprintf(o.sdk_version, sizeof(o.sdk_version), "v4.4.7");
    o.last_checkin = 1700000000000;
    o.checkins = 3;
    snprintf(o.served_version, sizeof(o.served_version), "2.0.0");
    snprintf(o.problem, sizeof(o.problem), "image too large");
    assert_int_equal(records_board_ota_put(r, &o, &re), 0);
    assert_int_equal(records_board_ota_get(r, "24-6F-28-00-00-01", &got, &re), 0);
    assert_string_equal(got.mac, "24:6f:28:00:00:01");
    assert_int_equal(got.free_space, 1310720);
    assert_int_equal(got.sketch_size, 60080);
    assert_int_equal(got.chip_size, 4194304);
    assert_string_equal(got.sketch_md5, o.sketch_md5);
    assert_string_equal(got.sdk_version, "v4.4.7");
    assert_int_equal(got.last_checkin, 1700000000000);
    assert_int_equal(got.checkins, 3);
    assert_string_equal(got.served_version, "2.0.0");
    assert_string_equal(got.served_md5, "");
    assert_int_equal(got.served_at, 0);
    assert_string_equal(got.problem, "image too large");
    /* replaced whole */
    o.problem[0] = '\0';
    o.free_space = -1;
    assert_int_equal(records_board_ota_put(r, &o, &re), 0);
    assert_int_equal(records_board_ota_get(r, o.mac, &got, &re), 0);
    assert_string_equal(got.problem, "");
    assert_int_equal(got.free_space, -1);

    /* target pin / unpin */
    assert_int_equal(records_board_set_target(r, b.mac, "demo@2.0.0", &re), 0);
    assert_int_equal(records_board_get(r, b.mac, &b, &re), 0);
    assert_string_equal(b.target_firmware, "demo@2.0.0");
    assert_int_equal(records_board_set_target(r, b.mac, NULL, &re), 0);
    assert_int_equal(records_board_get(r, b.mac, &b, &re), 0);
    assert_string_equal(b.target_firmware, "");
    assert_int_equal(records_board_set_target(r, "24:6f:28:00:00:99", "x@1", &re), -ENOENT);
    records_close(r);
    unlink(path);
    char wal[300];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof(wal), "%s-shm", path);
    unlink(wal);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ota_defaults),      cmocka_unit_test(test_ota_section),
        cmocka_unit_test(test_ota_errors),        cmocka_unit_test(test_profile_ota_keys),
        cmocka_unit_test(test_records_board_ota),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
