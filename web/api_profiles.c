/*
 * api_profiles: the flashing profiles: their JSON view, reading, changing (PUT, DELETE:
 * the API's overlay) and choosing the active one; and GET /pools, the per-board data pools
 * the profiles name. Shapes: docs/API.md.
 */
#include "api.h"
#include "api_priv.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "catalog.h"
#include "config.h"
#include "esp_chip.h"
#include "pool.h"
#include "station.h"
#include "station_serial.h"

/* The chip family key of the config ("esp32c3") for a chip. */
static void chip_key(enum esp_chip chip, char *out, size_t len)
{
    const struct esp_chip_desc *d = esp_chip_get(chip);
    snprintf(out, len, "%s", d && d->stub_name ? d->stub_name : esp_chip_to_string(chip));
}

static struct json_object *profile_json(const struct config *cfg, const struct config_profile *p)
{
    struct json_object *o = json_object_new_object();
    api_jadd(o, "name", json_object_new_string(p->name));
    api_jadd(
        o, "active",
        json_object_new_boolean(cfg->active_profile && strcmp(cfg->active_profile, p->name) == 0));
    struct json_object *fw = json_object_new_object();
    for (size_t i = 0; i < p->n_firmware; i++) {
        char key[32], ref[2 * CATALOG_NAME_MAX + 2];
        chip_key(p->firmware[i].chip, key, sizeof(key));
        snprintf(ref, sizeof(ref), "%s@%s", p->firmware[i].name, p->firmware[i].version);
        api_jadd(fw, key, json_object_new_string(ref));
    }
    api_jadd(o, "firmware", fw);
    api_jadd(o, "erase_all", json_object_new_boolean(p->erase_all));
    api_jadd(o, "baud",
             p->baud_auto ? json_object_new_string("auto") : json_object_new_int64(p->baud));
    api_jadd(o, "baud_probe_after", json_object_new_int(p->baud_probe_after));
    api_jadd(o, "stub", json_object_new_boolean(p->stub));
    api_jadd(o, "compress", json_object_new_boolean(p->compress));
    api_jadd(o, "verify", json_object_new_boolean(p->verify));
    api_jadd(o, "skip_if_same", json_object_new_boolean(p->skip_if_same));
    api_jadd(o, "diff", json_object_new_boolean(p->diff));
    api_jadd(o, "retries", json_object_new_int(p->retries));
    api_jadd(o, "after", json_object_new_string(esp_after_to_string(p->after)));
    struct json_object *bc = NULL;
    if (p->boot_check.enabled) {
        bc = json_object_new_object();
        api_jadd(bc, "pattern", api_jstr(p->boot_check.pattern));
        api_jadd(bc, "timeout_ms", json_object_new_int(p->boot_check.timeout_ms));
        api_jadd(bc, "baud", json_object_new_int64(p->boot_check.baud));
        struct json_object *cap = json_object_new_array();
        for (size_t i = 0; i < p->boot_check.n_capture; i++)
            json_object_array_add(cap, json_object_new_string(p->boot_check.capture[i]));
        api_jadd(bc, "capture", cap);
    }
    api_jadd(o, "boot_check", bc);
    struct json_object *ofw = json_object_new_object();
    for (size_t i = 0; i < p->n_ota_firmware; i++) {
        char key[32], ref[2 * CATALOG_NAME_MAX + 2];
        chip_key(p->ota_firmware[i].chip, key, sizeof(key));
        snprintf(ref, sizeof(ref), "%s@%s", p->ota_firmware[i].name, p->ota_firmware[i].version);
        api_jadd(ofw, key, json_object_new_string(ref));
    }
    api_jadd(o, "ota_firmware", ofw);
    api_jadd(o, "require_signed", json_object_new_boolean(p->require_signed));
    api_jadd(o, "public_key", api_jstr(p->public_key)); /* ota_password is a secret: never shown */
    struct json_object *pbs = json_object_new_array();
    for (size_t i = 0; i < p->n_per_board; i++) {
        struct json_object *pb = json_object_new_object();
        char off[16];
        snprintf(off, sizeof(off), "0x%x", p->per_board[i].offset);
        api_jadd(pb, "name", json_object_new_string(p->per_board[i].name));
        api_jadd(pb, "offset", json_object_new_string(off));
        api_jadd(pb, "dir", json_object_new_string(p->per_board[i].dir));
        json_object_array_add(pbs, pb);
    }
    api_jadd(o, "per_board", pbs);
    if (p->serial.enabled) /* left out when none, as a PUT spells it */
        api_jadd(o, "serial", station_profile_serial_json(p));
    return o;
}

static void get_profiles(struct api *a, struct api_response *resp)
{
    const struct config *cfg = station_config(a->st);
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < cfg->n_profiles; i++)
        json_object_array_add(arr, profile_json(cfg, &cfg->profiles[i]));
    struct json_object *o = json_object_new_object();
    api_jadd(o, "active", api_jstr(cfg->active_profile));
    api_jadd(o, "persistence", json_object_new_string("data_dir"));
    char path[PATH_MAX + 32];
    api_jadd(o, "overlay_file",
             json_object_new_string(station_profiles_file(a->st, path, sizeof(path))));
    struct json_object *changed = json_object_new_array();
    for (size_t i = 0; i < cfg->n_profiles; i++)
        if (station_profile_overridden(a->st, cfg->profiles[i].name))
            json_object_array_add(changed, json_object_new_string(cfg->profiles[i].name));
    struct json_object *ov = json_object_new_object();
    api_jadd(ov, "profiles", changed);
    api_jadd(ov, "active", json_object_new_boolean(station_profile_overridden(a->st, NULL)));
    api_jadd(o, "overlay", ov);
    api_jadd(o, "profiles", arr);
    api_json(resp, 200, o);
}

static void get_profile(struct api *a, const char *name, struct api_response *resp)
{
    const struct config *cfg = station_config(a->st);
    const struct config_profile *p = config_profile(cfg, name);
    if (!p) {
        if (name)
            api_error(resp, 404, "not_found", "profile", "no profile \"%.64s\"", name);
        else
            api_error(resp, 404, "not_found", "profile", "no profile is active");
        return;
    }
    api_json(resp, 200, profile_json(cfg, p));
}

/* "config: profiles.x.baud: must be ..." -> field "baud" (after the profile's key path). */
static void config_field(const char *msg, const char *name, char *field, size_t len)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "profiles.%s.", name);
    const char *p = strstr(msg, prefix);
    field[0] = '\0';
    if (!p)
        return;
    p += strlen(prefix);
    size_t n = strcspn(p, ": ");
    if (n >= len)
        n = len - 1;
    memcpy(field, p, n);
    field[n] = '\0';
}

static bool profile_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

static void put_profile(struct api *a, const char *name, const struct api_request *rq,
                        struct api_response *resp)
{
    struct json_object *o;
    if (api_body_object(rq, resp, false, &o))
        return;
    if (!profile_name_ok(name)) {
        api_error(resp, 400, "bad_request", "name",
                  "profile names hold letters, digits, '_' and '-' only (1 to 64 characters)");
        json_object_put(o);
        return;
    }
    json_object_object_del(o, "name");
    json_object_object_del(o, "active");
    /* The config spells a disabled boot check by leaving it out. */
    struct json_object *bc;
    if (json_object_object_get_ex(o, "boot_check", &bc) && json_object_is_type(bc, json_type_null))
        json_object_object_del(o, "boot_check");
    if (json_object_object_get_ex(o, "public_key", &bc) && json_object_is_type(bc, json_type_null))
        json_object_object_del(o, "public_key");
    char err[512] = "";
    int rc = station_put_profile(
        a->st, name, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN), err, sizeof(err));
    json_object_put(o);
    if (rc == -EINVAL) {
        char field[64];
        config_field(err, name, field, sizeof(field));
        api_error(resp, 422, "validation_failed", field[0] ? field : NULL, "%s", err);
        return;
    }
    if (rc < 0) {
        api_error(resp, 500, "internal", NULL, "%s", err[0] ? err : strerror(-rc));
        return;
    }
    get_profile(a, name, resp);
}

/* DELETE /profiles/{name} (name NULL: /profiles/active): drops the API's change. */
static void delete_profile(struct api *a, const char *name, struct api_response *resp)
{
    char err[512] = "";
    int rc = station_delete_profile(a->st, name, err, sizeof(err));
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "profile", "%s", err);
        return;
    }
    if (rc == -EALREADY) {
        api_error(resp, 409, "not_changed", "profile", "%s", err);
        return;
    }
    if (rc < 0) {
        api_error(resp, rc == -EINVAL ? 422 : 500, rc == -EINVAL ? "validation_failed" : "internal",
                  NULL, "%s", err[0] ? err : strerror(-rc));
        return;
    }
    const struct config *cfg = station_config(a->st);
    struct json_object *r = json_object_new_object();
    if (name) {
        const struct config_profile *p = config_profile(cfg, name);
        api_jadd(r, "name", json_object_new_string(name));
        api_jadd(r, "result", json_object_new_string(p ? "reverted" : "removed"));
        api_jadd(r, "profile", p ? profile_json(cfg, p) : NULL);
    } else {
        api_jadd(r, "result", json_object_new_string("reverted"));
    }
    api_jadd(r, "active", api_jstr(cfg->active_profile));
    api_json(resp, 200, r);
}

static void put_active(struct api *a, const struct api_request *rq, struct api_response *resp)
{
    struct json_object *o;
    if (api_body_object(rq, resp, false, &o))
        return;
    static const char *const keys[] = {"name", NULL};
    struct json_object *v;
    if (api_check_members(o, NULL, keys, resp))
        goto out;
    if (!json_object_object_get_ex(o, "name", &v)) {
        api_error(resp, 422, "validation_failed", "name",
                  "name: required (a profile name, or null for none)");
        goto out;
    }
    const char *name = NULL;
    if (!json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_string)) {
            api_error(resp, 422, "validation_failed", "name", "name: must be a string or null");
            goto out;
        }
        name = json_object_get_string(v);
    }
    char err[512] = "";
    int rc = station_set_active_profile(a->st, name, err, sizeof(err));
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "name", "%s", err);
        goto out;
    }
    if (rc < 0) {
        api_error(resp, rc == -EINVAL ? 422 : 500, rc == -EINVAL ? "validation_failed" : "internal",
                  NULL, "%s", err[0] ? err : strerror(-rc));
        goto out;
    }
    if (station_config(a->st)->active_profile) {
        get_profile(a, NULL, resp);
    } else {
        struct json_object *r = json_object_new_object();
        api_jadd(r, "active", NULL);
        api_json(resp, 200, r);
    }
out:
    json_object_put(o);
}

/* GET /api/v1/pools: every per-board data pool named by a profile, with its counts. */
static void get_pools(struct api *a, struct api_response *resp)
{
    const struct config *cfg = station_config(a->st);
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        const struct config_profile *p = &cfg->profiles[i];
        for (size_t k = 0; k < p->n_per_board; k++) {
            const struct config_per_board *pb = &p->per_board[k];
            struct json_object *o = NULL;
            for (size_t n = 0; n < json_object_array_length(arr) && !o; n++) {
                struct json_object *e = json_object_array_get_idx(arr, n), *v;
                if (json_object_object_get_ex(e, "name", &v) &&
                    api_streq(json_object_get_string(v), pb->name))
                    o = e;
            }
            if (!o) {
                struct pool_status ps;
                if (pool_stat(station_records(a->st), pb, &ps) < 0)
                    ps.files = -1;
                char off[16];
                snprintf(off, sizeof(off), "0x%x", pb->offset);
                o = json_object_new_object();
                api_jadd(o, "name", json_object_new_string(pb->name));
                api_jadd(o, "dir", json_object_new_string(pb->dir));
                api_jadd(o, "offset", json_object_new_string(off));
                api_jadd(o, "files", ps.files >= 0 ? json_object_new_int64(ps.files) : NULL);
                api_jadd(o, "used", json_object_new_int64(ps.used));
                api_jadd(o, "free", ps.files >= 0 ? json_object_new_int64(ps.free) : NULL);
                api_jadd(o, "readable", json_object_new_boolean(ps.files >= 0));
                api_jadd(o, "profiles", json_object_new_array());
                json_object_array_add(arr, o);
            }
            struct json_object *profs;
            json_object_object_get_ex(o, "profiles", &profs);
            json_object_array_add(profs, json_object_new_string(p->name));
            if (cfg->active_profile && api_streq(cfg->active_profile, p->name))
                api_jadd(o, "active", json_object_new_boolean(true));
        }
    }
    struct json_object *o = json_object_new_object();
    api_jadd(o, "pools", arr);
    api_json(resp, 200, o);
}

API_HANDLER(api_h_pools)
{
    (void)rq;
    (void)p;
    get_pools(a, resp);
}

API_HANDLER(api_h_profiles)
{
    (void)rq;
    (void)p;
    get_profiles(a, resp);
}

API_HANDLER(api_h_profile)
{
    (void)rq;
    get_profile(a, p->v[0], resp);
}

API_HANDLER(api_h_profile_put)
{
    put_profile(a, p->v[0], rq, resp);
}

API_HANDLER(api_h_profile_delete)
{
    (void)rq;
    delete_profile(a, p->v[0], resp);
}

API_HANDLER(api_h_profile_active)
{
    (void)rq;
    (void)p;
    get_profile(a, NULL, resp);
}

API_HANDLER(api_h_profile_active_put)
{
    (void)p;
    put_active(a, rq, resp);
}

API_HANDLER(api_h_profile_active_delete)
{
    (void)rq;
    (void)p;
    delete_profile(a, NULL, resp);
}
