/*
 * api_tls: this station's HTTPS certificates as a technician sees them: "tls" in
 * GET /api/v1/line (not-after, subject, whole days left, for the REST API's api.tls and
 * the OTA endpoint's ota.tls) and the expiry check (api_tls_check) that warns in the log
 * and the events journal when one expires within API_TLS_WARN_DAYS. Loop thread only.
 */
#include "api.h"
#include "api_priv.h"

#include <stdio.h>

#include <json-c/json.h>

#include "log.h"
#include "ota.h"
#include "records.h"
#include "station.h"

#define DAY_S 86400

/* Days from now to not_after, a started day counted (rounded up): 2 for a certificate made
 * with -days 2 until a day has gone by, 1 on its last day, 0 on the day after it ended,
 * negative later. <= 0: expired. */
static int64_t days_left(int64_t not_after_s, int64_t now_s)
{
    int64_t d = not_after_s - now_s;
    return d > 0 ? (d + DAY_S - 1) / DAY_S : -(-d / DAY_S);
}

static int64_t now_s(const struct api *a)
{
    return records_now_ms(station_records(a->st)) / 1000;
}

static struct json_object *cert_json(int64_t not_after_s, const char *subject, int64_t now)
{
    if (not_after_s <= 0)
        return NULL;
    struct json_object *o = json_object_new_object();
    api_jadd(o, "not_after", api_jtime(not_after_s * 1000));
    api_jadd(o, "subject", api_jstr(subject));
    api_jadd(o, "days_left", json_object_new_int64(days_left(not_after_s, now)));
    return o;
}

struct json_object *api_tls_json(struct api *a)
{
    int64_t api = a->api_tls_not_after, ota = ota_tls_expiry(station_ota(a->st));
    if (!api && !ota)
        return NULL; /* both servers speak plain HTTP */
    int64_t now = now_s(a);
    struct json_object *o = json_object_new_object();
    api_jadd(o, "api", cert_json(api, a->api_tls_subject, now));
    api_jadd(o, "ota", cert_json(ota, ota_tls_server_subject(station_ota(a->st)), now));
    return o;
}

static void check_one(struct api *a, const char *server, const char *key, const char *what,
                      int64_t not_after_s, const char *subject, int64_t now)
{
    if (not_after_s <= 0)
        return;
    int64_t days = days_left(not_after_s, now);
    if (not_after_s - now >= (int64_t)API_TLS_WARN_DAYS * DAY_S)
        return;
    char until[RECORDS_TIME_LEN];
    records_format_time(not_after_s * 1000, until, sizeof(until));
    if (not_after_s <= now)
        log_msg(LOG_LEVEL_ERROR,
                "tls: %s certificate (%s) expired on %s: clients of %s refuse it; renew the "
                "certificate (%s) and reload: systemctl reload espstationd",
                server, subject, until, what, key);
    else
        log_msg(LOG_LEVEL_WARN,
                "tls: %s certificate (%s) expires on %s, in %lld day(s): renew the "
                "certificate (%s) and reload: systemctl reload espstationd",
                server, subject, until, (long long)days, key);
    struct json_object *d = json_object_new_object();
    api_jadd(d, "server", json_object_new_string(server));
    api_jadd(d, "not_after", api_jtime(not_after_s * 1000));
    api_jadd(d, "subject", api_jstr(subject));
    api_jadd(d, "days_left", json_object_new_int64(days));
    station_post_event(a->st, "tls.expiring", NULL, NULL, 0, json_object_to_json_string(d));
    json_object_put(d);
}

void api_tls_check(struct api *a)
{
    if (!a)
        return;
    int64_t now = now_s(a);
    const struct ota *o = station_ota(a->st);
    check_one(a, "api", "api.tls", "the status page and REST API", a->api_tls_not_after,
              a->api_tls_subject, now);
    check_one(a, "ota", "ota.tls", "the OTA update endpoint", ota_tls_expiry(o),
              ota_tls_server_subject(o), now);
}
