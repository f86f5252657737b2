/*
 * test_esp_loader_errors: faults and refusals against the fake board (loader_fixture.h):
 * a lost or garbled READ_FLASH reply, an MD5 mismatch, a device error on a block, a
 * block retried with the same sequence number, region checks, an image for another chip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loader_fixture.h"

/* A lost or garbled READ_FLASH reply: the first data frame stands for the OK; a
 * lost command: re-sync the stub and ask once more. */
static void test_read_flash_reply_lost(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, stub_dir);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_running);
    fill_pattern(f->flash, FLASH_SIZE, 5);
    uint32_t len = 0x5000 + 123;
    uint8_t *buf = malloc(len);
    assert_non_null(buf);

    for (int fault = 0; fault <= 2; fault++) {
        memset(buf, 0, len);
        f->read_reply_fault = fault;
        assert_int_equal(esp_loader_read_flash(l, 0x10000, len, buf, &err), 0);
        assert_memory_equal(buf, f->flash + 0x10000, len);
    }
    assert_int_equal(count_op(f, ESP_OP_READ_FLASH), 3);

    size_t syncs = count_op(f, ESP_OP_SYNC);
    f->read_lost_once = true;
    memset(buf, 0, len);
    assert_int_equal(esp_loader_read_flash(l, 0x20000, len, buf, &err), 0);
    assert_memory_equal(buf, f->flash + 0x20000, len);
    assert_int_equal(count_op(f, ESP_OP_READ_FLASH), 5);
    assert_int_equal(count_op(f, ESP_OP_SYNC), syncs + 1);

    /* A stub that stays silent: the original timeout, after one re-sync try. */
    f->sync_silent = true;
    f->read_lost_once = true;
    assert_int_equal(esp_loader_read_flash(l, 0x20000, len, buf, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.message, "READ_FLASH"));
    assert_int_equal(count_op(f, ESP_OP_READ_FLASH), 6);
    free(buf);
    esp_loader_free(l);
    fake_free(f);
}

static void test_md5_mismatch(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->md5_wrong = true;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    uint8_t d[0x800];
    fill_pattern(d, sizeof(d), 3);
    struct esp_region reg = {.offset = 0x8000, .data = d, .len = sizeof(d), .name = "pt"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), -EBADMSG);
    assert_int_equal(err.stage, ESP_STAGE_VERIFY);
    assert_true(err.has_address);
    assert_int_equal(err.address, 0x8000);
    /* Both digests are named. */
    uint8_t want[16];
    unsigned int ml = 16;
    EVP_Digest(d, sizeof(d), want, &ml, EVP_md5(), NULL);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", want[i]);
    assert_non_null(strstr(err.message, hex));
    hex[0] = "0123456789abcdef"[(want[0] ^ 0x55) >> 4];
    hex[1] = "0123456789abcdef"[(want[0] ^ 0x55) & 15];
    assert_non_null(strstr(err.message, hex));
    esp_loader_free(l);
    fake_free(f);
}

static void test_device_error_0x08(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->fail_data_seq = 2;
    f->fail_code = 0x08;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    uint8_t d[0x1000];
    fill_pattern(d, sizeof(d), 5);
    struct esp_region reg = {.offset = 0x20000, .data = d, .len = sizeof(d)};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    opts.compress = false;
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), -EIO);
    assert_int_equal(err.stage, ESP_STAGE_WRITE);
    assert_true(err.has_device_status);
    assert_int_equal(err.op, ESP_OP_FLASH_DATA);
    assert_int_equal(err.status, 0x01);
    assert_int_equal(err.error, 0x08);
    assert_true(err.has_address);
    assert_int_equal(err.address, 0x20000 + 2 * 0x400);
    assert_non_null(strstr(err.advice, "flash chip failed to program"));
    /* Failed at once: block 2 was sent once, block 3 never. */
    assert_int_equal(count_op(f, ESP_OP_FLASH_DATA), 3);
    assert_int_equal(esp_loader_stats(l)->block_retries, 0);
    esp_loader_free(l);
    fake_free(f);
}

static void test_block_retry_same_seq(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->lose_data_seq = 1;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    uint8_t d[0xC00];
    fill_pattern(d, sizeof(d), 9);
    struct esp_region reg = {.offset = 0x30000, .data = d, .len = sizeof(d)};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    opts.compress = false;
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);
    assert_int_equal(esp_loader_stats(l)->block_retries, 1);
    assert_int_equal(count_op(f, ESP_OP_FLASH_DATA), 4);
    static const uint32_t seqs[] = {0, 1, 1, 2};
    for (size_t i = 0; i < 4; i++) {
        const struct rec *r = find_op(f, ESP_OP_FLASH_DATA, i);
        assert_int_equal(esp_get_u32(r->body + 4), seqs[i]);
    }
    assert_memory_equal(f->flash + 0x30000, d, sizeof(d));
    esp_loader_free(l);
    fake_free(f);
}

static void test_region_checks(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    static uint8_t d[0x2000];
    memset(d, 0x11, sizeof(d));
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);

    struct esp_region overlap[2] = {
        {.offset = 0x10000, .data = d, .len = 0x2000, .name = "a"},
        {.offset = 0x11000, .data = d, .len = 0x1000, .name = "b"},
    };
    assert_int_equal(esp_loader_flash(l, overlap, 2, &opts, &err), -EINVAL);
    assert_int_equal(err.stage, ESP_STAGE_PREPARE);
    assert_non_null(strstr(err.message, "'a'"));
    assert_non_null(strstr(err.message, "'b'"));

    struct esp_region same_sector[2] = {
        {.offset = 0x10000, .data = d, .len = 0x100, .name = "a"},
        {.offset = 0x10800, .data = d, .len = 0x100, .name = "b"},
    };
    assert_int_equal(esp_loader_check_regions(l, same_sector, 2, &opts, &err), -EINVAL);
    assert_non_null(strstr(err.message, "sector"));

    struct esp_region too_big = {.offset = FLASH_SIZE - 0x1000, .data = d, .len = 0x2000};
    assert_int_equal(esp_loader_flash(l, &too_big, 1, &opts, &err), -EINVAL);
    assert_int_equal(err.stage, ESP_STAGE_PREPARE);
    assert_non_null(strstr(err.message, "beyond"));

    struct esp_region fine[2] = {
        {.offset = 0x10000, .data = d, .len = 0x1000},
        {.offset = 0x11000, .data = d, .len = 0x1000},
    };
    assert_int_equal(esp_loader_check_regions(l, fine, 2, &opts, &err), 0);
    assert_int_equal(count_op(f, ESP_OP_FLASH_DEFL_BEGIN) + count_op(f, ESP_OP_FLASH_BEGIN), 0);
    esp_loader_free(l);
    fake_free(f);
}

/* A minimal valid ESP32-family image (one segment) for chip_id. */
static size_t make_image(uint8_t *buf, size_t cap, uint16_t chip_id)
{
    memset(buf, 0, cap);
    buf[0] = 0xE9;
    buf[1] = 1;    /* segments */
    buf[2] = 2;    /* DIO */
    buf[3] = 0x20; /* 4 MB, 40 MHz */
    esp_put_u32(buf + 4, 0x40080400);
    buf[8] = 0xEE;
    buf[12] = (uint8_t)chip_id;
    buf[13] = (uint8_t)(chip_id >> 8);
    buf[17] = 0xFF; /* max_rev_full 0xFFFF */
    buf[18] = 0xFF;
    size_t p = 24;
    esp_put_u32(buf + p, 0x3FFB0000);
    esp_put_u32(buf + p + 4, 16);
    p += 8;
    uint8_t sum = 0xEF;
    for (int i = 0; i < 16; i++) {
        buf[p + i] = (uint8_t)(i * 3 + 1);
        sum ^= buf[p + i];
    }
    p += 16;
    while (p % 16 != 15)
        p++;
    buf[p++] = sum;
    assert_true(p <= cap);
    return p;
}

static void test_image_wrong_chip(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    uint8_t img[128];
    size_t n = make_image(img, sizeof(img), 5); /* built for ESP32-C3 */
    struct esp_region reg = {.offset = 0x1000, .data = img, .len = n, .name = "bootloader"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), -EINVAL);
    assert_int_equal(err.stage, ESP_STAGE_PREPARE);
    assert_non_null(strstr(err.message, "bootloader"));
    assert_int_equal(count_op(f, ESP_OP_FLASH_DEFL_BEGIN), 0);

    /* At another offset it is checked too; skip_image_check lets it through. */
    reg.offset = 0x10000;
    assert_int_equal(esp_loader_check_regions(l, &reg, 1, &opts, &err), -EINVAL);
    opts.skip_image_check = true;
    assert_int_equal(esp_loader_check_regions(l, &reg, 1, &opts, &err), 0);

    /* The right chip passes. */
    n = make_image(img, sizeof(img), 0);
    opts.skip_image_check = false;
    reg.offset = 0x1000;
    reg.len = n;
    assert_int_equal(esp_loader_check_regions(l, &reg, 1, &opts, &err), 0);
    esp_loader_free(l);
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_flash_reply_lost), cmocka_unit_test(test_md5_mismatch),
        cmocka_unit_test(test_device_error_0x08),     cmocka_unit_test(test_block_retry_same_seq),
        cmocka_unit_test(test_region_checks),         cmocka_unit_test(test_image_wrong_chip),
    };
    return cmocka_run_group_tests(tests, make_stub_dir, remove_stub_dir);
}
