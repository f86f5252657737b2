/*
 * test_esp_loader_write: writing through the ROM and the stub against the fake board
 * (loader_fixture.h): the ESP8266 ROM write, its erase bug (ascending order, split at
 * a block, erase --region), the stub's compressed write, the FLASH_BEGIN words per ROM.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loader_fixture.h"

/* ---- writing ------------------------------------------------------------------------ */

static void test_rom_write_esp8266(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_non_null(strstr(f->log, "flashing through the ROM loader"));
    /* ESP8266 ROM attach: FLASH_BEGIN(0,0,0x400,0); no SPI_SET_PARAMS. */
    const struct rec *r = find_op(f, ESP_OP_FLASH_BEGIN, 0);
    assert_non_null(r);
    assert_int_equal(r->len, 16);
    assert_int_equal(esp_get_u32(r->body + 8), 0x400);
    assert_int_equal(count_op(f, ESP_OP_SPI_SET_PARAMS), 0);
    assert_int_equal(esp_loader_info(l)->flash_size, FLASH_SIZE);

    size_t len = 0x16000 - 10; /* pads to 4, last block padded to 0x400 */
    uint8_t *d = malloc(len);
    fill_pattern(d, len, 1);
    struct esp_region reg = {.offset = 0x3000, .data = d, .len = len, .name = "app"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts); /* compress requested: impossible on the ESP8266 ROM */
    size_t before = f->nrec;
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);

    r = find_op(f, ESP_OP_FLASH_BEGIN, 1);
    assert_non_null(r);
    assert_int_equal(r->len, 16); /* 4 words on the ESP8266 ROM */
    uint32_t size4 = (uint32_t)((len + 3) & ~(size_t)3);
    assert_int_equal(esp_get_u32(r->body), esp8266_rom_erase_size(0x3000, size4));
    assert_int_equal(esp_get_u32(r->body), 0xB000); /* the worked example of §5.3 */
    assert_int_equal(esp_get_u32(r->body + 4), 88);
    assert_int_equal(esp_get_u32(r->body + 8), 0x400);
    assert_int_equal(esp_get_u32(r->body + 12), 0x3000);

    size_t blocks = 0;
    for (size_t i = before; i < f->nrec; i++) {
        if (f->recs[i].op != ESP_OP_FLASH_DATA)
            continue;
        const struct rec *b = &f->recs[i];
        assert_int_equal(b->len, 16 + 0x400);
        assert_int_equal(esp_get_u32(b->body), 0x400);
        assert_int_equal(esp_get_u32(b->body + 4), blocks);
        assert_int_equal(b->checksum, esp_checksum(b->body + 16, 0x400));
        blocks++;
    }
    assert_int_equal(blocks, 88);
    const struct rec *last = find_op(f, ESP_OP_FLASH_DATA, 87);
    size_t tail = len - 87 * 0x400;
    for (size_t i = tail; i < 0x400; i++)
        assert_int_equal(last->body[16 + i], 0xFF);
    assert_int_equal(count_op(f, ESP_OP_FLASH_END), 0);
    assert_int_equal(count_op(f, ESP_OP_SPI_FLASH_MD5), 0);
    assert_non_null(strstr(f->log, "cannot verify on the ESP8266 ROM without the stub"));
    assert_memory_equal(f->flash + 0x3000, d, len);

    /* One sector at the end of a 64 KiB block cannot be erased alone: warned. */
    assert_null(strstr(f->log, "also erases"));
    struct esp_region last_sector = {.offset = 0xF000, .data = d, .len = 0x1000, .name = "x"};
    assert_int_equal(esp_loader_flash(l, &last_sector, 1, &opts, &err), 0);
    assert_non_null(strstr(f->log, "ESP8266 ROM also erases 0x10000..0x10FFF; use the stub"));

    /* The ESP8266 ROM can neither read flash nor erase the whole chip. */
    uint8_t buf[16];
    assert_int_equal(esp_loader_read_flash(l, 0, sizeof(buf), buf, &err), -ENOTSUP);
    assert_non_null(strstr(err.message, "needs the flasher stub"));
    assert_int_equal(esp_loader_erase_all(l, &err), -ENOTSUP);
    free(d);
    esp_loader_free(l);
    fake_free(f);
}

/* ---- ESP8266 ROM erase bug: order, split, warnings, erase --region ----------------- */

struct progress_log {
    unsigned first_write_index[8]; /* region_index of each region's first WRITE event */
    uint32_t first_write_addr[8];
    size_t n;
};

static void progress_cb(void *ctx, const struct esp_progress *p)
{
    struct progress_log *pl = ctx;
    if (p->stage != ESP_STAGE_WRITE || p->done != 0 || pl->n >= 8)
        return;
    pl->first_write_index[pl->n] = p->region_index;
    pl->first_write_addr[pl->n] = p->address;
    pl->n++;
}

/* An ESP8266 on its ROM, flash prefilled with a pattern so stray erases show. */
static struct esp_loader *rom8266_loader(struct fake *f, struct progress_log *pl,
                                         bool allow_overerase)
{
    struct esp_loader_config cfg;
    esp_loader_config_init(&cfg);
    cfg.connect_attempts = 1;
    cfg.sync_tries = 2;
    cfg.log = log_cb;
    cfg.log_ctx = f;
    cfg.progress = pl ? progress_cb : NULL;
    cfg.progress_ctx = pl;
    cfg.allow_rom_overerase = allow_overerase;
    struct esp_loader *l = esp_loader_new(&f->t, &cfg);
    assert_non_null(l);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    fill_pattern(f->flash, FLASH_SIZE, 99);
    return l;
}

/* FLASH_BEGIN offsets sent from record `from` on. */
static size_t begin_offsets(const struct fake *f, size_t from, uint32_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = from; i < f->nrec && n < cap; i++)
        if (f->recs[i].op == ESP_OP_FLASH_BEGIN)
            out[n++] = esp_get_u32(f->recs[i].body + 12);
    return n;
}

static void test_rom8266_ascending_order(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct progress_log pl = {0};
    struct esp_loader *l = rom8266_loader(f, &pl, false);
    uint8_t *copy = malloc(FLASH_SIZE);
    assert_non_null(copy);
    memcpy(copy, f->flash, FLASH_SIZE);

    /* NVS (2 sectors at 0x9000) given before the 3 KiB partition table at 0x8000:
     * the table's FLASH_BEGIN also erases 0x9000, so it must be written first. */
    uint8_t nvs[0x2000], pt[0xC00];
    fill_pattern(nvs, sizeof(nvs), 7);
    fill_pattern(pt, sizeof(pt), 8);
    struct esp_region regs[2] = {
        {.offset = 0x9000, .data = nvs, .len = sizeof(nvs), .name = "nvs"},
        {.offset = 0x8000, .data = pt, .len = sizeof(pt), .name = "pt"},
    };
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    struct esp_error err;
    size_t before = f->nrec;
    assert_int_equal(esp_loader_flash(l, regs, 2, &opts, &err), 0);

    uint32_t offs[8];
    assert_int_equal(begin_offsets(f, before, offs, 8), 2);
    assert_int_equal(offs[0], 0x8000);
    assert_int_equal(offs[1], 0x9000);
    /* Progress names the caller's regions: index 1 (pt) is written first. */
    assert_int_equal(pl.n, 2);
    assert_int_equal(pl.first_write_index[0], 1);
    assert_int_equal(pl.first_write_addr[0], 0x8000);
    assert_int_equal(pl.first_write_index[1], 0);
    assert_int_equal(pl.first_write_addr[1], 0x9000);

    assert_memory_equal(f->flash + 0x8000, pt, sizeof(pt));
    assert_memory_equal(f->flash + 0x9000, nvs, sizeof(nvs));
    for (uint32_t a = 0x8C00; a < 0x9000; a++)
        assert_int_equal(f->flash[a], 0xFF); /* rest of the table's sector */
    assert_memory_equal(f->flash, copy, 0x8000);
    assert_memory_equal(f->flash + 0xB000, copy + 0xB000, FLASH_SIZE - 0xB000);
    /* The extra sector belongs to nvs, rewritten afterwards: nothing to warn about. */
    assert_null(strstr(f->log, "also erases"));

    /* Alone, the table costs 0x9000..0x9FFF: warned, with the range. */
    assert_int_equal(esp_loader_flash(l, &regs[1], 1, &opts, &err), 0);
    assert_non_null(strstr(f->log, "ESP8266 ROM also erases 0x9000..0x9FFF; use the stub to "
                                   "avoid it"));
    free(copy);
    esp_loader_free(l);
    fake_free(f);
}

static void test_rom8266_split_at_block(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct esp_loader *l = rom8266_loader(f, NULL, false);
    uint8_t *copy = malloc(FLASH_SIZE);
    assert_non_null(copy);
    memcpy(copy, f->flash, FLASH_SIZE);

    /* 15 sectors from 0x33000 (13 left in the block): one FLASH_BEGIN would erase
     * 16; 13 + 2 at the 0x40000 boundary is exact. */
    size_t len = 15 * 4096 - 100;
    assert_true(esp8266_rom_erased_sectors(0x33000, esp8266_rom_erase_size(0x33000, 15 * 4096)) >
                15);
    uint8_t *d = malloc(len);
    assert_non_null(d);
    fill_pattern(d, len, 3);
    struct esp_region reg = {.offset = 0x33000, .data = d, .len = len, .name = "app"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    struct esp_error err;
    size_t before = f->nrec;
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);
    uint32_t offs[8];
    assert_int_equal(begin_offsets(f, before, offs, 8), 2);
    assert_int_equal(offs[0], 0x33000);
    assert_int_equal(offs[1], 0x40000);
    const struct rec *b2 = find_op(f, ESP_OP_FLASH_BEGIN, 2);
    assert_int_equal(esp_get_u32(b2->body + 4), 8); /* blocks of the second part */
    assert_memory_equal(f->flash + 0x33000, d, len);
    assert_memory_equal(f->flash + 0x42000, copy + 0x42000, FLASH_SIZE - 0x42000);
    assert_memory_equal(f->flash, copy, 0x33000);
    assert_null(strstr(f->log, "also erases"));
    free(d);
    free(copy);
    esp_loader_free(l);
    fake_free(f);
}

static void test_rom8266_erase_region(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_8266, 0xFFF0C101);
    struct esp_loader *l = rom8266_loader(f, NULL, false);
    uint8_t *copy = malloc(FLASH_SIZE);
    assert_non_null(copy);
    memcpy(copy, f->flash, FLASH_SIZE);
    struct esp_error err;

    /* A lone sector cannot be erased exactly: refused before anything is sent. */
    size_t before = f->nrec;
    assert_int_equal(esp_loader_erase_region(l, 0x20000, 0x1000, &err), -EINVAL);
    assert_int_equal(err.stage, ESP_STAGE_PREPARE);
    assert_string_equal(err.message,
                        "the ESP8266 ROM cannot erase exactly 0x20000..0x20FFF (its erase bug "
                        "would also erase 0x21000..0x21FFF); use the flasher stub (omit "
                        "--no-stub) or erase an even number of sectors");
    assert_int_equal(f->nrec, before);
    assert_memory_equal(f->flash, copy, FLASH_SIZE);

    /* Even counts are exact. */
    assert_int_equal(esp_loader_erase_region(l, 0x30000, 0x2000, &err), 0);
    memset(copy + 0x30000, 0xFF, 0x2000);
    assert_memory_equal(f->flash, copy, FLASH_SIZE);

    /* Odd, across a 64 KiB boundary: split there, exact. */
    before = f->nrec;
    assert_int_equal(esp_loader_erase_region(l, 0x33000, 0xF000, &err), 0);
    uint32_t offs[8];
    assert_int_equal(begin_offsets(f, before, offs, 8), 2);
    assert_int_equal(offs[0], 0x33000);
    assert_int_equal(offs[1], 0x40000);
    memset(copy + 0x33000, 0xFF, 0xF000);
    assert_memory_equal(f->flash, copy, FLASH_SIZE);

    /* Odd within one block: impossible, refused. */
    assert_int_equal(esp_loader_erase_region(l, 0x50000, 0x3000, &err), -EINVAL);
    assert_non_null(strstr(err.message, "would also erase 0x53000..0x53FFF"));
    assert_memory_equal(f->flash, copy, FLASH_SIZE);
    esp_loader_free(l);

    /* A caller that accepts the extra sector gets it, with a warning. */
    l = rom8266_loader(f, NULL, true);
    memcpy(copy, f->flash, FLASH_SIZE);
    assert_int_equal(esp_loader_erase_region(l, 0x20000, 0x1000, &err), 0);
    assert_non_null(strstr(f->log, "ESP8266 ROM also erases 0x21000..0x21FFF"));
    memset(copy + 0x20000, 0xFF, 0x2000);
    assert_memory_equal(f->flash, copy, FLASH_SIZE);
    free(copy);
    esp_loader_free(l);
    fake_free(f);
}

static void test_stub_defl_write(void **state)
{
    (void)state;
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, stub_dir);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_true(esp_loader_info(l)->stub_running);
    /* Stub upload: text in 0x1800 blocks, then data, then MEM_END(0, entry). */
    assert_int_equal(count_op(f, ESP_OP_MEM_BEGIN), 2);
    assert_int_equal(count_op(f, ESP_OP_MEM_DATA), 3);
    const struct rec *r = find_op(f, ESP_OP_MEM_BEGIN, 0);
    assert_int_equal(esp_get_u32(r->body), 0x2400);
    assert_int_equal(esp_get_u32(r->body + 4), 2);
    assert_int_equal(esp_get_u32(r->body + 8), 0x1800);
    r = find_op(f, ESP_OP_MEM_END, 0);
    assert_int_equal(esp_get_u32(r->body), 0);
    assert_int_equal(esp_get_u32(r->body + 4), 1074266116u);

    size_t len = 100000; /* incompressible: several 16 KiB chunks */
    uint8_t *d = malloc(len);
    fill_pattern(d, len, 7);
    struct esp_region reg = {.offset = 0x10000, .data = d, .len = len, .name = "app"};
    struct esp_flash_opts opts;
    esp_flash_opts_init(&opts);
    assert_int_equal(esp_loader_flash(l, &reg, 1, &opts, &err), 0);

    r = find_op(f, ESP_OP_FLASH_DEFL_BEGIN, 0);
    assert_non_null(r);
    assert_int_equal(r->len, 16); /* 4 words to any stub */
    assert_int_equal(esp_get_u32(r->body), len);
    assert_int_equal(esp_get_u32(r->body + 8), 0x4000);
    assert_int_equal(esp_get_u32(r->body + 12), 0x10000);
    size_t chunks = count_op(f, ESP_OP_FLASH_DEFL_DATA);
    assert_true(chunks >= 6);
    assert_int_equal(esp_get_u32(r->body + 4), chunks);
    size_t last_data = 0, end_at = 0, md5_at = 0;
    for (size_t i = 0; i < f->nrec; i++) {
        if (f->recs[i].op == ESP_OP_FLASH_DEFL_DATA) {
            assert_true(f->recs[i].len - 16 <= 0x4000);
            last_data = i;
        } else if (f->recs[i].op == ESP_OP_FLASH_DEFL_END) {
            end_at = i;
            assert_int_equal(esp_get_u32(f->recs[i].body), 1); /* barrier, stay in stub */
        } else if (f->recs[i].op == ESP_OP_SPI_FLASH_MD5) {
            md5_at = i;
        }
    }
    assert_true(end_at > last_data);
    assert_true(md5_at > end_at);
    assert_int_equal(esp_get_u32(f->recs[md5_at].body + 4), len);
    assert_memory_equal(f->flash + 0x10000, d, len);

    /* A different verify through the API, and a mismatch. */
    assert_int_equal(esp_loader_verify(l, &reg, 1, &err), 0);
    f->md5_wrong = true;
    assert_int_equal(esp_loader_verify(l, &reg, 1, &err), -EBADMSG);
    assert_int_equal(err.stage, ESP_STAGE_VERIFY);
    free(d);
    esp_loader_free(l);
    fake_free(f);
}

/* The encrypt word goes to the S2+ ROMs only: 4 words to the ESP32 ROM and to every
 * stub, so a legacy (esptool 4.x) stub that refuses 5 words with 01 00 flashes. */
static void test_begin_words(void **state)
{
    (void)state;
    /* ESP32 ROM: 4 words (its ROM refuses 5). */
    struct fake *f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
    struct esp_loader *l = loader_for(f, NULL);
    struct esp_error err;
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_int_equal(write_small(f, l, true)->len, 16);
    esp_loader_free(l);
    fake_free(f);

    /* ESP32-C3 ROM (no C3 stub in the dir): 5 words, encrypt 0. */
    f = fake_new(FAKE_ROM_ESP32, 0xDEADBEEF);
    f->secinfo = true;
    f->secinfo_chip = 5;
    l = loader_for(f, stub_dir);
    assert_int_equal(esp_loader_connect(l, &err), 0);
    assert_int_equal(esp_loader_start(l, &err), 0);
    assert_false(esp_loader_info(l)->stub_running);
    const struct rec *r = write_small(f, l, true);
    assert_int_equal(r->len, 20);
    assert_int_equal(esp_get_u32(r->body + 16), 0);
    esp_loader_free(l);
    fake_free(f);

    /* Legacy stub on an ESP32: 4 words, compressed and raw, and the soft reset's
     * FLASH_BEGIN(0, 0) too. */
    for (int compress = 1; compress >= 0; compress--) {
        f = fake_new(FAKE_ROM_ESP32, 0x00F01D83);
        f->legacy_stub = true;
        l = loader_for(f, stub_dir);
        assert_int_equal(esp_loader_connect(l, &err), 0);
        assert_int_equal(esp_loader_start(l, &err), 0);
        assert_true(esp_loader_info(l)->stub_running);
        assert_int_equal(write_small(f, l, compress)->len, 16);
        size_t before = count_op(f, ESP_OP_FLASH_BEGIN);
        assert_int_equal(esp_loader_reset(l, ESP_AFTER_SOFT_RESET, &err), 0);
        if (count_op(f, ESP_OP_FLASH_BEGIN) > before)
            assert_int_equal(find_op(f, ESP_OP_FLASH_BEGIN, before)->len, 16);
        esp_loader_free(l);
        fake_free(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rom_write_esp8266),
        cmocka_unit_test(test_rom8266_ascending_order),
        cmocka_unit_test(test_rom8266_split_at_block),
        cmocka_unit_test(test_rom8266_erase_region),
        cmocka_unit_test(test_stub_defl_write),
        cmocka_unit_test(test_begin_words),
    };
    return cmocka_run_group_tests(tests, make_stub_dir, remove_stub_dir);
}
