/*
 * sim_usb: the chip's own USB as the board's port (--usb serial-jtag|otg),
 * PROTOCOL-ROM.md §3.2, §3.6, §5.2.
 *
 * USB-Serial/JTAG (C3, S3; 303a:1001):
 *   - DTR/RTS are not wired to EN/BOOT: the peripheral reads them. RTS set with
 *     DTR clear holds the chip in reset; the reset boots the ROM loader when DTR
 *     was set just before (the line state went through (1,1) into (0,1), as the
 *     USBJTAGSerialReset sequence does), the flash otherwise. The classic
 *     sequence (D=0, R=1 from (0,0)) therefore boots the app.
 *   - A reset through the peripheral leaves the RTC watchdog and the super
 *     watchdog armed: unless the host disables them (write-protect key, then
 *     WDT_CONFIG0 = 0; SWD key, then SWD_CONF auto-feed), the chip resets itself
 *     --usb-wdt-ms after that reset (default SIM_USB_WDT_MS). The doc gives no
 *     figure; a flash of a few MB over the ROM takes longer than it.
 *   - uart_no (ROM .bss byte) reads USB-Serial/JTAG: C3 0x3FCDF07C = 3,
 *     S3 0x3FCEF14C = 4.
 * USB-OTG CDC of the S3 ROM (--usb otg, 303a:0009):
 *   - DTR/RTS do nothing: the host resets the chip with the RTC watchdog
 *     (WPROTECT key, CONFIG1 = ticks, CONFIG0 = enable + stage0 reset).
 *   - A command frame whose data block is larger than 0x800 bytes is lost: the
 *     doc says blocks must drop to 0x800 over USB-OTG and gives no failure mode,
 *     so the loss is modelled as no reply (the host times out); --usb-otg-block.
 *   - uart_no reads USB-OTG: S3 0x3FCEF14C = 3.
 * Both: the S3 ROM sets RTC_CNTL_OPTION1 bit 0 (FORCE_DOWNLOAD_BOOT) when it
 * enters download mode over USB, and every later reset boots the loader again
 * until the host clears it (arduino-esp32 #6762). The tty vanishes and comes
 * back (re-enumeration, --usb-gone-ms) when the chip leaves the ROM for the app
 * and on a watchdog (system) reset; with --usb-reenum always also on a reset
 * into the loader. With our own pty: DIR/tty is removed, the pty closed (the
 * host's fd hangs up), and a new pty linked as DIR/tty after --usb-gone-ms.
 * With --master-fd the harness owns the node, so nothing is re-enumerated here.
 * Stray replies (--usb-stray-05 N[:EVERY], USB-Serial/JTAG, ROM loader): an S3 that
 * is not in Secure Download Mode sporadically sends a reply "status 1, error 0x05"
 * whose opcode is not the command's (esptool #813, #1173; PROTOCOL-ROM.md §8); the
 * real reply follows. Modelled as one such frame (opcode of the previous command, or
 * 0x00) before the reply to every EVERY-th ROM command other than SYNC (default 4),
 * N times in all; default 0, as the real thing is sporadic.
 */
#include <string.h>

#include "sim.h"

#define WDT_KEY 0x50D83AA1u
#define SWD_KEY 0x8F1D312Au
/* RTC slow clock (RC_SLOW, ~136 kHz on the S3) that counts WDT_CONFIG1 ticks. */
#define RTC_SLOW_HZ 136000

struct usb_regs {
    uint32_t uart_no, wprotect, config0, config1, swd_wprotect, swd_conf, option1;
};

static const struct usb_regs *regs_of(const struct sim *s)
{
    static const struct usb_regs c3 = {
        0x3FCDF07Cu, 0x600080A8u, 0x60008090u, 0x60008094u, 0x600080B0u, 0x600080ACu, 0};
    static const struct usb_regs s3 = {0x3FCEF14Cu, 0x600080B0u, 0x60008098u, 0x6000809Cu,
                                       0x600080B8u, 0x600080B4u, 0x6000812Cu};
    if (s->chip->chip == SIM_ESP32C3)
        return &c3;
    if (s->chip->chip == SIM_ESP32S3)
        return &s3;
    return NULL;
}

const char *sim_usb_name(enum sim_usb u)
{
    return u == SIM_USB_JTAG ? "usb-serial/jtag" : u == SIM_USB_OTG ? "usb-otg" : "uart";
}

bool sim_usb_read(const struct sim *s, uint32_t addr, uint32_t *v)
{
    const struct usb_regs *r = regs_of(s);
    if (!r)
        return false;
    if (addr == r->uart_no) {
        /* 0 = UART0; C3: 3 = USB-Serial/JTAG; S3: 3 = USB-OTG, 4 = USB-Serial/JTAG */
        unsigned n = 0;
        if (s->usb == SIM_USB_JTAG)
            n = s->chip->chip == SIM_ESP32C3 ? 3 : 4;
        else if (s->usb == SIM_USB_OTG)
            n = 3;
        *v = n;
        return true;
    }
    if (r->option1 && addr == r->option1) {
        *v = s->usb_force_download ? 1u : 0u;
        return true;
    }
    return false;
}

static uint32_t reg_now(struct sim *s, uint32_t addr)
{
    return sim_regs_read(s, addr);
}

bool sim_usb_write(struct sim *s, uint32_t addr, uint32_t nv)
{
    const struct usb_regs *r = regs_of(s);
    if (!r)
        return false;
    if (r->option1 && addr == r->option1) {
        bool was = s->usb_force_download;
        s->usb_force_download = nv & 1u;
        if (was && !s->usb_force_download)
            sim_log("usb: force-download bit cleared");
        return true;
    }
    if (addr == r->config0) {
        if (reg_now(s, r->wprotect) != WDT_KEY) {
            sim_log("rtc wdt: CONFIG0 write while write-protected (ignored)");
            return true; /* not stored: the register is locked */
        }
        bool en = (nv >> 31) & 1u;
        unsigned stage0 = (nv >> 28) & 7u;
        if (!en) {
            if (s->rtc_wdt_on)
                sim_log("rtc wdt: disabled");
            s->rtc_wdt_on = false;
            if (!s->swd_on)
                s->wdt_fire_at = 0;
        } else if (stage0) {
            uint32_t ticks = reg_now(s, r->config1);
            int64_t ns = (int64_t)ticks * 1000000000LL / RTC_SLOW_HZ;
            s->rtc_wdt_on = true;
            s->wdt_fire_at = sim_now() + ns;
            sim_log("rtc wdt: armed by the host, stage0 action %u after %u ticks (%lld ms)", stage0,
                    ticks, (long long)(ns / SIM_NS_PER_MS));
        }
        return false; /* stored as well */
    }
    if (addr == r->swd_conf) {
        if (reg_now(s, r->swd_wprotect) != SWD_KEY) {
            sim_log("super wdt: SWD_CONF write while write-protected (ignored)");
            return true;
        }
        if ((nv >> 31) & 1u) {
            if (s->swd_on)
                sim_log("super wdt: auto-feed on");
            s->swd_on = false;
            if (!s->rtc_wdt_on)
                s->wdt_fire_at = 0;
        }
        return false;
    }
    return false;
}

/* The chip booted (download: into the ROM loader; usb_reset: the reset came
 * through the USB-Serial/JTAG peripheral; power_on: esp_sim's start). */
void sim_usb_booted(struct sim *s, bool download, bool usb_reset, bool power_on)
{
    if (s->usb == SIM_USB_NONE)
        return;
    if (download && s->chip->chip == SIM_ESP32S3 && !s->usb_force_download) {
        s->usb_force_download = true;
        sim_log("usb: ROM sets the force-download bit (RTC_CNTL_OPTION1 bit 0)");
    }
    if (download && usb_reset && s->usb_wdt_ms > 0) {
        s->rtc_wdt_on = s->swd_on = true;
        s->wdt_fire_at = sim_now() + (int64_t)s->usb_wdt_ms * SIM_NS_PER_MS;
        sim_log("usb: rtc and super watchdogs armed after the USB reset (%d ms)", s->usb_wdt_ms);
    }
    if (!power_on && (!download || s->usb_reenum_always))
        sim_usb_reenumerate(s, download ? "reset into the loader" : "the app starts its USB");
}

void sim_usb_reenumerate(struct sim *s, const char *why)
{
    if (s->usb == SIM_USB_NONE)
        return;
    if (s->link.tcp) {
        sim_log("usb: re-enumeration (%s) not modelled over tcp", why);
        return;
    }
    if (s->usb_master_fd) {
        sim_log("usb: re-enumeration (%s) is the harness's (--master-fd)", why);
        return;
    }
    sim_log("usb: %s: tty gone for %d ms", why, s->usb_gone_ms);
    s->usb_unplug_req = true;
}

/* The host's block limit of the ROM's (and stub's) USB-OTG CDC: true = frame lost. */
bool sim_usb_frame_lost(struct sim *s, size_t len)
{
    if (s->usb != SIM_USB_OTG || len <= 8 + 16 + s->usb_otg_block)
        return false;
    sim_log("usb-otg: %zu-byte frame (data block over 0x%x) lost, no reply", len, s->usb_otg_block);
    return true;
}

/* Watchdog timers; true when one fired (the chip was reset). */
bool sim_usb_step(struct sim *s, int64_t now)
{
    if (!s->wdt_fire_at || now < s->wdt_fire_at)
        return false;
    s->wdt_fire_at = 0;
    sim_log("%s fired: system reset", s->rtc_wdt_on ? "rtc watchdog" : "super watchdog");
    s->rtc_wdt_on = s->swd_on = false;
    return true;
}

/* --usb-stray-05: a stray "01 05" frame with a foreign opcode ahead of op's reply. */
void sim_usb_stray(struct sim *s, uint8_t op)
{
    uint8_t prev = s->usb_stray_prev_op;
    if (op != 0x08)
        s->usb_stray_prev_op = op;
    if (s->usb != SIM_USB_JTAG || !s->usb_stray_left || op == 0x08)
        return;
    if (++s->usb_stray_cmds % s->usb_stray_every != 0)
        return;
    uint8_t foreign = prev != op ? prev : 0x00;
    s->usb_stray_left--;
    sim_log("usb: stray reply (opcode 0x%02x, 01 05) before the reply to %s, %u left", foreign,
            sim_op_name(op), s->usb_stray_left);
    sim_reply(s, foreign, s->last_value, NULL, 0, 1, 0x05);
}
