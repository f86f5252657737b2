/*
 * test_ota_http: HTTP pull request parsing (ESP8266httpUpdate and ESP32
 * HTTPUpdate heads as PROTOCOL-OTA.md §2.1 lists them), the decision table
 * (304 by version / by the station's served record, never by sketch MD5;
 * version mode; strict 403; unknown MAC 404/enrol; gzip to ESP32; too big),
 * and the exact response bytes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ota_http.h"

static const char esp8266_req[] = "GET /fw/update HTTP/1.0\r\n"
                                  "Host: 192.168.1.10:8080\r\n"
                                  "User-Agent: ESP8266-http-Update\r\n"
                                  "Connection: close\r\n"
                                  "x-ESP8266-Chip-ID: 1234567\r\n"
                                  "x-ESP8266-STA-MAC: 24:6F:28:AA:BB:CC\r\n"
                                  "x-ESP8266-AP-MAC: 26:6F:28:AA:BB:CC\r\n"
                                  "x-ESP8266-free-space: 1044464\r\n"
                                  "x-ESP8266-sketch-size: 300000\r\n"
                                  "x-ESP8266-sketch-md5: 0123456789abcdef0123456789ABCDEF\r\n"
                                  "x-ESP8266-chip-size: 4194304\r\n"
                                  "x-ESP8266-sdk-version: 2.2.2-dev(38a443e)\r\n"
                                  "x-ESP8266-mode: sketch\r\n"
                                  "x-ESP8266-version: 1.0.0\r\n"
                                  "Content-Length: 0\r\n"
                                  "\r\n";

static const char esp32_req[] =
    "GET /ota HTTP/1.0\r\n"
    "Host: 10.0.0.2\r\n"
    "User-Agent: ESP32-http-Update\r\n"
    "Connection: close\r\n"
    "Cache-Control: no-cache\r\n"
    "x-ESP32-STA-MAC: 24:6f:28:7a:d8:84\r\n"
    "x-ESP32-AP-MAC: 24:6f:28:7a:d8:85\r\n"
    "x-ESP32-free-space: 1310720\r\n"
    "x-ESP32-sketch-size: 812345\r\n"
    "x-ESP32-sketch-sha256: "
    "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789\r\n"
    "x-ESP32-chip-size: 4194304\r\n"
    "x-ESP32-sdk-version: v4.4.7-dirty\r\n"
    "x-ESP32-mode: sketch\r\n"
    "\r\n";

static void test_parse_esp8266(void **state)
{
    (void)state;
    struct ota_http_request r;
    struct ota_error err;
    int n = ota_http_parse_request(esp8266_req, strlen(esp8266_req), &r, &err);
    assert_int_equal(n, (int)strlen(esp8266_req));
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.uri, "/fw/update");
    assert_int_equal(r.http_minor, 0);
    assert_int_equal(r.client, OTA_HTTP_CLIENT_ESP8266);
    assert_string_equal(r.host, "192.168.1.10:8080");
    assert_true(r.connection_close);
    assert_true(r.has_chip_id);
    assert_int_equal(r.chip_id, 1234567);
    assert_true(r.has_sta_mac);
    const uint8_t mac[6] = {0x24, 0x6F, 0x28, 0xAA, 0xBB, 0xCC};
    assert_memory_equal(r.sta_mac, mac, 6);
    assert_true(r.has_ap_mac);
    assert_int_equal(r.ap_mac[0], 0x26);
    assert_true(r.has_free_space);
    assert_int_equal(r.free_space, 1044464);
    assert_int_equal(r.sketch_size, 300000);
    assert_string_equal(r.sketch_md5, "0123456789abcdef0123456789ABCDEF");
    assert_int_equal(r.chip_size, 4194304);
    assert_string_equal(r.sdk_version, "2.2.2-dev(38a443e)");
    assert_int_equal(r.mode, OTA_HTTP_MODE_SKETCH);
    assert_string_equal(r.version, "1.0.0");
    assert_int_equal(r.header_chip, OTA_CHIP_ESP8266);
    assert_true(r.has_content_length);
    assert_int_equal(r.content_length, 0);
}

static void test_parse_esp32(void **state)
{
    (void)state;
    struct ota_http_request r;
    struct ota_error err;
    int n = ota_http_parse_request(esp32_req, strlen(esp32_req), &r, &err);
    assert_int_equal(n, (int)strlen(esp32_req));
    assert_int_equal(r.client, OTA_HTTP_CLIENT_ESP32);
    assert_int_equal(r.header_chip, OTA_CHIP_ESP32);
    assert_true(r.has_sta_mac);
    assert_int_equal(r.sta_mac[5], 0x84);
    assert_int_equal(r.free_space, 1310720);
    assert_string_equal(r.sketch_sha256,
                        "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789");
    assert_string_equal(r.sketch_md5, "");
    assert_string_equal(r.version, "");
    assert_string_equal(r.sdk_version, "v4.4.7-dirty");
}

static void test_parse_case_and_lf(void **state)
{
    (void)state;
    const char req[] = "GET /x HTTP/1.1\n"
                       "user-agent: ESP8266-http-Update\n"
                       "X-esp8266-sta-mac:   24:6f:28:aa:bb:cc  \n"
                       "X-ESP8266-MODE: version\n"
                       "\n"
                       "BODY";
    struct ota_http_request r;
    struct ota_error err;
    int n = ota_http_parse_request(req, strlen(req), &r, &err);
    assert_int_equal(n, (int)strlen(req) - 4);
    assert_int_equal(r.http_minor, 1);
    assert_int_equal(r.client, OTA_HTTP_CLIENT_ESP8266);
    assert_true(r.has_sta_mac);
    assert_int_equal(r.mode, OTA_HTTP_MODE_VERSION);
}

static void test_parse_incomplete_and_limits(void **state)
{
    (void)state;
    struct ota_http_request r;
    struct ota_error err;
    ota_error_clear(&err);
    for (size_t cut = 0; cut < strlen(esp8266_req); cut++)
        assert_int_equal(ota_http_parse_request(esp8266_req, cut, &r, &err), 0);
    static char big[OTA_HTTP_MAX_HEAD + 100];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.0\r\nX: ", 19);
    assert_int_equal(ota_http_parse_request(big, sizeof(big), &r, &err), -EMSGSIZE);
    assert_int_equal(err.code, -EMSGSIZE);
}

static void test_parse_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET /x HTTP/2.0\r\n\r\n",
        "GET /x\r\n\r\n",
        "GET  /x HTTP/1.0\r\n\r\n",
        "G(T /x HTTP/1.0\r\n\r\n",
        "GET /x HTTP/1.0\r\nNoColon\r\n\r\n",
        "GET /x HTTP/1.0\r\nBad Name: v\r\n\r\n",
        "GET /x HTTP/1.0\r\nContent-Length: 12x\r\n\r\n",
        "GET /x HTTP/1.0\r\n folded\r\n\r\n",
        "GET /x HTTP/1.0\r\nA: b\rc\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ota_http_request r;
        struct ota_error err;
        ota_error_clear(&err);
        int rc = ota_http_parse_request(bad[i], strlen(bad[i]), &r, &err);
        assert_int_equal(rc, -EPROTO);
        assert_true(err.message[0] != '\0');
    }
    /* Malformed x- values are not fatal: the field stays unset. */
    const char soft[] = "GET / HTTP/1.0\r\nx-ESP8266-STA-MAC: 24:6F:28\r\n"
                        "x-ESP8266-free-space: -5\r\nx-ESP8266-sketch-md5: xyz\r\n\r\n";
    struct ota_http_request r;
    assert_true(ota_http_parse_request(soft, strlen(soft), &r, NULL) > 0);
    assert_false(r.has_sta_mac);
    assert_false(r.has_free_space);
    assert_string_equal(r.sketch_md5, "");
}

/* ---- decisions ---- */

static const struct ota_http_image target = {
    .version = "2.0.0", .md5 = "00112233445566778899AABBCCDDEEFF", .size = 400000};

static void parse(const char *s, struct ota_http_request *r)
{
    assert_true(ota_http_parse_request(s, strlen(s), r, NULL) > 0);
}

static void test_decide_table(void **state)
{
    (void)state;
    struct ota_http_request r8, r32;
    parse(esp8266_req, &r8);
    parse(esp32_req, &r32);
    struct ota_http_policy pol = {.strict = true};
    struct ota_http_board board = {.known = true, .target = &target};
    struct ota_http_decision d;

    /* Reports 1.0.0, target 2.0.0 → 200. */
    ota_http_decide(&r8, &board, &pol, &d);
    assert_int_equal(d.action, OTA_HTTP_SERVE);
    assert_int_equal(d.status, 200);
    assert_ptr_equal(d.image, &target);
    assert_true(d.record_served);

    /* Same version → 304. */
    struct ota_http_request rv = r8;
    strcpy(rv.version, "2.0.0");
    ota_http_decide(&rv, &board, &pol, &d);
    assert_int_equal(d.status, 304);

    /* No version header (ESP32 here): decided by the served record. */
    ota_http_decide(&r32, &board, &pol, &d);
    assert_int_equal(d.status, 200);
    struct ota_http_board served = board;
    served.served_md5 = "00112233445566778899aabbccddeeff";
    ota_http_decide(&r32, &served, &pol, &d);
    assert_int_equal(d.status, 304);

    /* A sketch MD5 equal to the file's means the board runs it: with no version header (the
     * sketch passed none to the updater) 304, nothing served, no problem. Serving it would
     * reboot the board into the same sketch, and "did not take" would serve it again at
     * every check-in. With a version header that differs: 304 + problem (catalog string). */
    struct ota_http_request rm = r32;
    strcpy(rm.sketch_md5, "00112233445566778899aabbccddeeff");
    ota_http_decide(&rm, &board, &pol, &d);
    assert_int_equal(d.status, 304);
    assert_false(d.problem);
    assert_false(d.record_served);
    struct ota_http_board loop = {.known = true,
                                  .target = &target,
                                  .served_md5 = "00112233445566778899aabbccddeeff",
                                  .served_from_sketch_md5 = "00112233445566778899aabbccddeeff"};
    ota_http_decide(&rm, &loop, &pol, &d); /* served while it already ran it: not again */
    assert_int_equal(d.status, 304);
    rm = r8; /* reports 1.0.0 */
    strcpy(rm.sketch_md5, "00112233445566778899aabbccddeeff");
    ota_http_decide(&rm, &board, &pol, &d);
    assert_int_equal(d.status, 304);
    assert_true(d.problem);
    assert_non_null(strstr(d.reason, "check the catalog's version string"));
    /* ESP8266: the Updater wrote the running flash mode into byte 2, so the board's sketch MD5
     * is one of the image's flash-mode variants; an ESP32 never matches by a variant. */
    static const char modes[4][33] = {
        "0000000000000000000000000000000a", "0000000000000000000000000000000b",
        "0000000000000000000000000000000c", "0000000000000000000000000000000d"};
    struct ota_http_image qio = target;
    qio.mode_md5 = modes;
    struct ota_http_board qb = {.known = true, .target = &qio};
    struct ota_http_request rn = r8;
    rn.version[0] = '\0';
    strcpy(rn.sketch_md5, "0000000000000000000000000000000C");
    ota_http_decide(&rn, &qb, &pol, &d);
    assert_int_equal(d.status, 304);
    strcpy(rn.sketch_md5, "0000000000000000000000000000000e");
    ota_http_decide(&rn, &qb, &pol, &d);
    assert_int_equal(d.status, 200);
    struct ota_http_request rn32 = r32;
    strcpy(rn32.sketch_md5, "0000000000000000000000000000000c");
    ota_http_decide(&rn32, &qb, &pol, &d);
    assert_int_equal(d.status, 200);

    /* ESP8266 -107: an image whose header declares more flash than x-ESP8266-chip-size is
     * refused by the updater: 304 + problem; it fits: served; ESP32 requests: not checked. */
    struct ota_http_image big = target;
    big.header_flash = 4u * 1024u * 1024u;
    struct ota_http_board bb = {.known = true, .target = &big};
    struct ota_http_request rc = r8;
    rc.has_chip_size = true;
    rc.chip_size = 1024u * 1024u;
    ota_http_decide(&rc, &bb, &pol, &d);
    assert_int_equal(d.status, 304);
    assert_true(d.problem);
    assert_non_null(strstr(d.reason, "-107"));
    rc.chip_size = 4u * 1024u * 1024u;
    ota_http_decide(&rc, &bb, &pol, &d);
    assert_int_equal(d.status, 200);
    struct ota_http_request rc32 = r32;
    rc32.has_chip_size = true;
    rc32.chip_size = 1024u * 1024u;
    ota_http_decide(&rc32, &bb, &pol, &d);
    assert_int_equal(d.status, 200);

    /* Served, but the board still reports the sketch it had then → serve again. */
    struct ota_http_board again = served;
    again.served_from_sketch_md5 = "0123456789ABCDEF0123456789abcdef";
    ota_http_decide(&r8, &again, &pol, &d);
    assert_int_equal(d.status, 200);
    /* Served, sketch changed, version still differs → 304 + problem (no update loop). */
    again.served_from_sketch_md5 = "ffffffffffffffffffffffffffffffff";
    ota_http_decide(&r8, &again, &pol, &d);
    assert_int_equal(d.status, 304);
    assert_true(d.problem);

    /* Version mode → 200 with x-version. */
    struct ota_http_request rq = r8;
    rq.mode = OTA_HTTP_MODE_VERSION;
    ota_http_decide(&rq, &board, &pol, &d);
    assert_int_equal(d.action, OTA_HTTP_VERSION);
    assert_int_equal(d.status, 200);

    /* Strict: a browser → 403; not strict → 400 (no MAC). */
    const char browser[] = "GET /fw/update HTTP/1.1\r\nUser-Agent: curl/8\r\n\r\n";
    struct ota_http_request rb;
    parse(browser, &rb);
    ota_http_decide(&rb, &board, &pol, &d);
    assert_int_equal(d.status, 403);
    struct ota_http_policy lax = {.strict = false};
    ota_http_decide(&rb, &board, &lax, &d);
    assert_int_equal(d.status, 400);
    /* Strict: UA ESP32 with ESP8266 headers → 403. */
    struct ota_http_request rx = r8;
    rx.client = OTA_HTTP_CLIENT_ESP32;
    ota_http_decide(&rx, &board, &pol, &d);
    assert_int_equal(d.status, 403);

    /* Unknown MAC: refuse → 404; enrol → enrol flag and normal answer. */
    ota_http_decide(&r8, NULL, &pol, &d);
    assert_int_equal(d.status, 404);
    struct ota_http_policy enrol = {.strict = true, .unknown = OTA_HTTP_UNKNOWN_ENROL};
    struct ota_http_board unknown = {.known = false, .target = &target};
    ota_http_decide(&r8, &unknown, &enrol, &d);
    assert_true(d.enrol);
    assert_int_equal(d.status, 200);
    ota_http_decide(&r8, NULL, &enrol, &d);
    assert_true(d.enrol);
    assert_int_equal(d.status, 304);

    /* No target → 304; too big → 304 + problem; gzip to ESP32 → 304 + problem. */
    struct ota_http_board none = {.known = true};
    ota_http_decide(&r8, &none, &pol, &d);
    assert_int_equal(d.status, 304);
    struct ota_http_image huge = target;
    huge.size = 2000000;
    struct ota_http_board hb = {.known = true, .target = &huge};
    ota_http_decide(&r8, &hb, &pol, &d);
    assert_int_equal(d.status, 304);
    assert_true(d.problem);
    struct ota_http_image gz = target;
    gz.gzip = true;
    struct ota_http_board gb = {.known = true, .target = &gz};
    ota_http_decide(&r32, &gb, &pol, &d);
    assert_int_equal(d.status, 304);
    assert_true(d.problem);
    ota_http_decide(&r8, &gb, &pol, &d);
    assert_int_equal(d.status, 200);

    /* POST → 405. */
    struct ota_http_request rp = r8;
    strcpy(rp.method, "POST");
    ota_http_decide(&rp, &board, &pol, &d);
    assert_int_equal(d.status, 405);
}

static void test_format_exact(void **state)
{
    (void)state;
    char buf[1024];
    struct ota_http_decision d = {.action = OTA_HTTP_SERVE, .status = 200, .image = &target};
    int n = ota_http_format_response(&d, buf, sizeof(buf));
    const char want[] = "HTTP/1.0 200 OK\r\n"
                        "Content-Type: application/octet-stream\r\n"
                        "Content-Length: 400000\r\n"
                        "x-MD5: 00112233445566778899aabbccddeeff\r\n"
                        "Connection: close\r\n"
                        "\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
    assert_null(strstr(buf, "chunked"));
    assert_null(strstr(buf, "Encoding"));

    d.style = OTA_HTTP_STYLE_SDK;
    n = ota_http_format_response(&d, buf, sizeof(buf));
    const char sdk[] = "HTTP/1.0 200 OK\r\n"
                       "Content-Type: application/octet-stream\r\n"
                       "Content-Length: 400000\r\n"
                       "Connection: close\r\n"
                       "\r\n";
    assert_string_equal(buf, sdk);
    /* The RTOS 1 MB example reads the number 16 chars after "Content-Length". */
    const char *cl = strstr(buf, "Content-Length");
    assert_non_null(cl);
    assert_memory_equal(cl + 16, "400000\r\n", 8);

    struct ota_http_decision v = {.action = OTA_HTTP_VERSION, .status = 200, .image = &target};
    n = ota_http_format_response(&v, buf, sizeof(buf));
    assert_string_equal(buf, "HTTP/1.0 200 OK\r\n"
                             "Content-Type: text/plain\r\n"
                             "Content-Length: 0\r\n"
                             "x-version: 2.0.0\r\n"
                             "x-MD5: 00112233445566778899aabbccddeeff\r\n"
                             "Connection: close\r\n"
                             "\r\n");

    struct ota_http_decision nm = {.action = OTA_HTTP_NOT_MODIFIED, .status = 304};
    n = ota_http_format_response(&nm, buf, sizeof(buf));
    assert_string_equal(buf, "HTTP/1.0 304 Not Modified\r\nConnection: close\r\n\r\n");

    struct ota_http_decision f = {.action = OTA_HTTP_FORBIDDEN, .status = 403};
    strcpy(f.reason, "no");
    n = ota_http_format_response(&f, buf, sizeof(buf));
    assert_string_equal(buf, "HTTP/1.0 403 Forbidden\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 3\r\nConnection: close\r\n\r\nno\n");

    assert_int_equal(ota_http_format_response(&d, buf, 20), -ENOSPC);
    struct ota_http_image evil = {.version = "1\r\nSet-Cookie: x", .md5 = "", .size = 1};
    struct ota_http_decision ev = {.action = OTA_HTTP_VERSION, .status = 200, .image = &evil};
    assert_int_equal(ota_http_format_response(&ev, buf, sizeof(buf)), -EINVAL);
}

static void test_plain_and_userbin(void **state)
{
    (void)state;
    assert_int_equal(ota_http_userbin_from_uri("/fw/user1.bin"), OTA_HTTP_USERBIN_USER1);
    assert_int_equal(ota_http_userbin_from_uri("/user2.bin?x=1"), OTA_HTTP_USERBIN_USER2);
    assert_int_equal(ota_http_userbin_from_uri("/user2.bin/x"), OTA_HTTP_USERBIN_NONE);
    assert_int_equal(ota_http_userbin_from_uri("/xuser1.bin"), OTA_HTTP_USERBIN_NONE);
    const char req[] = "GET /ota/user2.bin HTTP/1.0\r\nHost: 1.2.3.4:80\r\n"
                       "User-Agent: esp-idf/1.0 esp32\r\n\r\n";
    struct ota_http_request r;
    parse(req, &r);
    struct ota_http_decision d;
    ota_http_decide_plain(&r, &target, &d);
    assert_int_equal(d.status, 200);
    assert_int_equal(d.style, OTA_HTTP_STYLE_SDK);
    ota_http_decide_plain(&r, NULL, &d);
    assert_int_equal(d.status, 404);
}

/* "Authorization: Basic ..." as HTTPClient::setAuthorization(user, password) sends it. */
static void test_parse_basic_auth(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        bool ok;
        const char *user, *password;
    } cases[] = {
        {"Basic b3RhOnMzY3JldA==", true, "ota", "s3cret"}, /* ota:s3cret */
        {"basic b3RhOnMzY3JldA==", true, "ota", "s3cret"}, /* scheme case-insensitive */
        {"Basic YTpiOmM=", true, "a", "b:c"},              /* a:b:c: user ends at the first ':' */
        {"Basic YTo=", true, "a", ""},                     /* a: (empty password) */
        {"Basic OnB3", false, NULL, NULL},                 /* :pw (no user) */
        {"Basic b3Rh", false, NULL, NULL},                 /* ota (no ':') */
        {"Basic b3RhOnMzY3JldA", false, NULL, NULL},       /* unpadded */
        {"Basic b3RhOnMzY3JldA=A", false, NULL, NULL},     /* '=' inside */
        {"Basic b3Rh*nMzY3JldA==", false, NULL, NULL},     /* not base64 */
        {"Bearer b3RhOnMzY3JldA==", false, NULL, NULL},    /* another scheme */
        {"Basic YQl4OnA=", false, NULL, NULL},             /* a<TAB>x:p (control char) */
        {"Basic ", false, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char req[512];
        snprintf(req, sizeof(req),
                 "GET /ota HTTP/1.0\r\nUser-Agent: ESP32-http-Update\r\n"
                 "x-ESP32-STA-MAC: 24:6f:28:7a:d8:84\r\nAuthorization: %s\r\n\r\n",
                 cases[i].value);
        struct ota_http_request r;
        struct ota_error err;
        assert_int_equal(ota_http_parse_request(req, strlen(req), &r, &err), (int)strlen(req));
        assert_true(r.has_authorization);
        assert_int_equal(r.has_basic_auth, cases[i].ok);
        if (cases[i].ok) {
            assert_string_equal(r.auth_user, cases[i].user);
            assert_string_equal(r.auth_password, cases[i].password);
        } else {
            assert_string_equal(r.auth_user, "");
            assert_string_equal(r.auth_password, "");
        }
    }
    /* too long for the fields: 70 'u' characters as user */
    char cred[100], b64[200], req[512];
    memset(cred, 'u', 70);
    memcpy(cred + 70, ":p", 3);
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(cred), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned w = (unsigned char)cred[i] << 16 |
                     (i + 1 < n ? (unsigned char)cred[i + 1] << 8 : 0) |
                     (i + 2 < n ? (unsigned char)cred[i + 2] : 0);
        b64[o++] = tab[w >> 18 & 63];
        b64[o++] = tab[w >> 12 & 63];
        b64[o++] = i + 1 < n ? tab[w >> 6 & 63] : '=';
        b64[o++] = i + 2 < n ? tab[w & 63] : '=';
    }
    b64[o] = '\0';
    snprintf(req, sizeof(req), "GET / HTTP/1.0\r\nAuthorization: Basic %s\r\n\r\n", b64);
    struct ota_http_request r;
    struct ota_error err;
    assert_true(ota_http_parse_request(req, strlen(req), &r, &err) > 0);
    assert_true(r.has_authorization);
    assert_false(r.has_basic_auth);
    /* no header: nothing */
    assert_true(ota_http_parse_request(esp32_req, strlen(esp32_req), &r, &err) > 0);
    assert_false(r.has_authorization);
    assert_false(r.has_basic_auth);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_esp8266),
        cmocka_unit_test(test_parse_esp32),
        cmocka_unit_test(test_parse_case_and_lf),
        cmocka_unit_test(test_parse_incomplete_and_limits),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_decide_table),
        cmocka_unit_test(test_format_exact),
        cmocka_unit_test(test_plain_and_userbin),
        cmocka_unit_test(test_parse_basic_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
