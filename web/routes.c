/*
 * routes: see routes.h. The route table, the matcher, the dispatcher and the
 * policy checks (authentication). Handlers live in api.c and api_ota.c.
 */
#include "routes.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <json-c/json.h>

#include "api_priv.h"
#include "bundle.h"
#include "config.h"
#include "ota_routes.h"
#include "station.h"

static API_HANDLER(api_h_routes);

/* clang-format off */
const struct route api_routes[] = {
    /* method   pattern                                    policy        flags          handler */
    {"GET",    "/metrics",                                ROUTE_READ,   0,             api_h_metrics},
    {"GET",    "/api/v1/routes",                          ROUTE_READ,   0,             api_h_routes},
    {"GET",    "/api/v1/slots",                           ROUTE_READ,   0,             api_h_slots},
    {"GET",    "/api/v1/slots/{id*}",                     ROUTE_READ,   0,             api_h_slot},
    {"POST",   "/api/v1/slots/{id*}/reflash",             ROUTE_CHANGE, 0,             api_h_slot_action},
    {"POST",   "/api/v1/slots/{id*}/erase",               ROUTE_CHANGE, 0,             api_h_slot_action},
    {"POST",   "/api/v1/slots/{id*}/info",                ROUTE_CHANGE, 0,             api_h_slot_action},
    {"POST",   "/api/v1/slots/{id*}/reset",               ROUTE_CHANGE, 0,             api_h_slot_action},
    {"POST",   "/api/v1/slots/{id*}/reset-baud",          ROUTE_CHANGE, 0,             api_h_slot_reset_baud},
    {"POST",   "/api/v1/ports",                           ROUTE_CHANGE, 0,             api_h_port_attach},
    {"DELETE", "/api/v1/ports/{id*}",                     ROUTE_CHANGE, 0,             api_h_port_detach},
    {"GET",    "/api/v1/boards",                          ROUTE_READ,   0,             api_h_boards},
    {"GET",    "/api/v1/boards/{mac}",                    ROUTE_READ,   0,             api_h_board},
    {"PUT",    "/api/v1/boards/{mac}",                    ROUTE_CHANGE, 0,             api_h_board_put},
    {"PUT",    "/api/v1/boards/{mac}/target",             ROUTE_CHANGE, 0,             api_h_board_target},
    {"POST",   "/api/v1/boards/{mac}/address",            ROUTE_CHANGE, 0,             api_h_board_address},
    {"GET",    "/api/v1/boards/{mac}/ota",                ROUTE_READ,   0,             api_h_board_ota},
    {"POST",   "/api/v1/boards/{mac}/ota",                ROUTE_CHANGE, 0,             api_h_board_ota_push},
    {"GET",    "/api/v1/bulk",                            ROUTE_READ,   0,             api_h_bulk_list},
    {"POST",   "/api/v1/bulk",                            ROUTE_CHANGE, 0,             api_h_bulk_start},
    {"GET",    "/api/v1/bulk/{id}",                       ROUTE_READ,   0,             api_h_bulk},
    {"POST",   "/api/v1/bulk/{id}/cancel",                ROUTE_CHANGE, 0,             api_h_bulk_cancel},
    {"GET",    "/api/v1/pools",                           ROUTE_READ,   0,             api_h_pools},
    {"GET",    "/api/v1/jobs",                            ROUTE_READ,   0,             api_h_jobs},
    {"POST",   "/api/v1/jobs",                            ROUTE_CHANGE, 0,             api_h_job_start},
    {"GET",    "/api/v1/jobs/{id}",                       ROUTE_READ,   0,             api_h_job},
    {"POST",   "/api/v1/jobs/{id}/cancel",                ROUTE_CHANGE, 0,             api_h_job_cancel},
    {"GET",    "/api/v1/firmware",                        ROUTE_READ,   0,             api_h_firmware_list},
    {"POST",   "/api/v1/firmware",                        ROUTE_CHANGE, ROUTE_UPLOAD,  api_h_firmware_upload},
    {"POST",   "/api/v1/firmware/validate",               ROUTE_CHANGE, ROUTE_UPLOAD,  api_h_firmware_upload},
    {"GET",    "/api/v1/firmware/{name}/{version*}",      ROUTE_READ,   0,             api_h_firmware},
    {"DELETE", "/api/v1/firmware/{name}/{version*}",      ROUTE_CHANGE, 0,             api_h_firmware_delete},
    {"GET",    "/api/v1/blobs/{sha256}",                  ROUTE_READ,   0,             api_h_blob},
    {"GET",    "/api/v1/profiles",                        ROUTE_READ,   0,             api_h_profiles},
    {"GET",    "/api/v1/profiles/active",                 ROUTE_READ,   0,             api_h_profile_active},
    {"PUT",    "/api/v1/profiles/active",                 ROUTE_CHANGE, 0,             api_h_profile_active_put},
    {"DELETE", "/api/v1/profiles/active",                 ROUTE_CHANGE, 0,             api_h_profile_active_delete},
    {"GET",    "/api/v1/profiles/{name}",                 ROUTE_READ,   0,             api_h_profile},
    {"PUT",    "/api/v1/profiles/{name}",                 ROUTE_CHANGE, 0,             api_h_profile_put},
    {"DELETE", "/api/v1/profiles/{name}",                 ROUTE_CHANGE, 0,             api_h_profile_delete},
    {"GET",    "/api/v1/records",                         ROUTE_READ,   0,             api_h_records},
    {"GET",    "/api/v1/counters",                        ROUTE_READ,   0,             api_h_counters},
    {"GET",    "/api/v1/line",                            ROUTE_READ,   0,             api_h_line},
    {"GET",    "/api/v1/events",                          ROUTE_READ,   ROUTE_NO_HEAD, api_h_events},
};
/* clang-format on */
const size_t api_routes_count = sizeof(api_routes) / sizeof(api_routes[0]);

const char *route_policy_to_string(enum route_policy p)
{
    switch (p) {
    case ROUTE_READ:
        return "read";
    case ROUTE_CHANGE:
        return "change";
    }
    return "?";
}

/* ---- matching ------------------------------------------------------------------------------ */

int route_match(const char *pattern, const char *path, struct route_params *p)
{
    struct route_params local;
    if (!p)
        p = &local;
    size_t plen = strlen(path);
    if (plen > ROUTE_MAX_PATH)
        return -1;
    memcpy(p->buf, path, plen + 1);
    p->n = 0;
    const char *pat = pattern;
    char *s = p->buf;
    int literal = 0;
    while (*pat) {
        if (*pat != '{') {
            if (*pat != *s)
                return -1;
            pat++;
            s++;
            literal++;
            continue;
        }
        const char *close = strchr(pat, '}');
        if (!close || p->n >= ROUTE_MAX_PARAMS)
            return -1;
        bool multi = close > pat && close[-1] == '*';
        const char *after = close + 1; /* the literal that follows ("" or "/...") */
        size_t after_len = strcspn(after, "{");
        char *end;
        if (multi) {
            /* One or more segments: the capture ends where the rest of the pattern's
             * literal tail matches the end of the path (captures never follow it). */
            if (strchr(after, '{'))
                return -1; /* one multi-segment capture, last */
            size_t rest = strlen(s);
            if (rest <= after_len || strcmp(s + rest - after_len, after) != 0)
                return -1;
            end = s + rest - after_len;
        } else {
            end = s + strcspn(s, "/");
        }
        if (end == s)
            return -1; /* captures are never empty */
        p->v[p->n++] = s;
        /* Terminate the capture; the literal that follows is compared against the path,
         * whose character at end is kept in c. */
        char c = *end;
        *end = '\0';
        pat = after;
        s = end;
        if (*pat) {
            if (c != *pat)
                return -1;
            pat++;
            s = end + 1;
            literal++;
        } else if (c != '\0') {
            return -1;
        }
    }
    return *s == '\0' ? literal : -1;
}

/* ---- policy -------------------------------------------------------------------------------- */

static bool token_ok(const char *want, const char *got)
{
    size_t n = strlen(want), m = strlen(got);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < m; i++)
        diff |= (unsigned char)(got[i] ^ want[i % (n ? n : 1)]);
    return diff == 0;
}

static const char *bearer(const struct api_request *rq)
{
    const char *h = rq->authorization;
    if (h) {
        while (*h == ' ')
            h++;
        if (strncasecmp(h, "Bearer ", 7) == 0) {
            h += 7;
            while (*h == ' ')
                h++;
            return h;
        }
        return "";
    }
    return NULL;
}

/* 0 when allowed, else the status written into resp. */
static int check_token(struct api *a, const struct api_request *rq, bool change,
                       struct api_response *resp)
{
    const struct config *cfg = station_config(api_station(a));
    const char *token = cfg->api.token;
    if (!token || !*token) {
        if (change && !rq->loopback)
            return api_error(resp, 403, "forbidden", NULL,
                             "no API token is configured, so changes are accepted only from this "
                             "machine (loopback); set api.token in the config to allow them "
                             "with Authorization: Bearer <token>");
        return 0;
    }
    if (!change && !cfg->api.read_requires_token)
        return 0;
    const char *got = bearer(rq);
    if (!got && !change)
        got = api_arg(rq, "access_token");
    if (got && token_ok(token, got))
        return 0;
    resp->auth_challenge = true;
    return api_error(
        resp, 401, "unauthorized", NULL,
        got ? "wrong token in Authorization: Bearer"
            : "this call needs Authorization: Bearer <token> (api.token in the config)");
}

/* Splits a Host value ("name", "name:port", "[v6]", "[v6]:port") into a lowercase name
 * (brackets kept for v6) and the port (-1 when absent). false when malformed. */
static bool split_host(const char *h, char *name, size_t len, long *port)
{
    const char *colon;
    size_t n;
    if (*h == '[') {
        const char *end = strchr(h, ']');
        if (!end)
            return false;
        n = (size_t)(end - h) + 1;
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] && !colon)
            return false;
    } else {
        colon = strchr(h, ':');
        n = colon ? (size_t)(colon - h) : strlen(h);
    }
    if (n == 0 || n >= len)
        return false;
    for (size_t i = 0; i < n; i++)
        name[i] = (char)tolower((unsigned char)h[i]);
    name[n] = '\0';
    *port = -1;
    if (colon) {
        char *end;
        *port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || *end || *port < 0 || *port > 65535)
            return false;
    }
    return true;
}

bool api_host_allowed(struct api *a, const char *host)
{
    if (!host)
        return true; /* HTTP/1.0 without Host: not a browser */
    char name[260];
    long port;
    if (!split_host(host, name, sizeof(name), &port))
        return false;
    size_t n = strlen(name);
    if (n > 1 && name[n - 1] == '.')
        name[--n] = '\0'; /* "localhost." is "localhost" */
    /* An IP literal cannot be rebound: a page can only be of that address's origin, and a
     * request with that Host reaching this listener means the address is this station. */
    unsigned char buf[16];
    if (inet_pton(AF_INET, name, buf) == 1)
        return true;
    if (name[0] == '[' && name[n - 1] == ']') {
        name[n - 1] = '\0';
        return inet_pton(AF_INET6, name + 1, buf) == 1;
    }
    if (strcmp(name, "localhost") == 0)
        return true;
    char self[256 + 8];
    if (gethostname(self, 256) == 0) {
        self[255] = '\0';
        if (strcasecmp(name, self) == 0)
            return true;
        size_t sl = strlen(self);
        snprintf(self + sl, sizeof(self) - sl, ".local"); /* its mDNS name (avahi) */
        if (strcasecmp(name, self) == 0)
            return true;
    }
    const struct config *cfg = station_config(api_station(a));
    for (size_t i = 0; i < cfg->api.n_allowed_hosts; i++)
        if (strcmp(name, cfg->api.allowed_hosts[i]) == 0)
            return true;
    return false;
}

/* The Origin a browser sent is this station's own origin: "http(s)://" + the Host the
 * request was sent to (a port the Origin leaves out is its scheme's default). */
static bool same_origin(const char *origin, const char *host)
{
    long dport;
    if (strncasecmp(origin, "http://", 7) == 0)
        dport = 80, origin += 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        dport = 443, origin += 8;
    else
        return false; /* "null" (sandboxed frames, file:, privacy redirects), other schemes */
    if (!host)
        return false;
    char on[260], hn[260];
    long op, hp;
    if (!split_host(origin, on, sizeof(on), &op) || !split_host(host, hn, sizeof(hn), &hp) ||
        strcmp(on, hn) != 0)
        return false;
    return (op < 0 ? dport : op) == (hp < 0 ? dport : hp);
}

/* A change must not come from a page of another origin: an Origin header (every browser
 * sends one with a POST, PUT or DELETE; "null" when it hides it) must be this station's,
 * and Sec-Fetch-Site, when sent, must be "same-origin" or "none" (typed by the user). */
static int check_origin(const struct api_request *rq, struct api_response *resp)
{
    if (rq->origin && !same_origin(rq->origin, rq->host))
        return api_error(resp, 403, "forbidden", "Origin",
                         "cross-origin request refused: Origin %.100s is not this station "
                         "(%.100s); changes are accepted from the station's own status page or "
                         "from clients that send no Origin",
                         rq->origin, rq->host ? rq->host : "no Host header");
    if (rq->fetch_site && strcmp(rq->fetch_site, "same-origin") != 0 &&
        strcmp(rq->fetch_site, "none") != 0)
        return api_error(resp, 403, "forbidden", "Sec-Fetch-Site",
                         "cross-origin request refused (Sec-Fetch-Site: %.40s)", rq->fetch_site);
    return 0;
}

/* A POST that changes something is a JSON request: a page of another origin cannot send
 * one without a CORS preflight, which this server never grants. Uploads (multipart, a
 * bundle) are taken by the HTTP layer before this check. */
static int check_json(const struct route *r, const struct api_request *rq,
                      struct api_response *resp)
{
    if (strcmp(r->method, "POST") != 0 || api_ctype_is(rq->content_type, "application/json"))
        return 0;
    if (r->flags & ROUTE_UPLOAD) {
        if (api_ctype_is(rq->content_type, "multipart/form-data") ||
            bundle_content_type(rq->content_type))
            return 0; /* streamed by the HTTP layer (api_upload_precheck) */
        return api_error(resp, 415, "unsupported_media_type", NULL,
                         "upload a firmware set as multipart/form-data (a \"manifest\" part and "
                         "one file part per region file) or as one .tar, .tar.gz or .zip bundle "
                         "(Content-Type application/x-tar, application/gzip, application/zip or "
                         "application/octet-stream)");
    }
    return api_error(resp, 415, "unsupported_media_type", NULL,
                     "send Content-Type: application/json with every POST (an empty body is "
                     "allowed where every field is optional; got %.80s)",
                     rq->content_type ? rq->content_type : "no Content-Type");
}

/* The route's policy: 0 when the request may reach the handler, else the status. The
 * order makes the answer tell the most useful thing first: a page of another origin is
 * refused whatever token it holds. */
static int check_policy(struct api *a, const struct route *r, const struct api_request *rq,
                        struct api_response *resp)
{
    if (r->policy == ROUTE_READ)
        return check_token(a, rq, false, resp);
    int rc = check_origin(rq, resp);
    if (rc == 0)
        rc = check_token(a, rq, true, resp);
    if (rc == 0)
        rc = check_json(r, rq, resp);
    return rc;
}

/* GET /api/v1/routes: the table itself (docs/API.md "Who may do what"). */
static API_HANDLER(api_h_routes)
{
    (void)a;
    (void)rq;
    (void)p;
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct route *r = &api_routes[i];
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "method", json_object_new_string(r->method));
        json_object_object_add(o, "path", json_object_new_string(r->pattern));
        json_object_object_add(o, "policy",
                               json_object_new_string(route_policy_to_string(r->policy)));
        json_object_object_add(o, "upload", json_object_new_boolean(r->flags & ROUTE_UPLOAD));
        json_object_object_add(o, "listener", json_object_new_string("api"));
        json_object_array_add(arr, o);
    }
    /* the OTA endpoint's rows (daemon/ota_routes.c): device-facing */
    for (size_t i = 0; i < ota_routes_count; i++) {
        const struct ota_route *r = &ota_routes[i];
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "method", json_object_new_string(r->method));
        json_object_object_add(o, "path", json_object_new_string(r->pattern));
        json_object_object_add(o, "policy", json_object_new_string("device"));
        json_object_object_add(o, "upload", json_object_new_boolean(false));
        json_object_object_add(o, "listener", json_object_new_string("ota"));
        json_object_object_add(o, "needs", r->needs ? json_object_new_string(r->needs) : NULL);
        json_object_object_add(o, "what", json_object_new_string(r->what));
        json_object_array_add(arr, o);
    }
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "routes", arr);
    api_json(resp, 200, o);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

static bool method_matches(const struct route *r, const char *method)
{
    if (strcmp(r->method, method) == 0)
        return true;
    return strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0 &&
           !(r->flags & ROUTE_NO_HEAD);
}

/*
 * Finds the row for the request: the most specific pattern that matches the path, then
 * the row of that pattern with the request's method. NULL with 404 or 405 in resp.
 */
static const struct route *find_route(const struct api_request *rq, struct route_params *p,
                                      struct api_response *resp)
{
    int best = -1;
    const char *pattern = NULL;
    for (size_t i = 0; i < api_routes_count; i++) {
        int score = route_match(api_routes[i].pattern, rq->path, NULL);
        if (score > best) {
            best = score;
            pattern = api_routes[i].pattern;
        }
    }
    if (!pattern) {
        api_error(resp, 404, "not_found", NULL, "no such resource: %.200s", rq->path);
        return NULL;
    }
    char allow[64] = "";
    size_t used = 0;
    for (size_t i = 0; i < api_routes_count; i++) {
        const struct route *r = &api_routes[i];
        if (strcmp(r->pattern, pattern) != 0)
            continue;
        if (method_matches(r, rq->method)) {
            route_match(r->pattern, rq->path, p);
            return r;
        }
        if (used < sizeof(allow))
            used += (size_t)snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "",
                                     r->method);
    }
    snprintf(resp->allow, sizeof(resp->allow), "%s", allow);
    api_error(resp, 405, "method_not_allowed", NULL, "use %s here", allow);
    return NULL;
}

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

void api_host_refused(const char *host, struct api_response *resp)
{
    api_error(resp, 403, "forbidden", "Host",
              "Host \"%.100s\" is not a name of this station: use its IP address, localhost or "
              "its host name, or add the name to api.allowed_hosts in the config",
              host ? host : "");
}

static void host_refused(const struct api_request *rq, struct api_response *resp)
{
    api_host_refused(rq->host, resp);
}

void api_handle(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    api_response_init(resp);
    struct route_params p;
    const struct route *r;
    if (!rq->method || !rq->path || rq->path[0] != '/') {
        api_error(resp, 400, "bad_request", NULL, "malformed request line");
    } else if (strlen(rq->path) > ROUTE_MAX_PATH) {
        api_error(resp, 404, "not_found", NULL, "path too long");
    } else if (has_control(rq->path)) {
        /* %00 decoded (the HTTP layer makes it 0x7F) or another control byte */
        api_error(resp, 400, "bad_request", NULL,
                  "the path holds a NUL or control byte (%%00-%%1F, %%7F): refused");
    } else if (!api_host_allowed(a, rq->host)) {
        host_refused(rq, resp);
    } else if ((r = find_route(rq, &p, resp)) != NULL && check_policy(a, r, rq, resp) == 0) {
        r->fn(a, rq, &p, resp);
    }
    if (!resp->sse && resp->status >= 100 && resp->status < 600)
        api_metrics(a)->http_by_class[resp->status / 100]++;
}

int api_upload_precheck(struct api *a, const struct api_request *rq, struct api_response *resp,
                        bool *validate_only, bool *replace)
{
    api_response_init(resp);
    if (!rq->method || strcmp(rq->method, "POST") != 0 || !rq->path ||
        strlen(rq->path) > ROUTE_MAX_PATH)
        return 0;
    const struct route *r = NULL;
    for (size_t i = 0; i < api_routes_count && !r; i++)
        if ((api_routes[i].flags & ROUTE_UPLOAD) && strcmp(api_routes[i].method, "POST") == 0 &&
            route_match(api_routes[i].pattern, rq->path, NULL) >= 0)
            r = &api_routes[i];
    if (!r)
        return 0;
    /* multipart, or a tar / tar.gz / zip bundle (bundle.h); anything else: api_handle
     * answers after the policy check */
    if (!api_ctype_is(rq->content_type, "multipart/form-data") &&
        !bundle_content_type(rq->content_type))
        return 0;
    if (!api_host_allowed(a, rq->host)) {
        host_refused(rq, resp);
        return 0;
    }
    if (check_policy(a, r, rq, resp))
        return 0;
    *validate_only = strcmp(r->pattern, "/api/v1/firmware/validate") == 0;
    const char *rep = api_arg(rq, "replace");
    int b = rep ? api_parse_bool(rep) : 0;
    if (b < 0) {
        api_error(resp, 400, "bad_request", "replace", "replace: expected true or false");
        return 0;
    }
    *replace = b == 1;
    return 1;
}
