/*
 * http: libmicrohttpd in external-epoll mode inside the daemon's loop, the
 * request flow (headers -> body -> api_handle), the status page files.
 *
 * Invariants:
 *  - Loop thread only. MHD_run() is called from the epoll-fd handler and the
 *    MHD timer; a resume (event stream, finished upload) only arms that timer
 *    ("kick"), so MHD_run() is never re-entered.
 *  - Every answer is produced by api_handle(), by this file's static-file
 *    code or by http_head.c (a request head too large: JSON 431), and every
 *    error is the JSON error object (MHD's own, built-in answers -- e.g. for a
 *    malformed header line, or an oversized head over HTTPS -- are the one
 *    exception libmicrohttpd 0.9 does not let us replace).
 *  - A body larger than api.max_body_bytes is refused with 413 as soon as
 *    Content-Length says so, else when it crosses the limit (the rest is
 *    discarded, nothing is buffered beyond the limit).
 *  - At most w->max_conns connections (the fd budget's REST API cap, see
 *    daemon/fdbudget.h), each closed after api.idle_timeout_s without I/O. A
 *    full server still answers a newcomer: reaching the cap closes the
 *    longest-idle connection (one waiting for a request, or whose request body
 *    stalled), never one inside an event stream or an upload being validated.
 *    Event streams take at most half the cap.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "ota_tls.h"
#include "routes.h"
#include "station.h"
#include "web_priv.h"

#ifndef ESPSTATION_WEB_ROOT
#define ESPSTATION_WEB_ROOT ""
#endif

#define MAX_ARGS 64            /* query parameters; more are refused (400) */
#define MAX_URL WEB_MAX_TARGET /* request target; longer: 414, see docs/API.md "Limits" */

#define EVICT_STALL_MS 10000         /* a request body silent this long may be closed at the cap */
#define EVICT_LOG_MS 60000           /* at most one "at its cap" warning per minute */
#define HTTP_CONN_MEMORY (32 * 1024) /* per connection: request head + I/O buffers */
#define LISTEN_RETRY_MS 5000

struct req {
    bool started; /* on_request has seen the request (r may come from on_uri) */
    bool api;
    bool dispatched;
    size_t n_query; /* query parameters counted by on_uri when more than MAX_ARGS */
    bool url_long;  /* the request target is longer than MAX_URL */
    char *body;
    size_t len, cap;
    bool too_big;
    struct upload *up;
    bool upload_waiting; /* suspended while the validation thread runs */
};

/* ---- the MHD run loop ------------------------------------------------------------------ */

static void schedule(struct web *w)
{
    if (w->kick_pending) {
        loop_timer_arm(w->mhd_timer, 1, 0);
        return;
    }
    MHD_UNSIGNED_LONG_LONG to = 0;
    if (MHD_get_timeout(w->d, &to) == MHD_YES)
        loop_timer_arm(w->mhd_timer, to < 1 ? 1 : (int64_t)(to > 600000 ? 600000 : to), 0);
    else
        loop_timer_disarm(w->mhd_timer);
}

static void run_mhd(struct web *w)
{
    w->kick_pending = false;
    w->in_run = true;
    MHD_run(w->d);
    w->in_run = false;
    schedule(w);
}

static void on_epoll(void *ctx, int fd, uint32_t events)
{
    (void)fd;
    (void)events;
    run_mhd(ctx);
}

static void on_timer(void *ctx)
{
    run_mhd(ctx);
}

void web_kick(struct web *w)
{
    w->kick_pending = true;
    if (!w->in_run)
        loop_timer_arm(w->mhd_timer, 1, 0);
}

/* ---- connections: the cap and making room ------------------------------------------------ */

/* One accepted connection (MHD's socket context). w->conns is ordered by when each became
 * idle (accepted, or its last request answered), oldest first; a busy one keeps its place. */
struct web_conn {
    struct MHD_Connection *c;
    int fd;
    bool busy;     /* a request is being received or answered */
    bool pinned;   /* an event stream, or an upload suspended for validation */
    bool closing;  /* shut down to make room: MHD closes it on its next run */
    int64_t since; /* idle: since when; busy: the request's last activity */
    struct web_conn *prev, *next;
};

static void conn_unlink(struct web *w, struct web_conn *wc)
{
    if (wc->prev)
        wc->prev->next = wc->next;
    else
        w->conns = wc->next;
    if (wc->next)
        wc->next->prev = wc->prev;
    else
        w->conns_tail = wc->prev;
    wc->prev = wc->next = NULL;
}

static void conn_append(struct web *w, struct web_conn *wc)
{
    wc->prev = w->conns_tail;
    wc->next = NULL;
    if (w->conns_tail)
        w->conns_tail->next = wc;
    else
        w->conns = wc;
    w->conns_tail = wc;
}

static struct web_conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* The connection to close for a newcomer: the longest idle, else the longest-stalled
 * request that is not pinned; NULL when every other one is working. */
static struct web_conn *room_victim(struct web *w, const struct web_conn *newcomer)
{
    int64_t now = loop_now_ms();
    struct web_conn *stalled = NULL;
    for (struct web_conn *wc = w->conns; wc; wc = wc->next) {
        if (wc == newcomer || wc->closing || wc->pinned)
            continue;
        if (!wc->busy)
            return wc; /* the list is in idle order: the first idle one is the oldest */
        if (now - wc->since >= EVICT_STALL_MS && (!stalled || wc->since < stalled->since))
            stalled = wc;
    }
    return stalled;
}

/* At the cap: shut the victim down (not close: MHD owns the fd and closes it when it
 * reads the end, which the shutdown makes readable at once). */
static void make_room(struct web *w, struct web_conn *newcomer)
{
    struct web_conn *v = room_victim(w, newcomer);
    /* A connection that has not sent its first request head yet (http_head.c) waits for a
     * request too: the older of it and an idle one goes, before a stalled request. */
    if (head_close_oldest(w, v && !v->busy ? v->since : INT64_MAX)) {
        w->evicted++;
    } else {
        if (!v)
            return; /* no accepting until one ends (or times out) */
        v->closing = true;
        shutdown(v->fd, SHUT_RDWR);
        w->evicted++;
        web_kick(w);
    }
    int64_t now = loop_now_ms();
    if (w->evict_log_ms == 0 || now - w->evict_log_ms >= EVICT_LOG_MS) {
        w->evict_log_ms = now;
        log_msg(LOG_LEVEL_WARN,
                "REST API: %d connections, its cap: closing the longest-idle one to make room "
                "(%llu so far); is a client holding connections open? (cap: see the 'open "
                "files' line at start, api.max_connections)",
                w->n_conns, (unsigned long long)w->evicted);
    }
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct web *w = cls;
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct web_conn *wc = *socket_context;
        if (wc) {
            conn_unlink(w, wc);
            w->n_conns--;
            /* At its limit (or after accept() found no descriptor) MHD took its listener out
             * of its epoll set; it puts it back only at the start of a run, and nothing else
             * may come to start one. */
            web_kick(w);
            free(wc);
            *socket_context = NULL;
            head_resume(w); /* our listener may rest at the cap */
        }
        return;
    }
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct web_conn *wc = calloc(1, sizeof(*wc));
    if (!wc || !ci) {
        free(wc);
        return; /* untracked: never chosen to make room, otherwise served as usual */
    }
    wc->c = c;
    wc->fd = ci->connect_fd;
    wc->since = loop_now_ms();
    conn_append(w, wc);
    w->n_conns++;
    *socket_context = wc;
    if (w->n_conns + w->n_heads >= w->max_conns)
        make_room(w, wc);
}

void web_make_room(struct web *w)
{
    make_room(w, NULL);
}

/* A request began (busy) or moved (more body). */
static void conn_activity(struct MHD_Connection *c)
{
    struct web_conn *wc = conn_of(c);
    if (wc) {
        wc->busy = true;
        wc->since = loop_now_ms();
    }
}

/* ---- responses ---------------------------------------------------------------------------- */

static enum MHD_Result queue_api(struct MHD_Connection *c, struct api_response *resp)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        resp->len, resp->body ? resp->body : (void *)"",
        resp->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        api_response_free(resp);
        return MHD_NO;
    }
    resp->body = NULL; /* owned by the response now */
    resp->len = 0;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            resp->content_type ? resp->content_type : "application/json");
    if (resp->no_store)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (resp->location[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, resp->location);
    if (resp->allow[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, resp->allow);
    if (resp->disposition[0])
        MHD_add_response_header(r, "Content-Disposition", resp->disposition);
    if (resp->auth_challenge)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"espstation\"");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)resp->status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result queue_error(struct web *w, struct MHD_Connection *c, int status,
                                   const char *code, const char *msg)
{
    struct api_response resp;
    api_response_init(&resp);
    api_error(&resp, status, code, NULL, "%s", msg);
    api_metrics(w->api)->http_by_class[status / 100]++;
    return queue_api(c, &resp);
}

/* ---- the status page ------------------------------------------------------------------------ */

static const char *content_type_of(const char *path)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
        {".webmanifest", "application/manifest+json"},
    };
    const char *dot = strrchr(path, '.');
    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcasecmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* A safe relative path under the web root: no "..", no hidden parts, plain characters. */
static bool static_path_ok(const char *rel)
{
    if (!*rel || strlen(rel) > 200)
        return false;
    const char *seg = rel;
    for (const char *p = rel;; p++) {
        if (*p == '/' || *p == '\0') {
            if (p == seg || *seg == '.')
                return false; /* empty segment, ".", "..", hidden files */
            if (*p == '\0')
                return true;
            seg = p + 1;
            continue;
        }
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
}

static enum MHD_Result serve_static(struct web *w, struct MHD_Connection *c, const char *url,
                                    const char *method)
{
    /* A foreign Host is refused here too: a rebound name gets no page to run in. */
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (!api_host_allowed(w->api, host)) {
        struct api_response resp;
        api_response_init(&resp);
        api_host_refused(host, &resp);
        api_metrics(w->api)->http_by_class[4]++;
        return queue_api(c, &resp);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        struct api_response resp;
        api_response_init(&resp);
        snprintf(resp.allow, sizeof(resp.allow), "GET, HEAD");
        api_error(&resp, 405, "method_not_allowed", NULL, "the status page is read-only");
        api_metrics(w->api)->http_by_class[4]++;
        return queue_api(c, &resp);
    }
    const char *rel = url + 1;
    if (strcmp(url, "/") == 0 || strcmp(url, "/static/") == 0)
        rel = "index.html";
    else if (strncmp(url, "/static/", 8) == 0)
        rel = url + 8;
    if (!w->root[0])
        return queue_error(w, c, 404, "not_found",
                           "no status page directory (start espstationd with --web-root DIR)");
    if (!static_path_ok(rel))
        return queue_error(w, c, 404, "not_found", "no such file");
    char path[PATH_MAX + 256];
    snprintf(path, sizeof(path), "%s/%s", w->root, rel);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0)
            close(fd);
        return queue_error(w, c, 404, "not_found", "no such file");
    }
    char lm[64];
    struct tm tm;
    time_t mt = sb.st_mtime;
    gmtime_r(&mt, &tm);
    strftime(lm, sizeof(lm), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    bool index = strcmp(rel, "index.html") == 0;
    const char *ims =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MODIFIED_SINCE);
    struct MHD_Response *r;
    unsigned status = MHD_HTTP_OK;
    if (ims && strcmp(ims, lm) == 0) {
        close(fd);
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_MODIFIED;
    } else {
        r = MHD_create_response_from_fd((uint64_t)sb.st_size, fd);
        if (!r)
            close(fd);
    }
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type_of(rel));
    MHD_add_response_header(r, MHD_HTTP_HEADER_LAST_MODIFIED, lm);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, index ? "no-cache" : "max-age=300");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    api_metrics(w->api)->http_by_class[status / 100]++;
    return rc;
}

/* ---- requests ------------------------------------------------------------------------------ */

struct args {
    struct api_kv v[MAX_ARGS];
    size_t n;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct args *a = cls;
    if (a->n < MAX_ARGS) {
        a->v[a->n].key = key;
        a->v[a->n].value = value;
        a->n++;
    }
    return MHD_YES;
}

static bool is_loopback(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            return in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

static void fill_request(struct MHD_Connection *c, const char *url, const char *method,
                         struct args *args, struct api_request *rq)
{
    memset(rq, 0, sizeof(*rq));
    args->n = 0;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, args);
    rq->method = method;
    rq->path = url;
    rq->args = args->v;
    rq->n_args = args->n;
    rq->content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    rq->authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    rq->last_event_id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
    rq->host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    rq->origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    rq->fetch_site = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Sec-Fetch-Site");
    rq->loopback = is_loopback(c);
}

static enum MHD_Result dispatch(struct web *w, struct MHD_Connection *c, struct req *r,
                                const char *url, const char *method)
{
    struct args args;
    struct api_request rq;
    fill_request(c, url, method, &args, &rq);
    rq.body = r->body;
    rq.body_len = r->len;
    struct api_response resp;
    api_handle(w->api, &rq, &resp);
    r->dispatched = true;
    if (resp.sse) {
        /* Streams hold their connection for good: half the cap stays for requests. */
        int max_streams = w->max_conns / 2 > 0 ? w->max_conns / 2 : 1;
        if (w->n_clients >= max_streams) {
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "%d event streams are open, the most this station serves; close one "
                     "(another tab?) and retry",
                     w->n_clients);
            return queue_error(w, c, 503, "unavailable", msg);
        }
        struct web_conn *wc = conn_of(c);
        if (wc)
            wc->pinned = true;
        struct MHD_Response *sr = sse_response(w, c, resp.sse_after);
        if (!sr)
            return queue_error(w, c, 503, "unavailable", "cannot open the event stream");
        enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, sr);
        MHD_destroy_response(sr);
        api_metrics(w->api)->http_by_class[2]++;
        return rc;
    }
    return queue_api(c, &resp);
}

static size_t body_limit(struct web *w)
{
    return station_config(w->st)->api.max_body_bytes;
}

static enum MHD_Result too_large(struct web *w, struct MHD_Connection *c)
{
    char msg[160];
    snprintf(msg, sizeof(msg), "the request body is larger than api.max_body_bytes (%zu bytes)",
             body_limit(w));
    return queue_error(w, c, 413, "payload_too_large", msg);
}

/*
 * MHD_OPTION_URI_LOG_CALLBACK: the raw request target, before MHD splits off the query and
 * decodes it. MHD keeps every query parameter in the connection's memory (32 KiB, with the
 * request head and the answer's head): about 500 of them left no room for any answer, not
 * even MHD's own error page, and the client got nothing. More than MAX_ARGS are counted
 * here and the query is cut at its first byte so that MHD stores none of them (the target
 * is in MHD's read buffer, ours to change before it is parsed: "processing the URI" is
 * what this callback is for); on_request then answers 400.
 */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    struct req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->url_long = strlen(uri) > MAX_URL;
    const char *q = strchr(uri, '?');
    if (q) {
        size_t n = 1;
        for (const char *p = q + 1; *p; p++)
            n += *p == '&';
        if (n > MAX_ARGS) {
            r->n_query = n;
            *(char *)(uintptr_t)(q + 1) = '\0';
        }
    }
    return r;
}

/*
 * MHD_OPTION_UNESCAPE_CALLBACK: %HH decoding of the path and of query keys and values, as
 * MHD's own, except that a decoded NUL becomes 0x7F: the path reaches on_request as a C
 * string, where %00 cut it short (DELETE /api/v1/firmware/app/1.0%00.json deleted app@1.0).
 * 0x7F is a control byte like the others (%01-%1F), which the API refuses (400).
 */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *p = s; *p; p++) {
        if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char hex[3] = {p[1], p[2], '\0'};
            char ch = (char)strtol(hex, NULL, 16);
            *w++ = ch ? ch : (char)0x7f;
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* A NUL or control byte (decoded) in s. */
static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* Refusals decided from the request line alone (the request target). */
static enum MHD_Result refuse_target(struct web *w, struct MHD_Connection *c, struct req *r,
                                     const char *url)
{
    char msg[200];
    r->dispatched = true;
    if (r->url_long) {
        snprintf(msg, sizeof(msg), "the request target is longer than %d bytes", MAX_URL);
        return queue_error(w, c, 414, "uri_too_long", msg);
    }
    if (r->n_query) {
        snprintf(msg, sizeof(msg), "%zu query parameters: at most %d are accepted", r->n_query,
                 MAX_ARGS);
        return queue_error(w, c, 400, "bad_request", msg);
    }
    (void)url;
    return queue_error(w, c, 400, "bad_request",
                       "the path holds a NUL or control byte (%00-%1F, %7F): refused");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct web *w = cls;
    struct req *r = *con_cls;
    conn_activity(c);
    if (!r) {
        r = calloc(1, sizeof(*r)); /* on_uri had no memory */
        if (!r)
            return MHD_NO;
        *con_cls = r;
    }
    if (!r->started) {
        r->started = true;
        if (r->url_long || r->n_query || has_control(url))
            return refuse_target(w, c, r, url);
        r->api = strncmp(url, "/api/", 5) == 0 || strcmp(url, "/metrics") == 0;
        /* Answers are queued once the request is complete (an answer queued earlier makes
         * MHD close the connection: no keep-alive). Only refusals go out at once. */
        if (!r->api)
            return MHD_YES;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        unsigned long long clen = cl ? strtoull(cl, NULL, 10) : 0;
        if (cl && clen > body_limit(w)) {
            r->dispatched = true;
            return too_large(w, c);
        }
        if (strcmp(method, "POST") == 0) {
            struct args args;
            struct api_request rq;
            struct api_response resp;
            bool validate_only = false, replace = false;
            fill_request(c, url, method, &args, &rq);
            int up = api_upload_precheck(w->api, &rq, &resp, &validate_only, &replace);
            if (up == 1) {
                r->up = upload_begin(w, c, validate_only, replace, &resp);
                if (!r->up) {
                    r->dispatched = true;
                    api_metrics(w->api)->http_by_class[resp.status / 100]++;
                    return queue_api(c, &resp);
                }
                return MHD_YES;
            }
            if (resp.status) {
                r->dispatched = true;
                api_metrics(w->api)->http_by_class[resp.status / 100]++;
                return queue_api(c, &resp);
            }
        }
        return MHD_YES;
    }
    if (r->dispatched) {
        *upload_data_size = 0; /* an answer is queued: the rest is discarded */
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->up) {
            upload_feed(r->up, upload_data, n);
            return MHD_YES;
        }
        if (r->too_big || r->len + n > body_limit(w)) {
            r->too_big = true;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = r->cap ? r->cap : 4096;
            while (cap < r->len + n + 1)
                cap *= 2;
            char *nb = realloc(r->body, cap);
            if (!nb)
                return MHD_NO;
            r->body = nb;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    /* The whole request is here. */
    if (!r->api) {
        r->dispatched = true;
        return serve_static(w, c, url, method);
    }
    if (r->up) {
        struct api_response resp;
        api_response_init(&resp);
        if (!r->upload_waiting) {
            if (upload_finish(r->up, &resp) == 1) {
                r->upload_waiting = true;
                struct web_conn *wc = conn_of(c);
                if (wc)
                    wc->pinned = true; /* validating: silent, not stalled */
                MHD_suspend_connection(c);
                return MHD_YES;
            }
        } else {
            upload_finish(r->up, &resp); /* after the resume: the thread's answer */
        }
        r->dispatched = true;
        api_metrics(w->api)->http_by_class[resp.status / 100]++;
        return queue_api(c, &resp);
    }
    if (r->too_big) {
        r->dispatched = true;
        return too_large(w, c);
    }
    return dispatch(w, c, r, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct web *w = cls;
    (void)toe;
    struct web_conn *wc = conn_of(c);
    if (wc) {
        /* idle again (keep-alive): the newest idle one */
        wc->busy = wc->pinned = false;
        wc->since = loop_now_ms();
        conn_unlink(w, wc);
        conn_append(w, wc);
    }
    struct req *r = *con_cls;
    if (!r)
        return;
    upload_free(r->up);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    log_msg(LOG_LEVEL_DEBUG, "http: %s", line);
    if (cls) /* the last one, for a start that fails (e.g. GnuTLS refusing api.tls) */
        snprintf(((struct web *)cls)->mhd_error, sizeof(((struct web *)cls)->mhd_error), "%s",
                 line);
}

/* ---- life cycle ------------------------------------------------------------------------------ */

static int parse_listen(const char *listen, char *host, size_t hostlen, uint16_t *port)
{
    const char *colon;
    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');
        if (!end || end[1] != ':')
            return -EINVAL;
        snprintf(host, hostlen, "%.*s", (int)(end - listen - 1), listen + 1);
        colon = end + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return -EINVAL;
        snprintf(host, hostlen, "%.*s", (int)(colon - listen), listen);
    }
    char *e;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &e, 10);
    if (errno || *e || e == colon + 1 || p > 65535)
        return -EINVAL;
    *port = (uint16_t)p;
    return 0;
}

static void write_port_file(const char *path, uint16_t port, const char *host)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        log_msg(LOG_LEVEL_WARN, "cannot write the port file %s: %s", path, strerror(errno));
        return;
    }
    fprintf(f, "%u\n", port);
    (void)host;
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        log_msg(LOG_LEVEL_WARN, "cannot write the port file %s: %s", path, strerror(errno));
}

/* api.tls: the pair read and checked (http_tls.c) and kept for libmicrohttpd, which speaks
 * TLS through GnuTLS, for every start (a retried listen too) and every handshake. 0 or
 * -errno with err. */
static int load_tls(struct web *w, const struct config *cfg, char *err, size_t errlen)
{
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        snprintf(err, errlen,
                 "api.tls: this libmicrohttpd was built without TLS (GnuTLS): use one built with "
                 "it (Debian's is), or remove api.tls and put a TLS reverse proxy in front of "
                 "the REST API");
        return -ENOTSUP;
    }
    int rc = web_tls_load(cfg->api.tls.cert, cfg->api.tls.key, &w->tls, err, errlen);
    if (rc < 0)
        return rc;
    const struct tls_pair *p = web_tls_pair(w->tls);
    web_tls_serve(w->tls);
    w->tls_reloadable = web_tls_reloadable();
    api_set_tls_expiry(w->api, p->not_after_s, p->subject);
    log_msg(LOG_LEVEL_NOTICE, "status page and REST API speak HTTPS only (api.tls): %s", p->info);
    if (p->warn[0])
        log_msg(LOG_LEVEL_WARN, "api.tls: %s", p->warn);
    if (!w->tls_reloadable)
        log_msg(LOG_LEVEL_WARN,
                "api.tls: this libmicrohttpd lacks MHD_OPTION_HTTPS_CERT_CALLBACK2: a renewed "
                "certificate takes effect only after a restart, not on a reload (SIGHUP)");
    return 0;
}

/* Starts MHD on w->addr and adds its epoll fd to the loop. 0 or -errno with err. */
static int start_listening(struct web *w, char *err, size_t errlen)
{
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    /* api.tls: HTTPS only, the pair load_tls() checked handed to every handshake
     * (http_tls.c: a reload swaps it), or given once where MHD cannot ask; TLS 1.2 and 1.3
     * as on the OTA endpoint (GnuTLS's NORMAL would take 1.0 and 1.1 too) */
    const struct tls_pair *tp = w->tls ? web_tls_pair(w->tls) : NULL;
    struct MHD_OptionItem tls_opts[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, tp ? tp->cert_pem : NULL},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, tp ? tp->key_pem : NULL},
        {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"},
        {MHD_OPTION_END, 0, NULL},
    };
    if (w->tls_reloadable) {
        tls_opts[0] =
            (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK2, 0, (void *)web_tls_retrieve};
        tls_opts[1] = tls_opts[2];
        tls_opts[2].option = MHD_OPTION_END;
    }
    if (w->tls)
        flags |= MHD_USE_TLS;
    else
        tls_opts[0].option = MHD_OPTION_END;
    w->mhd_error[0] = '\0';
    if (w->v6)
        flags |= MHD_USE_IPv6;
    uint16_t port = ntohs(w->v6 ? ((struct sockaddr_in6 *)&w->addr)->sin6_port
                                : ((struct sockaddr_in *)&w->addr)->sin_port);
    /* The cap comes from the fd budget (set by main before the servers start; a bare
     * station, as in some tests, gets the configured value). The idle timeout is
     * api.idle_timeout_s: both are taken once, here. */
    const struct config *cfg = station_config(w->st);
    int cap = station_fd_budget(w->st)->api_max;
    w->max_conns = cap > 0 ? cap : cfg->api.max_connections;
    /* Plain HTTP: we listen, and a connection reaches MHD once its first request head is
     * complete and small enough (http_head.c: a larger one gets the JSON 431, not MHD's
     * HTML page). With TLS the head is encrypted: MHD listens itself. */
    uint16_t own_port = 0;
    if (!w->tls) {
        int rc = head_listen(w, &own_port, err, errlen);
        if (rc < 0)
            return rc;
        flags |= MHD_USE_NO_LISTEN_SOCKET;
        flags &= ~(unsigned)MHD_USE_IPv6;
        port = 0;
    }
    errno = 0;
    /* The logger goes first, or MHD prints its option warnings to stderr itself. The
     * connection memory bounds the request head (http_head.c keeps heads to HEAD_MAX so
     * they fit; over HTTPS a larger one gets MHD's own HTML 431/414, see docs/API.md
     * "Errors"): pinned here, not left to MHD's default. */
    w->d = MHD_start_daemon(
        flags, port, NULL, NULL, on_request, w, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, w,
        MHD_OPTION_SOCK_ADDR, w->tls ? (struct sockaddr *)&w->addr : NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, w, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        w, MHD_OPTION_URI_LOG_CALLBACK, on_uri, w, MHD_OPTION_UNESCAPE_CALLBACK, unescape, w,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)w->max_conns, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)HTTP_CONN_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->api.idle_timeout_s,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!w->d) {
        int e = errno ? errno : EADDRINUSE;
        if (!w->tls) {
            head_stop(w);
            snprintf(err, errlen, "cannot start the HTTP server on %s: %s", w->listen,
                     w->mhd_error[0] ? w->mhd_error : strerror(e));
            return -e;
        }
        if (w->tls && errno != EADDRINUSE && errno != EACCES && errno != EADDRNOTAVAIL) {
            snprintf(err, errlen,
                     "api.tls: the REST API cannot start with %s and %s (%s): check them with "
                     "certtool -i --infile CERT (GnuTLS is what serves them)",
                     station_config(w->st)->api.tls.cert, station_config(w->st)->api.tls.key,
                     w->mhd_error[0] ? w->mhd_error : strerror(e));
            return -EINVAL;
        }
        snprintf(err, errlen, "cannot listen on %s: %s", w->listen, strerror(e));
        return -e;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(w->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pinfo = MHD_get_daemon_info(w->d, MHD_DAEMON_INFO_BIND_PORT);
    w->port = own_port ? own_port : pinfo ? pinfo->port : port;
    if (!info || info->epoll_fd < 0 ||
        loop_add_fd(w->loop, info->epoll_fd, EPOLLIN, on_epoll, w) < 0) {
        snprintf(err, errlen, "cannot watch the HTTP server's epoll fd");
        MHD_stop_daemon(w->d);
        w->d = NULL;
        head_stop(w);
        return -EIO;
    }
    w->epfd = info->epoll_fd;
    schedule(w);
    if (w->port_file[0])
        write_port_file(w->port_file, w->port, w->host);
    log_msg(LOG_LEVEL_NOTICE, "status page and REST API on %s://%s%s%s:%u/ (web root %s)",
            w->tls ? "https" : "http", w->v6 ? "[" : "", w->host, w->v6 ? "]" : "", w->port,
            w->root[0] ? w->root : "(none)");
    return 0;
}

/* A reload (SIGHUP): api.tls's files read again (http_tls.c); then both certificates
 * checked for a coming expiry (ota.tls was re-read by station_reload already). */
static void on_reload(void *ctx)
{
    struct web *w = ctx;
    web_tls_reload(w);
    api_tls_check(w->api);
}

/* Once a day, the first time right after start-up (the OTA endpoint, made after the web
 * server, is up by then): a certificate that expires within 14 days is logged. */
static void on_tls_check(void *ctx)
{
    struct web *w = ctx;
    api_tls_check(w->api);
}

static void retry_listen(void *ctx)
{
    struct web *w = ctx;
    char err[256];
    if (w->d || start_listening(w, err, sizeof(err)) == 0)
        loop_timer_disarm(w->retry_timer);
}

int web_new(struct station *st, struct loop *loop, const struct web_options *o, struct web **out,
            char *err, size_t errlen)
{
    *out = NULL;
    const struct config *cfg = station_config(st);
    const char *listen = o && o->listen ? o->listen : cfg->listen;
    char host[128];
    uint16_t port;
    if (!listen || parse_listen(listen, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen, "--listen: expected HOST:PORT or [V6]:PORT, got \"%s\"",
                 listen ? listen : "");
        return -EINVAL;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    bool v6 = strchr(host, ':') != NULL;
    if (v6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1) {
            snprintf(err, errlen, "listen: \"%s\" is not an IPv6 address", host);
            return -EINVAL;
        }
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        if (strcmp(host, "localhost") == 0)
            snprintf(host, sizeof(host), "127.0.0.1");
        if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &a4->sin_addr) != 1) {
            snprintf(err, errlen, "listen: \"%s\" is not an IPv4 address", host);
            return -EINVAL;
        }
    }

    struct web *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->st = st;
    w->loop = loop;
    w->epfd = -1;
    w->listen_fd = -1;
    w->upload_pipe[0] = w->upload_pipe[1] = -1;
    const char *root = o && o->web_root ? o->web_root : ESPSTATION_WEB_ROOT;
    snprintf(w->root, sizeof(w->root), "%s", root ? root : "");
    w->api = api_new(st);
    w->mhd_timer = loop_timer_new(loop, on_timer, w);
    int rc = -ENOMEM;
    if (!w->api || !w->mhd_timer || (rc = sse_init(w)) < 0 || (rc = upload_init(w)) < 0) {
        snprintf(err, errlen, "cannot set up the web server: %s", strerror(-rc));
        web_free(w);
        return rc;
    }
    memcpy(&w->addr, &ss, sizeof(ss));
    w->v6 = v6;
    snprintf(w->host, sizeof(w->host), "%s", host[0] ? host : "0.0.0.0");
    snprintf(w->listen, sizeof(w->listen), "%s", listen);
    if (o && o->port_file)
        snprintf(w->port_file, sizeof(w->port_file), "%s", o->port_file);
    if (cfg->api.tls.cert && (rc = load_tls(w, cfg, err, errlen)) < 0) {
        web_free(w); /* a bad certificate is a start-up error, never a retry */
        return rc;
    }
    rc = start_listening(w, err, errlen);
    if (rc == -EADDRINUSE && !(o && o->listen)) {
        /* The configured (or default) port is taken: flashing matters more than the page.
         * Keep the station running and try again; an explicit --listen is an error. */
        log_msg(LOG_LEVEL_ERROR,
                "%s: the station runs without its REST API and status page; "
                "retrying every %d s (set listen in the config or use --listen)",
                err, LISTEN_RETRY_MS / 1000);
        w->retry_timer = loop_timer_new(loop, retry_listen, w);
        if (!w->retry_timer ||
            loop_timer_arm(w->retry_timer, LISTEN_RETRY_MS, LISTEN_RETRY_MS) < 0) {
            web_free(w);
            return -ENOMEM;
        }
    } else if (rc < 0) {
        web_free(w);
        return rc;
    }
    struct station_hooks h = {
        .event = sse_on_event, .slot = sse_on_slot, .reload = on_reload, .ctx = w};
    station_set_hooks(st, &h);
    w->tls_check_timer = loop_timer_new(loop, on_tls_check, w);
    if (!w->tls_check_timer || loop_timer_arm(w->tls_check_timer, 1, (int64_t)86400 * 1000) < 0) {
        snprintf(err, errlen, "cannot set up the web server: %s", strerror(ENOMEM));
        web_free(w);
        return -ENOMEM;
    }
    if (!cfg->api.token || !*cfg->api.token)
        log_msg(LOG_LEVEL_WARN,
                "no api.token configured: REST API changes are accepted from this machine "
                "(loopback) only; set api.token in the config to allow them from elsewhere");
    *out = w;
    return 0;
}

uint16_t web_port(const struct web *w)
{
    return w->port;
}

void web_free(struct web *w)
{
    if (!w)
        return;
    station_set_hooks(w->st, NULL);
    head_stop(w);   /* our listener and the connections not yet given to MHD */
    upload_fini(w); /* joins running threads and resumes their connections */
    if (w->d) {
        sse_fini(w); /* resumes every stream so it can end */
        MHD_run(w->d);
        if (w->epfd >= 0)
            loop_del_fd(w->loop, w->epfd);
        MHD_stop_daemon(w->d); /* tells on_connection about every connection it closes */
    } else {
        sse_fini(w);
    }
    while (w->conns) {
        struct web_conn *wc = w->conns;
        conn_unlink(w, wc);
        free(wc);
    }
    loop_timer_free(w->mhd_timer);
    loop_timer_free(w->retry_timer);
    loop_timer_free(w->tls_check_timer);
    loop_timer_free(w->ping_timer);
    loop_timer_free(w->flush_timer);
    free(w->marks);
    api_free(w->api);
    web_tls_free(w->tls);
    free(w);
}
