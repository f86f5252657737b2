/*
 * sim_board: the chip's life cycle and the glue between wire and personas.
 *
 * Owns: the modem lines (DTR drives BOOT, RTS drives EN, both active low,
 * cross-coupled as on dev boards: EN low only for RTS-without-DTR, BOOT low
 * only for DTR-without-RTS), the strap sample 5 ms after EN is released, the
 * boot banners and app chatter, the board's baud, the session state that a
 * chip reset clears, and the staging of replies: a command handler stages
 * its reply frames and may defer them (erase time, flash busy); while a
 * reply is deferred the board reads no further commands, like a ROM busy in
 * a flash routine. Also applies the frame-level fault knobs.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define BOOT_SAMPLE_NS (5 * SIM_NS_PER_MS)
#define APP_LINE_NS (1000 * SIM_NS_PER_MS)
#define NORMAL_BOOT_MODE 0x13

const char *sim_state_to_string(enum sim_state st)
{
    switch (st) {
    case SIM_ST_RESET_HELD:
        return "reset-held";
    case SIM_ST_BOOTING:
        return "booting";
    case SIM_ST_ROM:
        return "rom";
    case SIM_ST_STUB:
        return "stub";
    case SIM_ST_APP:
        return "app";
    case SIM_ST_DEAD:
        return "dead";
    }
    return "?";
}

/* ---- output helpers ------------------------------------------------------ */

static void board_text(struct sim *s, const char *text, uint32_t baud)
{
    if (s->faults.silent || s->no_boot_noise)
        return;
    sim_link_send_raw(&s->link, (const uint8_t *)text, strlen(text), baud);
}

static void stage_chunk(struct sim *s, struct sim_chunk *c)
{
    if (!c)
        return;
    if (s->stage_tail)
        s->stage_tail->next = c;
    else
        s->stage_head = c;
    s->stage_tail = c;
}

static void free_staged(struct sim *s)
{
    while (s->stage_head) {
        struct sim_chunk *c = s->stage_head;
        s->stage_head = c->next;
        free(c);
    }
    s->stage_tail = NULL;
    s->defer_at = 0;
    s->post = SIM_POST_NONE;
}

void sim_reply(struct sim *s, uint8_t op, uint32_t value, const uint8_t *data, size_t data_len,
               uint8_t status, uint8_t error)
{
    uint8_t pkt[8 + 256 + 4];
    unsigned nstatus = s->state == SIM_ST_ROM ? s->chip->status_bytes : 2;
    if (data_len > 256)
        data_len = 256;
    pkt[0] = 0x01;
    pkt[1] = op;
    pkt[2] = (uint8_t)(data_len + nstatus);
    pkt[3] = (uint8_t)((data_len + nstatus) >> 8);
    sim_put_u32(pkt + 4, value);
    if (data_len)
        memcpy(pkt + 8, data, data_len);
    uint8_t *st = pkt + 8 + data_len;
    memset(st, 0, nstatus);
    st[0] = status;
    st[1] = error;
    size_t len = 8 + data_len + nstatus;

    unsigned n = ++s->faults.replies;
    if (sim_fault_drop_reply(&s->faults, n)) {
        sim_log("fault drop-reply fired (reply %u, %s)", n, sim_op_name(op));
        return;
    }
    bool corrupt = sim_fault_corrupt_reply(&s->faults, n);
    if (corrupt)
        sim_log("fault corrupt-reply fired (reply %u, %s)", n, sim_op_name(op));
    if (status != 0)
        sim_log("reply %s failed %02x %02x", sim_op_name(op), status, error);
    if (s->faults.silent)
        return;
    stage_chunk(s, sim_chunk_slip(pkt, len, s->baud, corrupt));
}

void sim_send_raw_frame(struct sim *s, const uint8_t *data, size_t len)
{
    if (s->faults.silent)
        return;
    stage_chunk(s, sim_chunk_slip(data, len, s->baud, false));
}

void sim_defer(struct sim *s, int64_t at, enum sim_post post, uint32_t arg)
{
    s->defer_at = at;
    s->post = post;
    s->post_arg = arg;
}

/* ---- session ------------------------------------------------------------- */

void sim_mem_free(struct sim *s)
{
    for (size_t i = 0; i < s->n_mem; i++)
        free(s->mem[i].data);
    s->n_mem = 0;
    s->mem_cur = NULL;
    s->mem_last_seq = -1;
}

void sim_write_op_end(struct sim *s)
{
    if (s->wr.inflate_init)
        inflateEnd(&s->wr.zs);
    memset(&s->wr, 0, sizeof(s->wr));
    s->wr.last_seq = -1;
}

static void read_op_end(struct sim *s)
{
    if (s->rd.md5)
        EVP_MD_CTX_free(s->rd.md5);
    memset(&s->rd, 0, sizeof(s->rd));
}

void sim_board_reset_session(struct sim *s)
{
    sim_net_stop(s);
    free_staged(s);
    sim_mem_free(s);
    sim_write_op_end(s);
    read_op_end(s);
    sim_regs_free(s);
    sim_slip_reset(&s->slip);
    s->baud = SIM_INITIAL_BAUD;
    s->stalled = false;
    s->stub_error_pending = false;
    s->spi_params_set = false;
    s->spi_total_size = 0;
    s->spi_attached = false;
    s->last_value = 0;
    s->app_next_line = 0;
    s->flash.busy_until = 0;
    s->stub_cpu_until = 0;
}

/* ---- boot ------------------------------------------------------------------ */

static void enter_download(struct sim *s)
{
    s->state = SIM_ST_ROM;
    sim_log("reset -> download mode");
    if (s->faults.no_download_answer)
        sim_log("fault no-download-banner-answer fired (SYNC will not be answered)");
    switch (s->chip->chip) {
    case SIM_ESP8266:
        board_text(s, "\r\n ets Jan  8 2013,rst cause:2, boot mode:(1,7)\r\n\r\n",
                   SIM_ESP8266_BOOT_BAUD);
        break;
    case SIM_ESP32:
        board_text(s,
                   "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x3 "
                   "(DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))\r\nwaiting for download\r\n",
                   s->baud);
        break;
    case SIM_ESP32C3:
        board_text(s,
                   "ESP-ROM:esp32c3-api1-20210207\r\nBuild:Feb  7 2021\r\nrst:0x1 "
                   "(POWERON),boot:0x3 (DOWNLOAD(USB/UART0/1))\r\nwaiting for download\r\n",
                   s->baud);
        break;
    case SIM_ESP32S3:
        board_text(s,
                   "ESP-ROM:esp32s3-20210327\r\nBuild:Mar 27 2021\r\nrst:0x1 "
                   "(POWERON),boot:0x3 (DOWNLOAD(USB/UART0))\r\nwaiting for download\r\n",
                   s->baud);
        break;
    }
}

static void boot_normal(struct sim *s, int mode, bool banner)
{
    char buf[512];
    s->state = SIM_ST_APP;
    s->app_next_line = sim_now() + 200 * SIM_NS_PER_MS;
    s->app_lines = 0;
    sim_net_boot(s);
    if (!banner) {
        sim_log("loader exit -> app");
        return;
    }
    sim_log("reset -> boot 0x%02x", mode);
    const char *name = mode == NORMAL_BOOT_MODE ? "SPI_FAST_FLASH_BOOT" : "UNKNOWN_BOOT";
    switch (s->chip->chip) {
    case SIM_ESP8266:
        snprintf(buf, sizeof(buf),
                 "\r\n ets Jan  8 2013,rst cause:2, boot mode:(3,6)\r\n\r\nload 0x40100000, len "
                 "2408, room 16 \r\ntail 8\r\nchksum 0xe5\r\n");
        board_text(s, buf, SIM_ESP8266_BOOT_BAUD);
        return;
    case SIM_ESP32:
        snprintf(buf, sizeof(buf),
                 "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x%02x (%s)\r\n"
                 "configsip: 0, SPIWP:0xee\r\nmode:DIO, clock div:2\r\nentry 0x400805e4\r\n",
                 mode, name);
        break;
    case SIM_ESP32C3:
    case SIM_ESP32S3:
        snprintf(buf, sizeof(buf),
                 "ESP-ROM:%s\r\nBuild:%s\r\nrst:0x1 (POWERON),boot:0x%02x (%s)\r\n"
                 "SPIWP:0xee\r\nmode:DIO, clock div:1\r\nentry 0x403c98d0\r\n",
                 s->chip->chip == SIM_ESP32C3 ? "esp32c3-api1-20210207" : "esp32s3-20210327",
                 s->chip->chip == SIM_ESP32C3 ? "Feb  7 2021" : "Mar 27 2021", mode, name);
        break;
    }
    board_text(s, buf, s->baud);
}

static void chip_boot(struct sim *s, bool boot_low)
{
    if (s->faults.boot_mode >= 0)
        boot_normal(s, s->faults.boot_mode, true);
    else if (boot_low)
        enter_download(s);
    else
        boot_normal(s, NORMAL_BOOT_MODE, true);
}

int sim_board_init(struct sim *s)
{
    s->mem_last_seq = -1;
    s->wr.last_seq = -1;
    s->baud = SIM_INITIAL_BAUD;
    if (sim_slip_init(&s->slip) != 0)
        return -1;
    if (s->faults.silent)
        sim_log("fault silent fired (the board never sends a byte)");
    if (s->faults.boot_mode >= 0) {
        sim_log("fault boot-mode fired (0x%02x)", s->faults.boot_mode);
        boot_normal(s, s->faults.boot_mode, true);
    } else if (s->strict_reset || s->manual_boot) {
        boot_normal(s, NORMAL_BOOT_MODE, true);
        if (s->manual_boot && s->manual_boot_ms >= 0)
            s->manual_boot_at = sim_now() + (int64_t)s->manual_boot_ms * SIM_NS_PER_MS;
    } else {
        s->state = SIM_ST_ROM;
        s->strap_download = true;
        sim_log("start -> download mode");
        sim_usb_booted(s, true, false, true);
        if (s->faults.no_download_answer)
            sim_log("fault no-download-banner-answer fired (SYNC will not be answered)");
    }
    return 0;
}

void sim_board_free(struct sim *s)
{
    sim_board_reset_session(s);
    sim_slip_free(&s->slip);
}

/* ---- modem side channel -------------------------------------------------- */

void sim_board_modem(struct sim *s, const char *msg, size_t len)
{
    char buf[128];
    if (len >= sizeof(buf))
        len = sizeof(buf) - 1;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    unsigned d, r, b;
    if (sscanf(buf, "BAUD=%u", &b) == 1) {
        sim_log("modem BAUD=%u", b);
        return;
    }
    if (sscanf(buf, "DTR=%u RTS=%u", &d, &r) != 2 || d > 1 || r > 1) {
        sim_log("modem: bad message '%.*s'", (int)strcspn(buf, "\r\n"), buf);
        return;
    }
    bool old_dtr = s->dtr;
    s->dtr = d;
    s->rts = r;
    sim_log("modem DTR=%u RTS=%u", d, r);
    if (s->usb == SIM_USB_OTG)
        return; /* the ROM's USB-OTG CDC: the lines reach no pin and reset nothing */
    bool en_low = s->rts && !s->dtr;
    /* USB-Serial/JTAG: the peripheral resets the chip while RTS is set and DTR clear
     * and latches download mode if DTR was set just before (sim_usb.c). */
    if (s->usb == SIM_USB_JTAG && en_low && !s->en_low)
        s->usb_jtag_dl = old_dtr;
    if (en_low && !s->en_low) {
        s->en_low = true;
        s->boot_sample_at = 0;
        s->state = SIM_ST_RESET_HELD;
        sim_board_reset_session(s);
        sim_link_drop_tx(&s->link);
        sim_link_drop_rx(&s->link);
        sim_log("EN low (chip held in reset)");
    } else if (!en_low && s->en_low) {
        s->en_low = false;
        s->state = SIM_ST_BOOTING;
        s->boot_sample_at = sim_now() + BOOT_SAMPLE_NS;
    }
}

/*
 * The technician's hands on a dev board: BOOT (GPIO0 / GPIO9) held down while EN is pressed
 * and released. EN is a hardware reset whatever the host did before (session cleared, output
 * dropped); the straps are sampled with BOOT low, so the ROM boots its serial loader, prints
 * the download banner and answers SYNC. The button cannot win against EN held low by the
 * lines (RTS without DTR through the auto-reset transistor): then the chip stays in reset.
 */
void sim_board_manual_boot(struct sim *s)
{
    s->manual_boot_at = 0;
    if (s->en_low) {
        sim_log("manual boot: BOOT held, EN tapped, but the lines hold EN low (chip stays in "
                "reset)");
        return;
    }
    sim_log("manual boot: BOOT held, EN tapped (by hand, not the lines)");
    s->boot_sample_at = 0;
    sim_board_reset_session(s);
    sim_link_drop_tx(&s->link);
    sim_link_drop_rx(&s->link);
    s->strap_download = true;
    chip_boot(s, true);
    if (s->faults.boot_mode < 0)
        sim_usb_booted(s, true, false, false);
}

/* ---- frames ------------------------------------------------------------ */

static void log_command(struct sim *s, uint8_t op, const uint8_t *body, size_t len)
{
    const char *name = sim_op_name(op);
    if ((op == 0x03 || op == 0x07 || op == 0x11) && len >= 16)
        sim_log("cmd %s seq=%u len=%u", name, sim_u32(body + 4), sim_u32(body));
    else if ((op == 0x0A || op == 0x09) && len >= 4)
        sim_log("cmd %s addr=0x%08x len=%zu", name, sim_u32(body), len);
    else if (op == 0x0F && len >= 8)
        sim_log("cmd %s new=%u old=%u", name, sim_u32(body), sim_u32(body + 4));
    else if ((op == 0x02 || op == 0x10) && len >= 16) /* what a write covers */
        sim_log("cmd %s len=%zu size=%u offset=0x%08x", name, len, sim_u32(body),
                sim_u32(body + 12));
    else if (op == 0x13 && len >= 8) /* the range a SPI_FLASH_MD5 hashes */
        sim_log("cmd %s len=%zu addr=0x%08x size=%u", name, len, sim_u32(body), sim_u32(body + 4));
    else if (op == 0x00 || strcmp(name, "UNKNOWN") == 0)
        sim_log("cmd 0x%02x len=%zu", op, len);
    else
        sim_log("cmd %s len=%zu", name, len);
    (void)s;
}

static void handle_frame(struct sim *s, const uint8_t *f, size_t len, bool garbled,
                         uint32_t host_baud)
{
    if (s->rd.active) {
        if (!garbled)
            sim_stub_read_ack(s, f, len);
        return;
    }
    if (sim_usb_frame_lost(s, len))
        return;
    if (len < 8 || f[0] != 0x00 || sim_u16(f + 2) != len - 8) {
        sim_log("garbage frame (%zu bytes)%s", len, garbled ? " at wrong baud" : "");
        return;
    }
    uint8_t op = f[1];
    if (garbled || (s->state == SIM_ST_ROM && op == 0x08)) {
        if (s->state == SIM_ST_ROM && op == 0x08) {
            if (host_baud != s->baud && host_baud != 0) {
                sim_log("auto-baud %u -> %u", s->baud, host_baud);
                s->baud = host_baud;
            }
        } else {
            sim_log("frame at wrong baud dropped (host %u, board %u)", host_baud, s->baud);
            return;
        }
    }
    unsigned n = ++s->faults.commands;
    log_command(s, op, f + 8, len - 8);
    if (s->faults.stall_at && n == s->faults.stall_at) {
        sim_log("fault stall fired (command %u)", n);
        s->stalled = true;
        return;
    }
    if (op == 0x08) {
        unsigned k = ++s->faults.syncs;
        if (k <= s->faults.refuse_sync) {
            sim_log("fault refuse-sync fired (%u of %u)", k, s->faults.refuse_sync);
            return;
        }
    }
    uint32_t cksum = sim_u32(f + 4);
    if (s->state == SIM_ST_ROM) {
        sim_usb_stray(s, op); /* --usb-stray-05: before the real reply */
        sim_rom_command(s, op, f + 8, len - 8, cksum);
    } else
        sim_stub_command(s, op, f + 8, len - 8, cksum);
}

static bool board_listens(const struct sim *s)
{
    if (s->stalled || s->faults.silent)
        return false;
    if (s->state != SIM_ST_ROM && s->state != SIM_ST_STUB)
        return false;
    if (s->state == SIM_ST_ROM && s->faults.no_download_answer)
        return false;
    return true;
}

/*
 * A running app does not read the loader's frames (they reach its console UART and are
 * dropped); only logged, one line per SYNC (`app: SYNC ignored (N)`), so a test can tell that
 * a host kept trying to sync while nobody had put the board in its loader.
 */
static void app_hears(struct sim *s, uint8_t b, bool garbled, uint32_t hb)
{
    if (s->state != SIM_ST_APP || garbled || s->faults.silent)
        return;
    if (!sim_slip_feed(&s->slip, b, false, hb))
        return;
    if (s->slip.len >= 8 && s->slip.buf[0] == 0x00 && s->slip.buf[1] == 0x08)
        sim_log("app: SYNC ignored (%u)", ++s->app_syncs);
}

static void run_post(struct sim *s, enum sim_post post)
{
    switch (post) {
    case SIM_POST_NONE:
        break;
    case SIM_POST_OHAI: {
        /* The stub keeps the UART divider the ROM left (s->baud unchanged): esp-flasher-stub
         * raises its clock only on USB transports, and builds that raise it on UART set the
         * divider back to the ROM's rate before OHAI; so a stub uploaded after the ROM's
         * CHANGE_BAUDRATE answers at that rate (issue 11). */
        static const uint8_t ohai[4] = {'O', 'H', 'A', 'I'};
        s->state = SIM_ST_STUB;
        sim_log("stub running");
        sim_send_raw_frame(s, ohai, sizeof(ohai));
        break;
    }
    case SIM_POST_BAUD:
        s->baud = s->post_arg;
        sim_log("baud %u", s->baud);
        break;
    case SIM_POST_REBOOT:
        /* A software reset does not re-sample the strapping pins: the chip boots
         * as the last hardware reset latched (back into the loader after a
         * download-mode reset, as esptool's --after no-reset relies on). */
        sim_board_reset_session(s);
        sim_slip_reset(&s->slip);
        sim_log("software reset");
        chip_boot(s, s->strap_download);
        break;
    case SIM_POST_RUN_APP:
        sim_board_reset_session(s);
        boot_normal(s, NORMAL_BOOT_MODE, false);
        sim_usb_reenumerate(s, "the app starts its USB");
        break;
    case SIM_POST_DEAD:
        s->state = SIM_ST_DEAD;
        sim_log("jumped to RAM: silent until reset");
        break;
    case SIM_POST_READ_FLASH:
        sim_stub_read_pump(s);
        break;
    }
}

/* Releases staged replies and runs the post action (which may stage more). */
void sim_release(struct sim *s)
{
    for (;;) {
        while (s->stage_head) {
            struct sim_chunk *c = s->stage_head;
            s->stage_head = c->next;
            sim_link_send_chunk(&s->link, c);
        }
        s->stage_tail = NULL;
        s->defer_at = 0;
        enum sim_post post = s->post;
        s->post = SIM_POST_NONE;
        if (post == SIM_POST_NONE)
            return;
        run_post(s, post);
        if (s->defer_at)
            return;
    }
}

void sim_board_step(struct sim *s, int64_t now)
{
    if (s->manual_boot_at && now >= s->manual_boot_at)
        sim_board_manual_boot(s);
    if (s->boot_sample_at && now >= s->boot_sample_at) {
        s->boot_sample_at = 0;
        bool boot_low = s->usb == SIM_USB_JTAG ? s->usb_jtag_dl : s->dtr && !s->rts;
        if (s->usb == SIM_USB_JTAG)
            sim_log("usb-serial/jtag: reset released, download latch %d%s", boot_low,
                    s->usb_force_download ? ", force-download bit set" : "");
        boot_low = boot_low || s->usb_force_download;
        s->strap_download = boot_low;
        sim_board_reset_session(s);
        chip_boot(s, boot_low);
        if (s->faults.boot_mode < 0)
            sim_usb_booted(s, boot_low, s->usb == SIM_USB_JTAG, false);
    }
    if (sim_usb_step(s, now)) {
        /* A watchdog (system) reset: the straps are sampled again, nobody holds BOOT. */
        s->en_low = false;
        s->state = SIM_ST_BOOTING;
        sim_board_reset_session(s);
        sim_link_drop_tx(&s->link);
        sim_link_drop_rx(&s->link);
        s->strap_download = s->usb_force_download;
        chip_boot(s, s->strap_download);
        sim_usb_reenumerate(s, "watchdog reset");
    }
    if (s->defer_at && now >= s->defer_at)
        sim_release(s);
    while (!s->defer_at && !s->want_exit) {
        uint8_t b;
        bool garbled;
        uint32_t hb;
        if (!sim_link_rx_pop(&s->link, &b, &garbled, &hb))
            break;
        s->faults.rx_bytes++;
        if (s->faults.disconnect_bytes && s->faults.rx_bytes >= s->faults.disconnect_bytes) {
            sim_log("fault disconnect fired (%llu bytes)", (unsigned long long)s->faults.rx_bytes);
            s->want_exit = true;
            break;
        }
        if (!board_listens(s)) {
            app_hears(s, b, garbled, hb);
            continue;
        }
        if (!garbled)
            b = sim_fault_noisy(&s->faults, b, s->baud);
        if (!sim_slip_feed(&s->slip, b, garbled, hb))
            continue;
        handle_frame(s, s->slip.buf, s->slip.len, s->slip.garbled, s->slip.garbled_baud);
        if (!s->defer_at || now >= s->defer_at)
            sim_release(s);
    }
    if (s->rd.active && !s->defer_at)
        sim_stub_read_pump(s);
    sim_net_step(s, now);
    if (s->state == SIM_ST_APP && s->app_next_line && now >= s->app_next_line) {
        char line[384];
        /* The first line about the network waits until the persona is up (or failed). */
        int net = sim_net_app_line(s, 200 + s->app_lines * 1000, line, sizeof(line));
        if (net < 0) {
            s->app_next_line = now + 10 * SIM_NS_PER_MS;
            return;
        }
        if (net == 0)
            snprintf(line, sizeof(line), "I (%u) app: esp_sim %s app running, tick %u\r\n",
                     200 + s->app_lines * 1000, s->chip->name, s->app_lines);
        s->app_lines++;
        board_text(s, line, s->app_baud ? s->app_baud : SIM_INITIAL_BAUD);
        s->app_next_line = now + APP_LINE_NS;
    }
}

int64_t sim_board_next_event(const struct sim *s)
{
    int64_t t = INT64_MAX;
    if (s->boot_sample_at && s->boot_sample_at < t)
        t = s->boot_sample_at;
    if (s->defer_at && s->defer_at < t)
        t = s->defer_at;
    if (s->manual_boot_at && s->manual_boot_at < t)
        t = s->manual_boot_at;
    if (s->wdt_fire_at && s->wdt_fire_at < t)
        t = s->wdt_fire_at;
    if (s->state == SIM_ST_APP && s->app_next_line && s->app_next_line < t)
        t = s->app_next_line;
    int64_t tn = sim_net_next_event(s);
    return tn < t ? tn : t;
}
