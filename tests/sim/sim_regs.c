/*
 * sim_regs: the chip table and the register file behind READ_REG/WRITE_REG.
 *
 * Special registers are computed from the configuration so that the engine's
 * decoders recover exactly what the command line asked for:
 *   0x40001000            chip magic
 *   eFuse / OTP words     the MAC (PROTOCOL-ROM.md 4.4), the revision (4.5)
 *   UART_CLKDIV           consistent with the crystal at the board's baud
 *   ESP32 0x3FF5F06C + eFuse word 4: ROM clock estimate of exactly 40 MHz
 *   SPI user command      CMD bit 18 with USR2 command byte 0x9F (RDID)
 *                         puts the JEDEC id in W0 and clears bit 18
 * Everything else is a plain store: reads return the last value written
 * (0 if never written).
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const struct sim_chip_info chips[] = {
    {SIM_ESP8266,
     "esp8266",
     "esp8266",
     0xFFF0C101u,
     2,
     -1,
     false,
     false,
     false,
     0x60000014u,
     26,
     2,
     0x60000200u,
     0x6000021Cu,
     0x60000220u,
     0x60000224u,
     0x60000240u,
     0,
     {0x18, 0xfe, 0x34, 0xa1, 0xb2, 0xc3}},
    {SIM_ESP32,
     "esp32",
     "esp32",
     0x00F01D83u,
     4,
     0,
     true,
     false,
     false,
     0x3FF40014u,
     40,
     1,
     0x3FF42000u,
     0x3FF4201Cu,
     0x3FF42020u,
     0x3FF42024u,
     0x3FF42080u,
     0,
     {0x24, 0x6f, 0x28, 0x7a, 0xd8, 0x84}},
    {SIM_ESP32C3,
     "esp32c3",
     "esp32c3",
     0x1B31506Fu,
     4,
     5,
     true,
     true,
     true,
     0x60000014u,
     40,
     1,
     0x60002000u,
     0x60002018u,
     0x6000201Cu,
     0x60002020u,
     0x60002058u,
     0x60008844u,
     {0x58, 0xcf, 0x79, 0x0a, 0x3c, 0x5e}},
    {SIM_ESP32S3,
     "esp32s3",
     "esp32s3",
     0x00000009u,
     4,
     9,
     true,
     true,
     true,
     0x60000014u,
     40,
     1,
     0x60002000u,
     0x60002018u,
     0x6000201Cu,
     0x60002020u,
     0x60002058u,
     0x60007044u,
     {0x48, 0x27, 0xe2, 0x61, 0xb0, 0xd4}},
};

const struct sim_chip_info *sim_chip_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof(chips) / sizeof(chips[0]); i++)
        if (strcmp(chips[i].name, name) == 0)
            return &chips[i];
    return NULL;
}

/* CRC-8/MAXIM over the MAC, as stored next to it in the ESP32 eFuse. */
static uint8_t mac_crc8(const uint8_t *mac)
{
    uint8_t crc = 0;
    for (int i = 0; i < 6; i++) {
        crc ^= mac[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint8_t)((crc >> 1) ^ 0x8C) : (uint8_t)(crc >> 1);
    }
    return crc;
}

static bool reg_lookup(const struct sim *s, uint32_t addr, uint32_t *val)
{
    for (size_t i = 0; i < s->n_regs; i++) {
        if (s->reg_addr[i] == addr) {
            *val = s->reg_val[i];
            return true;
        }
    }
    return false;
}

static void reg_store(struct sim *s, uint32_t addr, uint32_t val)
{
    for (size_t i = 0; i < s->n_regs; i++) {
        if (s->reg_addr[i] == addr) {
            s->reg_val[i] = val;
            return;
        }
    }
    if (s->n_regs == s->cap_regs) {
        size_t cap = s->cap_regs ? s->cap_regs * 2 : 64;
        if (cap > 65536)
            return; /* a host spraying registers: forget the rest */
        uint32_t *a = realloc(s->reg_addr, cap * sizeof(*a));
        if (!a)
            return;
        s->reg_addr = a;
        uint32_t *v = realloc(s->reg_val, cap * sizeof(*v));
        if (!v)
            return;
        s->reg_val = v;
        s->cap_regs = cap;
    }
    s->reg_addr[s->n_regs] = addr;
    s->reg_val[s->n_regs] = val;
    s->n_regs++;
}

void sim_regs_free(struct sim *s)
{
    free(s->reg_addr);
    free(s->reg_val);
    s->reg_addr = s->reg_val = NULL;
    s->n_regs = s->cap_regs = 0;
}

static bool esp8266_special(const struct sim *s, uint32_t addr, uint32_t *v)
{
    const uint8_t *m = s->mac;
    bool oui_espressif = m[0] == 0x18 && m[1] == 0xfe && m[2] == 0x34;
    bool oui_ai = m[0] == 0xac && m[1] == 0xd0 && m[2] == 0x74;
    uint32_t low = ((uint32_t)m[3] << 8) | m[4];
    switch (addr) {
    case 0x3FF00050: /* m0: MAC byte 5 in the top byte; bit 4 clear = ESP8266EX */
        *v = (uint32_t)m[5] << 24;
        return true;
    case 0x3FF00054: /* m1: bits 23:16 select the OUI when m3 == 0 */
        *v = oui_espressif ? low : oui_ai ? ((1u << 16) | low) : ((2u << 16) | low);
        return true;
    case 0x3FF00058:
        *v = 0;
        return true;
    case 0x3FF0005C: /* m3: explicit OUI */
        *v = (oui_espressif || oui_ai) ? 0 : ((uint32_t)m[0] << 16) | ((uint32_t)m[1] << 8) | m[2];
        return true;
    default:
        return false;
    }
}

static bool esp32_special(const struct sim *s, uint32_t addr, uint32_t *v)
{
    const uint8_t *m = s->mac;
    switch (addr) {
    case 0x3FF5A004:
        *v = ((uint32_t)m[2] << 24) | ((uint32_t)m[3] << 16) | ((uint32_t)m[4] << 8) | m[5];
        return true;
    case 0x3FF5A008:
        *v = ((uint32_t)mac_crc8(m) << 16) | ((uint32_t)m[0] << 8) | m[1];
        return true;
    case 0x3FF5A00C: /* word 3: bit 15 = rev1 fix; hd pad at 8:4 (--spi-pads) */
        *v = 1u << 15 | (uint32_t)s->spi_pads[4] << 4;
        return true;
    case 0x3FF5A010: /* word 4: low byte 40 -> ROM clock estimate exactly 40 MHz */
        *v = 40;
        return true;
    case 0x3FF5A014: /* word 5: bit 20 = rev2 fix; minor 0; SPI pads clk/q/d/cs (--spi-pads) */
        *v = 1u << 20 | (uint32_t)s->spi_pads[0] | (uint32_t)s->spi_pads[1] << 5 |
             (uint32_t)s->spi_pads[2] << 10 | (uint32_t)s->spi_pads[3] << 15;
        return true;
    case 0x3FF6607C: /* APB_CTRL date: bit 31 = rev3 */
        *v = 1u << 31;
        return true;
    case 0x3FF5F06C:
        *v = 2560u << 7;
        return true;
    default:
        return false;
    }
}

static bool efuse_lohi_special(const struct sim *s, uint32_t addr, uint32_t *v)
{
    const uint8_t *m = s->mac;
    uint32_t b1 = s->chip->efuse_mac_reg; /* BLOCK1 = EFUSE_BASE + 0x44 */
    unsigned minor = s->chip->chip == SIM_ESP32C3 ? 4 : 2;
    if (addr == b1) {
        *v = ((uint32_t)m[2] << 24) | ((uint32_t)m[3] << 16) | ((uint32_t)m[4] << 8) | m[5];
        return true;
    }
    if (addr == b1 + 4) {
        *v = ((uint32_t)m[0] << 8) | m[1];
        return true;
    }
    if (addr == b1 + 0x0C) { /* minor bits 0-2 at 18-20 */
        *v = (uint32_t)(minor & 7) << 18;
        return true;
    }
    if (addr == b1 + 0x14) { /* minor bit 3 at 23, major at 24-25 */
        *v = (uint32_t)((minor >> 3) & 1) << 23;
        return true;
    }
    return false;
}

uint32_t sim_regs_read(struct sim *s, uint32_t addr)
{
    const struct sim_chip_info *c = s->chip;
    uint32_t v = 0;
    if (addr == 0x40001000u)
        return c->magic;
    if (addr == c->uart_clkdiv_reg) {
        double div = (double)c->xtal_mhz * 1e6 * c->clkdiv_div / (double)(s->baud ? s->baud : 1);
        return (uint32_t)(div + 0.5) & 0xFFFFF;
    }
    if (sim_usb_read(s, addr, &v)) /* uart_no, RTC_CNTL_OPTION1 (sim_usb.c) */
        return v;
    switch (c->chip) {
    case SIM_ESP8266:
        if (esp8266_special(s, addr, &v))
            return v;
        break;
    case SIM_ESP32:
        if (esp32_special(s, addr, &v))
            return v;
        break;
    case SIM_ESP32C3:
    case SIM_ESP32S3:
        if (efuse_lohi_special(s, addr, &v))
            return v;
        break;
    }
    if (reg_lookup(s, addr, &v))
        return v;
    return 0;
}

void sim_regs_write(struct sim *s, uint32_t addr, uint32_t value, uint32_t mask)
{
    const struct sim_chip_info *c = s->chip;
    uint32_t old = 0;
    reg_lookup(s, addr, &old);
    uint32_t nv = (old & ~mask) | (value & mask);
    if (addr == c->spi_base && (nv & (1u << 18))) {
        uint32_t usr2 = 0;
        reg_lookup(s, c->spi_usr2, &usr2);
        uint8_t cmd = (uint8_t)(usr2 & 0xFF);
        if (cmd == 0xAB && s->flash_sleeping && !s->faults.flash_dead) {
            s->flash_sleeping = false; /* release from deep power-down */
            sim_log("spi 0xAB: flash released from deep power-down");
        } else if (cmd == 0xB9 && !s->faults.flash_dead) {
            s->flash_sleeping = true;
            sim_log("spi 0xB9: flash in deep power-down");
        } else if (cmd == 0x9F && s->flash_sleeping) {
            /* deep power-down: the flash ignores RDID, MISO floats high */
            reg_store(s, c->spi_w0, 0xFFFFFF);
            sim_log("spi RDID -> 0xffffff (flash in deep power-down)");
        } else if (cmd == 0x9F && s->faults.flash_dead) {
            /* A flash that does not answer: MISO floats high (or is held low). */
            reg_store(s, c->spi_w0, s->faults.flash_dead_id);
            sim_log("fault flash-dead fired (spi RDID -> 0x%06x)", s->faults.flash_dead_id);
        } else if (cmd == 0x9F && !sim_rom_flash_reachable(s)) {
            /* No flash on the pins the controller drives: MISO floats high. */
            reg_store(s, c->spi_w0, 0xFFFFFF);
            sim_log("spi RDID -> 0xffffff (flash not attached)");
        } else if (cmd == 0x9F) {
            reg_store(s, c->spi_w0, s->flash_id);
            sim_log("spi RDID -> 0x%06x", s->flash_id);
        } else {
            sim_log("spi user command 0x%02x (ignored)", cmd);
        }
        nv &= ~(1u << 18); /* the command completes at once */
    }
    if (sim_usb_write(s, addr, nv)) /* watchdogs, force-download bit (sim_usb.c) */
        return;
    reg_store(s, addr, nv);
}
