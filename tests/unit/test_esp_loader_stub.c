/*
 * test_esp_loader_stub: starting the flasher stub against the fake board
 * (loader_fixture.h): a stub that never says OHAI, the baud change before the stub
 * upload (also on a link garbled at speed), chip erase only with the stub.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loader_fixture.h"

/* A stub that never says OHAI: with modem lines the chip is reset into the ROM
 * loader and the write goes on there (flagged for the job record); without them
 * the start fails at stage stub with advice to flash without the stub. */
static void test_stub_no_ohai(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub_no_ohai = true;
    struct esp_loader *l = loader_for(f, stub_dir);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    size_t syncs = count_op(f, ESP_OP_SYNC);
    assert_int_equal(esp_loader_start(l, &err), 0);
    const struct esp_chip_info *ci = esp_loader_info(l);
    assert_false(ci->stub_running);
    assert_true(ci->stub_fallback);
    assert_true(count_op(f, ESP_OP_SYNC) > syncs); /* reset and SYNC again */
    assert_non_null(strstr(f->log, "did not start"));
    assert_int_equal(write_small(f, l, true)->len, 16); /* the ESP32 ROM */
    esp_loader_free(l);
    fake_free(f);

    f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub_no_ohai = true;
    f->has_lines = false;
    f->t.caps = TRANSPORT_CAP_BAUD;
    l = loader_for(f, stub_dir);
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), -ETIMEDOUT);
    assert_int_equal(err.stage, ESP_STAGE_STUB);
    assert_false(esp_loader_info(l)->stub_fallback);
    assert_non_null(strstr(err.advice, "no reset can bring back the ROM loader"));
    assert_non_null(strstr(err.advice, "DTR/RTS"));
    assert_non_null(strstr(err.advice, "flash without the stub"));
    esp_loader_free(l);
    fake_free(f);
}

static struct esp_loader *loader_at(struct fake *f, const char *dir, uint32_t baud)
{
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.connect_attempts = 1;
    cfg.sync_tries = 2;
    cfg.stub_dir = dir;
    cfg.baud = baud;
    cfg.log = log_cb;
    cfg.log_ctx = f;
    struct esp_loader *l = esp_loader_new(&f->t, &cfg);
    assert_non_null(l);
    return l;
}

static size_t index_of(const struct fake *f, uint8_t op, size_t nth)
{
    const struct rec *r = find_op(f, op, nth);
    assert_non_null(r);
    return (size_t)(r - f->recs);
}

/* Issue 11: the ESP32 ROM takes CHANGE_BAUDRATE (old baud 0 for a ROM), so the rate goes
 * up before MEM_BEGIN and the whole stub travels at it; the stub is not asked again. The
 * ESP8266 ROM has no CHANGE_BAUDRATE: the stub goes up at 115200 and the running stub
 * changes the rate (old baud = the rate in force, which the legacy stub divides by). */
static void test_baud_before_stub(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_at(f, stub_dir, 921600);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_running);
    assert_int_equal(esp_loader_info(l)->baud, 921600);
    assert_int_equal(count_op(f, ESP_OP_CHANGE_BAUDRATE), 1);
    const struct rec *cb = find_op(f, ESP_OP_CHANGE_BAUDRATE, 0);
    assert_false(cb->to_stub);
    assert_int_equal(cb->baud, 115200);
    assert_int_equal(esp_get_u32(cb->body), 921600);
    assert_int_equal(esp_get_u32(cb->body + 4), 0);
    assert_true(index_of(f, ESP_OP_CHANGE_BAUDRATE, 0) < index_of(f, ESP_OP_MEM_BEGIN, 0));
    size_t mem = 0;
    for (size_t i = 0; i < f->nrec; i++) {
        uint8_t op = f->recs[i].op;
        if (op == ESP_OP_MEM_BEGIN || op == ESP_OP_MEM_DATA || op == ESP_OP_MEM_END) {
            assert_int_equal(f->recs[i].baud, 921600);
            mem++;
        }
    }
    assert_int_equal(mem, 2 + 3 + 1);
    assert_int_equal(write_small(f, l, true)->baud, 921600);
    esp_loader_free(l);
    fake_free(f);

    /* ESP8266: a stub dir of its own with a tiny stub. */
    char dir[64];
    snprintf(dir, sizeof(dir), "/tmp/test_esp_loader8266.XXXXXX");
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/esp8266.json", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("{\"entry\": 1074843652, \"text\": \"AAAAAAAA\", \"text_start\": 1074843648, "
          "\"data\": \"AQID\", \"data_start\": 1073643520}",
          fp);
    fclose(fp);
    f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    l = loader_at(f, dir, 921600);
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    unlink(path);
    rmdir(dir);
    assert_true(esp_loader_info(l)->stub_running);
    assert_int_equal(esp_loader_info(l)->baud, 921600);
    assert_int_equal(count_op(f, ESP_OP_CHANGE_BAUDRATE), 1);
    cb = find_op(f, ESP_OP_CHANGE_BAUDRATE, 0);
    assert_true(cb->to_stub);
    assert_int_equal(esp_get_u32(cb->body), 921600);
    assert_int_equal(esp_get_u32(cb->body + 4), 115200);
    assert_true(index_of(f, ESP_OP_CHANGE_BAUDRATE, 0) > index_of(f, ESP_OP_MEM_END, 0));
    assert_int_equal(find_op(f, ESP_OP_MEM_DATA, 0)->baud, 115200);
    esp_loader_free(l);
    fake_free(f);
}

/* A link that garbles frames above 115200: the stub upload at 921600 draws checksum
 * errors. That is the link at the new rate: the start fails at stage baud (the
 * daemon's back-off steps the slot down on it), not by falling back to the ROM
 * (its writes would be as garbled). A stub that goes up fine but does not start is
 * still the stub's fault: reset, ROM loader, the rate raised again. */
static void test_baud_before_stub_garbled(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->noisy_above = 115200;
    struct esp_loader *l = loader_at(f, stub_dir, 921600);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    size_t syncs = count_op(f, ESP_OP_SYNC);
    assert_int_equal(esp_loader_start(l, &err), -EPROTO);
    assert_int_equal(err.stage, ESP_STAGE_BAUD);
    assert_true(err.has_device_status);
    assert_int_equal(err.error, 0x07);
    assert_non_null(strstr(err.message, "uploading the stub at 921600 baud failed"));
    assert_non_null(strstr(err.advice, "lower baud rate"));
    assert_int_equal(count_op(f, ESP_OP_SYNC), syncs); /* no reset, no ROM fall back */
    assert_int_equal(count_op(f, ESP_OP_MEM_END), 0);
    assert_false(esp_loader_info(l)->stub_fallback);
    assert_int_equal(esp_loader_info(l)->baud, 921600); /* what the caller steps down from */
    esp_loader_free(l);
    fake_free(f);

    f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    f->stub_no_ohai = true;
    l = loader_at(f, stub_dir, 921600);
    assert_int_equal(esp_loader_connect(l, &err), 0);
    syncs = count_op(f, ESP_OP_SYNC);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_fallback);
    assert_true(count_op(f, ESP_OP_SYNC) > syncs);
    assert_int_equal(count_op(f, ESP_OP_CHANGE_BAUDRATE), 2); /* before the stub, after the reset */
    assert_int_equal(esp_loader_info(l)->baud, 921600);
    assert_int_equal(write_small(f, l, true)->baud, 921600);
    esp_loader_free(l);
    fake_free(f);
}

/* The ROM loader has no chip erase: refused as unsupported, with the ROM's way out. */
static void test_erase_all_needs_stub(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_int_equal(esp_loader_erase_all(l, &err), -ENOTSUP);
    assert_int_equal(err.stage, ESP_STAGE_ERASE);
    assert_false(err.has_device_status);
    assert_non_null(strstr(err.advice, "0x0+0x400000"));
    assert_int_equal(count_op(f, ESP_OP_ERASE_FLASH), 0);
    esp_loader_free(l);
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stub_no_ohai),
        cmocka_unit_test(test_baud_before_stub),
        cmocka_unit_test(test_baud_before_stub_garbled),
        cmocka_unit_test(test_erase_all_needs_stub),
    };
    return cmocka_run_group_tests(tests, make_stub_dir, remove_stub_dir);
}
