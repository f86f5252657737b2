/*
 * routes: the REST API's route table -- one place that says who may do what.
 *
 * Every route of the operator listener (the REST API and /metrics) is one row
 * of api_routes[]: method, path pattern, policy, handler. The dispatcher
 * (api_handle, api_upload_precheck in routes.c) matches the request against
 * the table, applies the row's policy and only then calls the handler, so no
 * handler checks a token, an Origin or a Host by itself, and a test can walk
 * the table (tests/unit/test_api_routes.c, and GET /api/v1/routes for the
 * integration test).
 *
 * Policies:
 *  - ROUTE_READ: GET (and HEAD). Open, or the token when api.read_requires_token.
 *  - ROUTE_CHANGE: POST, PUT, DELETE. Refused (403) from a page of another
 *    origin (an Origin that is not this station's, Sec-Fetch-Site other than
 *    same-origin/none); then the token when one is configured (401), else a
 *    loopback client only (403); a POST must be a JSON request (Content-Type:
 *    application/json, even with an empty body; 415), except an upload's
 *    multipart or bundle body on an upload route. A page of another origin can
 *    send neither a JSON POST nor a PUT or DELETE without a CORS preflight,
 *    which this server never grants; the Origin check also covers multipart
 *    form posts, which need no preflight.
 * Every request, whatever its route, first needs a Host that names this
 * station (api_host_allowed(); 403), against DNS rebinding.
 *
 * Device-facing routes (check-ins and plain GETs of boards, which can send
 * neither a token nor an Origin) have their own table, ota_routes[] in
 * daemon/ota_routes.c, with policy "device": they are served on ota.listen, a
 * separate listener on the device network, which serves none of the rows
 * here. GET /api/v1/routes lists both tables ("listener": "api" / "ota").
 *
 * Patterns: literal segments and captures. "{name}" captures one non-empty
 * segment; "{name*}" captures one or more segments (a slot id may hold '/', as
 * in "uri:/dev/pts/5"). When several patterns match a path, the one with the
 * most literal characters wins (".../slots/{id*}/reset" over ".../slots/{id*}");
 * the method then picks the row, else 405 with the pattern's methods in Allow.
 */
#ifndef ESPSTATION_ROUTES_H
#define ESPSTATION_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "api.h"

enum route_policy {
    ROUTE_READ = 0,
    ROUTE_CHANGE,
};

/* "read", "change": the names GET /api/v1/routes and the docs use. */
const char *route_policy_to_string(enum route_policy p);

#define ROUTE_UPLOAD 0x1u  /* POST body streamed by the HTTP layer (multipart, a bundle) */
#define ROUTE_NO_HEAD 0x2u /* GET only, no HEAD (the event stream) */

#define ROUTE_MAX_PARAMS 2
#define ROUTE_MAX_PATH 2048

/* The captures of a match, in pattern order (NUL-terminated copies inside buf). */
struct route_params {
    size_t n;
    const char *v[ROUTE_MAX_PARAMS];
    char buf[ROUTE_MAX_PATH + 1];
};

typedef void (*route_fn)(struct api *a, const struct api_request *rq, const struct route_params *p,
                         struct api_response *resp);

struct route {
    const char *method;  /* "GET" (also HEAD unless ROUTE_NO_HEAD), "POST", "PUT", "DELETE" */
    const char *pattern; /* "/api/v1/slots/{id*}/reflash" */
    enum route_policy policy;
    unsigned flags; /* ROUTE_UPLOAD, ROUTE_NO_HEAD */
    route_fn fn;
};

extern const struct route api_routes[];
extern const size_t api_routes_count;

/* Matches path against pattern; on a match fills p (may be NULL) and returns the number
 * of literal characters of the pattern (its specificity, >= 1), else -1. */
int route_match(const char *pattern, const char *path, struct route_params *p);

/* The Host header names this station: absent (an HTTP/1.0 client), an IP address
 * literal, "localhost", this machine's host name (also with ".local"), or a name in
 * api.allowed_hosts. The port is not compared (a proxy may forward another one). */
bool api_host_allowed(struct api *a, const char *host);
/* Fills resp with the 403 for a Host that api_host_allowed() refused. */
void api_host_refused(const char *host, struct api_response *resp);

#endif
