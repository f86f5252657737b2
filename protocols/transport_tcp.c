/*
 * transport_tcp: a board behind a raw TCP serial server (ser2net "raw" mode,
 * ESP-Link, esptool's socket://). Bytes pass through unchanged; there is no
 * RFC 2217 here (that is rfc2217://, transport_rfc2217.c, which shares the
 * connect code below), so no baud control and no modem lines: set_baud and set_lines
 * answer -ENOTSUP and the caps say so (the engine then skips rate changes and
 * uses no-reset). t->baud holds the nominal rate given to transport_open.
 *
 * URI: tcp://host:port or socket://host:port; host is a name, an IPv4 address
 * or [IPv6]. Connect times out after 5 s across all resolved addresses.
 * TCP_NODELAY is on (SLIP frames are small and latency-bound); keepalive
 * probes notice a dead server within about half a minute. End of stream or a
 * reset connection means the board is gone: -ENODEV from then on.
 */
#include "transport_priv.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 5000
#define KEEPALIVE_IDLE_S 10
#define KEEPALIVE_INTERVAL_S 5
#define KEEPALIVE_COUNT 3

struct tcp_priv {
    struct tp_fd io; /* first: tp_sock_close/tp_sock_drain read it */
};

static struct tcp_priv *priv_of(struct transport *t)
{
    return t->priv;
}

static int tcp_write(struct transport *t, const uint8_t *buf, size_t len, int timeout_ms)
{
    return tp_fd_write(&priv_of(t)->io, t->cancel_fd, buf, len, timeout_ms);
}

static int tcp_read(struct transport *t, uint8_t *buf, size_t cap, int timeout_ms)
{
    return tp_fd_read(&priv_of(t)->io, t->cancel_fd, buf, cap, timeout_ms);
}

static int tcp_set_baud(struct transport *t, uint32_t baud)
{
    (void)baud;
    return priv_of(t)->io.gone ? -ENODEV : -ENOTSUP;
}

static int tcp_set_lines(struct transport *t, int dtr, int rts)
{
    (void)dtr;
    (void)rts;
    return priv_of(t)->io.gone ? -ENODEV : -ENOTSUP;
}

static int tcp_flush_input(struct transport *t)
{
    return tp_fd_discard(&priv_of(t)->io);
}

static const struct transport_ops tcp_ops = {
    .write = tcp_write,
    .read = tcp_read,
    .set_baud = tcp_set_baud,
    .set_lines = tcp_set_lines,
    .flush_input = tcp_flush_input,
    .drain = tp_sock_drain,
    .reopen = tp_sock_no_reopen,
    .close = tp_sock_close,
};

/* Splits "host:port" / "[v6]:port". Returns false when either part is missing or bad. */
static bool split_hostport(const char *hp, char *host, size_t hostcap, char *port, size_t portcap)
{
    const char *colon;
    const char *h = hp;
    size_t hlen;

    if (*hp == '[') {
        const char *close = strchr(hp, ']');
        if (!close || close[1] != ':')
            return false;
        h = hp + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(hp, ':');
        if (!colon)
            return false;
        hlen = (size_t)(colon - hp);
    }
    const char *pstr = colon + 1;
    size_t plen = strlen(pstr);
    if (hlen == 0 || hlen >= hostcap || plen == 0 || plen > 5 || plen >= portcap ||
        strspn(pstr, "0123456789") != plen)
        return false;
    long pn = strtol(pstr, NULL, 10);
    if (pn < 1 || pn > 65535)
        return false;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, pstr, plen + 1);
    return true;
}

/* Non-blocking connect bounded by deadline. Returns the socket or -errno. */
static int connect_one(const struct addrinfo *ai, int64_t deadline)
{
    int s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (s < 0)
        return -errno;
    if (connect(s, ai->ai_addr, ai->ai_addrlen) == 0)
        return s;
    if (errno != EINPROGRESS) {
        int e = errno;
        close(s);
        return -e;
    }
    for (;;) {
        int64_t left = deadline - tp_now_ms();
        if (left <= 0) {
            close(s);
            return -ETIMEDOUT;
        }
        struct pollfd pf = {.fd = s, .events = POLLOUT};
        int r = poll(&pf, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(s);
            return r == 0 ? -ETIMEDOUT : -EIO;
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
            soerr = errno;
        if (soerr != 0) {
            close(s);
            return -soerr;
        }
        return s;
    }
}

static void tune_socket(int s)
{
    int one = 1;
    (void)setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    int idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S, cnt = KEEPALIVE_COUNT;
    (void)setsockopt(s, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(s, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(s, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

bool tp_tcp_address_ok(const char *hostport)
{
    char host[192], port[8];
    return split_hostport(hostport, host, sizeof(host), port, sizeof(port));
}

int tp_tcp_connect(const char *uri, const char *hostport, const char *scheme, char *host,
                   size_t hostcap, char *port, size_t portcap, struct esp_error *err)
{
    if (!split_hostport(hostport, host, hostcap, port, portcap)) {
        char advice[160];
        snprintf(advice, sizeof(advice),
                 "write %s://host:port, e.g. %s://192.168.1.20:4000 or %s://[fe80::1]:4000", scheme,
                 scheme, scheme);
        return esp_error_set(err, -EINVAL, ESP_STAGE_OPEN, advice,
                             "\"%s\" is not a valid TCP address (host:port)", uri);
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0)
        return esp_error_set(err, -EHOSTUNREACH, ESP_STAGE_OPEN,
                             "check the host name of the serial server and the station's DNS",
                             "cannot resolve serial server host \"%s\": %s", host,
                             g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));

    int64_t deadline = tp_now_ms() + CONNECT_TIMEOUT_MS;
    int s = -ECONNREFUSED;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        s = connect_one(ai, deadline);
        if (s >= 0 || s == -ETIMEDOUT)
            break;
    }
    freeaddrinfo(res);
    if (s < 0)
        return esp_error_set(err, s, ESP_STAGE_OPEN,
                             "check that the serial server (ser2net, ESP-Link) is running, "
                             "reachable from the station, and listening on that port",
                             "cannot reach the serial server at %s:%s (%s)", host, port,
                             strerror(-s));
    tune_socket(s);
    return s;
}

int tp_tcp_open(const char *uri, const char *hostport, struct transport **out,
                struct esp_error *err)
{
    char host[192], port[8];
    int s = tp_tcp_connect(uri, hostport, "tcp", host, sizeof(host), port, sizeof(port), err);
    if (s < 0)
        return s;

    struct transport *t = tp_alloc(TRANSPORT_TCP, &tcp_ops, uri);
    struct tcp_priv *p = calloc(1, sizeof(*p));
    if (!t || !p) {
        free(t);
        free(p);
        close(s);
        return esp_error_set(err, -ENOMEM, ESP_STAGE_OPEN, NULL, "out of memory");
    }
    t->priv = p;
    p->io.fd = s;
    p->io.is_socket = true;
    snprintf(t->description, sizeof(t->description), "TCP serial server %.96s:%s", host, port);
    *out = t;
    return 0;
}
