/*
 * esp_start: from "connected to the ROM" to "ready to write flash".
 *
 * Owns: the flasher-stub upload (MEM_BEGIN/MEM_DATA/MEM_END, then the
 * unsolicited "OHAI"), CHANGE_BAUDRATE with the ROM clock quirks, SPI attach,
 * the JEDEC id read through the SPI user-command registers and SPI_SET_PARAMS.
 * Order: where the ROM takes CHANGE_BAUDRATE (the ESP32 family, not the
 * ESP8266) the rate is raised before the stub upload, so the stub goes up at
 * the high rate; elsewhere the stub changes it after starting.
 * Invariants: a missing stub is not an error (ROM-only flashing, warned once);
 * after CHANGE_BAUDRATE the host switches only once the reply (sent at the old
 * rate) arrived; FLASH_END is never sent to a ROM here.
 */
#include "esp_loader_priv.h"

#include "esp_stub.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- stub upload ----------------------------------------------------------- */

static int mem_upload(struct esp_loader *l, const uint8_t *data, size_t len, uint32_t addr,
                      struct esp_error *err)
{
    size_t block = esp_ldr_is_usb_otg(l) ? ESP_OTG_RAM_BLOCK : ESP_RAM_BLOCK;
    uint32_t nblocks = (uint32_t)((len + block - 1) / block);
    uint32_t w[4] = {(uint32_t)len, nblocks, (uint32_t)block, addr};
    int rc =
        esp_ldr_cmd_words(l, ESP_OP_MEM_BEGIN, w, 4, 0, esp_ldr_tmo(l, ESP_TMO_DEFAULT), NULL, err);
    if (rc < 0)
        return rc;
    for (uint32_t seq = 0; seq < nblocks; seq++) {
        size_t off = (size_t)seq * block;
        size_t n = len - off < block ? len - off : block;
        rc = esp_ldr_cmd_data(l, ESP_OP_MEM_DATA, seq, data + off, n,
                              esp_ldr_tmo(l, ESP_TMO_DEFAULT), err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void warn_no_stub(struct esp_loader *l, const char *why)
{
    if (l->warned_no_stub)
        return;
    l->warned_no_stub = true;
    esp_ldr_log(l, ESP_LOG_WARN,
                "%s: flashing through the ROM loader (slower: %s1 KiB blocks, no pipelining)", why,
                l->info.chip && l->info.chip->chip == ESP_CHIP_ESP8266 ? "no compression on "
                                                                         "ESP8266, "
                                                                       : "");
}

/* *uploaded: the stub's segments all went up (MEM_END was sent), so a failure
 * after that is the stub's start, not the transfer. */
static int run_stub(struct esp_loader *l, bool *uploaded, struct esp_error *err)
{
    *uploaded = false;
    esp_error_clear(err);
    l->stage = ESP_STAGE_STUB;
    int rc = esp_ldr_need_connected(l, err);
    if (rc < 0)
        return rc;
    const struct esp_chip_desc *chip = l->info.chip;
    if (l->stub) {
        esp_ldr_log(l, ESP_LOG_INFO, "stub running");
        return 0;
    }
    char why[300];
    if (!chip->stub_supported) {
        snprintf(why, sizeof(why), "no flasher stub exists for %s", chip->name);
        warn_no_stub(l, why);
        return 0;
    }
    if (l->info.secure_download_mode) {
        warn_no_stub(l, "secure download mode forbids the flasher stub");
        return 0;
    }
    /* Where esptool does not use a stub either (§6.1). The S3 secure-boot
     * work-around (loading through a ROM function pointer) is not implemented. */
    if (l->info.secure_boot && (chip->chip == ESP_CHIP_ESP32C3 || chip->chip == ESP_CHIP_ESP32S3)) {
        snprintf(why, sizeof(why), "secure boot is on: no flasher stub on %s", chip->name);
        warn_no_stub(l, why);
        return 0;
    }
    if (chip->chip == ESP_CHIP_ESP32C2 && l->info.revision >= 0 && l->info.revision < 100) {
        warn_no_stub(l, "the stub does not run on ESP32-C2 revision 0");
        return 0;
    }

    struct esp_stub *stub = NULL;
    struct esp_error serr;
    esp_error_clear(&serr);
    rc = esp_stub_load(l->cfg.stub_dir, chip, &stub, &serr);
    if (rc == -ENOENT) {
        snprintf(why, sizeof(why), "no flasher stub for %s in %s", chip->name,
                 l->cfg.stub_dir && *l->cfg.stub_dir ? l->cfg.stub_dir : "(no stub directory)");
        warn_no_stub(l, why);
        return 0;
    }
    if (rc == -EINVAL) {
        snprintf(why, sizeof(why), "unusable flasher stub for %s (%s)", chip->name, serr.message);
        warn_no_stub(l, why);
        return 0;
    }
    if (rc < 0)
        return esp_error_set(err, rc, l->stage, NULL, "cannot load the flasher stub: %s",
                             serr.message);

    /* A lost reply during the upload: MEM_BEGIN restarts the load, so start over once. */
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = mem_upload(l, stub->text, stub->text_len, stub->text_start, err);
        if (rc >= 0 && stub->data_len)
            rc = mem_upload(l, stub->data, stub->data_len, stub->data_start, err);
        if (rc != -ETIMEDOUT && rc != -EPROTO)
            break;
        if (attempt == 0) {
            esp_ldr_log(l, ESP_LOG_DEBUG, "stub upload: %s, starting over",
                        err ? err->message : "");
            int frc = esp_ldr_flush_input(l);
            if (frc == -ENODEV || frc == -ECANCELED) {
                esp_stub_free(stub);
                return esp_ldr_io_error(l, frc, "flushing input", err);
            }
            esp_error_clear(err);
        }
    }
    if (rc < 0) {
        esp_stub_free(stub);
        return rc;
    }

    /* MEM_END(0, entry): the ROM may jump before answering; errors ignored. */
    *uploaded = true;
    l->ohai_seen = false;
    uint32_t w[2] = {stub->entry == 0 ? 1u : 0u, stub->entry};
    esp_stub_free(stub);
    struct esp_error scratch;
    esp_error_clear(&scratch);
    rc = esp_ldr_cmd_words(l, ESP_OP_MEM_END, w, 2, 0, esp_ldr_tmo(l, ESP_TMO_MEM_END_ROM), NULL,
                           &scratch);
    if (rc == -ENODEV || rc == -ECANCELED)
        return esp_ldr_io_error(l, rc, "MEM_END", err);

    int64_t deadline = esp_ldr_now_ms() + esp_ldr_tmo(l, ESP_TMO_OHAI);
    while (!l->ohai_seen) {
        int64_t left = deadline - esp_ldr_now_ms();
        if (left <= 0)
            break;
        rc = esp_ldr_read_frame(l, (int)left);
        if (rc < 0)
            return esp_ldr_io_error(l, rc, "waiting for the stub", err);
        if (rc == 0)
            break;
        if (l->dec.frame_len == 4 && memcmp(l->dec.frame, "OHAI", 4) == 0)
            l->ohai_seen = true;
        else
            l->stats.frames_dropped++;
    }
    if (!l->ohai_seen)
        return esp_error_set(err, -ETIMEDOUT, l->stage,
                             "the stub did not start: check the power supply; retry, or flash "
                             "without the stub",
                             "flasher stub did not say hello (no OHAI within %d ms)",
                             esp_ldr_tmo(l, ESP_TMO_OHAI));
    esp_ldr_set_responder(l, ESP_RESPONDER_STUB);
    esp_ldr_log(l, ESP_LOG_INFO, "stub running at %u baud", l->info.baud);
    return 0;
}

int esp_loader_run_stub(struct esp_loader *l, struct esp_error *err)
{
    bool uploaded;
    return run_stub(l, &uploaded, err);
}

/* ---- baud ------------------------------------------------------------------ */

/* What to send as new_baud so the ROM ends up at baud (§2.1 quirks). */
static int rom_baud_value(struct esp_loader *l, uint32_t baud, uint32_t *out, struct esp_error *err)
{
    const struct esp_chip_desc *chip = l->info.chip;
    *out = baud;
    if (chip->chip == ESP_CHIP_ESP32) {
        uint32_t clk = 0, efuse = 0;
        int rc = esp_loader_read_reg(l, 0x3FF5F06Cu, &clk, err);
        if (rc >= 0)
            rc = esp_loader_read_reg(l, 0x3FF5A010u, &efuse, err);
        if (rc < 0)
            return rc;
        uint64_t rom_freq =
            (uint64_t)((clk >> 7) & 0x1FFFFFFu) * 15625u * (uint64_t)(efuse & 0xFFu) / 40u;
        if (rom_freq) {
            uint64_t valid = rom_freq > 33000000u ? 40000000u : 26000000u;
            *out = (uint32_t)((uint64_t)baud * rom_freq / valid);
        }
    } else if (chip->chip == ESP_CHIP_ESP32C2) {
        if (l->info.xtal_mhz == 0 && chip->uart_clkdiv_reg) {
            uint32_t div = 0;
            int rc = esp_loader_read_reg(l, chip->uart_clkdiv_reg, &div, err);
            if (rc < 0)
                return rc;
            l->info.xtal_mhz = esp_chip_decode_xtal(chip, div, l->info.baud);
        }
        if (l->info.xtal_mhz == 26)
            *out = (uint32_t)((uint64_t)baud * 40u / 26u); /* ROM believes it has 40 MHz */
    }
    return 0;
}

/* One READ_REG of the magic register, no retry. 1 answered, 0 silent, <0 port failure. */
static int probe(struct esp_loader *l)
{
    uint32_t addr = ESP_CHIP_DETECT_MAGIC_REG;
    int len = esp_cmd_build_words(ESP_OP_READ_REG, &addr, 1, l->pkt, ESP_PKT_MAX);
    if (len < 0)
        return len;
    struct esp_error scratch;
    esp_error_clear(&scratch);
    int rc = esp_ldr_cmd(l, (size_t)len, 0, esp_ldr_tmo(l, 500), NULL, &scratch);
    if (rc == -ENODEV || rc == -ECANCELED)
        return rc;
    return rc == 0 ? 1 : 0;
}

/* After a lost CHANGE_BAUDRATE reply: 1 = chip at the new rate (host switched),
 * 0 = chip still at the old rate (host back there), -ETIMEDOUT = neither. */
static int baud_recover(struct esp_loader *l, uint32_t old_baud, uint32_t new_baud)
{
    const uint32_t rates[2] = {new_baud, old_baud};
    for (int i = 0; i < 2; i++) {
        int rc = transport_set_baud(l->t, rates[i]);
        if (rc == -ENODEV)
            return rc;
        esp_ldr_sleep_ms(50);
        rc = esp_ldr_flush_input(l);
        if (rc == -ENODEV || rc == -ECANCELED)
            return rc;
        rc = probe(l);
        if (rc != 0)
            return rc < 0 ? rc : (i == 0 ? 1 : 0);
    }
    return -ETIMEDOUT;
}

int esp_loader_change_baud(struct esp_loader *l, uint32_t baud, struct esp_error *err)
{
    esp_error_clear(err);
    l->stage = ESP_STAGE_BAUD;
    int rc = esp_ldr_need_connected(l, err);
    if (rc < 0)
        return rc;
    const struct esp_chip_desc *chip = l->info.chip;
    if (baud == 0)
        return esp_error_set(err, -EINVAL, l->stage, NULL, "invalid baud rate 0");
    if (chip->uart_max_baud && baud > chip->uart_max_baud) {
        /* Above the chip's UART: its highest rate instead (a daemon asking for an
         * adapter's best, e.g. a 6 Mbaud CH343, gets what the chip can do). */
        if (l->info.baud == chip->uart_max_baud)
            return 0;
        esp_ldr_log(l, ESP_LOG_INFO, "%u baud is above the %s UART's highest rate: using %u", baud,
                    chip->name, chip->uart_max_baud);
        baud = chip->uart_max_baud;
    }
    if (baud == l->info.baud)
        return 0;
    if (!(l->t->caps & TRANSPORT_CAP_BAUD))
        return esp_error_set(err, -ENOTSUP, l->stage, NULL,
                             "the %s transport cannot change its baud rate",
                             transport_kind_to_string(l->t->kind));
    if (!l->stub && !chip->rom_has_change_baud)
        return esp_error_set(err, -ENOTSUP, l->stage, "use the flasher stub to flash faster",
                             "the %s ROM cannot change its baud rate", chip->name);
    if (l->info.secure_download_mode &&
        (chip->chip == ESP_CHIP_ESP32C2 || chip->chip == ESP_CHIP_ESP32C5))
        return esp_error_set(err, -ENOTSUP, l->stage, NULL,
                             "%s in secure download mode cannot change its baud rate", chip->name);

    uint32_t send = baud, old = 0;
    if (l->stub) {
        old = l->info.baud; /* the legacy stub scales its divider by old/new */
    } else {
        rc = rom_baud_value(l, baud, &send, err);
        if (rc < 0)
            return rc;
    }
    uint32_t w[2] = {send, old};
    uint32_t prev = l->info.baud;
    rc = esp_ldr_cmd_words(l, ESP_OP_CHANGE_BAUDRATE, w, 2, 0, esp_ldr_tmo(l, ESP_TMO_DEFAULT),
                           NULL, err);
    if (rc == -ETIMEDOUT || rc == -EPROTO) {
        /* The reply got lost: find out at which rate the chip listens now. */
        int at = baud_recover(l, prev, baud);
        if (at == -ENODEV || at == -ECANCELED)
            return esp_ldr_io_error(l, at, "changing the baud rate", err);
        if (at == 1) {
            esp_error_clear(err);
            l->info.baud = baud;
            esp_ldr_log(l, ESP_LOG_INFO, "changed baud to %u (reply lost)", baud);
            return 0;
        }
        if (at == 0) {
            esp_error_clear(err);
            rc = esp_ldr_cmd_words(l, ESP_OP_CHANGE_BAUDRATE, w, 2, 0,
                                   esp_ldr_tmo(l, ESP_TMO_DEFAULT), NULL, err);
        }
    }
    if (rc < 0)
        return rc;
    transport_drain(l->t);
    rc = transport_set_baud(l->t, baud);
    if (rc < 0) {
        if (rc == -ENODEV || rc == -ECANCELED)
            return esp_ldr_io_error(l, rc, "setting the baud rate", err);
        return esp_error_set(err, rc, l->stage,
                             "the serial adapter refused the rate: choose a lower baud rate",
                             "the port cannot run at %u baud (chip already switched)", baud);
    }
    /* How long the chip may still listen at the old rate after its reply. A stub
     * switches late: the esptool 4.x stub sends the reply, waits 10 ms, changes the
     * divider and waits 1 ms more (flasher_stub/stub_flasher.c, ESP_SET_BAUD), and
     * esp-serial-flasher waits 25 ms before switching to a stub's new rate
     * (esp_loader_change_transmission_rate_stub). The ROMs switch as soon as the
     * reply is out: esp-serial-flasher switches its port right after the ROM's reply
     * and sends the next command at once (esp_loader_change_transmission_rate).
     * esptool sleeps 50 ms either way; the ROM's 50 ms were idle time (issue 11). */
    esp_ldr_sleep_ms(l->stub ? ESP_BAUD_SETTLE_STUB_MS : ESP_BAUD_SETTLE_ROM_MS);
    rc = esp_ldr_flush_input(l);
    if (rc == -ENODEV || rc == -ECANCELED)
        return esp_ldr_io_error(l, rc, "flushing input", err);
    l->info.baud = baud;
    esp_ldr_log(l, ESP_LOG_INFO, "changed baud to %u", baud);
    return 0;
}

/* ---- SPI flash --------------------------------------------------------------- */

/* ESP32 ROM: SPI pins from eFuse (RDATA5: clk, q, d, cs; RDATA3: hd), 0 = default. */
static int esp32_spi_config(struct esp_loader *l, uint32_t *config, struct esp_error *err)
{
    uint32_t r5 = 0, r3 = 0;
    int rc = esp_loader_read_reg(l, 0x3FF5A014u, &r5, err);
    if (rc >= 0)
        rc = esp_loader_read_reg(l, 0x3FF5A00Cu, &r3, err);
    if (rc < 0)
        return rc;
    uint32_t clk = r5 & 0x1F, q = (r5 >> 5) & 0x1F, d = (r5 >> 10) & 0x1F, cs = (r5 >> 15) & 0x1F,
             hd = (r3 >> 4) & 0x1F;
    *config = 0;
    if (clk | q | d | cs | hd)
        *config = hd << 24 | cs << 18 | d << 12 | q << 6 | clk;
    return 0;
}

/* One flash command through the SPI controller's user-command registers (§4.5): the
 * command byte, then miso_bits (0..32) read into *out (may be NULL when 0). */
static int spi_user_cmd(struct esp_loader *l, uint8_t cmd, uint32_t miso_bits, uint32_t *out,
                        struct esp_error *err)
{
    const struct esp_spi_regs *s = &l->info.chip->spi;
    uint32_t old_usr = 0, old_usr2 = 0, v = 0;
    int rc = esp_loader_read_reg(l, s->usr, &old_usr, err);
    if (rc >= 0)
        rc = esp_loader_read_reg(l, s->usr2, &old_usr2, err);
    if (rc < 0)
        return rc;
    uint32_t dlen = miso_bits ? miso_bits - 1 : 0;
    if (s->miso_dlen)
        rc = esp_loader_write_reg(l, s->miso_dlen, dlen, 0xFFFFFFFFu, 0, err);
    else /* ESP8266: lengths live in USR1; no MOSI data */
        rc = esp_loader_write_reg(l, s->usr1, dlen << 8, 0xFFFFFFFFu, 0, err);
    if (rc >= 0) /* COMMAND phase, and MISO when something is read */
        rc = esp_loader_write_reg(l, s->usr, (1u << 31) | (miso_bits ? 1u << 28 : 0), 0xFFFFFFFFu,
                                  0, err);
    if (rc >= 0)
        rc = esp_loader_write_reg(l, s->usr2, (7u << 28) | cmd, 0xFFFFFFFFu, 0, err);
    if (rc >= 0)
        rc = esp_loader_write_reg(l, s->w0, 0, 0xFFFFFFFFu, 0, err);
    if (rc >= 0)
        rc = esp_loader_write_reg(l, s->base, 1u << 18, 0xFFFFFFFFu, 0, err);
    for (int i = 0; rc >= 0 && i < 10; i++) {
        rc = esp_loader_read_reg(l, s->base, &v, err);
        if (rc >= 0 && !(v & (1u << 18)))
            break;
    }
    if (rc >= 0 && miso_bits)
        rc = esp_loader_read_reg(l, s->w0, &v, err);
    if (rc < 0)
        return rc;
    if (out)
        *out = v;
    rc = esp_loader_write_reg(l, s->usr, old_usr, 0xFFFFFFFFu, 0, err);
    if (rc >= 0)
        rc = esp_loader_write_reg(l, s->usr2, old_usr2, 0xFFFFFFFFu, 0, err);
    return rc;
}

/* RDID (0x9F): manufacturer, type, capacity. */
static int read_flash_id(struct esp_loader *l, uint32_t *id, struct esp_error *err)
{
    uint32_t v = 0;
    int rc = spi_user_cmd(l, 0x9F, 24, &v, err);
    if (rc >= 0)
        *id = v & 0xFFFFFF;
    return rc;
}

/* A flash left in deep power-down (an XMC part after a brown-out, or an app that put it
 * to sleep before a watchdog reset) answers nothing but "release" (0xAB), so RDID reads
 * all ones. The recovery recent esptool runs when RDID looks wrong (§4.5): 0xB9, 0x79,
 * 0xFF, 2 ms, 0xAB, then RDID again. Returns the new id in *id. */
static int wake_flash(struct esp_loader *l, uint32_t *id, struct esp_error *err)
{
    static const uint8_t seq[] = {0xB9, 0x79, 0xFF};
    int rc = 0;
    for (size_t i = 0; rc >= 0 && i < sizeof(seq); i++)
        rc = spi_user_cmd(l, seq[i], 0, NULL, err);
    if (rc < 0)
        return rc;
    esp_ldr_sleep_ms(2);
    rc = spi_user_cmd(l, 0xAB, 0, NULL, err);
    if (rc >= 0)
        esp_ldr_sleep_ms(1); /* tRES1: a few microseconds; 1 ms is plenty */
    if (rc >= 0)
        rc = read_flash_id(l, id, err);
    return rc;
}

static void size_text(uint32_t bytes, char *out, size_t cap)
{
    if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0)
        snprintf(out, cap, "%u MB", bytes / (1024 * 1024));
    else
        snprintf(out, cap, "%u KB", bytes / 1024);
}

/* RDID reading all ones (MISO floating high) or all zeros (held low): no flash chip
 * answered the controller. Every flash command after it fails (the ROM with 01 06, the
 * stub with an SPI error), so the job stops here, naming the board fault, whatever flash
 * size was configured. esptool warns the same way on these two ids ("failed to
 * communicate with the flash chip"). attach_word: the ESP32 ROM's SPI_ATTACH word (eFuse
 * pins); a stub attaches from eFuse itself, so for the message the pins are read here. */
static int flash_not_answering(struct esp_loader *l, uint32_t id, uint32_t attach_word,
                               struct esp_error *err)
{
    char pins[128] = "";
    if (l->info.chip->chip == ESP_CHIP_ESP32) {
        struct esp_error scratch;
        bool known = !l->stub || esp32_spi_config(l, &attach_word, &scratch) >= 0;
        uint32_t w = attach_word;
        if (known && w)
            snprintf(pins, sizeof(pins), "; SPI pins from eFuse: CLK %u, Q %u, D %u, CS %u, HD %u",
                     w & 0x3F, (w >> 6) & 0x3F, (w >> 12) & 0x3F, (w >> 18) & 0x3F,
                     (w >> 24) & 0x3F);
        else if (known)
            snprintf(pins, sizeof(pins), "; the default SPI pins (none in eFuse)");
    }
    return esp_error_set(err, -ENOMEDIUM, ESP_STAGE_ATTACH,
                         "a board fault, not a link one: check the flash chip's power (3.3 V) and "
                         "its solder joints; a flash on other than the default pins needs its SPI "
                         "pins burnt in eFuse (ESP32); this board may have no flash fitted",
                         "the flash chip does not answer (flash ID %06x), not even after a "
                         "wake-up from deep power-down%s",
                         id, pins);
}

int esp_ldr_spi_set_params(struct esp_loader *l, uint32_t size, struct esp_error *err)
{
    uint32_t w[6] = {0, size, 0x10000, ESP_SECTOR, 0x100, 0xFFFF};
    return esp_ldr_cmd_words(l, ESP_OP_SPI_SET_PARAMS, w, 6, 0, esp_ldr_tmo(l, ESP_TMO_DEFAULT),
                             NULL, err);
}

int esp_loader_attach_flash(struct esp_loader *l, struct esp_error *err)
{
    esp_error_clear(err);
    l->stage = ESP_STAGE_ATTACH;
    int rc = esp_ldr_need_connected(l, err);
    if (rc < 0)
        return rc;
    const struct esp_chip_desc *chip = l->info.chip;
    bool rom8266 = esp_ldr_is_8266_rom(l);
    uint32_t attach_word = 0;

    if (rom8266) {
        /* FLASH_BEGIN(0,0,0x400,0) makes the ESP8266 ROM attach the flash. */
        uint32_t w[4] = {0, 0, ESP_ROM_WRITE_SIZE, 0};
        rc = esp_ldr_cmd_words(l, ESP_OP_FLASH_BEGIN, w, 4, 0, esp_ldr_tmo(l, ESP_TMO_DEFAULT),
                               NULL, err);
    } else if (l->stub) {
        uint32_t config = 0;
        rc = esp_ldr_cmd_words(l, ESP_OP_SPI_ATTACH, &config, 1, 0, esp_ldr_tmo(l, ESP_TMO_DEFAULT),
                               NULL, err);
    } else {
        uint32_t w[2] = {0, 0};
        if (chip->chip == ESP_CHIP_ESP32 && !l->info.secure_download_mode)
            rc = esp32_spi_config(l, &w[0], err);
        attach_word = w[0];
        if (rc >= 0)
            rc = esp_ldr_cmd_words(l, ESP_OP_SPI_ATTACH, w, 2, 0, esp_ldr_tmo(l, ESP_TMO_DEFAULT),
                                   NULL, err);
    }
    if (rc < 0)
        return rc;

    char st[32];
    uint32_t size = l->cfg.flash_size;
    if (!l->info.secure_download_mode) {
        uint32_t id = 0;
        rc = read_flash_id(l, &id, err);
        if (rc < 0)
            return rc;
        if (id == 0xFFFFFF || id == 0) {
            uint32_t first = id;
            rc = wake_flash(l, &id, err);
            if (rc < 0)
                return rc;
            if (id != 0xFFFFFF && id != 0)
                esp_ldr_log(l, ESP_LOG_WARN,
                            "flash id 0x%06X: the flash answered only after a wake-up from deep "
                            "power-down (it read %06x)",
                            id, first);
        }
        l->info.flash_id = id;
        if (id == 0xFFFFFF || id == 0)
            return flash_not_answering(l, id, attach_word, err);
        uint32_t detected = esp_flash_size_from_jedec(id);
        if (size == 0 && detected == 0) {
            size = 4 * 1024 * 1024;
            esp_ldr_log(l, ESP_LOG_WARN, "flash id 0x%06X: unknown size, assuming 4 MB", id);
        } else if (size == 0) {
            size = detected;
            size_text(size, st, sizeof(st));
            esp_ldr_log(l, ESP_LOG_INFO, "flash id 0x%06X: %s", id, st);
        } else {
            size_text(size, st, sizeof(st));
            esp_ldr_log(l, ESP_LOG_INFO, "flash id 0x%06X: %s (configured)", id, st);
        }
    } else if (size == 0) {
        esp_ldr_log(l, ESP_LOG_WARN,
                    "secure download mode: flash size unknown (configure it); not set");
    }
    l->info.flash_size = size;

    if (!rom8266 && size) {
        rc = esp_ldr_spi_set_params(l, size, err);
        if (rc < 0)
            return rc;
    }
    l->attached = true;
    return 0;
}

/* A stub that was uploaded but did not start (no OHAI, MEM_* refused) leaves a
 * chip the ROM can take back after a reset; an unplugged board, a cancel or no
 * memory cannot be helped that way. Only a real reset leads back to the ROM:
 * not without modem lines (a tcp:// serial server) and not when the caller
 * chose no reset or a manual one. */
static bool stub_failure_is_device(const struct esp_loader *l, int rc)
{
    return l->stage == ESP_STAGE_STUB && rc != -ENODEV && rc != -ECANCELED && rc != -ENOMEM;
}

/* Why no reset can lead back to the ROM loader; NULL when one can. */
static const char *no_reset_reason(const struct esp_loader *l)
{
    if (l->no_lines || !(l->t->caps & TRANSPORT_CAP_MODEM_LINES))
        return "no DTR/RTS lines, e.g. tcp://";
    if (l->cfg.before != ESP_BEFORE_DEFAULT_RESET && l->cfg.before != ESP_BEFORE_USB_RESET)
        return "before is no-reset or manual";
    return NULL;
}

static bool stub_failure_is_recoverable(const struct esp_loader *l, int rc)
{
    return stub_failure_is_device(l, rc) && !no_reset_reason(l);
}

/* A production line prefers a slow flash to none: reset into the bootloader
 * again and go on through the ROM loader, saying why. When even that fails the
 * stub's own error is reported (it is the cause), with the reconnect's words. */
static int fall_back_to_rom(struct esp_loader *l, struct esp_error *err)
{
    struct esp_error stub_err;
    esp_error_clear(&stub_err);
    if (err)
        stub_err = *err;
    esp_ldr_log(l, ESP_LOG_WARN, "%s: resetting the chip to continue through the ROM loader",
                stub_err.message);
    struct esp_error cerr;
    esp_error_clear(&cerr);
    int rc = esp_loader_connect(l, &cerr);
    if (rc < 0) {
        if (err) {
            *err = stub_err;
            size_t n = strlen(err->message);
            snprintf(err->message + n, sizeof(err->message) - n,
                     "; reconnecting to the ROM loader failed too: %s", cerr.message);
        }
        return stub_err.code < 0 ? stub_err.code : rc;
    }
    esp_error_clear(err);
    char why[300];
    snprintf(why, sizeof(why), "the flasher stub did not start (%s)", stub_err.message);
    warn_no_stub(l, why);
    l->info.stub_fallback = true;
    return 0;
}

/* The stub did not start and no reset can bring the ROM loader back: say what to do. */
static void advise_no_fallback(const struct esp_loader *l, struct esp_error *err)
{
    if (!err)
        return;
    snprintf(err->advice, sizeof(err->advice),
             "no reset can bring back the ROM loader (%s): put the board into download mode "
             "again and flash without the stub (ROM loader only, slower)",
             no_reset_reason(l));
}

/*
 * Whether to raise the rate before the stub upload. The ROM must take
 * CHANGE_BAUDRATE: the ESP32 family's does, the ESP8266's does not (§2, 5.1).
 * A flasher stub keeps the UART divider the ROM left: esp-flasher-stub raises
 * its clock only on USB transports, and the builds that raise it on UART too
 * set the divider back to the ROM's rate before saying OHAI. So the stub (6 KB
 * on the ESP32, 0.6 s at 115200) goes up at the high rate and answers there.
 * Not on USB ports (Serial/JTAG, OTG), where the rate paces nothing.
 */
static bool baud_before_stub(const struct esp_loader *l)
{
    const struct esp_chip_desc *chip = l->info.chip;
    return l->cfg.use_stub && !l->stub && l->cfg.baud && l->cfg.baud != l->info.baud &&
           chip->stub_supported && chip->rom_has_change_baud && !l->info.secure_download_mode &&
           !l->info.usb_jtag && !esp_ldr_is_usb_otg(l) && (l->t->caps & TRANSPORT_CAP_BAUD);
}

/* The configured rate, unless the loader in use cannot change it (then stay, saying so). */
static int apply_baud(struct esp_loader *l, struct esp_error *err)
{
    if (!l->cfg.baud || l->cfg.baud == l->info.baud)
        return 0;
    struct esp_error berr;
    esp_error_clear(&berr);
    int rc = esp_loader_change_baud(l, l->cfg.baud, &berr);
    if (rc == -ENOTSUP) {
        esp_ldr_log(l, ESP_LOG_INFO, "staying at %u baud: %s", l->info.baud, berr.message);
        return 0;
    }
    if (rc < 0 && err)
        *err = berr;
    return rc;
}

/* A stub transfer that failed the way a link garbles frames: no or no valid reply,
 * or the ROM saying the command arrived corrupt (invalid parameter, receive
 * failure, malformed, checksum) or unknown (a MEM_* opcode the ROM has). */
static bool transfer_garbled(int rc, const struct esp_error *e)
{
    if (rc == -ETIMEDOUT || rc == -EPROTO || rc == -EBADMSG || rc == -ENOTSUP)
        return true;
    if (rc != -EIO || !e || !e->has_device_status)
        return false;
    return e->error == 0x01 || e->error == 0x04 || e->error == 0x05 || e->error == 0x07;
}

/* The first transfer at the raised rate failed: that is the link at that rate,
 * reported at stage baud so a caller that steps the rate down (the daemon's
 * per-slot back-off) does; no fall back to the ROM, which would be as garbled. */
static int raised_rate_failed(struct esp_loader *l, int rc, struct esp_error *err)
{
    if (!err)
        return rc == -EIO ? -EPROTO : rc;
    char was[sizeof(err->message)];
    snprintf(was, sizeof(was), "%s", err->message);
    if (rc == -EIO || rc == -ENOTSUP)
        rc = -EPROTO; /* the device got our frames corrupted */
    err->code = rc;
    err->stage = ESP_STAGE_BAUD;
    snprintf(err->message, sizeof(err->message), "uploading the stub at %u baud failed: %s",
             l->info.baud, was);
    snprintf(err->advice, sizeof(err->advice),
             "the link does not carry %u baud reliably: choose a lower baud rate, or check the "
             "cable and the serial adapter",
             l->info.baud);
    l->stage = ESP_STAGE_BAUD;
    return rc;
}

void esp_loader_set_use_stub(struct esp_loader *l, bool use_stub)
{
    l->cfg.use_stub = use_stub;
}

int esp_loader_start(struct esp_loader *l, struct esp_error *err)
{
    esp_error_clear(err);
    int rc = esp_ldr_need_connected(l, err);
    if (rc < 0)
        return rc;
    bool raised = false;
    if (baud_before_stub(l)) {
        rc = apply_baud(l, err);
        if (rc < 0)
            return rc;
        raised = l->info.baud != l->cfg.initial_baud;
    }
    if (l->cfg.use_stub) {
        bool uploaded = false;
        rc = run_stub(l, &uploaded, err);
        if (rc < 0 && raised && !uploaded && transfer_garbled(rc, err))
            return raised_rate_failed(l, rc, err);
        if (rc < 0 && stub_failure_is_recoverable(l, rc))
            rc = fall_back_to_rom(l, err);
        else if (rc < 0 && stub_failure_is_device(l, rc))
            advise_no_fallback(l, err);
        if (rc < 0)
            return rc;
    }
    /* ESP8266 (the stub changes it), a stub found running, after a fall back to the ROM. */
    rc = apply_baud(l, err);
    if (rc < 0)
        return rc;
    return esp_loader_attach_flash(l, err);
}
