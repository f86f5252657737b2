/*
 * api_ota: the REST routes of network OTA (docs/API.md "Network OTA"):
 *   PUT    /api/v1/boards/{mac}/target   {"firmware": "name@version" | null}
 *   GET    /api/v1/boards/{mac}/ota      the board's OTA state (last check-in, target)
 *   POST   /api/v1/boards/{mac}/ota      {"method", "firmware", "image", "password", "user",
 *                                          "port"} -> 202 job
 *   POST   /api/v1/bulk                  bulk update -> 202 bulk id
 *   GET    /api/v1/bulk, /api/v1/bulk/{id}
 *   POST   /api/v1/bulk/{id}/cancel
 * Turns HTTP into calls on the daemon's OTA manager (daemon/ota.h); never blocks. The
 * routes and their policies are rows of the table in routes.c.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "api.h"
#include "api_priv.h"
#include "ota.h"
#include "records.h"
#include "station.h"

/* Optional string member; -1 (answered) when present but not a string. */
static int opt_str(struct json_object *o, const char *key, const char **out,
                   struct api_response *resp)
{
    struct json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
        return 0;
    if (!json_object_is_type(v, json_type_string)) {
        api_error(resp, 422, "validation_failed", key, "%s: must be a string", key);
        return -1;
    }
    *out = json_object_get_string(v);
    return 0;
}

static int opt_int(struct json_object *o, const char *key, long long lo, long long hi, int *out,
                   struct api_response *resp)
{
    struct json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < lo ||
        json_object_get_int64(v) > hi) {
        api_error(resp, 422, "validation_failed", key, "%s: must be an integer from %lld to %lld",
                  key, lo, hi);
        return -1;
    }
    *out = (int)json_object_get_int64(v);
    return 0;
}

static int check_keys(struct json_object *o, const char *const *allowed, const char *prefix,
                      struct api_response *resp)
{
    json_object_object_foreach(o, k, v)
    {
        (void)v;
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, k) == 0;
        if (!ok) {
            api_error(resp, 422, "validation_failed", k, "%s%s: unknown member", prefix, k);
            return -1;
        }
    }
    return 0;
}

/* Optional "image": "app" (default) or "filesystem". -1 (answered) otherwise. */
static int opt_image(struct json_object *o, bool *filesystem, struct api_response *resp)
{
    const char *s = NULL;
    *filesystem = false;
    if (opt_str(o, "image", &s, resp))
        return -1;
    if (!s || strcmp(s, "app") == 0)
        return 0;
    if (strcmp(s, "filesystem") == 0) {
        *filesystem = true;
        return 0;
    }
    api_error(resp, 422, "validation_failed", "image",
              "image: must be \"app\" or \"filesystem\" (got \"%.40s\")", s);
    return -1;
}

static void ota_fail(struct api_response *resp, int rc, const char *field, const char *err)
{
    switch (rc) {
    case -ENOENT:
        api_error(resp, 404, "not_found", field, "%s", err);
        break;
    case -EPERM:
        api_error(resp, 422, "unsigned_image", field, "%s", err);
        break;
    case -EBADMSG:
        api_error(resp, 422, "bad_signature", field, "%s", err);
        break;
    case -EBUSY:
        api_error(resp, 409, "busy", field, "%s", err);
        break;
    case -ENOSPC: /* as many pushes running as the open-file budget has room for */
        api_error(resp, 503, "busy", NULL, "%s", err);
        break;
    case -EACCES: /* the board's address is not confirmed (board_addr.h) */
        api_error(resp, 409, "address_unconfirmed", field, "%s", err);
        break;
    case -EINVAL:
    case -ENOTSUP:
        api_error(resp, 422, "validation_failed", field, "%s", err);
        break;
    default:
        api_error(resp, 500, "internal", NULL, "%s", err[0] ? err : strerror(-rc));
    }
}

static void board_target(struct ota *o, const char *mac, const struct api_request *rq,
                         struct api_response *resp)
{
    struct json_object *b = NULL;
    if (api_body_object(rq, resp, false, &b))
        return;
    static const char *const keys[] = {"firmware", NULL};
    const char *fw = NULL;
    if (check_keys(b, keys, "", resp) || opt_str(b, "firmware", &fw, resp)) {
        json_object_put(b);
        return;
    }
    char err[512] = "";
    int rc = ota_set_target(o, mac, fw, err, sizeof(err));
    if (rc < 0) {
        ota_fail(resp, rc, rc == -ENOENT && strstr(err, "board") ? "mac" : "firmware", err);
    } else {
        char ref[RECORDS_FIRMWARE_LEN] = "";
        bool pinned = false;
        ota_board_target(o, mac, ref, sizeof(ref), &pinned);
        struct json_object *r = json_object_new_object();
        json_object_object_add(r, "mac", json_object_new_string(mac));
        json_object_object_add(r, "target", ref[0] ? json_object_new_string(ref) : NULL);
        json_object_object_add(r, "pinned", json_object_new_boolean(pinned));
        api_json(resp, 200, r);
    }
    json_object_put(b);
}

/* Optional boolean member (default def); -1 (answered) when present but not a boolean. */
static int opt_bool(struct json_object *o, const char *key, bool def, bool *out,
                    struct api_response *resp)
{
    struct json_object *v;
    *out = def;
    if (!json_object_object_get_ex(o, key, &v))
        return 0;
    if (!json_object_is_type(v, json_type_boolean)) {
        api_error(resp, 422, "validation_failed", key, "%s: must be true or false", key);
        return -1;
    }
    *out = json_object_get_boolean(v);
    return 0;
}

static void board_push(struct ota *o, const char *mac, const struct api_request *rq,
                       struct api_response *resp)
{
    struct json_object *b = NULL;
    if (api_body_object(rq, resp, true, &b))
        return;
    static const char *const keys[] = {"method", "firmware",         "image", "password", "user",
                                       "port",   "check_flash_size", NULL};
    struct ota_push_request r = {.mac = mac};
    bool check_flash_size = true;
    if (check_keys(b, keys, "", resp) || opt_str(b, "method", &r.method, resp) ||
        opt_str(b, "firmware", &r.firmware, resp) || opt_image(b, &r.filesystem, resp) ||
        opt_str(b, "password", &r.password, resp) || opt_str(b, "user", &r.user, resp) ||
        opt_int(b, "port", 1, 65535, &r.port, resp) ||
        opt_bool(b, "check_flash_size", true, &check_flash_size, resp)) {
        json_object_put(b);
        return;
    }
    r.no_flash_size_check = !check_flash_size;
    char err[512] = "";
    int64_t id = 0;
    int rc = ota_push(o, &r, &id, err, sizeof(err));
    if (rc < 0) {
        const char *field = rc == -ENOENT && strstr(err, "board") ? "mac"
                            : strncmp(err, "image", 5) == 0       ? "image"
                            : strncmp(err, "user:", 5) == 0       ? "user"
                            : strstr(err, "method")               ? "method"
                            : strstr(err, "IP")                   ? "mac"
                                                                  : "firmware";
        ota_fail(resp, rc, field, err);
    } else {
        struct json_object *j = json_object_new_object();
        json_object_object_add(j, "job_id", json_object_new_int64(id));
        json_object_object_add(j, "kind",
                               json_object_new_string(r.filesystem ? "ota-push-fs" : "ota-push"));
        json_object_object_add(j, "image",
                               json_object_new_string(r.filesystem ? "filesystem" : "app"));
        snprintf(resp->location, sizeof(resp->location), "/api/v1/jobs/%lld", (long long)id);
        api_json(resp, 202, j);
    }
    json_object_put(b);
}

/* The request field an ota_bulk_start() message is about (its messages name
 * the field first: "method ...", "select ...", "firmware ..."). */
static const char *bulk_error_field(const char *err)
{
    static const char *const fields[] = {"method",  "select",    "firmware", "concurrency",
                                         "retries", "timeout_s", "port",     "password",
                                         "user",    "image"};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        size_t n = strlen(fields[i]);
        if (strncmp(err, fields[i], n) == 0 && (err[n] == ' ' || err[n] == ':' || err[n] == '.'))
            return fields[i];
    }
    if (strstr(err, "profile") || strstr(err, "board") || strstr(err, "selection"))
        return "select";
    return "firmware";
}

static void bulk_post(struct ota *o, const struct api_request *rq, struct api_response *resp)
{
    struct json_object *b = NULL;
    if (api_body_object(rq, resp, false, &b))
        return;
    static const char *const keys[] = {
        "select",      "firmware", "method",    "password",         "port", "image", "user",
        "concurrency", "retries",  "timeout_s", "max_failure_rate", NULL};
    static const char *const skeys[] = {"group", "profile", "chip", "macs", NULL};
    struct ota_bulk_request r = {.retries = -1, .max_failure_rate = -1};
    const char **macs = NULL;
    struct json_object *sel = NULL, *v;
    if (check_keys(b, keys, "", resp))
        goto out;
    if (!json_object_object_get_ex(b, "select", &sel) ||
        !json_object_is_type(sel, json_type_object)) {
        api_error(resp, 422, "validation_failed", "select",
                  "select: an object with one of group, profile, chip or macs");
        goto out;
    }
    if (check_keys(sel, skeys, "select.", resp) || opt_str(sel, "group", &r.group, resp) ||
        opt_str(sel, "profile", &r.profile, resp) || opt_str(sel, "chip", &r.chip, resp))
        goto out;
    if (json_object_object_get_ex(sel, "macs", &v)) {
        if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0 ||
            json_object_array_length(v) > 4096) {
            api_error(resp, 422, "validation_failed", "select.macs",
                      "select.macs: a non-empty array of MAC addresses");
            goto out;
        }
        size_t n = json_object_array_length(v);
        macs = calloc(n, sizeof(*macs));
        if (!macs) {
            api_error(resp, 500, "internal", NULL, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            struct json_object *e = json_object_array_get_idx(v, i);
            if (!json_object_is_type(e, json_type_string)) {
                api_error(resp, 422, "validation_failed", "select.macs",
                          "select.macs[%zu]: must be a string", i);
                goto out;
            }
            macs[i] = json_object_get_string(e);
        }
        r.macs = macs;
        r.n_macs = n;
    }
    if (opt_str(b, "firmware", &r.firmware, resp) || opt_str(b, "method", &r.method, resp) ||
        opt_image(b, &r.filesystem, resp) || opt_str(b, "user", &r.user, resp) ||
        opt_str(b, "password", &r.password, resp) || opt_int(b, "port", 1, 65535, &r.port, resp) ||
        opt_int(b, "concurrency", 1, 64, &r.concurrency, resp) ||
        opt_int(b, "retries", 0, 10, &r.retries, resp) ||
        opt_int(b, "timeout_s", 1, 86400, &r.timeout_s, resp))
        goto out;
    if (json_object_object_get_ex(b, "max_failure_rate", &v)) {
        double d = json_object_get_double(v);
        if ((!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int)) ||
            d < 0 || d > 1) {
            api_error(resp, 422, "validation_failed", "max_failure_rate",
                      "max_failure_rate: a number from 0 to 1");
            goto out;
        }
        r.max_failure_rate = d;
    }
    if (r.filesystem &&
        (!r.method || strcmp(r.method, "pull") == 0 || strcmp(r.method, "tcp") == 0)) {
        api_error(resp, 422, "validation_failed", "image",
                  "image: a filesystem image is pushed with method \"espota\" or \"webform\" "
                  "(a pull bulk waits for the app version; raw TCP-OTA has no filesystem mode)");
        goto out;
    }
    char err[512] = "";
    int64_t id = 0;
    int rc = ota_bulk_start(o, &r, &id, err, sizeof(err));
    if (rc < 0) {
        ota_fail(resp, rc, bulk_error_field(err), err);
        goto out;
    }
    char *s = ota_bulk_json(o, id);
    struct json_object *j = s ? json_tokener_parse(s) : NULL;
    free(s);
    snprintf(resp->location, sizeof(resp->location), "/api/v1/bulk/%lld", (long long)id);
    api_json(resp, 202, j);
out:
    free(macs);
    json_object_put(b);
}

static void json_text(struct api_response *resp, int status, char *s)
{
    struct json_object *j = s ? json_tokener_parse(s) : NULL;
    free(s);
    api_json(resp, status, j);
}

/* The OTA manager, or NULL with 503 in resp. */
static struct ota *ota_of(struct api *a, struct api_response *resp)
{
    struct ota *o = station_ota(api_station(a));
    if (!o)
        api_error(resp, 503, "unavailable", NULL, "network OTA is not running");
    return o;
}

/* The {mac} of the path, normalised into mac; -1 with 400 in resp. */
static int path_mac(const struct route_params *p, char mac[RECORDS_MAC_LEN],
                    struct api_response *resp)
{
    if (api_parse_mac(p->v[0], strlen(p->v[0]), mac) < 0) {
        api_error(resp, 400, "bad_request", "mac", "mac: expected aa:bb:cc:dd:ee:ff");
        return -1;
    }
    return 0;
}

/* The {id} of a bulk path; -1 with 404 in resp. */
static int path_bulk_id(const struct route_params *p, long long *id, struct api_response *resp)
{
    char *end = NULL;
    *id = strtoll(p->v[0], &end, 10);
    if (end == p->v[0] || *end || *id <= 0) {
        api_error(resp, 404, "not_found", "bulk", "no such bulk update");
        return -1;
    }
    return 0;
}

API_HANDLER(api_h_board_target)
{
    char mac[RECORDS_MAC_LEN];
    struct ota *o = ota_of(a, resp);
    if (o && path_mac(p, mac, resp) == 0)
        board_target(o, mac, rq, resp);
}

API_HANDLER(api_h_board_ota)
{
    (void)rq;
    char mac[RECORDS_MAC_LEN];
    struct ota *o = ota_of(a, resp);
    if (!o || path_mac(p, mac, resp) < 0)
        return;
    char *s = ota_board_json(o, mac);
    if (!s)
        return (void)api_error(resp, 404, "not_found", "mac",
                               "board %s never checked in at the OTA endpoint", mac);
    json_text(resp, 200, s);
}

API_HANDLER(api_h_board_ota_push)
{
    char mac[RECORDS_MAC_LEN];
    struct ota *o = ota_of(a, resp);
    if (o && path_mac(p, mac, resp) == 0)
        board_push(o, mac, rq, resp);
}

API_HANDLER(api_h_bulk_list)
{
    (void)rq;
    (void)p;
    struct ota *o = ota_of(a, resp);
    if (o)
        json_text(resp, 200, ota_bulk_list_json(o));
}

API_HANDLER(api_h_bulk_start)
{
    (void)p;
    struct ota *o = ota_of(a, resp);
    if (o)
        bulk_post(o, rq, resp);
}

API_HANDLER(api_h_bulk)
{
    (void)rq;
    long long id;
    struct ota *o = ota_of(a, resp);
    if (!o || path_bulk_id(p, &id, resp) < 0)
        return;
    char *s = ota_bulk_json(o, id);
    if (!s)
        return (void)api_error(resp, 404, "not_found", "bulk", "no bulk update %lld", id);
    json_text(resp, 200, s);
}

API_HANDLER(api_h_bulk_cancel)
{
    (void)rq;
    long long id;
    struct ota *o = ota_of(a, resp);
    if (!o || path_bulk_id(p, &id, resp) < 0)
        return;
    if (ota_bulk_cancel(o, id) < 0)
        return (void)api_error(resp, 404, "not_found", "bulk", "no bulk update %lld", id);
    json_text(resp, 202, ota_bulk_json(o, id));
}
