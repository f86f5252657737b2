/*
 * devsrc: device sources. Every way a serial port appears or disappears —
 * udev coldplug at start, udev hotplug, a URI attached by config or API —
 * ends in the same struct port_event delivered to one callback on the loop
 * thread. The station never cares which source a port came from.
 *
 * Slot identity: slot_key is the physical port (udev ID_PATH, e.g.
 * "pci-0000:00:14.0-usb-0:1.2:1.0") for udev ports and "uri:<uri>" for
 * manually attached ones. devnode/uri is what to open; it may change on every
 * re-enumeration while slot_key stays the same.
 */
#ifndef DEVSRC_H
#define DEVSRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

enum port_event_kind {
    PORT_ADDED = 0,
    PORT_REMOVED,
};

const char *port_event_kind_to_string(enum port_event_kind kind);

struct port_event {
    enum port_event_kind kind;
    char slot_key[256]; /* ID_PATH or "uri:<uri>" */
    char uri[256];      /* what to open: /dev/ttyUSB0, tcp://..., a pty path */
    char label[64];     /* human slot label from the config ("A1"), "" if none */
    uint16_t vid, pid;  /* USB ids, 0 when unknown */
    char serial[64];    /* USB serial number, "" when unknown */
    char product[128];  /* USB product string, "" when unknown */
    bool usb_jtag;      /* Espressif USB-Serial/JTAG (303a:1001): re-enumerates on reset */
    /* The bridge as the table knows it (bridges.h; built-in rows and config overrides):
     * known = the VID:PID (and product) is in it; max_baud its highest reliable rate,
     * 0 = unknown or no UART (the chip's own USB). */
    bool bridge_known;
    uint32_t max_baud;
    bool coldplug; /* found at start-up rather than plugged in while running */
};

typedef void (*devsrc_cb)(void *ctx, const struct port_event *ev);

/* ---- udev source (devsrc_udev.c) ------------------------------------------
 * A tty is ours when its USB parent's VID:PID is a known bridge in the config
 * or the device carries the config's udev tag. */
struct devsrc_udev;

/* Creates the monitor (subsystem tty). Returns 0 or -errno with err filled. */
int devsrc_udev_new(const struct config *cfg, devsrc_cb cb, void *ctx, struct devsrc_udev **out,
                    char *err, size_t errlen);
/* The monitor fd, to poll for readability on the loop thread. */
int devsrc_udev_fd(const struct devsrc_udev *src);
/* Reads pending monitor events and calls cb for each port of ours. */
int devsrc_udev_dispatch(struct devsrc_udev *src);
/* Enumerates existing ttys (coldplug) through the same filter and callback. */
int devsrc_udev_coldplug(struct devsrc_udev *src);
/* Swaps in a reloaded config (bridges, tag, slot labels). */
void devsrc_udev_set_config(struct devsrc_udev *src, const struct config *cfg);
void devsrc_udev_free(struct devsrc_udev *src); /* NULL allowed */

/* ---- manual source (URIs from config or API) -------------------------------
 * Fills ev for a manually attached URI (slot_key "uri:<uri>"). */
void devsrc_manual_event(enum port_event_kind kind, const char *uri, const char *label,
                         struct port_event *ev);

#endif
