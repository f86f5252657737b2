/*
 * esp_loader: the engine's context, configuration and command I/O.
 *
 * Owns: struct esp_loader (see esp_loader_priv.h), the request/reply cycle
 * (SLIP encode, write, decode, match the reply to the request by opcode,
 * translate device status bytes into struct esp_error), register access and
 * the timeout arithmetic of PROTOCOL-ROM.md §3.5.
 * Invariants: a reply is only accepted when its opcode matches the request;
 * everything else is counted in stats.frames_dropped (an "OHAI" passing by is
 * remembered for the stub upload). Device failures keep their raw status bytes.
 */
#include "esp_loader_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

/* ---- enums ---------------------------------------------------------------- */

static const char *const before_names[] = {
    [ESP_BEFORE_DEFAULT_RESET] = "default-reset",
    [ESP_BEFORE_USB_RESET] = "usb-reset",
    [ESP_BEFORE_NO_RESET] = "no-reset",
    [ESP_BEFORE_NO_RESET_NO_SYNC] = "no-reset-no-sync",
    [ESP_BEFORE_MANUAL] = "manual",
};

static const char *const after_names[] = {
    [ESP_AFTER_HARD_RESET] = "hard-reset",
    [ESP_AFTER_SOFT_RESET] = "soft-reset",
    [ESP_AFTER_NO_RESET] = "no-reset",
    [ESP_AFTER_NO_RESET_STUB] = "no-reset-stub",
};

#define N_BEFORE (sizeof(before_names) / sizeof(before_names[0]))
#define N_AFTER (sizeof(after_names) / sizeof(after_names[0]))

const char *esp_before_to_string(enum esp_before v)
{
    if ((unsigned)v >= N_BEFORE)
        return "unknown";
    return before_names[v];
}

const char *esp_after_to_string(enum esp_after v)
{
    if ((unsigned)v >= N_AFTER)
        return "unknown";
    return after_names[v];
}

/* Accepts esptool's spellings with '-' or '_'. */
static bool name_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char ca = *a == '_' ? '-' : *a;
        if (ca >= 'A' && ca <= 'Z')
            ca = (char)(ca - 'A' + 'a');
        if (ca != *b)
            return false;
    }
    return *a == '\0' && *b == '\0';
}

int esp_before_from_string(const char *s)
{
    if (!s)
        return -EINVAL;
    for (unsigned i = 0; i < N_BEFORE; i++)
        if (name_eq(s, before_names[i]))
            return (int)i;
    if (name_eq(s, "default"))
        return ESP_BEFORE_DEFAULT_RESET;
    return -EINVAL;
}

int esp_after_from_string(const char *s)
{
    if (!s)
        return -EINVAL;
    for (unsigned i = 0; i < N_AFTER; i++)
        if (name_eq(s, after_names[i]))
            return (int)i;
    return -EINVAL;
}

/* ---- config and lifetime ------------------------------------------------ */

void esp_loader_config_init(struct esp_loader_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->before = ESP_BEFORE_DEFAULT_RESET;
    cfg->no_lines = ESP_NO_LINES_NO_RESET;
    cfg->connect_attempts = 7;
    cfg->sync_tries = 5;
    cfg->reset_delay_ms = 0;
    cfg->initial_baud = 115200;
    cfg->baud = 0;
    cfg->use_stub = true;
    cfg->stub_dir = NULL;
    cfg->flash_size = 0;
    cfg->write_block_attempts = 3;
    cfg->timeout_scale = 1.0;
    cfg->allow_rom_overerase = false;
}

void esp_flash_opts_init(struct esp_flash_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->compress = true;
    opts->verify = true;
    opts->erase_all = false;
    opts->flash_mode = -1;
    opts->flash_size_code = -1;
    opts->flash_freq_code = -1;
    opts->skip_image_check = false;
    opts->diff = true;
}

struct esp_loader *esp_loader_new(struct transport *t, const struct esp_loader_config *cfg)
{
    if (!t)
        return NULL;
    struct esp_loader *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    if (cfg)
        l->cfg = *cfg;
    else
        esp_loader_config_init(&l->cfg);
    if (l->cfg.connect_attempts < 0)
        l->cfg.connect_attempts = 7;
    if (l->cfg.sync_tries <= 0)
        l->cfg.sync_tries = 5;
    if (l->cfg.write_block_attempts <= 0)
        l->cfg.write_block_attempts = 3;
    if (!(l->cfg.timeout_scale > 0.0))
        l->cfg.timeout_scale = 1.0;
    if (l->cfg.initial_baud == 0)
        l->cfg.initial_baud = 115200;
    if (l->cfg.reset_delay_ms < 0)
        l->cfg.reset_delay_ms = 0;

    l->t = t;
    l->pkt = malloc(ESP_PKT_MAX);
    l->wire = malloc(slip_encoded_max(ESP_PKT_MAX));
    if (!l->pkt || !l->wire || slip_decoder_init(&l->dec, ESP_RX_FRAME_MAX) < 0) {
        esp_loader_free(l);
        return NULL;
    }
    l->info.revision = -1;
    l->info.baud = t->baud ? t->baud : l->cfg.initial_baud;
    l->info.usb_jtag = t->usb_vid == ESP_ESPRESSIF_VID && t->usb_pid == ESP_USB_JTAG_PID;
    l->info.usb_otg =
        t->usb_vid == ESP_ESPRESSIF_VID && t->usb_pid != ESP_USB_JTAG_PID && t->usb_pid != 0;
    l->who = ESP_RESPONDER_ROM_ESP32;
    l->unsup_op = -1;
    return l;
}

void esp_loader_free(struct esp_loader *l)
{
    if (!l)
        return;
    slip_decoder_free(&l->dec);
    free(l->pkt);
    free(l->wire);
    free(l);
}

const struct esp_chip_info *esp_loader_info(const struct esp_loader *l)
{
    return l ? &l->info : NULL;
}

const struct esp_loader_stats *esp_loader_stats(const struct esp_loader *l)
{
    return l ? &l->stats : NULL;
}

int esp_region_compress(const uint8_t *data, size_t len, uint8_t **out, size_t *out_len)
{
    if (!out || !out_len || (len && !data))
        return -EINVAL;
    uLongf cap = compressBound((uLong)len);
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf)
        return -ENOMEM;
    static const uint8_t empty[1];
    if (compress2(buf, &cap, len ? data : empty, (uLong)len, 9) != Z_OK) {
        free(buf);
        return -ENOMEM;
    }
    *out = buf;
    *out_len = cap;
    return 0;
}

/* ---- small helpers ------------------------------------------------------- */

void esp_ldr_log(struct esp_loader *l, enum esp_log_level level, const char *fmt, ...)
{
    if (!l->cfg.log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    l->cfg.log(l->cfg.log_ctx, level, msg);
}

int esp_ldr_tmo(const struct esp_loader *l, int ms)
{
    double v = (double)ms * l->cfg.timeout_scale;
    if (v < 1.0)
        return 1;
    if (v > 24.0 * 3600 * 1000)
        return 24 * 3600 * 1000;
    return (int)v;
}

int esp_ldr_tmo_per_mb(const struct esp_loader *l, int ms_per_mb, uint64_t bytes)
{
    double ms = (double)ms_per_mb * (double)bytes / 1e6;
    if (ms < ESP_TMO_DEFAULT)
        ms = ESP_TMO_DEFAULT;
    if (ms > ESP_TMO_MAX)
        ms = ESP_TMO_MAX;
    return esp_ldr_tmo(l, (int)ms);
}

int64_t esp_ldr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void esp_ldr_sleep_ms(int ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

void esp_ldr_printable(const uint8_t *buf, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return;
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        uint8_t c = buf[i];
        if (c == '\r' || c == '\n' || c == '\t') {
            if (o > 0 && out[o - 1] != ' ')
                out[o++] = ' ';
        } else if (c >= 0x20 && c < 0x7F) {
            out[o++] = (char)c;
        } else if (o > 0 && out[o - 1] != '.') {
            out[o++] = '.';
        }
    }
    out[o] = '\0';
}

bool esp_ldr_is_8266_rom(const struct esp_loader *l)
{
    if (l->stub)
        return false;
    if (l->info.chip)
        return l->info.chip->chip == ESP_CHIP_ESP8266;
    return l->responder_known && l->who == ESP_RESPONDER_ROM_8266;
}

bool esp_ldr_is_usb_otg(const struct esp_loader *l)
{
    return l->info.usb_otg;
}

void esp_ldr_set_responder(struct esp_loader *l, enum esp_responder who)
{
    l->who = who;
    l->responder_known = true;
    l->stub = who == ESP_RESPONDER_STUB;
    l->info.stub_running = l->stub;
}

int esp_ldr_io_error(struct esp_loader *l, int rc, const char *what, struct esp_error *err)
{
    const char *stage = esp_stage_to_string(l->stage);
    switch (rc) {
    case -ENODEV:
        return esp_error_set(err, -ENODEV, l->stage,
                             "check the cable; the board was unplugged or reset",
                             "board removed (port gone) during %s", stage);
    case -ECANCELED:
        return esp_error_set(err, -ECANCELED, l->stage, NULL, "cancelled during %s", stage);
    case -ETIMEDOUT:
        return esp_error_set(err, -ETIMEDOUT, l->stage,
                             "check the cable and the USB hub; try a lower baud rate",
                             "%s timed out during %s", what, stage);
    default:
        return esp_error_set(err, rc < 0 ? rc : -EIO, l->stage, "check the cable and the port",
                             "%s failed during %s: %s", what, stage, esp_errno_to_string(rc));
    }
}

/* ---- receive path -------------------------------------------------------- */

int esp_ldr_flush_input(struct esp_loader *l)
{
    l->rx_off = l->rx_len = 0;
    slip_decoder_reset(&l->dec);
    int rc = transport_flush_input(l->t);
    return rc == -ENOTSUP ? 0 : rc;
}

int esp_ldr_read_frame(struct esp_loader *l, int timeout_ms)
{
    int64_t deadline = esp_ldr_now_ms() + timeout_ms;
    for (;;) {
        while (l->rx_off < l->rx_len) {
            size_t used = 0;
            enum slip_result res =
                slip_decoder_feed(&l->dec, l->rx + l->rx_off, l->rx_len - l->rx_off, &used);
            l->rx_off += used;
            if (res == SLIP_FRAME)
                return 1;
            if (res == SLIP_BAD_FRAME)
                l->stats.frames_dropped++;
        }
        int64_t left = deadline - esp_ldr_now_ms();
        if (left <= 0)
            return 0;
        int n = transport_read(l->t, l->rx, sizeof(l->rx), (int)left);
        if (n < 0)
            return n;
        if (n == 0)
            return 0;
        l->rx_off = 0;
        l->rx_len = (size_t)n;
        l->stats.wire_rx += (uint64_t)n;
    }
}

static bool frame_is_ohai(const struct esp_loader *l)
{
    return l->dec.frame_len == 4 && memcmp(l->dec.frame, "OHAI", 4) == 0;
}

/* After an "unsupported command" reply the ROM may send several more: let them
 * arrive, then throw everything away. */
static int drain_unsupported(struct esp_loader *l)
{
    esp_ldr_sleep_ms(200);
    uint8_t junk[256];
    int64_t until = esp_ldr_now_ms() + 200;
    while (esp_ldr_now_ms() < until) {
        int n = transport_read(l->t, junk, sizeof(junk), 20);
        if (n < 0)
            return n;
        if (n == 0)
            break;
        l->stats.wire_rx += (uint64_t)n;
    }
    return esp_ldr_flush_input(l);
}

/* Secure Download Mode is named only when GET_SECURITY_INFO's flags did not rule it out. */
static const char *unsupported_advice(const struct esp_loader *l)
{
    if (l->info.security_info_valid && !l->info.secure_download_mode)
        return "the ROM rejected the command: this ROM does not have it (the chip is not in "
               "Secure Download Mode, its security info says)";
    return "the ROM rejected the command (unsupported here, or in Secure Download Mode)";
}

static const char *device_advice(const struct esp_loader *l, const struct esp_response *r)
{
    if (l->who == ESP_RESPONDER_STUB) {
        switch (r->device_code) {
        case 0xC1:
            return "data was corrupted on the serial line: use a lower baud rate or a better "
                   "cable";
        case 0xC4:
        case 0xC5:
            return "the SPI flash operation failed: the flash may be write-protected or faulty; "
                   "check the power supply and the flash chip";
        case 0xC7:
            return "compressed data was corrupted in transit: retry at a lower baud rate";
        case 0xC0:
        case 0xC2:
        case 0xC6:
        case 0xC8:
        case 0xC9:
            return "host and stub disagree about the transfer: retry the job";
        case 0xC3:
        case 0xFF:
            return "the flasher stub does not implement this command";
        default:
            return "retry; if it persists, check the power supply and the cable";
        }
    }
    switch (r->device_code) {
    case 0x05:
        return unsupported_advice(l);
    case 0x07:
        return "data was corrupted on the serial line: use a lower baud rate or a better cable";
    case 0x08:
        return "the flash chip failed to program: check power supply and the flash chip";
    case 0x09:
    case 0x0A:
        return "the flash chip could not be read: check power supply and the flash chip";
    case 0x0B:
    case 0x0C:
    case 0x0D:
        return "compressed data was corrupted in transit: retry at a lower baud rate or "
               "without compression";
    case 0x0E:
    case 0x0F:
        return "the RAM program does not fit this chip: check the stub files";
    default:
        return "retry; if it persists, check the power supply and the cable";
    }
}

static int device_failure(struct esp_loader *l, uint8_t op, const struct esp_response *r,
                          struct esp_error *err)
{
    const char *text = l->who == ESP_RESPONDER_STUB ? esp_stub_error_to_string(r->device_code)
                                                    : esp_rom_error_to_string(r->device_code);
    const char *who = l->who == ESP_RESPONDER_STUB ? "stub" : "ROM";
    int code = r->unsupported ? -ENOTSUP : -EIO;
    esp_error_set(err, code, l->stage, device_advice(l, r),
                  "%s failed: %s error 0x%02X (%s), status bytes %02X %02X", esp_op_to_string(op),
                  who, r->device_code, text, r->status, r->error);
    esp_error_set_device(err, op, r->status, r->error);
    return code;
}

/* A ROM "01 05" with another opcode: on a UART at once (timeout_ms 0), over
 * USB-Serial/JTAG when no reply with op's opcode came within timeout_ms: a ROM that does
 * not know op and does not echo it (§1.4). Reported as
 * unsupported; whether the chip is in Secure Download Mode is GET_SECURITY_INFO's
 * flags' to say, never this reply's. */
static int foreign_unsupported(struct esp_loader *l, uint8_t op, int fop, uint8_t st, uint8_t er,
                               int timeout_ms, struct esp_error *err)
{
    int drc = drain_unsupported(l);
    if (drc < 0)
        return esp_ldr_io_error(l, drc, esp_op_to_string(op), err);
    if (timeout_ms > 0) /* waited for a reply with its own opcode (USB-Serial/JTAG) */
        esp_error_set(err, -ENOTSUP, l->stage, unsupported_advice(l),
                      "%s is not supported by the device (status bytes %02X %02X in a reply "
                      "with opcode 0x%02X, none with its own within %d ms)",
                      esp_op_to_string(op), st, er, (unsigned)fop, timeout_ms);
    else
        esp_error_set(err, -ENOTSUP, l->stage, unsupported_advice(l),
                      "%s is not supported by the device (status bytes %02X %02X)",
                      esp_op_to_string(op), st, er);
    esp_error_set_device(err, op, st, er);
    return -ENOTSUP;
}

/* Over a port that may be USB-Serial/JTAG but is not known to be one: how long a foreign
 * ROM "01 05" waits for the command's own reply (recv_impl). */
#define ESP_STRAY_GRACE_MS 150

static int recv_impl(struct esp_loader *l, uint8_t op, size_t expect, size_t expect_alt,
                     size_t data_len, int timeout_ms, struct esp_response *r, struct esp_error *err)
{
    int64_t deadline = esp_ldr_now_ms() + timeout_ms;
    /* A ROM "01 05" reply carrying another opcode (foreign_op >= 0, its status bytes). */
    int foreign_op = -1;
    uint8_t foreign_st = 0, foreign_er = 0;
    for (int frames = 0; frames < ESP_MAX_FRAMES_PER_REPLY; frames++) {
        int64_t left = deadline - esp_ldr_now_ms();
        int rc = left > 0 ? esp_ldr_read_frame(l, (int)left) : 0;
        if (rc < 0)
            return esp_ldr_io_error(l, rc, esp_op_to_string(op), err);
        if (rc == 0 && foreign_op >= 0)
            return foreign_unsupported(l, op, foreign_op, foreign_st, foreign_er, timeout_ms, err);
        if (rc == 0)
            return esp_error_set(err, -ETIMEDOUT, l->stage,
                                 "check the cable and the USB hub; try a lower baud rate",
                                 "no reply to %s within %d ms", esp_op_to_string(op), timeout_ms);

        const uint8_t *f = l->dec.frame;
        size_t n = l->dec.frame_len;
        if (frame_is_ohai(l))
            l->ohai_seen = true;
        if (data_len && n == data_len &&
            !(n >= ESP_CMD_HEADER_LEN && f[0] == 0x01 && f[1] == op &&
              esp_response_parse(f, n, l->who, expect, r) == 0))
            return 1;
        if (n < ESP_CMD_HEADER_LEN || f[0] != 0x01) {
            l->stats.frames_dropped++;
            continue;
        }
        if (f[1] != op) {
            bool unsup = n >= ESP_CMD_HEADER_LEN + 2 && f[ESP_CMD_HEADER_LEN] != 0 &&
                         f[ESP_CMD_HEADER_LEN + 1] == 0x05 && l->who != ESP_RESPONDER_STUB;
            /* A late copy of an earlier command's "unsupported" answer (the ROM may
             * send it several times, §1.4): not this command's reply. */
            if (unsup && l->unsup_op == f[1]) {
                l->stats.frames_dropped++;
                continue;
            }
            /* The ROM's "unsupported" reply does not always echo the opcode (§1.4):
             * on a UART it is the answer, at once (as esptool takes it; an ESP32 ROM
             * asked GET_SECURITY_INFO at every detect must not wait a timeout). Over
             * USB-Serial/JTAG a stray one arrives ahead of the real reply (esptool
             * #813, PROTOCOL-ROM.md §8): not this command's answer there. Keep
             * waiting; it stands for "unsupported" only if nothing with the
             * command's opcode comes within the timeout. */
            bool maybe_usb = l->info.usb_jtag || !l->t->usb_vid; /* ids unknown: pty, tcp */
            if (unsup && !maybe_usb) {
                foreign_op = f[1];
                foreign_st = f[ESP_CMD_HEADER_LEN];
                foreign_er = f[ESP_CMD_HEADER_LEN + 1];
                return foreign_unsupported(l, op, foreign_op, foreign_st, foreign_er, 0, err);
            }
            if (unsup && foreign_op < 0 && !l->info.usb_jtag) {
                /* Not known to be USB-Serial/JTAG (a port without USB ids, e.g. a pty or a
                 * serial server): a stray is followed by the real reply at once, while a
                 * ROM that does not echo the opcode sends nothing more, so wait only a
                 * short grace, not the whole timeout. */
                int64_t grace = esp_ldr_now_ms() + ESP_STRAY_GRACE_MS;
                if (grace < deadline) {
                    deadline = grace;
                    timeout_ms = ESP_STRAY_GRACE_MS;
                }
            }
            if (unsup && foreign_op < 0) {
                foreign_op = f[1];
                foreign_st = f[ESP_CMD_HEADER_LEN];
                foreign_er = f[ESP_CMD_HEADER_LEN + 1];
                esp_ldr_log(l, ESP_LOG_DEBUG,
                            "%s: a reply with opcode 0x%02X said %02X %02X; waiting for the "
                            "command's own reply",
                            esp_op_to_string(op), f[1], foreign_st, foreign_er);
            }
            l->stats.frames_dropped++;
            continue;
        }
        rc = esp_response_parse(f, n, l->who, expect, r);
        if (rc < 0 && expect_alt != ESP_EXPECT_NONE)
            rc = esp_response_parse(f, n, l->who, expect_alt, r);
        if (rc < 0) {
            l->stats.frames_dropped++;
            continue;
        }
        if (r->failed) {
            if (r->unsupported && l->who != ESP_RESPONDER_STUB)
                l->unsup_op = op;
            return device_failure(l, op, r, err);
        }
        return 0;
    }
    return esp_error_set(err, -EPROTO, l->stage,
                         "the device sends data that is not a reply: check the baud rate and "
                         "that nothing else runs on the port",
                         "no valid reply to %s among %d frames", esp_op_to_string(op),
                         ESP_MAX_FRAMES_PER_REPLY);
}

int esp_ldr_recv(struct esp_loader *l, uint8_t op, size_t expect, size_t expect_alt, int timeout_ms,
                 struct esp_response *r, struct esp_error *err)
{
    return recv_impl(l, op, expect, expect_alt, 0, timeout_ms, r, err);
}

int esp_ldr_recv_or_data(struct esp_loader *l, uint8_t op, size_t expect, size_t data_len,
                         int timeout_ms, struct esp_response *r, struct esp_error *err)
{
    return recv_impl(l, op, expect, ESP_EXPECT_NONE, data_len, timeout_ms, r, err);
}

int esp_ldr_send_raw(struct esp_loader *l, const uint8_t *pkt, size_t len, struct esp_error *err)
{
    size_t wl = slip_encode(pkt, len, l->wire);
    int rc = transport_write(l->t, l->wire, wl, esp_ldr_tmo(l, ESP_TMO_WRITE));
    if (rc < 0)
        return esp_ldr_io_error(l, rc, "writing to the port", err);
    l->stats.wire_tx += wl;
    return (int)(wl > INT32_MAX ? INT32_MAX : wl);
}

/* Time the packet needs on the line (10 bits per byte), so a reply timeout
 * starts counting when the chip can have seen the whole request. */
static int wire_ms(const struct esp_loader *l, int bytes)
{
    uint32_t baud = l->info.baud ? l->info.baud : 115200;
    return (int)((uint64_t)bytes * 10000u / baud) + 1;
}

int esp_ldr_cmd(struct esp_loader *l, size_t len, size_t expect, int timeout_ms,
                struct esp_response *r, struct esp_error *err)
{
    struct esp_response tmp;
    uint8_t op = l->pkt[1];
    int rc = esp_ldr_send_raw(l, l->pkt, len, err);
    if (rc < 0)
        return rc;
    return esp_ldr_recv(l, op, expect, ESP_EXPECT_NONE, timeout_ms + wire_ms(l, rc), r ? r : &tmp,
                        err);
}

static int build_error(struct esp_loader *l, int rc, uint8_t op, struct esp_error *err)
{
    return esp_error_set(err, rc, l->stage, NULL, "cannot build %s request: %s",
                         esp_op_to_string(op), esp_errno_to_string(rc));
}

/* Commands that can be repeated without harm when their reply got lost. */
static bool idempotent(uint8_t op)
{
    switch (op) {
    case ESP_OP_READ_REG:
    case ESP_OP_WRITE_REG:
    case ESP_OP_SPI_ATTACH:
    case ESP_OP_SPI_SET_PARAMS:
    case ESP_OP_SPI_FLASH_MD5:
    case ESP_OP_READ_FLASH_SLOW:
        return true;
    default:
        return false;
    }
}

int esp_ldr_cmd_words(struct esp_loader *l, uint8_t op, const uint32_t *words, size_t n,
                      size_t expect, int timeout_ms, struct esp_response *r, struct esp_error *err)
{
    int attempts = idempotent(op) ? l->cfg.write_block_attempts : 1;
    int rc = 0;
    for (int i = 0; i < attempts; i++) {
        int len = esp_cmd_build_words(op, words, n, l->pkt, ESP_PKT_MAX);
        if (len < 0)
            return build_error(l, len, op, err);
        rc = esp_ldr_cmd(l, (size_t)len, expect, timeout_ms, r, err);
        if ((rc != -ETIMEDOUT && rc != -EPROTO) || i + 1 >= attempts)
            break;
        /* A late reply must not be taken for the answer to the next command. */
        esp_ldr_log(l, ESP_LOG_DEBUG, "%s: %s, resending", esp_op_to_string(op),
                    esp_errno_to_string(rc));
        int frc = esp_ldr_flush_input(l);
        if (frc == -ENODEV || frc == -ECANCELED)
            return esp_ldr_io_error(l, frc, esp_op_to_string(op), err);
        esp_error_clear(err);
    }
    return rc;
}

int esp_ldr_cmd_data(struct esp_loader *l, uint8_t op, uint32_t seq, const uint8_t *data,
                     size_t len, int timeout_ms, struct esp_error *err)
{
    int plen = esp_cmd_build_data(op, seq, data, len, l->pkt, ESP_PKT_MAX);
    if (plen < 0)
        return build_error(l, plen, op, err);
    return esp_ldr_cmd(l, (size_t)plen, 0, timeout_ms, NULL, err);
}

/* ---- register access ----------------------------------------------------- */

int esp_ldr_need_connected(struct esp_loader *l, struct esp_error *err)
{
    if (l->connected)
        return 0;
    return esp_error_set(err, -EINVAL, l->stage, "connect to the board first",
                         "not connected to the bootloader");
}

int esp_loader_read_reg(struct esp_loader *l, uint32_t addr, uint32_t *value, struct esp_error *err)
{
    struct esp_response r;
    int rc = esp_ldr_cmd_words(l, ESP_OP_READ_REG, &addr, 1, 0, esp_ldr_tmo(l, ESP_TMO_DEFAULT), &r,
                               err);
    if (rc < 0)
        return rc;
    if (value)
        *value = r.value;
    return 0;
}

int esp_loader_write_reg(struct esp_loader *l, uint32_t addr, uint32_t value, uint32_t mask,
                         uint32_t delay_us, struct esp_error *err)
{
    /* One entry only: the ROM takes exactly 16 bytes (the stub would take a batch). */
    uint32_t w[4] = {addr, value, mask, delay_us};
    return esp_ldr_cmd_words(l, ESP_OP_WRITE_REG, w, 4, 0, esp_ldr_tmo(l, ESP_TMO_DEFAULT), NULL,
                             err);
}
