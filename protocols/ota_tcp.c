/*
 * ota_tcp: raw TCP-OTA client (PROTOCOL-OTA.md §5, port 65056).
 *
 * Owns: the exact control strings, the user1/user2 choice from the device's
 * reply, mapping of each "ERR: ..." string to -errno and advice.
 * Invariant: match on exact lines / documented prefixes only.
 */
#include "ota_tcp.h"

#include "ota_net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *ota_tcp_slot_to_string(enum ota_tcp_slot slot)
{
    switch (slot) {
    case OTA_TCP_SLOT_USER1:
        return "user1";
    case OTA_TCP_SLOT_USER2:
        return "user2";
    default:
        return "none";
    }
}

enum ota_tcp_slot ota_tcp_parse_slot(const char *line)
{
    if (strcmp(line, "user1.bin") == 0)
        return OTA_TCP_SLOT_USER1;
    if (strcmp(line, "user2.bin") == 0)
        return OTA_TCP_SLOT_USER2;
    return OTA_TCP_SLOT_NONE;
}

static int device_err(struct ota_error *err, enum ota_stage stage, const char *host,
                      const char *line)
{
    int rc = -EIO;
    const char *advice = "retry; check the image is a user1/user2 build for this board";
    if (strstr(line, "Already Exists")) {
        rc = -EBUSY;
        advice = "another upload to this board is running: wait for it to finish";
    } else if (strstr(line, "too big")) {
        rc = -EFBIG;
        advice = "the image exceeds the device's FIRMWARE_SIZE slot: build a smaller image";
    } else if (strstr(line, "Invalid firmware length") || strstr(line, "Unexpected header") ||
               strstr(line, "Invalid protocol")) {
        rc = -EPROTO;
        advice = "the device did not understand the request: is this a tcp_ota device?";
    } else if (strstr(line, "allocate")) {
        rc = -ENOMEM;
        advice = "the device is out of memory: reboot it and retry";
    } else if (strstr(line, "magic") || strstr(line, "header invalid") ||
               strstr(line, "entry address") || strstr(line, "start offset")) {
        rc = -EINVAL;
        advice = "the device rejected the image header: send the user1.bin/user2.bin built "
                 "for the NONOS dual-image layout (first byte 0xEA)";
    } else if (strstr(line, "Flash failed")) {
        rc = -EIO;
        advice = "writing the flash failed on the device: retry; check its power supply";
    }
    ota_error_set_device(err, -1, line, strlen(line));
    return ota_error_set(err, rc, stage, advice, "%s: %s", host, line);
}

static int line_error(struct ota_error *err, int rc, enum ota_stage stage, const char *host,
                      const char *what)
{
    if (rc == -ECANCELED)
        return ota_error_set(err, rc, stage, NULL, "canceled");
    if (rc == -ETIMEDOUT)
        return ota_error_set(err, rc, stage, "the board may be busy or not running tcp_ota",
                             "no %s from %s", what, host);
    if (rc == -EMSGSIZE)
        return ota_error_set(err, -EPROTO, stage, "is this a tcp_ota device?",
                             "overlong %s from %s", what, host);
    return ota_error_set(err, rc, stage, "the board dropped the connection: retry",
                         "connection to %s lost waiting for %s: %s", host, what, strerror(-rc));
}

int ota_tcp_push(const struct ota_tcp_config *cfg, const uint8_t *user1, size_t user1_len,
                 const uint8_t *user2, size_t user2_len, enum ota_tcp_slot *slot_out,
                 ota_progress_fn progress, void *progress_ctx, int cancel_fd, struct ota_error *err)
{
    ota_error_clear(err);
    if (slot_out)
        *slot_out = OTA_TCP_SLOT_NONE;
    if (!user1 || !user2 || user1_len == 0 || user2_len == 0)
        return ota_error_set(err, -EINVAL, OTA_STAGE_PREPARE,
                             "give both user1.bin and user2.bin of the same firmware",
                             "raw TCP-OTA needs both slot images");
    int connect_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 5000;
    int reply_ms = cfg->reply_timeout_ms ? cfg->reply_timeout_ms : 5000;
    int result_ms = cfg->result_timeout_ms ? cfg->result_timeout_ms : 30000;
    uint16_t port = cfg->port ? cfg->port : OTA_TCP_PORT;
    const char *host = cfg->host ? cfg->host : "";
    struct sockaddr_in peer;
    if (ota_net_addr(cfg->host, port, &peer) < 0)
        return ota_error_set(err, -EINVAL, OTA_STAGE_PREPARE, "give the board's IPv4 address",
                             "'%s' is not an IPv4 address", host);
    int fd = -1;
    int rc = ota_net_connect(&peer, ota_now_ms() + connect_ms, cancel_fd, &fd);
    if (rc < 0)
        return ota_error_set(err, rc, OTA_STAGE_CONNECT,
                             rc == -ECANCELED ? NULL
                                              : "is the board on the network and running "
                                                "tcp_ota (port 65056)?",
                             "cannot connect to %s:%u: %s", host, port, strerror(-rc));
    char line[128];
    static const char hello[] = "OTA\r\nGetNextFlash\r\n";
    rc = ota_net_send_all(fd, hello, sizeof(hello) - 1, ota_now_ms() + reply_ms, cancel_fd);
    if (rc < 0) {
        rc = line_error(err, rc, OTA_STAGE_HANDSHAKE, host, "request");
        goto out;
    }
    rc = ota_net_recv_line(fd, line, sizeof(line), ota_now_ms() + reply_ms, cancel_fd);
    if (rc < 0) {
        rc = line_error(err, rc, OTA_STAGE_HANDSHAKE, host, "slot reply");
        goto out;
    }
    enum ota_tcp_slot slot = ota_tcp_parse_slot(line);
    if (slot == OTA_TCP_SLOT_NONE) {
        rc = strncmp(line, "ERR:", 4) == 0
                 ? device_err(err, OTA_STAGE_HANDSHAKE, host, line)
                 : ota_error_set(err, -EPROTO, OTA_STAGE_HANDSHAKE, "is this a tcp_ota device?",
                                 "unexpected slot reply from %s: '%.60s'", host, line);
        goto out;
    }
    const uint8_t *img = slot == OTA_TCP_SLOT_USER1 ? user1 : user2;
    size_t len = slot == OTA_TCP_SLOT_USER1 ? user1_len : user2_len;
    ota_logf(cfg->log, cfg->log_ctx, OTA_LOG_INFO, "tcp-ota: %s asks for %s.bin (%zu bytes)", host,
             ota_tcp_slot_to_string(slot), len);
    char hdr[48];
    int hn = snprintf(hdr, sizeof(hdr), "FirmwareLength: %zu\r\n", len);
    rc = ota_net_send_all(fd, hdr, (size_t)hn, ota_now_ms() + reply_ms, cancel_fd);
    if (rc == 0)
        rc = ota_net_recv_line(fd, line, sizeof(line), ota_now_ms() + reply_ms, cancel_fd);
    if (rc < 0) {
        rc = line_error(err, rc, OTA_STAGE_HANDSHAKE, host, "Ready");
        goto out;
    }
    if (strcmp(line, "Ready") != 0) {
        rc = strncmp(line, "ERR:", 4) == 0
                 ? device_err(err, OTA_STAGE_HANDSHAKE, host, line)
                 : ota_error_set(err, -EPROTO, OTA_STAGE_HANDSHAKE, "is this a tcp_ota device?",
                                 "unexpected reply from %s: '%.60s'", host, line);
        goto out;
    }
    size_t sent = 0;
    while (sent < len) {
        size_t n = len - sent > 4096 ? 4096 : len - sent;
        rc = ota_net_send_all(fd, img + sent, n, ota_now_ms() + reply_ms, cancel_fd);
        if (rc < 0)
            break;
        sent += n;
        if (progress)
            progress(progress_ctx, sent, len);
    }
    if (rc == -ECANCELED || rc == -ETIMEDOUT) {
        rc = rc == -ECANCELED
                 ? ota_error_set(err, rc, OTA_STAGE_TRANSFER, NULL, "canceled")
                 : ota_error_set(err, rc, OTA_STAGE_TRANSFER,
                                 "the board stopped taking data: check Wi-Fi and power",
                                 "transfer to %s stalled at %zu of %zu bytes", host, sent, len);
        goto out;
    }
    /* A send error may come with an ERR line (e.g. header rejected early): read it. */
    int lrc = ota_net_recv_line(fd, line, sizeof(line), ota_now_ms() + result_ms, cancel_fd);
    if (lrc < 0) {
        rc = line_error(err, lrc, OTA_STAGE_RESULT, host, "result line");
        goto out;
    }
    if (strncmp(line, "Flash upgrade success", 21) == 0 && rc == 0) {
        if (slot_out)
            *slot_out = slot;
        ota_logf(cfg->log, cfg->log_ctx, OTA_LOG_INFO, "tcp-ota: %s: %s", host, line);
        rc = 0;
    } else if (strncmp(line, "ERR:", 4) == 0) {
        rc = device_err(err, OTA_STAGE_RESULT, host, line);
    } else {
        rc = ota_error_set(err, -EPROTO, OTA_STAGE_RESULT, "is this a tcp_ota device?",
                           "unexpected result from %s: '%.60s'", host, line);
    }
out:
    close(fd);
    return rc;
}
