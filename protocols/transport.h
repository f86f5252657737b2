/*
 * transport: one ops table for every way of reaching a board's UART.
 *
 * transport_open() picks the backend from the URI:
 *   tcp://host:port   raw TCP (ser2net-style serial servers); no modem lines, fixed baud
 *   rfc2217://host:port
 *                     a serial server speaking Telnet COM-PORT-OPTION (RFC 2217,
 *                     ser2net's telnet(rfc2217) accepter): set_baud and set_lines
 *                     reach the server's serial port. set_lines with both lines
 *                     sends two SET-CONTROL commands (DTR first) in one TCP
 *                     segment: the server applies them one after the other, not
 *                     in one TIOCMSET
 *   fd:N              an already-open file descriptor (termios if it is a tty); the
 *                     transport takes ownership and closes it (not on a failed open)
 *   pty:/path, or a path to a pseudo-terminal
 *                     termios backend (libserialport refuses ptys). If a unix
 *                     datagram socket "<path>.modem" exists next to the path,
 *                     DTR/RTS changes are sent there (the virtual board's side
 *                     channel, since ptys carry no modem lines)
 *   /dev/ttyUSB0, serial:/dev/ttyUSB0, anything else
 *                     a real serial port through libserialport
 *
 * Modem line semantics: "asserted" = TIOCM bit set = pin low at the bridge.
 * set_lines(t, dtr, rts) takes 1 (assert), 0 (deassert) or -1 (leave as is);
 * when both are given they change in one atomic operation (TIOCMSET), which is
 * what the "tight" reset strategy needs; single-line changes are separate.
 *
 * Side channel (pty backend): one datagram per call, ASCII "DTR=<0|1> RTS=<0|1>\n"
 * with the full resulting state (1 = asserted) on set_lines, "BAUD=<n>\n" on
 * set_baud. A refused send means the board has gone: -ENODEV from then on.
 *
 * Timeouts: a negative timeout_ms waits forever. transport_open returns the
 * precise errno (-ENOENT, -EACCES, -EBUSY, -ECONNREFUSED, ...); err always
 * carries the technician-grade message and advice.
 *
 * All reads honour t->cancel_fd: when it becomes readable, read returns -ECANCELED.
 * A transport whose device vanished returns -ENODEV from then on.
 */
#ifndef TRANSPORT_H
#define TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_error.h"

enum transport_kind {
    TRANSPORT_SERIAL = 0, /* libserialport */
    TRANSPORT_TERMIOS,    /* pty / any fd */
    TRANSPORT_TCP,
    TRANSPORT_RFC2217, /* Telnet COM-PORT-OPTION serial server */
};

const char *transport_kind_to_string(enum transport_kind kind);

/* Capability bits. */
#define TRANSPORT_CAP_MODEM_LINES 0x1u /* set_lines works */
#define TRANSPORT_CAP_BAUD 0x2u        /* set_baud changes the line rate */
#define TRANSPORT_CAP_REOPEN 0x4u      /* reopen() can follow a re-enumerating device */

struct transport;

struct transport_ops {
    /* Writes all of buf or fails. Returns len, -ETIMEDOUT, -ENODEV, -ECANCELED. */
    int (*write)(struct transport *t, const uint8_t *buf, size_t len, int timeout_ms);
    /* Reads what is available, waiting up to timeout_ms for the first byte.
     * Returns >0 bytes read, 0 on timeout, -ENODEV, -ECANCELED. */
    int (*read)(struct transport *t, uint8_t *buf, size_t cap, int timeout_ms);
    /* Returns 0, -ENOTSUP (no baud control: TCP), -EINVAL (rate refused), -ENODEV. */
    int (*set_baud)(struct transport *t, uint32_t baud);
    /* Returns 0 or -ENOTSUP when the transport has no modem lines, -ENODEV. */
    int (*set_lines)(struct transport *t, int dtr, int rts);
    /* Discards received-but-unread input. */
    int (*flush_input)(struct transport *t);
    /* Waits until written bytes have left the host (tcdrain). */
    int (*drain)(struct transport *t);
    /* Closes and reopens the same port (USB-Serial/JTAG re-enumeration), retrying for
     * up to timeout_ms. -ENOTSUP if the transport cannot. */
    int (*reopen)(struct transport *t, int timeout_ms);
    /* Frees everything, including t. */
    void (*close)(struct transport *t);
};

struct transport {
    const struct transport_ops *ops;
    enum transport_kind kind;
    unsigned caps;
    char uri[256];
    char description[128];     /* e.g. "CP2102 USB to UART (10c4:ea60)" when known */
    uint16_t usb_vid, usb_pid; /* 0 when not USB / unknown */
    uint32_t baud;             /* rate in force (as last set) */
    int cancel_fd;             /* -1 or an fd that becomes readable to cancel I/O */
    uint64_t bytes_written;    /* counters, for wire-utilisation figures */
    uint64_t bytes_read;
    void *priv; /* backend state */
};

/* Checks the form of uri without opening anything: tcp://host:port (or socket://,
 * rfc2217://) with a port 1..65535, fd:N with N decimal, pty:PATH / serial:PATH / PATH with a
 * non-empty path, no other scheme. Returns 0, or -EINVAL with err filled (stage OPEN, message,
 * advice). transport_open() applies the same check first. */
int transport_uri_check(const char *uri, struct esp_error *err);

/* Opens uri at baud (set after open, as the CH341 driver needs). Returns 0 and
 * *out, or -errno with err filled (stage OPEN, message naming the port,
 * advice such as "is the board plugged in? is another program using the port?
 * is the user in the dialout group?"). */
int transport_open(const char *uri, uint32_t baud, struct transport **out, struct esp_error *err);

/* Wrappers that check t and keep the counters. */
int transport_write(struct transport *t, const uint8_t *buf, size_t len, int timeout_ms);
int transport_read(struct transport *t, uint8_t *buf, size_t cap, int timeout_ms);
int transport_set_baud(struct transport *t, uint32_t baud);
int transport_set_lines(struct transport *t, int dtr, int rts);
int transport_flush_input(struct transport *t);
int transport_drain(struct transport *t);
int transport_reopen(struct transport *t, int timeout_ms);
/* Like transport_reopen() but at a new device path (a USB-Serial/JTAG board that
 * came back as another ttyACMn). Serial and termios ports only (-ENOTSUP). */
int transport_reopen_at(struct transport *t, const char *path, int timeout_ms);
void transport_close(struct transport *t); /* NULL allowed */

#endif
