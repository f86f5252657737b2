/*
 * transport_serial: real serial ports (USB-UART bridges, native USB CDC, on-board
 * UARTs) through libserialport.
 *
 * libserialport opens the port, configures 8N1 without flow control, sets rates
 * (it handles non-standard ones through termios2) and tells us the USB
 * identity. The I/O itself runs on its file descriptor (sp_get_port_handle)
 * through the shared poll loop in transport.c: that gives cancellation through
 * t->cancel_fd and keeps errno exact (sp_nonblocking_read folds EAGAIN and
 * end-of-file into the same 0, which would hide an unplugged adapter). Modem
 * lines use TIOCM ioctls on the same fd so two lines can change atomically.
 *
 * The path is resolved (realpath) before libserialport sees it, so
 * /dev/serial/by-id/... links work and reopen() follows a re-enumerated device
 * to its new ttyACMn/ttyUSBn. The port is opened TIOCEXCL so a second flasher or
 * a serial monitor cannot open it while we flash (root can still), and an
 * exclusive flock() on it (tp_lock_exclusive) keeps out another espstation or
 * espstationd even as root: the second open fails with -EBUSY.
 *
 * When libserialport does not know the device (no sysfs entry) or cannot drive it
 * (ENOTTY, unsupported ioctl), the open falls back to the termios backend and
 * says so in t->description.
 */
#include "transport_priv.h"

#include <errno.h>
#include <limits.h>
#include <libserialport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

struct serial_priv {
    struct tp_fd io;
    struct sp_port *port; /* NULL while closed */
    bool lines;           /* TIOCM ioctls work */
    char path[PATH_MAX];  /* as given; re-resolved on every (re)open */
};

/* serial_try_open result when libserialport cannot drive the port but termios may. */
#define TRY_FALLBACK 1

static struct serial_priv *priv_of(struct transport *t)
{
    return t->priv;
}

static bool errno_means_unsupported(int e)
{
    return e == ENOTTY || e == EINVAL || e == ENOTSUP || e == ENOSYS;
}

/* errno of the last SP_ERR_FAIL, or EIO for the library's own error codes. */
static int sp_errno(enum sp_return r)
{
    if (r == SP_ERR_FAIL) {
        int e = sp_last_error_code();
        return e > 0 ? e : EIO;
    }
    if (r == SP_ERR_MEM)
        return ENOMEM;
    if (r == SP_ERR_SUPP)
        return ENOTSUP;
    return EINVAL;
}

/*
 * Opens and configures path. Returns 0 with *portp and *fdp set, -errno, or
 * TRY_FALLBACK with why[] filled.
 */
static int serial_try_open(const char *path, struct sp_port **portp, int *fdp, char *why,
                           size_t whycap)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return -errno;

    struct sp_port *port = NULL;
    enum sp_return r = sp_get_port_by_name(real, &port);
    if (r == SP_ERR_MEM)
        return -ENOMEM;
    if (r != SP_OK) {
        snprintf(why, whycap, "libserialport does not know %.90s", real);
        return TRY_FALLBACK;
    }

    r = sp_open(port, SP_MODE_READ_WRITE);
    if (r != SP_OK) {
        int e = sp_errno(r);
        sp_free_port(port);
        if (errno_means_unsupported(e)) {
            snprintf(why, whycap, "libserialport cannot open it (%s)", strerror(e));
            return TRY_FALLBACK;
        }
        return -e;
    }

    struct sp_port_config *cfg = NULL;
    r = sp_new_config(&cfg);
    if (r == SP_OK) {
        /* Fields left at -1 (rate, DTR, RTS) stay as they are: the rate comes after. */
        sp_set_config_bits(cfg, 8);
        sp_set_config_parity(cfg, SP_PARITY_NONE);
        sp_set_config_stopbits(cfg, 1);
        sp_set_config_flowcontrol(cfg, SP_FLOWCONTROL_NONE);
        r = sp_set_config(port, cfg);
        sp_free_config(cfg);
    }
    int fd = -1;
    if (r == SP_OK)
        r = sp_get_port_handle(port, &fd);
    if (r != SP_OK) {
        int e = sp_errno(r);
        sp_close(port);
        sp_free_port(port);
        if (errno_means_unsupported(e)) {
            snprintf(why, whycap, "libserialport cannot configure it (%s)", strerror(e));
            return TRY_FALLBACK;
        }
        return -e;
    }

    (void)ioctl(fd, TIOCEXCL); /* best effort: keeps other programs out while we flash */
    /* TIOCEXCL does not stop root (the daemon may run as root): the lock does. */
    int rc = tp_lock_exclusive(fd);
    if (rc == 0)
        rc = tp_set_nonblock(fd);
    if (rc < 0) {
        sp_close(port);
        sp_free_port(port);
        return rc;
    }
    *portp = port;
    *fdp = fd;
    return 0;
}

static void fill_identity(struct transport *t)
{
    struct serial_priv *p = priv_of(t);
    t->usb_vid = t->usb_pid = 0;
    t->description[0] = '\0';

    if (sp_get_port_transport(p->port) == SP_TRANSPORT_USB) {
        int vid = 0, pid = 0;
        if (sp_get_port_usb_vid_pid(p->port, &vid, &pid) == SP_OK) {
            t->usb_vid = (uint16_t)vid;
            t->usb_pid = (uint16_t)pid;
        }
        const char *product = sp_get_port_usb_product(p->port);
        if (!product || !*product)
            product = sp_get_port_usb_manufacturer(p->port);
        snprintf(t->description, sizeof(t->description), "%s (%04x:%04x)",
                 product && *product ? product : "USB serial", t->usb_vid, t->usb_pid);
        return;
    }
    const char *desc = sp_get_port_description(p->port);
    snprintf(t->description, sizeof(t->description), "%s", desc && *desc ? desc : "serial port");
}

static void serial_close_port(struct serial_priv *p)
{
    if (p->port) {
        sp_close(p->port);
        sp_free_port(p->port);
    }
    p->port = NULL;
    p->io.fd = -1;
}

/* ---- ops ----------------------------------------------------------------- */

static int serial_write(struct transport *t, const uint8_t *buf, size_t len, int timeout_ms)
{
    return tp_fd_write(&priv_of(t)->io, t->cancel_fd, buf, len, timeout_ms);
}

static int serial_read(struct transport *t, uint8_t *buf, size_t cap, int timeout_ms)
{
    return tp_fd_read(&priv_of(t)->io, t->cancel_fd, buf, cap, timeout_ms);
}

/* Maps a libserialport failure on an open port to the transport vocabulary. */
static int port_failure(struct serial_priv *p, enum sp_return r, int otherwise)
{
    int e = sp_errno(r);
    if (tp_errno_is_gone(e)) {
        p->io.gone = true;
        return -ENODEV;
    }
    return otherwise;
}

static int serial_set_baud(struct transport *t, uint32_t baud)
{
    struct serial_priv *p = priv_of(t);
    if (p->io.gone || !p->port)
        return -ENODEV;
    if (baud > INT_MAX)
        return -EINVAL;
    enum sp_return r = sp_set_baudrate(p->port, (int)baud);
    return r == SP_OK ? 0 : port_failure(p, r, -EINVAL);
}

static int serial_set_lines(struct transport *t, int dtr, int rts)
{
    struct serial_priv *p = priv_of(t);
    if (p->io.gone || !p->port)
        return -ENODEV;
    if (!p->lines)
        return -ENOTSUP;
    return tp_fd_set_lines(&p->io, dtr, rts);
}

static int serial_flush_input(struct transport *t)
{
    struct serial_priv *p = priv_of(t);
    if (p->io.gone || !p->port)
        return -ENODEV;
    enum sp_return r = sp_flush(p->port, SP_BUF_INPUT);
    return r == SP_OK ? 0 : port_failure(p, r, -EIO);
}

static int serial_drain(struct transport *t)
{
    struct serial_priv *p = priv_of(t);
    if (p->io.gone || !p->port)
        return -ENODEV;
    enum sp_return r = sp_drain(p->port);
    return r == SP_OK ? 0 : port_failure(p, r, -EIO);
}

/* One reopen attempt (tp_reopen_retry): 0 with the port open and set up. */
static int serial_reopen_once(struct transport *t)
{
    struct serial_priv *p = priv_of(t);
    char why[128];
    struct sp_port *port = NULL;
    int fd = -1;
    if (serial_try_open(p->path, &port, &fd, why, sizeof(why)) != 0)
        return -ENODEV;
    p->port = port;
    p->io.fd = fd;
    p->io.gone = false;
    p->lines = tp_fd_has_lines(fd);
    t->caps =
        TRANSPORT_CAP_BAUD | TRANSPORT_CAP_REOPEN | (p->lines ? TRANSPORT_CAP_MODEM_LINES : 0u);
    fill_identity(t);
    if (t->baud == 0 || serial_set_baud(t, t->baud) == 0)
        return 0;
    serial_close_port(p);
    p->io.gone = true;
    return -ENODEV;
}

static int serial_reopen(struct transport *t, int timeout_ms)
{
    struct serial_priv *p = priv_of(t);
    serial_close_port(p);
    p->io.gone = true; /* until the port is back */
    return tp_reopen_retry(t, timeout_ms, serial_reopen_once);
}

int tp_serial_set_path(struct transport *t, const char *path)
{
    struct serial_priv *p = priv_of(t);
    return tp_copy_path(p->path, sizeof(p->path), path);
}

static void serial_close(struct transport *t)
{
    struct serial_priv *p = priv_of(t);
    serial_close_port(p);
    free(p);
    free(t);
}

static const struct transport_ops serial_ops = {
    .write = serial_write,
    .read = serial_read,
    .set_baud = serial_set_baud,
    .set_lines = serial_set_lines,
    .flush_input = serial_flush_input,
    .drain = serial_drain,
    .reopen = serial_reopen,
    .close = serial_close,
};

int tp_serial_open(const char *uri, const char *path, struct transport **out, struct esp_error *err)
{
    if (strlen(path) >= PATH_MAX)
        return tp_open_error(err, ENAMETOOLONG, path);

    struct sp_port *port = NULL;
    int fd = -1;
    char why[128];
    int rc = serial_try_open(path, &port, &fd, why, sizeof(why));
    if (rc == TRY_FALLBACK) {
        char note[160];
        snprintf(note, sizeof(note), "termios fallback: %s", why);
        return tp_termios_open_path(uri, path, note, out, err);
    }
    if (rc < 0)
        return tp_open_error(err, -rc, path);

    struct transport *t = tp_alloc(TRANSPORT_SERIAL, &serial_ops, uri);
    struct serial_priv *p = calloc(1, sizeof(*p));
    if (!t || !p) {
        free(t);
        free(p);
        sp_close(port);
        sp_free_port(port);
        return tp_open_error(err, ENOMEM, path);
    }
    t->priv = p;
    p->port = port;
    p->io.fd = fd;
    snprintf(p->path, sizeof(p->path), "%s", path);
    p->lines = tp_fd_has_lines(fd);
    t->caps =
        TRANSPORT_CAP_BAUD | TRANSPORT_CAP_REOPEN | (p->lines ? TRANSPORT_CAP_MODEM_LINES : 0u);
    fill_identity(t);
    *out = t;
    return 0;
}
