/*
 * transport_priv: what the transport backends share (not part of the public API).
 *
 * Every backend drives one file descriptor; struct tp_fd is that descriptor plus
 * the sticky "device gone" flag. Once gone is set, every I/O call answers
 * -ENODEV until a successful reopen() clears it. The I/O loops here poll the
 * port fd together with t->cancel_fd, so cancellation works the same for a USB
 * adapter, a pty and a TCP socket.
 *
 * This header must not include <termios.h>: transport_termios.c uses the
 * kernel's <asm/termbits.h> (struct termios2), which conflicts with it.
 */
#ifndef TRANSPORT_PRIV_H
#define TRANSPORT_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

struct tp_fd {
    int fd;         /* -1 while closed (between a failed reopen and close) */
    bool gone;      /* device vanished: -ENODEV from now on */
    bool is_socket; /* use send(MSG_NOSIGNAL) so a closed peer cannot raise SIGPIPE */
};

/* Allocates a transport with cancel_fd = -1 and the URI copied. NULL on ENOMEM. */
struct transport *tp_alloc(enum transport_kind kind, const struct transport_ops *ops,
                           const char *uri);

/* Milliseconds on the monotonic clock. */
int64_t tp_now_ms(void);

/* True for errno values that mean "the device or peer is gone". */
bool tp_errno_is_gone(int e);

/* Sets O_NONBLOCK (and FD_CLOEXEC) on fd. Returns 0 or -errno. */
int tp_set_nonblock(int fd);

/*
 * Waits for `events` on io->fd, also watching cancel_fd (< 0: none).
 * timeout_ms < 0 waits forever. Returns the revents (> 0), 0 on timeout,
 * -ECANCELED, or -ENODEV (POLLHUP/POLLERR/POLLNVAL without the wanted event;
 * sets io->gone).
 */
int tp_fd_wait(struct tp_fd *io, int cancel_fd, short events, int timeout_ms);

/* The read/write halves of struct transport_ops for fd-based backends. */
int tp_fd_read(struct tp_fd *io, int cancel_fd, uint8_t *buf, size_t cap, int timeout_ms);
int tp_fd_write(struct tp_fd *io, int cancel_fd, const uint8_t *buf, size_t len, int timeout_ms);

/* Reads and throws away whatever is buffered now (for fds without tcflush). */
int tp_fd_discard(struct tp_fd *io);

/* Ops of the socket backends (tcp://, rfc2217://), whose t->priv begins with its struct
 * tp_fd: drain (the kernel owns the bytes once send() returned; nothing to wait for, and
 * RFC 2217 has no "drained" answer), reopen (-ENOTSUP: a socket is not re-enumerated),
 * close (closes the fd, frees priv and t). */
int tp_sock_drain(struct transport *t);
int tp_sock_no_reopen(struct transport *t, int timeout_ms);
void tp_sock_close(struct transport *t);

/*
 * DTR/RTS through TIOCM ioctls. Both >= 0: one TIOCMGET + TIOCMSET; one >= 0:
 * TIOCMBIS/TIOCMBIC for that line only; both -1: nothing. Returns 0, -ENOTSUP
 * (ENOTTY/EINVAL: no modem lines), -ENODEV (device gone), -EIO.
 */
int tp_fd_set_lines(struct tp_fd *io, int dtr, int rts);

/* True when TIOCMGET works on fd (the port has modem lines). */
bool tp_fd_has_lines(int fd);

/*
 * Exclusive access between processes: flock(LOCK_EX | LOCK_NB) on the open tty.
 * Unlike TIOCEXCL it also holds against root and covers ptys; the lock goes
 * away with the descriptor (close, reopen, process death). Returns 0 (also when
 * the kernel cannot lock this file: best effort), or -EBUSY when another open
 * file description holds the lock.
 */
int tp_lock_exclusive(int fd);

/* Sleeps ms, returning early with -ECANCELED if cancel_fd becomes readable. */
int tp_sleep_cancellable(int cancel_fd, int ms);

/*
 * The retry loop of a backend's reopen(): calls try_once(t) every 100 ms
 * (sleeping cancellably) until it returns 0 (port back; anything else: not
 * yet) or timeout_ms has passed. try_once leaves io.gone set when it fails.
 * Returns 0, -ENODEV when the time is up, or -ECANCELED.
 */
int tp_reopen_retry(struct transport *t, int timeout_ms, int (*try_once)(struct transport *t));

/* Copies a port path into a backend's buffer: 0, or -ENAMETOOLONG. */
int tp_copy_path(char *dst, size_t cap, const char *path);

/*
 * Fills err (stage OPEN) for a failed open of `port` with errno e, with
 * technician advice (ENOENT: not plugged in, EACCES: dialout group / udev rules,
 * EBUSY: another program). Returns -e.
 */
int tp_open_error(struct esp_error *err, int e, const char *port);

/* Backend constructors. They leave the rate alone: transport_open sets it afterwards. */
int tp_serial_set_path(struct transport *t, const char *path);
int tp_termios_set_path(struct transport *t, const char *path);
int tp_serial_open(const char *uri, const char *path, struct transport **out,
                   struct esp_error *err);
int tp_termios_open_path(const char *uri, const char *path, const char *note,
                         struct transport **out, struct esp_error *err);
int tp_termios_open_fd(const char *uri, int fd, struct transport **out, struct esp_error *err);
/* hostport is "host:port" or "[v6]:port" with a port 1..65535 (transport_uri_check). */
bool tp_tcp_address_ok(const char *hostport);
int tp_tcp_open(const char *uri, const char *hostport, struct transport **out,
                struct esp_error *err);
/* Resolves and connects hostport (5 s budget), with TCP_NODELAY and keepalive on.
 * Fills host/port. Returns the socket (non-blocking, close-on-exec) or -errno
 * with err filled; scheme ("tcp", "rfc2217") is named in the advice. */
int tp_tcp_connect(const char *uri, const char *hostport, const char *scheme, char *host,
                   size_t hostcap, char *port, size_t portcap, struct esp_error *err);
/* rfc2217://host:port: a Telnet COM-PORT-OPTION serial server (transport_rfc2217.c). */
int tp_rfc2217_open(const char *uri, const char *hostport, struct transport **out,
                    struct esp_error *err);

#endif
