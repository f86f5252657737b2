/*
 * ota_net: small poll-based socket helpers for the OTA clients (IPv4,
 * non-blocking sockets, absolute monotonic deadlines, a cancel fd that is
 * polled with every wait). Internal to the protocol library.
 *
 * Conventions: deadlines are ota_now_ms() values; cancel_fd < 0 means none;
 * a readable cancel_fd ends any wait with -ECANCELED. Sockets are created
 * with SOCK_NONBLOCK | SOCK_CLOEXEC; sends use MSG_NOSIGNAL.
 */
#ifndef OTA_NET_H
#define OTA_NET_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic milliseconds. */
int64_t ota_now_ms(void);

/* Milliseconds from now until deadline, clamped to [0, INT32_MAX]. */
int ota_ms_until(int64_t deadline);

/* Parses a dotted IPv4 address and a port into *out. -EINVAL if not an IPv4 literal. */
int ota_net_addr(const char *ip, uint16_t port, struct sockaddr_in *out);

/* The local address the kernel would use to reach peer (UDP connect + getsockname). */
int ota_net_local_addr_for(const struct sockaddr_in *peer, struct in_addr *out);

/* Waits until fd has events (POLLIN/POLLOUT); 0, -ETIMEDOUT or -ECANCELED. */
int ota_net_wait(int fd, short events, int64_t deadline, int cancel_fd);

/* Non-blocking TCP connect with deadline; *fd_out on success. -ECONNREFUSED, -ETIMEDOUT, ... */
int ota_net_connect(const struct sockaddr_in *peer, int64_t deadline, int cancel_fd, int *fd_out);

/* Sends all of buf before deadline. -EPIPE/-ECONNRESET when the peer went away. */
int ota_net_send_all(int fd, const void *buf, size_t len, int64_t deadline, int cancel_fd);

/* Receives up to cap bytes (waits for at least one). Returns n > 0, 0 at end of stream, or -errno.
 */
int ota_net_recv_some(int fd, void *buf, size_t cap, int64_t deadline, int cancel_fd);

/*
 * Reads one line terminated by '\n' (a preceding '\r' is dropped) into buf
 * (NUL-terminated, at most cap-1 characters; longer lines give -EMSGSIZE).
 * Reads byte by byte so nothing after the line is consumed. Returns the
 * length, or -errno (0-length line is valid; end of stream before '\n' gives
 * -ECONNRESET unless partial text was read, then that text is returned).
 */
int ota_net_recv_line(int fd, char *buf, size_t cap, int64_t deadline, int cancel_fd);

#endif
