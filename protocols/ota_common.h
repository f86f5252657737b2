/*
 * ota_common: what every network-OTA module of the protocol library shares:
 * the error detail record (struct ota_error: -errno code, stage, the device's
 * own code/text, a message saying what failed and advice saying what to do),
 * the injected log callback, the progress callback and hash helpers.
 *
 * Invariants: no globals, no threads, no logging of its own (modules call the
 * log callback the caller passed, or nothing when it is NULL). Every string
 * returned by a *_to_string() is static.
 */
#ifndef OTA_COMMON_H
#define OTA_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ota_chip { OTA_CHIP_ESP8266 = 0, OTA_CHIP_ESP32, OTA_CHIP_COUNT };

const char *ota_chip_to_string(enum ota_chip chip);

enum ota_stage {
    OTA_STAGE_NONE = 0,
    OTA_STAGE_PREPARE,   /* image checks, sockets, configuration */
    OTA_STAGE_CONNECT,   /* TCP connect to the device */
    OTA_STAGE_INVITE,    /* espota UDP invitation */
    OTA_STAGE_AUTH,      /* espota authentication */
    OTA_STAGE_ACCEPT,    /* waiting for the device's TCP connect-back */
    OTA_STAGE_HANDSHAKE, /* TCP-OTA / web-form request and control lines */
    OTA_STAGE_TRANSFER,  /* streaming the image */
    OTA_STAGE_RESULT,    /* waiting for the device's verdict */
    OTA_STAGE_REQUEST,   /* parsing a device's HTTP request (pull) */
    OTA_STAGE_IMAGE,     /* image format / signature */
    OTA_STAGE_COUNT
};

const char *ota_stage_to_string(enum ota_stage stage);

struct ota_error {
    int code;             /* negative errno, 0 when no error */
    enum ota_stage stage; /* where it happened */
    bool has_device_code;
    int device_code;       /* e.g. ESP8266 Updater ERROR[<n>] */
    char device_text[128]; /* the device's own words, verbatim (sanitised to printable ASCII) */
    char message[256];     /* what failed */
    char advice[256];      /* what to check */
};

void ota_error_clear(struct ota_error *err);

/* Fills *err (NULL allowed); returns code so callers can `return ota_error_set(...)`. */
int ota_error_set(struct ota_error *err, int code, enum ota_stage stage, const char *advice,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Records the device's own text (made printable) and, if >= 0, its numeric code. */
void ota_error_set_device(struct ota_error *err, int device_code, const char *text, size_t len);

/* Short name of an errno of the OTA vocabulary ("timeout", "auth", "no space", ...). */
const char *ota_errno_to_string(int code);

enum ota_log_level { OTA_LOG_DEBUG = 0, OTA_LOG_INFO, OTA_LOG_WARN, OTA_LOG_COUNT };

const char *ota_log_level_to_string(enum ota_log_level level);

/* The caller's logger: one line, no trailing newline. */
typedef void (*ota_log_fn)(void *ctx, enum ota_log_level level, const char *line);

/* Progress of a push: bytes sent (or acknowledged) of total. */
typedef void (*ota_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Calls log(ctx, level, formatted line) when log is not NULL. */
void ota_logf(ota_log_fn log, void *ctx, enum ota_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Lowercase hex digests through libcrypto. Return 0, or -ENOMEM/-EIO. */
int ota_md5_hex(const void *data, size_t len, char out[33]);
int ota_sha256_hex(const void *data, size_t len, char out[65]);

/* Lowercase hex of bytes; out must hold 2*len+1. */
void ota_hex_lower(const uint8_t *bytes, size_t len, char *out);

/* True if s is exactly n hex digits (either case). */
bool ota_is_hex(const char *s, size_t n);

#endif
