/*
 * ota_routes: see ota_routes.h.
 */
#include "ota_routes.h"

#include <string.h>

/* clang-format off */
const struct ota_route ota_routes[] = {
    {"GET", "{path*}", "x-ESP8266-STA-MAC or x-ESP32-STA-MAC", OTA_ROUTE_CHECKIN,
     "check-in: the board's target image, 304 when it runs it; profile checkin_auth "
     "credentials confirm its address, without them an unknown MAC is enrolled only under "
     "unknown_boards \"enrol\" and within the enrolment limits"},
    {"GET", "/ota/fw/{name}/{version}.bin", NULL, OTA_ROUTE_SET_IMAGE,
     "plain GET: the app of a set a profile or a board's target names (not with ota.strict)"},
    {"GET", "/ota/fw/{name}/{version}/{half}.bin", NULL, OTA_ROUTE_SET_HALF,
     "plain GET: user1/user2 of a named ESP8266 NONOS dual set (not with ota.strict)"},
    {"GET", "{path*}/{half}.bin", NULL, OTA_ROUTE_ADDR_HALF,
     "plain GET: user1/user2 of the target of the board whose confirmed address is the "
     "client's (not with ota.strict)"},
    {"GET", "{path*}", NULL, OTA_ROUTE_OTHER,
     "anything else: 403 with ota.strict, else 404"},
};
/* clang-format on */
const size_t ota_routes_count = sizeof(ota_routes) / sizeof(ota_routes[0]);

static const struct ota_route *row(enum ota_route_kind kind)
{
    for (size_t i = 0; i < ota_routes_count; i++)
        if (ota_routes[i].kind == kind)
            return &ota_routes[i];
    return &ota_routes[ota_routes_count - 1];
}

const struct ota_route *ota_route_find(const struct ota_http_request *req)
{
    if (req->has_sta_mac)
        return row(OTA_ROUTE_CHECKIN);
    const char *uri = req->uri;
    size_t n = strcspn(uri, "?#");
    bool half = ota_http_userbin_from_uri(uri) != OTA_HTTP_USERBIN_NONE;
    if (n > 8 && strncmp(uri, "/ota/fw/", 8) == 0) {
        /* name/version[.bin] or name/version/userN.bin: count the segments after /ota/fw/ */
        size_t segs = 1;
        for (size_t i = 8; i < n; i++)
            segs += uri[i] == '/';
        if (half && segs == 3)
            return row(OTA_ROUTE_SET_HALF);
        if (!half && segs == 2 && n > 12 && memcmp(uri + n - 4, ".bin", 4) == 0)
            return row(OTA_ROUTE_SET_IMAGE);
    }
    if (half)
        return row(OTA_ROUTE_ADDR_HALF);
    return row(OTA_ROUTE_OTHER);
}
