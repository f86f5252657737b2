/*
 * ota_net: poll-based socket helpers used by the OTA clients.
 *
 * Owns: deadline arithmetic, connect/send/recv with a cancel fd. Never
 * blocks past a deadline; never raises SIGPIPE (MSG_NOSIGNAL).
 */
#include "ota_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int64_t ota_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ota_ms_until(int64_t deadline)
{
    int64_t d = deadline - ota_now_ms();
    if (d < 0)
        return 0;
    if (d > INT_MAX)
        return INT_MAX;
    return (int)d;
}

int ota_net_addr(const char *ip, uint16_t port, struct sockaddr_in *out)
{
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons(port);
    if (!ip || inet_pton(AF_INET, ip, &out->sin_addr) != 1)
        return -EINVAL;
    return 0;
}

int ota_net_local_addr_for(const struct sockaddr_in *peer, struct in_addr *out)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = 0;
    struct sockaddr_in local;
    socklen_t sl = sizeof(local);
    if (connect(fd, (const struct sockaddr *)peer, sizeof(*peer)) != 0 ||
        getsockname(fd, (struct sockaddr *)&local, &sl) != 0)
        rc = -errno;
    else
        *out = local.sin_addr;
    close(fd);
    return rc;
}

int ota_net_wait(int fd, short events, int64_t deadline, int cancel_fd)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
        int n = poll(p, cancel_fd >= 0 ? 2 : 1, ota_ms_until(deadline));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (cancel_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)))
            return -ECANCELED;
        if (n > 0 && p[0].revents)
            return 0;
        if (ota_ms_until(deadline) == 0)
            return -ETIMEDOUT;
    }
}

int ota_net_connect(const struct sockaddr_in *peer, int64_t deadline, int cancel_fd, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (connect(fd, (const struct sockaddr *)peer, sizeof(*peer)) != 0) {
        if (errno != EINPROGRESS) {
            rc = -errno;
            goto fail;
        }
        rc = ota_net_wait(fd, POLLOUT, deadline, cancel_fd);
        if (rc < 0)
            goto fail;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
            soerr = errno;
        if (soerr != 0) {
            rc = -soerr;
            goto fail;
        }
    }
    *fd_out = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

int ota_net_send_all(int fd, const void *buf, size_t len, int64_t deadline, int cancel_fd)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = ota_net_wait(fd, POLLOUT, deadline, cancel_fd);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int ota_net_recv_some(int fd, void *buf, size_t cap, int64_t deadline, int cancel_fd)
{
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n >= 0)
            return (int)n;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = ota_net_wait(fd, POLLIN, deadline, cancel_fd);
        if (rc < 0)
            return rc;
    }
}

int ota_net_recv_line(int fd, char *buf, size_t cap, int64_t deadline, int cancel_fd)
{
    size_t n = 0;
    for (;;) {
        char c;
        int rc = ota_net_recv_some(fd, &c, 1, deadline, cancel_fd);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            if (n == 0)
                return -ECONNRESET;
            break;
        }
        if (c == '\n')
            break;
        if (n + 1 >= cap)
            return -EMSGSIZE;
        buf[n++] = c;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (int)n;
}
