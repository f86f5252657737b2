/*
 * bridges: the built-in USB-serial bridge table (bridges.h).
 *
 * max_baud is the highest rate the bridge's UART is specified for, from the
 * maker's datasheet (the source is named on each row). Where one USB id
 * covers chips with different limits and the product string cannot tell
 * them apart, the row takes the lowest. A particular cable, level shifter
 * or board may carry less: the slot's ladder (slot.h) steps down from here
 * on link errors and remembers where it ended.
 */
#include "bridges.h"

#include <errno.h>
#include <string.h>

#include "config.h"

static const struct bridge_info builtin[] = {
    /* Silicon Labs ships the CP2102, CP2102N, CP2104 and CP2109 as 10c4:ea60; the
     * product string names the chip ("CP2102N USB to UART Bridge Controller"). */
    /* CP2102N datasheet: UART baud rates 300 bps to 3 Mbps. */
    {0x10c4, 0xea60, "CP2102N", "CP2102N", 3000000, BRIDGE_RESET_CLASSIC},
    /* CP2104 datasheet 6.1: any rate from 300 bps to 2 Mbps. */
    {0x10c4, 0xea60, "CP2104", "CP2104", 2000000, BRIDGE_RESET_CLASSIC},
    /* CP2102/CP2109 datasheet: 300 bps to 1 Mbps; 921600 is the highest common rate
     * below. Also any CP210x whose product string says nothing more. */
    {0x10c4, 0xea60, NULL, "CP210x", 921600, BRIDGE_RESET_CLASSIC},
    /* WCH CH340 datasheet: 50 bps to 2 Mbps. */
    {0x1a86, 0x7523, NULL, "CH340", 2000000, BRIDGE_RESET_CLASSIC},
    /* WCH's third generation (CH343, CH9101, CH9102; WCH application FAQ for the
     * CH343 series, CH343P datasheet): 50 bps to 6 Mbps. Above the chips' UARTs
     * (5 Mbaud): the loader caps the rate at the chip's. */
    {0x1a86, 0x55d3, NULL, "CH343", 6000000, BRIDGE_RESET_CLASSIC},
    {0x1a86, 0x55d4, NULL, "CH9102", 6000000, BRIDGE_RESET_CLASSIC},
    /* FTDI FT232R datasheet 2.1.9 (also the FT232BM/BL on the same id): 300 baud to
     * 3 Mbaud (3 MHz / n; 2 and 1.5 Mbaud are exact, 921600 is 923077, 0.2 % off). */
    {0x0403, 0x6001, NULL, "FTDI FT232R", 3000000, BRIDGE_RESET_CLASSIC},
    /* 0403:6010 is the FT2232D (3 Mbaud) and the FT2232H (12 Mbaud): the lower. */
    {0x0403, 0x6010, NULL, "FTDI FT2232", 3000000, BRIDGE_RESET_CLASSIC},
    /* FT232H datasheet: up to 12 Mbaud (capped at the chip's UART). */
    {0x0403, 0x6014, NULL, "FTDI FT232H", 12000000, BRIDGE_RESET_CLASSIC},
    /* FT230X/FT231X (FT-X series) datasheets: up to 3 Mbaud. */
    {0x0403, 0x6015, NULL, "FTDI FT-X", 3000000, BRIDGE_RESET_CLASSIC},
    /* Prolific ships generations from about 1 Mbaud (PL2303HX rev A) to 12 Mbaud as
     * 067b:2303: 921600, which all of them carry. */
    {0x067b, 0x2303, NULL, "PL2303", 921600, BRIDGE_RESET_CLASSIC},
    /* The chip's own USB (USB-Serial/JTAG of the C3/S3/C6/H2..., the S2/S3 ROM's USB-OTG
     * CDC): no UART between host and chip, the rate is only a number and the data moves
     * at USB full speed whatever it says. */
    {0x303a, 0x1001, NULL, "Espressif USB-Serial/JTAG", 0, BRIDGE_RESET_USB_JTAG},
    {0x303a, 0x0002, NULL, "Espressif ESP32-S2 USB-OTG", 0, BRIDGE_RESET_CLASSIC},
    {0x303a, 0x0009, NULL, "Espressif ESP32-S3 USB-OTG", 0, BRIDGE_RESET_CLASSIC},
};

const struct bridge_info *bridges_builtin(size_t *n)
{
    *n = sizeof(builtin) / sizeof(builtin[0]);
    return builtin;
}

const struct bridge_info *bridges_lookup(uint16_t vid, uint16_t pid, const char *product)
{
    for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
        const struct bridge_info *b = &builtin[i];
        if (b->vid != vid || b->pid != pid)
            continue;
        if (!b->product || (product && strstr(product, b->product)))
            return b;
    }
    return NULL;
}

const char *bridge_reset_to_string(enum bridge_reset r)
{
    return r == BRIDGE_RESET_USB_JTAG ? "usb-jtag" : "classic";
}

int bridge_reset_from_string(const char *s)
{
    if (strcmp(s, "classic") == 0)
        return BRIDGE_RESET_CLASSIC;
    if (strcmp(s, "usb-jtag") == 0)
        return BRIDGE_RESET_USB_JTAG;
    return -EINVAL;
}

void bridges_for_port(const struct config *cfg, uint16_t vid, uint16_t pid, const char *product,
                      struct bridge_port *out)
{
    memset(out, 0, sizeof(*out));
    const struct bridge_info *b = bridges_lookup(vid, pid, product);
    if (b) {
        out->name = b->name;
        out->max_baud = b->max_baud;
        out->reset = b->reset;
    }
    for (size_t i = 0; cfg && i < cfg->n_bridges; i++) {
        const struct config_bridge *c = &cfg->bridges[i];
        if (c->vid != vid || c->pid != pid)
            continue;
        if (c->name && !out->name)
            out->name = c->name;
        if (c->max_baud)
            out->max_baud = c->max_baud;
        if (c->reset >= 0)
            out->reset = (enum bridge_reset)c->reset;
        break;
    }
}
