/*
 * esp_connect: getting a board's ROM loader on the line and knowing what it is.
 *
 * Owns: the connect loop (strategy cycle x attempts, boot-output capture,
 * SYNC tries), the diagnosis of a failed connect from the captured boot log,
 * chip detection (GET_SECURITY_INFO id, else the magic register), identify
 * (MAC, revision, crystal) and the USB-Serial/JTAG watchdog disable.
 * Invariants: SYNC replies decide the responder before the chip is known
 * (2 status bytes: ESP8266 ROM, 4: ESP32-family ROM, value 0 in all of them:
 * a stub is already running); probes that are expected to fail on some chips
 * use a scratch error record so they never leak into the caller's.
 */
#include "esp_loader_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SYNC_REPLIES 8
#define CAPTURE_FIRST_MS 100
#define CAPTURE_QUIET_MS 50
#define CAPTURE_MAX_MS 1000

/* What the boot output told us, accumulated over attempts. */
struct boot_diag {
    uint64_t bytes;      /* output seen (boot log, junk, frames) */
    bool boot_mode_seen; /* "boot:0xNN" or ESP8266 "boot mode:(N," */
    unsigned boot_mode;
    bool waiting_seen; /* "waiting for download" (or ESP8266 boot mode 1) */
    char excerpt[208]; /* printable start of the last non-empty capture */
};

static void capture_append(struct esp_loader *l, const uint8_t *buf, size_t n)
{
    size_t room = sizeof(l->boot) - l->boot_len;
    if (n > room)
        n = room;
    memcpy(l->boot + l->boot_len, buf, n);
    l->boot_len += n;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Looks through the captured output for the ROM's boot banner. */
static void diag_scan(struct boot_diag *d, const uint8_t *buf, size_t n)
{
    if (n == 0)
        return;
    d->bytes += n;
    esp_ldr_printable(buf, n, d->excerpt, sizeof(d->excerpt));

    static const char waiting[] = "waiting for download";
    if (memmem(buf, n, waiting, sizeof(waiting) - 1))
        d->waiting_seen = true;

    static const char boot[] = "boot:0x";
    const uint8_t *p = memmem(buf, n, boot, sizeof(boot) - 1);
    if (p) {
        const uint8_t *q = p + sizeof(boot) - 1, *end = buf + n;
        unsigned v = 0;
        int digits = 0;
        while (q < end && digits < 2 && hexval(*q) >= 0) {
            v = v * 16 + (unsigned)hexval(*q++);
            digits++;
        }
        if (digits > 0) {
            d->boot_mode_seen = true;
            d->boot_mode = v;
        }
    }

    /* ESP8266: " ets Jan  8 2013,rst cause:2, boot mode:(3,6)"; mode 1 = UART download. */
    static const char boot8266[] = "boot mode:(";
    p = memmem(buf, n, boot8266, sizeof(boot8266) - 1);
    if (p && p + sizeof(boot8266) - 1 < buf + n) {
        int v = hexval(p[sizeof(boot8266) - 1]);
        if (v >= 0 && v <= 9) {
            if (v == 1) {
                d->waiting_seen = true;
            } else {
                d->boot_mode_seen = true;
                d->boot_mode = (unsigned)v;
            }
        }
    }
}

/* The last line of the download-mode banner of every ESP32-family ROM ("rst:0x1
 * (POWERON_RESET),boot:0x3 (DOWNLOAD_BOOT(...))" / "boot:0x5 (DOWNLOAD(USB/UART0/1))",
 * then "waiting for download"; PROTOCOL-ROM.md 3.3): after it the ROM prints nothing
 * and listens for SYNC. The ESP8266 ROM prints at 74880 Bd, unreadable here. */
static bool banner_done(const struct esp_loader *l)
{
    static const char waiting[] = "waiting for download";
    return memmem(l->boot, l->boot_len, waiting, sizeof(waiting) - 1) != NULL;
}

int esp_ldr_boot_hold(struct esp_loader *l, int max_ms)
{
    int64_t deadline = esp_ldr_now_ms() + max_ms;
    uint8_t buf[512];
    for (;;) {
        int64_t left = deadline - esp_ldr_now_ms();
        if (left <= 0 || banner_done(l))
            return 0;
        int n = transport_read(l->t, buf, sizeof(buf), (int)left);
        if (n == -ENODEV || n == -ECANCELED)
            return n;
        if (n < 0) {
            esp_ldr_sleep_ms((int)left); /* hold BOOT as long as asked, output or not */
            return 0;
        }
        l->stats.wire_rx += (uint64_t)n;
        capture_append(l, buf, (size_t)n);
    }
}

/* Reads whatever arrives right after a reset: up to 100 ms for the first
 * bytes, then as long as more keep coming (bounded), or until the ROM's
 * download banner is complete (nothing follows it). */
static int capture_boot(struct esp_loader *l)
{
    int64_t start = esp_ldr_now_ms();
    int wait = CAPTURE_FIRST_MS;
    uint8_t buf[512];
    for (;;) {
        if (banner_done(l))
            return 0;
        int64_t left = start + CAPTURE_MAX_MS - esp_ldr_now_ms();
        if (left <= 0)
            return 0;
        int n = transport_read(l->t, buf, sizeof(buf), wait < left ? wait : (int)left);
        if (n < 0)
            return n;
        if (n == 0)
            return 0;
        l->stats.wire_rx += (uint64_t)n;
        capture_append(l, buf, (size_t)n);
        wait = CAPTURE_QUIET_MS;
    }
}

/* One SYNC try: send, wait 100 ms for the first reply, then drain all eight.
 * Returns 1 on success, 0 on no reply, <0 on transport failure. */
static int sync_once(struct esp_loader *l, unsigned *status_bytes, bool *all_zero)
{
    int rc = esp_ldr_flush_input(l);
    if (rc < 0)
        return rc;
    int len = esp_cmd_build(ESP_OP_SYNC, esp_sync_body, ESP_SYNC_BODY_LEN, 0, l->pkt, ESP_PKT_MAX);
    if (len < 0)
        return len;
    rc = esp_ldr_send_raw(l, l->pkt, (size_t)len, NULL);
    if (rc < 0)
        return rc;

    int got = 0;
    unsigned sbytes = 0;
    bool zero = true;
    int64_t deadline = esp_ldr_now_ms() + esp_ldr_tmo(l, ESP_TMO_SYNC);
    for (int frames = 0; frames < ESP_MAX_FRAMES_PER_REPLY && got < SYNC_REPLIES; frames++) {
        int64_t left = deadline - esp_ldr_now_ms();
        if (left <= 0)
            break;
        rc = esp_ldr_read_frame(l, (int)left);
        if (rc < 0)
            return rc;
        if (rc == 0)
            break;
        struct esp_response r;
        /* Parse leniently (4-byte status layout accepts 2-byte replies too). */
        if (esp_response_parse(l->dec.frame, l->dec.frame_len, ESP_RESPONDER_ROM_ESP32, 0, &r) <
                0 ||
            r.op != ESP_OP_SYNC || r.failed) {
            l->stats.frames_dropped++;
            continue;
        }
        if (got == 0)
            sbytes = r.size;
        if (r.value != 0)
            zero = false;
        got++;
        /* The rest of the eight follow quickly. */
        deadline = esp_ldr_now_ms() + esp_ldr_tmo(l, ESP_TMO_SYNC);
    }
    if (got == 0)
        return 0;
    *status_bytes = sbytes;
    *all_zero = zero;
    return 1;
}

int esp_ldr_resync(struct esp_loader *l, int tries)
{
    for (int i = 0; i < tries; i++) {
        unsigned sbytes = 0;
        bool zero = true;
        l->stats.sync_tries++;
        int rc = sync_once(l, &sbytes, &zero);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        /* Let the rest of the eight replies go. */
        esp_ldr_sleep_ms(10);
        rc = esp_ldr_flush_input(l);
        return rc < 0 ? rc : 1;
    }
    return 0;
}

static void no_lines_once(struct esp_loader *l)
{
    l->no_lines = true;
    if (!l->warned_no_lines) {
        l->warned_no_lines = true;
        esp_ldr_log(l, ESP_LOG_WARN, "transport has no modem lines: cannot reset the board (%s)",
                    l->cfg.no_lines == ESP_NO_LINES_MANUAL ? "asking for manual boot"
                                                           : "it must already be in download mode");
    }
}

static int manual_boot(struct esp_loader *l, struct esp_error *err)
{
    if (!l->cfg.manual_boot)
        return 0;
    int rc = l->cfg.manual_boot(l->cfg.manual_boot_ctx);
    if (rc < 0)
        return esp_error_set(err, -ECANCELED, ESP_STAGE_RESET, NULL, "manual boot was cancelled");
    return 0;
}

static int diagnose(struct esp_loader *l, const struct boot_diag *d, struct esp_error *err)
{
    char shortx[64];
    memcpy(shortx, d->excerpt, sizeof(shortx) - 1);
    shortx[sizeof(shortx) - 1] = '\0';
    if (d->bytes)
        esp_ldr_log(l, ESP_LOG_DEBUG, "output before sync: \"%.200s\"", d->excerpt);

    if (d->waiting_seen)
        return esp_error_set(err, -ETIMEDOUT, ESP_STAGE_SYNC,
                             "the host->chip (TX->RX) line is broken or the baud is wrong",
                             "chip printed its download banner but does not answer");
    if (d->boot_mode_seen)
        return esp_error_set(err, -ETIMEDOUT, ESP_STAGE_SYNC,
                             "GPIO0 was not low at reset: the auto-reset circuit is not working; "
                             "hold BOOT while resetting, or check the DTR/RTS wiring",
                             "wrong boot mode detected (0x%02X): the chip did not enter the "
                             "bootloader (\"%s\")",
                             d->boot_mode, shortx);
    if (d->bytes)
        return esp_error_set(err, -ETIMEDOUT, ESP_STAGE_SYNC,
                             "the chip is running something else or the baud rate is wrong: "
                             "check the board's boot mode, the baud rate and the cable",
                             "no reply to SYNC (%llu bytes of other output: \"%s\")",
                             (unsigned long long)d->bytes, shortx);
    return esp_error_set(err, -ETIMEDOUT, ESP_STAGE_SYNC,
                         "check the USB cable, the board's power and its auto-reset circuit (or "
                         "hold BOOT while tapping EN)",
                         "no serial data received");
}

static bool fatal_io(int rc)
{
    return rc == -ENODEV || rc == -ECANCELED;
}

/*
 * Which interface the ROM talks on, from its uart_no byte (PROTOCOL-ROM.md 3.6,
 * esptool v4's method), when the port did not say: a pty or fd, a tty whose sysfs
 * hides the USB ids, a board behind a hub or a VM. Only from the ROM (a stub's RAM
 * differs) and not in Secure Download Mode (READ_REG refused).
 */
static int usb_console_from_rom(struct esp_loader *l, struct esp_error *err)
{
    const struct esp_chip_desc *c = l->info.chip;
    if (!c || !c->uart_no_reg || l->t->usb_vid || l->stub || l->info.secure_download_mode ||
        l->info.usb_jtag || l->info.usb_otg)
        return 0;
    struct esp_error scratch;
    esp_error_clear(&scratch);
    uint32_t v = 0;
    int rc = esp_loader_read_reg(l, c->uart_no_reg, &v, &scratch);
    if (fatal_io(rc))
        return esp_ldr_io_error(l, rc, "reading the ROM's console", err);
    if (rc < 0)
        return 0;
    uint8_t no = (uint8_t)(v & 0xFF);
    if (c->uart_no_jtag && no == c->uart_no_jtag)
        l->info.usb_jtag = true;
    else if (c->uart_no_otg && no == c->uart_no_otg)
        l->info.usb_otg = true;
    if (l->info.usb_jtag || l->info.usb_otg)
        esp_ldr_log(l, ESP_LOG_INFO, "the ROM talks over the chip's %s (uart_no %u)",
                    l->info.usb_jtag ? "USB-Serial/JTAG" : "USB-OTG", no);
    return 0;
}

/* Disable the RTC and super watchdogs a USB-Serial/JTAG reset leaves armed (§3.6). */
static int usb_jtag_disable_wdt(struct esp_loader *l, struct esp_error *err)
{
    struct esp_error scratch;
    esp_error_clear(&scratch);
    int urc = usb_console_from_rom(l, err);
    if (urc < 0)
        return urc;
    const struct esp_chip_desc *c = l->info.chip;
    if (!c || !c->rtc_wdt_wprotect || !l->info.usb_jtag || l->stub || l->info.secure_download_mode)
        return 0;
    const uint32_t wdt_key = 0x50D83AA1u;
    int rc = esp_loader_write_reg(l, c->rtc_wdt_wprotect, wdt_key, 0xFFFFFFFFu, 0, &scratch);
    if (rc >= 0)
        rc = esp_loader_write_reg(l, c->rtc_wdt_config0, 0, 0xFFFFFFFFu, 0, &scratch);
    if (rc >= 0)
        rc = esp_loader_write_reg(l, c->rtc_wdt_wprotect, 0, 0xFFFFFFFFu, 0, &scratch);
    if (rc >= 0 && c->swd_wprotect) {
        uint32_t conf = 0;
        rc = esp_loader_write_reg(l, c->swd_wprotect, c->swd_wkey, 0xFFFFFFFFu, 0, &scratch);
        if (rc >= 0)
            rc = esp_loader_read_reg(l, c->swd_conf, &conf, &scratch);
        if (rc >= 0)
            rc = esp_loader_write_reg(l, c->swd_conf, conf | (1u << c->swd_auto_feed_bit),
                                      0xFFFFFFFFu, 0, &scratch);
        if (rc >= 0)
            rc = esp_loader_write_reg(l, c->swd_wprotect, 0, 0xFFFFFFFFu, 0, &scratch);
    }
    if (fatal_io(rc))
        return esp_ldr_io_error(l, rc, "disabling the watchdogs", err);
    if (rc < 0) {
        esp_ldr_log(l, ESP_LOG_WARN,
                    "could not disable the watchdogs (%s): a long flash may be "
                    "interrupted",
                    scratch.message);
        return 0;
    }
    esp_ldr_log(l, ESP_LOG_DEBUG, "USB-Serial/JTAG: RTC and super watchdogs disabled");
    return 0;
}

static int connect_once(struct esp_loader *l, struct esp_error *err)
{
    esp_error_clear(err);
    l->stage = ESP_STAGE_RESET;
    l->connected = false;
    l->attached = false;
    l->stub = false;
    l->info.stub_running = false;
    l->responder_known = false;
    l->unsup_op = -1;
    l->info.chip = NULL;

    struct transport *t = l->t;
    if ((t->caps & TRANSPORT_CAP_BAUD) && t->baud != l->cfg.initial_baud) {
        int rc = transport_set_baud(t, l->cfg.initial_baud);
        if (rc == -ENODEV)
            return esp_ldr_io_error(l, rc, "setting the baud rate", err);
    }
    if (t->baud)
        l->info.baud = t->baud;

    if (!(t->caps & TRANSPORT_CAP_MODEM_LINES))
        l->no_lines = true;

    enum esp_before before = l->cfg.before;
    struct {
        enum esp_reset_kind kind;
        int delay;
    } cycle[4];
    size_t ncycle = 0;
    int d1 = l->cfg.reset_delay_ms ? l->cfg.reset_delay_ms : 50;
    int d2 = l->cfg.reset_delay_ms ? l->cfg.reset_delay_ms : 550;
    if (before == ESP_BEFORE_USB_RESET ||
        (before == ESP_BEFORE_DEFAULT_RESET && l->info.usb_jtag)) {
        cycle[ncycle].kind = ESP_RESET_USB_JTAG;
        cycle[ncycle++].delay = 0;
    } else if (before == ESP_BEFORE_DEFAULT_RESET) {
        cycle[0].kind = ESP_RESET_TIGHT;
        cycle[0].delay = d1;
        cycle[1].kind = ESP_RESET_TIGHT;
        cycle[1].delay = d2;
        cycle[2].kind = ESP_RESET_CLASSIC;
        cycle[2].delay = d1;
        cycle[3].kind = ESP_RESET_CLASSIC;
        cycle[3].delay = d2;
        ncycle = 4;
    }

    if (before == ESP_BEFORE_NO_RESET_NO_SYNC) {
        esp_ldr_log(l, ESP_LOG_INFO, "no reset, no sync: assuming a loader is listening");
        l->stage = ESP_STAGE_DETECT;
        int rc = esp_ldr_detect(l, err);
        if (rc < 0)
            return rc;
        l->connected = true;
        return usb_jtag_disable_wdt(l, err);
    }

    struct boot_diag diag;
    memset(&diag, 0, sizeof(diag));
    unsigned status_bytes = 0;
    bool all_zero = false;
    bool synced = false;
    int tries_total = 0;

    for (int attempt = 0; !synced; attempt++) {
        if (l->cfg.connect_attempts > 0 && attempt >= l->cfg.connect_attempts)
            break;
        l->stats.connect_attempts++;
        l->stage = ESP_STAGE_RESET;
        l->boot_len = 0;
        unsigned dropped_before = l->stats.frames_dropped;
        uint8_t junk[256];
        slip_decoder_junk(&l->dec, junk, sizeof(junk), true);

        int rc = esp_ldr_flush_input(l);
        if (rc == -ENODEV || rc == -ECANCELED)
            return esp_ldr_io_error(l, rc, "flushing input", err);

        bool do_manual = before == ESP_BEFORE_MANUAL;
        if (ncycle > 0 && !l->no_lines) {
            const char *kind = esp_ldr_reset_kind_to_string(cycle[attempt % ncycle].kind);
            int delay = cycle[attempt % ncycle].delay;
            /* The first pulse is short (esp_reset.c: 20 ms against the chip's 50 us);
             * retries hold EN low for esptool's 100 ms. */
            int en_low = attempt == 0 ? ESP_EN_LOW_FAST_MS : ESP_EN_LOW_MS;
            rc = esp_ldr_line_reset(l, cycle[attempt % ncycle].kind, en_low, delay);
            if (rc == -ENODEV && (t->caps & TRANSPORT_CAP_REOPEN))
                rc = transport_reopen(t, esp_ldr_tmo(l, 3000));
            if (rc == -ENOTSUP) {
                no_lines_once(l);
            } else if (rc < 0) {
                return esp_ldr_io_error(l, rc, "reset", err);
            } else {
                esp_ldr_log(l, ESP_LOG_DEBUG, "attempt %d: %s reset (%d ms)", attempt + 1, kind,
                            delay);
            }
        }
        if (ncycle > 0 && l->no_lines) {
            no_lines_once(l);
            if (l->cfg.no_lines == ESP_NO_LINES_MANUAL)
                do_manual = true;
        }
        if (do_manual) {
            rc = manual_boot(l, err);
            if (rc < 0)
                return rc;
        }

        rc = capture_boot(l);
        if (rc == -ENODEV && (t->caps & TRANSPORT_CAP_REOPEN))
            rc = transport_reopen(t, esp_ldr_tmo(l, 3000));
        if (rc < 0)
            return esp_ldr_io_error(l, rc, "reading boot output", err);

        l->stage = ESP_STAGE_SYNC;
        for (int i = 0; i < l->cfg.sync_tries; i++) {
            l->stats.sync_tries++;
            tries_total++;
            rc = sync_once(l, &status_bytes, &all_zero);
            if (rc < 0)
                return esp_ldr_io_error(l, rc, "SYNC", err);
            if (rc > 0) {
                synced = true;
                break;
            }
            esp_ldr_sleep_ms(50);
        }

        /* Boot output: what we captured plus what the decoder threw away. */
        size_t room = sizeof(l->boot) - l->boot_len;
        size_t jn = slip_decoder_junk(&l->dec, l->boot + l->boot_len, room, true);
        l->boot_len += jn;
        if (!synced) {
            diag_scan(&diag, l->boot, l->boot_len);
            if (l->boot_len == 0 && l->stats.frames_dropped != dropped_before)
                diag.bytes += 1; /* frames arrived, but no valid SYNC reply */
        } else if (l->boot_len) {
            char ex[208];
            esp_ldr_printable(l->boot, l->boot_len, ex, sizeof(ex));
            esp_ldr_log(l, ESP_LOG_DEBUG, "output before sync: \"%s\"", ex);
        }
    }

    if (!synced)
        return diagnose(l, &diag, err);

    /* Let any extra SYNC replies go: the ESP8266 ROM sometimes sends more than eight
     * (PROTOCOL-ROM.md 1.4). ESP32-family ROMs and the stubs send exactly eight, and
     * sync_once read all eight (or gave up waiting), so nothing is left to wait for. */
    if (status_bytes == 2)
        esp_ldr_sleep_ms(10);
    int frc = esp_ldr_flush_input(l);
    if (frc == -ENODEV || frc == -ECANCELED)
        return esp_ldr_io_error(l, frc, "flushing input", err);

    if (all_zero) {
        esp_ldr_set_responder(l, ESP_RESPONDER_STUB);
        esp_ldr_log(l, ESP_LOG_INFO, "sync ok after %d tries: flasher stub already running",
                    tries_total);
    } else {
        esp_ldr_set_responder(l,
                              status_bytes == 2 ? ESP_RESPONDER_ROM_8266 : ESP_RESPONDER_ROM_ESP32);
        esp_ldr_log(l, ESP_LOG_INFO, "sync ok after %d tries", tries_total);
    }

    l->stage = ESP_STAGE_DETECT;
    int rc = esp_ldr_detect(l, err);
    if (rc < 0)
        return rc;
    l->connected = true;
    l->stage = ESP_STAGE_DETECT;
    return usb_jtag_disable_wdt(l, err);
}

/*
 * Without a reset nothing restarts the ROM at its initial baud: a flasher stub
 * left running by an earlier session (--after no-reset-stub) still listens at
 * that session's baud, usually the configured one. So when nothing answers at
 * the initial baud, try the configured baud once before giving up, and say so.
 */
int esp_loader_connect(struct esp_loader *l, struct esp_error *err)
{
    int rc = connect_once(l, err);
    bool no_reset =
        l->cfg.before == ESP_BEFORE_NO_RESET || l->cfg.before == ESP_BEFORE_NO_RESET_NO_SYNC;
    uint32_t initial = l->cfg.initial_baud;
    if (rc >= 0 || !no_reset || rc == -ENODEV || rc == -ECANCELED || !l->cfg.baud ||
        l->cfg.baud == initial || !(l->t->caps & TRANSPORT_CAP_BAUD))
        return rc;
    struct esp_error first;
    esp_error_clear(&first);
    if (err)
        first = *err;
    esp_ldr_log(l, ESP_LOG_INFO,
                "nothing answers at %u baud; trying %u baud (a flasher stub left running by an "
                "earlier session listens there)",
                initial, l->cfg.baud);
    l->cfg.initial_baud = l->cfg.baud;
    rc = connect_once(l, err);
    l->cfg.initial_baud = initial;
    if (rc >= 0)
        return rc;
    if (err) {
        *err = first;
        snprintf(err->advice, sizeof(err->advice),
                 "nothing answered at %u or %u baud without a reset: let the station reset the "
                 "board (--before default-reset), or give the baud a stub left running uses "
                 "with --initial-baud",
                 initial, l->cfg.baud);
    }
    return rc;
}

/* ---- detection ------------------------------------------------------------ */

int esp_ldr_security_info(struct esp_loader *l, int *chip_id, struct esp_error *err)
{
    if (chip_id)
        *chip_id = -1;
    struct esp_response r;
    int len = esp_cmd_build(ESP_OP_GET_SECURITY_INFO, NULL, 0, 0, l->pkt, ESP_PKT_MAX);
    if (len < 0)
        return esp_error_set(err, len, l->stage, NULL, "cannot build GET_SECURITY_INFO");
    int rc = esp_ldr_send_raw(l, l->pkt, (size_t)len, err);
    if (rc < 0)
        return rc;
    rc = esp_ldr_recv(l, ESP_OP_GET_SECURITY_INFO, 20, 12, esp_ldr_tmo(l, ESP_TMO_SECURITY_INFO),
                      &r, err);
    if (rc < 0)
        return rc;
    const uint8_t *p = r.data;
    l->info.security_info_valid = true;
    l->info.security_flags = esp_get_u32(p);
    l->info.flash_crypt_cnt = p[4];
    l->info.secure_boot = (l->info.security_flags & 1u) != 0;
    l->info.secure_download_mode = (l->info.security_flags & 4u) != 0;
    l->info.flash_encryption = (__builtin_popcount(l->info.flash_crypt_cnt) & 1) != 0;
    if (chip_id && r.data_len >= 20 && esp_get_u32(p + 12) <= 0xFFFF)
        *chip_id = (int)esp_get_u32(p + 12);
    return 0;
}

int esp_ldr_detect(struct esp_loader *l, struct esp_error *err)
{
    const struct esp_chip_desc *chip = NULL;
    struct esp_error scratch;
    esp_error_clear(&scratch);

    /* Only ESP32-family ROMs (4 status bytes) and stubs may know GET_SECURITY_INFO. */
    bool try_secinfo = l->responder_known && l->who != ESP_RESPONDER_ROM_8266;
    if (try_secinfo) {
        int id = -1;
        int rc = esp_ldr_security_info(l, &id, &scratch);
        if (fatal_io(rc))
            return esp_ldr_io_error(l, rc, "GET_SECURITY_INFO", err);
        if (rc < 0) {
            esp_ldr_log(l, ESP_LOG_DEBUG, "GET_SECURITY_INFO unavailable (%s)", scratch.message);
        } else if (id >= 0) {
            chip = esp_chip_by_image_id(id);
            if (!chip)
                esp_ldr_log(l, ESP_LOG_DEBUG, "security info names unknown chip id %d", id);
        }
    }

    if (!chip) {
        uint32_t magic = 0;
        esp_error_clear(&scratch);
        int rc = esp_loader_read_reg(l, ESP_CHIP_DETECT_MAGIC_REG, &magic, &scratch);
        if (fatal_io(rc))
            return esp_ldr_io_error(l, rc, "READ_REG", err);
        if (rc < 0 && l->info.secure_download_mode) {
            /* Register reads are refused in SDM; an S2 has no id in its security info. */
            chip = esp_chip_get(ESP_CHIP_ESP32S2);
        } else if (rc < 0) {
            esp_error_set(err, rc, ESP_STAGE_DETECT, scratch.advice,
                          "cannot read the chip magic register: %s", scratch.message);
            if (scratch.has_device_status)
                esp_error_set_device(err, scratch.op, scratch.status, scratch.error);
            return rc;
        } else {
            l->info.magic = magic;
            chip = esp_chip_by_magic(magic);
            if (!chip)
                return esp_error_set(err, -ENOTSUP, ESP_STAGE_DETECT,
                                     "this chip is not supported by the station (or it is not "
                                     "an Espressif chip)",
                                     "unknown chip: magic value 0x%08X at 0x%08X", magic,
                                     ESP_CHIP_DETECT_MAGIC_REG);
            /* Without a known responder (no SYNC), the reply size tells. */
            if (!l->responder_known) {
                if (l->dec.frame_len >= ESP_CMD_HEADER_LEN && esp_get_u16(l->dec.frame + 2) == 2 &&
                    chip->chip != ESP_CHIP_ESP8266)
                    esp_ldr_set_responder(l, ESP_RESPONDER_STUB);
            }
        }
    }

    l->info.chip = chip;
    if (!l->stub)
        esp_ldr_set_responder(l, chip->chip == ESP_CHIP_ESP8266 ? ESP_RESPONDER_ROM_8266
                                                                : ESP_RESPONDER_ROM_ESP32);
    /* A chip that may know GET_SECURITY_INFO but was detected without it. */
    if (!l->info.security_info_valid && chip->rom_has_security_info && !try_secinfo) {
        esp_error_clear(&scratch);
        int rc = esp_ldr_security_info(l, NULL, &scratch);
        if (fatal_io(rc))
            return esp_ldr_io_error(l, rc, "GET_SECURITY_INFO", err);
    }
    esp_ldr_log(l, ESP_LOG_INFO, "chip %s%s%s", chip->name,
                l->info.secure_download_mode ? " (secure download mode)" : "",
                l->stub ? " (stub running)" : "");
    return 0;
}

/* ---- identify ------------------------------------------------------------- */

int esp_loader_identify(struct esp_loader *l, struct esp_error *err)
{
    esp_error_clear(err);
    l->stage = ESP_STAGE_IDENTIFY;
    int rc = esp_ldr_need_connected(l, err);
    if (rc < 0)
        return rc;
    const struct esp_chip_desc *chip = l->info.chip;
    struct esp_error scratch;

    if (!l->info.security_info_valid && (chip->rom_has_security_info || l->stub)) {
        esp_error_clear(&scratch);
        rc = esp_ldr_security_info(l, NULL, &scratch);
        if (fatal_io(rc))
            return esp_ldr_io_error(l, rc, "GET_SECURITY_INFO", err);
    }
    if (l->info.secure_download_mode) {
        esp_ldr_log(l, ESP_LOG_INFO, "secure download mode: MAC and eFuses cannot be read");
        return 0;
    }

    uint32_t vals[ESP_MAX_IDREGS];
    size_t n = chip->n_mac_regs;
    for (size_t i = 0; i < n && i < ESP_MAX_IDREGS; i++) {
        rc = esp_loader_read_reg(l, chip->mac_regs[i], &vals[i], err);
        if (rc < 0)
            return rc;
    }
    if (n && esp_chip_decode_mac(chip, vals, n, l->info.mac) == 0) {
        l->info.mac_valid = true;
    } else {
        l->info.mac_valid = false;
        esp_ldr_log(l, ESP_LOG_WARN, "cannot decode the MAC address from the eFuses");
    }

    n = chip->n_rev_regs;
    l->info.revision = -1;
    if (n) {
        for (size_t i = 0; i < n && i < ESP_MAX_IDREGS; i++) {
            rc = esp_loader_read_reg(l, chip->rev_regs[i], &vals[i], err);
            if (rc < 0)
                return rc;
        }
        int rev = esp_chip_decode_revision(chip, vals, n);
        l->info.revision = rev >= 0 ? rev : -1;
    }

    if (chip->xtal_fixed_mhz) {
        l->info.xtal_mhz = chip->xtal_fixed_mhz;
    } else if (chip->uart_clkdiv_reg) {
        uint32_t div = 0;
        rc = esp_loader_read_reg(l, chip->uart_clkdiv_reg, &div, err);
        if (rc < 0)
            return rc;
        l->info.xtal_mhz = esp_chip_decode_xtal(chip, div, l->info.baud);
    }

    char mac[32] = "unknown";
    if (l->info.mac_valid)
        snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", l->info.mac[0], l->info.mac[1],
                 l->info.mac[2], l->info.mac[3], l->info.mac[4], l->info.mac[5]);
    char rev[16] = "unknown";
    if (l->info.revision >= 0)
        snprintf(rev, sizeof(rev), "v%d.%d", l->info.revision / 100, l->info.revision % 100);
    esp_ldr_log(l, ESP_LOG_INFO, "%s rev %s, MAC %s, crystal %u MHz%s%s", chip->name, rev, mac,
                l->info.xtal_mhz, l->info.secure_boot ? ", secure boot" : "",
                l->info.flash_encryption ? ", flash encryption" : "");
    return 0;
}
