/*
 * test_esp_cmd: request encodings against the wire examples of PROTOCOL-ROM.md
 * §1.6, checksums, and response parsing for the three responders (ESP8266 ROM,
 * ESP32-family ROM, stub) including failures, short failure replies and
 * malformed frames.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "esp_cmd.h"
#include "esp_error.h"
#include "slip.h"

static void test_checksum(void **state)
{
    (void)state;
    assert_int_equal(esp_checksum(NULL, 0), 0xEF);
    const uint8_t a[] = {0x01, 0x02};
    assert_int_equal(esp_checksum(a, 2), 0xEF ^ 0x03);
    const uint8_t b[] = {0xEF};
    assert_int_equal(esp_checksum(b, 1), 0x00);
    uint8_t ff[1024];
    memset(ff, 0xFF, sizeof(ff));
    assert_int_equal(esp_checksum(ff, sizeof(ff)), 0xEF); /* even count of 0xFF */
    assert_int_equal(esp_checksum(ff, 3), 0xEF ^ 0xFF);
}

static void test_sync_wire(void **state)
{
    (void)state;
    uint8_t pkt[64], wire[160];
    int n = esp_cmd_build(ESP_OP_SYNC, esp_sync_body, ESP_SYNC_BODY_LEN, 0, pkt, sizeof(pkt));
    assert_int_equal(n, 44);
    size_t w = slip_encode(pkt, (size_t)n, wire);
    assert_int_equal(w, 46);
    const uint8_t head[] = {0xC0, 0x00, 0x08, 0x24, 0x00, 0x00, 0x00,
                            0x00, 0x00, 0x07, 0x07, 0x12, 0x20};
    assert_memory_equal(wire, head, sizeof(head));
    for (size_t i = sizeof(head); i < 45; i++)
        assert_int_equal(wire[i], 0x55);
    assert_int_equal(wire[45], 0xC0);
}

static void test_read_reg_wire(void **state)
{
    (void)state;
    uint8_t pkt[32], wire[80];
    const uint32_t addr = 0x40001000;
    int n = esp_cmd_build_words(ESP_OP_READ_REG, &addr, 1, pkt, sizeof(pkt));
    assert_int_equal(n, 12);
    size_t w = slip_encode(pkt, (size_t)n, wire);
    const uint8_t want[] = {0xC0, 0x00, 0x0A, 0x04, 0x00, 0x00, 0x00,
                            0x00, 0x00, 0x00, 0x10, 0x00, 0x40, 0xC0};
    assert_int_equal(w, sizeof(want));
    assert_memory_equal(wire, want, sizeof(want));
}

static void test_flash_begin_words(void **state)
{
    (void)state;
    uint8_t pkt[64];
    const uint32_t words[5] = {0x16000, 22, 0x400, 0x3000, 0};
    int n = esp_cmd_build_words(ESP_OP_FLASH_BEGIN, words, 5, pkt, sizeof(pkt));
    assert_int_equal(n, 28);
    assert_int_equal(pkt[0], 0x00);
    assert_int_equal(pkt[1], 0x02);
    assert_int_equal(esp_get_u16(pkt + 2), 20);
    assert_int_equal(esp_get_u32(pkt + 4), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(esp_get_u32(pkt + 8 + 4 * i), words[i]);
}

static void test_data_packet(void **state)
{
    (void)state;
    uint8_t data[100];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    uint8_t pkt[200];
    int n = esp_cmd_build_data(ESP_OP_FLASH_DATA, 5, data, sizeof(data), pkt, sizeof(pkt));
    assert_int_equal(n, 8 + 16 + 100);
    assert_int_equal(pkt[1], ESP_OP_FLASH_DATA);
    assert_int_equal(esp_get_u16(pkt + 2), 116);
    assert_int_equal(esp_get_u32(pkt + 4), esp_checksum(data, sizeof(data)));
    assert_int_equal(esp_get_u32(pkt + 8), 100);
    assert_int_equal(esp_get_u32(pkt + 12), 5);
    assert_int_equal(esp_get_u32(pkt + 16), 0);
    assert_int_equal(esp_get_u32(pkt + 20), 0);
    assert_memory_equal(pkt + 24, data, sizeof(data));
}

static void test_build_limits(void **state)
{
    (void)state;
    uint8_t pkt[16];
    static uint8_t big[0x10000];
    assert_int_equal(esp_cmd_build(ESP_OP_MEM_DATA, big, 0x10000, 0, pkt, sizeof(pkt)), -EINVAL);
    assert_int_equal(esp_cmd_build(ESP_OP_MEM_DATA, big, 9, 0, pkt, sizeof(pkt)), -ENOSPC);
    assert_int_equal(esp_cmd_build(ESP_OP_MEM_DATA, big, 8, 0, pkt, sizeof(pkt)), 16);
    assert_int_equal(esp_cmd_build(ESP_OP_SYNC, NULL, 0, 0, pkt, 7), -ENOSPC);
    assert_int_equal(esp_cmd_build(ESP_OP_ERASE_FLASH, NULL, 0, 0, pkt, 8), 8);
    const uint32_t w[3] = {1, 2, 3};
    assert_int_equal(esp_cmd_build_words(ESP_OP_WRITE_REG, w, 3, pkt, sizeof(pkt)), -ENOSPC);
    assert_int_equal(esp_cmd_build_data(ESP_OP_MEM_DATA, 0, big, 0x10000 - 16, pkt, sizeof(pkt)),
                     -EINVAL);
    assert_int_equal(esp_cmd_build_data(ESP_OP_MEM_DATA, 0, big, 1, pkt, sizeof(pkt)), -ENOSPC);
    assert_int_equal(esp_cmd_build_data(ESP_OP_MEM_DATA, 0, NULL, 0, pkt, sizeof(pkt)), -ENOSPC);
    uint8_t pkt24[24];
    assert_int_equal(esp_cmd_build_data(ESP_OP_MEM_DATA, 7, NULL, 0, pkt24, sizeof(pkt24)), 24);
    assert_int_equal(esp_get_u32(pkt24 + 4), 0xEF);
    assert_int_equal(esp_get_u32(pkt24 + 12), 7);
}

struct resp_case {
    const char *name;
    enum esp_responder who;
    size_t expected;
    uint8_t frame[64];
    size_t len;
    int rc;
    uint8_t op;
    uint32_t value;
    bool failed;
    uint8_t status, error, device_code;
    bool unsupported;
    size_t data_len;
};

#define R8266 ESP_RESPONDER_ROM_8266
#define R32 ESP_RESPONDER_ROM_ESP32
#define RSTUB ESP_RESPONDER_STUB

static const struct resp_case resp_cases[] = {
    {"esp32 read_reg trace",
     R32,
     0,
     {0x01, 0x0a, 0x04, 0x00, 0x83, 0x1d, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00},
     12,
     0,
     ESP_OP_READ_REG,
     0x00F01D83,
     false,
     0,
     0,
     0,
     false,
     0},
    {"esp32-s3 read_reg trace",
     R32,
     0,
     {0x01, 0x0a, 0x04, 0x00, 0xd4, 0xb0, 0x61, 0xe2, 0x00, 0x00, 0x00, 0x00},
     12,
     0,
     ESP_OP_READ_REG,
     0xE261B0D4,
     false,
     0,
     0,
     0,
     false,
     0},
    {"esp8266 read_reg",
     R8266,
     0,
     {0x01, 0x0a, 0x02, 0x00, 0x01, 0xc1, 0xf0, 0xff, 0x00, 0x00},
     10,
     0,
     ESP_OP_READ_REG,
     0xFFF0C101,
     false,
     0,
     0,
     0,
     false,
     0},
    {"esp8266 rom failure",
     R8266,
     0,
     {0x01, 0x03, 0x02, 0x00, 0, 0, 0, 0, 0x01, 0x07},
     10,
     0,
     ESP_OP_FLASH_DATA,
     0,
     true,
     1,
     7,
     7,
     false,
     0},
    {"esp8266 rom unsupported",
     R8266,
     0,
     {0x01, 0x0f, 0x02, 0x00, 0, 0, 0, 0, 0x01, 0x05},
     10,
     0,
     ESP_OP_CHANGE_BAUDRATE,
     0,
     true,
     1,
     5,
     5,
     true,
     0},
    {"esp32 rom flash write error",
     R32,
     0,
     {0x01, 0x03, 0x04, 0x00, 0x11, 0x22, 0x33, 0x44, 0x01, 0x08, 0x00, 0x00},
     12,
     0,
     ESP_OP_FLASH_DATA,
     0x44332211,
     true,
     1,
     8,
     8,
     false,
     0},
    {"esp32 rom unsupported 0x05",
     R32,
     0,
     {0x01, 0x14, 0x04, 0x00, 0, 0, 0, 0, 0x01, 0x05, 0x00, 0x00},
     12,
     0,
     ESP_OP_GET_SECURITY_INFO,
     0,
     true,
     1,
     5,
     5,
     true,
     0},
    {"esp32 rom status without error byte",
     R32,
     0,
     {0x01, 0x02, 0x04, 0x00, 0, 0, 0, 0, 0x01, 0x00, 0x00, 0x00},
     12,
     0,
     ESP_OP_FLASH_BEGIN,
     0,
     true,
     1,
     0,
     0,
     false,
     0},
    {"stub ok",
     RSTUB,
     0,
     {0x01, 0x0d, 0x02, 0x00, 0, 0, 0, 0, 0x00, 0x00},
     10,
     0,
     ESP_OP_SPI_ATTACH,
     0,
     false,
     0,
     0,
     0,
     false,
     0},
    {"stub bad checksum 0xC1",
     RSTUB,
     0,
     {0x01, 0x03, 0x02, 0x00, 0, 0, 0, 0, 0xC1, 0x00},
     10,
     0,
     ESP_OP_FLASH_DATA,
     0,
     true,
     0xC1,
     0,
     0xC1,
     false,
     0},
    {"stub inflate 0xC7",
     RSTUB,
     0,
     {0x01, 0x11, 0x02, 0x00, 0, 0, 0, 0, 0xC7, 0x00},
     10,
     0,
     ESP_OP_FLASH_DEFL_DATA,
     0,
     true,
     0xC7,
     0,
     0xC7,
     false,
     0},
    {"stub not implemented 0xFF",
     RSTUB,
     0,
     {0x01, 0x14, 0x02, 0x00, 0, 0, 0, 0, 0xFF, 0x00},
     10,
     0,
     ESP_OP_GET_SECURITY_INFO,
     0,
     true,
     0xFF,
     0,
     0xFF,
     true,
     0},
    {"stub 0x05 is not unsupported",
     RSTUB,
     0,
     {0x01, 0x0f, 0x02, 0x00, 0, 0, 0, 0, 0x05, 0x05},
     10,
     0,
     ESP_OP_CHANGE_BAUDRATE,
     0,
     true,
     0x05,
     0x05,
     0x05,
     false,
     0},
    {"rom 0xFF is not unsupported",
     R32,
     0,
     {0x01, 0x0f, 0x04, 0x00, 0, 0, 0, 0, 0xFF, 0x00, 0x00, 0x00},
     12,
     0,
     ESP_OP_CHANGE_BAUDRATE,
     0,
     true,
     0xFF,
     0,
     0,
     false,
     0},
    {"stub md5 16 bytes",
     RSTUB,
     16,
     {0x01, 0x13, 0x12, 0x00, 0,  0,  0,  0,  1,  2,  3,  4,    5,
      6,    7,    8,    9,    10, 11, 12, 13, 14, 15, 16, 0x00, 0x00},
     26,
     0,
     ESP_OP_SPI_FLASH_MD5,
     0,
     false,
     0,
     0,
     0,
     false,
     16},
    {"stub md5 short failure",
     RSTUB,
     16,
     {0x01, 0x13, 0x02, 0x00, 0, 0, 0, 0, 0xC4, 0x00},
     10,
     0,
     ESP_OP_SPI_FLASH_MD5,
     0,
     true,
     0xC4,
     0,
     0xC4,
     false,
     0},
    {"rom md5 short failure",
     R32,
     32,
     {0x01, 0x13, 0x04, 0x00, 0, 0, 0, 0, 0x01, 0x06, 0x00, 0x00},
     12,
     0,
     ESP_OP_SPI_FLASH_MD5,
     0,
     true,
     1,
     6,
     6,
     false,
     0},
    {"security info short failure",
     R32,
     20,
     {0x01, 0x14, 0x04, 0x00, 0, 0, 0, 0, 0x01, 0x05, 0x00, 0x00},
     12,
     0,
     ESP_OP_GET_SECURITY_INFO,
     0,
     true,
     1,
     5,
     5,
     true,
     0},
    {"esp8266 short failure",
     R8266,
     16,
     {0x01, 0x13, 0x02, 0x00, 0, 0, 0, 0, 0x01, 0x05},
     10,
     0,
     ESP_OP_SPI_FLASH_MD5,
     0,
     true,
     1,
     5,
     5,
     true,
     0},
    {"short success is malformed",
     RSTUB,
     16,
     {0x01, 0x13, 0x02, 0x00, 0, 0, 0, 0, 0x00, 0x00},
     10,
     -EPROTO},
    {"short rom success is malformed",
     R32,
     32,
     {0x01, 0x13, 0x04, 0x00, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x00},
     12,
     -EPROTO},
    {"request direction", R32, 0, {0x00, 0x0a, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0}, 12, -EPROTO},
    {"direction 2", R32, 0, {0x02, 0x0a, 0x04, 0x00, 0, 0, 0, 0, 0, 0, 0, 0}, 12, -EPROTO},
    {"shorter than header", R32, 0, {0x01, 0x0a, 0x04, 0x00, 0, 0, 0}, 7, -EPROTO},
    {"empty frame", R32, 0, {0}, 0, -EPROTO},
    {"size larger than frame",
     R32,
     0,
     {0x01, 0x0a, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0},
     12,
     -EPROTO},
    {"size smaller than frame",
     R32,
     0,
     {0x01, 0x0a, 0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0},
     12,
     -EPROTO},
    {"no status bytes", RSTUB, 0, {0x01, 0x0a, 0x00, 0x00, 0, 0, 0, 0}, 8, -EPROTO},
    {"one status byte", R8266, 0, {0x01, 0x0a, 0x01, 0x00, 0, 0, 0, 0, 0x01}, 9, -EPROTO},
    {"ohai is not a response", RSTUB, 0, {0x4F, 0x48, 0x41, 0x49}, 4, -EPROTO},
};

static void test_response_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(resp_cases) / sizeof(resp_cases[0]); i++) {
        const struct resp_case *c = &resp_cases[i];
        struct esp_response r;
        memset(&r, 0xA5, sizeof(r));
        int rc = esp_response_parse(c->frame, c->len, c->who, c->expected, &r);
        if (rc != c->rc)
            fail_msg("%s: rc %d, want %d", c->name, rc, c->rc);
        if (rc != 0)
            continue;
        if (r.op != c->op || r.value != c->value || r.failed != c->failed ||
            r.status != c->status || r.error != c->error || r.device_code != c->device_code ||
            r.unsupported != c->unsupported || r.data_len != c->data_len)
            fail_msg("%s: op %02x value %08x failed %d status %02x error %02x code %02x unsup %d "
                     "data_len %zu",
                     c->name, r.op, r.value, r.failed, r.status, r.error, r.device_code,
                     r.unsupported, r.data_len);
        assert_int_equal(r.size, c->len - 8);
        assert_ptr_equal(r.data, c->frame + 8);
    }
}

static void test_md5_payloads(void **state)
{
    (void)state;
    /* ROM: 32 ASCII hex digits + 4 status bytes. */
    const char *hex = "d41d8cd98f00b204e9800998ecf8427e";
    uint8_t f[8 + 32 + 4] = {0x01, 0x13, 36, 0x00};
    memcpy(f + 8, hex, 32);
    struct esp_response r;
    assert_int_equal(esp_response_parse(f, sizeof(f), ESP_RESPONDER_ROM_ESP32, 32, &r), 0);
    assert_false(r.failed);
    assert_int_equal(r.data_len, 32);
    assert_memory_equal(r.data, hex, 32);

    /* Security info: 20 bytes of data, then 4 status bytes. */
    uint8_t s[8 + 20 + 4] = {0x01, 0x14, 24, 0x00};
    esp_put_u32(s + 8, 0x4); /* flags: secure download */
    esp_put_u32(s + 8 + 12, 9);
    assert_int_equal(esp_response_parse(s, sizeof(s), ESP_RESPONDER_ROM_ESP32, 20, &r), 0);
    assert_false(r.failed);
    assert_int_equal(esp_get_u32(r.data + 12), 9);
    /* S2 layout: 12 bytes of data then the status bytes. */
    uint8_t s2[8 + 12 + 4] = {0x01, 0x14, 16, 0x00};
    assert_int_equal(esp_response_parse(s2, sizeof(s2), ESP_RESPONDER_ROM_ESP32, 12, &r), 0);
    assert_false(r.failed);
    assert_int_equal(r.data_len, 12);
    /* Status position follows expected data even when the frame is longer. */
    s[8 + 20] = 0x01;
    s[8 + 21] = 0x06;
    assert_int_equal(esp_response_parse(s, sizeof(s), ESP_RESPONDER_ROM_ESP32, 20, &r), 0);
    assert_true(r.failed);
    assert_int_equal(r.device_code, 0x06);
}

static void test_null_response_ok(void **state)
{
    (void)state;
    const uint8_t f[] = {0x01, 0x08, 0x02, 0x00, 0, 0, 0, 0, 0, 0};
    assert_int_equal(esp_response_parse(f, sizeof(f), ESP_RESPONDER_STUB, 0, NULL), 0);
    assert_int_equal(esp_response_parse(NULL, 10, ESP_RESPONDER_STUB, 0, NULL), -EPROTO);
    assert_int_equal(esp_response_parse(f, sizeof(f), ESP_RESPONDER_STUB, SIZE_MAX, NULL), -EPROTO);
}

static void test_names(void **state)
{
    (void)state;
    static const struct {
        uint8_t op;
        const char *name;
    } ops[] = {
        {0x02, "FLASH_BEGIN"},
        {0x03, "FLASH_DATA"},
        {0x04, "FLASH_END"},
        {0x05, "MEM_BEGIN"},
        {0x06, "MEM_END"},
        {0x07, "MEM_DATA"},
        {0x08, "SYNC"},
        {0x09, "WRITE_REG"},
        {0x0A, "READ_REG"},
        {0x0B, "SPI_SET_PARAMS"},
        {0x0D, "SPI_ATTACH"},
        {0x0E, "READ_FLASH_SLOW"},
        {0x0F, "CHANGE_BAUDRATE"},
        {0x10, "FLASH_DEFL_BEGIN"},
        {0x11, "FLASH_DEFL_DATA"},
        {0x12, "FLASH_DEFL_END"},
        {0x13, "SPI_FLASH_MD5"},
        {0x14, "GET_SECURITY_INFO"},
        {0xD0, "ERASE_FLASH"},
        {0xD1, "ERASE_REGION"},
        {0xD2, "READ_FLASH"},
        {0xD3, "RUN_USER_CODE"},
        {0x00, "UNKNOWN"},
        {0x0C, "UNKNOWN"},
        {0xFF, "UNKNOWN"},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        assert_string_equal(esp_op_to_string(ops[i].op), ops[i].name);
    assert_string_equal(esp_responder_to_string(ESP_RESPONDER_STUB), "stub");
    assert_string_not_equal(esp_responder_to_string(ESP_RESPONDER_ROM_8266),
                            esp_responder_to_string(ESP_RESPONDER_ROM_ESP32));
}

static void test_error_tables(void **state)
{
    (void)state;
    assert_string_equal(esp_rom_error_to_string(0x08), "flash write error");
    assert_string_equal(esp_rom_error_to_string(0x05), "malformed or unsupported command");
    assert_string_equal(esp_rom_error_to_string(0x07), "checksum error");
    assert_string_equal(esp_rom_error_to_string(0x0C), "deflate Adler-32 mismatch");
    assert_string_equal(esp_rom_error_to_string(0x69), "insufficient storage");
    assert_string_equal(esp_rom_error_to_string(0x68), "unknown ROM error");
    assert_string_equal(esp_stub_error_to_string(0xC1), "bad data checksum");
    assert_string_equal(esp_stub_error_to_string(0xC6), "not in flash mode");
    assert_string_equal(esp_stub_error_to_string(0xFF), "command not implemented");
    assert_string_equal(esp_stub_error_to_string(0x01), "unknown stub error");
    assert_string_equal(esp_errno_to_string(-ETIMEDOUT), "timeout");
    assert_string_equal(esp_errno_to_string(-ENODEV), "port gone");
    assert_string_equal(esp_errno_to_string(-EPROTO), "malformed frame");

    static const char *const stages[] = {"none",     "open",  "reset",  "sync",   "detect",
                                         "identify", "stub",  "baud",   "attach", "prepare",
                                         "erase",    "write", "verify", "read",   "finish"};
    for (int i = 0; i < ESP_STAGE_COUNT; i++)
        assert_string_equal(esp_stage_to_string((enum esp_stage)i), stages[i]);
}

static void test_error_record(void **state)
{
    (void)state;
    struct esp_error e;
    esp_error_clear(&e);
    assert_int_equal(e.code, 0);
    assert_int_equal(esp_error_set(&e, -ETIMEDOUT, ESP_STAGE_SYNC, "check the cable",
                                   "no reply after %d tries", 5),
                     -ETIMEDOUT);
    assert_int_equal(e.code, -ETIMEDOUT);
    assert_int_equal(e.stage, ESP_STAGE_SYNC);
    assert_string_equal(e.message, "no reply after 5 tries");
    assert_string_equal(e.advice, "check the cable");

    /* set_if_unset keeps the first error. */
    assert_int_equal(esp_error_set_if_unset(&e, -EIO, ESP_STAGE_WRITE, NULL, "later"), -EIO);
    assert_int_equal(e.code, -ETIMEDOUT);
    assert_string_equal(e.message, "no reply after 5 tries");

    /* set overwrites, dropping the old device detail. */
    esp_error_set_device(&e, ESP_OP_SYNC, 1, 5);
    esp_error_set_address(&e, 0x1000);
    esp_error_set(&e, -EIO, ESP_STAGE_WRITE, NULL, "write failed");
    assert_int_equal(e.code, -EIO);
    assert_string_equal(e.advice, "");
    assert_false(e.has_device_status);
    assert_false(e.has_address);
    esp_error_set_device(&e, ESP_OP_FLASH_DATA, 1, 8);
    esp_error_set_address(&e, 0x10000);
    assert_true(e.has_device_status);
    assert_int_equal(e.op, ESP_OP_FLASH_DATA);
    assert_int_equal(e.error, 8);
    assert_int_equal(e.address, 0x10000);

    /* On a clear record, device detail recorded first is kept. */
    esp_error_clear(&e);
    esp_error_set_device(&e, ESP_OP_FLASH_DATA, 0xC1, 0);
    esp_error_set_if_unset(&e, -EIO, ESP_STAGE_WRITE, NULL, "stub error");
    assert_true(e.has_device_status);
    assert_int_equal(e.status, 0xC1);

    /* Long messages are truncated, not overflowed. */
    char big[600];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    esp_error_set(&e, -EINVAL, ESP_STAGE_PREPARE, big, "%s", big);
    assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
    assert_int_equal(strlen(e.advice), sizeof(e.advice) - 1);

    /* NULL is allowed everywhere. */
    assert_int_equal(esp_error_set(NULL, -EIO, ESP_STAGE_NONE, NULL, "x"), -EIO);
    assert_int_equal(esp_error_set_if_unset(NULL, -EIO, ESP_STAGE_NONE, NULL, "x"), -EIO);
    esp_error_set_device(NULL, 0, 0, 0);
    esp_error_set_address(NULL, 0);
    esp_error_clear(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checksum),         cmocka_unit_test(test_sync_wire),
        cmocka_unit_test(test_read_reg_wire),    cmocka_unit_test(test_flash_begin_words),
        cmocka_unit_test(test_data_packet),      cmocka_unit_test(test_build_limits),
        cmocka_unit_test(test_response_table),   cmocka_unit_test(test_md5_payloads),
        cmocka_unit_test(test_null_response_ok), cmocka_unit_test(test_names),
        cmocka_unit_test(test_error_tables),     cmocka_unit_test(test_error_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
