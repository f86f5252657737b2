/*
 * ota_routes: the OTA endpoint's routes (ota.listen), the device-facing rows of "who may
 * do what". The REST API's rows are in web/routes.c; GET /api/v1/routes lists both, so
 * every route of the station and its protection is in one listing (docs/API.md).
 *
 * A board can send neither a token nor an Origin, so these rows have their own policy,
 * "device": what a request may get is decided by the OTA endpoint itself from what it
 * knows of the board (daemon/ota_checkin.c):
 *  - a check-in: the profile's checkin_auth credentials when set (wrong ones 403, none
 *    403 when required); an unknown MAC is enrolled only under unknown_boards "enrol",
 *    within ota.enrol_rate_per_min and ota.enrol_max; an address learned without
 *    credentials is a claim, never a target for pushes, until confirmed (board_addr.h);
 *  - a plain GET: only a set a profile or a board's target names; the user1/user2 half of
 *    the board whose confirmed address is the client's; none with ota.strict.
 *
 * ota_route_find() picks the row a request takes, and ota_handle_request() dispatches on
 * its kind: a check-in is told by its STA-MAC header whatever its path (the sketch sets
 * the URL), a plain GET by its path.
 */
#ifndef ESPSTATION_OTA_ROUTES_H
#define ESPSTATION_OTA_ROUTES_H

#include <stddef.h>

#include "ota_http.h"

enum ota_route_kind {
    OTA_ROUTE_CHECKIN = 0, /* ESP8266httpUpdate / ESP32 HTTPUpdate check-in */
    OTA_ROUTE_SET_IMAGE,   /* /ota/fw/{name}/{version}.bin */
    OTA_ROUTE_SET_HALF,    /* /ota/fw/{name}/{version}/user1.bin, user2.bin */
    OTA_ROUTE_ADDR_HALF,   /* any other path ending in user1.bin / user2.bin */
    OTA_ROUTE_OTHER,       /* none of these: answered 403 (ota.strict) or 404 */
};

struct ota_route {
    const char *method;  /* "GET" (and HEAD) */
    const char *pattern; /* as in web/routes.c; "{path*}" is any path */
    const char *needs;   /* a header the request must carry for this row, or NULL */
    enum ota_route_kind kind;
    const char *what; /* one line for the listing: what is served, and on what condition */
};

extern const struct ota_route ota_routes[];
extern const size_t ota_routes_count;

/* The row req takes; the OTA_ROUTE_OTHER row when none does. Never NULL. */
const struct ota_route *ota_route_find(const struct ota_http_request *req);

#endif
