/*
 * transport: URI dispatch, the public wrappers and the fd I/O core the backends share.
 *
 * URI rules (first match wins):
 *   tcp://host:port, socket://host:port   raw TCP (transport_tcp.c); host may be [v6]
 *   rfc2217://host:port   Telnet COM-PORT-OPTION serial server (transport_rfc2217.c)
 *   fd:N        the already-open descriptor N, decimal (transport_termios.c). The
 *               transport takes ownership: transport_close() closes N.
 *   pty:/path   termios backend on that path
 *   serial:/path  libserialport (transport_serial.c)
 *   other "scheme://..."  rejected with -EINVAL
 *   /path       termios if realpath(path) is a Unix98 pty slave (/dev/pts/N, or a
 *               char device with a pty-slave major), otherwise libserialport.
 * libserialport falls back to termios by itself when it does not know or
 * cannot drive a tty (see transport_serial.c).
 *
 * Invariants: the library never logs; errors go to the caller's struct
 * esp_error. The wrappers own the counters and t->baud; backends never touch
 * them except that reopen() re-applies t->baud.
 */
#include "transport.h"
#include "transport_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

/* Unix98 pty slaves use majors 136..143 (UNIX98_PTY_SLAVE_MAJOR). */
#define PTY_SLAVE_MAJOR_FIRST 136u
#define PTY_SLAVE_MAJOR_LAST 143u
/* flush_input on non-ttys reads away at most this much, so a flood cannot pin us. */
#define DISCARD_LIMIT (1024 * 1024)
/* How often reopen() looks for a port that is not back yet. */
#define REOPEN_POLL_MS 100

const char *transport_kind_to_string(enum transport_kind kind)
{
    switch (kind) {
    case TRANSPORT_SERIAL:
        return "serial";
    case TRANSPORT_TERMIOS:
        return "termios";
    case TRANSPORT_TCP:
        return "tcp";
    case TRANSPORT_RFC2217:
        return "rfc2217";
    }
    return "unknown";
}

struct transport *tp_alloc(enum transport_kind kind, const struct transport_ops *ops,
                           const char *uri)
{
    struct transport *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ops = ops;
    t->kind = kind;
    t->cancel_fd = -1;
    snprintf(t->uri, sizeof(t->uri), "%s", uri);
    return t;
}

int64_t tp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool tp_errno_is_gone(int e)
{
    /* EIO/ENXIO/ENODEV: unplugged USB or closed pty master; the rest: a dead TCP peer. */
    return e == EIO || e == ENXIO || e == ENODEV || e == EPIPE || e == ECONNRESET ||
           e == ESHUTDOWN || e == ENOTCONN || e == EBADF || e == ETIMEDOUT || e == EHOSTUNREACH ||
           e == ENETUNREACH || e == ENETDOWN || e == ECONNABORTED;
}

int tp_set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

/* Milliseconds left until deadline (-1: no deadline = wait forever). */
static int remaining_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - tp_now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

static int64_t deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : tp_now_ms() + timeout_ms;
}

int tp_fd_wait(struct tp_fd *io, int cancel_fd, short events, int timeout_ms)
{
    int64_t deadline = deadline_after(timeout_ms);
    struct pollfd p[2] = {
        {.fd = io->fd, .events = events},
        {.fd = cancel_fd, .events = POLLIN},
    };
    nfds_t n = cancel_fd >= 0 ? 2 : 1;

    for (;;) {
        int r = poll(p, n, remaining_ms(deadline));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -EIO;
        }
        /* Cancel wins over data: a cancelled job must stop even on a chatty port. */
        if (n == 2 && p[1].revents)
            return -ECANCELED;
        if (r == 0)
            return 0;
        if (p[0].revents & events)
            return p[0].revents & 0x7fff;
        if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            io->gone = true;
            return -ENODEV;
        }
    }
}

int tp_fd_read(struct tp_fd *io, int cancel_fd, uint8_t *buf, size_t cap, int timeout_ms)
{
    if (io->gone || io->fd < 0)
        return -ENODEV;
    if (cap == 0)
        return 0;
    if (cap > INT_MAX)
        cap = INT_MAX;

    int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        int rc = tp_fd_wait(io, cancel_fd, POLLIN, remaining_ms(deadline));
        if (rc <= 0)
            return rc;
        ssize_t n = read(io->fd, buf, cap);
        if (n > 0)
            return (int)n;
        if (n == 0) {
            /* POLLIN then EOF: hung-up tty, closed pipe or TCP peer. */
            io->gone = true;
            return -ENODEV;
        }
        if (errno == EAGAIN || errno == EINTR) {
            if (remaining_ms(deadline) == 0)
                return 0;
            continue;
        }
        if (tp_errno_is_gone(errno)) {
            io->gone = true;
            return -ENODEV;
        }
        return -EIO;
    }
}

int tp_fd_write(struct tp_fd *io, int cancel_fd, const uint8_t *buf, size_t len, int timeout_ms)
{
    if (io->gone || io->fd < 0)
        return -ENODEV;
    if (len > INT_MAX)
        return -EINVAL;

    int64_t deadline = deadline_after(timeout_ms);
    size_t done = 0;
    while (done < len) {
        int rc = tp_fd_wait(io, cancel_fd, POLLOUT, remaining_ms(deadline));
        if (rc < 0)
            return rc;
        if (rc == 0)
            return -ETIMEDOUT;
        ssize_t n;
        if (io->is_socket)
            n = send(io->fd, buf + done, len - done, MSG_NOSIGNAL);
        else
            n = write(io->fd, buf + done, len - done);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n < 0 && tp_errno_is_gone(errno)) {
            io->gone = true;
            return -ENODEV;
        }
        if (n < 0)
            return -EIO;
    }
    return (int)len;
}

int tp_fd_discard(struct tp_fd *io)
{
    uint8_t scratch[512];
    size_t total = 0;

    if (io->gone || io->fd < 0)
        return -ENODEV;
    while (total < DISCARD_LIMIT) {
        ssize_t n = read(io->fd, scratch, sizeof(scratch));
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n == 0) {
            io->gone = true;
            return -ENODEV;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return 0;
        if (tp_errno_is_gone(errno)) {
            io->gone = true;
            return -ENODEV;
        }
        return -EIO;
    }
    return 0;
}

int tp_sock_drain(struct transport *t)
{
    return ((struct tp_fd *)t->priv)->gone ? -ENODEV : 0;
}

int tp_sock_no_reopen(struct transport *t, int timeout_ms)
{
    (void)t;
    (void)timeout_ms;
    return -ENOTSUP;
}

void tp_sock_close(struct transport *t)
{
    struct tp_fd *io = t->priv;
    if (io->fd >= 0)
        close(io->fd);
    free(t->priv);
    free(t);
}

static int lines_errno(struct tp_fd *io, int e)
{
    if (e == ENOTTY || e == EINVAL || e == ENOTSUP || e == ENOSYS)
        return -ENOTSUP;
    if (tp_errno_is_gone(e)) {
        io->gone = true;
        return -ENODEV;
    }
    return -EIO;
}

int tp_fd_set_lines(struct tp_fd *io, int dtr, int rts)
{
    if (io->gone || io->fd < 0)
        return -ENODEV;
    if (dtr < 0 && rts < 0)
        return 0;

    if (dtr >= 0 && rts >= 0) {
        /* Both lines in one TIOCMSET: the "tight" reset needs them to move together. */
        int bits;
        if (ioctl(io->fd, TIOCMGET, &bits) < 0)
            return lines_errno(io, errno);
        bits = dtr ? (bits | TIOCM_DTR) : (bits & ~TIOCM_DTR);
        bits = rts ? (bits | TIOCM_RTS) : (bits & ~TIOCM_RTS);
        if (ioctl(io->fd, TIOCMSET, &bits) < 0)
            return lines_errno(io, errno);
        return 0;
    }

    int bit = dtr >= 0 ? TIOCM_DTR : TIOCM_RTS;
    int on = dtr >= 0 ? dtr : rts;
    if (ioctl(io->fd, on ? TIOCMBIS : TIOCMBIC, &bit) < 0)
        return lines_errno(io, errno);
    return 0;
}

bool tp_fd_has_lines(int fd)
{
    int bits;
    return ioctl(fd, TIOCMGET, &bits) == 0;
}

int tp_sleep_cancellable(int cancel_fd, int ms)
{
    if (cancel_fd < 0) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
        return 0;
    }
    int64_t deadline = deadline_after(ms);
    struct pollfd p = {.fd = cancel_fd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, remaining_ms(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0)
            return -ECANCELED;
        return 0;
    }
}

int tp_reopen_retry(struct transport *t, int timeout_ms, int (*try_once)(struct transport *t))
{
    int64_t deadline = tp_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        if (try_once(t) == 0)
            return 0;
        int64_t left = deadline - tp_now_ms();
        if (left <= 0)
            return -ENODEV;
        int rc =
            tp_sleep_cancellable(t->cancel_fd, left < REOPEN_POLL_MS ? (int)left : REOPEN_POLL_MS);
        if (rc < 0)
            return rc;
    }
}

int tp_copy_path(char *dst, size_t cap, const char *path)
{
    if (strlen(path) >= cap)
        return -ENAMETOOLONG;
    snprintf(dst, cap, "%s", path);
    return 0;
}

int tp_lock_exclusive(int fd)
{
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EBUSY : 0;
    }
}

int tp_open_error(struct esp_error *err, int e, const char *port)
{
    switch (e) {
    case ENOENT:
        return esp_error_set(err, -e, ESP_STAGE_OPEN,
                             "is the board plugged in? check the USB cable and the port name",
                             "port %s does not exist", port);
    case ENODEV:
    case ENXIO:
        return esp_error_set(err, -e, ESP_STAGE_OPEN,
                             "is the board plugged in? the USB adapter may have been unplugged",
                             "port %s has no device behind it", port);
    case EACCES:
    case EPERM:
        return esp_error_set(
            err, -e, ESP_STAGE_OPEN,
            "add the user to the dialout group or install the station's udev rules",
            "permission denied opening %s", port);
    case EBUSY:
        return esp_error_set(err, -e, ESP_STAGE_OPEN,
                             "another espstation/espstationd or a serial monitor has it open; "
                             "close it first",
                             "port %s is in use by another program", port);
    case EIO:
        return esp_error_set(err, -e, ESP_STAGE_OPEN, "unplug and replug the USB adapter",
                             "I/O error opening %s", port);
    case ENOTTY:
        return esp_error_set(err, -e, ESP_STAGE_OPEN, "check the port name",
                             "%s is not a serial port", port);
    case ENOMEM:
        return esp_error_set(err, -e, ESP_STAGE_OPEN, NULL, "out of memory opening %s", port);
    default:
        return esp_error_set(err, -e, ESP_STAGE_OPEN, "check the port name and the adapter",
                             "cannot open %s: %s", port, strerror(e));
    }
}

/* True when path resolves to a Unix98 pty slave (libserialport cannot drive those). */
static bool is_pty_slave(const char *path)
{
    char real[PATH_MAX];
    if (realpath(path, real)) {
        if (strncmp(real, "/dev/pts/", 9) == 0 && real[9] != '\0' &&
            strspn(real + 9, "0123456789") == strlen(real + 9))
            return true;
    }
    struct stat st;
    if (stat(path, &st) == 0 && S_ISCHR(st.st_mode)) {
        unsigned maj = major(st.st_rdev);
        return maj >= PTY_SLAVE_MAJOR_FIRST && maj <= PTY_SLAVE_MAJOR_LAST;
    }
    return false;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int open_fd_uri(const char *uri, const char *num, struct transport **out,
                       struct esp_error *err)
{
    char *end = NULL;
    errno = 0;
    long v = (*num >= '0' && *num <= '9') ? strtol(num, &end, 10) : -1;
    if (v < 0 || errno != 0 || !end || *end != '\0' || v > INT_MAX)
        return esp_error_set(err, -EINVAL, ESP_STAGE_OPEN,
                             "write fd:N with N a decimal file descriptor number",
                             "\"%s\" is not a valid fd: URI", uri);
    int fd = (int)v;
    if (fcntl(fd, F_GETFD) < 0)
        return esp_error_set(err, -EBADF, ESP_STAGE_OPEN,
                             "the descriptor must be open and inherited by this process",
                             "file descriptor %d is not open", fd);
    return tp_termios_open_fd(uri, fd, out, err);
}

int transport_uri_check(const char *uri, struct esp_error *err)
{
    static const char advice[] =
        "use a device path, pty:/path, fd:N, tcp://host:port or rfc2217://host:port";
    if (!uri || !*uri)
        return esp_error_set(err, -EINVAL, ESP_STAGE_OPEN, advice, "no port given");
    bool rfc2217 = has_prefix(uri, "rfc2217://");
    const char *hp = has_prefix(uri, "tcp://")      ? uri + 6
                     : has_prefix(uri, "socket://") ? uri + 9
                     : rfc2217                      ? uri + 10
                                                    : NULL;
    if (hp) {
        if (!tp_tcp_address_ok(hp))
            return esp_error_set(err, -EINVAL, ESP_STAGE_OPEN,
                                 rfc2217 ? "write rfc2217://host:port, e.g. "
                                           "rfc2217://192.168.1.20:4000"
                                         : "write tcp://host:port, e.g. tcp://192.168.1.20:4000 "
                                           "or tcp://[fe80::1]:4000",
                                 "\"%s\" is not a valid TCP address (host:port)", uri);
        return 0;
    }
    if (has_prefix(uri, "fd:")) {
        const char *num = uri + 3;
        if (!*num || strspn(num, "0123456789") != strlen(num) || strlen(num) > 9)
            return esp_error_set(err, -EINVAL, ESP_STAGE_OPEN,
                                 "write fd:N with N a decimal file descriptor number",
                                 "\"%s\" is not a valid fd: URI", uri);
        return 0;
    }
    const char *path = has_prefix(uri, "pty:")      ? uri + 4
                       : has_prefix(uri, "serial:") ? uri + 7
                                                    : uri;
    if (path == uri && strstr(uri, "://"))
        return esp_error_set(err, -EINVAL, ESP_STAGE_OPEN, advice, "unsupported port URI \"%s\"",
                             uri);
    if (*path == '\0')
        return esp_error_set(err, -EINVAL, ESP_STAGE_OPEN, advice, "port URI \"%s\" names no path",
                             uri);
    return 0;
}

static int open_backend(const char *uri, struct transport **out, struct esp_error *err)
{
    int rc = transport_uri_check(uri, err);
    if (rc < 0)
        return rc;
    if (has_prefix(uri, "tcp://"))
        return tp_tcp_open(uri, uri + 6, out, err);
    if (has_prefix(uri, "socket://")) /* esptool's spelling of the same thing */
        return tp_tcp_open(uri, uri + 9, out, err);
    if (has_prefix(uri, "rfc2217://"))
        return tp_rfc2217_open(uri, uri + 10, out, err);
    if (has_prefix(uri, "fd:"))
        return open_fd_uri(uri, uri + 3, out, err);

    const char *path = uri;
    bool force_pty = false, force_serial = false;
    if (has_prefix(uri, "pty:")) {
        path = uri + 4;
        force_pty = true;
    } else if (has_prefix(uri, "serial:")) {
        path = uri + 7;
        force_serial = true;
    }

    if (force_pty || (!force_serial && is_pty_slave(path)))
        return tp_termios_open_path(uri, path, NULL, out, err);
    return tp_serial_open(uri, path, out, err);
}

int transport_open(const char *uri, uint32_t baud, struct transport **out, struct esp_error *err)
{
    if (!out)
        return esp_error_set(err, -EINVAL, ESP_STAGE_OPEN, NULL, "transport_open: no out");
    *out = NULL;
    if (!uri || *uri == '\0')
        return esp_error_set(err, -EINVAL, ESP_STAGE_OPEN,
                             "use a device path, pty:/path, fd:N, tcp:// or rfc2217://host:port",
                             "no port given");
    if (strlen(uri) >= sizeof(((struct transport *)NULL)->uri))
        return esp_error_set(err, -ENAMETOOLONG, ESP_STAGE_OPEN, "use a shorter path or a symlink",
                             "port name too long (%zu characters)", strlen(uri));

    struct transport *t = NULL;
    int rc = open_backend(uri, &t, err);
    if (rc < 0)
        return rc;

    if (baud != 0) {
        if (t->caps & TRANSPORT_CAP_BAUD) {
            /* After open, never before: the Linux CH341 driver needs that order. */
            rc = transport_set_baud(t, baud);
            if (rc < 0) {
                transport_close(t);
                if (rc == -ENODEV)
                    return tp_open_error(err, ENODEV, uri);
                return esp_error_set(err, rc, ESP_STAGE_OPEN,
                                     "the adapter may not support this rate; try 115200",
                                     "cannot set %u baud on %s", baud, uri);
            }
        } else {
            t->baud = baud; /* nominal: whatever the far end (serial server) is set to */
        }
    }
    *out = t;
    return 0;
}

int transport_write(struct transport *t, const uint8_t *buf, size_t len, int timeout_ms)
{
    if (!t || (!buf && len))
        return -EINVAL;
    int rc = t->ops->write(t, buf, len, timeout_ms);
    if (rc > 0)
        t->bytes_written += (uint64_t)rc;
    return rc;
}

int transport_read(struct transport *t, uint8_t *buf, size_t cap, int timeout_ms)
{
    if (!t || (!buf && cap))
        return -EINVAL;
    int rc = t->ops->read(t, buf, cap, timeout_ms);
    if (rc > 0)
        t->bytes_read += (uint64_t)rc;
    return rc;
}

int transport_set_baud(struct transport *t, uint32_t baud)
{
    if (!t || baud == 0)
        return -EINVAL;
    int rc = t->ops->set_baud(t, baud);
    if (rc == 0)
        t->baud = baud;
    return rc;
}

int transport_set_lines(struct transport *t, int dtr, int rts)
{
    if (!t)
        return -EINVAL;
    return t->ops->set_lines(t, dtr, rts);
}

int transport_flush_input(struct transport *t)
{
    if (!t)
        return -EINVAL;
    return t->ops->flush_input(t);
}

int transport_drain(struct transport *t)
{
    if (!t)
        return -EINVAL;
    return t->ops->drain(t);
}

int transport_reopen(struct transport *t, int timeout_ms)
{
    if (!t)
        return -EINVAL;
    return t->ops->reopen(t, timeout_ms);
}

int transport_reopen_at(struct transport *t, const char *path, int timeout_ms)
{
    if (!t || !path || !*path)
        return -EINVAL;
    int rc = -ENOTSUP;
    if (t->kind == TRANSPORT_SERIAL)
        rc = tp_serial_set_path(t, path);
    else if (t->kind == TRANSPORT_TERMIOS)
        rc = tp_termios_set_path(t, path);
    if (rc < 0)
        return rc;
    snprintf(t->uri, sizeof(t->uri), "%s", path);
    return t->ops->reopen(t, timeout_ms);
}

void transport_close(struct transport *t)
{
    if (t)
        t->ops->close(t);
}
