/*
 * buildsrc: recognising build outputs (see buildsrc.h for the formats and the rules): the
 * descriptor parsers (flasher_args.json, idedata.json, ESP Web Tools manifest) and the JSON
 * of a result. The other steps are in buildsrc_dir.c, buildsrc_check.c and buildsrc_util.c.
 *
 * Order of work: recognise (which descriptor or which file names are there) -> parse the
 * descriptor into parts (offset, role, path) -> resolve and read each file below the source
 * directory -> check (images, chip, partition table, overlaps, settings) -> name the set.
 * Each step stops at the first error, which names the file and says what to do.
 */
#include "buildsrc_priv.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "esp_cmd.h"

const char *buildsrc_format_to_string(enum buildsrc_format f)
{
    static const char *const names[] = {"esp-idf", "platformio", "arduino", "esp-web-tools",
                                        "merged-image"};
    return (unsigned)f < sizeof(names) / sizeof(names[0]) ? names[f] : "unknown";
}

const char *buildsrc_role_to_string(enum buildsrc_role r)
{
    static const char *const names[] = {"bootloader", "partition-table", "otadata", "app",
                                        "data",       "merged"};
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

/* ---- ESP-IDF flasher_args.json ------------------------------------------------------------ */

/* The role entries of flasher_args.json (the rest of flash_files is data). */
static const struct {
    const char *key;
    enum buildsrc_role role;
} idf_roles[] = {
    {"bootloader", BUILDSRC_ROLE_BOOTLOADER},
    {"partition-table", BUILDSRC_ROLE_PARTITION_TABLE},
    {"partition_table", BUILDSRC_ROLE_PARTITION_TABLE},
    {"otadata", BUILDSRC_ROLE_OTADATA},
    {"app", BUILDSRC_ROLE_APP},
};

static int flash_setting(struct buildsrc_set *set, json_object *fs, const char *what,
                         struct esp_error *err)
{
    const char *mode = bsrc_get_str(fs, "flash_mode"), *size = bsrc_get_str(fs, "flash_size"),
               *freq = bsrc_get_str(fs, "flash_freq");
    bool keep = false;
    if (mode) {
        int m = esp_parse_flash_mode(mode, &keep);
        if (m < 0)
            return bsrc_fail(
                err, -EINVAL, bsrc_adv_build,
                "%s: flash_settings.flash_mode \"%.32s\" is not qio, qout, dio, dout or "
                "keep",
                what, mode);
        set->flash_mode = keep ? -1 : m;
    }
    if (size) {
        uint32_t bytes = 0;
        if (esp_parse_flash_size(size, &bytes, &keep) < 0)
            return bsrc_fail(err, -EINVAL, bsrc_adv_build,
                             "%s: flash_settings.flash_size \"%.32s\" is not a size like \"4MB\", "
                             "\"detect\" or \"keep\"",
                             what, size);
        set->flash_size = keep ? 0 : bytes;
        set->flash_size_detect = keep && strcasecmp(size, "detect") == 0;
    }
    if (freq) {
        unsigned mhz = 0;
        if (esp_parse_flash_freq(freq, &mhz, &keep) < 0)
            return bsrc_fail(
                err, -EINVAL, bsrc_adv_build,
                "%s: flash_settings.flash_freq \"%.32s\" is not a frequency like \"40m\" "
                "or \"keep\"",
                what, freq);
        set->flash_freq_mhz = keep ? 0 : mhz;
    }
    return 0;
}

/* extra_esptool_args.before / after / stub: esptool's values (with '_', as ESP-IDF writes
 * them, or '-'); anything else is refused naming the key. */
static int esptool_args(struct buildsrc *src, json_object *extra, const char *what,
                        struct esp_error *err)
{
    json_object *v = NULL;
    if (json_object_object_get_ex(extra, "before", &v)) {
        const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        int b = esp_before_from_string(s);
        if (b < 0 || b == ESP_BEFORE_MANUAL)
            return bsrc_fail(err, -EINVAL, bsrc_adv_build,
                             "%s: extra_esptool_args.before \"%.32s\" is not default_reset, "
                             "usb_reset, no_reset or no_reset_no_sync",
                             what, s);
        src->has_before = true;
        src->before = (enum esp_before)b;
    }
    if (json_object_object_get_ex(extra, "after", &v)) {
        const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
        int a = esp_after_from_string(s);
        if (a < 0)
            return bsrc_fail(err, -EINVAL, bsrc_adv_build,
                             "%s: extra_esptool_args.after \"%.32s\" is not hard_reset, "
                             "soft_reset, no_reset or no_reset_stub",
                             what, s);
        src->has_after = true;
        src->after = (enum esp_after)a;
    }
    if (json_object_object_get_ex(extra, "stub", &v)) {
        /* ESP-IDF writes a JSON boolean; "true"/"false" as text are taken too. */
        const char *s = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
        if (json_object_is_type(v, json_type_boolean))
            src->stub = json_object_get_boolean(v);
        else if (s && (strcasecmp(s, "true") == 0 || strcasecmp(s, "false") == 0))
            src->stub = strcasecmp(s, "true") == 0;
        else
            return bsrc_fail(err, -EINVAL, bsrc_adv_build,
                             "%s: extra_esptool_args.stub is not true or false", what);
        src->has_stub = true;
    }
    return 0;
}

int buildsrc_parse_flasher_args(const char *json, size_t len, const char *what,
                                struct buildsrc *src, struct esp_error *err)
{
    json_object *root = bsrc_parse_json(json, len, what, err);
    if (!root)
        return err && err->code ? err->code : -EINVAL;
    src->format = BUILDSRC_ESP_IDF;
    struct buildsrc_set *set = &src->sets[0];
    bsrc_set_init(set);
    src->n_sets = 1;
    int rc = 0;
    json_object *files = NULL, *v;
    if (!json_object_object_get_ex(root, "flash_files", &files) ||
        !json_object_is_type(files, json_type_object)) {
        rc = bsrc_fail(err, -EINVAL, bsrc_adv_build,
                       "%s: no \"flash_files\" object (offset -> file); is it an ESP-IDF "
                       "flasher_args.json?",
                       what);
        goto out;
    }
    json_object *extra = NULL;
    if (json_object_object_get_ex(root, "extra_esptool_args", &extra)) {
        const char *chip = bsrc_get_str(extra, "chip");
        if (chip) {
            set->chip = esp_chip_by_name(chip);
            if (!set->chip) {
                rc = bsrc_fail(err, -EINVAL, bsrc_adv_build,
                               "%s: extra_esptool_args.chip \"%.32s\" is not a chip family the "
                               "station knows",
                               what, chip);
                goto out;
            }
        }
        if ((rc = esptool_args(src, extra, what, err)) < 0)
            goto out;
    }
    json_object *fs = NULL;
    if (json_object_object_get_ex(root, "flash_settings", &fs) &&
        json_object_is_type(fs, json_type_object) && (rc = flash_setting(set, fs, what, err)) < 0)
        goto out;
    json_object_object_foreach(files, key, val)
    {
        uint32_t off = 0;
        json_object *ko = json_object_new_string(key);
        int orc = ko ? bsrc_get_offset(ko, &off) : -ENOMEM;
        json_object_put(ko);
        if (orc < 0) {
            rc = bsrc_fail(err, -EINVAL, bsrc_adv_build,
                           "%s: flash_files key \"%.40s\" is not a flash offset like \"0x10000\"",
                           what, key);
            goto out;
        }
        if (!json_object_is_type(val, json_type_string)) {
            rc = bsrc_fail(err, -EINVAL, bsrc_adv_build,
                           "%s: flash_files[\"%.40s\"] is not a file name", what, key);
            goto out;
        }
        const char *path = json_object_get_string(val);
        enum buildsrc_role role = BUILDSRC_ROLE_DATA;
        bool encrypted = false;
        for (size_t i = 0; i < sizeof(idf_roles) / sizeof(idf_roles[0]); i++) {
            json_object *r = NULL;
            uint32_t roff = 0;
            if (!json_object_object_get_ex(root, idf_roles[i].key, &r) ||
                !json_object_is_type(r, json_type_object) ||
                !json_object_object_get_ex(r, "offset", &v) || bsrc_get_offset(v, &roff) < 0 ||
                roff != off)
                continue;
            role = idf_roles[i].role;
            const char *enc = bsrc_get_str(r, "encrypted");
            encrypted = enc && strcasecmp(enc, "true") == 0;
            const char *rf = bsrc_get_str(r, "file");
            if (rf && strcmp(rf, path) != 0) {
                rc = bsrc_fail(err, -EINVAL, bsrc_adv_build,
                               "%s: \"%s\" names %.80s at 0x%x but flash_files names %.80s there",
                               what, idf_roles[i].key, rf, off, path);
                goto out;
            }
        }
        struct buildsrc_part *p = bsrc_add_part(set, off, role, path, what, err);
        if (!p) {
            rc = err && err->code ? err->code : -ENOMEM;
            goto out;
        }
        p->encrypted = encrypted;
    }
    if (set->n_parts == 0)
        rc = bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: flash_files is empty: nothing to flash",
                       what);
out:
    json_object_put(root);
    return rc;
}

/* ---- PlatformIO idedata.json ------------------------------------------------------------ */

int buildsrc_parse_idedata(const char *json, size_t len, const char *what, struct buildsrc *src,
                           struct esp_error *err)
{
    json_object *root = bsrc_parse_json(json, len, what, err);
    if (!root)
        return err && err->code ? err->code : -EINVAL;
    src->format = BUILDSRC_PLATFORMIO;
    struct buildsrc_set *set = &src->sets[0];
    bsrc_set_init(set);
    src->n_sets = 1;
    int rc = 0;
    json_object *extra = NULL, *imgs = NULL, *v;
    if (!json_object_object_get_ex(root, "extra", &extra) ||
        !json_object_is_type(extra, json_type_object)) {
        rc = bsrc_fail(err, -EINVAL, bsrc_adv_build,
                       "%s: no \"extra\" object; is it PlatformIO's idedata.json (pio run -t "
                       "idedata)?",
                       what);
        goto out;
    }
    if (json_object_object_get_ex(extra, "flash_images", &imgs)) {
        if (!json_object_is_type(imgs, json_type_array)) {
            rc = bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: extra.flash_images is not a list",
                           what);
            goto out;
        }
        for (size_t i = 0; i < json_object_array_length(imgs); i++) {
            json_object *e = json_object_array_get_idx(imgs, i);
            uint32_t off = 0;
            const char *path = bsrc_get_str(e, "path");
            if (!path || !json_object_object_get_ex(e, "offset", &v) ||
                bsrc_get_offset(v, &off) < 0) {
                rc = bsrc_fail(
                    err, -EINVAL, bsrc_adv_build,
                    "%s: extra.flash_images[%zu] needs \"path\" and \"offset\" (\"0x1000\")", what,
                    i);
                goto out;
            }
            const char *b = bsrc_base_name(path);
            enum buildsrc_role role = BUILDSRC_ROLE_DATA;
            if (strstr(b, "bootloader"))
                role = BUILDSRC_ROLE_BOOTLOADER;
            else if (strstr(b, "partitions") || strstr(b, "partition-table"))
                role = BUILDSRC_ROLE_PARTITION_TABLE;
            else if (strcmp(b, "boot_app0.bin") == 0 || strstr(b, "otadata"))
                role = BUILDSRC_ROLE_OTADATA;
            if (!bsrc_add_part(set, off, role, path, what, err)) {
                rc = err && err->code ? err->code : -ENOMEM;
                goto out;
            }
        }
    }
    uint32_t app_off = APP_OFFSET_DEFAULT;
    if (json_object_object_get_ex(extra, "application_offset", &v) &&
        bsrc_get_offset(v, &app_off) < 0) {
        rc = bsrc_fail(err, -EINVAL, bsrc_adv_build,
                       "%s: extra.application_offset is not a flash offset like \"0x10000\"", what);
        goto out;
    }
    /* The app: prog_path's firmware.elf -> firmware.bin next to it. */
    char app[256] = "firmware.bin";
    const char *prog = bsrc_get_str(root, "prog_path");
    if (prog && bsrc_has_suffix(bsrc_base_name(prog), ".elf") &&
        strlen(bsrc_base_name(prog)) < sizeof(app))
        snprintf(app, sizeof(app), "%.*s.bin", (int)(strlen(bsrc_base_name(prog)) - 4),
                 bsrc_base_name(prog));
    if (!bsrc_add_part(set, app_off, BUILDSRC_ROLE_APP, app, what, err))
        rc = err && err->code ? err->code : -ENOMEM;
out:
    json_object_put(root);
    return rc;
}

/* ---- ESP Web Tools manifest.json -------------------------------------------------------- */

int buildsrc_parse_web_tools(const char *json, size_t len, const char *what, struct buildsrc *src,
                             struct esp_error *err)
{
    static const char adv[] = "see https://esphome.github.io/esp-web-tools/ for the manifest "
                              "format: builds[] with chipFamily and parts[] {path, offset}";
    json_object *root = bsrc_parse_json(json, len, what, err);
    if (!root)
        return err && err->code ? err->code : -EINVAL;
    src->format = BUILDSRC_WEB_TOOLS;
    int rc = 0;
    json_object *builds = NULL;
    if (!json_object_object_get_ex(root, "builds", &builds) ||
        !json_object_is_type(builds, json_type_array) || json_object_array_length(builds) == 0) {
        rc = bsrc_fail(err, -EINVAL, adv,
                       "%s: no \"builds\" list (an ESP Web Tools manifest has one)", what);
        goto out;
    }
    size_t nb = json_object_array_length(builds);
    if (nb > BUILDSRC_MAX_SETS) {
        rc =
            bsrc_fail(err, -EINVAL, adv, "%s: %zu builds, at most %d", what, nb, BUILDSRC_MAX_SETS);
        goto out;
    }
    for (size_t b = 0; b < nb; b++) {
        json_object *e = json_object_array_get_idx(builds, b), *parts = NULL;
        struct buildsrc_set *set = &src->sets[b];
        bsrc_set_init(set);
        src->n_sets = b + 1;
        const char *fam = bsrc_get_str(e, "chipFamily");
        if (!fam) {
            rc = bsrc_fail(err, -EINVAL, adv,
                           "%s: builds[%zu] has no \"chipFamily\" (e.g. \"ESP32\")", what, b);
            goto out;
        }
        if (!(set->label = strdup(fam))) {
            rc = bsrc_fail(err, -ENOMEM, NULL, "out of memory");
            goto out;
        }
        set->chip = esp_chip_by_name(fam);
        if (!set->chip) {
            rc = bsrc_fail(err, -EINVAL, adv,
                           "%s: builds[%zu].chipFamily \"%.32s\" is not a chip family the station "
                           "knows (ESP32, ESP32-C3, ESP32-S2, ESP32-S3, ESP8266, ...)",
                           what, b, fam);
            goto out;
        }
        for (size_t j = 0; j < b; j++)
            if (src->sets[j].chip == set->chip) {
                rc = bsrc_fail(err, -EINVAL, adv, "%s: builds[%zu] and builds[%zu] are both for %s",
                               what, j, b, set->chip->name);
                goto out;
            }
        if (!json_object_object_get_ex(e, "parts", &parts) ||
            !json_object_is_type(parts, json_type_array) || json_object_array_length(parts) == 0) {
            rc = bsrc_fail(err, -EINVAL, adv, "%s: builds[%zu] (%s) has no \"parts\" list", what, b,
                           fam);
            goto out;
        }
        for (size_t i = 0; i < json_object_array_length(parts); i++) {
            json_object *pe = json_object_array_get_idx(parts, i), *v;
            const char *path = bsrc_get_str(pe, "path");
            uint32_t off = 0;
            if (!path || !json_object_object_get_ex(pe, "offset", &v) ||
                bsrc_get_offset(v, &off) < 0) {
                rc = bsrc_fail(err, -EINVAL, adv,
                               "%s: builds[%zu].parts[%zu] needs \"path\" and a numeric \"offset\"",
                               what, b, i);
                goto out;
            }
            if (strstr(path, "://")) {
                rc =
                    bsrc_fail(err, -EINVAL,
                              "download the file and put it next to manifest.json under a relative "
                              "path",
                              "%s: builds[%zu].parts[%zu] is a URL (%.80s): only files next to the "
                              "manifest can be imported",
                              what, b, i, path);
                goto out;
            }
            /* Roles are not in the manifest: the check assigns them from the contents. */
            if (!bsrc_add_part(set, off, BUILDSRC_ROLE_DATA, path, what, err)) {
                rc = err && err->code ? err->code : -ENOMEM;
                goto out;
            }
        }
    }
    const char *name = bsrc_get_str(root, "name"), *version = bsrc_get_str(root, "version");
    char tmp[65];
    if (name) {
        buildsrc_safe_name(name, tmp, sizeof(tmp));
        if (tmp[0] && !(src->name = strdup(tmp)))
            rc = bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    }
    if (version) {
        buildsrc_safe_name(version, tmp, sizeof(tmp));
        if (tmp[0] && !(src->version = strdup(tmp)))
            rc = bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    }
out:
    json_object_put(root);
    return rc;
}

/* ---- JSON ------------------------------------------------------------------------------ */

json_object *buildsrc_set_to_json(const struct buildsrc_set *set)
{
    json_object *o = json_object_new_object();
    char buf[32];
    json_object_object_add(o, "chip", json_object_new_string(set->chip ? set->chip->name : "?"));
    if (set->label)
        json_object_object_add(o, "chip_family", json_object_new_string(set->label));
    json_object_object_add(o, "flash_mode", json_object_new_string(bsrc_mode_str(set->flash_mode)));
    if (set->flash_size_detect)
        snprintf(buf, sizeof(buf), "detect");
    else
        bsrc_size_str(set->flash_size, buf, sizeof(buf));
    json_object_object_add(o, "flash_size", json_object_new_string(buf));
    if (set->flash_freq_mhz)
        snprintf(buf, sizeof(buf), "%um", set->flash_freq_mhz);
    else
        snprintf(buf, sizeof(buf), "keep");
    json_object_object_add(o, "flash_freq", json_object_new_string(buf));
    if (set->header_mode >= 0) {
        json_object *h = json_object_new_object();
        json_object_object_add(h, "flash_mode",
                               json_object_new_string(bsrc_mode_str(set->header_mode)));
        bsrc_size_str(set->header_size, buf, sizeof(buf));
        json_object_object_add(h, "flash_size",
                               json_object_new_string(set->header_size ? buf : "unknown"));
        snprintf(buf, sizeof(buf), "%um", set->header_freq_mhz);
        json_object_object_add(h, "flash_freq",
                               json_object_new_string(set->header_freq_mhz ? buf : "unknown"));
        json_object_object_add(o, "image_header", h);
    }
    snprintf(buf, sizeof(buf), "v%d.%d", set->min_rev_full / 100, set->min_rev_full % 100);
    json_object_object_add(o, "min_chip_revision", json_object_new_string(buf));
    if (set->app_name[0])
        json_object_object_add(o, "app_name", json_object_new_string(set->app_name));
    if (set->app_version[0])
        json_object_object_add(o, "app_version", json_object_new_string(set->app_version));
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < set->n_parts; i++) {
        const struct buildsrc_part *p = &set->parts[i];
        json_object *r = json_object_new_object();
        json_object_object_add(r, "offset", json_object_new_int64(p->offset));
        json_object_object_add(r, "file", json_object_new_string(p->path));
        json_object_object_add(r, "role", json_object_new_string(buildsrc_role_to_string(p->role)));
        json_object_object_add(r, "size", json_object_new_int64((int64_t)p->len));
        json_object_array_add(arr, r);
    }
    json_object_object_add(o, "regions", arr);
    return o;
}

json_object *buildsrc_to_json(const struct buildsrc *src)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "format",
                           json_object_new_string(buildsrc_format_to_string(src->format)));
    json_object_object_add(o, "directory", json_object_new_string(src->dir ? src->dir : ""));
    json_object_object_add(o, "descriptor",
                           src->descriptor ? json_object_new_string(src->descriptor) : NULL);
    json_object_object_add(o, "name", json_object_new_string(src->name ? src->name : ""));
    json_object_object_add(o, "version", json_object_new_string(src->version ? src->version : ""));
    json_object *sets = json_object_new_array();
    for (size_t s = 0; s < src->n_sets; s++)
        json_object_array_add(sets, buildsrc_set_to_json(&src->sets[s]));
    json_object_object_add(o, "sets", sets);
    json_object *notes = json_object_new_array();
    for (size_t i = 0; i < src->n_notes; i++)
        json_object_array_add(notes, json_object_new_string(src->notes[i]));
    json_object_object_add(o, "notes", notes);
    if (src->has_before || src->has_after || src->has_stub) {
        json_object *e = json_object_new_object();
        if (src->has_before)
            json_object_object_add(e, "before",
                                   json_object_new_string(esp_before_to_string(src->before)));
        if (src->has_after)
            json_object_object_add(e, "after",
                                   json_object_new_string(esp_after_to_string(src->after)));
        if (src->has_stub)
            json_object_object_add(e, "stub", json_object_new_boolean(src->stub));
        json_object_object_add(o, "esptool_args", e);
    }
    return o;
}
