/*
 * ota_tcp: raw TCP-OTA client for NONOS SDK dual-image (user1/user2) devices
 * running I. Marshall's tcp_ota (PROTOCOL-OTA.md §5). The device listens on
 * TCP 65056; the station connects and sends
 *   "OTA\r\n" "GetNextFlash\r\n"                 (one write)
 *   <- "user1.bin\r\n" | "user2.bin\r\n"          (the slot NOT running)
 *   "FirmwareLength: <n>\r\n"
 *   <- "Ready\r\n" | "ERR: ..."
 *   <n raw bytes>
 *   <- "Flash upgrade success. Rebooting in 2s.\r\n" | "ERR: ..."
 * No MD5, no auth. Blocking with timeouts and a cancel fd; no globals.
 */
#ifndef OTA_TCP_H
#define OTA_TCP_H

#include <stddef.h>
#include <stdint.h>

#include "ota_common.h"

#define OTA_TCP_PORT 65056
#define OTA_TCP_FIRMWARE_SIZE_DEFAULT 503808u /* the device's default FIRMWARE_SIZE */

enum ota_tcp_slot {
    OTA_TCP_SLOT_NONE = 0,
    OTA_TCP_SLOT_USER1,
    OTA_TCP_SLOT_USER2,
};

const char *ota_tcp_slot_to_string(enum ota_tcp_slot slot);

struct ota_tcp_config {
    const char *host;       /* IPv4 literal */
    uint16_t port;          /* 0: 65056 */
    int connect_timeout_ms; /* 0: 5000 */
    int reply_timeout_ms;   /* per control reply (reference script: 5 s); 0: 5000 */
    int result_timeout_ms;  /* after the last byte; 0: 30000 */
    ota_log_fn log;
    void *log_ctx;
};

/* Parses the device's slot reply line (without CRLF): exact "user1.bin" / "user2.bin". */
enum ota_tcp_slot ota_tcp_parse_slot(const char *line);

/*
 * Pushes user1 or user2, whichever the device asks for (both must be given;
 * they are the same firmware linked for the two slots). *slot_out (may be
 * NULL) gets the slot written. 0 on success, else -errno with *err:
 * -EBUSY another session, -EFBIG too big, -EINVAL image refused (header
 * checks), -EIO flash failure or other ERR, -EPROTO unexpected reply.
 */
int ota_tcp_push(const struct ota_tcp_config *cfg, const uint8_t *user1, size_t user1_len,
                 const uint8_t *user2, size_t user2_len, enum ota_tcp_slot *slot_out,
                 ota_progress_fn progress, void *progress_ctx, int cancel_fd,
                 struct ota_error *err);

#endif
