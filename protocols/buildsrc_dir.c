/*
 * buildsrc_dir: recognising a directory (which descriptor or file names are there), loading
 * a build from a path, naming it, freeing it, and picking the set for a chip.
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

/* ---- recognising a directory ------------------------------------------------------------ */

static int load_descriptor(struct buildsrc *src, const char *file,
                           int (*parse)(const char *, size_t, const char *, struct buildsrc *,
                                        struct esp_error *),
                           struct esp_error *err)
{
    char *path = bsrc_join(src->dir, file);
    if (!path)
        return bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = bsrc_read_all(path, BUILDSRC_MAX_JSON_BYTES, &buf, &len);
    free(path);
    if (rc < 0)
        return bsrc_fail(err, rc == -EFBIG ? -EINVAL : rc, bsrc_adv_build, "cannot read %s: %s",
                         file, rc == -EFBIG ? "too large" : strerror(-rc));
    if (!(src->descriptor = strdup(file))) {
        free(buf);
        return bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    }
    rc = parse((const char *)buf, len, file, src, err);
    free(buf);
    return rc;
}

/* Files in dir with a suffix (sorted names, at most max). */
static size_t list_suffix(const char *dir, const char *suffix, char names[][256], size_t max)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !bsrc_has_suffix(e->d_name, suffix) || strlen(e->d_name) >= 256)
            continue;
        char *p = bsrc_join(dir, e->d_name);
        bool f = p && bsrc_is_file(p);
        free(p);
        if (!f)
            continue;
        if (n < max)
            snprintf(names[n], 256, "%s", e->d_name);
        n++;
    }
    closedir(d);
    size_t k = n < max ? n : max;
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[256];
            memcpy(t, names[j], 256);
            memcpy(names[j], names[j - 1], 256);
            memcpy(names[j - 1], t, 256);
        }
    return n;
}

static bool dir_has(const char *dir, const char *file)
{
    char *p = bsrc_join(dir, file);
    bool r = p && bsrc_is_file(p);
    free(p);
    return r;
}

/* Reads a file of dir into memory (small helper for the layout guesses). */
static int peek(const char *dir, const char *file, uint8_t **d, size_t *n)
{
    char *p = bsrc_join(dir, file);
    if (!p)
        return -ENOMEM;
    int rc = bsrc_read_all(p, BUILDSRC_MAX_FILE_BYTES, d, n);
    free(p);
    return rc;
}

/* Chip of an image file, NULL when it is none. */
static const struct esp_chip_desc *chip_of(const char *dir, const char *file)
{
    uint8_t *d = NULL;
    size_t n = 0;
    const struct esp_chip_desc *chip = NULL;
    struct esp_image_info info;
    if (peek(dir, file, &d, &n) == 0 && n > 0 && d[0] == 0xE9)
        bsrc_identify(d, n, NULL, &info, &chip, NULL);
    free(d);
    return chip;
}

/* App offset from a partition table file (0x10000 when there is none or it says nothing). */
static uint32_t app_offset_from(const char *dir, const char *pt_file, bool *from_table)
{
    uint8_t *d = NULL;
    size_t n = 0;
    uint32_t off = APP_OFFSET_DEFAULT;
    *from_table = false;
    if (pt_file && peek(dir, pt_file, &d, &n) == 0 && bsrc_pt_boot_app(d, n, &off))
        *from_table = true;
    free(d);
    return *from_table ? off : APP_OFFSET_DEFAULT;
}

/*
 * The usual layout of an ESP32-family build without offsets: bootloader at the chip's
 * offset, partition table at 0x8000, boot_app0 at 0xe000 (where present), the app where
 * the partition table says (0x10000). ESP8266: the app alone at 0x0.
 */
static int usual_layout(struct buildsrc *src, const char *boot, const char *pt, const char *otadata,
                        const char *app, const char *merged, const char *tool,
                        struct esp_error *err)
{
    struct buildsrc_set *set = &src->sets[0];
    bsrc_set_init(set);
    src->n_sets = 1;
    const struct esp_chip_desc *chip = boot ? chip_of(src->dir, boot) : NULL;
    if (!chip && app)
        chip = chip_of(src->dir, app);
    if (!chip && merged) {
        if (!bsrc_add_part(set, 0, BUILDSRC_ROLE_MERGED, merged, tool, err))
            return err->code;
        bsrc_note(src, "%s: %s is flashed whole at 0x0", tool, merged);
        return 0;
    }
    if (!chip) {
        const char *f = app ? app : boot ? boot : "the build";
        return bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: %s is not a valid ESP image", tool, f);
    }
    if (chip->chip == ESP_CHIP_ESP8266) {
        if (!app)
            return bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: no app image for the ESP8266",
                             tool);
        if (!bsrc_add_part(set, 0, BUILDSRC_ROLE_APP, app, tool, err))
            return err->code;
        bsrc_note(src, "%s: no offsets given; %s at 0x0 (the ESP8266's single image)", tool, app);
        return 0;
    }
    if (!app && merged) {
        if (!bsrc_add_part(set, 0, BUILDSRC_ROLE_MERGED, merged, tool, err))
            return err->code;
        return 0;
    }
    if (!app)
        return bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: no application image found", tool);
    bool from_table = false;
    uint32_t app_off = app_offset_from(src->dir, pt, &from_table);
    if ((boot &&
         !bsrc_add_part(set, chip->bootloader_offset, BUILDSRC_ROLE_BOOTLOADER, boot, tool, err)) ||
        (pt && !bsrc_add_part(set, PT_OFFSET, BUILDSRC_ROLE_PARTITION_TABLE, pt, tool, err)) ||
        (otadata &&
         !bsrc_add_part(set, BOOT_APP0_OFFSET, BUILDSRC_ROLE_OTADATA, otadata, tool, err)) ||
        !bsrc_add_part(set, app_off, BUILDSRC_ROLE_APP, app, tool, err))
        return err->code;
    char n[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < set->n_parts && used < sizeof(n); i++)
        used += (size_t)snprintf(n + used, sizeof(n) - used, "%s%s 0x%x", i ? ", " : "",
                                 set->parts[i].path, set->parts[i].offset);
    bsrc_note(src, "%s: no offsets in the build, the usual %s layout is used: %s%s", tool,
              chip->name, n, from_table ? " (app offset from the partition table)" : "");
    return 0;
}

static int recognise_pio(struct buildsrc *src, struct esp_error *err)
{
    src->format = BUILDSRC_PLATFORMIO;
    if (dir_has(src->dir, "idedata.json"))
        return load_descriptor(src, "idedata.json", buildsrc_parse_idedata, err);
    if (!dir_has(src->dir, "firmware.bin"))
        return bsrc_fail(err, -EINVAL, bsrc_adv_build,
                         "PlatformIO build without firmware.bin in %.100s", src->dir);
    return usual_layout(src, dir_has(src->dir, "bootloader.bin") ? "bootloader.bin" : NULL,
                        dir_has(src->dir, "partitions.bin") ? "partitions.bin" : NULL,
                        dir_has(src->dir, "boot_app0.bin") ? "boot_app0.bin" : NULL, "firmware.bin",
                        NULL, "PlatformIO (no idedata.json)", err);
}

static int recognise_arduino(struct buildsrc *src, const char *app, const char *merged,
                             struct esp_error *err)
{
    src->format = BUILDSRC_ARDUINO;
    char sketch[256];
    const char *b = app ? app : merged;
    snprintf(sketch, sizeof(sketch), "%.*s", (int)(strstr(b, ".ino.") - b), b);
    char boot[300], pt[300];
    snprintf(boot, sizeof(boot), "%s.ino.bootloader.bin", sketch);
    snprintf(pt, sizeof(pt), "%s.ino.partitions.bin", sketch);
    bool has_boot = dir_has(src->dir, boot), has_pt = dir_has(src->dir, pt);
    char tmp[65];
    buildsrc_safe_name(sketch, tmp, sizeof(tmp));
    if (tmp[0] && !(src->name = strdup(tmp)))
        return bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    /* The separate files when they are all there (less to write), else the merged image. */
    if (app && (has_boot || !merged))
        return usual_layout(src, has_boot ? boot : NULL, has_pt ? pt : NULL,
                            dir_has(src->dir, "boot_app0.bin") ? "boot_app0.bin" : NULL, app,
                            merged, "Arduino", err);
    struct buildsrc_set *set = &src->sets[0];
    bsrc_set_init(set);
    src->n_sets = 1;
    return bsrc_add_part(set, 0, BUILDSRC_ROLE_MERGED, merged, "Arduino", err) ? 0 : err->code;
}

/* A single .bin: a merged image (or the ESP8266's single image). */
static int recognise_merged(struct buildsrc *src, const char *file, struct esp_error *err)
{
    src->format = BUILDSRC_MERGED;
    struct buildsrc_set *set = &src->sets[0];
    bsrc_set_init(set);
    src->n_sets = 1;
    char tmp[65], stem[256];
    snprintf(stem, sizeof(stem), "%s", file);
    if (bsrc_has_suffix(stem, ".bin"))
        stem[strlen(stem) - 4] = '\0';
    buildsrc_safe_name(stem, tmp, sizeof(tmp));
    if (tmp[0] && !(src->name = strdup(tmp)))
        return bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    return bsrc_add_part(set, 0, BUILDSRC_ROLE_MERGED, file, "merged image", err) ? 0 : err->code;
}

/* Is the manifest.json in dir ESP Web Tools' (builds[]) rather than the station's (regions)? */
static bool is_web_tools_manifest(const char *dir)
{
    uint8_t *d = NULL;
    size_t n = 0;
    bool r = false;
    if (peek(dir, "manifest.json", &d, &n) == 0 && n <= BUILDSRC_MAX_JSON_BYTES) {
        json_object *o = json_tokener_parse((const char *)d);
        r = o && json_object_is_type(o, json_type_object) &&
            json_object_object_get_ex(o, "builds", NULL) &&
            !json_object_object_get_ex(o, "regions", NULL);
        json_object_put(o);
    }
    free(d);
    return r;
}

static int recognise_dir(struct buildsrc *src, struct esp_error *err)
{
    const char *dir = src->dir;
    if (dir_has(dir, "flasher_args.json")) {
        src->format = BUILDSRC_ESP_IDF;
        return load_descriptor(src, "flasher_args.json", buildsrc_parse_flasher_args, err);
    }
    if (dir_has(dir, "manifest.json") && is_web_tools_manifest(dir)) {
        src->format = BUILDSRC_WEB_TOOLS;
        return load_descriptor(src, "manifest.json", buildsrc_parse_web_tools, err);
    }
    if (dir_has(dir, "manifest.json"))
        return bsrc_fail(
            err, -ENOTSUP,
            "import it into the catalog (espstationd --import, or the REST upload), then "
            "flash it by name",
            "%.100s holds an espstation firmware set (manifest.json with regions), not a "
            "build",
            dir);
    if (dir_has(dir, "idedata.json") || dir_has(dir, "firmware.bin"))
        return recognise_pio(src, err);
    char names[8][256];
    size_t n_app = list_suffix(dir, ".ino.bin", names, 8);
    char app[256] = "", merged[256] = "";
    if (n_app > 1)
        return bsrc_fail(err, -EINVAL, "export one sketch per directory",
                         "%.100s holds %zu sketches (%s, %s, ...): which one to flash is unclear",
                         dir, n_app, names[0], names[1]);
    if (n_app == 1)
        snprintf(app, sizeof(app), "%s", names[0]);
    size_t n_merged = list_suffix(dir, ".ino.merged.bin", names, 8);
    if (n_merged == 1)
        snprintf(merged, sizeof(merged), "%s", names[0]);
    if (app[0] || merged[0])
        return recognise_arduino(src, app[0] ? app : NULL, merged[0] ? merged : NULL, err);
    size_t n_bin = list_suffix(dir, ".bin", names, 8);
    if (n_bin == 1)
        return recognise_merged(src, names[0], err);
    return bsrc_fail(
        err, -ENOTSUP,
        "point at an ESP-IDF build directory (flasher_args.json), a PlatformIO "
        ".pio/build/<env>/ directory, an Arduino export (*.ino.bin), an ESP Web Tools "
        "manifest.json or one merged image",
        "%.100s: no build recognised (no flasher_args.json, idedata.json, firmware.bin, "
        "*.ino.bin or manifest.json%s)",
        dir, n_bin > 1 ? ", and more than one .bin" : "");
}

/* A project directory: its build/ (ESP-IDF) or its only .pio/build/<env>/. */
static int descend(char **dir, struct esp_error *err)
{
    char *idf = bsrc_join(*dir, "build");
    if (idf && dir_has(idf, "flasher_args.json") && !dir_has(*dir, "flasher_args.json")) {
        free(*dir);
        *dir = idf;
        return 0;
    }
    free(idf);
    char *pio = bsrc_join(*dir, ".pio/build");
    if (!pio)
        return -ENOMEM;
    DIR *d = opendir(pio);
    if (!d) {
        free(pio);
        return 0;
    }
    char envs[4][128];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= 128)
            continue;
        char *p = bsrc_join(pio, e->d_name);
        bool ok = p && bsrc_is_dir(p) && (dir_has(p, "firmware.bin") || dir_has(p, "idedata.json"));
        free(p);
        if (ok) {
            if (n < 4)
                snprintf(envs[n], 128, "%s", e->d_name);
            n++;
        }
    }
    closedir(d);
    int rc = 0;
    if (n == 1) {
        char *p = bsrc_join(pio, envs[0]);
        if (p) {
            free(*dir);
            *dir = p;
        } else {
            rc = -ENOMEM;
        }
    } else if (n > 1) {
        rc = bsrc_fail(err, -EINVAL, "name the environment's directory: .pio/build/<env>",
                       "%.80s has %zu PlatformIO environments (%s, %s%s): which one to flash is "
                       "unclear",
                       *dir, n, envs[0], envs[1], n > 2 ? ", ..." : "");
    }
    free(pio);
    return rc;
}

static int part_cmp(const void *a, const void *b)
{
    const struct buildsrc_part *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void sort_parts(struct buildsrc *src)
{
    for (size_t s = 0; s < src->n_sets; s++)
        qsort(src->sets[s].parts, src->sets[s].n_parts, sizeof(src->sets[s].parts[0]), part_cmp);
}

/* ESP-IDF's project_description.json: the project's name and version, when it is there. */
static void idf_project(struct buildsrc *src)
{
    uint8_t *d = NULL;
    size_t n = 0;
    if (peek(src->dir, "project_description.json", &d, &n) == 0 && n <= BUILDSRC_MAX_JSON_BYTES) {
        json_object *o = json_tokener_parse((const char *)d);
        char tmp[65];
        const char *name = bsrc_get_str(o, "project_name"),
                   *ver = bsrc_get_str(o, "project_version");
        if (name && !src->name && (buildsrc_safe_name(name, tmp, sizeof(tmp)), tmp[0]))
            src->name = strdup(tmp);
        if (ver && !src->version && (buildsrc_safe_name(ver, tmp, sizeof(tmp)), tmp[0]))
            src->version = strdup(tmp);
        json_object_put(o);
    }
    free(d);
}

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* A suggested name and version for the set. */
static int name_it(struct buildsrc *src, struct esp_error *err)
{
    const struct buildsrc_set *set = &src->sets[0];
    char tmp[65];
    if (!src->name) {
        const char *n = set->app_name[0] && strcmp(set->app_name, "arduino-lib-builder") != 0
                            ? set->app_name
                            : NULL;
        if (!n && src->format == BUILDSRC_PLATFORMIO)
            n = bsrc_base_name(src->dir);
        buildsrc_safe_name(n ? n : "firmware", tmp, sizeof(tmp));
        if (!(src->name = strdup(tmp[0] ? tmp : "firmware")))
            return bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    }
    if (!src->version) {
        /* The app's version; else a digest of the app, so a rebuild gets a new one. */
        if (set->app_version[0]) {
            snprintf(tmp, sizeof(tmp), "%s", set->app_version);
        } else {
            uint32_t h = 2166136261u; /* FNV-1a over every file: stable, not security */
            for (size_t s = 0; s < src->n_sets; s++)
                for (size_t i = 0; i < src->sets[s].n_parts; i++)
                    for (size_t k = 0; k < src->sets[s].parts[i].len; k++)
                        h = (h ^ src->sets[s].parts[i].data[k]) * 16777619u;
            snprintf(tmp, sizeof(tmp), "build-%08x", h);
        }
        if (!(src->version = strdup(tmp)))
            return bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    }
    return 0;
}

int buildsrc_load(const char *path, struct buildsrc **out, struct esp_error *err)
{
    *out = NULL;
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return bsrc_fail(err, -ENOENT, "check the path", "%.120s: %s", path ? path : "(none)",
                         strerror(errno));
    struct buildsrc *src = calloc(1, sizeof(*src));
    if (!src)
        return bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    int rc;
    if (S_ISDIR(st.st_mode)) {
        if (!(src->dir = strdup(path))) {
            rc = bsrc_fail(err, -ENOMEM, NULL, "out of memory");
            goto out;
        }
        if ((rc = descend(&src->dir, err)) < 0)
            goto out;
        rc = recognise_dir(src, err);
    } else {
        const char *b = bsrc_base_name(path);
        if (!(src->dir = dir_of(path))) {
            rc = bsrc_fail(err, -ENOMEM, NULL, "out of memory");
            goto out;
        }
        if (strcmp(b, "flasher_args.json") == 0) {
            rc = load_descriptor(src, b, buildsrc_parse_flasher_args, err);
        } else if (strcmp(b, "idedata.json") == 0) {
            rc = load_descriptor(src, b, buildsrc_parse_idedata, err);
        } else if (bsrc_has_suffix(b, ".json")) {
            /* Any other JSON: an ESP Web Tools manifest under another name. */
            rc = load_descriptor(src, b, buildsrc_parse_web_tools, err);
        } else if (bsrc_has_suffix(b, ".ino.bin") || bsrc_has_suffix(b, ".ino.merged.bin")) {
            rc = bsrc_has_suffix(b, ".ino.merged.bin") ? recognise_arduino(src, NULL, b, err)
                                                       : recognise_arduino(src, b, NULL, err);
        } else {
            rc = recognise_merged(src, b, err);
        }
    }
    if (rc == 0)
        sort_parts(src);
    if (rc == 0)
        rc = bsrc_load_parts(
            src, src->descriptor ? src->descriptor : buildsrc_format_to_string(src->format), err);
    if (rc == 0)
        rc = buildsrc_check(src, err);
    if (rc == -EINVAL && S_ISDIR(st.st_mode) && src->format == BUILDSRC_MERGED && err) {
        /* The directory's only .bin was a guess: say nothing was recognised, and why. */
        char m[sizeof(err->message)];
        snprintf(m, sizeof(m),
                 "%.100s: no build recognised (no flasher_args.json, idedata.json, "
                 "firmware.bin, *.ino.bin or manifest.json); %s",
                 src->dir, err->message);
        memcpy(err->message, m, sizeof(m));
        err->code = rc = -ENOTSUP;
    }
    if (rc == 0 && src->format == BUILDSRC_ESP_IDF)
        idf_project(src);
    if (rc == 0)
        rc = name_it(src, err);
out:
    if (rc < 0) {
        buildsrc_free(src);
        return rc;
    }
    *out = src;
    return 0;
}

void buildsrc_free(struct buildsrc *src)
{
    if (!src)
        return;
    for (size_t s = 0; s < src->n_sets && s < BUILDSRC_MAX_SETS; s++) {
        struct buildsrc_set *set = &src->sets[s];
        for (size_t i = 0; i < set->n_parts; i++) {
            free(set->parts[i].path);
            free(set->parts[i].resolved);
            free(set->parts[i].data);
        }
        free(set->label);
    }
    for (size_t i = 0; i < src->n_notes; i++)
        free(src->notes[i]);
    free(src->dir);
    free(src->descriptor);
    free(src->name);
    free(src->version);
    free(src);
}

const struct buildsrc_set *buildsrc_pick(const struct buildsrc *src,
                                         const struct esp_chip_desc *chip, struct esp_error *err)
{
    if (src->n_sets == 1 && (!chip || src->sets[0].chip == chip))
        return &src->sets[0];
    for (size_t s = 0; s < src->n_sets; s++)
        if (src->sets[s].chip == chip)
            return &src->sets[s];
    char have[160] = "";
    size_t used = 0;
    for (size_t s = 0; s < src->n_sets && used < sizeof(have); s++)
        used += (size_t)snprintf(have + used, sizeof(have) - used, "%s%s", s ? ", " : "",
                                 src->sets[s].chip ? src->sets[s].chip->name : "?");
    bsrc_fail(err, -EINVAL, "connect a board of the family the firmware was built for",
              "the board is an %s but the %s build%s for %s", chip ? chip->name : "unknown chip",
              buildsrc_format_to_string(src->format), src->n_sets == 1 ? " is" : "s are", have);
    return NULL;
}
