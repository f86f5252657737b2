/*
 * test_esp_loader: the serial flashing engine against a scripted fake board
 * (loader_fixture.h): connecting and detecting the chip (sync, junk, magic and
 * security info, a stub already running, the diagnosis of a silent board, reset
 * lines, USB-JTAG) and the --before/--after names.
 * Other themes: test_esp_loader_write.c (writing, the ESP8266 ROM erase bug, the
 * FLASH_BEGIN words), test_esp_loader_stub.c (stub start and baud), test_esp_loader_errors.c
 * (lost replies, MD5, device errors, retries, region and image checks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loader_fixture.h"

/* ---- connect and detect -------------------------------------------------------- */

static void test_connect_esp32_rom(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    const struct esp_chip_info *info = esp_loader_info(l);
    assert_non_null(info->chip);
    assert_int_equal(info->chip->chip, ESP_CHIP_ESP32);
    assert_int_equal(info->magic, 0x00F01D83);
    assert_false(info->stub_running);
    assert_int_equal(esp_loader_stats(l)->sync_tries, 1);

    /* First command is SYNC with the canonical body. */
    assert_int_equal(f->recs[0].op, ESP_OP_SYNC);
    assert_int_equal(f->recs[0].len, ESP_SYNC_BODY_LEN);
    assert_memory_equal(f->recs[0].body, esp_sync_body, ESP_SYNC_BODY_LEN);
    /* Attempt 1 is UnixTight: (0,0) (1,1) (0,1) (1,0) (0,0) then a DTR-only write. */
    assert_string_equal(f->line_log, "00 11 01 10 00 0- ");
    /* The ROM said "unsupported" to GET_SECURITY_INFO: not an error, magic decided. */
    assert_int_equal(count_op(f, ESP_OP_GET_SECURITY_INFO), 1);
    assert_int_equal(err.code, 0);
    esp_loader_free(l);
    fake_free(f);
}

static void test_connect_with_junk(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    /* Two bytes of boot log, then a frame that is no response, then the replies. */
    static const uint8_t junk[] = {'e', 't', 0xC0, 0x55, 0x66, 0x77, 0xC0};
    f->pre_sync = junk;
    f->pre_sync_len = sizeof(junk);
    f->secinfo_wrong_op = true; /* "unsupported" reply that echoes another opcode */
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_info(l)->chip->chip, ESP_CHIP_ESP32);
    assert_true(esp_loader_stats(l)->frames_dropped >= 1);
    esp_loader_free(l);
    fake_free(f);
}

/* A ROM "unsupported" reply with another opcode: behind a USB-UART bridge (known USB ids)
 * it is the answer at once, as esptool takes it (an ESP32 ROM is asked GET_SECURITY_INFO at
 * every detect); on a port without USB ids (pty, serial server) the station waits a short
 * grace for the command's own reply (a stray over USB-Serial/JTAG, esptool #813). */
static void test_foreign_unsupported_by_port(void **state)
{
    (void)state;
    for (int bridge = 0; bridge < 2; bridge++) {
        struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
        f->secinfo_wrong_op = true;
        if (bridge) {
            f->t.usb_vid = 0x10C4; /* CP2102 */
            f->t.usb_pid = 0xEA60;
        }
        struct esp_loader *l = loader_for(f, NULL);
        struct esp_error err;
        assert_int_equal(esp_loader_connect(l, &err), 0);
        assert_int_equal(esp_loader_info(l)->chip->chip, ESP_CHIP_ESP32);
        bool waited = strstr(f->log, "waiting for the command's own reply") != NULL;
        if (bridge)
            assert_false(waited);
        else
            assert_true(waited);
        esp_loader_free(l);
        fake_free(f);
    }
}

static void test_detect_esp8266_magic(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_info(l)->chip->chip, ESP_CHIP_ESP8266);
    /* 2 status bytes in SYNC replies: ESP8266 ROM, never asked for security info. */
    assert_int_equal(count_op(f, ESP_OP_GET_SECURITY_INFO), 0);
    assert_int_equal(count_op(f, ESP_OP_READ_REG), 1);
    esp_loader_free(l);
    fake_free(f);
}

static void test_detect_c3_security_info(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0xDEADBEEF);
    f->secinfo = true;
    f->secinfo_chip = 5;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    const struct esp_chip_info *info = esp_loader_info(l);
    assert_int_equal(info->chip->chip, ESP_CHIP_ESP32C3);
    assert_true(info->security_info_valid);
    assert_false(info->secure_download_mode);
    /* The magic register was not needed: the one READ_REG is the ROM's console byte
     * (uart_no), read because the fake transport has no USB ids. */
    assert_int_equal(count_op(f, ESP_OP_READ_REG), 1);
    for (size_t i = 0; i < f->nrec; i++)
        if (f->recs[i].op == ESP_OP_READ_REG)
            assert_int_equal(esp_get_u32(f->recs[i].body), info->chip->uart_no_reg);
    assert_false(info->usb_jtag); /* the fake's register reads 0: UART0 */
    esp_loader_free(l);
    fake_free(f);
}

static void test_unknown_magic(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x12345678);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), -ENOTSUP);
    assert_int_equal(err.stage, ESP_STAGE_DETECT);
    assert_non_null(strstr(err.message, "0x12345678"));
    esp_loader_free(l);
    fake_free(f);
}

static void test_stub_already_running(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub = true; /* SYNC values 0 */
    struct esp_loader *l = loader_for(f, stub_dir);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_running);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_int_equal(count_op(f, ESP_OP_MEM_BEGIN), 0);
    /* Stub attach: 4-byte SPI_ATTACH. */
    const struct rec *r = find_op(f, ESP_OP_SPI_ATTACH, 0);
    assert_non_null(r);
    assert_int_equal(r->len, 4);
    esp_loader_free(l);
    fake_free(f);
}

static void test_diag_no_serial_data(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->sync_silent = true;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), -ETIMEDOUT);
    assert_int_equal(err.stage, ESP_STAGE_SYNC);
    assert_string_equal(err.message, "no serial data received");
    assert_non_null(strstr(err.advice, "auto-reset"));
    assert_int_equal(esp_loader_stats(l)->sync_tries, 2);
    esp_loader_free(l);
    fake_free(f);
}

static void test_diag_wrong_boot_mode(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->sync_silent = true;
    f->boot_log = "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 "
                  "(SPI_FAST_FLASH_BOOT)\r\nconfigsip: 0, SPIWP:0xee\r\n";
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.message, "wrong boot mode detected (0x13)"));
    assert_non_null(strstr(err.advice, "GPIO0"));
    esp_loader_free(l);
    fake_free(f);
}

static void test_diag_banner_no_answer(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->sync_silent = true;
    f->boot_log = "rst:0x1 (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))"
                  "\r\nwaiting for download\r\n";
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.message, "download banner but does not answer"));
    assert_non_null(strstr(err.advice, "TX->RX"));
    esp_loader_free(l);
    fake_free(f);
}

static void test_no_modem_lines(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->has_lines = false;
    f->t.caps = TRANSPORT_CAP_BAUD;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_non_null(strstr(f->log, "no modem lines"));
    /* Hard reset is impossible: a warning, not an error. */
    assert_int_equal(esp_loader_reset(l, ESP_AFTER_HARD_RESET, &err), 0);
    assert_non_null(strstr(f->log, "power-cycle"));
    esp_loader_free(l);
    fake_free(f);
}

static void test_hard_reset_lines(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    f->line_log[0] = '\0';
    assert_int_equal(esp_loader_reset(l, ESP_AFTER_HARD_RESET, &err), 0);
    /* RTS pulse, DTR rewritten (deasserted) after every RTS change. */
    assert_string_equal(f->line_log, "-1 0- -0 0- ");
    esp_loader_free(l);
    fake_free(f);
}

static void test_identify_esp32(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    set_reg(f, 0x3FF5A004, 0x287AD884);
    set_reg(f, 0x3FF5A008, 0x003E246F);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_identify(l, &err), 0);
    const struct esp_chip_info *info = esp_loader_info(l);
    assert_true(info->mac_valid);
    static const uint8_t mac[6] = {0x24, 0x6f, 0x28, 0x7a, 0xd8, 0x84};
    assert_memory_equal(info->mac, mac, 6);
    esp_loader_free(l);
    fake_free(f);
}

static void test_usb_jtag_connect(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x1B31506F);
    f->secinfo = true;
    f->secinfo_chip = 5; /* ESP32-C3 */
    f->t.usb_vid = 0x303A;
    f->t.usb_pid = 0x1001;
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_true(esp_loader_info(l)->usb_jtag);
    /* USBJTAGSerialReset only, with DTR rewritten after every RTS write. */
    assert_string_equal(f->line_log, "-0 0- 0- 1- -0 1- -1 1- 0- -1 0- 0- -0 0- ");
    /* RTC watchdog: unlock with the key, CONFIG0 <- 0, lock again. */
    const struct esp_chip_desc *c3 = esp_chip_get(ESP_CHIP_ESP32C3);
    const struct rec *r = find_op(f, ESP_OP_WRITE_REG, 0);
    assert_non_null(r);
    assert_int_equal(esp_get_u32(r->body), c3->rtc_wdt_wprotect);
    assert_int_equal(esp_get_u32(r->body + 4), 0x50D83AA1u);
    r = find_op(f, ESP_OP_WRITE_REG, 1);
    assert_int_equal(esp_get_u32(r->body), c3->rtc_wdt_config0);
    assert_int_equal(esp_get_u32(r->body + 4), 0);
    bool swd_feed = false;
    for (size_t i = 0; i < f->nrec; i++)
        if (f->recs[i].op == ESP_OP_WRITE_REG && esp_get_u32(f->recs[i].body) == c3->swd_conf)
            swd_feed = (esp_get_u32(f->recs[i].body + 4) >> c3->swd_auto_feed_bit) & 1;
    assert_true(swd_feed);
    esp_loader_free(l);
    fake_free(f);
}

static void test_no_reset_no_sync_stub(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub = true; /* replies carry 2 status bytes */
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.before = ESP_BEFORE_NO_RESET_NO_SYNC;
    struct esp_loader *l = esp_loader_new(&f->t, &cfg);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(count_op(f, ESP_OP_SYNC), 0);
    assert_string_equal(f->line_log, "");
    assert_int_equal(esp_loader_info(l)->chip->chip, ESP_CHIP_ESP32);
    assert_true(esp_loader_info(l)->stub_running);
    esp_loader_free(l);
    fake_free(f);
}

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(esp_before_from_string("no-reset"), ESP_BEFORE_NO_RESET);
    assert_int_equal(esp_before_from_string("default_reset"), ESP_BEFORE_DEFAULT_RESET);
    assert_int_equal(esp_before_from_string("bogus"), -EINVAL);
    assert_int_equal(esp_after_from_string("hard-reset"), ESP_AFTER_HARD_RESET);
    assert_int_equal(esp_after_from_string("no-reset-stub"), ESP_AFTER_NO_RESET_STUB);
    for (int i = 0; i <= ESP_BEFORE_MANUAL; i++)
        assert_int_equal(esp_before_from_string(esp_before_to_string((enum esp_before)i)), i);
    for (int i = 0; i <= ESP_AFTER_NO_RESET_STUB; i++)
        assert_int_equal(esp_after_from_string(esp_after_to_string((enum esp_after)i)), i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_connect_esp32_rom),
        cmocka_unit_test(test_connect_with_junk),
        cmocka_unit_test(test_foreign_unsupported_by_port),
        cmocka_unit_test(test_detect_esp8266_magic),
        cmocka_unit_test(test_detect_c3_security_info),
        cmocka_unit_test(test_unknown_magic),
        cmocka_unit_test(test_stub_already_running),
        cmocka_unit_test(test_diag_no_serial_data),
        cmocka_unit_test(test_diag_wrong_boot_mode),
        cmocka_unit_test(test_diag_banner_no_answer),
        cmocka_unit_test(test_no_modem_lines),
        cmocka_unit_test(test_hard_reset_lines),
        cmocka_unit_test(test_identify_esp32),
        cmocka_unit_test(test_usb_jtag_connect),
        cmocka_unit_test(test_no_reset_no_sync_stub),
    };
    return cmocka_run_group_tests(tests, make_stub_dir, remove_stub_dir);
}
