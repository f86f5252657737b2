/*
 * test_esp_stub: the flasher-stub JSON loader.
 *
 * Parses the real esptool-js stub files when TEST_STUB_DIR holds them
 * (skipped otherwise), and checks every rejection path on hand-written
 * documents: malformed JSON, missing/mistyped keys, bad base64 (each must name
 * the key), a missing file or directory (-ENOENT), and base64 padding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esp_chip.h"
#include "esp_stub.h"

static int parse_str(const char *json, struct esp_stub **out, struct esp_error *err)
{
    esp_error_clear(err);
    return esp_stub_parse(json, strlen(json), out, err);
}

static void test_parse_minimal(void **state)
{
    (void)state;
    /* "AQID" = 01 02 03; "BAU=" = 04 05 (one pad); "Bg==" = 06 (two pads). */
    const char *doc = "{\"entry\": 1074434092, \"text\": \"AQIDBAU=\", \"text_start\": "
                      "1074429952, \"data\": \"Bg==\", \"data_start\": 1073605996, "
                      "\"bss_start\": 1073528832, \"plugins\": {\"x\": 1}, \"extra\": [1,2]}";
    struct esp_stub *s = NULL;
    struct esp_error err;
    assert_int_equal(parse_str(doc, &s, &err), 0);
    assert_non_null(s);
    assert_int_equal(s->entry, 1074434092u);
    assert_int_equal(s->text_start, 1074429952u);
    assert_int_equal(s->text_len, 5);
    static const uint8_t text[] = {1, 2, 3, 4, 5};
    assert_memory_equal(s->text, text, 5);
    assert_int_equal(s->data_len, 1);
    assert_int_equal(s->data[0], 6);
    assert_int_equal(s->data_start, 1073605996u);
    assert_int_equal(s->bss_start, 1073528832u);
    esp_stub_free(s);
}

static void test_empty_data_ok(void **state)
{
    (void)state;
    const char *doc = "{\"entry\": 1, \"text\": \"AAAA\", \"text_start\": 2, \"data\": \"\", "
                      "\"data_start\": 3, \"bss_start\": 4}";
    struct esp_stub *s = NULL;
    struct esp_error err;
    assert_int_equal(parse_str(doc, &s, &err), 0);
    assert_int_equal(s->text_len, 3);
    assert_int_equal(s->data_len, 0);
    esp_stub_free(s);
}

struct bad_case {
    const char *doc;
    const char *needle; /* must appear in the error message */
};

static void test_rejections(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"{\"entry\": 1, \"text\": \"AAAA\"", "JSON"},
        {"[1, 2, 3]", "object"},
        {"{\"entry\": 1} trailing", "JSON"},
        {"{\"text\": \"AAAA\", \"text_start\": 2, \"data\": \"\", \"data_start\": 3}", "entry"},
        {"{\"entry\": 1, \"text_start\": 2, \"data\": \"\", \"data_start\": 3}", "\"text\""},
        {"{\"entry\": 1, \"text\": \"AAAA\", \"data\": \"\", \"data_start\": 3}", "text_start"},
        {"{\"entry\": 1, \"text\": \"AAAA\", \"text_start\": 2, \"data_start\": 3}", "\"data\""},
        {"{\"entry\": 1, \"text\": \"AAAA\", \"text_start\": 2, \"data\": \"\"}", "data_start"},
        {"{\"entry\": \"1\", \"text\": \"AAAA\", \"text_start\": 2, \"data\": \"\", "
         "\"data_start\": 3}",
         "entry"},
        {"{\"entry\": -1, \"text\": \"AAAA\", \"text_start\": 2, \"data\": \"\", "
         "\"data_start\": 3}",
         "entry"},
        {"{\"entry\": 4294967296, \"text\": \"AAAA\", \"text_start\": 2, \"data\": \"\", "
         "\"data_start\": 3}",
         "entry"},
        {"{\"entry\": 1, \"text\": 5, \"text_start\": 2, \"data\": \"\", \"data_start\": 3}",
         "\"text\""},
        {"{\"entry\": 1, \"text\": \"AAA\", \"text_start\": 2, \"data\": \"\", \"data_start\": 3}",
         "\"text\""},
        {"{\"entry\": 1, \"text\": \"AA*A\", \"text_start\": 2, \"data\": \"\", "
         "\"data_start\": 3}",
         "\"text\""},
        {"{\"entry\": 1, \"text\": \"A=AA\", \"text_start\": 2, \"data\": \"\", "
         "\"data_start\": 3}",
         "\"text\""},
        {"{\"entry\": 1, \"text\": \"AAAA\", \"text_start\": 2, \"data\": \"Bg=x\", "
         "\"data_start\": 3}",
         "\"data\""},
        {"{\"entry\": 1, \"text\": \"\", \"text_start\": 2, \"data\": \"\", \"data_start\": 3}",
         "\"text\""},
        {"{\"entry\": 1, \"text\": \"AAAA\", \"text_start\": 2, \"data\": \"\", \"data_start\": "
         "3, \"bss_start\": \"x\"}",
         "bss_start"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct esp_stub *s = (struct esp_stub *)1;
        struct esp_error err;
        int rc = parse_str(cases[i].doc, &s, &err);
        if (rc != -EINVAL || !strstr(err.message, cases[i].needle))
            fail_msg("case %zu: rc %d, message \"%s\" (wanted \"%s\")", i, rc, err.message,
                     cases[i].needle);
        assert_null(s);
        assert_int_equal(err.code, -EINVAL);
        assert_int_equal(err.stage, ESP_STAGE_STUB);
    }
}

static void test_missing_file(void **state)
{
    (void)state;
    struct esp_stub *s = NULL;
    struct esp_error err;
    esp_error_clear(&err);
    const struct esp_chip_desc *chip = esp_chip_get(ESP_CHIP_ESP32);
    assert_int_equal(esp_stub_load("/nonexistent-stub-dir", chip, &s, &err), -ENOENT);
    assert_null(s);
    assert_int_equal(esp_stub_load(NULL, chip, &s, &err), -ENOENT);
    assert_int_equal(esp_stub_load("", chip, &s, &err), -ENOENT);
}

static void test_file_errors(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_esp_stub.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[512];
    snprintf(path, sizeof(path), "%s/esp32.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"entry\": 1, \"text\": \"AAAA\", \"text_start\": 2, \"data\": \"@@@@\", "
          "\"data_start\": 3}",
          f);
    fclose(f);
    struct esp_stub *s = NULL;
    struct esp_error err;
    esp_error_clear(&err);
    assert_int_equal(esp_stub_load(dir, esp_chip_get(ESP_CHIP_ESP32), &s, &err), -EINVAL);
    assert_non_null(strstr(err.message, "\"data\""));
    assert_non_null(strstr(err.message, "esp32.json"));
    assert_null(s);

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"entry\": 7, \"text\": \"AAECAw==\", \"text_start\": 2, \"data\": \"\", "
          "\"data_start\": 3}\n",
          f);
    fclose(f);
    assert_int_equal(esp_stub_load(dir, esp_chip_get(ESP_CHIP_ESP32), &s, &err), 0);
    assert_int_equal(s->entry, 7);
    assert_int_equal(s->text_len, 4);
    esp_stub_free(s);
    unlink(path);
    rmdir(dir);
}

/* Every chip with a stub: the real esptool-js files parse with sane values. */
static void test_real_files(void **state)
{
    (void)state;
    struct stat st;
    if (stat(TEST_STUB_DIR "/esp32.json", &st) != 0)
        skip();
    int loaded = 0;
    for (int c = 0; c < ESP_CHIP_COUNT; c++) {
        const struct esp_chip_desc *chip = esp_chip_get((enum esp_chip)c);
        if (!chip || !chip->stub_supported)
            continue;
        struct esp_stub *s = NULL;
        struct esp_error err;
        esp_error_clear(&err);
        int rc = esp_stub_load(TEST_STUB_DIR, chip, &s, &err);
        if (rc == -ENOENT)
            continue;
        if (rc != 0)
            fail_msg("%s: %d %s", chip->name, rc, err.message);
        assert_true(s->text_len > 1000);
        assert_true(s->entry >= s->text_start);
        assert_true(s->entry < s->text_start + s->text_len);
        esp_stub_free(s);
        loaded++;
    }
    assert_true(loaded >= 2);

    /* Sizes stated in PROTOCOL-ROM.md are not necessarily this release's;
     * the ESP32 and ESP8266 entries are known for 0.7.0. */
    struct esp_stub *s = NULL;
    assert_int_equal(esp_stub_load(TEST_STUB_DIR, esp_chip_get(ESP_CHIP_ESP32), &s, NULL), 0);
    assert_int_equal(s->entry, 1074434092u);
    assert_int_equal(s->text_start, 1074429952u);
    assert_int_equal(s->data_start, 1073605996u);
    esp_stub_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_minimal), cmocka_unit_test(test_empty_data_ok),
        cmocka_unit_test(test_rejections),    cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_file_errors),   cmocka_unit_test(test_real_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
