/*
 * transport_termios: pseudo-terminals, inherited descriptors (fd:N) and ttys that
 * libserialport will not drive, configured through the kernel's termios2.
 *
 * Line setup: raw 8N1, no flow control (CRTSCTS, IXON/IXOFF off), no echo, no
 * CR/LF translation, VMIN = VTIME = 0, fd non-blocking. Rates go through
 * TCSETS2 + BOTHER, so any integer rate works (74880, 921600, 1500000, 2000000 ...).
 * This file uses <asm/termbits.h> and therefore must never include <termios.h>.
 *
 * Ownership: opened from a path, the transport owns the descriptor it opened.
 * Opened from fd:N, it takes ownership of N and closes it in close(); if
 * transport_open fails, N is left open for the caller. fd:N cannot reopen().
 * A path must name a tty (-ENOTTY otherwise, and block devices or files are
 * not even opened); fd:N may be any descriptor, e.g. a socketpair end in
 * tests, and then has neither rate control nor modem lines.
 *
 * Exclusive access: every tty (path or fd:N) gets an exclusive flock() after
 * open and after reopen (tp_lock_exclusive); a port another transport holds
 * fails with -EBUSY. The lock is released when the descriptor is closed.
 *
 * Modem-line side channel (ptys carry no DTR/RTS). When the transport is opened
 * from a PATH and a Unix-domain datagram socket exists at "<path>.modem" (path
 * exactly as given, before symlinks are resolved), the transport connects a
 * SOCK_DGRAM socket to it (autobound, no name of its own) and:
 *   - reports TRANSPORT_CAP_MODEM_LINES;
 *   - on every set_lines() sends ONE datagram with the resulting full state,
 *     ASCII, exactly "DTR=<0|1> RTS=<0|1>\n" (1 = asserted = TIOCM bit set =
 *     pin low at a real bridge); -1 arguments keep the previous value, the
 *     initial state is DTR=0 RTS=0 and nothing is sent at open;
 *   - on every successful set_baud() (including the one transport_open does
 *     right after opening, and the one reopen() does) sends "BAUD=<n>\n",
 *     n in decimal.
 * Each datagram is one complete message; there is no reply. If the send fails
 * with ECONNREFUSED/ENOENT (no one bound to the socket any more) the board is
 * gone: the call returns -ENODEV and so does every call after it. A full
 * receive queue is waited on for up to 1 s, then -ETIMEDOUT.
 * Without the socket a pty has no modem lines: set_lines() returns -ENOTSUP.
 * A real tty reached through this backend uses TIOCM ioctls instead.
 */
#include <asm/termbits.h>

#include "transport_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define SIDEBAND_SEND_TIMEOUT_MS 1000
/* A UART tolerates a few percent of rate error; a driver that lands further away refused it. */
#define BAUD_TOLERANCE_PERCENT 5

struct termios_priv {
    struct tp_fd io;
    bool is_tty;
    bool lines; /* TIOCM ioctls work */
    bool from_path;
    char path[PATH_MAX]; /* as given, for reopen and the side channel */
    char note[128];      /* why we are here instead of libserialport, or "" */
    int modem_fd;        /* connected datagram socket, -1 if no side channel */
    int dtr, rts;        /* side-channel line state */
};

static struct termios_priv *priv_of(struct transport *t)
{
    return t->priv;
}

/* ---- termios2 ------------------------------------------------------------ */

static int tty_make_raw(int fd)
{
    struct termios2 tio;
    if (ioctl(fd, TCGETS2, &tio) < 0)
        return -errno;
    tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON |
                               IXOFF | IXANY | INPCK);
    tio.c_oflag &= ~(tcflag_t)OPOST;
    tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ECHOE | ECHOK | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB | CRTSCTS);
    tio.c_cflag |= CS8 | CLOCAL | CREAD;
    tio.c_cc[VMIN] = 0;
    tio.c_cc[VTIME] = 0;
    if (ioctl(fd, TCSETS2, &tio) < 0)
        return -errno;
    return 0;
}

static int tty_set_speed(int fd, uint32_t baud)
{
    struct termios2 tio;
    if (ioctl(fd, TCGETS2, &tio) < 0)
        return -errno;
    tio.c_cflag &= ~(tcflag_t)(CBAUD | (CBAUD << IBSHIFT));
    tio.c_cflag |= BOTHER | (BOTHER << IBSHIFT);
    tio.c_ospeed = baud;
    tio.c_ispeed = baud;
    if (ioctl(fd, TCSETS2, &tio) < 0)
        return -errno;
    /* Drivers store the rate they really programmed; reject one that is far off. */
    if (ioctl(fd, TCGETS2, &tio) < 0)
        return -errno;
    uint64_t got = tio.c_ospeed, want = baud;
    uint64_t diff = got > want ? got - want : want - got;
    if (diff * 100 > want * BAUD_TOLERANCE_PERCENT)
        return -EINVAL;
    return 0;
}

static bool fd_is_tty(int fd)
{
    struct termios2 tio;
    return ioctl(fd, TCGETS2, &tio) == 0;
}

/* ---- side channel -------------------------------------------------------- */

static int sideband_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.modem", path);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
        return -1;
    struct stat st;
    if (stat(sa.sun_path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return -1;
    int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -1;
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(s); /* stale socket file: nobody listens, treat as absent */
        return -1;
    }
    return s;
}

static int sideband_send(struct termios_priv *p, const char *msg)
{
    size_t len = strlen(msg);
    int64_t deadline = tp_now_ms() + SIDEBAND_SEND_TIMEOUT_MS;
    for (;;) {
        if (send(p->modem_fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len)
            return 0;
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN) {
            int64_t left = deadline - tp_now_ms();
            if (left <= 0)
                return -ETIMEDOUT;
            struct pollfd pf = {.fd = p->modem_fd, .events = POLLOUT};
            (void)poll(&pf, 1, (int)left);
            continue;
        }
        if (e == ECONNREFUSED || e == ENOENT || e == ENOTCONN || e == EPIPE || e == ECONNRESET) {
            p->io.gone = true;
            return -ENODEV;
        }
        return -EIO;
    }
}

/* ---- sysfs identity of real ttys ----------------------------------------- */

static bool read_sysfs_line(const char *dir, const char *name, char *out, size_t cap)
{
    char file[PATH_MAX + 32];
    snprintf(file, sizeof(file), "%s/%s", dir, name);
    FILE *f = fopen(file, "re");
    if (!f)
        return false;
    bool ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (ok)
        out[strcspn(out, "\r\n")] = '\0';
    return ok && out[0] != '\0';
}

/* Fills usb_vid/usb_pid and a product description when the tty sits on USB. */
static void lookup_usb_identity(struct transport *t, const char *path)
{
    char real[PATH_MAX], link[PATH_MAX + 32], dir[PATH_MAX];
    if (!realpath(path, real))
        return;
    const char *name = strrchr(real, '/');
    name = name ? name + 1 : real;
    snprintf(link, sizeof(link), "/sys/class/tty/%s/device", name);
    if (!realpath(link, dir))
        return;
    /* ttyACM: device is the USB interface; ttyUSB: a port below it. Walk up to the device. */
    for (int depth = 0; depth < 4; depth++) {
        char vid[16], pid[16];
        if (read_sysfs_line(dir, "idVendor", vid, sizeof(vid)) &&
            read_sysfs_line(dir, "idProduct", pid, sizeof(pid))) {
            t->usb_vid = (uint16_t)strtoul(vid, NULL, 16);
            t->usb_pid = (uint16_t)strtoul(pid, NULL, 16);
            char product[64] = "";
            if (!read_sysfs_line(dir, "product", product, sizeof(product)))
                (void)read_sysfs_line(dir, "manufacturer", product, sizeof(product));
            if (product[0])
                snprintf(t->description, sizeof(t->description), "%s (%04x:%04x)", product,
                         t->usb_vid, t->usb_pid);
            else
                snprintf(t->description, sizeof(t->description), "USB serial (%04x:%04x)",
                         t->usb_vid, t->usb_pid);
            return;
        }
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
            return;
        *slash = '\0';
    }
}

/* ---- setup shared by open and reopen ------------------------------------- */

static void append(char *dst, size_t cap, const char *s)
{
    size_t len = strnlen(dst, cap);
    if (len + 1 >= cap)
        return;
    size_t n = strlen(s);
    if (n > cap - 1 - len)
        n = cap - 1 - len;
    memcpy(dst + len, s, n);
    dst[len + n] = '\0';
}

static void describe(struct transport *t)
{
    struct termios_priv *p = priv_of(t);
    char *d = t->description;
    size_t cap = sizeof(t->description);

    if (!d[0]) {
        if (!p->from_path)
            snprintf(d, cap, "inherited %s fd %d", p->is_tty ? "tty" : "non-tty", p->io.fd);
        else if (p->is_tty)
            snprintf(d, cap, "%s", p->lines ? "tty" : "pseudo-terminal");
        else
            snprintf(d, cap, "non-tty file");
    }
    if (p->modem_fd >= 0)
        append(d, cap, ", modem side channel");
    if (p->note[0]) {
        append(d, cap, ", ");
        append(d, cap, p->note);
    }
}

/* Configures p->io.fd and recomputes caps. Returns 0 or -errno. */
static int setup_fd(struct transport *t)
{
    struct termios_priv *p = priv_of(t);
    struct stat st;

    p->io.is_socket = fstat(p->io.fd, &st) == 0 && S_ISSOCK(st.st_mode);
    int rc = tp_set_nonblock(p->io.fd);
    if (rc < 0)
        return rc;
    p->is_tty = fd_is_tty(p->io.fd);
    /* A path must name a tty: never send SLIP frames into a disk or a regular file. */
    if (p->from_path && !p->is_tty)
        return -ENOTTY;
    p->lines = false;
    t->caps = 0;
    if (p->is_tty) {
        rc = tty_make_raw(p->io.fd);
        if (rc < 0)
            return rc;
        t->caps |= TRANSPORT_CAP_BAUD;
        p->lines = tp_fd_has_lines(p->io.fd);
        /* Last fallible step, so a failed fd:N open leaves no lock on the caller's fd. */
        rc = tp_lock_exclusive(p->io.fd);
        if (rc < 0)
            return rc;
    }
    if (p->from_path) {
        t->caps |= TRANSPORT_CAP_REOPEN;
        p->modem_fd = sideband_connect(p->path);
    }
    if (p->lines || p->modem_fd >= 0)
        t->caps |= TRANSPORT_CAP_MODEM_LINES;
    return 0;
}

static void close_fds(struct termios_priv *p)
{
    if (p->io.fd >= 0)
        close(p->io.fd);
    if (p->modem_fd >= 0)
        close(p->modem_fd);
    p->io.fd = -1;
    p->modem_fd = -1;
}

/* ---- ops ----------------------------------------------------------------- */

static int termios_write(struct transport *t, const uint8_t *buf, size_t len, int timeout_ms)
{
    return tp_fd_write(&priv_of(t)->io, t->cancel_fd, buf, len, timeout_ms);
}

static int termios_read(struct transport *t, uint8_t *buf, size_t cap, int timeout_ms)
{
    return tp_fd_read(&priv_of(t)->io, t->cancel_fd, buf, cap, timeout_ms);
}

static int termios_set_baud(struct transport *t, uint32_t baud)
{
    struct termios_priv *p = priv_of(t);
    if (p->io.gone || p->io.fd < 0)
        return -ENODEV;
    if (!p->is_tty)
        return -ENOTSUP;
    int rc = tty_set_speed(p->io.fd, baud);
    if (rc < 0) {
        if (tp_errno_is_gone(-rc)) {
            p->io.gone = true;
            return -ENODEV;
        }
        return -EINVAL;
    }
    if (p->modem_fd >= 0) {
        char msg[32];
        snprintf(msg, sizeof(msg), "BAUD=%u\n", (unsigned)baud);
        return sideband_send(p, msg);
    }
    return 0;
}

static int termios_set_lines(struct transport *t, int dtr, int rts)
{
    struct termios_priv *p = priv_of(t);
    if (p->io.gone || p->io.fd < 0)
        return -ENODEV;
    if (p->modem_fd >= 0) {
        int ndtr = dtr < 0 ? p->dtr : dtr != 0;
        int nrts = rts < 0 ? p->rts : rts != 0;
        char msg[32];
        snprintf(msg, sizeof(msg), "DTR=%d RTS=%d\n", ndtr, nrts);
        int rc = sideband_send(p, msg);
        if (rc == 0) {
            p->dtr = ndtr;
            p->rts = nrts;
        }
        return rc;
    }
    if (!p->lines)
        return -ENOTSUP;
    return tp_fd_set_lines(&p->io, dtr, rts);
}

static int termios_flush_input(struct transport *t)
{
    struct termios_priv *p = priv_of(t);
    if (p->io.gone || p->io.fd < 0)
        return -ENODEV;
    if (!p->is_tty)
        return tp_fd_discard(&p->io);
    if (ioctl(p->io.fd, TCFLSH, TCIFLUSH) < 0) {
        if (tp_errno_is_gone(errno)) {
            p->io.gone = true;
            return -ENODEV;
        }
        return -EIO;
    }
    return 0;
}

static int termios_drain(struct transport *t)
{
    struct termios_priv *p = priv_of(t);
    if (p->io.gone || p->io.fd < 0)
        return -ENODEV;
    if (!p->is_tty)
        return 0;
    /* TCSBRK with a non-zero argument is tcdrain(). */
    while (ioctl(p->io.fd, TCSBRK, 1) < 0) {
        if (errno == EINTR)
            continue;
        if (tp_errno_is_gone(errno)) {
            p->io.gone = true;
            return -ENODEV;
        }
        return -EIO;
    }
    return 0;
}

static int open_path_fd(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISCHR(st.st_mode))
        return -ENOTTY; /* not even opened: a block device or file is never a port */
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int tp_termios_set_path(struct transport *t, const char *path)
{
    struct termios_priv *p = priv_of(t);
    if (!p->from_path)
        return -ENOTSUP;
    return tp_copy_path(p->path, sizeof(p->path), path);
}

/* One reopen attempt (tp_reopen_retry): 0 with the port open and set up. */
static int termios_reopen_once(struct transport *t)
{
    struct termios_priv *p = priv_of(t);
    int fd = open_path_fd(p->path);
    if (fd < 0)
        return fd;
    p->io.fd = fd;
    int rc = setup_fd(t);
    if (rc == 0 && t->baud && p->is_tty)
        rc = tty_set_speed(fd, t->baud);
    if (rc == 0) {
        p->io.gone = false;
        if (t->baud && p->is_tty && p->modem_fd >= 0) {
            char msg[32];
            snprintf(msg, sizeof(msg), "BAUD=%u\n", (unsigned)t->baud);
            rc = sideband_send(p, msg);
        }
        if (rc == 0)
            return 0;
    }
    close_fds(p);
    p->io.gone = true;
    return rc;
}

static int termios_reopen(struct transport *t, int timeout_ms)
{
    struct termios_priv *p = priv_of(t);
    if (!p->from_path)
        return -ENOTSUP;

    close_fds(p);
    p->io.gone = true; /* until the port is back */
    return tp_reopen_retry(t, timeout_ms, termios_reopen_once);
}

static void termios_close(struct transport *t)
{
    struct termios_priv *p = priv_of(t);
    close_fds(p);
    free(p);
    free(t);
}

static const struct transport_ops termios_ops = {
    .write = termios_write,
    .read = termios_read,
    .set_baud = termios_set_baud,
    .set_lines = termios_set_lines,
    .flush_input = termios_flush_input,
    .drain = termios_drain,
    .reopen = termios_reopen,
    .close = termios_close,
};

static struct transport *new_termios(const char *uri)
{
    struct transport *t = tp_alloc(TRANSPORT_TERMIOS, &termios_ops, uri);
    struct termios_priv *p = calloc(1, sizeof(*p));
    if (!t || !p) {
        free(t);
        free(p);
        return NULL;
    }
    p->io.fd = -1;
    p->modem_fd = -1;
    t->priv = p;
    return t;
}

int tp_termios_open_path(const char *uri, const char *path, const char *note,
                         struct transport **out, struct esp_error *err)
{
    if (strlen(path) >= PATH_MAX)
        return tp_open_error(err, ENAMETOOLONG, path);
    struct transport *t = new_termios(uri);
    if (!t)
        return tp_open_error(err, ENOMEM, path);
    struct termios_priv *p = priv_of(t);
    p->from_path = true;
    snprintf(p->path, sizeof(p->path), "%s", path);
    if (note)
        snprintf(p->note, sizeof(p->note), "%s", note);

    int fd = open_path_fd(path);
    if (fd < 0) {
        termios_close(t);
        return tp_open_error(err, -fd, path);
    }
    p->io.fd = fd;
    int rc = setup_fd(t);
    if (rc < 0) {
        termios_close(t);
        return tp_open_error(err, -rc, path);
    }
    if (p->lines)
        lookup_usb_identity(t, path);
    describe(t);
    *out = t;
    return 0;
}

int tp_termios_open_fd(const char *uri, int fd, struct transport **out, struct esp_error *err)
{
    char name[32];
    snprintf(name, sizeof(name), "fd %d", fd);
    struct transport *t = new_termios(uri);
    if (!t)
        return tp_open_error(err, ENOMEM, name);
    struct termios_priv *p = priv_of(t);
    p->io.fd = fd;
    int rc = setup_fd(t);
    if (rc < 0) {
        p->io.fd = -1; /* not ours yet: the caller keeps it on failure */
        termios_close(t);
        return tp_open_error(err, -rc, name);
    }
    describe(t);
    *out = t;
    return 0;
}
