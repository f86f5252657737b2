/*
 * esp_reset: the DTR/RTS sequences that reset a board into its ROM loader or
 * out of it (PROTOCOL-ROM.md §3.2), and esp_loader_reset() (§3.7).
 *
 * Owns: line orders and hold times. The orders are esptool's strategies; the
 * times differ where the chip needs less (issue 11, whole-command time):
 *   - EN low: the caller's en_low_ms. The chip needs CHIP_PU below V_IL for
 *     50 us to reset (ESP32 datasheet, "Power-up and reset timing", t1 >= 50 us),
 *     and the auto-reset transistor pulls EN down through the 10 kOhm / 1 uF of
 *     Espressif's reference EN circuit in well under 1 ms (EN moves within
 *     0.2-0.8 ms on scope traces of ESP-Prog and a copy of its circuit,
 *     qsantos.fr 2025 "Overanalyzing a minor quirk of Espressif's reset
 *     circuit"); Linux's USB-serial drivers change the lines with a synchronous
 *     control transfer, so the sleep is the pulse. ESP_EN_LOW_FAST_MS (20 ms) is
 *     400x the datasheet minimum; esptool and esp-serial-flasher hold 100 ms,
 *     which the connect loop keeps for its retries (ESP_EN_LOW_MS).
 *   - BOOT held after EN rose: until the ROM prints "waiting for download", at
 *     most delay_ms (esp_ldr_boot_hold). The ROM prints its banner, with the boot
 *     mode it latched from the strapping pins, only after sampling them, so
 *     once the banner says download mode GPIO0 is free. A chip that prints
 *     nothing readable (ESP8266 at 74880 Bd, a silenced ROM log) gets the full
 *     delay as before.
 * "Asserted" (1) = TIOCM bit set = pin low at the bridge; DTR drives BOOT,
 * RTS drives EN on the usual two-transistor auto-reset circuit.
 * Invariant: every single-line RTS change is followed by re-writing DTR with
 * its current value (Windows usbser.sys needs it; harmless here, and keeps the
 * sequences identical to the reference on every bridge).
 */
#include "esp_loader_priv.h"

#include <errno.h>

const char *esp_ldr_reset_kind_to_string(enum esp_reset_kind k)
{
    switch (k) {
    case ESP_RESET_CLASSIC:
        return "classic";
    case ESP_RESET_TIGHT:
        return "unix-tight";
    case ESP_RESET_USB_JTAG:
        return "usb-jtag-serial";
    case ESP_RESET_HARD:
        return "hard";
    default:
        return "unknown";
    }
}

struct lines {
    struct esp_loader *l;
    int dtr; /* last DTR we set, 0 initially */
    int rc;  /* first failure */
};

static void set_dtr(struct lines *s, int v)
{
    if (s->rc < 0)
        return;
    s->rc = transport_set_lines(s->l->t, v, -1);
    s->dtr = v;
}

static void set_rts(struct lines *s, int v)
{
    if (s->rc < 0)
        return;
    s->rc = transport_set_lines(s->l->t, -1, v);
    if (s->rc >= 0)
        s->rc = transport_set_lines(s->l->t, s->dtr, -1);
}

/* Both lines in one TIOCMSET. */
static void set_both(struct lines *s, int dtr, int rts)
{
    if (s->rc < 0)
        return;
    s->rc = transport_set_lines(s->l->t, dtr, rts);
    s->dtr = dtr;
}

static void wait_ms(struct lines *s, int ms)
{
    if (s->rc >= 0)
        esp_ldr_sleep_ms(ms);
}

/* Just before EN rises: what came in so far left the chip before it was held in
 * reset (EN low longer than a bridge's latency timer, 16 ms by default on FTDI), so an
 * earlier boot's banner cannot end boot_hold. */
static void flush_before_release(struct lines *s)
{
    if (s->rc < 0)
        return;
    int rc = esp_ldr_flush_input(s->l);
    if (rc == -ENODEV || rc == -ECANCELED)
        s->rc = rc;
}

/* BOOT held low after EN went high: until the ROM says it entered download mode
 * (esp_ldr_boot_hold), at most ms. */
static void boot_hold(struct lines *s, int ms)
{
    if (s->rc >= 0)
        s->rc = esp_ldr_boot_hold(s->l, ms);
}

int esp_ldr_line_reset(struct esp_loader *l, enum esp_reset_kind kind, int en_low_ms, int delay_ms)
{
    struct lines s = {.l = l, .dtr = 0, .rc = 0};
    bool native_usb = l->t->usb_vid == ESP_ESPRESSIF_VID;

    switch (kind) {
    case ESP_RESET_CLASSIC:
        set_dtr(&s, 0);
        set_rts(&s, 1); /* EN low */
        wait_ms(&s, en_low_ms);
        flush_before_release(&s);
        set_dtr(&s, 1); /* BOOT low */
        set_rts(&s, 0); /* EN high: chip boots sampling BOOT low */
        boot_hold(&s, delay_ms);
        set_dtr(&s, 0);
        break;
    case ESP_RESET_TIGHT:
        set_both(&s, 0, 0);
        set_both(&s, 1, 1);
        set_both(&s, 0, 1); /* EN low */
        wait_ms(&s, en_low_ms);
        flush_before_release(&s);
        set_both(&s, 1, 0); /* BOOT low, EN high */
        boot_hold(&s, delay_ms);
        set_both(&s, 0, 0);
        set_dtr(&s, 0);
        break;
    case ESP_RESET_USB_JTAG:
        set_rts(&s, 0);
        set_dtr(&s, 0); /* idle */
        wait_ms(&s, 100);
        set_dtr(&s, 1);
        set_rts(&s, 0);
        wait_ms(&s, 100);
        /* Ordered so the peripheral sees (1,1), never (0,0). */
        set_rts(&s, 1);
        set_dtr(&s, 0);
        set_rts(&s, 1);
        wait_ms(&s, 100);
        set_dtr(&s, 0);
        set_rts(&s, 0);
        break;
    case ESP_RESET_HARD:
        set_rts(&s, 1);
        wait_ms(&s, native_usb ? 200 : en_low_ms);
        set_rts(&s, 0);
        if (native_usb)
            wait_ms(&s, 200);
        break;
    }
    if (s.rc == -EINVAL || s.rc == -ENOTTY)
        s.rc = -ENOTSUP;
    return s.rc < 0 ? s.rc : 0;
}

/* ---- leaving the loader --------------------------------------------------- */

static void disconnected(struct esp_loader *l)
{
    l->connected = false;
    l->attached = false;
    l->stub = false;
    l->info.stub_running = false;
    l->responder_known = false;
}

/*
 * The ROM's USB-OTG CDC resets nothing on DTR/RTS (PROTOCOL-ROM.md 3.6): when the
 * strap register says GPIO0 was low (SPI_BOOT clear) and the force-download bit is
 * clear, reset through the RTC watchdog (stage 0 resets the system after 2000 slow
 * clock ticks). Returns 0 when done, 1 to fall back to the RTS pulse, or -errno.
 */
static int otg_watchdog_reset(struct esp_loader *l, struct esp_error *err)
{
    const struct esp_chip_desc *c = l->info.chip;
    struct esp_error scratch;
    esp_error_clear(&scratch);
    uint32_t strap = 0, opt = 0;
    int rc = esp_loader_read_reg(l, c->gpio_strap_reg, &strap, &scratch);
    if (rc >= 0 && c->force_download_reg)
        rc = esp_loader_read_reg(l, c->force_download_reg, &opt, &scratch);
    if (rc == -ENODEV || rc == -ECANCELED)
        return esp_ldr_io_error(l, rc, "reading the strap register", err);
    if (rc < 0 || (strap & (1u << 3)) || (opt & 1u)) {
        esp_ldr_log(l, ESP_LOG_DEBUG, "USB-OTG: no watchdog reset (strap 0x%08x, option1 0x%x%s)",
                    strap, opt, rc < 0 ? ", unreadable" : "");
        return 1;
    }
    const uint32_t key = 0x50D83AA1u;
    rc = esp_loader_write_reg(l, c->otg_wdt_wprotect, key, 0xFFFFFFFFu, 0, &scratch);
    if (rc >= 0)
        rc = esp_loader_write_reg(l, c->otg_wdt_config1, 2000, 0xFFFFFFFFu, 0, &scratch);
    if (rc >= 0)
        rc = esp_loader_write_reg(l, c->otg_wdt_config0, (1u << 31) | (5u << 28) | (1u << 8) | 2u,
                                  0xFFFFFFFFu, 0, &scratch);
    /* The chip may reset before this write's reply: not an error. */
    if (rc >= 0)
        (void)esp_loader_write_reg(l, c->otg_wdt_wprotect, 0, 0xFFFFFFFFu, 0, &scratch);
    if (rc == -ENODEV || rc == -ECANCELED)
        return esp_ldr_io_error(l, rc, "arming the watchdog reset", err);
    if (rc < 0)
        return esp_error_set(err, rc, l->stage, "power-cycle the board",
                             "USB-OTG watchdog reset failed: %s", scratch.message);
    esp_ldr_sleep_ms(500);
    esp_ldr_log(l, ESP_LOG_INFO, "hard reset (RTC watchdog: USB-OTG resets nothing on RTS)");
    disconnected(l);
    return 0;
}

static int hard_reset(struct esp_loader *l, struct esp_error *err)
{
    const struct esp_chip_desc *chip = l->info.chip;
    if (chip && chip->force_download_reg && l->connected && !l->info.secure_download_mode) {
        /* S3: the ROM's force-download bit survives reset; clear it first. */
        struct esp_error scratch;
        esp_error_clear(&scratch);
        int rc = esp_loader_write_reg(l, chip->force_download_reg, 0, 1, 0, &scratch);
        if (rc == -ENODEV || rc == -ECANCELED)
            return esp_ldr_io_error(l, rc, "clearing the force-download bit", err);
        if (rc < 0)
            esp_ldr_log(l, ESP_LOG_DEBUG, "could not clear the force-download bit: %s",
                        scratch.message);
    }
    if (esp_ldr_is_usb_otg(l) && chip && chip->otg_wdt_config0 && l->connected &&
        !l->info.secure_download_mode) {
        int wrc = otg_watchdog_reset(l, err);
        if (wrc <= 0)
            return wrc;
    }
    int rc = esp_ldr_line_reset(l, ESP_RESET_HARD, ESP_EN_LOW_FAST_MS, 0);
    if (rc == -ENOTSUP) {
        esp_ldr_log(l, ESP_LOG_WARN,
                    "cannot reset: transport has no modem lines; power-cycle "
                    "the board");
        return 0;
    }
    if (rc < 0)
        return esp_ldr_io_error(l, rc, "hard reset", err);
    esp_ldr_log(l, ESP_LOG_INFO, "hard reset");
    l->connected = false;
    l->attached = false;
    l->stub = false;
    l->info.stub_running = false;
    l->responder_known = false;
    return 0;
}

/* FLASH_BEGIN(0,0) + FLASH_END(flag): flag 1 runs the app (ROM) / stays (stub),
 * flag 0 makes the stub reset into the ROM loader. */
static int begin_end(struct esp_loader *l, uint32_t flag, bool reply_optional,
                     struct esp_error *err)
{
    uint32_t w[5] = {0, 0, ESP_ROM_WRITE_SIZE, 0, 0};
    if (l->stub)
        w[2] = esp_ldr_is_usb_otg(l) ? ESP_OTG_WRITE_SIZE : ESP_STUB_WRITE_SIZE;
    int rc = esp_ldr_cmd_words(l, ESP_OP_FLASH_BEGIN, w, esp_ldr_begin_words(l), 0,
                               esp_ldr_tmo(l, ESP_TMO_DEFAULT), NULL, err);
    if (rc < 0)
        return rc;
    struct esp_error scratch;
    esp_error_clear(&scratch);
    rc = esp_ldr_cmd_words(l, ESP_OP_FLASH_END, &flag, 1, 0, esp_ldr_tmo(l, ESP_TMO_DEFAULT), NULL,
                           reply_optional ? &scratch : err);
    if (rc == -ETIMEDOUT && reply_optional)
        return 0;
    if (rc < 0 && reply_optional)
        return esp_error_set(err, rc, scratch.stage, scratch.advice, "%s", scratch.message);
    return rc;
}

int esp_loader_reset(struct esp_loader *l, enum esp_after after, struct esp_error *err)
{
    esp_error_clear(err);
    l->stage = ESP_STAGE_FINISH;
    int rc = 0;

    switch (after) {
    case ESP_AFTER_HARD_RESET:
        return hard_reset(l, err);
    case ESP_AFTER_SOFT_RESET:
        if (!l->connected)
            return hard_reset(l, err);
        if (l->stub) {
            if (l->info.chip && l->info.chip->chip == ESP_CHIP_ESP8266) {
                int len = esp_cmd_build(ESP_OP_RUN_USER_CODE, NULL, 0, 0, l->pkt, ESP_PKT_MAX);
                if (len < 0)
                    return esp_error_set(err, len, l->stage, NULL, "cannot build RUN_USER_CODE");
                rc = esp_ldr_send_raw(l, l->pkt, (size_t)len, err); /* no reply at all */
                if (rc < 0)
                    return rc;
                transport_drain(l->t);
                esp_ldr_log(l, ESP_LOG_INFO, "soft reset (stub runs user code)");
                l->connected = false;
                return 0;
            }
            esp_ldr_log(l, ESP_LOG_INFO,
                        "soft reset through the stub is only possible on ESP8266: hard reset");
            return hard_reset(l, err);
        }
        rc = begin_end(l, 1, true, err);
        if (rc < 0)
            return rc;
        esp_ldr_log(l, ESP_LOG_INFO, "soft reset (ROM jumps to the application)");
        l->connected = false;
        return 0;
    case ESP_AFTER_NO_RESET:
        if (l->stub && l->connected) {
            rc = begin_end(l, 0, true, err);
            if (rc < 0)
                return rc;
            esp_ldr_log(l, ESP_LOG_INFO, "stub reset back into the ROM loader");
            esp_ldr_set_responder(l, l->info.chip->chip == ESP_CHIP_ESP8266
                                         ? ESP_RESPONDER_ROM_8266
                                         : ESP_RESPONDER_ROM_ESP32);
            l->connected = false;
            l->attached = false;
            return 0;
        }
        esp_ldr_log(l, ESP_LOG_INFO, "staying in the loader");
        return 0;
    case ESP_AFTER_NO_RESET_STUB:
        esp_ldr_log(l, ESP_LOG_INFO, "staying in the %s", l->stub ? "stub" : "loader");
        return 0;
    }
    return esp_error_set(err, -EINVAL, l->stage, NULL, "unknown after-flash action %d", (int)after);
}
