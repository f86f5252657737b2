/*
 * esp_error: error detail records and the text tables for device status codes.
 *
 * Owns: filling struct esp_error, the ROM error-byte table, the stub code
 * table and the short names of the library's errno vocabulary.
 * Invariant: every string returned here is static; no function fails.
 */
#include "esp_error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const stage_names[ESP_STAGE_COUNT] = {
    [ESP_STAGE_NONE] = "none",     [ESP_STAGE_OPEN] = "open",
    [ESP_STAGE_RESET] = "reset",   [ESP_STAGE_SYNC] = "sync",
    [ESP_STAGE_DETECT] = "detect", [ESP_STAGE_IDENTIFY] = "identify",
    [ESP_STAGE_STUB] = "stub",     [ESP_STAGE_BAUD] = "baud",
    [ESP_STAGE_ATTACH] = "attach", [ESP_STAGE_PREPARE] = "prepare",
    [ESP_STAGE_ERASE] = "erase",   [ESP_STAGE_WRITE] = "write",
    [ESP_STAGE_VERIFY] = "verify", [ESP_STAGE_READ] = "read",
    [ESP_STAGE_FINISH] = "finish",
};

const char *esp_stage_to_string(enum esp_stage stage)
{
    if ((unsigned)stage >= ESP_STAGE_COUNT)
        return "unknown";
    return stage_names[stage];
}

void esp_error_clear(struct esp_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

__attribute__((format(printf, 5, 0))) static void error_fill(struct esp_error *err, int code,
                                                             enum esp_stage stage,
                                                             const char *advice, const char *fmt,
                                                             va_list ap)
{
    /*
     * Replacing an earlier error drops its device status and address, which
     * belong to that error. On a clear record they are kept, so a caller may
     * record the device bytes either before or after the message.
     */
    if (err->code != 0) {
        err->op = 0;
        err->has_device_status = false;
        err->status = 0;
        err->error = 0;
        err->has_address = false;
        err->address = 0;
    }
    err->code = code;
    err->stage = stage;
    if (fmt)
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
    else
        err->message[0] = '\0';
    if (advice)
        snprintf(err->advice, sizeof(err->advice), "%s", advice);
    else
        err->advice[0] = '\0';
}

int esp_error_set(struct esp_error *err, int code, enum esp_stage stage, const char *advice,
                  const char *fmt, ...)
{
    if (!err)
        return code;
    va_list ap;
    va_start(ap, fmt);
    error_fill(err, code, stage, advice, fmt, ap);
    va_end(ap);
    return code;
}

int esp_error_set_if_unset(struct esp_error *err, int code, enum esp_stage stage,
                           const char *advice, const char *fmt, ...)
{
    if (!err || err->code != 0)
        return code;
    va_list ap;
    va_start(ap, fmt);
    error_fill(err, code, stage, advice, fmt, ap);
    va_end(ap);
    return code;
}

void esp_error_set_device(struct esp_error *err, uint8_t op, uint8_t status, uint8_t error)
{
    if (!err)
        return;
    err->op = op;
    err->has_device_status = true;
    err->status = status;
    err->error = error;
}

void esp_error_set_address(struct esp_error *err, uint32_t address)
{
    if (!err)
        return;
    err->has_address = true;
    err->address = address;
}

const char *esp_rom_error_to_string(uint8_t code)
{
    switch (code) {
    case 0x00:
        return "undefined error";
    case 0x01:
        return "invalid input parameter";
    case 0x02:
        return "memory allocation failed";
    case 0x03:
        return "send failed";
    case 0x04:
        return "receive failed";
    case 0x05:
        return "malformed or unsupported command";
    case 0x06:
        return "command understood but execution failed";
    case 0x07:
        return "checksum error";
    case 0x08:
        return "flash write error";
    case 0x09:
        return "flash read error";
    case 0x0A:
        return "flash read length error";
    case 0x0B:
        return "deflate failed";
    case 0x0C:
        return "deflate Adler-32 mismatch";
    case 0x0D:
        return "deflate parameter error";
    case 0x0E:
        return "invalid RAM binary size";
    case 0x0F:
        return "invalid RAM binary address";
    case 0x64:
        return "invalid parameter";
    case 0x65:
        return "invalid format";
    case 0x66:
        return "description too long";
    case 0x67:
        return "bad encoding";
    case 0x69:
        return "insufficient storage";
    default:
        return "unknown ROM error";
    }
}

const char *esp_stub_error_to_string(uint8_t code)
{
    switch (code) {
    case 0xC0:
        return "bad data length";
    case 0xC1:
        return "bad data checksum";
    case 0xC2:
        return "bad block size";
    case 0xC3:
        return "invalid command";
    case 0xC4:
        return "SPI operation failed";
    case 0xC5:
        return "SPI unlock failed";
    case 0xC6:
        return "not in flash mode";
    case 0xC7:
        return "inflate error";
    case 0xC8:
        return "not enough data";
    case 0xC9:
        return "too much data";
    case 0xCA:
        return "NAND program failed";
    case 0xCB:
        return "NAND erase failed";
    case 0xFF:
        return "command not implemented";
    default:
        return "unknown stub error";
    }
}

const char *esp_errno_to_string(int code)
{
    if (code < 0)
        code = -code;
    switch (code) {
    case 0:
        return "ok";
    case ETIMEDOUT:
        return "timeout";
    case EPROTO:
        return "malformed frame";
    case EBADMSG:
        return "checksum mismatch";
    case ENODEV:
        return "port gone";
    case ECANCELED:
        return "cancelled";
    case EINVAL:
        return "invalid argument";
    case ENOTSUP:
        return "not supported";
    case ENOMEM:
        return "out of memory";
    case EIO:
        return "device error";
    case ENOENT:
        return "not found";
    case ENOSPC:
        return "no space";
    case ENOMEDIUM:
        return "flash not answering";
    default:
        return "error";
    }
}
