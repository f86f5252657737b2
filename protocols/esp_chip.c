/*
 * esp_chip: the chip table and the pure decoders that go with it.
 *
 * Owns: one const descriptor per chip family (values from the ROM protocol
 * brief, PROTOCOL-ROM.md §2, §3.6, §4, §7.2), MAC/revision/crystal/JEDEC
 * decoding, flash size/mode/frequency codes and parsers, and the ESP8266 ROM
 * erase-size workaround with a model of the ROM bug it works around.
 * Invariant: no I/O and no mutable state; the engine reads registers and
 * hands the values in.
 */
#include "esp_chip.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KB 1024u
#define MB (1024u * 1024u)

/* Size codes (header byte 3, high nibble). */
static const uint32_t sizes_esp8266[] = {
    512 * KB,        256 * KB,        1 * MB, 2 * MB, 4 * MB,
    2 * MB /* c1 */, 4 * MB /* c1 */, 0,      8 * MB, 16 * MB,
};
static const uint32_t sizes_esp32[] = {
    1 * MB, 2 * MB, 4 * MB, 8 * MB, 16 * MB, 32 * MB, 64 * MB, 128 * MB,
};

/* Frequency codes (header byte 3, low nibble), MHz per code; 0 = invalid. */
static const unsigned freq_std[16] = {[0x0] = 40, [0x1] = 26, [0x2] = 20, [0xF] = 80};
static const unsigned freq_c2[16] = {[0x0] = 30, [0x1] = 20, [0x2] = 15, [0xF] = 60};
static const unsigned freq_h2[16] = {[0x0] = 24, [0x1] = 16, [0x2] = 12, [0xF] = 48};
static const unsigned freq_c5[16] = {[0x0] = 40, [0x2] = 20, [0xF] = 80};
/* C6: code 0 means 40 MHz, and 80 MHz is also written as 0 (ROM MSPI divider bug). */
static const unsigned freq_c6[16] = {[0x0] = 40, [0x2] = 20};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* SPI user-command registers of S2 and later: USR +0x18 ... W0 +0x58. */
#define SPI_REGS_S2(b)                                                                             \
    {                                                                                              \
        .base = (b), .usr = (b) + 0x18, .usr1 = (b) + 0x1C, .usr2 = (b) + 0x20,                    \
        .mosi_dlen = (b) + 0x24, .miso_dlen = (b) + 0x28, .w0 = (b) + 0x58                         \
    }

#define UART_DATE_DEFAULT 0x60000078u
#define UART_CLKDIV_DEFAULT 0x60000014u

static const struct esp_chip_desc chips[ESP_CHIP_COUNT] =
    {
        [ESP_CHIP_ESP8266] =
            {
                .chip = ESP_CHIP_ESP8266,
                .name = "ESP8266",
                .stub_name = "esp8266",
                .image_chip_id = -1,
                .magic = {0xFFF0C101u},
                .bootloader_offset = 0x0,
                .mac_layout = ESP_MAC_ESP8266,
                .mac_regs = {0x3FF00050u, 0x3FF00054u, 0x3FF0005Cu},
                .n_mac_regs = 3,
                .uart_clkdiv_reg = UART_CLKDIV_DEFAULT,
                .uart_max_baud = 4608000u,
                .xtal_div = 2,
                .spi = {.base = 0x60000200u,
                        .usr = 0x6000021Cu,
                        .usr1 = 0x60000220u,
                        .usr2 = 0x60000224u,
                        .w0 = 0x60000240u},
                .rom_status_bytes = 2,
                .stub_supported = true,
                .size_codes = sizes_esp8266,
                .n_size_codes = N_ELEMS(sizes_esp8266),
                .freq_mhz = freq_std,
                .uart_date_reg = UART_DATE_DEFAULT,
            },
        [ESP_CHIP_ESP32] =
            {
                .chip = ESP_CHIP_ESP32,
                .name = "ESP32",
                .stub_name = "esp32",
                .image_chip_id = 0,
                .magic = {0x00F01D83u},
                .bootloader_offset = 0x1000,
                .mac_layout = ESP_MAC_ESP32,
                .mac_regs = {0x3FF5A004u, 0x3FF5A008u},
                .n_mac_regs = 2,
                /* eFuse word3, word5, APB_CTRL_DATE */
                .rev_regs = {0x3FF5A00Cu, 0x3FF5A014u, 0x3FF6607Cu},
                .n_rev_regs = 3,
                .uart_clkdiv_reg = 0x3FF40014u,
                .uart_max_baud = 5000000u,
                .xtal_div = 1,
                .spi = {.base = 0x3FF42000u,
                        .usr = 0x3FF4201Cu,
                        .usr1 = 0x3FF42020u,
                        .usr2 = 0x3FF42024u,
                        .mosi_dlen = 0x3FF42028u,
                        .miso_dlen = 0x3FF4202Cu,
                        .w0 = 0x3FF42080u},
                .rom_status_bytes = 4,
                .rom_has_compress = true,
                .rom_has_md5 = true,
                .rom_has_spi_attach = true,
                .rom_has_change_baud = true,
                .rom_has_read_flash_slow = true,
                .stub_supported = true,
                .size_codes = sizes_esp32,
                .n_size_codes = 5,
                .freq_mhz = freq_std,
                .uart_date_reg = UART_DATE_DEFAULT,
            },
        [ESP_CHIP_ESP32S2] =
            {
                .chip = ESP_CHIP_ESP32S2,
                .name = "ESP32-S2",
                .stub_name = "esp32s2",
                .image_chip_id = 2,
                .magic = {0x000007C6u},
                .bootloader_offset = 0x1000,
                .mac_layout = ESP_MAC_EFUSE_LOHI,
                .mac_regs = {0x3F41A044u, 0x3F41A048u},
                .n_mac_regs = 2,
                .uart_clkdiv_reg = 0x3F400014u,
                .uart_max_baud = 5000000u,
                .xtal_div = 1,
                .xtal_fixed_mhz = 40,
                .spi = SPI_REGS_S2(0x3F402000u),
                .rom_status_bytes = 4,
                .rom_begin_has_encrypt = true,
                .rom_has_compress = true,
                .rom_has_md5 = true,
                .rom_has_spi_attach = true,
                .rom_has_change_baud = true,
                .rom_has_security_info = true,
                .rom_has_read_flash_slow = true,
                .security_info_len = 12,
                .stub_supported = true,
                .uart_no_reg = 0x3FFFFD14u,
                .uart_no_otg = 2,
                .otg_wdt_wprotect = 0x3F4080ACu,
                .otg_wdt_config0 = 0x3F408094u,
                .otg_wdt_config1 = 0x3F408098u,
                .gpio_strap_reg = 0x3F404038u,
                .size_codes = sizes_esp32,
                .n_size_codes = 8,
                .freq_mhz = freq_std,
                .uart_date_reg = UART_DATE_DEFAULT,
            },
        [ESP_CHIP_ESP32S3] =
            {
                .chip = ESP_CHIP_ESP32S3,
                .name = "ESP32-S3",
                .stub_name = "esp32s3",
                .image_chip_id = 9,
                .magic = {0x00000009u},
                .bootloader_offset = 0x0,
                .mac_layout = ESP_MAC_EFUSE_LOHI,
                .mac_regs = {0x60007044u, 0x60007048u},
                .n_mac_regs = 2,
                /* BLOCK1 = 0x60007044: +0x14, +0x0C */
                .rev_regs = {0x60007058u, 0x60007050u},
                .n_rev_regs = 2,
                .uart_clkdiv_reg = UART_CLKDIV_DEFAULT,
                .uart_max_baud = 5000000u,
                .xtal_div = 1,
                .xtal_fixed_mhz = 40,
                .spi = SPI_REGS_S2(0x60002000u),
                .rom_status_bytes = 4,
                .rom_begin_has_encrypt = true,
                .rom_has_compress = true,
                .rom_has_md5 = true,
                .rom_has_spi_attach = true,
                .rom_has_change_baud = true,
                .rom_has_security_info = true,
                .rom_has_read_flash_slow = true,
                .security_info_len = 20,
                .stub_supported = true,
                .stub_32bit_addr = true,
                .size_codes = sizes_esp32,
                .n_size_codes = 8,
                .freq_mhz = freq_std,
                .uart_date_reg = 0x60000080u,
                .rtc_wdt_wprotect = 0x600080B0u,
                .rtc_wdt_config0 = 0x60008098u,
                .swd_wprotect = 0x600080B8u,
                .swd_conf = 0x600080B4u,
                .swd_wkey = 0x8F1D312Au,
                .swd_auto_feed_bit = 31,
                .force_download_reg = 0x6000812Cu,
                .uart_no_reg = 0x3FCEF14Cu,
                .uart_no_jtag = 4,
                .uart_no_otg = 3,
                .otg_wdt_wprotect = 0x600080B0u,
                .otg_wdt_config0 = 0x60008098u,
                .otg_wdt_config1 = 0x6000809Cu,
                .gpio_strap_reg = 0x60004038u,
            },
        [ESP_CHIP_ESP32C2] =
            {
                .chip = ESP_CHIP_ESP32C2,
                .name = "ESP32-C2",
                .stub_name = "esp32c2",
                .image_chip_id = 12,
                .magic = {0x6F51306Fu, 0x7C41A06Fu, 0x0C21E06Fu},
                .bootloader_offset = 0x0,
                .mac_layout = ESP_MAC_EFUSE_LOHI,
                .mac_regs = {0x60008840u, 0x60008844u},
                .n_mac_regs = 2,
                .uart_clkdiv_reg = UART_CLKDIV_DEFAULT,
                .uart_max_baud = 5000000u,
                .xtal_div = 1,
                .spi = SPI_REGS_S2(0x60002000u),
                .rom_status_bytes = 4,
                .rom_begin_has_encrypt = true,
                .rom_has_compress = true,
                .rom_has_md5 = true,
                .rom_has_spi_attach = true,
                .rom_has_change_baud = true,
                .rom_has_security_info = true,
                .rom_has_read_flash_slow = true,
                .security_info_len = 20,
                .stub_supported = true,
                .size_codes = sizes_esp32,
                .n_size_codes = 5,
                .freq_mhz = freq_c2,
                .uart_date_reg = UART_DATE_DEFAULT,
            },
        [ESP_CHIP_ESP32C3] =
            {
                .chip = ESP_CHIP_ESP32C3,
                .name = "ESP32-C3",
                .stub_name = "esp32c3",
                .image_chip_id = 5,
                .magic = {0x6921506Fu, 0x1B31506Fu, 0x4881606Fu, 0x4361606Fu},
                .bootloader_offset = 0x0,
                .mac_layout = ESP_MAC_EFUSE_LOHI,
                .mac_regs = {0x60008844u, 0x60008848u},
                .n_mac_regs = 2,
                /* BLOCK1 = 0x60008844: +0x14, +0x0C */
                .rev_regs = {0x60008858u, 0x60008850u},
                .n_rev_regs = 2,
                .uart_clkdiv_reg = UART_CLKDIV_DEFAULT,
                .uart_max_baud = 5000000u,
                .xtal_div = 1,
                .xtal_fixed_mhz = 40,
                .spi = SPI_REGS_S2(0x60002000u),
                .rom_status_bytes = 4,
                .rom_begin_has_encrypt = true,
                .rom_has_compress = true,
                .rom_has_md5 = true,
                .rom_has_spi_attach = true,
                .rom_has_change_baud = true,
                .rom_has_security_info = true,
                .rom_has_read_flash_slow = true,
                .security_info_len = 20,
                .stub_supported = true,
                .size_codes = sizes_esp32,
                .n_size_codes = 5,
                .freq_mhz = freq_std,
                .uart_date_reg = 0x6000007Cu,
                .rtc_wdt_wprotect = 0x600080A8u,
                .rtc_wdt_config0 = 0x60008090u,
                .swd_wprotect = 0x600080B0u,
                .swd_conf = 0x600080ACu,
                .swd_wkey = 0x8F1D312Au,
                .swd_auto_feed_bit = 31,
                .uart_no_reg = 0x3FCDF07Cu,
                .uart_no_jtag = 3,
            },
        [ESP_CHIP_ESP32C6] =
            {
                .chip = ESP_CHIP_ESP32C6,
                .name = "ESP32-C6",
                .stub_name = "esp32c6",
                .image_chip_id = 13,
                .magic = {0x2CE0806Fu},
                .bootloader_offset = 0x0,
                .mac_layout = ESP_MAC_EFUSE_LOHI,
                .mac_regs = {0x600B0844u, 0x600B0848u},
                .n_mac_regs = 2,
                .uart_clkdiv_reg = UART_CLKDIV_DEFAULT,
                .uart_max_baud = 5000000u,
                .xtal_div = 1,
                .xtal_fixed_mhz = 40,
                .spi = SPI_REGS_S2(0x60003000u),
                .rom_status_bytes = 4,
                .rom_begin_has_encrypt = true,
                .rom_has_compress = true,
                .rom_has_md5 = true,
                .rom_has_spi_attach = true,
                .rom_has_change_baud = true,
                .rom_has_security_info = true,
                .rom_has_read_flash_slow = true,
                .security_info_len = 20,
                .stub_supported = true,
                .size_codes = sizes_esp32,
                .n_size_codes = 5,
                .freq_mhz = freq_c6,
                .uart_date_reg = 0x6000007Cu,
                .rtc_wdt_wprotect = 0x600B1C18u,
                .rtc_wdt_config0 = 0x600B1C00u,
                .swd_wprotect = 0x600B1C20u,
                .swd_conf = 0x600B1C1Cu,
                .swd_wkey = 0x50D83AA1u,
                .swd_auto_feed_bit = 18,
                .uart_no_reg = 0x4087F580u,
                .uart_no_jtag = 3,
            },
        [ESP_CHIP_ESP32H2] =
            {
                .chip = ESP_CHIP_ESP32H2,
                .name = "ESP32-H2",
                .stub_name = "esp32h2",
                .image_chip_id = 16,
                .magic = {0xD7B73E80u},
                .bootloader_offset = 0x0,
                .mac_layout = ESP_MAC_EFUSE_LOHI,
                .mac_regs = {0x600B0844u, 0x600B0848u},
                .n_mac_regs = 2,
                .uart_clkdiv_reg = UART_CLKDIV_DEFAULT,
                .uart_max_baud = 5000000u,
                .xtal_div = 1,
                .xtal_fixed_mhz = 32,
                .spi = SPI_REGS_S2(0x60003000u),
                .rom_status_bytes = 4,
                .rom_begin_has_encrypt = true,
                .rom_has_compress = true,
                .rom_has_md5 = true,
                .rom_has_spi_attach = true,
                .rom_has_change_baud = true,
                .rom_has_security_info = true,
                .rom_has_read_flash_slow = true,
                .security_info_len = 20,
                .stub_supported = true,
                .size_codes = sizes_esp32,
                .n_size_codes = 5,
                .freq_mhz = freq_h2,
                .uart_date_reg = UART_DATE_DEFAULT,
                .rtc_wdt_wprotect = 0x600B1C1Cu,
                .rtc_wdt_config0 = 0x600B1C00u,
                .swd_wprotect = 0x600B1C24u,
                .swd_conf = 0x600B1C20u,
                .swd_wkey = 0x50D83AA1u,
                .swd_auto_feed_bit = 18,
            },
        [ESP_CHIP_ESP32C5] =
            {
                .chip = ESP_CHIP_ESP32C5,
                .name = "ESP32-C5",
                .stub_name = "esp32c5",
                .image_chip_id = 23,
                .magic = {0x1101406Fu, 0x5FD1406Fu},
                .bootloader_offset = 0x2000,
                .mac_layout = ESP_MAC_EFUSE_LOHI,
                .mac_regs = {0x600B4844u, 0x600B4848u},
                .n_mac_regs = 2,
                /* 40 or 48 MHz crystal: measured through the UART divider. */
                .uart_clkdiv_reg = UART_CLKDIV_DEFAULT,
                .uart_max_baud = 5000000u,
                .xtal_div = 1,
                .spi = SPI_REGS_S2(0x60003000u),
                .rom_status_bytes = 4,
                .rom_begin_has_encrypt = true,
                .rom_has_compress = true,
                .rom_has_md5 = true,
                .rom_has_spi_attach = true,
                .rom_has_change_baud = true,
                .rom_has_security_info = true,
                .rom_has_read_flash_slow = true,
                .security_info_len = 20,
                .stub_supported = true,
                .stub_32bit_addr = true,
                .size_codes = sizes_esp32,
                .n_size_codes = 6,
                .freq_mhz = freq_c5,
                .uart_date_reg = UART_DATE_DEFAULT,
            },
        [ESP_CHIP_ESP32P4] =
            {
                .chip = ESP_CHIP_ESP32P4,
                .name = "ESP32-P4",
                .stub_name = "esp32p4",
                .image_chip_id = 18,
                .magic = {0},
                .bootloader_offset = 0x2000,
                .mac_layout = ESP_MAC_EFUSE_LOHI,
                .mac_regs = {0x5012D044u, 0x5012D048u},
                .n_mac_regs = 2,
                .uart_clkdiv_reg = 0,
                .uart_max_baud = 5000000u,
                .xtal_div = 1,
                .xtal_fixed_mhz = 40,
                .spi = SPI_REGS_S2(0x5008D000u),
                .rom_status_bytes = 4,
                .rom_begin_has_encrypt = true,
                .rom_has_compress = true,
                .rom_has_md5 = true,
                .rom_has_spi_attach = true,
                .rom_has_change_baud = true,
                .rom_has_security_info = true,
                .rom_has_read_flash_slow = true,
                .security_info_len = 20,
                .stub_supported = true,
                .stub_32bit_addr = true,
                .size_codes = sizes_esp32,
                .n_size_codes = 7,
                .freq_mhz = freq_std,
                .uart_date_reg = 0x500CA08Cu,
            },
};

const char *esp_chip_to_string(enum esp_chip chip)
{
    if ((unsigned)chip >= ESP_CHIP_COUNT)
        return "unknown";
    return chips[chip].name;
}

const struct esp_chip_desc *esp_chip_get(enum esp_chip chip)
{
    if ((unsigned)chip >= ESP_CHIP_COUNT)
        return NULL;
    return &chips[chip];
}

const struct esp_chip_desc *esp_chip_by_magic(uint32_t magic)
{
    if (magic == 0)
        return NULL;
    for (size_t i = 0; i < ESP_CHIP_COUNT; i++)
        for (size_t k = 0; k < ESP_MAX_MAGIC; k++)
            if (chips[i].magic[k] == magic)
                return &chips[i];
    return NULL;
}

const struct esp_chip_desc *esp_chip_by_image_id(int image_chip_id)
{
    if (image_chip_id < 0)
        return NULL;
    for (size_t i = 0; i < ESP_CHIP_COUNT; i++)
        if (chips[i].image_chip_id == image_chip_id)
            return &chips[i];
    return NULL;
}

const struct esp_chip_desc *esp_chip_by_name(const char *name)
{
    if (!name)
        return NULL;
    /* Compare without '-' / '_' and case: "ESP32-S3" == "esp32s3". */
    char norm[32];
    size_t n = 0;
    for (const char *p = name; *p; p++) {
        if (*p == '-' || *p == '_')
            continue;
        if (n + 1 >= sizeof(norm))
            return NULL;
        norm[n++] = (char)tolower((unsigned char)*p);
    }
    norm[n] = '\0';
    for (size_t i = 0; i < ESP_CHIP_COUNT; i++)
        if (strcmp(norm, chips[i].stub_name) == 0)
            return &chips[i];
    return NULL;
}

int esp_chip_decode_mac(const struct esp_chip_desc *chip, const uint32_t *vals, size_t n,
                        uint8_t mac[6])
{
    if (!chip || !vals || !mac || n < chip->n_mac_regs)
        return -EINVAL;
    switch (chip->mac_layout) {
    case ESP_MAC_ESP8266: {
        uint32_t m0 = vals[0], m1 = vals[1], m3 = vals[2];
        if (m3 != 0) {
            mac[0] = (uint8_t)(m3 >> 16);
            mac[1] = (uint8_t)(m3 >> 8);
            mac[2] = (uint8_t)m3;
        } else if (((m1 >> 16) & 0xFF) == 0) {
            mac[0] = 0x18;
            mac[1] = 0xFE;
            mac[2] = 0x34;
        } else if (((m1 >> 16) & 0xFF) == 1) {
            mac[0] = 0xAC;
            mac[1] = 0xD0;
            mac[2] = 0x74;
        } else {
            return -EINVAL;
        }
        mac[3] = (uint8_t)(m1 >> 8);
        mac[4] = (uint8_t)m1;
        mac[5] = (uint8_t)(m0 >> 24);
        return 0;
    }
    case ESP_MAC_ESP32:
    case ESP_MAC_EFUSE_LOHI: {
        /* Both layouts: low word first, then the word holding the top 2 bytes. */
        uint32_t lo = vals[0], hi = vals[1];
        mac[0] = (uint8_t)(hi >> 8);
        mac[1] = (uint8_t)hi;
        mac[2] = (uint8_t)(lo >> 24);
        mac[3] = (uint8_t)(lo >> 16);
        mac[4] = (uint8_t)(lo >> 8);
        mac[5] = (uint8_t)lo;
        return 0;
    }
    }
    return -EINVAL;
}

int esp_chip_decode_revision(const struct esp_chip_desc *chip, const uint32_t *vals, size_t n)
{
    if (!chip || chip->n_rev_regs == 0)
        return -ENOTSUP;
    if (!vals || n < chip->n_rev_regs)
        return -EINVAL;
    switch (chip->chip) {
    case ESP_CHIP_ESP32: {
        unsigned b0 = (vals[0] >> 15) & 1, b1 = (vals[1] >> 20) & 1, b2 = (vals[2] >> 31) & 1;
        unsigned combined = b2 << 2 | b1 << 1 | b0;
        int major;
        switch (combined) {
        case 1:
            major = 1;
            break;
        case 3:
            major = 2;
            break;
        case 7:
            major = 3;
            break;
        default:
            major = 0;
            break;
        }
        int minor = (int)((vals[1] >> 24) & 3);
        return major * 100 + minor;
    }
    case ESP_CHIP_ESP32S3:
    case ESP_CHIP_ESP32C3: {
        int major = (int)((vals[0] >> 24) & 3);
        int minor = (int)((((vals[0] >> 23) & 1) << 3) | ((vals[1] >> 18) & 7));
        return major * 100 + minor;
    }
    default:
        return -ENOTSUP;
    }
}

unsigned esp_chip_decode_xtal(const struct esp_chip_desc *chip, uint32_t clkdiv_reg, uint32_t baud)
{
    if (!chip)
        return 0;
    if (chip->xtal_fixed_mhz)
        return chip->xtal_fixed_mhz;
    unsigned div = chip->xtal_div ? chip->xtal_div : 1;
    double est = (double)baud * (double)(clkdiv_reg & 0xFFFFF) / 1e6 / div;
    if (est <= 0)
        return 0;
    /* Nearest of the crystals in use; 48 MHz only exists on the newer chips. */
    if (est < 33)
        return 26;
    if (est < 44 || chip->chip == ESP_CHIP_ESP8266 || chip->chip == ESP_CHIP_ESP32 ||
        chip->chip == ESP_CHIP_ESP32C2)
        return 40;
    return 48;
}

uint32_t esp_flash_size_from_jedec(uint32_t jedec_id)
{
    uint8_t mfr = (uint8_t)jedec_id;
    if (mfr == 0x1F) {
        /* Adesto: density in bits 8-12. */
        unsigned code = (jedec_id >> 8) & 0x1F;
        if (code >= 4 && code <= 9)
            return 1u << (code + 15);
        return 0;
    }
    unsigned cap = (jedec_id >> 16) & 0xFF;
    if (cap >= 0x12 && cap <= 0x1C)
        return 1u << cap;
    if (cap == 0x20)
        return 64 * MB;
    if (cap == 0x21)
        return 128 * MB;
    if (cap == 0x22)
        return 256 * MB;
    if (cap >= 0x32 && cap <= 0x3A)
        return 1u << (cap - 0x32 + 18);
    return 0;
}

int esp_chip_flash_size_code(const struct esp_chip_desc *chip, uint32_t bytes)
{
    if (!chip || bytes == 0)
        return -EINVAL;
    for (size_t i = 0; i < chip->n_size_codes; i++)
        if (chip->size_codes[i] == bytes)
            return (int)i;
    return -EINVAL;
}

uint32_t esp_chip_flash_size_from_code(const struct esp_chip_desc *chip, unsigned code)
{
    if (!chip || code >= chip->n_size_codes)
        return 0;
    return chip->size_codes[code];
}

int esp_chip_flash_freq_code(const struct esp_chip_desc *chip, unsigned mhz)
{
    if (!chip || mhz == 0)
        return -EINVAL;
    if (chip->chip == ESP_CHIP_ESP32C6 && mhz == 80)
        return 0;
    for (unsigned i = 0; i < 16; i++)
        if (chip->freq_mhz[i] == mhz)
            return (int)i;
    return -EINVAL;
}

static bool is_keep_word(const char *s, bool allow_detect)
{
    return strcasecmp(s, "keep") == 0 || (allow_detect && strcasecmp(s, "detect") == 0);
}

/* Parses a decimal (or 0x hex) unsigned number; *end gets the rest. */
static bool parse_number(const char *s, unsigned long long *v, const char **end)
{
    if (!isdigit((unsigned char)*s))
        return false;
    char *e;
    errno = 0;
    unsigned long long x = strtoull(s, &e, 0);
    if (errno || e == s)
        return false;
    *v = x;
    *end = e;
    return true;
}

int esp_parse_flash_size(const char *s, uint32_t *bytes, bool *keep)
{
    if (keep)
        *keep = false;
    if (!s || !bytes)
        return -EINVAL;
    if (is_keep_word(s, true)) {
        *bytes = 0;
        if (keep)
            *keep = true;
        return 0;
    }
    unsigned long long v;
    const char *unit;
    if (!parse_number(s, &v, &unit))
        return -EINVAL;
    unsigned long long mult;
    if (*unit == '\0' || strcasecmp(unit, "b") == 0)
        mult = 1;
    else if (strcasecmp(unit, "k") == 0 || strcasecmp(unit, "kb") == 0)
        mult = KB;
    else if (strcasecmp(unit, "m") == 0 || strcasecmp(unit, "mb") == 0)
        mult = MB;
    else
        return -EINVAL;
    if (v == 0 || v > UINT32_MAX / mult)
        return -EINVAL;
    *bytes = (uint32_t)(v * mult);
    return 0;
}

static const char *const flash_modes[4] = {"qio", "qout", "dio", "dout"};

int esp_parse_flash_mode(const char *s, bool *keep)
{
    if (keep)
        *keep = false;
    if (!s)
        return -EINVAL;
    if (is_keep_word(s, false)) {
        if (keep)
            *keep = true;
        return 0;
    }
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, flash_modes[i]) == 0)
            return i;
    return -EINVAL;
}

int esp_parse_flash_freq(const char *s, unsigned *mhz, bool *keep)
{
    if (keep)
        *keep = false;
    if (!s || !mhz)
        return -EINVAL;
    if (is_keep_word(s, false)) {
        *mhz = 0;
        if (keep)
            *keep = true;
        return 0;
    }
    unsigned long long v;
    const char *unit;
    if (!parse_number(s, &v, &unit))
        return -EINVAL;
    if (*unit != '\0' && strcasecmp(unit, "m") != 0 && strcasecmp(unit, "mhz") != 0)
        return -EINVAL;
    if (v == 0 || v > 1000)
        return -EINVAL;
    *mhz = (unsigned)v;
    return 0;
}

const char *esp_flash_mode_to_string(unsigned mode)
{
    if (mode >= 4)
        return "unknown";
    return flash_modes[mode];
}

#define SECTOR 4096u
#define SECTORS_PER_BLOCK 16u

uint32_t esp8266_rom_erase_size(uint32_t offset, uint32_t size)
{
    /*
     * Sectors to erase, counted from offset's sector. For a sector-aligned
     * offset this is ceil(size / 4096) as in esptool; an unaligned offset
     * counts the partial head sector too, so [offset, offset+size) is covered.
     */
    uint64_t n = ((uint64_t)(offset % SECTOR) + size + SECTOR - 1) / SECTOR;
    uint64_t head = SECTORS_PER_BLOCK - (offset / SECTOR) % SECTORS_PER_BLOCK;
    if (n < head)
        head = n;
    uint64_t send = (n < 2 * head) ? (n + 1) / 2 : n - head;
    uint64_t bytes = send * SECTOR;
    return bytes > UINT32_MAX ? UINT32_MAX & ~(SECTOR - 1) : (uint32_t)bytes;
}

uint32_t esp8266_rom_erased_sectors(uint32_t offset, uint32_t erase_size)
{
    /* The ROM erases 2E sectors when E fits in the rest of the 64 KiB block,
     * else E plus the rest of the block. */
    uint32_t e = (uint32_t)(((uint64_t)erase_size + SECTOR - 1) / SECTOR);
    uint32_t head = SECTORS_PER_BLOCK - (offset / SECTOR) % SECTORS_PER_BLOCK;
    if (e <= head)
        return 2 * e;
    return e + head;
}
