/*
 * routes: see routes.h. The route table, the matcher, the dispatcher and the
 * policy checks (authentication). Handlers live in api.c and api_ota.c.
 */
#include "routes.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api_priv.h"
#include "bundle.h"
#include "config.h"
#include "station.h"

/* clang-format off */
const struct route api_routes[] = {
    /* method   pattern                                    policy        flags          handler */
    {"GET",    "/metrics",                                ROUTE_READ,   0,             api_h_metrics},
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
    {"GET",    "/api/v1/profiles",                        ROUTE_READ,   0,             api_h_profiles},
    {"GET",    "/api/v1/profiles/active",                 ROUTE_READ,   0,             api_h_profile_active},
    {"PUT",    "/api/v1/profiles/active",                 ROUTE_CHANGE, 0,             api_h_profile_active_put},
    {"DELETE", "/api/v1/profiles/active",                 ROUTE_CHANGE, 0,             api_h_profile_active_delete},
    {"GET",    "/api/v1/profiles/{name}",                 ROUTE_READ,   0,             api_h_profile},
    {"PUT",    "/api/v1/profiles/{name}",                 ROUTE_CHANGE, 0,             api_h_profile_put},
    {"DELETE", "/api/v1/profiles/{name}",                 ROUTE_CHANGE, 0,             api_h_profile_delete},
    {"GET",    "/api/v1/records",                         ROUTE_READ,   0,             api_h_records},
    {"GET",    "/api/v1/counters",                        ROUTE_READ,   0,             api_h_counters},
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

/* The route's policy: 0 when the request may reach the handler, else the status. */
static int check_policy(struct api *a, const struct route *r, const struct api_request *rq,
                        struct api_response *resp)
{
    return check_token(a, rq, r->policy == ROUTE_CHANGE, resp);
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

void api_handle(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    api_response_init(resp);
    struct route_params p;
    const struct route *r;
    if (!rq->method || !rq->path || rq->path[0] != '/') {
        api_error(resp, 400, "bad_request", NULL, "malformed request line");
    } else if (strlen(rq->path) > ROUTE_MAX_PATH) {
        api_error(resp, 404, "not_found", NULL, "path too long");
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
