/*
 * buildimport: a recognised build (buildsrc) -> station manifest + file loader -> catalog
 * (see buildimport.h). Region file names in the catalog are the base names of the build's
 * files, made safe; a clash or a name the catalog reserves gets a "rN-" prefix.
 */
#include "buildimport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct set_files {
    const struct buildsrc_set *set;
    char files[BUILDSRC_MAX_PARTS][CATALOG_NAME_MAX];
};

void buildimport_result_free(struct buildimport_result *res)
{
    if (!res)
        return;
    json_object_put(res->source);
    memset(res, 0, sizeof(*res));
}

bool buildimport_is_station_set(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/manifest.json", dir);
    json_object *m = json_object_from_file(path);
    bool r = m && json_object_is_type(m, json_type_object) &&
             json_object_object_get_ex(m, "regions", NULL);
    json_object_put(m);
    return r;
}

static bool reserved(const char *s)
{
    size_t n = strlen(s);
    return strcmp(s, "manifest.json") == 0 || strcmp(s, "index.json") == 0 ||
           (n >= 2 && strcmp(s + n - 2, ".z") == 0);
}

static void name_files(struct set_files *sf)
{
    const struct buildsrc_set *set = sf->set;
    for (size_t i = 0; i < set->n_parts; i++) {
        const char *path = set->parts[i].path, *b = strrchr(path, '/');
        char base[CATALOG_NAME_MAX];
        buildsrc_safe_name(b ? b + 1 : path, base, sizeof(base) - 8);
        bool clash = !base[0] || reserved(base) || !catalog_name_valid(base);
        for (size_t j = 0; j < i && !clash; j++)
            clash = strcmp(sf->files[j], base) == 0;
        if (clash)
            snprintf(sf->files[i], CATALOG_NAME_MAX, "r%zu-%s", i, base[0] ? base : "file.bin");
        else
            snprintf(sf->files[i], CATALOG_NAME_MAX, "%s", base);
    }
}

static int load(void *ctx, const char *file, uint8_t **data, size_t *len)
{
    const struct set_files *sf = ctx;
    for (size_t i = 0; i < sf->set->n_parts; i++) {
        if (strcmp(sf->files[i], file) != 0)
            continue;
        const struct buildsrc_part *p = &sf->set->parts[i];
        *data = malloc(p->len ? p->len : 1);
        if (!*data)
            return -ENOMEM;
        memcpy(*data, p->data, p->len);
        *len = p->len;
        return 0;
    }
    return -ENOENT;
}

static const char *kind_of(const struct buildsrc_part *p)
{
    switch (p->role) {
    case BUILDSRC_ROLE_BOOTLOADER:
        return "bootloader";
    case BUILDSRC_ROLE_APP:
        return "app";
    default:
        return "data"; /* partition table, otadata, a merged image: flashed as they are */
    }
}

/* The station manifest for one set. Owned JSON text. */
static char *manifest_for(const struct buildsrc *src, const struct set_files *sf, const char *name,
                          const char *version)
{
    const struct buildsrc_set *set = sf->set;
    json_object *m = json_object_new_object();
    char buf[64], desc[512];
    json_object_object_add(m, "name", json_object_new_string(name));
    json_object_object_add(m, "version", json_object_new_string(version));
    json_object_object_add(m, "chip", json_object_new_string(set->chip->stub_name));
    snprintf(desc, sizeof(desc), "imported from %s%s%s%s", buildsrc_format_to_string(src->format),
             src->descriptor ? " (" : "", src->descriptor ? src->descriptor : "",
             src->descriptor ? ")" : "");
    if (set->app_name[0] || set->app_version[0]) {
        size_t n = strlen(desc);
        snprintf(desc + n, sizeof(desc) - n, "; app %s %s", set->app_name, set->app_version);
    }
    json_object_object_add(m, "description", json_object_new_string(desc));
    json_object_object_add(m, "flash_mode",
                           json_object_new_string(set->flash_mode >= 0
                                                      ? esp_flash_mode_to_string(set->flash_mode)
                                                      : "keep"));
    /* "detect" is the flasher's job; a set keeps the header's size (the notes say so). */
    if (set->flash_size && !set->flash_size_detect)
        snprintf(buf, sizeof(buf), "%uKB", set->flash_size / 1024);
    else
        snprintf(buf, sizeof(buf), "keep");
    json_object_object_add(m, "flash_size", json_object_new_string(buf));
    if (set->flash_freq_mhz)
        snprintf(buf, sizeof(buf), "%um", set->flash_freq_mhz);
    else
        snprintf(buf, sizeof(buf), "keep");
    json_object_object_add(m, "flash_freq", json_object_new_string(buf));
    json_object *regs = json_object_new_array();
    for (size_t i = 0; i < set->n_parts; i++) {
        json_object *r = json_object_new_object();
        snprintf(buf, sizeof(buf), "0x%x", set->parts[i].offset);
        json_object_object_add(r, "offset", json_object_new_string(buf));
        json_object_object_add(r, "file", json_object_new_string(sf->files[i]));
        json_object_object_add(r, "kind", json_object_new_string(kind_of(&set->parts[i])));
        json_object_array_add(regs, r);
    }
    json_object_object_add(m, "regions", regs);
    if (src->has_before || src->has_after || src->has_stub) {
        json_object *ea = json_object_new_object();
        if (src->has_before)
            json_object_object_add(ea, "before",
                                   json_object_new_string(esp_before_to_string(src->before)));
        if (src->has_after)
            json_object_object_add(ea, "after",
                                   json_object_new_string(esp_after_to_string(src->after)));
        if (src->has_stub)
            json_object_object_add(ea, "stub", json_object_new_boolean(src->stub));
        json_object_object_add(m, "esptool_args", ea);
    }
    const char *s = json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN);
    char *out = s ? strdup(s) : NULL;
    json_object_put(m);
    return out;
}

int buildimport_run(struct catalog *cat, const char *path, const struct buildimport_opts *o,
                    struct buildimport_result *res, struct catalog_report *rep)
{
    memset(res, 0, sizeof(*res));
    struct buildsrc *src = NULL;
    struct esp_error err;
    esp_error_clear(&err);
    int rc = buildsrc_load(path, &src, &err);
    if (rc < 0) {
        snprintf(res->err, sizeof(res->err), "%s%s%s", err.message, err.advice[0] ? "; " : "",
                 err.advice);
        return rc;
    }
    res->source = buildsrc_to_json(src);
    /* The build's own reset and stub choices (ESP-IDF extra_esptool_args) go into every set
     * (manifest "esptool_args"); station jobs follow them. Said in the notes when they differ
     * from what a job does by default. */
    if ((src->has_before && src->before != ESP_BEFORE_DEFAULT_RESET) ||
        (src->has_after && src->after != ESP_AFTER_HARD_RESET) || (src->has_stub && !src->stub)) {
        char note[256];
        snprintf(note, sizeof(note),
                 "%s asks for reset %s, leave %s, %s: kept in the set (esptool_args), station "
                 "jobs follow it unless the profile says otherwise",
                 src->descriptor ? src->descriptor : "the build",
                 esp_before_to_string(src->has_before ? src->before : ESP_BEFORE_DEFAULT_RESET),
                 esp_after_to_string(src->has_after ? src->after : ESP_AFTER_HARD_RESET),
                 src->has_stub && !src->stub ? "no stub" : "the stub");
        json_object *notes;
        if (res->source && json_object_object_get_ex(res->source, "notes", &notes))
            json_object_array_add(notes, json_object_new_string(note));
    }
    for (size_t s = 0; s < src->n_sets && rc == 0; s++) {
        const struct buildsrc_set *set = &src->sets[s];
        struct set_files *sf = calloc(1, sizeof(*sf));
        if (!sf) {
            rc = -ENOMEM;
            break;
        }
        sf->set = set;
        name_files(sf);
        char name[CATALOG_NAME_MAX], version[CATALOG_NAME_MAX];
        const char *base = o && o->name ? o->name : src->name;
        if (src->n_sets > 1)
            snprintf(name, sizeof(name), "%.*s-%s", (int)(sizeof(name) - 16), base,
                     set->chip->stub_name);
        else
            snprintf(name, sizeof(name), "%s", base);
        snprintf(version, sizeof(version), "%s", o && o->version ? o->version : src->version);
        snprintf(res->names[s], CATALOG_NAME_MAX, "%s", name);
        snprintf(res->versions[s], CATALOG_NAME_MAX, "%s", version);
        res->n_sets = s + 1;
        char *json = manifest_for(src, sf, name, version);
        if (!json) {
            free(sf);
            rc = -ENOMEM;
            break;
        }
        if (o && o->validate_only)
            rc = catalog_validate_mem(json, strlen(json), load, sf, rep);
        else
            rc = catalog_import_mem(cat, json, strlen(json), load, sf, o && o->replace, rep);
        free(json);
        free(sf);
    }
    buildsrc_free(src);
    return rc;
}
