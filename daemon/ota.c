/*
 * ota.c: the device-facing HTTP update endpoint: its listener and connections (accept,
 * TLS, read, write, drain, close) and the module's lifecycle (see ota.h for what this
 * module owns; a request's check-in and pull handling is in ota_checkin.c, the image
 * cache and board targets in ota_fw.c).
 *
 * Invariants:
 *  - A connection reads one request head (<= OTA_HTTP_MAX_HEAD), is answered
 *    with exactly one response (head from ota_http_format_response, then
 *    exactly image->size bytes for a 200) and is closed: HTTP/1.0 semantics,
 *    which is what the ESP updaters ask for.
 *  - Nothing blocks: sockets are non-blocking, the loop waits for EPOLLIN and
 *    then EPOLLOUT; connections without I/O for ota.idle_timeout_s (30 s) are
 *    closed.
 *  - At most the fd budget's OTA cap of connections (daemon/fdbudget.h): at the
 *    cap a newcomer takes the place of the longest-silent connection still
 *    waiting for its request head, else it gets 503. When accept() finds no
 *    descriptor (EMFILE, ENFILE) the listener rests ACCEPT_PAUSE_MS instead of
 *    being polled again at once (the pending connection keeps it readable).
 *  - "Served" (the ota_http memory that prevents update loops) is recorded
 *    only after the whole body went out.
 *  - A pull (an image served) ends when the board closes the connection after
 *    the whole body was handed to the socket (our side is shut down first): the
 *    kernel takes a small image in one send(), so "handed over" says nothing of
 *    when the board had it. The job's duration runs from the first byte of the
 *    response to the board's close; a board that resets the connection or stays
 *    silent until the idle timeout has no known duration (seconds, kbps null).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "board_addr.h"
#include "catalog.h"
#include "log.h"
#include "loop.h"
#include "ota_http.h"
#include "ota_image.h"
#include "mdns.h"
#include "ota_priv.h"
#include "ota_tls.h"
#include "slot.h"
#include "station.h"

#define ACCEPT_PAUSE_MS 250
#define OTA_WARN_EVERY_MS 60000 /* at most one warning a minute per kind */

/* ---- the update endpoint -------------------------------------------------------------- */

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- TLS (ota.tls): the connection's I/O goes through ota_tls.c -------------------- */

/* Watches the connection for events only (TLS waits for the direction it needs). */
static int conn_want(struct ota_conn *c, uint32_t events)
{
    loop_del_fd(c->o->loop, c->fd);
    return loop_add_fd(c->o->loop, c->fd, events, ota_conn_io, c);
}

/* recv()/send() of the plain path, or their TLS counterparts: -1 with errno EAGAIN
 * means wait (the connection is then watched for what TLS needs). */
static ssize_t conn_recv(struct ota_conn *c, void *buf, size_t len)
{
    if (!c->tls)
        return recv(c->fd, buf, len, 0);
    uint32_t ev = EPOLLIN;
    ssize_t r = ota_tls_recv(c->tls, buf, len, &ev);
    if (r < 0 && errno == EAGAIN && conn_want(c, ev) < 0)
        errno = EIO;
    return r;
}

static ssize_t conn_send(struct ota_conn *c, const void *buf, size_t len)
{
    if (!c->tls)
        return send(c->fd, buf, len, MSG_NOSIGNAL);
    uint32_t ev = EPOLLOUT;
    ssize_t w = ota_tls_send(c->tls, buf, len, &ev);
    if (w < 0 && errno == EAGAIN && conn_want(c, ev) < 0)
        errno = EIO;
    return w;
}

static void conn_read(struct ota_conn *c);

/* The handshake's next step; a failed one is counted and logged (ota_tls_note_failure)
 * and the connection closed. Never blocks: a client that stalls mid-handshake holds
 * only its own connection, until the idle timeout or a newcomer at the cap. */
static void conn_handshake(struct ota_conn *c)
{
    uint32_t ev = EPOLLIN;
    char why[300];
    int r = ota_tls_handshake(c->tls, &ev, why, sizeof(why));
    if (r < 0) {
        ota_tls_note_failure(c->o->tls, c->ip, why);
        ota_conn_close(c);
        return;
    }
    c->last_io = loop_now_ms();
    if (r == 0) {
        if (conn_want(c, ev) < 0)
            ota_conn_close(c);
        return;
    }
    if (conn_want(c, EPOLLIN) < 0) {
        ota_conn_close(c);
        return;
    }
    conn_read(c); /* the request may have come with the handshake's last flight */
}

void ota_conn_close(struct ota_conn *c)
{
    struct ota *o = c->o;
    if (c->draining)
        ota_served_complete(c, -1,
                            o->stopping
                                ? "the station stopped before the board closed the connection"
                                : "the board did not close the connection before the idle timeout");
    for (struct ota_conn **pp = &o->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    o->n_conns--;
    loop_del_fd(o->loop, c->fd);
    ota_tls_conn_free(c->tls);
    close(c->fd);
    if (c->record_served && c->job_id == 0) {
        /* a plain GET from an address the station knows no board at: metrics only */
        o->counters.plain_pulls_failed[c->fs ? 1 : 0]++;
        o->counters.pull_failed_bytes += (uint64_t)c->body_off;
    } else if (c->job_id > 0) {
        /* a SERVE that did not complete */
        struct records_job_result res;
        records_job_result_init(&res);
        res.state = RECORDS_JOB_FAILED;
        res.result_code = -ECONNRESET;
        res.error_stage = "transfer";
        res.error_message = o->stopping
                                ? "the station stopped before the whole image was sent"
                                : "the board closed the connection before the whole image was sent";
        res.error_advice = "the board retries at its next check-in; check Wi-Fi and power";
        res.bytes = (int64_t)c->body_off;
        records_job_finish(station_records(o->st), c->job_id, &res, NULL);
        o->counters.pulls_failed[c->fs ? 1 : 0]++; /* /metrics */
        o->counters.pull_failed_bytes += (uint64_t)c->body_off;
        if (!c->fs && !c->plain) /* pull bulks wait for the app */
            ota_bulk_on_pull_problem(o, c->mac, res.error_message);
    }
    ota_fw_unref(c->fw);
    free(c);
}

void ota_conn_write(struct ota_conn *c)
{
    for (;;) {
        const void *p;
        size_t n;
        if (c->head_off < c->head_len) {
            p = c->head + c->head_off;
            n = c->head_len - c->head_off;
        } else if (c->body && c->body_off < c->body_len) {
            p = c->body + c->body_off;
            n = c->body_len - c->body_off;
        } else {
            break;
        }
        ssize_t w = conn_send(c, p, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            ota_conn_close(c);
            return;
        }
        c->last_io = loop_now_ms();
        if (!c->first_us)
            c->first_us = mono_us();
        if (c->head_off < c->head_len)
            c->head_off += (size_t)w;
        else
            c->body_off += (size_t)w;
    }
    if (c->tls && !(c->fw && c->record_served))
        ota_tls_close_notify(c->tls); /* not after an image: see ota_tls.h */
    shutdown(c->fd, SHUT_WR);
    if (c->fw && c->record_served) {
        /* Handed over, not yet taken: the pull ends at the board's close (conn_drain). Still
         * "writing" for everyone else: the answer is not over. */
        c->draining = true;
        loop_del_fd(c->o->loop, c->fd);
        if (loop_add_fd(c->o->loop, c->fd, EPOLLIN, ota_conn_io, c) < 0)
            ota_conn_close(c);
        return;
    }
    ota_conn_close(c);
}

/* After the image: reads (and drops) whatever the board still sends until it closes. A
 * clean close (FIN) after the whole image is the pull's end; a reset is not: a board that
 * refused the image after the head may never have read it. */
static void conn_drain(struct ota_conn *c)
{
    char buf[512];
    ssize_t r;
    for (;;) {
        r = recv(c->fd, buf, sizeof(buf), 0);
        if (r > 0 || (r < 0 && errno == EINTR))
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;
    }
    if (r == 0 && c->first_us)
        ota_served_complete(c, (double)(mono_us() - c->first_us) / 1e6, NULL);
    else
        ota_served_complete(c, -1, "the board reset the connection instead of closing it");
    ota_conn_close(c);
}

static void conn_read(struct ota_conn *c)
{
    /* A client may send its whole request and half-close at once (shutdown(SHUT_WR)
     * right after the head, or a FIN in the same segment): recv() then returns the
     * head and, on the next call, 0. The buffered head is still a request to answer;
     * only a connection that closes before a complete head is dropped unanswered. */
    bool eof = false;
    for (;;) {
        if (c->in_len >= sizeof(c->in))
            break;
        ssize_t r = conn_recv(c, c->in + c->in_len, sizeof(c->in) - c->in_len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            ota_conn_close(c);
            return;
        }
        if (r == 0) {
            eof = true;
            break;
        }
        c->in_len += (size_t)r;
        c->last_io = loop_now_ms();
    }
    if (eof && c->in_len == 0) {
        ota_conn_close(c);
        return;
    }
    struct ota_http_request req;
    struct ota_error oe;
    ota_error_clear(&oe);
    int rc = ota_http_parse_request(c->in, c->in_len, &req, &oe);
    if (rc == 0 && eof) { /* closed mid-head: nobody is left to answer */
        ota_conn_close(c);
        return;
    }
    if (rc == 0 && c->in_len < sizeof(c->in))
        return; /* more bytes needed */
    if (rc <= 0) {
        ota_count_checkin(c->o, 400);
        ota_answer_text(c, 400,
                        rc == -EMSGSIZE ? "request head too large\n" : "malformed request\n");
        c->writing = true;
        loop_del_fd(c->o->loop, c->fd);
        if (loop_add_fd(c->o->loop, c->fd, EPOLLOUT, ota_conn_io, c) < 0) {
            ota_conn_close(c);
            return;
        }
        ota_conn_write(c);
        return;
    }
    ota_handle_request(c, &req);
}

void ota_conn_io(void *ctx, int fd, uint32_t events)
{
    (void)fd;
    struct ota_conn *c = ctx;
    if (c->tls) {
        if (!ota_tls_conn_ready(c->tls)) {
            conn_handshake(c);
            return;
        }
        /* Watched for what TLS waited for, which may be either direction: it came. */
        events |= EPOLLIN | EPOLLOUT;
    }
    if (c->draining) {
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            conn_drain(c);
        return;
    }
    if (c->writing) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            ota_conn_write(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_read(c);
}

static void on_accept(void *ctx, int fd, uint32_t events);

static bool warn_due(int64_t *last)
{
    int64_t now = loop_now_ms();
    if (*last != 0 && now - *last < OTA_WARN_EVERY_MS)
        return false;
    *last = now;
    return true;
}

static void accept_resume(void *ctx)
{
    struct ota *o = ctx;
    if (!o->accept_paused)
        return; /* the listener was replaced meanwhile */
    o->accept_paused = false;
    if (o->listen_fd >= 0 && loop_add_fd(o->loop, o->listen_fd, EPOLLIN, on_accept, o) < 0)
        log_msg(LOG_LEVEL_ERROR, "OTA endpoint: cannot watch the listener again: the endpoint "
                                 "is off until ota.listen is reloaded (SIGHUP)");
}

/* accept() failed for want of a descriptor or memory: the connection stays queued and
 * the listener readable, so polling it again would spin. Rest instead. */
static void accept_pause(struct ota *o, int e)
{
    if (!o->accept_timer || loop_timer_arm(o->accept_timer, ACCEPT_PAUSE_MS, 0) < 0)
        return; /* cannot rest: better to spin than to stop serving */
    loop_del_fd(o->loop, o->listen_fd);
    o->accept_paused = true;
    if (warn_due(&o->accept_log_ms))
        log_msg(LOG_LEVEL_WARN,
                "OTA endpoint: cannot accept a connection (%s) with %d open: not accepting "
                "for %d ms (see the 'open files' line at start)",
                strerror(e), o->n_conns, ACCEPT_PAUSE_MS);
}

static int ota_cap(const struct ota *o)
{
    int cap = station_fd_budget(o->st)->ota_max;
    return cap > 0 ? cap : station_config(o->st)->ota.max_connections;
}

/* At the cap: the longest-silent connection still waiting for its request head (an
 * ESP updater sends its head right after connecting), closed; false when every one
 * is being answered. */
static bool make_room(struct ota *o)
{
    struct ota_conn *victim = NULL;
    for (struct ota_conn *c = o->conns; c; c = c->next)
        if (!c->writing && (!victim || c->last_io < victim->last_io))
            victim = c;
    if (!victim)
        return false;
    ota_conn_close(victim);
    o->evicted++;
    if (warn_due(&o->evict_log_ms))
        log_msg(LOG_LEVEL_WARN,
                "OTA endpoint: %d connections, its cap: closing the longest-silent one to make "
                "room (%llu so far); is a client holding connections open? (cap: see the 'open "
                "files' line at start, ota.max_connections)",
                o->n_conns + 1, (unsigned long long)o->evicted);
    return true;
}

static void on_accept(void *ctx, int fd, uint32_t events)
{
    (void)events;
    struct ota *o = ctx;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_pause(o, errno);
            return;
        }
        if (o->n_conns >= ota_cap(o) && !make_room(o)) {
            static const char busy[] = "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                       "Connection: close\r\n\r\n";
            if (!o->tls) /* over TLS, plain text would be garbage: just close */
                (void)!send(cfd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            close(cfd);
            ota_count_checkin(o, 503);
            continue;
        }
        struct ota_conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(cfd);
            continue;
        }
        c->o = o;
        c->fd = cfd;
        c->last_io = c->started = loop_now_ms();
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->ip, sizeof(c->ip));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->ip, sizeof(c->ip));
        if (o->tls && !(c->tls = ota_tls_conn_new(o->tls, cfd))) {
            close(cfd);
            free(c);
            continue;
        }
        if (loop_add_fd(o->loop, cfd, EPOLLIN, ota_conn_io, c) < 0) {
            ota_tls_conn_free(c->tls);
            close(cfd);
            free(c);
            continue;
        }
        c->next = o->conns;
        o->conns = c;
        o->n_conns++;
    }
}

static void on_sweep(void *ctx)
{
    struct ota *o = ctx;
    int64_t now = loop_now_ms();
    int64_t idle_ms = (int64_t)station_config(o->st)->ota.idle_timeout_s * 1000;
    struct ota_conn *c = o->conns;
    while (c) {
        struct ota_conn *next = c->next;
        if (now - c->last_io > idle_ms)
            ota_conn_close(c);
        c = next;
    }
    ota_bulk_tick(o);
}

/* A listening socket on host:port (an IP literal, IPv6 possibly in brackets): the fd,
 * its bound port into *bound; -errno with one line in err. */
static int bind_listener(const char *host, int port, int *bound, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    char h[128];
    snprintf(h, sizeof(h), "%s", host);
    if (h[0] == '[') {
        memmove(h, h + 1, strlen(h));
        char *rb = strchr(h, ']');
        if (rb)
            *rb = '\0';
    }
    if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof(*a4);
    } else if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*a6);
    } else {
        ota_errf(err, errlen, "ota.listen: \"%s\" is not an IP address", host);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        ota_errf(err, errlen, "ota.listen: socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 512) != 0) {
        int e = errno;
        ota_errf(err, errlen, "ota.listen: cannot listen on %s:%d: %s", host, port, strerror(e));
        close(fd);
        return -e;
    }
    sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
    return fd;
}

static void write_port_file(struct ota *o)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/ota.port", station_data_dir(o->st));
    if (o->port < 0) {
        unlink(path);
        return;
    }
    /* Written whole under a temporary name, then renamed: a reader never sees half. */
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "%d\n", o->port);
    if (fclose(f) == 0)
        rename(tmp, path);
    else
        unlink(tmp);
}

static void close_listener(struct ota *o)
{
    if (o->listen_fd >= 0) {
        loop_del_fd(o->loop, o->listen_fd); /* -ENOENT while resting: harmless */
        close(o->listen_fd);
    }
    o->accept_paused = false;
    if (o->accept_timer)
        loop_timer_disarm(o->accept_timer);
    o->listen_fd = -1;
    o->port = -1;
    o->listen_host[0] = '\0';
    o->listen_cfg_port = 0;
}

/* Makes fd (bound to port, for config host:cfg_port) the listener. */
static int install_listener(struct ota *o, int fd, int port, const char *host, int cfg_port)
{
    int rc = loop_add_fd(o->loop, fd, EPOLLIN, on_accept, o);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    o->listen_fd = fd;
    o->port = port;
    snprintf(o->listen_host, sizeof(o->listen_host), "%s", host);
    o->listen_cfg_port = cfg_port;
    write_port_file(o);
    return 0;
}

static int open_listener(struct ota *o, const struct config *cfg, char *err, size_t errlen)
{
    int port = -1;
    int fd = bind_listener(cfg->ota.listen_host, cfg->ota.listen_port, &port, err, errlen);
    if (fd < 0)
        return fd;
    return install_listener(o, fd, port, cfg->ota.listen_host, cfg->ota.listen_port);
}

/* ota.tls on a reload: the files are read again (a renewed certificate takes effect
 * for new connections; ones in flight keep theirs). A pair that fails keeps what the
 * endpoint had. */
static void tls_reload(struct ota *o, const struct config *cfg)
{
    if (!cfg->ota.enabled)
        return;
    if (!cfg->ota.tls.cert) {
        if (o->tls)
            log_msg(LOG_LEVEL_NOTICE, "ota.tls removed: the OTA update endpoint now speaks plain "
                                      "HTTP (boards with an https:// URL fail to check in)");
        ota_tls_free(o->tls);
        o->tls = NULL;
        return;
    }
    if (ota_tls_unchanged(o->tls, cfg->ota.tls.cert, cfg->ota.tls.key))
        return; /* a reload for something else, or the same files */
    struct ota_tls *t = NULL;
    char err[700] = "";
    if (ota_tls_new("ota.tls", cfg->ota.tls.cert, cfg->ota.tls.key, &t, err, sizeof(err)) < 0) {
        char kept[300];
        if (o->tls)
            snprintf(kept, sizeof(kept), "the certificate it had (%s, not after %s)",
                     ota_tls_subject(o->tls), ota_tls_until(o->tls));
        else
            snprintf(kept, sizeof(kept), "speaking plain HTTP");
        log_msg(LOG_LEVEL_ERROR,
                "tls: ota certificate not reloaded: %s; the OTA update endpoint keeps %s until "
                "the files are fixed and the configuration reloaded (SIGHUP)",
                err, kept);
        return;
    }
    log_msg(LOG_LEVEL_NOTICE,
            "tls: ota certificate reloaded (%s, not after %s): the OTA update endpoint speaks "
            "HTTPS with %s to new connections (open ones keep theirs)",
            ota_tls_subject(t), ota_tls_until(t), ota_tls_info(t));
    if (ota_tls_warning(t)[0])
        log_msg(LOG_LEVEL_WARN, "ota.tls: %s", ota_tls_warning(t));
    ota_tls_free(o->tls); /* connections in flight hold their own reference */
    o->tls = t;
}

int64_t ota_tls_expiry(const struct ota *o)
{
    return o && o->listen_fd >= 0 ? ota_tls_not_after(o->tls) : 0;
}

const char *ota_tls_server_subject(const struct ota *o)
{
    return o && o->listen_fd >= 0 && o->tls ? ota_tls_subject(o->tls) : "";
}

void ota_reload(struct ota *o)
{
    if (!o)
        return;
    const struct config *cfg = station_config(o->st);
    tls_reload(o, cfg);
    bool want = cfg->ota.enabled;
    bool have = o->listen_fd >= 0;
    if (want && have && strcmp(cfg->ota.listen_host, o->listen_host) == 0 &&
        cfg->ota.listen_port == o->listen_cfg_port)
        return; /* unchanged */
    if (!want) {
        if (have) {
            log_msg(LOG_LEVEL_NOTICE,
                    "ota.listen removed: the OTA update endpoint on %s:%d is closed (%d "
                    "download(s) in flight finish)",
                    o->listen_host, o->port, o->n_conns);
            close_listener(o);
            write_port_file(o);
        }
        return;
    }
    char err[300] = "";
    int port = -1;
    int fd = bind_listener(cfg->ota.listen_host, cfg->ota.listen_port, &port, err, sizeof(err));
    if (fd == -EADDRINUSE && have && cfg->ota.listen_port == o->port) {
        /* Same port, another address (e.g. 127.0.0.1 -> 0.0.0.0): the old socket holds
         * it. Close it, bind, and take the old address back if that fails. */
        char old_host[sizeof(o->listen_host)];
        snprintf(old_host, sizeof(old_host), "%s", o->listen_host);
        int old_cfg_port = o->listen_cfg_port, old_port = o->port;
        close_listener(o);
        fd = bind_listener(cfg->ota.listen_host, cfg->ota.listen_port, &port, err, sizeof(err));
        if (fd < 0) {
            char err2[300] = "";
            int back = -1;
            int ofd = bind_listener(old_host, old_port, &back, err2, sizeof(err2));
            if (ofd < 0 || install_listener(o, ofd, back, old_host, old_cfg_port) < 0) {
                log_msg(LOG_LEVEL_ERROR,
                        "%s; the old address %s:%d could not be taken back either (%s): the "
                        "OTA update endpoint is off until ota.listen names a free address and "
                        "the configuration is reloaded (SIGHUP)",
                        err, old_host, old_port, err2);
                write_port_file(o);
                return;
            }
            have = true;
        } else {
            have = false;
        }
    }
    if (fd < 0) {
        log_msg(LOG_LEVEL_ERROR,
                "%s: keeping the OTA update endpoint on %s:%d (choose a free address for "
                "ota.listen and reload with SIGHUP, or stop what holds the port)",
                err, o->listen_host[0] ? o->listen_host : "(none)", o->port);
        return;
    }
    char old[160] = "";
    if (have)
        snprintf(old, sizeof(old), " (was %s:%d; %d download(s) in flight finish there)",
                 o->listen_host, o->port, o->n_conns);
    close_listener(o);
    if (install_listener(o, fd, port, cfg->ota.listen_host, cfg->ota.listen_port) < 0) {
        log_msg(LOG_LEVEL_ERROR, "ota.listen: cannot watch the new listener on %s:%d",
                cfg->ota.listen_host, port);
        write_port_file(o);
        return;
    }
    log_msg(LOG_LEVEL_NOTICE, "OTA update endpoint now on %s:%d%s", o->listen_host, o->port, old);
}

int ota_new(struct station *st, struct loop *loop, struct ota **out, char *err, size_t errlen)
{
    struct ota *o = calloc(1, sizeof(*o));
    if (!o) {
        ota_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    o->st = st;
    o->loop = loop;
    o->listen_fd = -1;
    o->port = -1;
    o->msg_pipe[0] = o->msg_pipe[1] = -1;
    const struct config *cfg = station_config(st);
    int rc = 0;
    if (cfg->ota.enabled && cfg->ota.tls.cert) /* a bad certificate is a start-up error */
        rc = ota_tls_new("ota.tls", cfg->ota.tls.cert, cfg->ota.tls.key, &o->tls, err, errlen);
    if (rc == 0 && cfg->ota.enabled)
        rc = open_listener(o, cfg, err, errlen);
    if (rc == 0 && pipe2(o->msg_pipe, O_CLOEXEC) != 0) {
        ota_errf(err, errlen, "ota: pipe: %s", strerror(errno));
        rc = -errno;
    }
    if (rc == 0)
        fcntl(o->msg_pipe[0], F_SETFL, O_NONBLOCK); /* workers' end stays blocking */
    if (rc == 0)
        rc = loop_add_fd(loop, o->msg_pipe[0], EPOLLIN, ota_jobs_on_msg, o);
    if (rc == 0) {
        o->sweep = loop_timer_new(loop, on_sweep, o);
        o->accept_timer = loop_timer_new(loop, accept_resume, o);
        if (!o->sweep || !o->accept_timer || loop_timer_arm(o->sweep, 1000, 1000) < 0)
            rc = -ENOMEM;
    }
    if (rc < 0) {
        if (!err || !err[0])
            ota_errf(err, errlen, "ota: %s", strerror(-rc));
        ota_free(o);
        return rc;
    }
    ota_jobs_init(o);
    o->mdns = mdns_start(o, cfg->ota.mdns_interval_s);
    if (o->port >= 0)
        log_msg(LOG_LEVEL_NOTICE, "OTA update endpoint on %s:%d", cfg->ota.listen_host, o->port);
    if (o->port >= 0 && o->tls)
        log_msg(LOG_LEVEL_NOTICE, "OTA update endpoint speaks HTTPS only (ota.tls): %s",
                ota_tls_info(o->tls));
    if (o->tls && ota_tls_warning(o->tls)[0])
        log_msg(LOG_LEVEL_WARN, "ota.tls: %s", ota_tls_warning(o->tls));
    *out = o;
    return 0;
}

int ota_port(const struct ota *o)
{
    return o ? o->port : -1;
}

void ota_free(struct ota *o)
{
    if (!o)
        return;
    o->stopping = true;
    mdns_free(o->mdns);
    o->mdns = NULL;
    ota_jobs_free(o);
    while (o->conns)
        ota_conn_close(o->conns);
    if (o->listen_fd >= 0) {
        loop_del_fd(o->loop, o->listen_fd);
        close(o->listen_fd);
    }
    if (o->msg_pipe[0] >= 0) {
        loop_del_fd(o->loop, o->msg_pipe[0]);
        close(o->msg_pipe[0]);
    }
    if (o->msg_pipe[1] >= 0)
        close(o->msg_pipe[1]);
    loop_timer_free(o->sweep);
    loop_timer_free(o->accept_timer);
    ota_tls_free(o->tls);
    ota_invalidate(o);
    free(o);
}

bool ota_checked_in_during(struct ota *o, const char *mac, int64_t job_id)
{
    if (!o || !mac || !mac[0])
        return false;
    struct records *rec = station_records(o->st);
    struct records_board_ota bo;
    struct records_job j;
    return records_board_ota_get(rec, mac, &bo, NULL) == 0 &&
           records_job_get(rec, job_id, &j, NULL) == 0 && bo.last_checkin >= j.started_at;
}

char *ota_board_json(struct ota *o, const char *mac)
{
    struct records_board_ota bo;
    struct records *rec = station_records(o->st);
    if (records_board_ota_get(rec, mac, &bo, NULL) < 0)
        return NULL;
    struct records_board b;
    char target[RECORDS_FIRMWARE_LEN] = "";
    bool pinned = false;
    if (records_board_get(rec, mac, &b, NULL) == 0)
        ota_target_of(o, &b, target, sizeof(target), &pinned);
    const char *at = strchr(target, '@');
    bool on_target = at && strcmp(at + 1, b.running_version) == 0;
    char t1[RECORDS_TIME_LEN], t2[RECORDS_TIME_LEN];
    json_object *j = json_object_new_object();
    json_object_object_add(j, "free_space",
                           bo.free_space >= 0 ? json_object_new_int64(bo.free_space) : NULL);
    json_object_object_add(j, "sketch_size",
                           bo.sketch_size >= 0 ? json_object_new_int64(bo.sketch_size) : NULL);
    json_object_object_add(j, "sketch_md5", json_object_new_string(bo.sketch_md5));
    json_object_object_add(j, "chip_size",
                           bo.chip_size >= 0 ? json_object_new_int64(bo.chip_size) : NULL);
    json_object_object_add(j, "sdk_version", json_object_new_string(bo.sdk_version));
    json_object_object_add(j, "last_checkin",
                           bo.last_checkin ? json_object_new_string(records_format_time(
                                                 bo.last_checkin, t1, sizeof(t1)))
                                           : NULL);
    json_object_object_add(j, "checkins", json_object_new_int64(bo.checkins));
    json_object_object_add(j, "served_version", json_object_new_string(bo.served_version));
    json_object_object_add(
        j, "served_at",
        bo.served_at ? json_object_new_string(records_format_time(bo.served_at, t2, sizeof(t2)))
                     : NULL);
    json_object_object_add(j, "problem", bo.problem[0] ? json_object_new_string(bo.problem) : NULL);
    json_object_object_add(j, "target", target[0] ? json_object_new_string(target) : NULL);
    json_object_object_add(j, "target_pinned", json_object_new_boolean(pinned));
    json_object_object_add(j, "on_target", json_object_new_boolean(on_target));
    char *s = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    return s;
}

void ota_seen_mdns(struct ota *o, const char *mac, const char *ip, int port, int auth_upload)
{
    if (!o || !mac || !ip || !ip[0])
        return;
    struct records *rec = station_records(o->st);
    struct records_board before;
    if (records_board_get(rec, mac, &before, NULL) < 0)
        return;
    bool was_online = strcmp(before.online_state, "online") == 0;
    if (strcmp(before.ip, ip) == 0 && was_online)
        return;
    /* Anyone can announce any hostname: mDNS gives an unconfirmed address, and never
     * replaces a confirmed one (board_addr.h). */
    enum board_addr_result ar = board_addr_note(o->st, before.mac, ip, BOARD_ADDR_MDNS, NULL, 0);
    if (ar == BOARD_ADDR_CLAIM || ar == BOARD_ADDR_ERROR)
        return;
    struct records_board b;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", before.mac);
    snprintf(b.online_state, sizeof(b.online_state), "online");
    if (records_board_upsert(rec, &b, NULL) < 0)
        return;
    json_object *j = json_object_new_object();
    json_object_object_add(j, "ip", json_object_new_string(ip));
    json_object_object_add(j, "source", json_object_new_string("mdns"));
    json_object_object_add(j, "port", json_object_new_int(port));
    if (!was_online)
        station_post_event(o->st, "board.online", NULL, before.mac, 0,
                           json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    json_object_put(j);
    log_board(LOG_LEVEL_INFO, NULL, before.mac, "seen via mDNS at %s (ArduinoOTA port %d%s)", ip,
              port, auth_upload == 1 ? ", password required" : "");
}
