/*
 * http_head: the REST API's listener on plain HTTP. Each connection is accepted here and
 * held until its first request head (request line and headers) is complete; only then is
 * it handed to libmicrohttpd (MHD_add_connection).
 *
 * Why: a head that does not fit MHD's per-connection memory (32 KiB) is answered by MHD
 * itself, with an HTML page and no hook to replace it (libmicrohttpd 0.9.75): a request
 * target over ~32 KiB got "414 URI Too Long" in HTML, a big header "431" in HTML, and a
 * head just under the limit no answer at all. Here the head is looked at with MSG_PEEK
 * (the bytes stay in the socket for MHD) and one larger than HEAD_MAX, or with more than
 * HEAD_LINES lines, is answered with the API's JSON error (431 head_too_large) and closed.
 * HEAD_MAX leaves MHD room for what it keeps per header and for the answer's head.
 *
 * Invariants:
 *  - Loop thread only. A waiting connection is watched edge-triggered (MSG_PEEK leaves
 *    the bytes readable: level-triggered would spin), so each new segment is one event.
 *  - Waiting connections count against w->max_conns with MHD's (n_conns + n_heads); they
 *    are "waiting for a request", so the oldest one is what make_room closes first.
 *  - At the cap, or when accept() finds no descriptor (EMFILE, ENFILE), the listener is
 *    taken out of the loop and comes back when a connection ends or after REST_MS: never a
 *    busy loop on accept.
 *  - Only the first request of a connection is screened: a later request on a kept-alive
 *    connection is MHD's alone (docs/API.md "Answers that are not JSON").
 *  - With api.tls MHD listens itself (the head is encrypted): this file is not used.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "station.h"
#include "web_priv.h"

#define REST_MS 250         /* accept() found no descriptor: try again after this */
#define DRAIN_MS 2000       /* a refused connection: its rest is read and dropped this long */
#define DRAIN_MAX (1 << 20) /* ... or up to this many bytes */
#define REST_LOG_MS 60000   /* at most one "cannot accept" warning a minute */
#define ACCEPT_BURST 64     /* connections taken per listener event */

struct head_conn {
    int fd;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int64_t since; /* accepted; draining: refused */
    bool draining; /* answered 431: reading and dropping the rest until the client closes */
    size_t drained;
    struct head_conn *prev, *next;
};

static void unlink_head(struct web *w, struct head_conn *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        w->heads = h->next;
    if (h->next)
        h->next->prev = h->prev;
    else
        w->heads_tail = h->prev;
    w->n_heads--;
}

static void close_head(struct web *w, struct head_conn *h)
{
    loop_del_fd(w->loop, h->fd);
    unlink_head(w, h);
    close(h->fd);
    free(h);
    head_resume(w);
}

/* The whole head is in buf[0..n): its length (through the blank line), else 0. Its header
 * lines (after the request line) are counted into *lines either way (MHD takes a bare LF
 * as a line end too). Outside input: fuzz_http_head. */
size_t http_head_end(const char *buf, size_t n, size_t *lines)
{
    size_t ends = 0;
    *lines = 0;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\n')
            continue;
        *lines = ends++;
        if (i + 1 < n && buf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < n && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Answers 431 with the API's JSON error, then reads and drops what the client still
 * sends (closing with unread bytes would reset the connection, and the client could
 * lose the answer). */
static void refuse(struct web *w, struct head_conn *h, size_t n, size_t lines)
{
    char msg[200], body[320], out[640];
    if (!memchr(w->head_buf, '\n', n))
        snprintf(msg, sizeof(msg),
                 "the request line is longer than %d bytes (a request target may have %d)",
                 HEAD_MAX, HEAD_MAX_TARGET);
    else if (lines > HEAD_LINES)
        snprintf(msg, sizeof(msg), "the request head has more than %d lines", HEAD_LINES);
    else
        snprintf(msg, sizeof(msg),
                 "the request head (request line and headers) is larger than %d bytes", HEAD_MAX);
    int bl = snprintf(body, sizeof(body),
                      "{\"error\":{\"code\":\"head_too_large\",\"message\":\"%s\"}}", msg);
    int ol = snprintf(out, sizeof(out),
                      "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                      "Content-Type: application/json\r\nCache-Control: no-store\r\n"
                      "Connection: close\r\nContent-Length: %d\r\n\r\n%s",
                      bl, body);
    char sink[4096];
    ssize_t r;
    while ((r = recv(h->fd, sink, sizeof(sink), 0)) > 0 && h->drained < DRAIN_MAX)
        h->drained += (size_t)r;
    /* small: fits the socket's send buffer of a new connection */
    if (send(h->fd, out, (size_t)ol, MSG_NOSIGNAL) != ol || r == 0 || h->drained >= DRAIN_MAX) {
        close_head(w, h);
        return;
    }
    shutdown(h->fd, SHUT_WR);
    h->draining = true;
    h->since = loop_now_ms();
    api_metrics(w->api)->http_by_class[4]++;
    log_msg(LOG_LEVEL_DEBUG, "http: request head over the limit: 431 (%s)", msg);
}

/* The head is complete: the connection is MHD's from now on. */
static void hand_over(struct web *w, struct head_conn *h)
{
    loop_del_fd(w->loop, h->fd);
    unlink_head(w, h);
    int fd = h->fd;
    struct sockaddr_storage addr = h->addr;
    socklen_t len = h->addrlen;
    free(h);
    /* MHD closes fd itself when it cannot take it */
    if (MHD_add_connection(w->d, fd, (struct sockaddr *)&addr, len) != MHD_YES)
        log_msg(LOG_LEVEL_DEBUG, "http: libmicrohttpd did not take a connection: %s",
                strerror(errno));
    web_kick(w);
    head_resume(w);
}

static void on_head(void *ctx, int fd, uint32_t events)
{
    struct web *w = ctx;
    struct head_conn *h = w->heads;
    while (h && h->fd != fd)
        h = h->next;
    if (!h)
        return;
    if (h->draining) {
        char sink[4096];
        ssize_t r;
        while ((r = recv(fd, sink, sizeof(sink), 0)) > 0 && h->drained < DRAIN_MAX)
            h->drained += (size_t)r;
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR) || h->drained >= DRAIN_MAX)
            close_head(w, h);
        return;
    }
    ssize_t n = recv(fd, w->head_buf, HEAD_MAX + 1, MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close_head(w, h); /* gone before a request */
        return;
    }
    if (n < 0)
        return;
    size_t lines;
    size_t end = http_head_end(w->head_buf, (size_t)n, &lines);
    if (end && end <= HEAD_MAX && lines <= HEAD_LINES)
        hand_over(w, h);
    else if ((size_t)n > HEAD_MAX || lines > HEAD_LINES)
        refuse(w, h, (size_t)n, lines);
    else if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        hand_over(w, h); /* no more is coming: MHD answers what there is, as before */
    /* else: wait for the rest (the next segment is the next event) */
}

/* Closes waiting connections past api.idle_timeout_s and refused ones past DRAIN_MS. */
static void on_sweep(void *ctx)
{
    struct web *w = ctx;
    int64_t now = loop_now_ms();
    int64_t idle_ms = (int64_t)station_config(w->st)->api.idle_timeout_s * 1000;
    for (struct head_conn *h = w->heads, *next; h; h = next) {
        next = h->next;
        if (now - h->since >= (h->draining ? DRAIN_MS : idle_ms))
            close_head(w, h);
    }
    if (!w->heads)
        loop_timer_disarm(w->head_timer);
}

static void watch_listener(struct web *w, bool on);

static void on_rest(void *ctx)
{
    head_resume(ctx);
}

static void on_accept(void *ctx, int fd, uint32_t events)
{
    (void)events;
    struct web *w = ctx;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        if (w->n_conns + w->n_heads >= w->max_conns) {
            web_make_room(w);
            if (w->n_conns + w->n_heads >= w->max_conns) {
                watch_listener(w, false); /* back when a connection ends */
                return;
            }
        }
        struct head_conn *h = calloc(1, sizeof(*h));
        if (!h)
            return;
        h->addrlen = sizeof(h->addr);
        h->fd = accept4(fd, (struct sockaddr *)&h->addr, &h->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (h->fd < 0) {
            int e = errno;
            free(h);
            if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
                int64_t now = loop_now_ms();
                if (w->rest_log_ms == 0 || now - w->rest_log_ms >= REST_LOG_MS) {
                    w->rest_log_ms = now;
                    log_msg(LOG_LEVEL_WARN,
                            "REST API: cannot accept a connection (%s); resting %d ms (see the "
                            "'open files' line at start)",
                            strerror(e), REST_MS);
                }
                watch_listener(w, false);
                loop_timer_arm(w->rest_timer, REST_MS, 0);
            }
            return; /* EAGAIN: all taken; others (ECONNABORTED...): the next event */
        }
        h->since = loop_now_ms();
        if (loop_add_fd(w->loop, h->fd, EPOLLIN | EPOLLRDHUP | EPOLLET, on_head, w) < 0) {
            close(h->fd);
            free(h);
            return;
        }
        h->prev = w->heads_tail;
        if (w->heads_tail)
            w->heads_tail->next = h;
        else
            w->heads = h;
        w->heads_tail = h;
        w->n_heads++;
        if (!loop_timer_armed(w->head_timer))
            loop_timer_arm(w->head_timer, 1000, 1000);
        if (w->n_conns + w->n_heads >= w->max_conns)
            web_make_room(w); /* a place for the next newcomer, as MHD's own accept did */
    }
}

static void watch_listener(struct web *w, bool on)
{
    if (on == w->listen_watched || w->listen_fd < 0)
        return;
    if (on && loop_add_fd(w->loop, w->listen_fd, EPOLLIN, on_accept, w) < 0)
        return;
    if (!on)
        loop_del_fd(w->loop, w->listen_fd);
    w->listen_watched = on;
}

void head_resume(struct web *w)
{
    if (w->listen_fd < 0 || w->listen_watched || w->n_conns + w->n_heads >= w->max_conns)
        return;
    loop_timer_disarm(w->rest_timer); /* resting after EMFILE: a connection ended, one is free */
    watch_listener(w, true);
}

bool head_close_oldest(struct web *w, int64_t before)
{
    struct head_conn *h = w->heads;
    while (h && h->draining)
        h = h->next;
    if (!h || h->since > before)
        return false;
    close_head(w, h);
    return true;
}

int head_listen(struct web *w, uint16_t *port, char *err, size_t errlen)
{
    if (w->listen_fd >= 0)
        return 0;
    if (!w->head_buf && !(w->head_buf = malloc(HEAD_MAX + 1)))
        return -ENOMEM;
    if (!w->head_timer && !(w->head_timer = loop_timer_new(w->loop, on_sweep, w)))
        return -ENOMEM;
    if (!w->rest_timer && !(w->rest_timer = loop_timer_new(w->loop, on_rest, w)))
        return -ENOMEM;
    int fd = socket(w->v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s: %s", w->listen, strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (w->v6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)); /* as MHD's own */
    socklen_t alen = w->v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&w->addr, alen) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "cannot listen on %s: %s", w->listen, strerror(e));
        return -e;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *port = ntohs(w->v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                            : ((struct sockaddr_in *)&ss)->sin_port);
    w->listen_fd = fd;
    w->listen_watched = false;
    watch_listener(w, true);
    if (!w->listen_watched) {
        snprintf(err, errlen, "cannot watch the REST API's listening socket");
        head_stop(w);
        return -EIO;
    }
    return 0;
}

void head_stop(struct web *w)
{
    while (w->heads) {
        struct head_conn *h = w->heads;
        loop_del_fd(w->loop, h->fd);
        unlink_head(w, h);
        close(h->fd);
        free(h);
    }
    if (w->listen_fd >= 0) {
        watch_listener(w, false);
        close(w->listen_fd);
        w->listen_fd = -1;
    }
    loop_timer_free(w->head_timer);
    loop_timer_free(w->rest_timer);
    w->head_timer = w->rest_timer = NULL;
    free(w->head_buf);
    w->head_buf = NULL;
}
