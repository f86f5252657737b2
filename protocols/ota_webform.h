/*
 * ota_webform: push an image to a device's HTTPUpdateServer page
 * (ESP8266HTTPUpdateServer / ESP32 HTTPUpdateServer, PROTOCOL-OTA.md §3).
 *
 * Request: POST <path> HTTP/1.1, multipart/form-data with one part
 *   Content-Disposition: form-data; name="firmware"; filename="firmware.bin"
 *   Content-Type: application/octet-stream
 * (name "filesystem" for an FS image; the device treats any other name as
 * the application), optional Basic auth, no Expect: 100-continue.
 * The device answers 200 on failure too: the verdict is the body text
 * ("Update Success! Rebooting..." vs "Update error: ..."; core < 2.4.0:
 * "Update Failed!"). 401 means wrong or missing credentials.
 * Blocking, with per-stage timeouts and a cancel fd; no globals.
 */
#ifndef OTA_WEBFORM_H
#define OTA_WEBFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_common.h"

struct ota_webform_config {
    const char *host; /* IPv4 literal */
    uint16_t port;    /* 0: 80 */
    const char *path; /* NULL: "/update" */
    const char *user; /* Basic auth, used only when both user and password are set */
    const char *password;
    bool filesystem;        /* field name "filesystem" instead of "firmware" */
    const char *filename;   /* NULL: "firmware.bin" (must not contain '"', CR or LF) */
    int connect_timeout_ms; /* 0: 5000 */
    int io_timeout_ms;      /* per send/receive progress; 0: 10000 */
    int result_timeout_ms;  /* after the last byte (the device finishes flashing); 0: 60000 */
    ota_log_fn log;
    void *log_ctx;
};

/*
 * Builds the request head and the multipart preamble/epilogue around an image
 * of image_len bytes: head_out gets the HTTP head plus the part preamble
 * (everything before the image bytes), tail_out the epilogue. boundary is the
 * multipart boundary to use (letters, digits, '-' only; <= 60 chars).
 * Returns 0 or -EINVAL/-ENOSPC. Exposed for tests.
 */
int ota_webform_build(const struct ota_webform_config *cfg, const char *boundary, size_t image_len,
                      char *head_out, size_t head_cap, char *tail_out, size_t tail_cap);

enum ota_webform_result {
    OTA_WEBFORM_SUCCESS = 0,
    OTA_WEBFORM_FAILED,  /* body has "Update error: ..." or "Update Failed!" */
    OTA_WEBFORM_UNKNOWN, /* neither text found */
};

/* Classifies a response body; *text gets the error text (printable) when FAILED. */
enum ota_webform_result ota_webform_classify_body(const char *body, size_t len, char *text,
                                                  size_t cap);

/*
 * Pushes the image. 0 on "Update Success!", else -errno with *err:
 * -EACCES 401 (wrong/missing credentials), -ENOENT 404 (no update page at
 * path), -ENOSPC/-EBADMSG/-EIO the device's "Update error: ..." text,
 * -EPROTO unexpected answer, -ETIMEDOUT, -ECONNREFUSED, -ECANCELED.
 */
int ota_webform_push(const struct ota_webform_config *cfg, const uint8_t *image, size_t len,
                     ota_progress_fn progress, void *progress_ctx, int cancel_fd,
                     struct ota_error *err);

#endif
