/*
 * test_esp_chip: the chip table (lookups, capabilities, registers), MAC and
 * revision decoding with the examples of PROTOCOL-ROM.md §4, crystal
 * normalisation, JEDEC sizes, size/frequency codes, user-string parsers and
 * the ESP8266 ROM erase-size workaround checked against the ROM bug model.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "esp_chip.h"

#define KB 1024u
#define MB (1024u * 1024u)

static void test_table_consistent(void **state)
{
    (void)state;
    for (int i = 0; i < ESP_CHIP_COUNT; i++) {
        const struct esp_chip_desc *c = esp_chip_get((enum esp_chip)i);
        assert_non_null(c);
        assert_int_equal(c->chip, i);
        assert_non_null(c->name);
        assert_non_null(c->stub_name);
        assert_string_equal(esp_chip_to_string((enum esp_chip)i), c->name);
        assert_ptr_equal(esp_chip_by_name(c->name), c);
        assert_ptr_equal(esp_chip_by_name(c->stub_name), c);
        assert_true(c->n_mac_regs >= 2 && c->n_mac_regs <= ESP_MAX_IDREGS);
        assert_true(c->n_size_codes > 0 && c->size_codes);
        assert_non_null(c->freq_mhz);
        assert_int_equal(c->freq_mhz[0] != 0, 1);
        assert_true(c->spi.base && c->spi.usr && c->spi.usr2 && c->spi.w0);
        assert_true(c->uart_date_reg != 0);
        assert_true(c->stub_supported);
        for (int k = 0; k < ESP_MAX_MAGIC; k++)
            if (c->magic[k])
                assert_ptr_equal(esp_chip_by_magic(c->magic[k]), c);
        if (c->image_chip_id >= 0)
            assert_ptr_equal(esp_chip_by_image_id(c->image_chip_id), c);
        /* ROM capabilities: ESP8266 none, ESP32 no security info / 5th word, rest all. */
        bool is8266 = i == ESP_CHIP_ESP8266, is32 = i == ESP_CHIP_ESP32;
        assert_int_equal(c->rom_status_bytes, is8266 ? 2 : 4);
        assert_int_equal(c->rom_has_compress, !is8266);
        assert_int_equal(c->rom_has_md5, !is8266);
        assert_int_equal(c->rom_has_spi_attach, !is8266);
        assert_int_equal(c->rom_has_change_baud, !is8266);
        assert_int_equal(c->rom_has_read_flash_slow, !is8266);
        assert_int_equal(c->rom_has_security_info, !is8266 && !is32);
        assert_int_equal(c->rom_begin_has_encrypt, !is8266 && !is32);
        size_t sec = (is8266 || is32) ? 0 : (i == ESP_CHIP_ESP32S2 ? 12 : 20);
        assert_int_equal(c->security_info_len, sec);
        assert_int_equal(c->stub_32bit_addr,
                         i == ESP_CHIP_ESP32S3 || i == ESP_CHIP_ESP32P4 || i == ESP_CHIP_ESP32C5);
        assert_int_equal(c->xtal_div, is8266 ? 2 : 1);
    }
    assert_null(esp_chip_get(ESP_CHIP_COUNT));
    assert_null(esp_chip_get((enum esp_chip) - 1));
}

static void test_lookups(void **state)
{
    (void)state;
    static const struct {
        uint32_t magic;
        enum esp_chip chip;
    } magics[] = {
        {0xFFF0C101, ESP_CHIP_ESP8266}, {0x00F01D83, ESP_CHIP_ESP32},
        {0x000007C6, ESP_CHIP_ESP32S2}, {0x6921506F, ESP_CHIP_ESP32C3},
        {0x1B31506F, ESP_CHIP_ESP32C3}, {0x4881606F, ESP_CHIP_ESP32C3},
        {0x4361606F, ESP_CHIP_ESP32C3}, {0x00000009, ESP_CHIP_ESP32S3},
        {0x6F51306F, ESP_CHIP_ESP32C2}, {0x7C41A06F, ESP_CHIP_ESP32C2},
        {0x0C21E06F, ESP_CHIP_ESP32C2}, {0x2CE0806F, ESP_CHIP_ESP32C6},
        {0xD7B73E80, ESP_CHIP_ESP32H2}, {0x1101406F, ESP_CHIP_ESP32C5},
        {0x5FD1406F, ESP_CHIP_ESP32C5},
    };
    for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
        const struct esp_chip_desc *c = esp_chip_by_magic(magics[i].magic);
        assert_non_null(c);
        assert_int_equal(c->chip, magics[i].chip);
    }
    assert_null(esp_chip_by_magic(0));
    assert_null(esp_chip_by_magic(0xEB004136)); /* S3 beta 2 */
    assert_null(esp_chip_by_magic(0x0DA1806F)); /* C6 beta */

    static const struct {
        int id;
        enum esp_chip chip;
    } ids[] = {{0, ESP_CHIP_ESP32},    {2, ESP_CHIP_ESP32S2},  {5, ESP_CHIP_ESP32C3},
               {9, ESP_CHIP_ESP32S3},  {12, ESP_CHIP_ESP32C2}, {13, ESP_CHIP_ESP32C6},
               {16, ESP_CHIP_ESP32H2}, {18, ESP_CHIP_ESP32P4}, {23, ESP_CHIP_ESP32C5}};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        const struct esp_chip_desc *c = esp_chip_by_image_id(ids[i].id);
        assert_non_null(c);
        assert_int_equal(c->chip, ids[i].chip);
    }
    assert_null(esp_chip_by_image_id(-1));
    assert_null(esp_chip_by_image_id(4));
    assert_null(esp_chip_by_image_id(20));

    static const struct {
        const char *name;
        int chip; /* -1: not found */
    } names[] = {
        {"esp32s3", ESP_CHIP_ESP32S3},
        {"esp32-s3", ESP_CHIP_ESP32S3},
        {"ESP32-S3", ESP_CHIP_ESP32S3},
        {"Esp32_S3", ESP_CHIP_ESP32S3},
        {"esp8266", ESP_CHIP_ESP8266},
        {"ESP32", ESP_CHIP_ESP32},
        {"esp32c2", ESP_CHIP_ESP32C2},
        {"ESP32-P4", ESP_CHIP_ESP32P4},
        {"esp32s4", -1},
        {"", -1},
        {"esp32-s3-extra-long-name-that-does-not-fit", -1},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const struct esp_chip_desc *c = esp_chip_by_name(names[i].name);
        if (names[i].chip < 0) {
            assert_null(c);
        } else {
            assert_non_null(c);
            assert_int_equal(c->chip, names[i].chip);
        }
    }
    assert_null(esp_chip_by_name(NULL));
}

static void test_registers(void **state)
{
    (void)state;
    const struct esp_chip_desc *c = esp_chip_get(ESP_CHIP_ESP8266);
    assert_int_equal(c->mac_regs[0], 0x3FF00050);
    assert_int_equal(c->mac_regs[1], 0x3FF00054);
    assert_int_equal(c->mac_regs[2], 0x3FF0005C);
    assert_int_equal(c->n_mac_regs, 3);
    assert_int_equal(c->spi.w0, 0x60000240);
    assert_int_equal(c->spi.usr1, 0x60000220);
    assert_int_equal(c->spi.miso_dlen, 0);
    assert_int_equal(c->uart_clkdiv_reg, 0x60000014);

    c = esp_chip_get(ESP_CHIP_ESP32);
    assert_int_equal(c->mac_regs[0], 0x3FF5A004);
    assert_int_equal(c->mac_regs[1], 0x3FF5A008);
    assert_int_equal(c->rev_regs[0], 0x3FF5A00C);
    assert_int_equal(c->rev_regs[1], 0x3FF5A014);
    assert_int_equal(c->rev_regs[2], 0x3FF6607C);
    assert_int_equal(c->n_rev_regs, 3);
    assert_int_equal(c->spi.miso_dlen, 0x3FF4202C);
    assert_int_equal(c->spi.w0, 0x3FF42080);
    assert_int_equal(c->bootloader_offset, 0x1000);
    assert_int_equal(c->uart_clkdiv_reg, 0x3FF40014);

    c = esp_chip_get(ESP_CHIP_ESP32S3);
    assert_int_equal(c->mac_regs[0], 0x60007044);
    assert_int_equal(c->mac_regs[1], 0x60007048);
    assert_int_equal(c->rev_regs[0], 0x60007044 + 0x14);
    assert_int_equal(c->rev_regs[1], 0x60007044 + 0x0C);
    assert_int_equal(c->spi.usr, 0x60002018);
    assert_int_equal(c->spi.w0, 0x60002058);
    assert_int_equal(c->force_download_reg, 0x6000812C);
    assert_int_equal(c->uart_date_reg, 0x60000080);
    assert_int_equal(c->rtc_wdt_wprotect, 0x600080B0);
    assert_int_equal(c->swd_conf, 0x600080B4);
    assert_int_equal(c->swd_wkey, 0x8F1D312A);

    c = esp_chip_get(ESP_CHIP_ESP32C3);
    assert_int_equal(c->rev_regs[0], 0x60008844 + 0x14);
    assert_int_equal(c->rev_regs[1], 0x60008844 + 0x0C);
    assert_int_equal(c->rtc_wdt_config0, 0x60008090);
    assert_int_equal(c->uart_date_reg, 0x6000007C);

    c = esp_chip_get(ESP_CHIP_ESP32C2);
    assert_int_equal(c->mac_regs[0], 0x60008840);
    c = esp_chip_get(ESP_CHIP_ESP32C6);
    assert_int_equal(c->spi.base, 0x60003000);
    assert_int_equal(c->swd_wkey, 0x50D83AA1);
    assert_int_equal(c->swd_auto_feed_bit, 18);
    c = esp_chip_get(ESP_CHIP_ESP32P4);
    assert_int_equal(c->bootloader_offset, 0x2000);
    assert_int_equal(c->spi.base, 0x5008D000);
    assert_int_equal(c->uart_date_reg, 0x500CA08C);
    assert_int_equal(c->magic[0], 0);
    c = esp_chip_get(ESP_CHIP_ESP32S2);
    assert_int_equal(c->mac_regs[0], 0x3F41A044);
    assert_int_equal(c->spi.w0, 0x3F402058);
    assert_int_equal(c->bootloader_offset, 0x1000);
    assert_int_equal(c->force_download_reg, 0);
    assert_int_equal(c->rtc_wdt_wprotect, 0);
}

static void mac_equal(const uint8_t *got, const uint8_t *want)
{
    if (memcmp(got, want, 6) != 0)
        fail_msg("mac %02x:%02x:%02x:%02x:%02x:%02x, want %02x:%02x:%02x:%02x:%02x:%02x", got[0],
                 got[1], got[2], got[3], got[4], got[5], want[0], want[1], want[2], want[3],
                 want[4], want[5]);
}

static void test_mac(void **state)
{
    (void)state;
    uint8_t mac[6];
    /* ESP32: vals in mac_regs order (w1, w2). */
    const uint32_t v32[] = {0x287AD884, 0x003E246F};
    assert_int_equal(esp_chip_decode_mac(esp_chip_get(ESP_CHIP_ESP32), v32, 2, mac), 0);
    mac_equal(mac, (const uint8_t[]){0x24, 0x6f, 0x28, 0x7a, 0xd8, 0x84});

    const uint32_t vs3[] = {0xE261B0D4, 0x00004827};
    assert_int_equal(esp_chip_decode_mac(esp_chip_get(ESP_CHIP_ESP32S3), vs3, 2, mac), 0);
    mac_equal(mac, (const uint8_t[]){0x48, 0x27, 0xe2, 0x61, 0xb0, 0xd4});

    /* C6: hi[31:16] filler ignored. */
    const uint32_t vc6[] = {0x11223344, 0xFFFE5566};
    assert_int_equal(esp_chip_decode_mac(esp_chip_get(ESP_CHIP_ESP32C6), vc6, 2, mac), 0);
    mac_equal(mac, (const uint8_t[]){0x55, 0x66, 0x11, 0x22, 0x33, 0x44});

    const struct esp_chip_desc *e = esp_chip_get(ESP_CHIP_ESP8266);
    /* m0, m1, m3 */
    const uint32_t m_oui[] = {0xAB000000, 0x0000CDEF, 0x005CCF7F};
    assert_int_equal(esp_chip_decode_mac(e, m_oui, 3, mac), 0);
    mac_equal(mac, (const uint8_t[]){0x5c, 0xcf, 0x7f, 0xcd, 0xef, 0xab});
    const uint32_t m_18fe[] = {0x12000000, 0x00003456, 0};
    assert_int_equal(esp_chip_decode_mac(e, m_18fe, 3, mac), 0);
    mac_equal(mac, (const uint8_t[]){0x18, 0xfe, 0x34, 0x34, 0x56, 0x12});
    const uint32_t m_acd0[] = {0x99000000, 0x00017788, 0};
    assert_int_equal(esp_chip_decode_mac(e, m_acd0, 3, mac), 0);
    mac_equal(mac, (const uint8_t[]){0xac, 0xd0, 0x74, 0x77, 0x88, 0x99});
    const uint32_t m_bad[] = {0x99000000, 0x00027788, 0};
    assert_int_equal(esp_chip_decode_mac(e, m_bad, 3, mac), -EINVAL);
    /* Too few values. */
    assert_int_equal(esp_chip_decode_mac(e, m_oui, 2, mac), -EINVAL);
    assert_int_equal(esp_chip_decode_mac(esp_chip_get(ESP_CHIP_ESP32), v32, 1, mac), -EINVAL);
    assert_int_equal(esp_chip_decode_mac(NULL, v32, 2, mac), -EINVAL);
}

static void test_revision(void **state)
{
    (void)state;
    const struct esp_chip_desc *c = esp_chip_get(ESP_CHIP_ESP32);
    static const struct {
        uint32_t w3, w5, date;
        int rev;
    } r32[] = {
        {0, 0, 0, 0},
        {1u << 15, 0, 0, 100},
        {1u << 15, 1u << 20, 0, 200},
        {1u << 15, 1u << 20, 1u << 31, 300},
        {1u << 15, (1u << 20) | (1u << 24), 1u << 31, 301},
        {1u << 15, (1u << 20) | (3u << 24), 1u << 31, 303},
        {0, 1u << 20, 0, 0}, /* combination 2: unknown -> 0 */
    };
    for (size_t i = 0; i < sizeof(r32) / sizeof(r32[0]); i++) {
        const uint32_t v[] = {r32[i].w3, r32[i].w5, r32[i].date};
        assert_int_equal(esp_chip_decode_revision(c, v, 3), r32[i].rev);
    }
    const uint32_t v2[] = {0, 0};
    assert_int_equal(esp_chip_decode_revision(c, v2, 2), -EINVAL);

    /* C3/S3: major = w14[25:24], minor = w14[23]<<3 | w0c[20:18]. */
    const struct esp_chip_desc *c3 = esp_chip_get(ESP_CHIP_ESP32C3);
    const uint32_t c3v4[] = {0, 4u << 18};
    assert_int_equal(esp_chip_decode_revision(c3, c3v4, 2), 4);
    const uint32_t c3v103[] = {1u << 24, 3u << 18};
    assert_int_equal(esp_chip_decode_revision(c3, c3v103, 2), 103);
    const uint32_t s3v[] = {(1u << 23) | (2u << 24), 1u << 18};
    assert_int_equal(esp_chip_decode_revision(esp_chip_get(ESP_CHIP_ESP32S3), s3v, 2), 209);

    assert_int_equal(esp_chip_decode_revision(esp_chip_get(ESP_CHIP_ESP8266), v2, 2), -ENOTSUP);
    assert_int_equal(esp_chip_decode_revision(esp_chip_get(ESP_CHIP_ESP32H2), v2, 2), -ENOTSUP);
}

static void test_xtal(void **state)
{
    (void)state;
    const struct esp_chip_desc *e32 = esp_chip_get(ESP_CHIP_ESP32);
    /* divider = xtal / baud */
    assert_int_equal(esp_chip_decode_xtal(e32, 40000000 / 115200, 115200), 40);
    assert_int_equal(esp_chip_decode_xtal(e32, 26000000 / 115200, 115200), 26);
    assert_int_equal(esp_chip_decode_xtal(e32, 0xFFF00000u | (40000000 / 115200), 115200), 40);
    const struct esp_chip_desc *e8266 = esp_chip_get(ESP_CHIP_ESP8266);
    assert_int_equal(esp_chip_decode_xtal(e8266, 2 * 26000000 / 115200, 115200), 26);
    assert_int_equal(esp_chip_decode_xtal(e8266, 2 * 40000000 / 115200, 115200), 40);
    const struct esp_chip_desc *c5 = esp_chip_get(ESP_CHIP_ESP32C5);
    assert_int_equal(esp_chip_decode_xtal(c5, 48000000 / 115200, 115200), 48);
    assert_int_equal(esp_chip_decode_xtal(c5, 40000000 / 115200, 115200), 40);
    assert_int_equal(esp_chip_decode_xtal(esp_chip_get(ESP_CHIP_ESP32S3), 0, 0), 40);
    assert_int_equal(esp_chip_decode_xtal(esp_chip_get(ESP_CHIP_ESP32C3), 12345, 115200), 40);
    assert_int_equal(esp_chip_decode_xtal(e32, 0, 115200), 0);
}

static void test_jedec(void **state)
{
    (void)state;
    static const struct {
        uint32_t id;
        uint32_t size;
    } cases[] = {
        {0x1640EF, 4 * MB},
        {0x1840C8, 16 * MB},
        {0x1440EF, 1 * MB},
        {0x124020, 256 * KB},
        {0x1C40EF, 256 * MB},
        {0x1940EF, 32 * MB},
        {0x2040C2, 64 * MB},
        {0x21BA20, 128 * MB},
        {0x2240C2, 256 * MB},
        {0x32609D, 256 * KB},
        {0x36609D, 4 * MB},
        {0x3A609D, 64 * MB},
        {0x00471F, 4 * MB},
        {0x00441F, 512 * KB},
        {0x00481F, 8 * MB},
        {0x00491F, 16 * MB},
        {0x00431F, 0},
        {0x4A0000, 0},
        {0x1D40EF, 0},
        {0x3B0000, 0},
        {0x110000, 0},
        {0xFFFFFF, 0},
        {0, 0},
        {0x004A1F, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (esp_flash_size_from_jedec(cases[i].id) != cases[i].size)
            fail_msg("jedec %06x: got %u want %u", cases[i].id,
                     esp_flash_size_from_jedec(cases[i].id), cases[i].size);
    /* Adesto: 0x1F uses (id >> 8) & 0x1F. */
    assert_int_equal(esp_flash_size_from_jedec(0x00451F), 1 * MB);
}

static void test_size_freq_codes(void **state)
{
    (void)state;
    const struct esp_chip_desc *e8266 = esp_chip_get(ESP_CHIP_ESP8266);
    const struct esp_chip_desc *e32 = esp_chip_get(ESP_CHIP_ESP32);
    const struct esp_chip_desc *s3 = esp_chip_get(ESP_CHIP_ESP32S3);
    const struct esp_chip_desc *c2 = esp_chip_get(ESP_CHIP_ESP32C2);
    const struct esp_chip_desc *c6 = esp_chip_get(ESP_CHIP_ESP32C6);
    const struct esp_chip_desc *h2 = esp_chip_get(ESP_CHIP_ESP32H2);
    const struct esp_chip_desc *c5 = esp_chip_get(ESP_CHIP_ESP32C5);
    const struct esp_chip_desc *p4 = esp_chip_get(ESP_CHIP_ESP32P4);

    assert_int_equal(esp_chip_flash_size_code(e8266, 512 * KB), 0);
    assert_int_equal(esp_chip_flash_size_code(e8266, 256 * KB), 1);
    assert_int_equal(esp_chip_flash_size_code(e8266, 1 * MB), 2);
    assert_int_equal(esp_chip_flash_size_code(e8266, 2 * MB), 3);
    assert_int_equal(esp_chip_flash_size_code(e8266, 4 * MB), 4);
    assert_int_equal(esp_chip_flash_size_code(e8266, 8 * MB), 8);
    assert_int_equal(esp_chip_flash_size_code(e8266, 16 * MB), 9);
    assert_int_equal(esp_chip_flash_size_code(e8266, 32 * MB), -EINVAL);
    assert_int_equal(esp_chip_flash_size_from_code(e8266, 5), 2 * MB);
    assert_int_equal(esp_chip_flash_size_from_code(e8266, 7), 0);
    assert_int_equal(esp_chip_flash_size_from_code(e8266, 10), 0);

    assert_int_equal(esp_chip_flash_size_code(e32, 1 * MB), 0);
    assert_int_equal(esp_chip_flash_size_code(e32, 4 * MB), 2);
    assert_int_equal(esp_chip_flash_size_code(e32, 16 * MB), 4);
    assert_int_equal(esp_chip_flash_size_code(e32, 512 * KB), -EINVAL);
    assert_int_equal(esp_chip_flash_size_code(e32, 0), -EINVAL);
    assert_int_equal(esp_chip_flash_size_code(s3, 128 * MB), 7);
    assert_int_equal(esp_chip_flash_size_code(p4, 64 * MB), 6);
    assert_int_equal(esp_chip_flash_size_code(p4, 128 * MB), -EINVAL);
    assert_int_equal(esp_chip_flash_size_code(c5, 32 * MB), 5);
    assert_int_equal(esp_chip_flash_size_code(c5, 64 * MB), -EINVAL);
    assert_int_equal(esp_chip_flash_size_from_code(s3, 3), 8 * MB);
    assert_int_equal(esp_chip_flash_size_from_code(e32, 8), 0);

    assert_int_equal(esp_chip_flash_freq_code(e32, 40), 0);
    assert_int_equal(esp_chip_flash_freq_code(e32, 26), 1);
    assert_int_equal(esp_chip_flash_freq_code(e32, 20), 2);
    assert_int_equal(esp_chip_flash_freq_code(e32, 80), 0xF);
    assert_int_equal(esp_chip_flash_freq_code(e8266, 80), 0xF);
    assert_int_equal(esp_chip_flash_freq_code(e32, 60), -EINVAL);
    assert_int_equal(esp_chip_flash_freq_code(c2, 60), 0xF);
    assert_int_equal(esp_chip_flash_freq_code(c2, 15), 2);
    assert_int_equal(esp_chip_flash_freq_code(c2, 40), -EINVAL);
    assert_int_equal(esp_chip_flash_freq_code(h2, 48), 0xF);
    assert_int_equal(esp_chip_flash_freq_code(h2, 16), 1);
    assert_int_equal(esp_chip_flash_freq_code(c6, 80), 0);
    assert_int_equal(esp_chip_flash_freq_code(c6, 40), 0);
    assert_int_equal(esp_chip_flash_freq_code(c6, 26), -EINVAL);
    assert_int_equal(esp_chip_flash_freq_code(c5, 26), -EINVAL);
    assert_int_equal(esp_chip_flash_freq_code(c5, 80), 0xF);
    assert_int_equal(esp_chip_flash_freq_code(e32, 0), -EINVAL);
}

static void test_parsers(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int rc;
        uint32_t bytes;
        bool keep;
    } sizes[] = {
        {"4MB", 0, 4 * MB, false},     {"4M", 0, 4 * MB, false},      {"4mb", 0, 4 * MB, false},
        {"512KB", 0, 512 * KB, false}, {"512K", 0, 512 * KB, false},  {"16MB", 0, 16 * MB, false},
        {"detect", 0, 0, true},        {"keep", 0, 0, true},          {"KEEP", 0, 0, true},
        {"4GB", -EINVAL, 0, false},    {"4096MB", -EINVAL, 0, false}, {"", -EINVAL, 0, false},
        {"MB", -EINVAL, 0, false},     {"-4MB", -EINVAL, 0, false},   {"0MB", -EINVAL, 0, false},
        {"4 MB", -EINVAL, 0, false},   {"1048576", 0, 1 * MB, false},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint32_t b = 0xDEAD;
        bool keep = !sizes[i].keep;
        int rc = esp_parse_flash_size(sizes[i].s, &b, &keep);
        if (rc != sizes[i].rc)
            fail_msg("size '%s': rc %d", sizes[i].s, rc);
        if (rc == 0) {
            assert_int_equal(b, sizes[i].bytes);
            assert_int_equal(keep, sizes[i].keep);
        }
    }

    static const struct {
        const char *s;
        int rc;
        bool keep;
    } modes[] = {
        {"qio", 0, false}, {"qout", 1, false}, {"dio", 2, false},        {"dout", 3, false},
        {"DIO", 2, false}, {"keep", 0, true},  {"fast", -EINVAL, false}, {"", -EINVAL, false},
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        bool keep = !modes[i].keep;
        int rc = esp_parse_flash_mode(modes[i].s, &keep);
        if (rc != modes[i].rc)
            fail_msg("mode '%s': rc %d", modes[i].s, rc);
        if (rc >= 0)
            assert_int_equal(keep, modes[i].keep);
    }
    for (unsigned m = 0; m < 4; m++) {
        bool keep;
        assert_int_equal(esp_parse_flash_mode(esp_flash_mode_to_string(m), &keep), (int)m);
    }
    assert_string_equal(esp_flash_mode_to_string(4), "unknown");

    static const struct {
        const char *s;
        int rc;
        unsigned mhz;
        bool keep;
    } freqs[] = {
        {"40m", 0, 40, false},     {"80m", 0, 80, false},       {"26m", 0, 26, false},
        {"20m", 0, 20, false},     {"80MHz", 0, 80, false},     {"40", 0, 40, false},
        {"keep", 0, 0, true},      {"fast", -EINVAL, 0, false}, {"40k", -EINVAL, 0, false},
        {"0m", -EINVAL, 0, false}, {"", -EINVAL, 0, false},
    };
    for (size_t i = 0; i < sizeof(freqs) / sizeof(freqs[0]); i++) {
        unsigned mhz = 12345;
        bool keep = !freqs[i].keep;
        int rc = esp_parse_flash_freq(freqs[i].s, &mhz, &keep);
        if (rc != freqs[i].rc)
            fail_msg("freq '%s': rc %d", freqs[i].s, rc);
        if (rc == 0) {
            assert_int_equal(mhz, freqs[i].mhz);
            assert_int_equal(keep, freqs[i].keep);
        }
    }
}

/* esp-serial-flasher's variant (first condition n <= head), for comparison only. */
static uint32_t esf_erase_sectors(uint32_t start_sector, uint32_t n)
{
    uint32_t head = 16 - start_sector % 16;
    if (n < head)
        head = n;
    return n <= head ? (n + 1) / 2 : n - head;
}

static void test_erase_worked_example(void **state)
{
    (void)state;
    assert_int_equal(esp8266_rom_erase_size(0x3000, 0x16000), 0xB000);
    assert_int_equal(esp8266_rom_erased_sectors(0x3000, 0xB000), 22);
    /* ESF sends 9 sectors there, and the ROM erases only 18. */
    assert_int_equal(esf_erase_sectors(3, 22), 9);
    assert_int_equal(esp8266_rom_erased_sectors(0x3000, 9 * 4096), 18);
    /* Offset 0, 80 KiB: ESF sends 4 and only 8 of 20 get erased. */
    assert_int_equal(esf_erase_sectors(0, 20), 4);
    assert_int_equal(esp8266_rom_erased_sectors(0, 4 * 4096), 8);
    assert_int_equal(esp8266_rom_erased_sectors(0, esp8266_rom_erase_size(0, 80 * 1024)), 20);
    /* The model itself. */
    assert_int_equal(esp8266_rom_erased_sectors(0, 4096), 2);
    assert_int_equal(esp8266_rom_erased_sectors(0, 16 * 4096), 32);
    assert_int_equal(esp8266_rom_erased_sectors(0, 17 * 4096), 33);
    assert_int_equal(esp8266_rom_erased_sectors(15 * 4096, 2 * 4096), 3);
    assert_int_equal(esp8266_rom_erased_sectors(0, 1), 2);
    assert_int_equal(esp8266_rom_erase_size(0, 0), 0);
}

static void test_erase_exhaustive(void **state)
{
    (void)state;
    unsigned checked = 0, esf_bad = 0, esf_bad_one_block = 0;
    for (uint32_t s = 0; s < 256; s++) {
        for (uint32_t n = 1; n <= 80; n++) {
            uint32_t offset = s * 4096;
            uint32_t sent = esp8266_rom_erase_size(offset, n * 4096);
            assert_int_equal(sent % 4096, 0);
            uint32_t erased = esp8266_rom_erased_sectors(offset, sent);
            /* Every needed sector is erased, at most one extra (odd n inside a block). */
            if (erased < n || erased > n + 1)
                fail_msg("start sector %u, %u sectors: sent %u, ROM erases %u", s, n, sent, erased);
            checked++;
            uint32_t esf = esf_erase_sectors(s, n);
            if (esp8266_rom_erased_sectors(offset, esf * 4096) < n) {
                esf_bad++;
                if (s < 16 && n < 80)
                    esf_bad_one_block++;
            }
        }
    }
    assert_int_equal(checked, 256 * 80);
    /* PROTOCOL-ROM.md §5.3: 120 bad cases for start sectors 0..15 and n < 80. */
    assert_int_equal(esf_bad_one_block, 120);
    assert_int_equal(esf_bad, 16 * 120);
}

static void test_erase_random_bytes(void **state)
{
    (void)state;
    uint32_t x = 0x12345678;
    for (int i = 0; i < 200000; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t offset = (x >> 8) % (4 * MB);
        x = x * 1664525u + 1013904223u;
        uint32_t size = 1 + (x >> 8) % (400 * KB);
        if (i % 2)
            offset &= ~0xFFFu; /* aligned half */
        uint32_t first = offset / 4096, last = (offset + size - 1) / 4096;
        uint32_t needed = last - first + 1;
        uint32_t sent = esp8266_rom_erase_size(offset, size);
        uint32_t erased = esp8266_rom_erased_sectors(offset, sent);
        if (erased < needed || erased > needed + 1)
            fail_msg("offset 0x%x size 0x%x: needed %u sectors, ROM erases %u", offset, size,
                     needed, erased);
        if (offset % 4096 == 0) {
            /* Aligned: same as esptool's n = ceil(size / 4096). */
            uint32_t n = (size + 4095) / 4096;
            assert_int_equal(needed, n);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_consistent),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_registers),
        cmocka_unit_test(test_mac),
        cmocka_unit_test(test_revision),
        cmocka_unit_test(test_xtal),
        cmocka_unit_test(test_jedec),
        cmocka_unit_test(test_size_freq_codes),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_erase_worked_example),
        cmocka_unit_test(test_erase_exhaustive),
        cmocka_unit_test(test_erase_random_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
