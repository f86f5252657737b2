/*
 * esp_error: the error vocabulary of the protocol library.
 *
 * Fallible functions return int: >= 0 success, -errno failure from a small set
 * (-ETIMEDOUT no reply, -EPROTO malformed frame, -EBADMSG checksum/MD5 mismatch,
 * -ENODEV port gone, -ECANCELED, -EINVAL, -ENOTSUP, -ENOMEM, -EIO device error).
 * What errno cannot carry (stage, opcode, the device's own status bytes,
 * flash address) goes into an optional struct esp_error the caller owns.
 * Every error carries a human message (what failed) and advice (what to check),
 * written for a technician, not a programmer.
 */
#ifndef ESP_ERROR_H
#define ESP_ERROR_H

#include <stdbool.h>
#include <stdint.h>

enum esp_stage {
    ESP_STAGE_NONE = 0,
    ESP_STAGE_OPEN,     /* opening the port / transport */
    ESP_STAGE_RESET,    /* reset into the ROM bootloader */
    ESP_STAGE_SYNC,     /* SYNC handshake */
    ESP_STAGE_DETECT,   /* chip detection */
    ESP_STAGE_IDENTIFY, /* MAC, crystal, security info, flash id */
    ESP_STAGE_STUB,     /* flasher stub upload */
    ESP_STAGE_BAUD,     /* CHANGE_BAUDRATE */
    ESP_STAGE_ATTACH,   /* SPI_ATTACH / SPI_SET_PARAMS */
    ESP_STAGE_PREPARE,  /* image validation and safety checks before writing */
    ESP_STAGE_ERASE,    /* erase region / chip */
    ESP_STAGE_WRITE,    /* FLASH_(DEFL_)BEGIN/DATA/END */
    ESP_STAGE_VERIFY,   /* SPI_FLASH_MD5 comparison */
    ESP_STAGE_READ,     /* READ_FLASH */
    ESP_STAGE_FINISH,   /* reset after flashing */
    ESP_STAGE_COUNT
};

const char *esp_stage_to_string(enum esp_stage stage);

struct esp_error {
    int code;             /* negative errno, 0 when no error */
    enum esp_stage stage; /* where it happened */
    uint8_t op;           /* opcode of the command involved, 0 if none */
    bool has_device_status;
    uint8_t status; /* first status byte as the device sent it */
    uint8_t error;  /* second status byte as the device sent it */
    bool has_address;
    uint32_t address;  /* flash address involved */
    char message[256]; /* what failed, e.g. "no serial data received" */
    char advice[256];  /* what to check, e.g. "check the cable and the auto-reset circuit" */
};

/* Clears *err (NULL allowed). */
void esp_error_clear(struct esp_error *err);

/*
 * Fills *err (NULL allowed) with code, stage, message (printf-style) and advice
 * (may be NULL). Returns code so callers can write `return esp_error_set(...)`.
 * Keeps an already-set error if *err->code != 0 and keep_first is true
 * (see esp_error_set_if_unset).
 */
int esp_error_set(struct esp_error *err, int code, enum esp_stage stage, const char *advice,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Same as esp_error_set but does nothing (still returns code) if err->code is already set. */
int esp_error_set_if_unset(struct esp_error *err, int code, enum esp_stage stage,
                           const char *advice, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Records the device's raw status bytes and opcode on an error. */
void esp_error_set_device(struct esp_error *err, uint8_t op, uint8_t status, uint8_t error);

/* Records the flash address on an error. */
void esp_error_set_address(struct esp_error *err, uint32_t address);

/* Human text for a ROM error byte (second status byte), e.g. 0x08 -> "flash write error". */
const char *esp_rom_error_to_string(uint8_t code);

/* Human text for a stub error code (first status byte, 0xC0..0xCB, 0xFF). */
const char *esp_stub_error_to_string(uint8_t code);

/* strerror-like short name for the library's errno vocabulary ("timeout", "port gone", ...). */
const char *esp_errno_to_string(int code);

#endif
