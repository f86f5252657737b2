/*
 * esp_loader: the serial flashing engine. A caller-owned context drives one
 * board through its ROM bootloader (and the flasher stub once uploaded) over a
 * struct transport. No globals, no threads, no logging of its own: it calls
 * the injected log and progress callbacks.
 *
 * Typical use:
 *   esp_loader_config_init(&cfg); cfg.baud = 921600; cfg.stub_dir = "...";
 *   l = esp_loader_new(transport, &cfg);
 *   esp_loader_connect(l, &err);       reset + SYNC + chip detection
 *   esp_loader_identify(l, &err);      MAC, crystal, security, revision
 *   esp_loader_start(l, &err);         stub upload (or ROM fallback), baud, SPI attach + flash size
 *   esp_loader_flash(l, regions, n, &opts, &err);  write + MD5 verify
 *   esp_loader_reset(l, ESP_AFTER_HARD_RESET, &err);
 *   esp_loader_free(l);
 *
 * Invariants: after any error the context is still valid; the caller may
 * retry a step or free it. The transport is borrowed, never closed here.
 */
#ifndef ESP_LOADER_H
#define ESP_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_chip.h"
#include "esp_error.h"
#include "transport.h"

/* How to get into the bootloader (esptool's --before). */
enum esp_before {
    ESP_BEFORE_DEFAULT_RESET =
        0,                /* auto: USB-JTAG sequence for 303a:1001, else tight/classic cycle */
    ESP_BEFORE_USB_RESET, /* USB-Serial/JTAG sequence only */
    ESP_BEFORE_NO_RESET,  /* no reset, SYNC only */
    ESP_BEFORE_NO_RESET_NO_SYNC, /* assume a loader is already talking */
    ESP_BEFORE_MANUAL,           /* call cfg.manual_boot to ask a human, then SYNC */
};

/* What to do at the end (esptool's --after). */
enum esp_after {
    ESP_AFTER_HARD_RESET = 0, /* RTS pulse (S3: clear force-download first) */
    ESP_AFTER_SOFT_RESET,     /* ROM: FLASH_BEGIN(0,0)+FLASH_END(1); stub: ESP8266 RUN_USER_CODE */
    ESP_AFTER_NO_RESET,       /* leave the chip in the loader */
    ESP_AFTER_NO_RESET_STUB,  /* leave the stub running */
};

/* What to do when the transport has no DTR/RTS (TCP, plain fd). */
enum esp_no_lines_policy {
    ESP_NO_LINES_NO_RESET = 0, /* just SYNC (board must already be in download mode) */
    ESP_NO_LINES_MANUAL,       /* call cfg.manual_boot */
};

const char *esp_before_to_string(enum esp_before v);
const char *esp_after_to_string(enum esp_after v);
int esp_before_from_string(
    const char *s); /* "default-reset", "usb-reset", "no-reset", ... ; -EINVAL */
int esp_after_from_string(
    const char *s); /* "hard-reset", "soft-reset", "no-reset", "no-reset-stub" */

enum esp_log_level { ESP_LOG_ERROR = 0, ESP_LOG_WARN, ESP_LOG_INFO, ESP_LOG_DEBUG };

typedef void (*esp_log_fn)(void *ctx, enum esp_log_level level, const char *msg);

struct esp_progress {
    enum esp_stage stage;
    unsigned region_index; /* 0-based */
    unsigned region_count;
    uint32_t address;    /* region start */
    uint64_t done;       /* uncompressed bytes of this region done */
    uint64_t total;      /* uncompressed bytes of this region */
    uint64_t wire_bytes; /* bytes written to the transport so far in this session */
};

typedef void (*esp_progress_fn)(void *ctx, const struct esp_progress *p);

/* Asks a human to put the board into download mode (hold BOOT, tap EN).
 * Returns 0 when they say done, <0 to give up. */
typedef int (*esp_manual_boot_fn)(void *ctx);

struct esp_loader_config {
    enum esp_before before;
    enum esp_no_lines_policy no_lines;
    int connect_attempts;     /* 7; 0 = forever */
    int sync_tries;           /* per attempt, 5 */
    int reset_delay_ms;       /* 0 = cycle 50/550 ms as esptool */
    uint32_t initial_baud;    /* 115200 */
    uint32_t baud;            /* target baud after connect; 0 = stay at initial */
    bool use_stub;            /* true */
    const char *stub_dir;     /* directory of stub JSONs; NULL = ROM only */
    uint32_t flash_size;      /* 0 = detect through JEDEC id */
    int write_block_attempts; /* 3 */
    double timeout_scale;     /* multiply every device timeout; 1.0 */
    /* ESP8266 ROM: esp_loader_erase_region may erase past the range when the ROM's
     * erase bug leaves no exact way (a lone sector); false: refuse (-EINVAL). */
    bool allow_rom_overerase;
    esp_log_fn log;
    void *log_ctx;
    esp_progress_fn progress;
    void *progress_ctx;
    esp_manual_boot_fn manual_boot;
    void *manual_boot_ctx;
};

/* What a job that went on through the ROM loader after the stub did not start
 * (esp_chip_info.stub_fallback) records as its warning. */
#define ESP_STUB_FALLBACK_WARNING "stub did not start; flashed through the ROM loader, slower"

/* Fills cfg with the defaults above. */
void esp_loader_config_init(struct esp_loader_config *cfg);

struct esp_chip_info {
    const struct esp_chip_desc *chip; /* NULL until connected */
    uint32_t magic;
    int revision; /* major*100+minor, -1 unknown */
    bool mac_valid;
    uint8_t mac[6];
    unsigned xtal_mhz;   /* 0 unknown */
    uint32_t flash_id;   /* RDID, 0 unknown */
    uint32_t flash_size; /* bytes, detected or configured; 0 unknown */
    bool security_info_valid;
    uint32_t security_flags;
    uint8_t flash_crypt_cnt;
    bool secure_boot;
    bool flash_encryption;
    bool secure_download_mode;
    bool stub_running;
    /* The stub was uploaded but did not start; the chip was reset into the ROM
     * loader, which does the work (front ends record ESP_STUB_FALLBACK_WARNING). */
    bool stub_fallback;
    bool usb_jtag; /* 303a:1001, or the ROM said so (uart_no) when VID/PID are unknown */
    bool usb_otg;  /* 303a:<chip id> (ROM USB-OTG CDC), or the ROM said so (uart_no) */
    uint32_t baud; /* rate in force */
};

struct esp_loader_stats {
    unsigned connect_attempts; /* reset cycles used */
    unsigned sync_tries;
    unsigned block_retries;  /* data blocks resent */
    unsigned frames_dropped; /* junk/unparseable frames ignored */
    uint64_t wire_tx;        /* bytes written to the transport (after SLIP) */
    uint64_t wire_rx;
    /* Region bytes esp_loader_flash found already on flash and did not send
     * (esp_flash_opts.diff): whole regions that matched and unchanged sectors. */
    uint64_t skipped_bytes;
};

/* A region to write. data is borrowed. zdata (optional, borrowed) is a zlib
 * stream of data: esp_region_compress()'s level 9, or any other zlib encoder's
 * (the catalog caches zopfli's); it is inflated and checked against data's
 * length before use. When absent and compression is used, the engine
 * compresses itself. */
struct esp_region {
    uint32_t offset;
    const uint8_t *data;
    size_t len;
    const uint8_t *zdata;
    size_t zlen;
    const char *name; /* for messages, optional */
    /* Optional, borrowed: the flash MD5 over [offset, offset + len rounded up to 4)
     * the caller just asked the chip for (esp_loader_flash_md5); saves the diff
     * re-flash that request. Only a hint: the result is verified anyway. */
    const uint8_t *flash_md5;
};

/* zlib level 9 of data; *out owned by caller (free()). Returns 0 or -ENOMEM. */
int esp_region_compress(const uint8_t *data, size_t len, uint8_t **out, size_t *out_len);

struct esp_flash_opts {
    bool compress;         /* use FLASH_DEFL_* where supported (true) */
    bool verify;           /* MD5 every region after writing (true) */
    bool erase_all;        /* erase the whole chip first (needs stub) */
    int flash_mode;        /* -1 keep, else 0..3 */
    int flash_size_code;   /* -1 keep */
    int flash_freq_code;   /* -1 keep */
    bool skip_image_check; /* don't refuse images for another chip/revision */
    /* Re-flash only what changed (true): with the stub, on a sector-aligned region,
     * without flash encryption and erase_all, the engine compares the flash with the
     * region by MD5s of ranges (SPI_FLASH_MD5, bisection down to 4 KiB sectors),
     * writes only the sectors that differ, then verifies the whole region's MD5
     * (even with verify off); a region already on flash is not written at all. Any
     * doubt (an MD5 request fails, too many differ, the verify fails) writes the
     * whole region as without it. stats.skipped_bytes counts what was not sent. */
    bool diff;
};

void esp_flash_opts_init(struct esp_flash_opts *opts);

/* Creates a context on a borrowed transport; NULL on allocation failure. */
struct esp_loader *esp_loader_new(struct transport *t, const struct esp_loader_config *cfg);
void esp_loader_free(struct esp_loader *l); /* NULL allowed */

/* Reset into the bootloader, SYNC, detect the chip. On failure the error
 * carries the diagnosis from the captured boot output. */
int esp_loader_connect(struct esp_loader *l, struct esp_error *err);

/* Security info, MAC, crystal, revision. Needs connect. */
int esp_loader_identify(struct esp_loader *l, struct esp_error *err);

/* Upload the stub if configured and available (logs a warning and stays on
 * the ROM when not), change baud if configured, attach SPI flash and set its
 * size (detected via JEDEC unless configured). Where the ROM takes
 * CHANGE_BAUDRATE (ESP32 family, serial port) the baud changes first and the
 * stub goes up at the new rate; if that upload is garbled (no or corrupt
 * replies) the start fails at stage BAUD (-ETIMEDOUT, -EPROTO, -EBADMSG) with
 * advice to lower the rate. On the ESP8266 the stub changes the baud after it
 * started. A stub that is uploaded but does not start: where the port can reset
 * the board, the chip is reset into the ROM loader, which does the work
 * (info.stub_fallback set, warned); where it cannot, fails at stage STUB with
 * advice to flash without the stub. */
int esp_loader_start(struct esp_loader *l, struct esp_error *err);

/* Changes cfg.use_stub before esp_loader_start (a front end that learns only after
 * identify whether the firmware wants the ROM loader only). */
void esp_loader_set_use_stub(struct esp_loader *l, bool use_stub);

/* Individual steps (esp_loader_start calls them). */
int esp_loader_run_stub(struct esp_loader *l, struct esp_error *err);
int esp_loader_change_baud(struct esp_loader *l, uint32_t baud, struct esp_error *err);
int esp_loader_attach_flash(struct esp_loader *l, struct esp_error *err);

const struct esp_chip_info *esp_loader_info(const struct esp_loader *l);
const struct esp_loader_stats *esp_loader_stats(const struct esp_loader *l);

/* Register access. */
int esp_loader_read_reg(struct esp_loader *l, uint32_t addr, uint32_t *value,
                        struct esp_error *err);
int esp_loader_write_reg(struct esp_loader *l, uint32_t addr, uint32_t value, uint32_t mask,
                         uint32_t delay_us, struct esp_error *err);

/* Safety checks (chip id/revision of images at any offset that parse as images,
 * fits flash, no overlap). Called by esp_loader_flash; exposed for dry runs. */
int esp_loader_check_regions(struct esp_loader *l, const struct esp_region *regions, size_t n,
                             const struct esp_flash_opts *opts, struct esp_error *err);

/* Write (and verify per opts) every region. On the ESP8266 ROM the regions are
 * written in ascending offset order (progress and errors still name the
 * caller's index), so a sector the ROM's erase bug takes from the next region
 * is rewritten afterwards; an extra erased sector that belongs to no region is
 * warned about. */
int esp_loader_flash(struct esp_loader *l, const struct esp_region *regions, size_t n,
                     const struct esp_flash_opts *opts, struct esp_error *err);

/* MD5 of flash [offset, offset+len) computed on the chip. -ENOTSUP on ESP8266 ROM / SDM. */
int esp_loader_flash_md5(struct esp_loader *l, uint32_t offset, uint32_t len, uint8_t md5[16],
                         struct esp_error *err);

/* Compare regions against flash by MD5; -EBADMSG with the region in err on mismatch. */
int esp_loader_verify(struct esp_loader *l, const struct esp_region *regions, size_t n,
                      struct esp_error *err);

/* Erase; erase_all needs the stub. offset/len must be multiples of 4096. On the
 * ESP8266 ROM a range its erase bug cannot erase exactly (even when split at a
 * 64 KiB boundary) is refused with -EINVAL at stage PREPARE unless
 * cfg.allow_rom_overerase. */
int esp_loader_erase_region(struct esp_loader *l, uint32_t offset, uint32_t len,
                            struct esp_error *err);
int esp_loader_erase_all(struct esp_loader *l, struct esp_error *err);

/* Read flash into out (stub READ_FLASH; ROM READ_FLASH_SLOW on ESP32 family). */
int esp_loader_read_flash(struct esp_loader *l, uint32_t offset, uint32_t len, uint8_t *out,
                          struct esp_error *err);

/* Leave the loader as requested. */
int esp_loader_reset(struct esp_loader *l, enum esp_after after, struct esp_error *err);

#endif
