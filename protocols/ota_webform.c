/*
 * ota_webform: multipart POST to HTTPUpdateServer and verdict from the body
 * text (PROTOCOL-OTA.md §3).
 *
 * Owns: the exact part layout the device's strict parser accepts
 * (Content-Disposition with name first, both quoted, filename present; one
 * Content-Type line; blank line), Basic auth, the boundary choice (derived
 * from the image MD5 and checked not to occur in the image), reading the
 * answer until the device closes.
 * Invariant: the verdict comes from the body text, never from status 200.
 */
#include "ota_webform.h"

#include "ota_image.h"
#include "ota_net.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ota_espota.h"

#define MAX_RESPONSE 16384

static bool safe_text(const char *s, const char *forbid)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7F || strchr(forbid, *s))
            return false;
    return true;
}

int ota_webform_build(const struct ota_webform_config *cfg, const char *boundary, size_t image_len,
                      char *head_out, size_t head_cap, char *tail_out, size_t tail_cap)
{
    const char *path = cfg->path ? cfg->path : "/update";
    const char *filename = cfg->filename ? cfg->filename : "firmware.bin";
    size_t bl = strlen(boundary);
    if (bl == 0 || bl > 60 ||
        strspn(boundary, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"
                         "WXYZ0123456789-") != bl)
        return -EINVAL;
    if (!cfg->host || path[0] != '/' || !safe_text(path, " ") || !safe_text(filename, "\"") ||
        !safe_text(cfg->host, " "))
        return -EINVAL;
    char pre[512];
    int pn = snprintf(pre, sizeof(pre),
                      "--%s\r\n"
                      "Content-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                      "Content-Type: application/octet-stream\r\n"
                      "\r\n",
                      boundary, cfg->filesystem ? "filesystem" : "firmware", filename);
    int tn = snprintf(tail_out, tail_cap, "\r\n--%s--\r\n", boundary);
    if (pn < 0 || (size_t)pn >= sizeof(pre) || tn < 0 || (size_t)tn >= tail_cap)
        return -ENOSPC;
    char auth[400] = "";
    if (cfg->user && cfg->user[0] && cfg->password && cfg->password[0]) {
        char cred[200];
        int cn = snprintf(cred, sizeof(cred), "%s:%s", cfg->user, cfg->password);
        if (cn < 0 || (size_t)cn >= sizeof(cred) || !safe_text(cred, ""))
            return -EINVAL;
        unsigned char b64[280];
        EVP_EncodeBlock(b64, (const unsigned char *)cred, cn);
        snprintf(auth, sizeof(auth), "Authorization: Basic %s\r\n", b64);
    }
    uint16_t port = cfg->port ? cfg->port : 80;
    char hostport[80];
    if (port == 80)
        snprintf(hostport, sizeof(hostport), "%s", cfg->host);
    else
        snprintf(hostport, sizeof(hostport), "%s:%u", cfg->host, port);
    uint64_t body = (uint64_t)pn + image_len + (uint64_t)tn;
    int hn = snprintf(head_out, head_cap,
                      "POST %s HTTP/1.1\r\n"
                      "Host: %s\r\n"
                      "User-Agent: espstation\r\n"
                      "%s"
                      "Content-Type: multipart/form-data; boundary=%s\r\n"
                      "Content-Length: %" PRIu64 "\r\n"
                      "Connection: close\r\n"
                      "\r\n"
                      "%s",
                      path, hostport, auth, boundary, body, pre);
    if (hn < 0 || (size_t)hn >= head_cap)
        return -ENOSPC;
    return 0;
}

enum ota_webform_result ota_webform_classify_body(const char *body, size_t len, char *text,
                                                  size_t cap)
{
    if (cap)
        text[0] = '\0';
    const char *p = memmem(body, len, "Update Success!", 15);
    if (p)
        return OTA_WEBFORM_SUCCESS;
    p = memmem(body, len, "Update error: ", 14);
    if (!p) {
        p = memmem(body, len, "Update Failed!", 14);
        if (p && cap)
            snprintf(text, cap, "Update Failed!");
        return p ? OTA_WEBFORM_FAILED : OTA_WEBFORM_UNKNOWN;
    }
    p += 14;
    size_t n = 0;
    const char *end = body + len;
    while (p < end && *p != '<' && *p != '\r' && *p != '\n' && n + 1 < cap) {
        text[n++] = ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7F) ? *p : '?';
        p++;
    }
    while (n > 0 && text[n - 1] == ' ')
        n--;
    if (cap)
        text[n] = '\0';
    return OTA_WEBFORM_FAILED;
}

static void choose_boundary(const uint8_t *image, size_t len, char *out, size_t cap)
{
    char md5[33];
    if (ota_md5_hex(image, len, md5) < 0)
        snprintf(md5, sizeof(md5), "0000000000000000");
    for (int attempt = 0; attempt < 16; attempt++) {
        snprintf(out, cap, "----espstation%.16s%02d", md5, attempt);
        if (!memmem(image, len, out + 2, strlen(out) - 2))
            return;
    }
}

static int parse_status(const char *resp, size_t len)
{
    if (len < 12 || strncmp(resp, "HTTP/1.", 7) != 0 || resp[8] != ' ')
        return -1;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (resp[i] < '0' || resp[i] > '9')
            return -1;
        code = code * 10 + (resp[i] - '0');
    }
    return code;
}

int ota_webform_push(const struct ota_webform_config *cfg, const uint8_t *image, size_t len,
                     ota_progress_fn progress, void *progress_ctx, int cancel_fd,
                     struct ota_error *err)
{
    ota_error_clear(err);
    if (!image || len == 0)
        return ota_error_set(err, -EINVAL, OTA_STAGE_PREPARE, NULL, "no image to push");
    int connect_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 5000;
    int io_ms = cfg->io_timeout_ms ? cfg->io_timeout_ms : 10000;
    int result_ms = cfg->result_timeout_ms ? cfg->result_timeout_ms : 60000;
    uint16_t port = cfg->port ? cfg->port : 80;
    const char *path = cfg->path ? cfg->path : "/update";
    struct sockaddr_in peer;
    if (ota_net_addr(cfg->host, port, &peer) < 0)
        return ota_error_set(err, -EINVAL, OTA_STAGE_PREPARE, "give the board's IPv4 address",
                             "'%s' is not an IPv4 address", cfg->host ? cfg->host : "");
    char boundary[64], head[1536], tail[96];
    choose_boundary(image, len, boundary, sizeof(boundary));
    int rc = ota_webform_build(cfg, boundary, len, head, sizeof(head), tail, sizeof(tail));
    if (rc < 0)
        return ota_error_set(err, rc, OTA_STAGE_PREPARE,
                             "check the path, file name and credentials for quotes or control "
                             "characters",
                             "cannot build the upload request");
    int fd = -1;
    rc = ota_net_connect(&peer, ota_now_ms() + connect_ms, cancel_fd, &fd);
    if (rc < 0) {
        if (rc == -ECANCELED)
            return ota_error_set(err, rc, OTA_STAGE_CONNECT, NULL, "canceled");
        return ota_error_set(err, rc, OTA_STAGE_CONNECT,
                             "is the board on the network and does its sketch run the web "
                             "updater (HTTPUpdateServer) on that port?",
                             "cannot connect to %s:%u: %s", cfg->host, port, strerror(-rc));
    }
    ota_logf(cfg->log, cfg->log_ctx, OTA_LOG_INFO, "webform: POST %zu bytes to http://%s:%u%s", len,
             cfg->host, port, path);
    bool send_failed = false;
    rc = ota_net_send_all(fd, head, strlen(head), ota_now_ms() + io_ms, cancel_fd);
    size_t sent = 0;
    while (rc == 0 && sent < len) {
        size_t n = len - sent > 4096 ? 4096 : len - sent;
        rc = ota_net_send_all(fd, image + sent, n, ota_now_ms() + io_ms, cancel_fd);
        if (rc == 0) {
            sent += n;
            if (progress)
                progress(progress_ctx, sent, len);
        }
    }
    if (rc == 0)
        rc = ota_net_send_all(fd, tail, strlen(tail), ota_now_ms() + io_ms, cancel_fd);
    if (rc == -ECANCELED || rc == -ETIMEDOUT) {
        close(fd);
        if (rc == -ECANCELED)
            return ota_error_set(err, rc, OTA_STAGE_TRANSFER, NULL, "canceled");
        return ota_error_set(err, rc, OTA_STAGE_TRANSFER,
                             "the board stopped taking data: check Wi-Fi signal and power "
                             "(large uploads to ESP32 web updaters are known to be flaky)",
                             "upload to %s stalled at %zu of %zu bytes", cfg->host, sent, len);
    }
    if (rc < 0)
        send_failed = true; /* the device may have answered early (401): read it */

    char *resp = malloc(MAX_RESPONSE + 1);
    if (!resp) {
        close(fd);
        return ota_error_set(err, -ENOMEM, OTA_STAGE_RESULT, NULL, "out of memory");
    }
    size_t got = 0;
    int64_t deadline = ota_now_ms() + result_ms;
    int rrc = 0;
    while (got < MAX_RESPONSE) {
        rrc = ota_net_recv_some(fd, resp + got, MAX_RESPONSE - got, deadline, cancel_fd);
        if (rrc <= 0)
            break;
        got += (size_t)rrc;
    }
    close(fd);
    resp[got] = '\0';
    int out = 0;
    int status = parse_status(resp, got);
    if (rrc == -ECANCELED) {
        out = ota_error_set(err, rrc, OTA_STAGE_RESULT, NULL, "canceled");
    } else if (status < 0) {
        if (got == 0 && rrc == -ETIMEDOUT)
            out = ota_error_set(err, -ETIMEDOUT, OTA_STAGE_RESULT,
                                "the board may still be writing or may have rebooted: check "
                                "the version it reports",
                                "no answer from %s within %d ms after the upload", cfg->host,
                                result_ms);
        else
            out = ota_error_set(err, send_failed ? -ECONNRESET : -EPROTO, OTA_STAGE_RESULT,
                                "is this the board's HTTPUpdateServer page?",
                                "%s sent no HTTP answer%s", cfg->host,
                                send_failed ? " and dropped the connection" : "");
    } else if (status == 401) {
        out = ota_error_set(err, -EACCES, OTA_STAGE_HANDSHAKE,
                            "check the user and password given to httpUpdater.setup() in the "
                            "sketch",
                            "wrong web-update credentials: %s answered 401", cfg->host);
    } else if (status == 404) {
        out = ota_error_set(err, -ENOENT, OTA_STAGE_HANDSHAKE,
                            "check the update path given to httpUpdater.setup() (default "
                            "/update)",
                            "no update page at http://%s:%u%s (404)", cfg->host, port, path);
    } else if (status != 200) {
        out = ota_error_set(err, -EPROTO, OTA_STAGE_RESULT, "is this the board's update page?",
                            "%s answered HTTP %d", cfg->host, status);
    } else {
        const char *body = strstr(resp, "\r\n\r\n");
        body = body ? body + 4 : resp + got;
        size_t blen = (size_t)(resp + got - body);
        char text[128];
        enum ota_webform_result r = ota_webform_classify_body(body, blen, text, sizeof(text));
        if (r == OTA_WEBFORM_SUCCESS) {
            ota_logf(cfg->log, cfg->log_ctx, OTA_LOG_INFO,
                     "webform: %s: Update Success! (the board reboots)", cfg->host);
        } else if (r == OTA_WEBFORM_FAILED) {
            int code = -1;
            const char *advice = NULL;
            int e = ota_espota_classify_error(text, &code, &advice);
            ota_error_set_device(err, code, text, strlen(text));
            uint64_t header = cfg->filesystem ? 0 : ota_image_esp8266_flash_size(image, len);
            uint64_t real = ota_image_refusal_real_size(text);
            char what[160];
            if (code == 9 && header && real)
                ota_image_flash_mismatch_text(header, real, what, sizeof(what));
            out =
                ota_error_set(err, e, OTA_STAGE_RESULT, advice, "the board refused the update: %s",
                              code == 9 && header && real ? what : text);
        } else {
            out = ota_error_set(err, -EPROTO, OTA_STAGE_RESULT,
                                "is this the board's HTTPUpdateServer page? (the answer had "
                                "neither 'Update Success!' nor 'Update error:')",
                                "unrecognised answer from %s%s", cfg->host,
                                send_failed ? " (it dropped the upload)" : "");
        }
    }
    free(resp);
    return out;
}
