/*
 * test_daemon_mdns: the avahi-browse --parsable parser (resolved lines, avahi
 * escapes, IPv6, malformed lines) and the ArduinoOTA hostname -> MAC matching
 * (esp8266-XXXXXX = last 3 MAC bytes, esp32-XXXXXXXXXXXX = the whole MAC).
 * test_parse_real_avahi uses lines captured from avahi-browse 0.8 (Debian 12)
 * against a real avahi-daemon (tests/integration/test_daemon_mdns_avahi.sh):
 * TXT strings escape '"' and '\' with a backslash and other bytes as \DDD,
 * and leave ';' unescaped.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "mdns.h"

static int parse(const char *line, struct mdns_record *r)
{
    return mdns_parse_line(line, strlen(line), r);
}

static void test_parse_resolved(void **state)
{
    (void)state;
    struct mdns_record r;
    const char *l = "=;wlan0;IPv4;esp32-246f28000c01;_arduino._tcp;local;esp32-246f28000c01.local;"
                    "192.168.1.5;3232;\"board=esp32\" \"ssh_upload=no\" \"tcp_check=no\" "
                    "\"auth_upload=yes\"\n";
    assert_int_equal(parse(l, &r), 1);
    assert_string_equal(r.iface, "wlan0");
    assert_false(r.ipv6);
    assert_string_equal(r.name, "esp32-246f28000c01");
    assert_string_equal(r.host, "esp32-246f28000c01.local");
    assert_string_equal(r.address, "192.168.1.5");
    assert_int_equal(r.port, 3232);
    assert_string_equal(r.board, "esp32");
    assert_int_equal(r.auth_upload, 1);

    l = "=;eth0;IPv4;esp8266-0a1b2c;_arduino._tcp;local;esp8266-0a1b2c.local;10.0.0.7;8266;"
        "\"tcp_check=no\" \"ssh_upload=no\" \"board=\\\"ESP8266_GENERIC\\\"\" "
        "\"auth_upload=no\"";
    assert_int_equal(parse(l, &r), 1);
    assert_string_equal(r.address, "10.0.0.7");
    assert_int_equal(r.port, 8266);
    assert_int_equal(r.auth_upload, 0);

    /* no TXT field at all */
    assert_int_equal(parse("=;eth0;IPv4;x;_arduino._tcp;local;x.local;10.0.0.8;3232", &r), 1);
    assert_int_equal(r.auth_upload, -1);
    assert_string_equal(r.board, "");
}

static void test_parse_escapes(void **state)
{
    (void)state;
    struct mdns_record r;
    /* avahi escapes: \032 = space, \059 = ';', \. = '.', \\ = '\' */
    const char *l = "=;wlan0;IPv4;Kitchen\\032Lamp\\059v2\\.1\\\\x;_arduino._tcp;local;"
                    "esp8266-abcdef.local;192.168.1.9;8266;\"board=ESP8266\"";
    assert_int_equal(parse(l, &r), 1);
    assert_string_equal(r.name, "Kitchen Lamp;v2.1\\x");
    assert_string_equal(r.host, "esp8266-abcdef.local");
    assert_string_equal(r.board, "ESP8266");
    /* \000 would be an embedded NUL: rejected */
    assert_int_equal(parse("=;e;IPv4;a\\000b;_arduino._tcp;local;h.local;1.2.3.4;1", &r), -EINVAL);
    assert_int_equal(parse("=;e;IPv4;a\\300b;_arduino._tcp;local;h.local;1.2.3.4;1", &r), -EINVAL);
}

static void test_parse_real_avahi(void **state)
{
    (void)state;
    struct mdns_record r;
    /* the ESP8266 core's board TXT value carries quotes: escaped by avahi */
    const char *l = "=;avps0;IPv4;Kitchen\\032esp8266;_arduino._tcp;local;esp8266-005d08.local;"
                    "10.77.0.8;8266;\"auth_upload=no\" \"board=\\\"ESP8266_GENERIC\\\"\" "
                    "\"ssh_upload=no\" \"tcp_check=no\"";
    assert_int_equal(parse(l, &r), 1);
    assert_string_equal(r.iface, "avps0");
    assert_string_equal(r.name, "Kitchen esp8266");
    assert_string_equal(r.host, "esp8266-005d08.local");
    assert_string_equal(r.address, "10.77.0.8");
    assert_int_equal(r.port, 8266);
    assert_string_equal(r.board, "ESP8266_GENERIC");
    assert_int_equal(r.auth_upload, 0);

    /* an escaped quote must not end the string: auth_upload after it is seen */
    l = "=;avps0;IPv4;esp32-246f28005d01;_arduino._tcp;local;esp32-246f28005d01.local;"
        "10.77.0.2;3232;\"board=\\\"a b\\\"\" \"auth_upload=yes\"";
    assert_int_equal(parse(l, &r), 1);
    assert_string_equal(r.board, "a b");
    assert_int_equal(r.auth_upload, 1);

    /* service name with ';' '.' '\\' '"' and UTF-8 (\\DDD); a TXT value with an
     * unescaped ';', a tab (\\009) and UTF-8; TXT strings without '=' */
    l = "=;avps0;IPv4;a\\059b\\.c\\\\d\\032\\034q\\034\\032\\195\\169;_arduino._tcp;local;"
        "esp32-246f28005d01.local;10.77.0.2;3232;\"empty=\" \"novalue\" "
        "\"board=a\\\\b \\\"x\\\";y\\009z \\195\\169\"";
    assert_int_equal(parse(l, &r), 1);
    assert_string_equal(r.name, "a;b.c\\d \"q\" \xc3\xa9");
    assert_string_equal(r.board, "a\\b \"x\";y\tz \xc3\xa9");
    assert_int_equal(r.auth_upload, -1);

    /* a TXT string holding \\000 is ignored, the others still count */
    l = "=;e;IPv4;n;_arduino._tcp;local;h.local;1.2.3.4;1;\"board=x\\000y\" \"auth_upload=yes\"";
    assert_int_equal(parse(l, &r), 1);
    assert_string_equal(r.board, "");
    assert_int_equal(r.auth_upload, 1);
    /* unterminated last string, over-long board value: truncated, terminated */
    char big[512];
    snprintf(big, sizeof(big), "=;e;IPv4;n;_arduino._tcp;local;h.local;1.2.3.4;1;\"board=%0200d",
             7);
    assert_int_equal(parse(big, &r), 1);
    assert_int_equal(strlen(r.board), MDNS_BOARD_LEN - 1);
}

static void test_parse_ipv6_and_skips(void **state)
{
    (void)state;
    struct mdns_record r;
    assert_int_equal(parse("=;wlan0;IPv6;esp32-246f28000c01;_arduino._tcp;local;"
                           "esp32-246f28000c01.local;fe80::266f:28ff:fe00:c01;3232;",
                           &r),
                     1);
    assert_true(r.ipv6);
    assert_string_equal(r.address, "fe80::266f:28ff:fe00:c01");
    assert_int_equal(parse("+;wlan0;IPv4;esp32-246f28000c01;_arduino._tcp;local", &r), 0);
    assert_int_equal(parse("-;wlan0;IPv4;esp32-246f28000c01;_arduino._tcp;local", &r), 0);
    assert_int_equal(parse("", &r), 0);
    assert_int_equal(parse("\n", &r), 0);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    struct mdns_record r;
    static const char *const bad[] = {
        "garbage",
        "=",
        "=;",
        "=;wlan0;IPv4;name;_arduino._tcp;local;host.local;192.168.1.5",
        "=;wlan0;IPv5;name;_arduino._tcp;local;host.local;192.168.1.5;3232;",
        "=;wlan0;IPv4;name;_arduino._tcp;local;host.local;192.168.1.5;port;",
        "=;wlan0;IPv4;name;_arduino._tcp;local;host.local;192.168.1.5;70000;",
        "=;wlan0;IPv4;name;_arduino._tcp;local;host.local;192.168.1.5;-1;",
        "=;wlan0;IPv4;name;_arduino._tcp;local;host.local;not an ip;3232;",
        "=;wlan0;IPv4;;_arduino._tcp;local;host.local;192.168.1.5;3232;",
        "=;wlan0;IPv4;name;_arduino._tcp;local;;192.168.1.5;3232;",
        "*;wlan0;IPv4;name;_arduino._tcp;local;host.local;192.168.1.5;3232;",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(bad[i], &r) != -EINVAL)
            fail_msg("accepted: %s", bad[i]);
    /* an over-long name does not overflow */
    char big[2048];
    snprintf(big, sizeof(big), "=;e;IPv4;%0600d;_arduino._tcp;local;h.local;1.2.3.4;1;", 0);
    assert_int_equal(parse(big, &r), -EINVAL);
}

static void test_mac_tail(void **state)
{
    (void)state;
    uint8_t t[6];
    assert_int_equal(mdns_mac_tail("esp8266-0a1b2c.local", t), 3);
    assert_memory_equal(t, "\x0a\x1b\x2c", 3);
    assert_int_equal(mdns_mac_tail("ESP8266-ABCDEF", t), 3);
    assert_memory_equal(t, "\xab\xcd\xef", 3);
    assert_int_equal(mdns_mac_tail("esp32-246f28000c01.local", t), 6);
    assert_memory_equal(t, "\x24\x6f\x28\x00\x0c\x01", 6);
    assert_int_equal(mdns_mac_tail("esp32-246F28000C01", t), 6);
    assert_int_equal(mdns_mac_tail("esp8266-0a1b2", t), 0);
    assert_int_equal(mdns_mac_tail("esp8266-0a1b2c3", t), 0);
    assert_int_equal(mdns_mac_tail("esp8266-0a1b2g", t), 0);
    assert_int_equal(mdns_mac_tail("esp32-0a1b2c", t), 0);
    assert_int_equal(mdns_mac_tail("kitchen.local", t), 0);
    assert_int_equal(mdns_mac_tail("", t), 0);
    assert_int_equal(mdns_mac_tail(NULL, t), 0);
}

static void test_match(void **state)
{
    (void)state;
    const char *const macs[] = {"24:6f:28:00:0c:01", "5c:cf:7f:0a:1b:2c", "a0:20:a6:0a:1b:2c",
                                "bad", "24:6f:28:aa:bb:cc"};
    uint8_t t[6];
    mdns_mac_tail("esp32-246f28000c01", t);
    assert_int_equal(mdns_match(t, 6, macs, 5), 0);
    mdns_mac_tail("esp8266-aabbcc", t);
    assert_int_equal(mdns_match(t, 3, macs, 5), 4);
    mdns_mac_tail("esp8266-0a1b2c", t);
    assert_int_equal(mdns_match(t, 3, macs, 5), -2); /* two boards end in 0a:1b:2c */
    mdns_mac_tail("esp8266-000000", t);
    assert_int_equal(mdns_match(t, 3, macs, 5), -1);
    mdns_mac_tail("esp32-246f28000c02", t);
    assert_int_equal(mdns_match(t, 6, macs, 5), -1);
    assert_int_equal(mdns_match(t, 6, NULL, 0), -1);
}

static void test_config_key(void **state)
{
    (void)state;
    char err[512] = "";
    struct config *cfg = NULL;
    const char *js = "{}";
    assert_int_equal(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->ota.mdns_interval_s, 60);
    config_free(cfg);
    cfg = NULL;
    js = "{\"ota\": {\"mdns_interval_s\": 0}}";
    assert_int_equal(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->ota.mdns_interval_s, 0);
    config_free(cfg);
    cfg = NULL;
    js = "{\"ota\": {\"mdns_interval_s\": -5}}";
    assert_true(config_load_string(js, strlen(js), NULL, &cfg, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "ota.mdns_interval_s"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_resolved),
        cmocka_unit_test(test_parse_escapes),
        cmocka_unit_test(test_parse_real_avahi),
        cmocka_unit_test(test_parse_ipv6_and_skips),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_mac_tail),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_config_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
