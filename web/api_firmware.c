/*
 * api_firmware: the firmware catalog: listing it, one set's JSON view (index and manifest),
 * deleting a set, and the answer to an upload the HTTP layer did not take (uploads
 * themselves: upload.c, bundle.c). Shapes: docs/API.md.
 */
#include "api.h"
#include "api_priv.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "catalog.h"
#include "esp_chip.h"
#include "station.h"

/* The manifest's "esptool_args" (a build's before/after/stub, docs/CONFIG.md), or NULL. */
static struct json_object *manifest_esptool_args(struct station *st, const char *name,
                                                 const char *version)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s/%s/manifest.json", catalog_root(station_catalog(st)), name,
             version);
    struct json_object *man = json_object_from_file(path), *v, *r = NULL;
    if (man && json_object_object_get_ex(man, "esptool_args", &v))
        r = json_object_get(v);
    json_object_put(man);
    return r;
}

static void get_firmware_list(struct api *a, const struct api_request *rq,
                              struct api_response *resp)
{
    const char *chip = api_arg(rq, "chip");
    const struct esp_chip_desc *want = NULL;
    if (chip && !(want = esp_chip_by_name(chip))) {
        api_error(resp, 400, "bad_request", "chip", "chip: unknown chip family \"%.32s\"", chip);
        return;
    }
    struct catalog_entry *ents = NULL;
    size_t n = 0;
    if (catalog_list(station_catalog(a->st), &ents, &n) < 0) {
        api_error(resp, 500, "internal", NULL, "cannot list the firmware catalog");
        return;
    }
    struct json_object *arr = json_object_new_array();
    for (size_t i = 0; i < n; i++) {
        if (want && ents[i].chip != want->chip)
            continue;
        struct json_object *e = json_object_new_object();
        api_jadd(e, "name", json_object_new_string(ents[i].name));
        api_jadd(e, "version", json_object_new_string(ents[i].version));
        api_jadd(e, "chip", json_object_new_string(esp_chip_to_string(ents[i].chip)));
        api_jadd(e, "regions", json_object_new_int64((int64_t)ents[i].n_regions));
        api_jadd(e, "total_bytes", json_object_new_int64((int64_t)ents[i].total_bytes));
        struct json_object *ea = manifest_esptool_args(a->st, ents[i].name, ents[i].version);
        if (ea)
            api_jadd(e, "esptool_args", ea);
        json_object_array_add(arr, e);
    }
    catalog_entries_free(ents, n);
    struct json_object *o = json_object_new_object();
    api_jadd(o, "firmware", arr);
    api_json(resp, 200, o);
}

/* Splits "{name}/{version}" (one '/'); 0 or the status written. */
static int split_fw(const char *rest, char *name, char *version, struct api_response *resp)
{
    const char *slash = strchr(rest, '/');
    if (strstr(rest, "..") || rest[0] == '.' || (slash && slash[1] == '.'))
        return api_error(resp, 400, "bad_request", "name",
                         "names and versions hold letters, digits, '.', '_' and '-' only, do not "
                         "start with '.' and do not contain \"..\"");
    if (!slash || strchr(slash + 1, '/'))
        return api_error(resp, 404, "not_found", NULL,
                         "expected /api/v1/firmware/{name}/{version}");
    size_t n = (size_t)(slash - rest);
    if (n == 0 || n >= CATALOG_NAME_MAX || strlen(slash + 1) >= CATALOG_NAME_MAX)
        return api_error(resp, 400, "bad_request", "name", "name and version: 1 to %d characters",
                         CATALOG_NAME_MAX - 1);
    memcpy(name, rest, n);
    name[n] = '\0';
    snprintf(version, CATALOG_NAME_MAX, "%s", slash + 1);
    if (!catalog_name_valid(name) || !catalog_name_valid(version))
        return api_error(resp, 400, "bad_request", catalog_name_valid(name) ? "version" : "name",
                         "names and versions hold letters, digits, '.', '_' and '-' only, do not "
                         "start with '.' and do not contain \"..\"");
    return 0;
}

static struct json_object *read_json_file(const char *path)
{
    return json_object_from_file(path);
}

struct json_object *api_firmware_json(struct station *st, const char *name, const char *version)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s/%s/index.json", catalog_root(station_catalog(st)), name,
             version);
    struct json_object *idx = read_json_file(path);
    if (!idx)
        return NULL;
    snprintf(path, sizeof(path), "%s/%s/%s/manifest.json", catalog_root(station_catalog(st)), name,
             version);
    struct json_object *man = read_json_file(path);
    struct json_object *o = json_object_new_object();
    api_jadd(o, "name", json_object_new_string(name));
    api_jadd(o, "version", json_object_new_string(version));
    struct json_object *v;
    const struct esp_chip_desc *chip = NULL;
    if (json_object_object_get_ex(idx, "chip", &v))
        chip = esp_chip_by_name(json_object_get_string(v));
    api_jadd(o, "chip", chip ? json_object_new_string(chip->name) : NULL);
    api_jadd(o, "description",
             man && json_object_object_get_ex(man, "description", &v) ? json_object_get(v) : NULL);
    struct json_object *regs = json_object_new_array(), *ir;
    int64_t total = 0;
    if (json_object_object_get_ex(idx, "regions", &ir) &&
        json_object_is_type(ir, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(ir); i++) {
            struct json_object *r = json_object_array_get_idx(ir, i), *x;
            struct json_object *e = json_object_new_object();
            static const char *const keys[] = {"offset", "file", "kind", "size", "sha256", "md5"};
            for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
                api_jadd(e, keys[k],
                         json_object_object_get_ex(r, keys[k], &x) ? json_object_get(x) : NULL);
            if (json_object_object_get_ex(r, "size", &x))
                total += json_object_get_int64(x);
            json_object_array_add(regs, e);
        }
    }
    api_jadd(o, "regions", regs);
    api_jadd(o, "total_bytes", json_object_new_int64(total));
    if (man && json_object_object_get_ex(man, "esptool_args", &v))
        api_jadd(o, "esptool_args", json_object_get(v));
    api_jadd(o, "manifest", man);
    json_object_put(idx);
    return o;
}

static void get_firmware(struct api *a, const char *rest, struct api_response *resp)
{
    char name[CATALOG_NAME_MAX], version[CATALOG_NAME_MAX];
    if (split_fw(rest, name, version, resp))
        return;
    struct json_object *o = api_firmware_json(a->st, name, version);
    if (!o) {
        api_error(resp, 404, "not_found", "firmware", "no firmware %s@%s in the catalog", name,
                  version);
        return;
    }
    api_json(resp, 200, o);
}

static void delete_firmware(struct api *a, const char *rest, struct api_response *resp)
{
    char name[CATALOG_NAME_MAX], version[CATALOG_NAME_MAX];
    if (split_fw(rest, name, version, resp))
        return;
    int rc = catalog_delete(station_catalog(a->st), name, version);
    if (rc == -ENOENT) {
        api_error(resp, 404, "not_found", "firmware", "no firmware %s@%s in the catalog", name,
                  version);
        return;
    }
    if (rc < 0) {
        api_error(resp, 500, "internal", NULL, "cannot delete %s@%s: %s", name, version,
                  strerror(-rc));
        return;
    }
    station_catalog_changed(a->st);
    struct json_object *d = json_object_new_object();
    api_jadd(d, "name", json_object_new_string(name));
    api_jadd(d, "version", json_object_new_string(version));
    station_post_event(a->st, "firmware.deleted", NULL, NULL, 0,
                       json_object_to_json_string_ext(d, JSON_C_TO_STRING_PLAIN));
    struct json_object *o = json_object_new_object();
    api_jadd(o, "deleted", d);
    api_json(resp, 200, o);
}

API_HANDLER(api_h_firmware_list)
{
    (void)p;
    get_firmware_list(a, rq, resp);
}

/* Reached only when the HTTP layer did not take the body as an upload. */
API_HANDLER(api_h_firmware_upload)
{
    (void)a;
    (void)rq;
    (void)p;
    api_error(resp, 415, "unsupported_media_type", NULL,
              "upload a firmware set as multipart/form-data (a \"manifest\" part and one file "
              "part per region file) or as one .tar, .tar.gz or .zip bundle (Content-Type "
              "application/x-tar, application/gzip, application/zip or "
              "application/octet-stream)");
}

/* {name}/{version} as split_fw() expects it. */
static void fw_rest(const struct route_params *p, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", p->v[0], p->v[1]);
}

API_HANDLER(api_h_firmware)
{
    (void)rq;
    char rest[ROUTE_MAX_PATH + 2];
    fw_rest(p, rest, sizeof(rest));
    get_firmware(a, rest, resp);
}

API_HANDLER(api_h_firmware_delete)
{
    (void)rq;
    char rest[ROUTE_MAX_PATH + 2];
    fw_rest(p, rest, sizeof(rest));
    delete_firmware(a, rest, resp);
}
