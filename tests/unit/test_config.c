/*
 * test_config: espstationd configuration — defaults with no file, a full
 * valid file read back field by field, and one table row per error class
 * asserting the message names the key path and the problem.
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

static void test_defaults_no_file(void **state)
{
    (void)state;
    char err[512];
    struct config *cfg = NULL;

    unsetenv("XDG_STATE_HOME");
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_non_null(cfg);
    assert_string_equal(err, "");
    assert_null(cfg->path);
    assert_string_equal(cfg->data_dir, "./espstation-data");
    assert_string_equal(cfg->listen, "127.0.0.1:8080");
    assert_string_equal(cfg->listen_host, "127.0.0.1");
    assert_int_equal(cfg->listen_port, 8080);
    assert_int_equal(cfg->max_parallel, 8);
    assert_string_equal(cfg->udev_tag, "ESPSTATION");
    assert_int_equal(cfg->n_bridges, 12);
    static const uint16_t ids[][2] = {{0x10c4, 0xea60}, {0x1a86, 0x7523}, {0x1a86, 0x55d3},
                                      {0x1a86, 0x55d4}, {0x0403, 0x6001}, {0x0403, 0x6010},
                                      {0x0403, 0x6014}, {0x0403, 0x6015}, {0x067b, 0x2303},
                                      {0x303a, 0x1001}, {0x303a, 0x0002}, {0x303a, 0x0009}};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        assert_true(config_is_known_bridge(cfg, ids[i][0], ids[i][1]));
    assert_false(config_is_known_bridge(cfg, 0x1234, 0x5678));
    assert_false(config_is_known_bridge(cfg, 0xea60, 0x10c4));
    assert_int_equal(cfg->n_slots, 0);
    assert_int_equal(cfg->n_ports, 0);
    assert_null(cfg->stub_dir);
    assert_null(cfg->api.token);
    assert_false(cfg->api.read_requires_token);
    assert_int_equal(cfg->api.max_body_bytes, 64 * 1024 * 1024);
    assert_int_equal(cfg->api.max_connections, 1000);
    assert_int_equal(cfg->api.idle_timeout_s, 60);
    assert_int_equal(cfg->ota.max_connections, 256);
    assert_int_equal(cfg->ota.idle_timeout_s, 30);
    assert_int_equal(cfg->n_profiles, 0);
    assert_null(cfg->active_profile);
    assert_null(config_profile(cfg, NULL));
    assert_null(config_slot_label(cfg, "pci-0000:00:14.0-usb-0:1:1.0"));
    assert_string_equal(cfg->ota.webform_user, "admin");
    config_free(cfg);

    setenv("XDG_STATE_HOME", "/var/tmp/state", 1);
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->data_dir, "/var/tmp/state/espstation");
    config_free(cfg);
    /* A relative XDG_STATE_HOME is invalid per the spec: ignored. */
    setenv("XDG_STATE_HOME", "rel", 1);
    assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->data_dir, "./espstation-data");
    config_free(cfg);
    unsetenv("XDG_STATE_HOME");

    /* An empty object is all defaults too. */
    assert_int_equal(config_load_string("{}", 2, NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->n_bridges, 12);
    config_free(cfg);
    config_free(NULL);
}

static const char full_config[] =
    "/* espstation test config */\n"
    "{\n"
    "  \"data_dir\": \"state\",\n"
    "  \"listen\": \"[::1]:9090\",\n"
    "  \"max_parallel\": 16,\n"
    "  \"bridges\": [\"10c4:ea60\", {\"id\": \"1A86:7523\", \"name\": \"CH340\"}],\n"
    "  \"udev_tag\": \"LINE_3\",\n"
    "  \"slots\": [\n"
    "    {\"id_path\": \"pci-0000:00:14.0-usb-0:1.1:1.0\", \"label\": \"A1\"},\n"
    "    {\"id_path\": \"pci-0000:00:14.0-usb-0:1.2:1.0\", \"label\": \"A2\"}\n"
    "  ],\n"
    "  \"ports\": [{\"uri\": \"tcp://10.0.0.5:4000\", \"label\": \"remote\"},\n"
    "            {\"uri\": \"/dev/pts/7\"}],\n"
    "  \"stub_dir\": \"/opt/stubs\",\n"
    "  \"api\": {\"token\": \"s3cret-token\", \"read_requires_token\": true,\n"
    "          \"max_body_bytes\": 1048576, \"max_connections\": 50, \"idle_timeout_s\": 5},\n"
    "  \"profiles\": {\n"
    "    \"line1\": {\n"
    "      \"firmware\": {\"esp32\": \"demo@1.0.0\", \"ESP32-C3\": \"demo-c3@2.1\"},\n"
    "      \"erase_all\": true, \"baud\": 460800, \"stub\": true, \"compress\": false,\n"
    "      \"verify\": false, \"skip_if_same\": false, \"retries\": 3, \"after\": \"soft-reset\",\n"
    "      \"boot_check\": {\"pattern\": \"version ([0-9.]+) ip ([0-9.]+)\",\n"
    "                     \"timeout_ms\": 5000, \"capture\": [\"version\", \"ip\"]}\n"
    "    },\n"
    "    \"bench\": {\"firmware\": {\"esp8266\": \"blink@0.1\"}}\n"
    "  },\n"
    "  \"active_profile\": \"bench\"\n"
    "}\n";

static void test_full_config_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_config.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/station.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(full_config, f);
    fclose(f);

    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->path, path);
    char want[300];
    snprintf(want, sizeof(want), "%s/state", dir); /* relative to the file */
    assert_string_equal(cfg->data_dir, want);
    assert_string_equal(cfg->listen, "[::1]:9090");
    assert_string_equal(cfg->listen_host, "::1");
    assert_int_equal(cfg->listen_port, 9090);
    assert_int_equal(cfg->max_parallel, 16);
    assert_int_equal(cfg->n_bridges, 2);
    assert_true(config_is_known_bridge(cfg, 0x10c4, 0xea60));
    assert_true(config_is_known_bridge(cfg, 0x1a86, 0x7523));
    assert_false(config_is_known_bridge(cfg, 0x0403, 0x6001)); /* list replaces defaults */
    assert_string_equal(cfg->bridges[1].name, "CH340");
    assert_null(cfg->bridges[0].name);
    assert_string_equal(cfg->udev_tag, "LINE_3");
    assert_int_equal(cfg->n_slots, 2);
    assert_string_equal(config_slot_label(cfg, "pci-0000:00:14.0-usb-0:1.2:1.0"), "A2");
    assert_null(config_slot_label(cfg, "pci-0000:00:14.0-usb-0:1.3:1.0"));
    assert_int_equal(cfg->n_ports, 2);
    assert_string_equal(cfg->ports[0].uri, "tcp://10.0.0.5:4000");
    assert_string_equal(cfg->ports[0].label, "remote");
    assert_null(cfg->ports[1].label);
    assert_string_equal(cfg->stub_dir, "/opt/stubs");
    assert_string_equal(cfg->api.token, "s3cret-token");
    assert_true(cfg->api.read_requires_token);
    assert_int_equal(cfg->api.max_body_bytes, 1048576);
    assert_int_equal(cfg->api.max_connections, 50);
    assert_int_equal(cfg->api.idle_timeout_s, 5);
    assert_int_equal(cfg->n_profiles, 2);
    assert_string_equal(cfg->active_profile, "bench");

    const struct config_profile *p = config_profile(cfg, "line1");
    assert_non_null(p);
    assert_true(p->erase_all);
    assert_int_equal(p->baud, 460800);
    assert_true(p->stub);
    assert_false(p->compress);
    assert_false(p->verify);
    assert_false(p->skip_if_same);
    assert_int_equal(p->retries, 3);
    assert_int_equal(p->after, ESP_AFTER_SOFT_RESET);
    assert_true(p->boot_check.enabled);
    assert_string_equal(p->boot_check.pattern, "version ([0-9.]+) ip ([0-9.]+)");
    assert_int_equal(p->boot_check.timeout_ms, 5000);
    assert_int_equal(p->boot_check.n_capture, 2);
    assert_string_equal(p->boot_check.capture[1], "ip");
    const struct config_firmware_ref *fw = config_profile_firmware(p, ESP_CHIP_ESP32C3);
    assert_non_null(fw);
    assert_string_equal(fw->name, "demo-c3");
    assert_string_equal(fw->version, "2.1");
    fw = config_profile_firmware(p, ESP_CHIP_ESP32);
    assert_string_equal(fw->name, "demo");
    assert_null(config_profile_firmware(p, ESP_CHIP_ESP8266));

    /* The active profile, with every default. */
    p = config_profile(cfg, NULL);
    assert_non_null(p);
    assert_string_equal(p->name, "bench");
    assert_false(p->erase_all);
    assert_int_equal(p->baud, 921600);
    assert_true(p->stub && p->compress && p->verify && p->skip_if_same);
    assert_int_equal(p->retries, 1);
    assert_int_equal(p->after, ESP_AFTER_HARD_RESET);
    assert_false(p->boot_check.enabled);
    assert_string_equal(config_profile_firmware(p, ESP_CHIP_ESP8266)->version, "0.1");
    assert_null(config_profile(cfg, "nope"));
    config_free(cfg);

    unlink(path);
    rmdir(dir);
}

static void test_single_profile_is_active(void **state)
{
    (void)state;
    static const char js[] = "{\"profiles\": {\"only\": {}}}";
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->active_profile, "only");
    assert_non_null(config_profile(cfg, NULL));
    config_free(cfg);
}

/* "records": SQLite by default; PostgreSQL with its DSN. */
static void test_records_backend(void **state)
{
    (void)state;
    static const char js[] =
        "{\"records\": {\"backend\": \"postgresql\", \"dsn\": \"host=db1 dbname=line\"}}";
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string("{}", 2, NULL, &cfg, err, sizeof(err)), 0);
    assert_false(cfg->records.postgresql);
    assert_null(cfg->records.dsn);
    config_free(cfg);
    assert_int_equal(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)), 0);
    assert_true(cfg->records.postgresql);
    assert_string_equal(cfg->records.dsn, "host=db1 dbname=line");
    config_free(cfg);
}

/* "station" and "line": names and the heartbeat of a line of stations. */
static void test_station_and_line(void **state)
{
    (void)state;
    static const char js[] = "{\"station\": \"st-1.A\", \"line\": {\"heartbeat_s\": 2, "
                             "\"address\": \"http://st1.lan:8080\"}}";
    static const char js2[] = "{\"line\": {\"heartbeat_s\": 2, \"gone_after_s\": 60}}";
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string("{}", 2, NULL, &cfg, err, sizeof(err)), 0);
    assert_null(cfg->station); /* the host name */
    assert_int_equal(cfg->line.heartbeat_s, 5);
    assert_int_equal(cfg->line.gone_after_s, 15);
    assert_null(cfg->line.address);
    config_free(cfg);
    assert_int_equal(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->station, "st-1.A");
    assert_int_equal(cfg->line.heartbeat_s, 2);
    assert_int_equal(cfg->line.gone_after_s, 6); /* 3 x heartbeat */
    assert_string_equal(cfg->line.address, "http://st1.lan:8080");
    config_free(cfg);
    assert_int_equal(config_load_string(js2, strlen(js2), NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->line.gone_after_s, 60);
    config_free(cfg);
}

struct bad_case {
    const char *json;
    const char *message; /* exact expected message, or a prefix when partial */
    bool partial;
};

static const struct bad_case bad_cases[] = {
    {"{\"records\": {\"backend\": \"mysql\"}}",
     "config: records.backend: must be \"sqlite\" (the default: <data_dir>/records.db) or "
     "\"postgresql\" (with records.dsn) (got \"mysql\")"},
    {"{\"records\": {\"backend\": \"postgresql\"}}",
     "config: records.dsn: missing: backend \"postgresql\" needs", true},
    {"{\"records\": {\"dsn\": \"host=x\"}}",
     "config: records.dsn: is for backend \"postgresql\" only (backend is sqlite)"},
    {"{\"records\": {\"backend\": \"postgresql\", \"dsn\": \"host=x\\ndbname=y\"}}",
     "config: records.dsn: must not contain control characters"},
    /* unknown keys, with and without a suggestion */
    {"{\"listne\": \"127.0.0.1:1\"}", "config: listne: unknown key (did you mean \"listen\"?)"},
    {"{\"profiles\": {\"line1\": {\"bauds\": 115200}}}",
     "config: profiles.line1.bauds: unknown key (did you mean \"baud\"?)"},
    {"{\"api\": {\"colour\": 1}}", "config: api.colour: unknown key (valid keys here: token, ",
     true},
    {"{\"slots\": [{\"id_path\": \"x\", \"label\": \"A1\", \"lable\": \"B\"}]}",
     "config: slots[0].lable: unknown key (did you mean \"label\"?)"},
    /* wrong type */
    {"{\"profiles\": {\"line1\": {\"baud\": \"fast\"}}}",
     "config: profiles.line1.baud: must be an integer from 9600 to 5000000 or \"auto\" (got "
     "\"fast\")"},
    {"{\"max_parallel\": 2.5}", "config: max_parallel: must be an integer from 1 to 256 (got 2.5)"},
    {"{\"profiles\": {\"p\": {\"stub\": \"yes\"}}}",
     "config: profiles.p.stub: must be true or false (got \"yes\")"},
    {"{\"slots\": {}}", "config: slots: must be a list (got an object)"},
    {"{\"data_dir\": 5}", "config: data_dir: must be a string (got 5)"},
    {"[]", "config: the top level must be an object { ... } (got a list)"},
    /* out of range */
    {"{\"profiles\": {\"p\": {\"baud\": 300}}}",
     "config: profiles.p.baud: must be an integer from 9600 to 5000000 (got 300)"},
    {"{\"profiles\": {\"p\": {\"boot_check\": {\"pattern\": \"x\", \"baud\": 300}}}}",
     "config: profiles.p.boot_check.baud: must be an integer from 9600 to 5000000 (got 300)"},
    {"{\"profiles\": {\"p\": {\"boot_check\": {\"pattern\": \"x\", \"baud\": \"74880\"}}}}",
     "config: profiles.p.boot_check.baud: must be an integer from 9600 to 5000000 (got "
     "\"74880\")"},
    {"{\"profiles\": {\"p\": {\"retries\": -1}}}",
     "config: profiles.p.retries: must be an integer from 0 to 10 (got -1)"},
    {"{\"max_parallel\": 99999999999999999999999}", "config: max_parallel: must be an integer",
     true},
    {"{\"listen\": \"localhost:99999\"}",
     "config: listen: port must be a number from 0 (any free port) to 65535 (got \"99999\")"},
    {"{\"listen\": \"8080\"}", "config: listen: must be \"host:port\"", true},
    {"{\"api\": {\"max_connections\": 0}}",
     "config: api.max_connections: must be an integer from 1 to 65536 (got 0)"},
    {"{\"api\": {\"idle_timeout_s\": 0}}",
     "config: api.idle_timeout_s: must be an integer from 1 to 3600 (got 0)"},
    {"{\"ota\": {\"idle_timeout_s\": 7200}}",
     "config: ota.idle_timeout_s: must be an integer from 1 to 3600 (got 7200)"},
    /* duplicates */
    {"{\"slots\": [{\"id_path\": \"p1\", \"label\": \"A1\"}, {\"id_path\": \"p2\", \"label\": "
     "\"A2\"}, {\"id_path\": \"p3\", \"label\": \"A1\"}]}",
     "config: slots[2].label: duplicate label \"A1\" (already used by slots[0])"},
    {"{\"slots\": [{\"id_path\": \"p1\", \"label\": \"A1\"}], \"ports\": [{\"uri\": \"/dev/x\", "
     "\"label\": \"A1\"}]}",
     "config: ports[0].label: duplicate label \"A1\" (already used by slots[0])"},
    {"{\"slots\": [{\"id_path\": \"p1\", \"label\": \"A1\"}, {\"id_path\": \"p1\", \"label\": "
     "\"A2\"}]}",
     "config: slots[1].id_path: duplicate id_path \"p1\" (also slots[0])"},
    {"{\"bridges\": [\"10c4:ea60\", \"10C4:EA60\"]}",
     "config: bridges[1]: duplicate bridge 10c4:ea60 (also bridges[0])"},
    {"{\"profiles\": {\"p\": {\"firmware\": {\"esp32s3\": \"a@1\", \"ESP32-S3\": \"b@2\"}}}}",
     "config: profiles.p.firmware.", true},
    /* unknown chip, bad references */
    {"{\"profiles\": {\"x\": {\"firmware\": {\"esp33\": \"demo@1\"}}}}",
     "config: profiles.x.firmware: unknown chip family \"esp33\" (known: esp8266, esp32, ", true},
    {"{\"profiles\": {\"x\": {\"firmware\": {\"esp32\": \"demo\"}}}}",
     "config: profiles.x.firmware.esp32: must be \"name@version\" of a firmware set in the "
     "catalog (got \"demo\")"},
    {"{\"profiles\": {\"x\": {\"firmware\": {\"esp32\": \"../etc@1\"}}}}",
     "config: profiles.x.firmware.esp32: \"../etc@1\": name and version may hold", true},
    {"{\"active_profile\": \"line2\", \"profiles\": {\"line1\": {}}}",
     "config: active_profile: no profile named \"line2\" (profiles: line1)"},
    {"{\"profiles\": {\"x\": {\"after\": \"reboot\"}}}",
     "config: profiles.x.after: must be \"hard-reset\", \"soft-reset\", \"no-reset\" or "
     "\"no-reset-stub\" (got \"reboot\")"},
    {"{\"bridges\": [\"10c4-ea60\"]}",
     "config: bridges[0]: must be a USB id \"vvvv:pppp\" in hex, e.g. \"10c4:ea60\" (got "
     "\"10c4-ea60\")"},
    /* regex */
    {"{\"profiles\": {\"x\": {\"boot_check\": {\"pattern\": \"ver(sion\"}}}}",
     "config: profiles.x.boot_check.pattern: not a valid POSIX extended regular expression: ",
     true},
    {"{\"profiles\": {\"x\": {\"boot_check\": {\"pattern\": \"v(1)\", \"capture\": [\"a\", "
     "\"b\"]}}}}",
     "config: profiles.x.boot_check.capture: names 2 groups but the pattern has 1 parenthesised "
     "group"},
    {"{\"profiles\": {\"x\": {\"boot_check\": {\"timeout_ms\": 10}}}}",
     "config: profiles.x.boot_check.pattern: missing", true},
    /* cross-field */
    {"{\"profiles\": {\"x\": {\"erase_all\": true, \"stub\": false}}}",
     "config: profiles.x.erase_all: erasing the whole chip needs the flasher stub, but stub is "
     "false"},
    /* per-board data pools */
    {"{\"profiles\": {\"x\": {\"per_board\": [{\"name\": \"nvs\", \"offset\": \"0x9100\", "
     "\"dir\": \"/p\"}]}}}",
     "config: profiles.x.per_board[0].offset: must be a flash offset in 0x hex, 4 KiB aligned "
     "(e.g. \"0x9000\")"},
    {"{\"profiles\": {\"x\": {\"per_board\": [{\"name\": \"nvs\", \"offset\": \"9000\", "
     "\"dir\": \"/p\"}]}}}",
     "config: profiles.x.per_board[0].offset: must be a flash offset", true},
    {"{\"profiles\": {\"x\": {\"per_board\": [{\"name\": \"n v\", \"offset\": \"0x9000\", "
     "\"dir\": \"/p\"}]}}}",
     "config: profiles.x.per_board[0].name: \"n v\": use letters, digits, '_' and '-' only"},
    {"{\"profiles\": {\"x\": {\"per_board\": [{\"name\": \"a\", \"offset\": \"0x9000\", "
     "\"dir\": \"/p\"}, {\"name\": \"b\", \"offset\": 36864, \"dir\": \"/q\"}]}}}",
     "config: profiles.x.per_board[1].offset: 0x9000 is already the offset of pool \"a\""},
    {"{\"profiles\": {\"x\": {\"per_board\": [{\"name\": \"a\", \"offset\": \"0x9000\"}]}}}",
     "config: profiles.x.per_board[0].dir: missing (the directory holding one .bin file per "
     "board)"},
    {"{\"profiles\": {\"x\": {\"per_board\": {}}}}",
     "config: profiles.x.per_board: must be a list (got an object)"},
    {"{\"profiles\": {\"x\": {\"per_board\": [{\"name\": \"a\", \"offset\": \"0x9000\", "
     "\"dir\": \"/p\", \"size\": 1}]}}}",
     "config: profiles.x.per_board[0].size: unknown key", true},
    /* ota.webform_user: HTTP Basic cannot carry ':' in the user name */
    {"{\"ota\": {\"webform_user\": \"ad:min\"}}",
     "config: ota.webform_user: must not contain ':' or control characters (HTTP Basic "
     "authentication cannot carry them; got \"ad:min\")"},
    {"{\"ota\": {\"webform_user\": \"\"}}", "config: ota.webform_user: must not be empty"},
    {"{\"ota\": {\"webform_user\": 7}}", "config: ota.webform_user: must be a string", true},
    /* ota enrolment limits and profile checkin_auth */
    {"{\"ota\": {\"enrol_rate_per_min\": 0}}", "config: ota.enrol_rate_per_min: must be", true},
    {"{\"ota\": {\"enrol_max\": -1}}", "config: ota.enrol_max: must be", true},
    {"{\"profiles\": {\"x\": {\"checkin_auth\": {\"password\": \"12345678\"}}}}",
     "config: profiles.x.checkin_auth.user: is required (the HTTP Basic user the boards' "
     "updaters send)"},
    {"{\"profiles\": {\"x\": {\"checkin_auth\": {\"user\": \"a:b\", \"password\": "
     "\"12345678\"}}}}",
     "config: profiles.x.checkin_auth.user: must not contain ':' or control characters", true},
    {"{\"profiles\": {\"x\": {\"checkin_auth\": {\"user\": \"ota\"}}}}",
     "config: profiles.x.checkin_auth.password: is required"},
    {"{\"profiles\": {\"x\": {\"checkin_auth\": {\"user\": \"ota\", \"password\": \"short\"}}}}",
     "config: profiles.x.checkin_auth.password: must be at least 8 characters", true},
    {"{\"profiles\": {\"x\": {\"checkin_auth\": {\"user\": \"ota\", \"password\": "
     "\"12345678\", \"required\": 1}}}}",
     "config: profiles.x.checkin_auth.required: must be", true},
    {"{\"profiles\": {\"x\": {\"checkin_auth\": {\"user\": \"ota\", \"password\": "
     "\"12345678\", \"realm\": \"r\"}}}}",
     "config: profiles.x.checkin_auth.realm: unknown key", true},
    {"{\"profiles\": {\"x\": {\"checkin_auth\": \"ota:12345678\"}}}",
     "config: profiles.x.checkin_auth: must be", true},
    {"{\"api\": {\"read_requires_token\": true}}",
     "config: api.read_requires_token: is true but no api.token is set (nobody could read the "
     "API)"},
    /* JSON syntax, with position */
    {"{\n  \"listen\": \"127.0.0.1:1\",\n  \"max_parallel\": 8,,\n}",
     "config: JSON syntax error at line 3, column ", true},
    {"{\n  \"listen\": \"127.0.0.1:1\"\n",
     "config: JSON syntax error at line 3, column 1: "
     "unexpected end of file",
     true},
    {"{} x", "config: JSON syntax error at line 1, column 4: text after the end of the top-level "
             "object"},
    {"{\"station\": \"line 1\"}", "config: station: \"line 1\": a station name is 1 to 63 of",
     true},
    {"{\"station\": 7}", "config: station: must be a string", true},
    {"{\"line\": {\"heartbeat_s\": 0}}", "config: line.heartbeat_s: ", true},
    {"{\"line\": {\"heartbeat_s\": 10, \"gone_after_s\": 10}}",
     "config: line.gone_after_s: ", true},
    {"{\"line\": {\"address\": \"ftp://st1\"}}",
     "config: line.address: must be this station's REST base URL", true},
    {"{\"line\": {\"address\": \"http://st 1:8080\"}}",
     "config: line.address: must not contain spaces", true},
    {"{\"line\": {\"beat\": 1}}", "config: line.beat: ", true},
    {"", "config: empty file (use {} for all defaults)"},
};

static void test_errors_name_the_key(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *bc = &bad_cases[i];
        char err[512];
        struct config *cfg = (struct config *)1;
        int rc = config_load_string(bc->json, strlen(bc->json), NULL, &cfg, err, sizeof(err));
        if (rc != -EINVAL || cfg != NULL ||
            (bc->partial ? strncmp(err, bc->message, strlen(bc->message)) != 0
                         : strcmp(err, bc->message) != 0)) {
            print_error("case %zu: %s\n  rc %d\n  got:  %s\n  want: %s\n", i, bc->json, rc, err,
                        bc->message);
            fail();
        }
    }
}

/* per_board: pools (config_load_string keeps a relative dir as given). */
static void test_per_board(void **state)
{
    (void)state;
    static const char js[] =
        "{\"profiles\": {\"line\": {\"per_board\": [{\"name\": \"nvs\", \"offset\": "
        "\"0x9000\", \"dir\": \"pools/nvs\"}, {\"name\": \"cert-1\", \"offset\": 2097152, "
        "\"dir\": \"/srv/certs\"}]}}}";
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)), 0);
    const struct config_profile *p = config_profile(cfg, NULL);
    assert_non_null(p);
    assert_int_equal(p->n_per_board, 2);
    assert_string_equal(p->per_board[0].name, "nvs");
    assert_int_equal(p->per_board[0].offset, 0x9000);
    assert_string_equal(p->per_board[0].dir, "pools/nvs");
    assert_string_equal(p->per_board[1].name, "cert-1");
    assert_int_equal(p->per_board[1].offset, 0x200000);
    assert_string_equal(p->per_board[1].dir, "/srv/certs");
    config_free(cfg);
}

/* ota enrolment limits (defaults and set) and a profile's checkin_auth. */
static void test_checkin_auth_and_enrol(void **state)
{
    (void)state;
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string("{}", 2, NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->ota.enrol_rate_per_min, 30);
    assert_int_equal(cfg->ota.enrol_max, 500);
    config_free(cfg);
    static const char json[] =
        "{\"ota\": {\"enrol_rate_per_min\": 6000, \"enrol_max\": 0},"
        " \"profiles\": {\"a\": {\"checkin_auth\": {\"user\": \"fleet\", \"password\": "
        "\"p4ss:word\", \"required\": true}}, \"b\": {}}}";
    assert_int_equal(config_load_string(json, strlen(json), NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->ota.enrol_rate_per_min, 6000);
    assert_int_equal(cfg->ota.enrol_max, 0);
    const struct config_profile *a = config_profile(cfg, "a"), *b = config_profile(cfg, "b");
    assert_string_equal(a->checkin_user, "fleet");
    assert_string_equal(a->checkin_password, "p4ss:word"); /* ':' is fine in a password */
    assert_true(a->checkin_required);
    assert_null(b->checkin_user);
    assert_null(b->checkin_password);
    assert_false(b->checkin_required);
    config_free(cfg);
}

/* ota.webform_user is read and replaces the default. */
static void test_ota_webform_user(void **state)
{
    (void)state;
    static const char json[] = "{\"ota\": {\"listen\": \"127.0.0.1:0\", \"webform_user\": "
                               "\"flasher-01\"}}";
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string(json, strlen(json), NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->ota.webform_user, "flasher-01");
    assert_true(cfg->ota.enabled);
    assert_int_equal(cfg->ota.listen_port, 0);
    config_free(cfg);
}

static void test_file_errors(void **state)
{
    (void)state;
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load("/nonexistent/espstation.json", &cfg, err, sizeof(err)), -ENOENT);
    assert_null(cfg);
    assert_string_equal(err, "config /nonexistent/espstation.json: cannot open: No such file or "
                             "directory");

    char dir[] = "/tmp/test_config.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/espstation.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"profiles\": {\"line1\": {\"baud\": \"fast\"}}}\n", f);
    fclose(f);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -EINVAL);
    char want[512];
    snprintf(want, sizeof(want),
             "config %s: profiles.line1.baud: must be an integer from 9600 to 5000000 or "
             "\"auto\" (got \"fast\")",
             path);
    assert_string_equal(err, want);
    assert_null(cfg);
    unlink(path);
    rmdir(dir);

    /* A small error buffer truncates, never overflows. */
    char small[16];
    assert_int_equal(config_load_string("[", 1, NULL, &cfg, small, sizeof(small)), -EINVAL);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

/* api.tls / ota.tls: both paths required, relative ones against the config file's
 * directory; nothing is read here (the servers check the files when they start). */
static void test_tls(void **state)
{
    (void)state;
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string("{}", 2, NULL, &cfg, err, sizeof(err)), 0);
    assert_null(cfg->api.tls.cert);
    assert_null(cfg->ota.tls.cert);
    config_free(cfg);

    char dir[] = "/tmp/test_config_tls.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], want[300];
    snprintf(path, sizeof(path), "%s/espstation.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"api\": {\"tls\": {\"cert\": \"tls/api.pem\", \"key\": \"/etc/k/api.key\"}},\n"
          " \"ota\": {\"listen\": \"0.0.0.0:8266\",\n"
          "         \"tls\": {\"cert\": \"ota.pem\", \"key\": \"ota.key\"}}}\n",
          f);
    fclose(f);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/tls/api.pem", dir);
    assert_string_equal(cfg->api.tls.cert, want);
    assert_string_equal(cfg->api.tls.key, "/etc/k/api.key");
    snprintf(want, sizeof(want), "%s/ota.pem", dir);
    assert_string_equal(cfg->ota.tls.cert, want);
    snprintf(want, sizeof(want), "%s/ota.key", dir);
    assert_string_equal(cfg->ota.tls.key, want);
    config_free(cfg);
    unlink(path);
    rmdir(dir);

    static const struct {
        const char *json, *message;
    } bad[] = {
        {"{\"ota\": {\"tls\": {\"cert\": \"a.pem\"}}}",
         "config: ota.tls.key: is required (a PEM file: the certificate's private key, "
         "unencrypted)"},
        {"{\"api\": {\"tls\": {\"key\": \"a.key\"}}}",
         "config: api.tls.cert: is required (a PEM file: the server certificate, then any "
         "intermediate CA certificates)"},
        {"{\"api\": {\"tls\": {\"cert\": \"a.pem\", \"key\": \"a.key\", \"chain\": \"c\"}}}",
         "config: api.tls.chain: unknown key (valid keys here: cert, key)"},
        {"{\"ota\": {\"tls\": true}}", "config: ota.tls: must be an object (got true)"},
        {"{\"ota\": {\"tls\": {\"cert\": \"\", \"key\": \"k\"}}}",
         "config: ota.tls.cert: must not be empty"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg = (struct config *)1;
        assert_int_equal(
            config_load_string(bad[i].json, strlen(bad[i].json), NULL, &cfg, err, sizeof(err)),
            -EINVAL);
        assert_null(cfg);
        assert_string_equal(err, bad[i].message);
    }
}

static void test_boot_check_baud(void **state)
{
    (void)state;
    static const char js[] = "{\"profiles\": {\"a\": {\"boot_check\": {\"pattern\": \"x\"}},"
                             " \"b\": {\"boot_check\": {\"pattern\": \"y\", \"baud\": 74880}}}}";
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(config_profile(cfg, "a")->boot_check.baud, 115200);
    assert_int_equal(config_profile(cfg, "b")->boot_check.baud, 74880);
    config_free(cfg);
}

/* "baud": "auto" (the adapter's best, issue 11), baud_probe_after, and the bridge
 * overrides max_baud / reset. */
static void test_baud_auto(void **state)
{
    (void)state;
    static const char js[] =
        "{\"bridges\": [{\"id\": \"0403:6001\", \"max_baud\": 2000000, \"reset\": \"classic\"},"
        " \"10c4:ea60\"],"
        " \"profiles\": {\"a\": {\"baud\": \"auto\", \"baud_probe_after\": 5},"
        " \"b\": {\"baud\": 3000000, \"baud_probe_after\": 0}, \"c\": {}}}";
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)), 0);
    const struct config_profile *p = config_profile(cfg, "a");
    assert_true(p->baud_auto);
    assert_int_equal(p->baud, 0);
    assert_int_equal(p->baud_probe_after, 5);
    p = config_profile(cfg, "b");
    assert_false(p->baud_auto);
    assert_int_equal(p->baud, 3000000);
    assert_int_equal(p->baud_probe_after, 0);
    p = config_profile(cfg, "c");
    assert_false(p->baud_auto);
    assert_int_equal(p->baud_probe_after, 20);
    assert_int_equal(cfg->bridges[0].max_baud, 2000000);
    assert_int_equal(cfg->bridges[0].reset, 0);
    assert_int_equal(cfg->bridges[1].max_baud, 0); /* the built-in table's */
    assert_int_equal(cfg->bridges[1].reset, -1);
    config_free(cfg);

    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"profiles\": {\"p\": {\"baud\": \"AUTO\"}}}",
         "config: profiles.p.baud: must be an integer from 9600 to 5000000 or \"auto\" (got "
         "\"AUTO\")"},
        {"{\"profiles\": {\"p\": {\"baud_probe_after\": -1}}}",
         "config: profiles.p.baud_probe_after: must be an integer from 0 to 100000 (got -1)"},
        {"{\"bridges\": [{\"id\": \"0403:6001\", \"max_baud\": 100}]}",
         "config: bridges[0].max_baud: must be an integer from 9600 to 20000000 (got 100)"},
        {"{\"bridges\": [{\"id\": \"0403:6001\", \"reset\": \"jtag\"}]}",
         "config: bridges[0].reset: must be \"classic\" or \"usb-jtag\" (got \"jtag\")"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg = NULL;
        assert_int_equal(
            config_load_string(bad[i].json, strlen(bad[i].json), NULL, &cfg, err, sizeof(err)),
            -EINVAL);
        assert_string_equal(err, bad[i].want);
        assert_null(cfg);
    }
}

/* The profile changes file: its shape is checked, its profiles are validated when
 * merged over the config (as the daemon does at start). */
static void test_overlay_file(void **state)
{
    (void)state;
    char err[512], *norm = NULL;
    static const char good[] =
        "{\"format\": \"espstation-profiles\", \"version\": 1, \"profiles\": {\"new-1\": "
        "{\"baud\": 460800, \"ota_password\": \"s3cret\"}}, \"active_profile\": \"new-1\"}";
    assert_int_equal(config_overlay_check(good, strlen(good), "f.json", &norm, err, sizeof(err)),
                     0);
    assert_string_equal(err, "");
    assert_non_null(norm);
    struct config *cfg = NULL;
    static const char base[] = "{\"profiles\": {\"old\": {\"baud\": 115200}}}";
    char path[] = "/tmp/test_config_overlay_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, base, strlen(base)), (ssize_t)strlen(base));
    close(fd);
    assert_int_equal(config_load_overlay(path, norm, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->n_profiles, 2);
    assert_string_equal(cfg->active_profile, "new-1");
    assert_int_equal(config_profile(cfg, "new-1")->baud, 460800);
    assert_string_equal(config_profile(cfg, "new-1")->ota_password, "s3cret");
    assert_int_equal(config_profile(cfg, "old")->baud, 115200);
    config_free(cfg);
    free(norm);
    norm = NULL;

    /* shape fine, profile invalid: refused when merged, naming the key */
    static const char badprof[] = "{\"format\": \"espstation-profiles\", \"version\": 1, "
                                  "\"profiles\": {\"old\": {\"baud\": \"fast\"}}}";
    assert_int_equal(
        config_overlay_check(badprof, strlen(badprof), "f.json", &norm, err, sizeof(err)), 0);
    assert_int_equal(config_load_overlay(path, norm, &cfg, err, sizeof(err)), -EINVAL);
    assert_null(cfg);
    assert_non_null(strstr(err, "profiles.old.baud: must be an integer"));
    free(norm);
    norm = NULL;
    unlink(path);

    static const struct {
        const char *text, *message;
    } bad[] = {
        {"", "f.json: empty file (use {} for all defaults)"},
        {"{\"format\": \"espstation-profiles\", \"version\": 1, \"profiles\": {",
         "f.json: JSON syntax error at line 1, column 62: unexpected end of file (unclosed "
         "object, list or string)"},
        {"{\"version\": 1}", "f.json: format: must be \"espstation-profiles\" (not a profile "
                             "overlay file)"},
        {"{\"format\": \"espstation-profiles\", \"version\": 2}", "f.json: version: must be 1"},
        {"{\"format\": \"espstation-profiles\", \"version\": 1, \"profiles\": []}",
         "f.json: profiles: must be an object (got a list)"},
        {"{\"format\": \"espstation-profiles\", \"version\": 1, \"profiles\": {\"a b\": {}}}",
         "f.json: profiles.a b: not a valid profile name"},
        {"{\"format\": \"espstation-profiles\", \"version\": 1, \"profiles\": {\"a\": 3}}",
         "f.json: profiles.a: must be an object (got 3)"},
        {"{\"format\": \"espstation-profiles\", \"version\": 1, \"active_profile\": 3}",
         "f.json: active_profile: must be a string (got 3)"},
        {"{\"format\": \"espstation-profiles\", \"version\": 1, \"extra\": 3}",
         "f.json: extra: unknown key (valid keys here: format, version, profiles, "
         "active_profile)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        norm = (char *)"untouched";
        int rc = config_overlay_check(bad[i].text, strlen(bad[i].text), "f.json", &norm, err,
                                      sizeof(err));
        if (rc != -EINVAL || strcmp(err, bad[i].message) != 0)
            fail_msg("case %zu: rc %d, message \"%s\", expected \"%s\"", i, rc, err,
                     bad[i].message);
        assert_null(norm);
    }
    /* active_profile null (no active profile) is valid */
    static const char nul[] =
        "{\"format\": \"espstation-profiles\", \"version\": 1, \"active_profile\": null}";
    assert_int_equal(config_overlay_check(nul, strlen(nul), NULL, &norm, err, sizeof(err)), 0);
    assert_string_equal(norm, "{\"active_profile\":null}");
    free(norm);
}

static void test_embedded_nul(void **state)
{
    (void)state;
    static const char js[] = "{\"udev_tag\": \"AB\\u0000CD\"}";
    char err[512];
    struct config *cfg = NULL;
    assert_int_equal(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "config: udev_tag: must not contain NUL characters");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_no_file),
        cmocka_unit_test(test_full_config_file),
        cmocka_unit_test(test_single_profile_is_active),
        cmocka_unit_test(test_records_backend),
        cmocka_unit_test(test_station_and_line),
        cmocka_unit_test(test_errors_name_the_key),
        cmocka_unit_test(test_ota_webform_user),
        cmocka_unit_test(test_checkin_auth_and_enrol),
        cmocka_unit_test(test_per_board),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_boot_check_baud),
        cmocka_unit_test(test_baud_auto),
        cmocka_unit_test(test_overlay_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
