/*
 * esp_netdev: sockets and the reads and writes every protocol uses (listening,
 * line/head/exact reads, header lookup); on the check-in TLS session's fd they go
 * through TLS.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "netdev.h"

int nd_listen_on(struct netdev *d, int type, int port)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, d->bind_ip, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        (type == SOCK_STREAM && listen(fd, 4) != 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

int nd_bound_port(int fd)
{
    struct sockaddr_in a;
    socklen_t l = sizeof(a);
    if (fd < 0 || getsockname(fd, (struct sockaddr *)&a, &l) != 0)
        return -1;
    return ntohs(a.sin_port);
}

int nd_wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int n;
    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR && !nd_stop_flag);
    return n > 0 ? p.revents : 0;
}

/* The HTTPS check-in's TLS session (checkin_tls_open): one at a time, the model being
 * single-threaded and every session blocking. nd_send_all, nd_recv_exact and nd_recv_head read
 * and write through it for its socket, so the check-in and pull code stays the same. */
SSL *nd_tls_ssl;
int nd_tls_fd = -1;

/* Data to read on fd within timeout_ms (TLS may hold decrypted bytes already). */
static bool rd_ready(int fd, int timeout_ms)
{
    if (fd == nd_tls_fd && SSL_pending(nd_tls_ssl) > 0)
        return true;
    return nd_wait_fd(fd, POLLIN, timeout_ms) != 0;
}

static ssize_t rd(int fd, void *buf, size_t len)
{
    if (fd != nd_tls_fd)
        return recv(fd, buf, len, 0);
    int r = SSL_read(nd_tls_ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    return r > 0 ? r : SSL_get_error(nd_tls_ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

int nd_send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = fd == nd_tls_fd ? SSL_write(nd_tls_ssl, p, len > INT_MAX ? INT_MAX : (int)len)
                                    : send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int nd_send_str(int fd, const char *s)
{
    return nd_send_all(fd, s, strlen(s));
}

/* Reads exactly len bytes, each wait at most timeout_ms. */
int nd_recv_exact(int fd, uint8_t *buf, size_t len, int timeout_ms)
{
    size_t got = 0;
    while (got < len) {
        if (!rd_ready(fd, timeout_ms))
            return -1;
        ssize_t n = rd(fd, buf + got, len - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

/* Reads a line (CRLF or LF) into buf; -1 on timeout/EOF/overflow. */
int nd_recv_line(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    for (;;) {
        if (!nd_wait_fd(fd, POLLIN, timeout_ms))
            return -1;
        char c;
        if (recv(fd, &c, 1, 0) != 1)
            return -1;
        if (c == '\n')
            break;
        if (n + 1 >= cap)
            return -1;
        buf[n++] = c;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (int)n;
}

/* Reads an HTTP head (until CRLFCRLF) into buf; returns its length or -1. */
int nd_recv_head(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t n = 0;
    while (n + 1 < cap) {
        if (!rd_ready(fd, timeout_ms))
            return -1;
        ssize_t r = rd(fd, buf + n, 1);
        if (r != 1)
            return -1;
        n++;
        buf[n] = '\0';
        if (n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0)
            return (int)n;
    }
    return -1;
}

const char *nd_header_value(const char *head, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *s = l + 2;
        if (strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
            s += nl + 1;
            while (*s == ' ')
                s++;
            size_t n = strcspn(s, "\r");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, s, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}
