/*
 * ota_common: error records, log/progress plumbing and hash helpers shared by
 * the OTA modules (ota_http, ota_espota, ota_webform, ota_tcp, ota_image).
 *
 * Owns: struct ota_error filling, the stage/chip/level/errno name tables,
 * MD5 and SHA-256 hex digests (libcrypto EVP; never hand-rolled).
 * Invariant: every returned string is static; no function allocates state
 * that outlives the call.
 */
#include "ota_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

static const char *const chip_names[OTA_CHIP_COUNT] = {
    [OTA_CHIP_ESP8266] = "esp8266",
    [OTA_CHIP_ESP32] = "esp32",
};

const char *ota_chip_to_string(enum ota_chip chip)
{
    if ((unsigned)chip >= OTA_CHIP_COUNT)
        return "unknown";
    return chip_names[chip];
}

static const char *const stage_names[OTA_STAGE_COUNT] = {
    [OTA_STAGE_NONE] = "none",           [OTA_STAGE_PREPARE] = "prepare",
    [OTA_STAGE_CONNECT] = "connect",     [OTA_STAGE_INVITE] = "invite",
    [OTA_STAGE_AUTH] = "auth",           [OTA_STAGE_ACCEPT] = "accept",
    [OTA_STAGE_HANDSHAKE] = "handshake", [OTA_STAGE_TRANSFER] = "transfer",
    [OTA_STAGE_RESULT] = "result",       [OTA_STAGE_REQUEST] = "request",
    [OTA_STAGE_IMAGE] = "image",
};

const char *ota_stage_to_string(enum ota_stage stage)
{
    if ((unsigned)stage >= OTA_STAGE_COUNT)
        return "unknown";
    return stage_names[stage];
}

static const char *const level_names[OTA_LOG_COUNT] = {
    [OTA_LOG_DEBUG] = "debug",
    [OTA_LOG_INFO] = "info",
    [OTA_LOG_WARN] = "warn",
};

const char *ota_log_level_to_string(enum ota_log_level level)
{
    if ((unsigned)level >= OTA_LOG_COUNT)
        return "unknown";
    return level_names[level];
}

const char *ota_errno_to_string(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case -ETIMEDOUT:
        return "timeout";
    case -EACCES:
        return "auth";
    case -ENOSPC:
        return "no space";
    case -EBADMSG:
        return "checksum or signature";
    case -EPROTO:
        return "protocol";
    case -EIO:
        return "device error";
    case -ECONNREFUSED:
        return "refused";
    case -ECONNRESET:
        return "connection reset";
    case -EHOSTUNREACH:
    case -ENETUNREACH:
        return "unreachable";
    case -ECANCELED:
        return "canceled";
    case -EINVAL:
        return "invalid";
    case -ENOTSUP:
        return "not supported";
    case -ENOMEM:
        return "out of memory";
    case -EBUSY:
        return "busy";
    case -EMSGSIZE:
        return "too large";
    case -ENOENT:
        return "not found";
    case -EADDRINUSE:
        return "address in use";
    default:
        return "error";
    }
}

void ota_error_clear(struct ota_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

int ota_error_set(struct ota_error *err, int code, enum ota_stage stage, const char *advice,
                  const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    err->stage = stage;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    snprintf(err->advice, sizeof(err->advice), "%s", advice ? advice : "");
    return code;
}

void ota_error_set_device(struct ota_error *err, int device_code, const char *text, size_t len)
{
    if (!err)
        return;
    if (device_code >= 0) {
        err->has_device_code = true;
        err->device_code = device_code;
    }
    size_t n = 0;
    for (size_t i = 0; text && i < len && n + 1 < sizeof(err->device_text); i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\r' || c == '\n') {
            if (n > 0 && i + 1 < len)
                err->device_text[n++] = ' ';
            continue;
        }
        err->device_text[n++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    while (n > 0 && err->device_text[n - 1] == ' ')
        n--;
    err->device_text[n] = '\0';
}

void ota_logf(ota_log_fn log, void *ctx, enum ota_log_level level, const char *fmt, ...)
{
    if (!log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log(ctx, level, line);
}

void ota_hex_lower(const uint8_t *bytes, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0F];
    }
    out[2 * len] = '\0';
}

static int digest_hex(const EVP_MD *md, const void *data, size_t len, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(data, len, d, &n, md, NULL) != 1)
        return -EIO;
    ota_hex_lower(d, n, out);
    return 0;
}

int ota_md5_hex(const void *data, size_t len, char out[33])
{
    return digest_hex(EVP_md5(), data, len, out);
}

int ota_sha256_hex(const void *data, size_t len, char out[65])
{
    return digest_hex(EVP_sha256(), data, len, out);
}

bool ota_is_hex(const char *s, size_t n)
{
    if (!s)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return s[n] == '\0';
}
