/*
 * test_ota_webform: the multipart request layout HTTPUpdateServer's strict
 * parser expects (byte for byte), Basic auth, body classification (the
 * device answers 200 either way), and the raw TCP-OTA slot reply parser.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ota_tcp.h"
#include "ota_webform.h"

static void test_layout(void **state)
{
    (void)state;
    struct ota_webform_config cfg = {.host = "192.168.4.1", .port = 80};
    char head[1024], tail[128];
    assert_int_equal(ota_webform_build(&cfg, "----B0", 10, head, sizeof(head), tail, sizeof(tail)),
                     0);
    const char pre[] = "------B0\r\n"
                       "Content-Disposition: form-data; name=\"firmware\"; "
                       "filename=\"firmware.bin\"\r\n"
                       "Content-Type: application/octet-stream\r\n"
                       "\r\n";
    const char want_tail[] = "\r\n------B0--\r\n";
    char want[1024];
    snprintf(want, sizeof(want),
             "POST /update HTTP/1.1\r\n"
             "Host: 192.168.4.1\r\n"
             "User-Agent: espstation\r\n"
             "Content-Type: multipart/form-data; boundary=----B0\r\n"
             "Content-Length: %zu\r\n"
             "Connection: close\r\n"
             "\r\n%s",
             strlen(pre) + 10 + strlen(want_tail), pre);
    assert_string_equal(head, want);
    assert_string_equal(tail, want_tail);
    assert_null(strstr(head, "Expect"));

    cfg.port = 8080;
    cfg.user = "admin";
    cfg.password = "pw";
    cfg.filesystem = true;
    cfg.path = "/fw";
    assert_int_equal(ota_webform_build(&cfg, "X", 1, head, sizeof(head), tail, sizeof(tail)), 0);
    assert_non_null(strstr(head, "POST /fw HTTP/1.1\r\nHost: 192.168.4.1:8080\r\n"));
    /* base64("admin:pw") */
    assert_non_null(strstr(head, "Authorization: Basic YWRtaW46cHc=\r\n"));
    assert_non_null(strstr(head, "name=\"filesystem\"; filename=\"firmware.bin\""));
    /* Only one of user/password: no auth header. */
    cfg.password = "";
    assert_int_equal(ota_webform_build(&cfg, "X", 1, head, sizeof(head), tail, sizeof(tail)), 0);
    assert_null(strstr(head, "Authorization"));
    /* Quotes in file names and bad boundaries are refused. */
    cfg.filename = "a\"b";
    assert_int_equal(ota_webform_build(&cfg, "X", 1, head, sizeof(head), tail, sizeof(tail)),
                     -EINVAL);
    cfg.filename = NULL;
    assert_int_equal(ota_webform_build(&cfg, "a b", 1, head, sizeof(head), tail, sizeof(tail)),
                     -EINVAL);
}

static void test_classify(void **state)
{
    (void)state;
    char text[128];
    const char ok[] = "<META http-equiv=\"refresh\" content=\"15;URL=/\">Update Success! "
                      "Rebooting...";
    assert_int_equal(ota_webform_classify_body(ok, strlen(ok), text, sizeof(text)),
                     OTA_WEBFORM_SUCCESS);
    const char e8266[] = "Update error: ERROR[4]: Not Enough Space\r\n";
    assert_int_equal(ota_webform_classify_body(e8266, strlen(e8266), text, sizeof(text)),
                     OTA_WEBFORM_FAILED);
    assert_string_equal(text, "ERROR[4]: Not Enough Space");
    const char e32[] = "Update error: Wrong Magic Byte";
    assert_int_equal(ota_webform_classify_body(e32, strlen(e32), text, sizeof(text)),
                     OTA_WEBFORM_FAILED);
    assert_string_equal(text, "Wrong Magic Byte");
    assert_int_equal(ota_webform_classify_body("Update Failed!", 14, text, sizeof(text)),
                     OTA_WEBFORM_FAILED);
    assert_int_equal(ota_webform_classify_body("<html>", 6, text, sizeof(text)),
                     OTA_WEBFORM_UNKNOWN);
}

static void test_tcp_slot(void **state)
{
    (void)state;
    assert_int_equal(ota_tcp_parse_slot("user1.bin"), OTA_TCP_SLOT_USER1);
    assert_int_equal(ota_tcp_parse_slot("user2.bin"), OTA_TCP_SLOT_USER2);
    assert_int_equal(ota_tcp_parse_slot("user3.bin"), OTA_TCP_SLOT_NONE);
    assert_int_equal(ota_tcp_parse_slot("user1.bin "), OTA_TCP_SLOT_NONE);
    assert_string_equal(ota_tcp_slot_to_string(OTA_TCP_SLOT_USER2), "user2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_tcp_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
