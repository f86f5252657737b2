/*
 * api: the REST API's router and handlers, without sockets (the route table and
 * the policy checks: routes.h; the handlers: api.c, api_ota.c).
 *
 * api_handle() takes one request (method, decoded path, query arguments, the
 * few headers that matter, the body) and fills a response (status, body,
 * content type, extra headers). It runs on the loop thread, calls the station
 * directly and never blocks on a device: long actions start jobs and answer
 * 202. The HTTP layer (http.c) feeds it from libmicrohttpd; the fuzz target
 * feeds it bytes. Two kinds of request are only *classified* here and served
 * by the HTTP layer: the event stream (resp->sse) and multipart firmware
 * uploads (api_upload_precheck()).
 *
 * Invariants: every answer that is not 2xx/3xx carries the JSON error object
 * {"error": {"code", "message", ...}}; no input (path, query, header, body)
 * is trusted: sizes are bounded, names are checked before they reach a path.
 * With dry_run (the fuzz target), requests are validated completely but the
 * actions that would start threads or touch devices (attach, jobs, cancel,
 * detach) are not executed.
 */
#ifndef ESPSTATION_API_H
#define ESPSTATION_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct station;
struct records_event;
struct slot;
struct json_object;

/* Largest JSON body accepted (uploads are limited by api.max_body_bytes only). */
#define API_MAX_JSON_BODY (1024u * 1024u)

struct api_kv {
    const char *key;
    const char *value; /* NULL for a key without '=' */
};

struct api_request {
    const char *method; /* "GET", ... */
    const char *path;   /* percent-decoded, without the query */
    const struct api_kv *args;
    size_t n_args;
    const char *content_type;  /* NULL when absent */
    const char *authorization; /* NULL when absent */
    const char *last_event_id; /* NULL when absent */
    const char *host;          /* Host header; NULL when absent */
    const char *origin;        /* Origin header (browsers); NULL when absent */
    const char *fetch_site;    /* Sec-Fetch-Site header (browsers); NULL when absent */
    bool loopback;             /* the client connects from 127.0.0.0/8 or ::1 */
    const char *body;
    size_t body_len;
};

struct api_response {
    int status;
    char *body; /* malloc'd, may be NULL */
    size_t len;
    const char *content_type; /* static string */
    char location[128];
    char allow[64];
    char disposition[96];
    bool auth_challenge; /* send WWW-Authenticate: Bearer */
    bool no_store;       /* Cache-Control: no-store (default for API answers) */
    /* The event stream: the caller serves it when sse is true (status 200). */
    bool sse;
    int64_t sse_after; /* replay events with id > sse_after; -1 = only new ones */
};

/* Counters kept for /metrics (updated from the station hooks and the HTTP layer). */
#define API_DURATION_BUCKETS 9
struct api_metrics {
    uint64_t http_by_class[6]; /* index = status / 100 */
    uint64_t flash_bytes;
    uint64_t duration_buckets[API_DURATION_BUCKETS + 1]; /* cumulative-free counts; last = +Inf */
    double duration_sum;
    uint64_t duration_count;
    struct api_job_count {
        char kind[16];
        char result[16];
        uint64_t n;
    } jobs[64];
    size_t n_jobs;
    int sse_clients;
    int64_t last_event_id;
};

struct api;

/* NULL on allocation failure. station is borrowed. */
struct api *api_new(struct station *st);
void api_free(struct api *a); /* NULL allowed */
void api_set_dry_run(struct api *a, bool dry_run);
/* api.tls: the not-after (seconds since the epoch) and subject of the certificate new
 * connections get, for /metrics and GET /api/v1/line's "tls"; 0 plain HTTP. */
void api_set_tls_expiry(struct api *a, int64_t not_after_s, const char *subject);
/* The certificates that expire within API_TLS_WARN_DAYS (or have expired): a warning (an
 * error once expired) in the log and a tls.expiring event each. Called at start (the
 * daily timer's first tick), once a day and after a reload (web/http.c). */
#define API_TLS_WARN_DAYS 14
void api_tls_check(struct api *a);
struct api_metrics *api_metrics(struct api *a);

/* Something changed in the station (an event, a slot): cached answers are stale. */
void api_invalidate(struct api *a);

/* Counts a finished job from a "job.finished" event (metrics). */
void api_note_event(struct api *a, const struct records_event *e);

/* Handles one request. Always fills resp (status >= 200) unless resp->sse. */
void api_handle(struct api *a, const struct api_request *rq, struct api_response *resp);

/*
 * For POST /api/v1/firmware and /api/v1/firmware/validate: checks auth and the
 * content type. Returns 1 (and *validate_only, *replace) when the HTTP layer
 * should stream the multipart body; 0 when resp holds the answer (an error, or
 * the route is not an upload route and api_handle() must be called instead).
 */
int api_upload_precheck(struct api *a, const struct api_request *rq, struct api_response *resp,
                        bool *validate_only, bool *replace);

/* Fills resp with the JSON error object. Returns status. */
int api_error(struct api_response *resp, int status, const char *code, const char *field,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Normalises a MAC of len characters (any case, ':' or '-') to "aa:bb:cc:dd:ee:ff" in out
 * (18 bytes). 0, or -EINVAL when it is not a MAC. */
int api_parse_mac(const char *s, size_t len, char out[18]);

/* Sets resp's body to the JSON text of o (consumed) with status. */
void api_json(struct api_response *resp, int status, struct json_object *o);

void api_response_init(struct api_response *resp);
void api_response_free(struct api_response *resp); /* frees body; reusable */

/* JSON views shared with the event stream (new objects, owned by the caller). */
struct json_object *api_slot_json(struct station *st, const struct slot *s);
struct json_object *api_event_json(const struct records_event *e);
/* A catalog set: index.json (sizes, hashes) + manifest.json. NULL when absent. */
struct json_object *api_firmware_json(struct station *st, const char *name, const char *version);

/* Parses a raw "a=b&c=%20d" query into args (decoded in place in buf; at most max).
 * For callers without an HTTP library (the fuzz target). Returns the count. */
size_t api_parse_query(char *buf, struct api_kv *args, size_t max);

/* Percent-decodes s in place ('+' stays '+' in paths); a decoded NUL becomes 0x7F, a
 * control byte the router refuses, as the HTTP layer does. Returns s. */
char *api_unescape(char *s);

/* Parses the request body as a JSON object (answers 4xx itself; non-zero then). */
int api_body_object(const struct api_request *rq, struct api_response *resp, bool allow_empty,
                    struct json_object **out);

#endif
