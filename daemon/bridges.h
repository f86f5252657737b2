/*
 * bridges: what the station knows about USB-serial bridges, kept as data
 * (STYLE.md: device quirks are a table, not code). A row maps a USB VID:PID
 * -- and, where one id covers several chips (Silicon Labs ships the CP2102,
 * CP2102N and CP2104 as 10c4:ea60), a piece of the USB product string -- to
 * the bridge's name, its highest reliable baud and its reset style.
 *
 * The config's "bridges" list says which ids are ours (devsrc_udev) and may
 * override a row's max_baud and reset; bridges_for_port() merges the two.
 * The highest reliable baud is where a profile with "baud": "auto" starts a
 * slot's rate ladder (slot.h); the reset style tells the job how the board
 * enters its bootloader.
 *
 * Threads: any (read-only data).
 */
#ifndef ESPSTATION_BRIDGES_H
#define ESPSTATION_BRIDGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

enum bridge_reset {
    /* DTR/RTS drive EN and GPIO0 through the usual two-transistor circuit: the
     * tight/classic bootloader cycle (PROTOCOL-ROM.md 3.2). */
    BRIDGE_RESET_CLASSIC = 0,
    /* The chip's own USB-Serial/JTAG: its DTR/RTS sequence, and the port
     * re-enumerates when the chip resets. */
    BRIDGE_RESET_USB_JTAG,
};

struct bridge_info {
    uint16_t vid, pid;
    const char *product; /* substring of the USB product string that selects the row; NULL = any */
    const char *name;
    /* Highest reliable rate on the adapter's UART; 0 = no UART between host and chip
     * (the chip's own USB: the rate paces nothing, the data moves at USB speed). */
    uint32_t max_baud;
    enum bridge_reset reset;
};

/* The built-in rows, in match order (*n set). */
const struct bridge_info *bridges_builtin(size_t *n);

/* The first built-in row for vid:pid whose product substring (if any) is in product
 * (NULL or "" matches only rows without one). NULL when the id is unknown. */
const struct bridge_info *bridges_lookup(uint16_t vid, uint16_t pid, const char *product);

/* "classic", "usb-jtag"; from_string returns -EINVAL for anything else. */
const char *bridge_reset_to_string(enum bridge_reset r);
int bridge_reset_from_string(const char *s);

/* What the station uses for a USB port: the built-in row, with the config's "bridges"
 * entry for the id (when it sets max_baud or reset) taking precedence. */
struct bridge_port {
    const char *name;  /* "CP2102N", NULL when unknown */
    uint32_t max_baud; /* 0 = unknown, or no UART */
    enum bridge_reset reset;
};
void bridges_for_port(const struct config *cfg, uint16_t vid, uint16_t pid, const char *product,
                      struct bridge_port *out);

#endif
