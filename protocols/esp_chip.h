/*
 * esp_chip: the chip table, as data. One const descriptor per chip family
 * with everything that differs between chips: detection magic and image chip
 * id, register addresses (eFuse MAC, UART clock divider, SPI user-command
 * block), bootloader offset, flash size/frequency encodings, ROM and stub
 * capabilities. Plus the pure decoders that go with it (MAC, revision,
 * crystal, JEDEC size) and the ESP8266 ROM erase-size workaround.
 * No I/O here; the engine reads the registers and hands the values in.
 */
#ifndef ESP_CHIP_H
#define ESP_CHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum esp_chip {
    ESP_CHIP_ESP8266 = 0,
    ESP_CHIP_ESP32,
    ESP_CHIP_ESP32S2,
    ESP_CHIP_ESP32S3,
    ESP_CHIP_ESP32C2,
    ESP_CHIP_ESP32C3,
    ESP_CHIP_ESP32C6,
    ESP_CHIP_ESP32H2,
    ESP_CHIP_ESP32C5,
    ESP_CHIP_ESP32P4,
    ESP_CHIP_COUNT
};

#define ESP_CHIP_DETECT_MAGIC_REG 0x40001000u
#define ESP_MAX_MAGIC 4
#define ESP_MAX_IDREGS 4

enum esp_mac_layout {
    ESP_MAC_ESP8266,   /* regs: m0, m1, m3 (OTP words), OUI rule */
    ESP_MAC_ESP32,     /* regs: w1, w2 of eFuse block 0 */
    ESP_MAC_EFUSE_LOHI /* regs: lo at MAC_EFUSE_REG, hi at +4 (S2 and later) */
};

struct esp_spi_regs {
    uint32_t base;                 /* CMD register is base + 0 */
    uint32_t usr, usr1, usr2;      /* absolute addresses */
    uint32_t mosi_dlen, miso_dlen; /* absolute; 0 when the chip has none (ESP8266) */
    uint32_t w0;
};

struct esp_chip_desc {
    enum esp_chip chip;
    const char *name;      /* "ESP32-S3" */
    const char *stub_name; /* stub file base name: "esp32s3" -> esp32s3.json */
    int image_chip_id;     /* extended-header chip id; -1 for ESP8266 (no extended header) */
    uint32_t magic[ESP_MAX_MAGIC]; /* values of ESP_CHIP_DETECT_MAGIC_REG; 0 = unused */
    uint32_t bootloader_offset;

    /* MAC: registers to READ_REG in this order, then esp_chip_decode_mac(). */
    enum esp_mac_layout mac_layout;
    uint32_t mac_regs[ESP_MAX_IDREGS];
    size_t n_mac_regs;

    /* Revision: registers to read, then esp_chip_decode_revision(); n_rev_regs 0 = unknown. */
    uint32_t rev_regs[ESP_MAX_IDREGS];
    size_t n_rev_regs;

    /* Highest UART rate of the chip (the datasheets: ESP8266 115200 x 40 = 4.6 Mbaud, the
     * ESP32 family 5 Mbaud). The ROM and the stub compute the divider from the clock for
     * any rate below; esp_loader_change_baud caps a higher request at this rate. */
    uint32_t uart_max_baud;

    /* Crystal: UART clock divider register; xtal_fixed_mhz != 0 means no need to read. */
    uint32_t uart_clkdiv_reg;
    unsigned xtal_div; /* 2 on ESP8266, else 1 */
    unsigned xtal_fixed_mhz;

    struct esp_spi_regs spi;

    /* ROM capabilities. */
    unsigned rom_status_bytes;  /* 2 on ESP8266, 4 otherwise */
    bool rom_begin_has_encrypt; /* FLASH_BEGIN takes a 5th word in the ROM */
    bool rom_has_compress;      /* FLASH_DEFL_* */
    bool rom_has_md5;           /* SPI_FLASH_MD5 */
    bool rom_has_spi_attach;    /* SPI_ATTACH / SPI_SET_PARAMS */
    bool rom_has_change_baud;
    bool rom_has_security_info; /* GET_SECURITY_INFO */
    bool rom_has_read_flash_slow;
    size_t security_info_len; /* 20, 12 on S2, 0 if none */

    /* Stub capabilities. */
    bool stub_supported;
    bool stub_32bit_addr; /* flash above 16 MB through the stub */

    /* Flash size/frequency codes (image header byte 3). */
    const uint32_t *size_codes; /* size in bytes per code index, 0 = invalid */
    size_t n_size_codes;
    const unsigned *freq_mhz; /* MHz per frequency code index (16 entries), 0 = invalid */

    /* Register written with value 0/mask 0 just to get a delay; UART date reg. */
    uint32_t uart_date_reg;

    /* USB-Serial/JTAG watchdog disable (0 = not applicable). */
    uint32_t rtc_wdt_wprotect, rtc_wdt_config0, swd_wprotect, swd_conf;
    uint32_t swd_wkey, swd_auto_feed_bit; /* bit number: SWD_CONF |= 1u << swd_auto_feed_bit */
    /* RTC_CNTL_OPTION1 force-download bit to clear before hard reset (S3), 0 = none. */
    uint32_t force_download_reg;
    /* The ROM's console (PROTOCOL-ROM.md 3.6): a .bss byte saying which interface the
     * ROM talks on, read when the port's VID/PID are unknown; 0 = not readable.
     * uart_no_jtag / uart_no_otg: its value for USB-Serial/JTAG / USB-OTG, 0 = none. */
    uint32_t uart_no_reg;
    uint8_t uart_no_jtag, uart_no_otg;
    /* Hard reset over USB-OTG (DTR/RTS reset nothing): RTC watchdog registers and the
     * GPIO strap register (bit 3 SPI_BOOT); 0 = the chip has no USB-OTG ROM console. */
    uint32_t otg_wdt_wprotect, otg_wdt_config0, otg_wdt_config1, gpio_strap_reg;
};

const char *esp_chip_to_string(enum esp_chip chip);

/* Descriptor of chip, NULL if out of range. */
const struct esp_chip_desc *esp_chip_get(enum esp_chip chip);

/* Lookups; NULL when unknown. Name matching is case-insensitive and accepts
 * "esp32s3", "esp32-s3", "ESP32-S3". */
const struct esp_chip_desc *esp_chip_by_magic(uint32_t magic);
const struct esp_chip_desc *esp_chip_by_image_id(int image_chip_id);
const struct esp_chip_desc *esp_chip_by_name(const char *name);

/*
 * Decodes the MAC from the register values read in mac_regs order.
 * Returns 0, or -EINVAL when the values cannot be decoded (e.g. ESP8266 with an unknown OUI).
 */
int esp_chip_decode_mac(const struct esp_chip_desc *chip, const uint32_t *vals, size_t n,
                        uint8_t mac[6]);

/* Chip revision as major*100+minor from rev_regs values; -ENOTSUP if the chip has none. */
int esp_chip_decode_revision(const struct esp_chip_desc *chip, const uint32_t *vals, size_t n);

/* Crystal estimate in MHz from the UART clock divider register and the baud in force,
 * normalised to 26/40/48. */
unsigned esp_chip_decode_xtal(const struct esp_chip_desc *chip, uint32_t clkdiv_reg, uint32_t baud);

/* Flash size in bytes from the RDID result as read from SPI W0 (bits 0-7 manufacturer,
 * 8-15 memory type, 16-23 capacity code). Returns 0 when unknown. */
uint32_t esp_flash_size_from_jedec(uint32_t jedec_id);

/* Size code for bytes on this chip (header nibble), -EINVAL if not encodable. */
int esp_chip_flash_size_code(const struct esp_chip_desc *chip, uint32_t bytes);
/* Bytes for a size code, 0 if invalid. */
uint32_t esp_chip_flash_size_from_code(const struct esp_chip_desc *chip, unsigned code);
/* Frequency code for MHz, -EINVAL if not encodable. */
int esp_chip_flash_freq_code(const struct esp_chip_desc *chip, unsigned mhz);

/* Parsers for user input: "4MB"/"4M"/"512KB"/"detect"/"keep" (returns 0 for detect/keep
 * with *keep set), "dio"/"qio"/"qout"/"dout" -> 0..3, "40m"/"80m"/"26m"/"20m" -> MHz. */
int esp_parse_flash_size(const char *s, uint32_t *bytes, bool *keep);
int esp_parse_flash_mode(const char *s, bool *keep);
int esp_parse_flash_freq(const char *s, unsigned *mhz, bool *keep);
const char *esp_flash_mode_to_string(unsigned mode);

/*
 * ESP8266 ROM erase-size workaround (esptool's formula): the erase_size word to
 * send in FLASH_BEGIN so that the buggy ROM erases exactly the sectors covering
 * [offset, offset+size).
 */
uint32_t esp8266_rom_erase_size(uint32_t offset, uint32_t size);

/*
 * Model of what the ESP8266 ROM actually erases for a requested erase_size:
 * returns the number of sectors erased starting at offset's sector. Used by the
 * virtual board and by tests.
 */
uint32_t esp8266_rom_erased_sectors(uint32_t offset, uint32_t erase_size);

#endif
