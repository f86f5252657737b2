/*
 * ota.c: the device-facing HTTP update endpoint and check-in bookkeeping (see ota.h
 * for what this module owns; the image cache and board targets are in ota_fw.c).
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

struct ota_conn {
    struct ota *o;
    int fd;
    struct ota_tls_conn *tls; /* ota.tls: the connection's TLS layer; NULL plain HTTP */
    char ip[INET6_ADDRSTRLEN];
    char in[OTA_HTTP_MAX_HEAD];
    size_t in_len;
    char head[1024];
    size_t head_len, head_off;
    struct ota_fw *fw;   /* body to send (SERVE), referenced */
    const uint8_t *body; /* fw's app or filesystem image */
    size_t body_len;
    bool fs; /* x-…-mode: spiffs (the filesystem image) */
    size_t body_off;
    bool writing;
    bool record_served; /* a GET answered with an image: counted, and a job when mac */
    bool plain;         /* an SDK plain GET (no updater headers) */
    const char *half;   /* plain GET of a dual set: "user1" / "user2", else NULL */
    char mac[RECORDS_MAC_LEN];
    bool claim; /* a check-in without credentials for a board confirmed at another address:
                   answered, but nothing goes into that board's record (board_addr.h) */
    char sketch_md5[33];
    int64_t job_id;
    int64_t last_io;
    int64_t started;
    int64_t first_us; /* monotonic time of the response's first byte handed to the socket */
    bool draining;    /* whole image handed over, our side shut: waiting for the board's close */
    struct ota_conn *next;
};

/* ---- the update endpoint -------------------------------------------------------------- */

static void served_complete(struct ota_conn *c, double seconds, const char *why_unknown);

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void conn_io(void *ctx, int fd, uint32_t events);

/* ---- TLS (ota.tls): the connection's I/O goes through ota_tls.c -------------------- */

/* Watches the connection for events only (TLS waits for the direction it needs). */
static int conn_want(struct ota_conn *c, uint32_t events)
{
    loop_del_fd(c->o->loop, c->fd);
    return loop_add_fd(c->o->loop, c->fd, events, conn_io, c);
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
static void conn_close(struct ota_conn *c);

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
        conn_close(c);
        return;
    }
    c->last_io = loop_now_ms();
    if (r == 0) {
        if (conn_want(c, ev) < 0)
            conn_close(c);
        return;
    }
    if (conn_want(c, EPOLLIN) < 0) {
        conn_close(c);
        return;
    }
    conn_read(c); /* the request may have come with the handshake's last flight */
}

static void conn_close(struct ota_conn *c)
{
    struct ota *o = c->o;
    if (c->draining)
        served_complete(c, -1,
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

static void conn_io(void *ctx, int fd, uint32_t events);

/* The whole image went out; seconds: from the first byte of the response to the board's
 * close, < 0 when not known (why_unknown says why). */
static void served_complete(struct ota_conn *c, double seconds, const char *why_unknown)
{
    struct ota *o = c->o;
    struct records *rec = station_records(o->st);
    c->draining = false;
    if (!c->fs && !c->plain && c->mac[0] && !c->claim) {
        /* The sketch memory (ota_http's "served"); a filesystem image is remembered by its
         * passed ota-pull-fs job (fs_served). */
        struct records_board_ota bo;
        if (records_board_ota_get(rec, c->mac, &bo, NULL) < 0) {
            records_board_ota_init(&bo);
            snprintf(bo.mac, sizeof(bo.mac), "%s", c->mac);
        }
        snprintf(bo.served_md5, sizeof(bo.served_md5), "%s", c->fw->md5);
        snprintf(bo.served_version, sizeof(bo.served_version), "%s", c->fw->version);
        snprintf(bo.served_sketch_md5, sizeof(bo.served_sketch_md5), "%s", c->sketch_md5);
        bo.served_at = records_now_ms(rec);
        records_board_ota_put(rec, &bo, NULL);
    }
    if (c->job_id > 0) {
        struct records_job_result res;
        records_job_result_init(&res);
        res.state = RECORDS_JOB_PASSED;
        res.bytes = (int64_t)c->body_len;
        res.wire_bytes = (int64_t)(c->body_len + c->head_len);
        res.seconds = seconds;
        res.duration_unknown = !(seconds > 0);
        char line[300];
        if (seconds > 0)
            snprintf(line, sizeof(line), "the board took %zu bytes in %.3f s (%.0f kbit/s)",
                     c->body_len, seconds, (double)c->body_len * 8 / 1000 / seconds);
        else
            snprintf(line, sizeof(line),
                     "all %zu bytes handed over, but %s: the transfer's duration is not known",
                     c->body_len, why_unknown ? why_unknown : "no time was measured");
        records_job_log(rec, c->job_id, "info", line, NULL);
        records_job_finish(rec, c->job_id, &res, NULL);
    }
    char extra[160] = "", data[400];
    if (c->plain)
        snprintf(extra, sizeof(extra), ",\"plain\":true,\"ip\":\"%s\"%s%s%s", c->ip,
                 c->half ? ",\"half\":\"" : "", c->half ? c->half : "", c->half ? "\"" : "");
    snprintf(data, sizeof(data),
             "{\"firmware\":\"%s\",\"bytes\":%zu,\"method\":\"pull\",\"image\":\"%s\"%s}",
             c->fw->ref, c->body_len, c->fs ? "filesystem" : "app", extra);
    station_post_event(o->st, "ota.served", NULL, c->mac[0] ? c->mac : NULL,
                       c->job_id > 0 ? c->job_id : 0, data);
    log_board(LOG_LEVEL_INFO, NULL, c->mac[0] ? c->mac : NULL,
              "pull: served %s%s%s%s (%zu bytes) to %s%s", c->fw->ref,
              c->fs ? " filesystem image" : "", c->half ? " " : "", c->half ? c->half : "",
              c->body_len, c->ip, c->plain ? " (plain GET)" : "");
    c->job_id = 0;
    c->record_served = false;
}

static void conn_write(struct ota_conn *c)
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
            conn_close(c);
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
        if (loop_add_fd(c->o->loop, c->fd, EPOLLIN, conn_io, c) < 0)
            conn_close(c);
        return;
    }
    conn_close(c);
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
        served_complete(c, (double)(mono_us() - c->first_us) / 1e6, NULL);
    else
        served_complete(c, -1, "the board reset the connection instead of closing it");
    conn_close(c);
}

static void update_board(struct ota *o, struct ota_conn *c, const struct ota_http_request *req,
                         const struct records_board *before, bool known,
                         const struct ota_http_decision *d, const char *problem,
                         enum board_addr_source src)
{
    struct records *rec = station_records(o->st);
    struct records_board b;
    records_board_init(&b);
    snprintf(b.mac, sizeof(b.mac), "%s", c->mac);
    if (!known)
        snprintf(b.chip, sizeof(b.chip), "%s",
                 req->header_chip == OTA_CHIP_ESP8266 ? "ESP8266" : "ESP32");
    if (req->version[0])
        snprintf(b.running_version, sizeof(b.running_version), "%s", req->version);
    /* A board that reports its target's version now runs that set (a pull it applied, or
     * an update from elsewhere): its record names it, as a push or a serial flash would. */
    char target[RECORDS_FIRMWARE_LEN];
    bool pinned = false;
    if (known && req->version[0] &&
        ota_target_of(o, before, target, sizeof(target), &pinned) == 0 && target[0]) {
        const char *at = strrchr(target, '@');
        if (at && strcmp(at + 1, req->version) == 0 &&
            strcmp(before->current_firmware, target) != 0)
            snprintf(b.current_firmware, sizeof(b.current_firmware), "%s", target);
    }
    snprintf(b.online_state, sizeof(b.online_state), "online");
    if (records_board_upsert(rec, &b, NULL) < 0)
        return;
    if (!known) /* a known board's address was noted before (handle_request) */
        board_addr_note(o->st, c->mac, c->ip, src, NULL, 0);
    struct records_board_ota bo;
    if (records_board_ota_get(rec, c->mac, &bo, NULL) < 0) {
        records_board_ota_init(&bo);
        snprintf(bo.mac, sizeof(bo.mac), "%s", c->mac);
    }
    bo.free_space = req->has_free_space ? (int64_t)req->free_space : -1;
    bo.sketch_size = req->has_sketch_size ? (int64_t)req->sketch_size : -1;
    bo.chip_size = req->has_chip_size ? (int64_t)req->chip_size : -1;
    snprintf(bo.sketch_md5, sizeof(bo.sketch_md5), "%s", req->sketch_md5);
    snprintf(bo.sdk_version, sizeof(bo.sdk_version), "%s", req->sdk_version);
    bo.last_checkin = records_now_ms(rec);
    bo.checkins++;
    snprintf(bo.problem, sizeof(bo.problem), "%s",
             problem ? problem : (d->problem ? d->reason : ""));
    records_board_ota_put(rec, &bo, NULL);

    bool was_online = known && strcmp(before->online_state, "online") == 0;
    bool version_changed =
        known && req->version[0] && strcmp(before->running_version, req->version) != 0;
    if (!was_online || version_changed) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "ip", json_object_new_string(c->ip));
        json_object_object_add(j, "version", json_object_new_string(req->version));
        json_object_object_add(j, "enrolled", json_object_new_boolean(!known));
        json_object_object_add(j, "previous_version",
                               json_object_new_string(known ? before->running_version : ""));
        station_post_event(o->st, was_online ? "board.version" : "board.online", NULL, c->mac, 0,
                           json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
        log_board(LOG_LEVEL_INFO, NULL, c->mac, "%s at %s, running %s",
                  was_online ? "reports a new version" : "online", c->ip,
                  req->version[0] ? req->version : "(no version header)");
    }
    ota_slot_online(o, c->mac);
    ota_bulk_on_checkin(o, c->mac, req->version);
}

void ota_slot_online(struct ota *o, const char *mac)
{
    station_board_online(o->st, mac);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 429:
        return "Too Many Requests";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

static void answer_text(struct ota_conn *c, int status, const char *text)
{
    int n = snprintf(c->head, sizeof(c->head),
                     "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, status_text(status), strlen(text), text);
    c->head_len = n > 0 && (size_t)n < sizeof(c->head) ? (size_t)n : 0;
}

struct ip_board {
    const char *ip;
    struct records_board b;
    bool found;
};

static int ip_board_cb(const struct records_board *b, void *ctx)
{
    struct ip_board *s = ctx;
    if (!b->ip_confirmed || strcmp(b->ip, s->ip) != 0)
        return 1; /* only a confirmed address says which board is asking */
    s->b = *b;
    s->found = true;
    return 0;
}

/* A set the endpoint may serve by name: one a profile names (firmware or ota_firmware, for
 * any chip) or a board's pinned target. Any other catalog set (an old release, a set for
 * another customer) is not handed to whoever asks for its path. */
static bool serve_allowed(struct ota *o, const char *ref)
{
    const struct config *cfg = station_config(o->st);
    char r[RECORDS_FIRMWARE_LEN];
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const struct config_profile *p = &cfg->profiles[i];
        for (size_t k = 0; k < p->n_firmware + p->n_ota_firmware; k++) {
            const struct config_firmware_ref *f =
                k < p->n_firmware ? &p->firmware[k] : &p->ota_firmware[k - p->n_firmware];
            snprintf(r, sizeof(r), "%s@%s", f->name, f->version);
            if (strcmp(r, ref) == 0)
                return true;
        }
    }
    return records_board_target_used(station_records(o->st), ref, NULL) > 0;
}

/* The plain GET's part of a set: the app, or one half of a dual set. */
struct plain_pick {
    enum ota_http_userbin half; /* NONE: the app (data) */
    const uint8_t *body;
    size_t len;
    const char *md5;
    struct ip_board at; /* the board the station knows at the client's address, if any */
};

/*
 * Plain GET by SDK example clients and curl (docs/OTA.md "Plain GET"):
 *   /ota/fw/<name>/<version>.bin          the set's app (user1 of a dual set)
 *   /ota/fw/<name>/<version>/user1.bin    the user1 / user2 half of a dual set
 *   /ota/fw/<name>/<version>/user2.bin
 *   any other path ending in user1.bin / user2.bin (NONOS system_upgrade_start builds
 *   its own path): that half of the target set of the board the station knows at the
 *   client's IP address.
 */
static struct ota_fw *plain_image(struct ota *o, const char *uri, const char *ip,
                                  struct plain_pick *pick)
{
    char name[RECORDS_NAME_LEN], ver[RECORDS_NAME_LEN], ref[RECORDS_FIRMWARE_LEN] = "";
    memset(pick, 0, sizeof(*pick));
    pick->half = ota_http_userbin_from_uri(uri);
    if (ip) {
        pick->at.ip = ip;
        records_board_list(station_records(o->st), NULL, ip_board_cb, &pick->at, NULL);
    }
    size_t ulen = strcspn(uri, "?#");
    const char *p = strncmp(uri, "/ota/fw/", 8) == 0 ? uri + 8 : NULL;
    const char *slash = p ? memchr(p, '/', ulen - 8) : NULL;
    const char *end = slash ? p + (ulen - 8) : NULL; /* name/version part ends here */
    if (slash && pick->half != OTA_HTTP_USERBIN_NONE)
        end -= 10; /* "/userN.bin" */
    else if (slash && end - slash > 4 && memcmp(end - 4, ".bin", 4) == 0)
        end -= 4;
    else
        slash = NULL;
    if (slash && end > slash + 1 && (size_t)(slash - p) < sizeof(name) &&
        (size_t)(end - slash - 1) < sizeof(ver) &&
        !memchr(slash + 1, '/', (size_t)(end - slash - 1))) {
        memcpy(name, p, (size_t)(slash - p));
        name[slash - p] = '\0';
        memcpy(ver, slash + 1, (size_t)(end - slash - 1));
        ver[end - slash - 1] = '\0';
        snprintf(ref, sizeof(ref), "%s@%s", name, ver);
        if (!serve_allowed(o, ref)) {
            log_msg(LOG_LEVEL_DEBUG,
                    "plain GET %s from %s: %s is not named by a profile or a "
                    "board's target: 404",
                    uri, ip ? ip : "?", ref);
            return NULL;
        }
    } else if (pick->half != OTA_HTTP_USERBIN_NONE && pick->at.found) {
        ota_target_of(o, &pick->at.b, ref, sizeof(ref), NULL);
    }
    struct ota_fw *fw = NULL;
    if (!ref[0] || ota_fw_get(o, ref, &fw, NULL, 0) < 0)
        return NULL;
    if (ota_fw_policy(o, fw, NULL, 0) < 0 || (pick->half != OTA_HTTP_USERBIN_NONE && !fw->dual)) {
        ota_fw_unref(fw); /* a userN.bin of a set without user1/user2 slots: 404 */
        return NULL;
    }
    bool two = pick->half == OTA_HTTP_USERBIN_USER2;
    pick->body = two ? fw->data2 : fw->data;
    pick->len = two ? fw->size2 : fw->size;
    pick->md5 = two ? fw->md5_2 : fw->md5;
    return fw;
}

struct fs_seen {
    int64_t id;
    char firmware[RECORDS_FIRMWARE_LEN];
};

static int fs_seen_cb(const struct records_job *j, void *ctx)
{
    struct fs_seen *s = ctx;
    if (j->id > s->id) {
        s->id = j->id;
        snprintf(s->firmware, sizeof(s->firmware), "%s", j->firmware);
    }
    return 1;
}

/* The station's own knowledge of the filesystem image a board holds: the newest passed
 * job that wrote one (a serial flash of a set, a filesystem pull or push). True when it
 * was ref's: a mode-spiffs check-in then gets 304. */
static bool fs_served(struct ota *o, const char *mac, const char *ref)
{
    static const char *const kinds[] = {"flash", "ota-pull-fs", "ota-push-fs"};
    struct fs_seen seen = {0};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        struct records_job_filter f;
        records_job_filter_init(&f);
        f.board_mac = mac;
        f.kind = kinds[i];
        f.state = RECORDS_JOB_PASSED;
        f.limit = 1;
        records_job_list(station_records(o->st), &f, fs_seen_cb, &seen, NULL);
    }
    return seen.id > 0 && strcmp(seen.firmware, ref) == 0;
}

/* /metrics: one request answered with status (ota_counters). */
static void count_checkin(struct ota *o, int status)
{
    for (size_t i = 0; i < OTA_CHECKIN_STATUSES; i++) {
        if (o->counters.checkins[i].status == 0)
            o->counters.checkins[i].status = status;
        if (o->counters.checkins[i].status == status) {
            o->counters.checkins[i].n++;
            return;
        }
    }
}

const struct ota_counters *ota_counters(const struct ota *o)
{
    return o ? &o->counters : NULL;
}

/* Equal strings, compared in time independent of where they differ. */
static bool secret_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    volatile unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ (lb ? b[i % lb] : 0));
    return d == 0;
}

/* The request's credentials against the profiles' checkin_auth (any profile's: a board
 * of any of the station's profiles may check in): 1 they match one, 0 none sent (or no
 * profile sets checkin_auth), -1 wrong or not HTTP Basic. */
static int checkin_auth(const struct config *cfg, const struct ota_http_request *req)
{
    bool any = false, ok = false;
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const struct config_profile *p = &cfg->profiles[i];
        if (!p->checkin_user)
            continue;
        any = true;
        if (req->has_basic_auth) {
            bool user = secret_eq(req->auth_user, p->checkin_user);
            bool pass = secret_eq(req->auth_password, p->checkin_password);
            ok |= user && pass;
        }
    }
    if (!any || !req->has_authorization)
        return 0;
    return ok ? 1 : -1;
}

/* A refused check-in that no board record shows: logged at most once a minute with the count. */
static void auth_refused(struct ota *o, const char *ip, const char *mac, const char *why)
{
    int64_t now = loop_now_ms();
    o->auth_refused++;
    log_board(LOG_LEVEL_DEBUG, NULL, mac, "check-in from %s refused: %s", ip, why);
    if (o->auth_log_ms && now - o->auth_log_ms < 60000)
        return;
    log_board(LOG_LEVEL_WARN, NULL, mac,
              "check-in from %s refused: %s (%llu such refusal(s) since the last warning; a "
              "board with old credentials, or someone trying MACs)",
              ip, why, (unsigned long long)o->auth_refused);
    o->auth_refused = 0;
    o->auth_log_ms = now;
}

/* A check-in without the profile's credentials would enrol mac. 0: go on; else the HTTP
 * status to answer (403 the cap, 429 the rate) with text. ota.enrol_limited is posted at
 * most once a minute with the refusals since the last one. */
static int enrol_gate(struct ota *o, const char *mac, const char *ip, char *text, size_t len)
{
    const struct config *cfg = station_config(o->st);
    int64_t now = loop_now_ms(), known = 0;
    double rate = cfg->ota.enrol_rate_per_min;
    int status = 0;
    const char *reason;
    if (records_board_count_unconfirmed(station_records(o->st), &known, NULL) < 0 ||
        known >= cfg->ota.enrol_max) {
        status = 403;
        reason = "cap";
        snprintf(text, len,
                 "enrolment refused: the station knows %lld board(s) only from check-ins without "
                 "credentials (ota.enrol_max %d); confirm or remove them, raise ota.enrol_max, "
                 "or give the boards the profile's checkin_auth\n",
                 (long long)known, cfg->ota.enrol_max);
    } else {
        if (o->enrol_refill_ms == 0 || o->enrol_tokens > rate) {
            o->enrol_tokens = rate; /* a full bucket: a burst of one minute's worth */
            o->enrol_refill_ms = now;
        }
        o->enrol_tokens += (double)(now - o->enrol_refill_ms) * rate / 60000.0;
        if (o->enrol_tokens > rate)
            o->enrol_tokens = rate;
        o->enrol_refill_ms = now;
        if (o->enrol_tokens >= 1.0) {
            o->enrol_tokens -= 1.0;
            return 0;
        }
        status = 429;
        reason = "rate";
        snprintf(text, len,
                 "enrolment rate limit: at most %d new board(s) a minute "
                 "(ota.enrol_rate_per_min); check in again later\n",
                 cfg->ota.enrol_rate_per_min);
    }
    o->enrol_refused++;
    log_board(LOG_LEVEL_DEBUG, NULL, mac, "enrolment from %s refused (%s)", ip, reason);
    if (!o->enrol_event_ms || now - o->enrol_event_ms >= 60000) {
        json_object *j = json_object_new_object();
        json_object_object_add(j, "reason", json_object_new_string(reason));
        json_object_object_add(j, "refused", json_object_new_int64((int64_t)o->enrol_refused));
        json_object_object_add(j, "ip", json_object_new_string(ip));
        json_object_object_add(j, "rate_per_min", json_object_new_int(cfg->ota.enrol_rate_per_min));
        json_object_object_add(j, "max", json_object_new_int(cfg->ota.enrol_max));
        json_object_object_add(j, "unconfirmed_boards", json_object_new_int64(known));
        station_post_event(o->st, "ota.enrol_limited", NULL, NULL, 0,
                           json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
        json_object_put(j);
        log_msg(LOG_LEVEL_WARN,
                "OTA endpoint: enrolment of unknown boards by check-ins without credentials "
                "refused (%s; %llu refusal(s) in this minute, e.g. %s from %s): %s",
                reason, (unsigned long long)o->enrol_refused, mac, ip, text);
        o->enrol_refused = 0;
        o->enrol_event_ms = now;
    }
    return status;
}

static void handle_request(struct ota_conn *c, const struct ota_http_request *req)
{
    struct ota *o = c->o;
    const struct config *cfg = station_config(o->st);
    struct records *rec = station_records(o->st);
    struct ota_http_decision d;
    memset(&d, 0, sizeof(d));
    struct ota_fw *fw = NULL;
    struct ota_http_image img, fsimg;
    memset(&img, 0, sizeof(img));
    memset(&fsimg, 0, sizeof(fsimg));
    bool fs_mode = false, fs_missing = false;
    struct plain_pick pick = {0};
    int refuse = 0;        /* a refusal answered with refuse_text before any decision */
    bool fetching = false; /* the target set is being fetched from the line (503) */
    char refuse_text[400] = "";

    if (!req->has_sta_mac && !cfg->ota.strict) {
        fw = plain_image(o, req->uri, c->ip, &pick);
        c->plain = true;
        if (pick.half != OTA_HTTP_USERBIN_NONE)
            c->half = pick.half == OTA_HTTP_USERBIN_USER2 ? "user2" : "user1";
        if (pick.at.found) /* the download goes into that board's history */
            snprintf(c->mac, sizeof(c->mac), "%s", pick.at.b.mac);
        if (fw) {
            img.version = fw->version;
            img.md5 = pick.md5;
            img.size = pick.len;
            img.gzip = fw->gzip && pick.half == OTA_HTTP_USERBIN_NONE;
        }
        ota_http_decide_plain(req, fw ? &img : NULL, &d);
    } else if (!req->has_sta_mac) {
        struct ota_http_policy pol = {.strict = true};
        ota_http_decide(req, NULL, &pol, &d);
    } else {
        const uint8_t *m = req->sta_mac;
        snprintf(c->mac, sizeof(c->mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3],
                 m[4], m[5]);
        snprintf(c->sketch_md5, sizeof(c->sketch_md5), "%s", req->sketch_md5);
        struct records_board b;
        bool known = records_board_get(rec, c->mac, &b, NULL) == 0;
        struct ota_http_policy pol = {.strict = cfg->ota.strict,
                                      .unknown = cfg->ota.enrol_unknown ? OTA_HTTP_UNKNOWN_ENROL
                                                                        : OTA_HTTP_UNKNOWN_REFUSE};
        char problem[300] = "";
        struct ota_http_board hb;
        memset(&hb, 0, sizeof(hb));
        struct records_board_ota bo;
        bool have_bo = known && records_board_ota_get(rec, c->mac, &bo, NULL) == 0;
        fs_mode = req->mode == OTA_HTTP_MODE_SPIFFS;
        /* An unknown board under "enrol" is answered as a known one: its record is made
         * from this check-in (chip from the header prefix), and its target is the
         * profile's for that chip. A sketch that checks in only in setup() gets its
         * update on this first check-in, not on one that may never come. */
        bool enrolling = !known && cfg->ota.enrol_unknown;
        /* Credentials (profile checkin_auth): right ones confirm the address this check-in
         * comes from; wrong ones, or none when the profile requires them, are refused. */
        const struct config_profile *prof = config_profile(cfg, NULL);
        int auth = checkin_auth(cfg, req);
        if (auth < 0 || (auth == 0 && prof && prof->checkin_user && prof->checkin_required)) {
            refuse = 403;
            snprintf(refuse_text, sizeof(refuse_text), "%s\n",
                     auth < 0 ? "wrong check-in credentials (profile checkin_auth)"
                              : "check-in credentials required (profile checkin_auth)");
            auth_refused(o, c->ip, c->mac,
                         auth < 0 ? "wrong credentials" : "no credentials (required)");
            goto answer;
        }
        enum board_addr_source src = auth > 0 ? BOARD_ADDR_CHECKIN_AUTH : BOARD_ADDR_CHECKIN;
        if (enrolling && auth == 0 &&
            (refuse = enrol_gate(o, c->mac, c->ip, refuse_text, sizeof(refuse_text))) != 0)
            goto answer;
        if (enrolling) {
            records_board_init(&b);
            snprintf(c->mac, sizeof(c->mac), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2],
                     m[3], m[4], m[5]);
            snprintf(b.mac, sizeof(b.mac), "%s", c->mac);
            snprintf(b.chip, sizeof(b.chip), "%s",
                     req->header_chip == OTA_CHIP_ESP8266 ? "ESP8266" : "ESP32");
        }
        if ((known || enrolling) && fs_mode) {
            /* The filesystem image of the target set (ESP8266httpUpdate::updateFS /
             * HTTPUpdate::updateSpiffs). Served once per set: no version to compare. */
            hb.known = known;
            char ref[RECORDS_FIRMWARE_LEN];
            ota_target_of(o, &b, ref, sizeof(ref), NULL);
            char ferr[256] = "";
            int frc = ref[0] ? ota_fw_get(o, ref, &fw, ferr, sizeof(ferr)) : 0;
            if (frc < 0) {
                snprintf(problem, sizeof(problem), "target %s: %s", ref, ferr);
                fetching = frc == -EAGAIN;
            } else if (fw && (frc = ota_fw_fs_policy(o, fw, ferr, sizeof(ferr))) < 0) {
                snprintf(problem, sizeof(problem), "%s", ferr);
                fs_missing = frc == -ENOENT;
            } else if (fw) {
                fsimg.md5 = fw->fs_md5;
                fsimg.size = fw->fs_size;
                hb.fs_target = &fsimg;
                if (fs_served(o, c->mac, fw->ref))
                    hb.served_md5 = fw->fs_md5;
            }
        } else if (known || enrolling) {
            hb.known = known;
            char ref[RECORDS_FIRMWARE_LEN];
            ota_target_of(o, &b, ref, sizeof(ref), NULL);
            char ferr[256] = "";
            int grc = ref[0] ? ota_fw_get(o, ref, &fw, ferr, sizeof(ferr)) : 0;
            if (grc < 0) {
                snprintf(problem, sizeof(problem), "target %s: %s", ref, ferr);
                fetching = grc == -EAGAIN;
            } else if (fw && ota_fw_policy(o, fw, ferr, sizeof(ferr)) < 0) {
                snprintf(problem, sizeof(problem), "%s", ferr);
                ota_fw_unref(fw);
                fw = NULL;
            } else if (fw && fw->dual) {
                /* user1/user2 V2 images: the Arduino updater would refuse them (not 0xE9) */
                snprintf(problem, sizeof(problem),
                         "target %s is an ESP8266 NONOS dual-image set, which the Arduino "
                         "updater cannot take: push it with method \"tcp\" or let the board "
                         "fetch /ota/fw/%s/%s/user1.bin or user2.bin",
                         fw->ref, fw->name, fw->version);
                ota_fw_unref(fw);
                fw = NULL;
            }
            if (fw) {
                img.version = fw->version;
                img.md5 = fw->md5;
                img.size = fw->size;
                img.gzip = fw->gzip;
                hb.target = &img;
            }
            if (have_bo && bo.served_md5[0]) {
                hb.served_md5 = bo.served_md5;
                hb.served_version = bo.served_version;
                hb.served_from_sketch_md5 = bo.served_sketch_md5;
            }
        }
        ota_http_decide(req, known || enrolling ? &hb : NULL, &pol, &d);
        if (fs_missing && d.action == OTA_HTTP_NOT_MODIFIED) {
            /* A clear refusal (the updater reports 404 as "file not found"), not "nothing
             * new": the board asks for a filesystem image its target set does not have. */
            d.action = OTA_HTTP_NOT_FOUND;
            d.status = 404;
            d.image = NULL;
            snprintf(d.reason, sizeof(d.reason), "target %s has no filesystem image", fw->ref);
        }
        bool counts = d.action != OTA_HTTP_FORBIDDEN && d.action != OTA_HTTP_BAD_REQUEST &&
                      d.action != OTA_HTTP_METHOD_NOT_ALLOWED && (known || d.enrol);
        /* A known board's address first: a check-in without credentials from somewhere
         * other than its confirmed address changes nothing but the claim (board_addr.h). */
        if (counts && known)
            c->claim = board_addr_note(o->st, c->mac, c->ip, src, NULL, 0) == BOARD_ADDR_CLAIM;
        if (counts && !c->claim)
            update_board(o, c, req, &b, known, &d, problem[0] ? problem : NULL, src);
        if (problem[0] && counts && !c->claim && !fetching)
            ota_bulk_on_pull_problem(o, c->mac, problem);
        if (fetching && d.action != OTA_HTTP_FORBIDDEN && d.action != OTA_HTTP_BAD_REQUEST) {
            /* The target is on its way from another station of the line (line_fw.h). A 5xx,
             * not 304: ESP8266httpUpdate and HTTPUpdate both end such an answer as
             * HTTP_UPDATE_FAILED (HTTP_UE_SERVER_WRONG_HTTP_CODE), keep the running sketch
             * and check in again at the sketch's next interval, while 304 would say "no
             * update" (HTTP_UPDATE_NO_UPDATES): the board is told it is current. */
            refuse = 503;
            snprintf(refuse_text, sizeof(refuse_text), "%s; check in again shortly\n", problem);
        }
        if (!known && d.enrol) {
            log_board(LOG_LEVEL_INFO, NULL, c->mac, "enrolled by check-in from %s: %d (%s)", c->ip,
                      d.status, d.reason);
        }
        log_board(LOG_LEVEL_DEBUG, NULL, c->mac, "check-in from %s: %d (%s)", c->ip, d.status,
                  d.reason);
    }

answer:
    if (refuse) {
        d.action = OTA_HTTP_FORBIDDEN; /* nothing is served */
        count_checkin(o, refuse);
        answer_text(c, refuse, refuse_text);
    } else {
        count_checkin(o, d.status);
        int n = ota_http_format_response(&d, c->head, sizeof(c->head));
        if (n < 0)
            answer_text(c, 500, "internal error\n");
        else
            c->head_len = (size_t)n;
    }
    if (d.action == OTA_HTTP_SERVE && fw && strcmp(req->method, "HEAD") != 0) {
        c->fw = ota_fw_ref(fw);
        c->fs = fs_mode && d.image == &fsimg;
        c->body = c->fs ? fw->fs_data : fw->data;
        c->body_len = c->fs ? fw->fs_size : fw->size;
        if (pick.body) { /* plain GET: the app or the user1/user2 half it named */
            c->body = pick.body;
            c->body_len = pick.len;
        }
        c->record_served = d.record_served;
        if (c->record_served && c->mac[0] && !c->claim) {
            struct records_job_new jn = {.kind = c->fs ? "ota-pull-fs" : "ota-pull",
                                         .board_mac = c->mac,
                                         .firmware = fw->ref,
                                         .stage = "transfer"};
            if (records_job_begin(rec, &jn, &c->job_id, NULL) < 0) {
                c->job_id = 0;
            } else {
                char line[400];
                snprintf(line, sizeof(line), "%s image of %s (%zu bytes, md5 %s): %s%s",
                         c->half ? c->half
                         : c->fs ? "filesystem"
                                 : "app",
                         fw->ref, c->body_len,
                         c->fs       ? fw->fs_md5
                         : pick.body ? pick.md5
                                     : fw->md5,
                         d.reason, c->plain ? " (plain GET from the board's address)" : "");
                records_job_log(rec, c->job_id, "info", line, NULL);
            }
        }
    }
    ota_fw_unref(fw);
    c->writing = true;
    loop_del_fd(o->loop, c->fd);
    if (loop_add_fd(o->loop, c->fd, EPOLLOUT, conn_io, c) < 0) {
        conn_close(c);
        return;
    }
    conn_write(c);
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
            conn_close(c);
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
        conn_close(c);
        return;
    }
    struct ota_http_request req;
    struct ota_error oe;
    ota_error_clear(&oe);
    int rc = ota_http_parse_request(c->in, c->in_len, &req, &oe);
    if (rc == 0 && eof) { /* closed mid-head: nobody is left to answer */
        conn_close(c);
        return;
    }
    if (rc == 0 && c->in_len < sizeof(c->in))
        return; /* more bytes needed */
    if (rc <= 0) {
        count_checkin(c->o, 400);
        answer_text(c, 400, rc == -EMSGSIZE ? "request head too large\n" : "malformed request\n");
        c->writing = true;
        loop_del_fd(c->o->loop, c->fd);
        if (loop_add_fd(c->o->loop, c->fd, EPOLLOUT, conn_io, c) < 0) {
            conn_close(c);
            return;
        }
        conn_write(c);
        return;
    }
    handle_request(c, &req);
}

static void conn_io(void *ctx, int fd, uint32_t events)
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
            conn_write(c);
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
    conn_close(victim);
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
            count_checkin(o, 503);
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
        if (loop_add_fd(o->loop, cfd, EPOLLIN, conn_io, c) < 0) {
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
            conn_close(c);
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
        log_msg(LOG_LEVEL_ERROR,
                "%s; the OTA update endpoint keeps %s until the files are fixed "
                "and the configuration reloaded (SIGHUP)",
                err, o->tls ? "the certificate it had" : "speaking plain HTTP");
        return;
    }
    log_msg(LOG_LEVEL_NOTICE, "ota.tls reloaded: the OTA update endpoint speaks HTTPS with %s",
            ota_tls_info(t));
    if (ota_tls_warning(t)[0])
        log_msg(LOG_LEVEL_WARN, "ota.tls: %s", ota_tls_warning(t));
    ota_tls_free(o->tls); /* connections in flight hold their own reference */
    o->tls = t;
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
        conn_close(o->conns);
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
