/*
 * buildsrc: recognising build outputs (see buildsrc.h for the formats and the rules).
 *
 * Order of work: recognise (which descriptor or which file names are there) -> parse the
 * descriptor into parts (offset, role, path) -> resolve and read each file below the source
 * directory -> check (images, chip, partition table, overlaps, settings) -> name the set.
 * Each step stops at the first error, which names the file and says what to do.
 */
#include "buildsrc.h"

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

#define PT_OFFSET 0x8000u        /* ESP-IDF's default partition table offset */
#define PT_MAX_BYTES 0xC00u      /* the table's sector: 95 entries and the MD5 entry */
#define PT_ENTRY 32u             /* bytes per entry */
#define BOOT_APP0_OFFSET 0xE000u /* Arduino's otadata (boot_app0.bin: boot from ota_0) */
#define APP_OFFSET_DEFAULT 0x10000u
#define APP_DESC_MAGIC 0xABCD5432u /* esp_app_desc_t, first bytes of the app's first segment */

static const char adv_build[] = "check that the build finished and that the directory is the one "
                                "the build tool wrote";

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

/* ---- small helpers -------------------------------------------------------------------- */

/* Control characters (from untrusted names) shown as '?' in messages. */
static void printable(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

static int fail(struct esp_error *err, int code, const char *advice, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct esp_error *err, int code, const char *advice, const char *fmt, ...)
{
    char msg[sizeof(err->message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printable(msg); /* names and paths come from the files */
    return esp_error_set(err, code, ESP_STAGE_PREPARE, advice, "%s", msg);
}

static void add_note(struct buildsrc *src, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_note(struct buildsrc *src, const char *fmt, ...)
{
    if (src->n_notes >= BUILDSRC_MAX_NOTES)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) >= 0) {
        printable(s);
        src->notes[src->n_notes++] = s;
    }
    va_end(ap);
}

void buildsrc_safe_name(const char *s, char *out, size_t max)
{
    size_t o = 0;
    if (max == 0)
        return;
    for (; s && *s && o + 1 < max; s++) {
        unsigned char c = (unsigned char)*s;
        char w = (isalnum(c) || c == '_' || c == '-' || c == '.') && c < 0x80 ? (char)c : '-';
        if (o == 0 && w == '.')
            continue;
        if (w == '.' && o > 0 && out[o - 1] == '.')
            continue; /* never ".." */
        if (w == '-' && o > 0 && out[o - 1] == '-')
            continue;
        out[o++] = w;
    }
    while (o > 0 && (out[o - 1] == '-' || out[o - 1] == '.'))
        o--;
    out[o] = '\0';
}

static bool has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static const char *base_name(const char *p)
{
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

static char *join(const char *a, const char *b)
{
    char *s = NULL;
    if (asprintf(&s, "%s%s%s", a, a[0] && !has_suffix(a, "/") ? "/" : "", b) < 0)
        return NULL;
    return s;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Reads a whole regular file of at most max bytes. 0, -ENOENT, -EFBIG, -EISDIR, -errno. */
static int read_all(const char *path, size_t max, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EISDIR;
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? -errno : -EIO;
            free(buf);
            close(fd);
            return e;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

static json_object *parse_json(const char *json, size_t len, const char *what,
                               struct esp_error *err)
{
    if (len > BUILDSRC_MAX_JSON_BYTES) {
        fail(err, -EINVAL, adv_build, "%s: too large for a build description (%zu bytes)", what,
             len);
        return NULL;
    }
    json_tokener *tok = json_tokener_new();
    if (!tok) {
        fail(err, -ENOMEM, NULL, "out of memory");
        return NULL;
    }
    json_object *o = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tok);
    if (o && (size_t)json_tokener_get_parse_end(tok) < len) {
        /* trailing bytes: only whitespace is allowed */
        for (size_t i = json_tokener_get_parse_end(tok); i < len && o; i++)
            if (!isspace((unsigned char)json[i])) {
                json_object_put(o);
                o = NULL;
                je = json_tokener_error_parse_unexpected;
            }
    }
    json_tokener_free(tok);
    if (!o || je != json_tokener_success) {
        json_object_put(o);
        fail(err, -EINVAL, adv_build, "%s: not valid JSON (%s)", what,
             je == json_tokener_continue ? "it ends early" : json_tokener_error_desc(je));
        return NULL;
    }
    if (!json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        fail(err, -EINVAL, adv_build, "%s: not a JSON object", what);
        return NULL;
    }
    return o;
}

static const char *get_str(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* An offset: a JSON integer, or a string "0x1000" / "4096". 0 or -EINVAL. */
static int get_offset(json_object *v, uint32_t *out)
{
    if (json_object_is_type(v, json_type_int)) {
        int64_t x = json_object_get_int64(v);
        if (x < 0 || x > (int64_t)UINT32_MAX)
            return -EINVAL;
        *out = (uint32_t)x;
        return 0;
    }
    if (!json_object_is_type(v, json_type_string))
        return -EINVAL;
    const char *s = json_object_get_string(v);
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s || strlen(s) > (base == 16 ? 8u : 10u))
        return -EINVAL;
    uint64_t x = 0;
    for (; *s; s++) {
        int d;
        if (isdigit((unsigned char)*s))
            d = *s - '0';
        else if (base == 16 && isxdigit((unsigned char)*s))
            d = tolower((unsigned char)*s) - 'a' + 10;
        else
            return -EINVAL;
        x = x * (uint64_t)base + (uint64_t)d;
    }
    if (x > UINT32_MAX)
        return -EINVAL;
    *out = (uint32_t)x;
    return 0;
}

/* Adds a part to set (path copied). Returns the part or NULL (err set). */
static struct buildsrc_part *add_part(struct buildsrc_set *set, uint32_t offset,
                                      enum buildsrc_role role, const char *path, const char *what,
                                      struct esp_error *err)
{
    if (set->n_parts >= BUILDSRC_MAX_PARTS) {
        fail(err, -EINVAL, adv_build, "%s: more than %d files to flash", what, BUILDSRC_MAX_PARTS);
        return NULL;
    }
    if (!path || !*path || strlen(path) > 1000) {
        fail(err, -EINVAL, adv_build, "%s: a file at 0x%x has no usable path", what, offset);
        return NULL;
    }
    struct buildsrc_part *p = &set->parts[set->n_parts];
    memset(p, 0, sizeof(*p));
    if (!(p->path = strdup(path))) {
        fail(err, -ENOMEM, NULL, "out of memory");
        return NULL;
    }
    p->offset = offset;
    p->role = role;
    set->n_parts++;
    return p;
}

static void set_init(struct buildsrc_set *set)
{
    memset(set, 0, sizeof(*set));
    set->flash_mode = -1;
    set->header_mode = -1;
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
    const char *mode = get_str(fs, "flash_mode"), *size = get_str(fs, "flash_size"),
               *freq = get_str(fs, "flash_freq");
    bool keep = false;
    if (mode) {
        int m = esp_parse_flash_mode(mode, &keep);
        if (m < 0)
            return fail(err, -EINVAL, adv_build,
                        "%s: flash_settings.flash_mode \"%.32s\" is not qio, qout, dio, dout or "
                        "keep",
                        what, mode);
        set->flash_mode = keep ? -1 : m;
    }
    if (size) {
        uint32_t bytes = 0;
        if (esp_parse_flash_size(size, &bytes, &keep) < 0)
            return fail(err, -EINVAL, adv_build,
                        "%s: flash_settings.flash_size \"%.32s\" is not a size like \"4MB\", "
                        "\"detect\" or \"keep\"",
                        what, size);
        set->flash_size = keep ? 0 : bytes;
        set->flash_size_detect = keep && strcasecmp(size, "detect") == 0;
    }
    if (freq) {
        unsigned mhz = 0;
        if (esp_parse_flash_freq(freq, &mhz, &keep) < 0)
            return fail(err, -EINVAL, adv_build,
                        "%s: flash_settings.flash_freq \"%.32s\" is not a frequency like \"40m\" "
                        "or \"keep\"",
                        what, freq);
        set->flash_freq_mhz = keep ? 0 : mhz;
    }
    return 0;
}

int buildsrc_parse_flasher_args(const char *json, size_t len, const char *what,
                                struct buildsrc *src, struct esp_error *err)
{
    json_object *root = parse_json(json, len, what, err);
    if (!root)
        return err && err->code ? err->code : -EINVAL;
    src->format = BUILDSRC_ESP_IDF;
    struct buildsrc_set *set = &src->sets[0];
    set_init(set);
    src->n_sets = 1;
    int rc = 0;
    json_object *files = NULL, *v;
    if (!json_object_object_get_ex(root, "flash_files", &files) ||
        !json_object_is_type(files, json_type_object)) {
        rc = fail(err, -EINVAL, adv_build,
                  "%s: no \"flash_files\" object (offset -> file); is it an ESP-IDF "
                  "flasher_args.json?",
                  what);
        goto out;
    }
    json_object *extra = NULL;
    if (json_object_object_get_ex(root, "extra_esptool_args", &extra)) {
        const char *chip = get_str(extra, "chip");
        if (chip) {
            set->chip = esp_chip_by_name(chip);
            if (!set->chip) {
                rc = fail(err, -EINVAL, adv_build,
                          "%s: extra_esptool_args.chip \"%.32s\" is not a chip family the "
                          "station knows",
                          what, chip);
                goto out;
            }
        }
    }
    json_object *fs = NULL;
    if (json_object_object_get_ex(root, "flash_settings", &fs) &&
        json_object_is_type(fs, json_type_object) && (rc = flash_setting(set, fs, what, err)) < 0)
        goto out;
    json_object_object_foreach(files, key, val)
    {
        uint32_t off = 0;
        json_object *ko = json_object_new_string(key);
        int orc = ko ? get_offset(ko, &off) : -ENOMEM;
        json_object_put(ko);
        if (orc < 0) {
            rc = fail(err, -EINVAL, adv_build,
                      "%s: flash_files key \"%.40s\" is not a flash offset like \"0x10000\"", what,
                      key);
            goto out;
        }
        if (!json_object_is_type(val, json_type_string)) {
            rc = fail(err, -EINVAL, adv_build, "%s: flash_files[\"%.40s\"] is not a file name",
                      what, key);
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
                !json_object_object_get_ex(r, "offset", &v) || get_offset(v, &roff) < 0 ||
                roff != off)
                continue;
            role = idf_roles[i].role;
            const char *enc = get_str(r, "encrypted");
            encrypted = enc && strcasecmp(enc, "true") == 0;
            const char *rf = get_str(r, "file");
            if (rf && strcmp(rf, path) != 0) {
                rc = fail(err, -EINVAL, adv_build,
                          "%s: \"%s\" names %.80s at 0x%x but flash_files names %.80s there", what,
                          idf_roles[i].key, rf, off, path);
                goto out;
            }
        }
        struct buildsrc_part *p = add_part(set, off, role, path, what, err);
        if (!p) {
            rc = err && err->code ? err->code : -ENOMEM;
            goto out;
        }
        p->encrypted = encrypted;
    }
    if (set->n_parts == 0)
        rc = fail(err, -EINVAL, adv_build, "%s: flash_files is empty: nothing to flash", what);
out:
    json_object_put(root);
    return rc;
}

/* ---- PlatformIO idedata.json ------------------------------------------------------------ */

int buildsrc_parse_idedata(const char *json, size_t len, const char *what, struct buildsrc *src,
                           struct esp_error *err)
{
    json_object *root = parse_json(json, len, what, err);
    if (!root)
        return err && err->code ? err->code : -EINVAL;
    src->format = BUILDSRC_PLATFORMIO;
    struct buildsrc_set *set = &src->sets[0];
    set_init(set);
    src->n_sets = 1;
    int rc = 0;
    json_object *extra = NULL, *imgs = NULL, *v;
    if (!json_object_object_get_ex(root, "extra", &extra) ||
        !json_object_is_type(extra, json_type_object)) {
        rc = fail(err, -EINVAL, adv_build,
                  "%s: no \"extra\" object; is it PlatformIO's idedata.json (pio run -t "
                  "idedata)?",
                  what);
        goto out;
    }
    if (json_object_object_get_ex(extra, "flash_images", &imgs)) {
        if (!json_object_is_type(imgs, json_type_array)) {
            rc = fail(err, -EINVAL, adv_build, "%s: extra.flash_images is not a list", what);
            goto out;
        }
        for (size_t i = 0; i < json_object_array_length(imgs); i++) {
            json_object *e = json_object_array_get_idx(imgs, i);
            uint32_t off = 0;
            const char *path = get_str(e, "path");
            if (!path || !json_object_object_get_ex(e, "offset", &v) || get_offset(v, &off) < 0) {
                rc = fail(err, -EINVAL, adv_build,
                          "%s: extra.flash_images[%zu] needs \"path\" and \"offset\" (\"0x1000\")",
                          what, i);
                goto out;
            }
            const char *b = base_name(path);
            enum buildsrc_role role = BUILDSRC_ROLE_DATA;
            if (strstr(b, "bootloader"))
                role = BUILDSRC_ROLE_BOOTLOADER;
            else if (strstr(b, "partitions") || strstr(b, "partition-table"))
                role = BUILDSRC_ROLE_PARTITION_TABLE;
            else if (strcmp(b, "boot_app0.bin") == 0 || strstr(b, "otadata"))
                role = BUILDSRC_ROLE_OTADATA;
            if (!add_part(set, off, role, path, what, err)) {
                rc = err && err->code ? err->code : -ENOMEM;
                goto out;
            }
        }
    }
    uint32_t app_off = APP_OFFSET_DEFAULT;
    if (json_object_object_get_ex(extra, "application_offset", &v) && get_offset(v, &app_off) < 0) {
        rc = fail(err, -EINVAL, adv_build,
                  "%s: extra.application_offset is not a flash offset like \"0x10000\"", what);
        goto out;
    }
    /* The app: prog_path's firmware.elf -> firmware.bin next to it. */
    char app[256] = "firmware.bin";
    const char *prog = get_str(root, "prog_path");
    if (prog && has_suffix(base_name(prog), ".elf") && strlen(base_name(prog)) < sizeof(app))
        snprintf(app, sizeof(app), "%.*s.bin", (int)(strlen(base_name(prog)) - 4), base_name(prog));
    if (!add_part(set, app_off, BUILDSRC_ROLE_APP, app, what, err))
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
    json_object *root = parse_json(json, len, what, err);
    if (!root)
        return err && err->code ? err->code : -EINVAL;
    src->format = BUILDSRC_WEB_TOOLS;
    int rc = 0;
    json_object *builds = NULL;
    if (!json_object_object_get_ex(root, "builds", &builds) ||
        !json_object_is_type(builds, json_type_array) || json_object_array_length(builds) == 0) {
        rc = fail(err, -EINVAL, adv, "%s: no \"builds\" list (an ESP Web Tools manifest has one)",
                  what);
        goto out;
    }
    size_t nb = json_object_array_length(builds);
    if (nb > BUILDSRC_MAX_SETS) {
        rc = fail(err, -EINVAL, adv, "%s: %zu builds, at most %d", what, nb, BUILDSRC_MAX_SETS);
        goto out;
    }
    for (size_t b = 0; b < nb; b++) {
        json_object *e = json_object_array_get_idx(builds, b), *parts = NULL;
        struct buildsrc_set *set = &src->sets[b];
        set_init(set);
        src->n_sets = b + 1;
        const char *fam = get_str(e, "chipFamily");
        if (!fam) {
            rc = fail(err, -EINVAL, adv, "%s: builds[%zu] has no \"chipFamily\" (e.g. \"ESP32\")",
                      what, b);
            goto out;
        }
        if (!(set->label = strdup(fam))) {
            rc = fail(err, -ENOMEM, NULL, "out of memory");
            goto out;
        }
        set->chip = esp_chip_by_name(fam);
        if (!set->chip) {
            rc = fail(err, -EINVAL, adv,
                      "%s: builds[%zu].chipFamily \"%.32s\" is not a chip family the station "
                      "knows (ESP32, ESP32-C3, ESP32-S2, ESP32-S3, ESP8266, ...)",
                      what, b, fam);
            goto out;
        }
        for (size_t j = 0; j < b; j++)
            if (src->sets[j].chip == set->chip) {
                rc = fail(err, -EINVAL, adv, "%s: builds[%zu] and builds[%zu] are both for %s",
                          what, j, b, set->chip->name);
                goto out;
            }
        if (!json_object_object_get_ex(e, "parts", &parts) ||
            !json_object_is_type(parts, json_type_array) || json_object_array_length(parts) == 0) {
            rc =
                fail(err, -EINVAL, adv, "%s: builds[%zu] (%s) has no \"parts\" list", what, b, fam);
            goto out;
        }
        for (size_t i = 0; i < json_object_array_length(parts); i++) {
            json_object *pe = json_object_array_get_idx(parts, i), *v;
            const char *path = get_str(pe, "path");
            uint32_t off = 0;
            if (!path || !json_object_object_get_ex(pe, "offset", &v) || get_offset(v, &off) < 0) {
                rc = fail(err, -EINVAL, adv,
                          "%s: builds[%zu].parts[%zu] needs \"path\" and a numeric \"offset\"",
                          what, b, i);
                goto out;
            }
            if (strstr(path, "://")) {
                rc = fail(err, -EINVAL,
                          "download the file and put it next to manifest.json under a relative "
                          "path",
                          "%s: builds[%zu].parts[%zu] is a URL (%.80s): only files next to the "
                          "manifest can be imported",
                          what, b, i, path);
                goto out;
            }
            /* Roles are not in the manifest: the check assigns them from the contents. */
            if (!add_part(set, off, BUILDSRC_ROLE_DATA, path, what, err)) {
                rc = err && err->code ? err->code : -ENOMEM;
                goto out;
            }
        }
    }
    const char *name = get_str(root, "name"), *version = get_str(root, "version");
    char tmp[65];
    if (name) {
        buildsrc_safe_name(name, tmp, sizeof(tmp));
        if (tmp[0] && !(src->name = strdup(tmp)))
            rc = fail(err, -ENOMEM, NULL, "out of memory");
    }
    if (version) {
        buildsrc_safe_name(version, tmp, sizeof(tmp));
        if (tmp[0] && !(src->version = strdup(tmp)))
            rc = fail(err, -ENOMEM, NULL, "out of memory");
    }
out:
    json_object_put(root);
    return rc;
}

/* ---- reading the files --------------------------------------------------------------- */

/*
 * The file for a descriptor's path, below dir: a relative path without "..", or the base
 * name of an absolute one. Returns an owned path or NULL (err set).
 */
static char *resolve(const char *dir, const char *path, const char *what, struct esp_error *err)
{
    const char *rel = path;
    if (path[0] == '/') {
        rel = base_name(path); /* PlatformIO writes the build machine's absolute paths */
    } else if (isalpha((unsigned char)path[0]) && path[1] == ':') {
        const char *bs = strrchr(path, '\\'); /* a Windows build machine's path */
        rel = bs ? bs + 1 : path + 2;
    } else if (strncmp(rel, "./", 2) == 0) {
        rel += 2;
    }
    if (!*rel) {
        fail(err, -EINVAL, adv_build, "%s: \"%.80s\" is not a file name", what, path);
        return NULL;
    }
    for (const char *p = rel; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            fail(err, -EINVAL, "keep every file of the build below its directory",
                 "%s: \"%.80s\" leaves the build directory (\"..\"): refused", what, path);
            return NULL;
        }
        p += n;
        while (*p == '/')
            p++;
    }
    for (const char *p = rel; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '\\') {
            fail(err, -EINVAL, adv_build, "%s: \"%.80s\" is not a usable file name", what, path);
            return NULL;
        }
    char *full = join(dir, rel);
    if (!full)
        fail(err, -ENOMEM, NULL, "out of memory");
    return full;
}

static int load_parts(struct buildsrc *src, const char *what, struct esp_error *err)
{
    for (size_t s = 0; s < src->n_sets; s++) {
        struct buildsrc_set *set = &src->sets[s];
        for (size_t i = 0; i < set->n_parts; i++) {
            struct buildsrc_part *p = &set->parts[i];
            if (p->data)
                continue;
            if (!(p->resolved = resolve(src->dir, p->path, what, err)))
                return err && err->code ? err->code : -EINVAL;
            int rc = read_all(p->resolved, BUILDSRC_MAX_FILE_BYTES, &p->data, &p->len);
            if (rc == -ENOENT || rc == -ENOTDIR) {
                const char *hint = adv_build;
                if (strcmp(base_name(p->path), "boot_app0.bin") == 0)
                    hint = "copy boot_app0.bin next to the other files (PlatformIO keeps it in "
                           "the Arduino framework package: tools/partitions/boot_app0.bin)";
                return fail(err, -EINVAL, hint,
                            "%s names %s at 0x%x, but that file is missing in %.80s", what, p->path,
                            p->offset, src->dir);
            }
            if (rc == -EFBIG)
                return fail(err, -EINVAL, adv_build, "%s (0x%x) is larger than any flash", p->path,
                            p->offset);
            if (rc == -EISDIR)
                return fail(err, -EINVAL, adv_build, "%s (0x%x) is not a regular file", p->path,
                            p->offset);
            if (rc < 0)
                return fail(err, rc, adv_build, "cannot read %s: %s", p->path, strerror(-rc));
            if (p->len == 0)
                return fail(err, -EINVAL, "an empty file usually means a failed build",
                            "%s (0x%x) is empty", p->path, p->offset);
            if (p->path[0] == '/' || (isalpha((unsigned char)p->path[0]) && p->path[1] == ':')) {
                /* The build machine's absolute path: name the file that was read. */
                char *rel = strdup(p->resolved + strlen(src->dir) + !has_suffix(src->dir, "/"));
                if (!rel)
                    return fail(err, -ENOMEM, NULL, "out of memory");
                free(p->path);
                p->path = rel;
            }
        }
    }
    return 0;
}

/* ---- images and partition tables ------------------------------------------------------- */

/*
 * Parses an image and tells which chip it is for: the extended header's chip id, or the
 * ESP8266 layout. prefer (may be NULL) is tried first. Returns 0 (chip in *chip), or
 * -EINVAL/-EBADMSG with the parse error in err.
 */
static int identify(const uint8_t *d, size_t n, const struct esp_chip_desc *prefer,
                    struct esp_image_info *info, const struct esp_chip_desc **chip,
                    struct esp_error *err)
{
    struct esp_error e32, e8;
    struct esp_image_info i8;
    esp_error_clear(&e32);
    esp_error_clear(&e8);
    *chip = NULL;
    bool first8266 = prefer && prefer->chip == ESP_CHIP_ESP8266;
    int rc32 = -EINVAL, rc8 = -EINVAL;
    if (!first8266) {
        rc32 = esp_image_parse(d, n, false, info, &e32);
        if (rc32 == 0 && (*chip = esp_chip_by_image_id(info->chip_id)) != NULL)
            return 0;
    }
    rc8 = esp_image_parse(d, n, true, &i8, &e8);
    if (rc8 == 0) {
        *info = i8;
        *chip = esp_chip_get(ESP_CHIP_ESP8266);
        return 0;
    }
    if (first8266) {
        rc32 = esp_image_parse(d, n, false, info, &e32);
        if (rc32 == 0 && (*chip = esp_chip_by_image_id(info->chip_id)) != NULL)
            return 0;
        if (err)
            *err = e8;
        return rc8;
    }
    if (rc32 == 0) {
        if (err)
            esp_error_set(err, -EINVAL, ESP_STAGE_PREPARE, NULL, "unknown chip id %u",
                          info->chip_id);
        return -EINVAL;
    }
    if (err)
        *err = e32;
    return rc32;
}

struct pt_app {
    uint32_t offset, size;
};

/* Valid partition table? Fills the app partitions (type 0) in table order. */
static int parse_pt(const uint8_t *d, size_t n, struct pt_app *apps, size_t max, size_t *n_apps,
                    char *why, size_t whylen)
{
    *n_apps = 0;
    if (n < PT_ENTRY || d[0] != 0xAA || d[1] != 0x50) {
        snprintf(why, whylen, "it does not start with a partition entry (0xAA 0x50)");
        return -EINVAL;
    }
    size_t i = 0;
    for (; i + PT_ENTRY <= n && i < PT_MAX_BYTES; i += PT_ENTRY) {
        const uint8_t *e = d + i;
        if (e[0] == 0xAA && e[1] == 0x50) {
            uint32_t off = esp_get_u32(e + 4), size = esp_get_u32(e + 8);
            if (e[2] == 0x00 && *n_apps < max) {
                apps[*n_apps].offset = off;
                apps[*n_apps].size = size;
                (*n_apps)++;
            }
            continue;
        }
        if ((e[0] == 0xEB && e[1] == 0xEB) || (e[0] == 0xFF && e[1] == 0xFF))
            return 0;
        snprintf(why, whylen, "entry %zu has no partition magic", i / PT_ENTRY);
        return -EINVAL;
    }
    return 0;
}

/* The partition the bootloader starts first: factory, else the first app partition. */
static bool pt_boot_app(const uint8_t *d, size_t n, uint32_t *off)
{
    struct pt_app apps[16];
    size_t na = 0;
    char why[96];
    if (parse_pt(d, n, apps, 16, &na, why, sizeof(why)) < 0 || na == 0)
        return false;
    for (size_t i = 0; i + PT_ENTRY <= n && i < PT_MAX_BYTES; i += PT_ENTRY)
        if (d[i] == 0xAA && d[i + 1] == 0x50 && d[i + 2] == 0x00 && d[i + 3] == 0x00) {
            *off = esp_get_u32(d + i + 4);
            return true;
        }
    *off = apps[0].offset;
    return true;
}

/* Name and version from esp_app_desc_t (first 256 bytes of the first segment). */
static void app_desc(const struct buildsrc_part *p, size_t base, struct buildsrc_set *set)
{
    const struct esp_image_info *im = &p->image;
    if (!im->has_extended_header || im->segment_count == 0)
        return;
    size_t at = base + im->segments[0].file_offset;
    if (im->segments[0].length < 0x70 || at + 0x70 > p->len)
        return;
    const uint8_t *d = p->data + at;
    if (esp_get_u32(d) != APP_DESC_MAGIC)
        return;
    char v[33], n[33];
    memcpy(v, d + 0x10, 32);
    v[32] = '\0';
    memcpy(n, d + 0x30, 32);
    n[32] = '\0';
    buildsrc_safe_name(v, set->app_version, sizeof(set->app_version));
    buildsrc_safe_name(n, set->app_name, sizeof(set->app_name));
}

static const char *mode_str(int m)
{
    return m >= 0 ? esp_flash_mode_to_string((unsigned)m) : "keep";
}

static void size_str(uint32_t bytes, char *buf, size_t n)
{
    if (!bytes)
        snprintf(buf, n, "keep");
    else if (bytes % (1024 * 1024) == 0)
        snprintf(buf, n, "%uMB", bytes / (1024 * 1024));
    else
        snprintf(buf, n, "%uKB", bytes / 1024);
}

/* Checks one image part (or the image at base inside a merged file) against the set's chip. */
static int check_image(struct buildsrc_set *set, struct buildsrc_part *p, size_t base,
                       const char *where, struct esp_error *err)
{
    struct esp_error ie;
    esp_error_clear(&ie);
    const struct esp_chip_desc *chip = NULL;
    int rc = identify(p->data + base, p->len - base, set->chip, &p->image, &chip, &ie);
    if (rc < 0)
        return fail(err, -EINVAL, adv_build, "%s%s: not a valid ESP image: %s", p->path, where,
                    ie.message);
    p->is_image = true;
    if (!set->chip) {
        set->chip = chip;
        set->chip_from = p->path;
    } else if (chip != set->chip) {
        return fail(err, -EINVAL,
                    "a file from another build, or the wrong chip in the build configuration: "
                    "build again for one chip",
                    "%s%s: image is for %s while %s is for %s", p->path, where, chip->name,
                    set->chip_from ? set->chip_from : "the build", set->chip->name);
    }
    if (p->image.has_extended_header) {
        /* As esp_image_check_chip: the legacy byte (the minor revision on the C3), and
         * min_rev_full unless the image predates it (max_rev_full 0). */
        const struct esp_image_info *im = &p->image;
        int legacy = chip->chip == ESP_CHIP_ESP32C3 ? im->min_rev : im->min_rev * 100;
        int min = im->max_rev_full == 0 || legacy > im->min_rev_full ? legacy : im->min_rev_full;
        if (min > set->min_rev_full)
            set->min_rev_full = min;
    }
    return 0;
}

/* The header's flash settings into the set (from the bootloader, else the first image). */
static void header_settings(struct buildsrc_set *set, const struct esp_image_info *im)
{
    set->header_mode = im->flash_mode;
    set->header_size = esp_chip_flash_size_from_code(set->chip, im->flash_size_code);
    unsigned code = im->flash_freq_code;
    set->header_freq_mhz = code < 16 && set->chip->freq_mhz ? set->chip->freq_mhz[code] : 0;
}

static bool all_ff(const uint8_t *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (d[i] != 0xFF)
            return false;
    return true;
}

/* Does a file at 0x0 look like a merged image (a partition table at 0x8000)? */
static bool looks_merged(const struct buildsrc_part *p)
{
    return p->offset == 0 && p->len > PT_OFFSET + PT_ENTRY && p->data[PT_OFFSET] == 0xAA &&
           p->data[PT_OFFSET + 1] == 0x50;
}

/*
 * A merged file at 0x0: the bootloader at the chip's offset (0xFF before it), the partition
 * table at 0x8000, the app where the table says. On the ESP8266 a single image at 0x0 is
 * the whole firmware: its role becomes app. p->image is the bootloader's header after this.
 */
static int check_merged(struct buildsrc_set *set, struct buildsrc_part *p, struct esp_error *err)
{
    static const uint32_t boot_offsets[] = {0x0, 0x1000, 0x2000};
    struct esp_error ie;
    esp_error_clear(&ie);
    for (size_t k = 0; k < sizeof(boot_offsets) / sizeof(boot_offsets[0]); k++) {
        uint32_t bo = boot_offsets[k];
        if (p->len <= bo || p->data[bo] != 0xE9 || !all_ff(p->data, bo))
            continue;
        const struct esp_chip_desc *chip = NULL;
        struct esp_image_info info;
        if (identify(p->data + bo, p->len - bo, set->chip, &info, &chip, &ie) < 0)
            continue;
        if (chip->chip == ESP_CHIP_ESP8266 && bo == 0) {
            p->role = BUILDSRC_ROLE_APP;
            return check_image(set, p, 0, "", err);
        }
        if (chip->bootloader_offset != bo)
            continue;
        char where[48];
        snprintf(where, sizeof(where), " (bootloader at 0x%x)", bo);
        int rc = check_image(set, p, bo, where, err);
        if (rc < 0)
            return rc;
        struct esp_image_info boot_img = p->image;
        uint32_t app = 0;
        if (p->len <= PT_OFFSET || !pt_boot_app(p->data + PT_OFFSET, p->len - PT_OFFSET, &app))
            return fail(err, -EINVAL,
                        "export the merged image with its partition table (esptool merge_bin of "
                        "bootloader, partition table and app), or use the separate files",
                        "%s: a bootloader for %s but no partition table with an app at 0x%x: not "
                        "a merged image",
                        p->path, chip->name, PT_OFFSET);
        if (app >= p->len)
            return fail(err, -EINVAL, adv_build,
                        "%s: the partition table puts the app at 0x%x, past the end of the file "
                        "(%zu bytes)",
                        p->path, app, p->len);
        snprintf(where, sizeof(where), " (app at 0x%x)", app);
        if ((rc = check_image(set, p, app, where, err)) < 0)
            return rc;
        app_desc(p, app, set);
        p->image = boot_img;
        p->role = BUILDSRC_ROLE_MERGED;
        return 0;
    }
    if (ie.code)
        return fail(err, -EINVAL, adv_build, "%s: not a valid merged image: %s", p->path,
                    ie.message);
    return fail(err, -EINVAL,
                "point at the build directory (ESP-IDF build/, .pio/build/<env>/, the Arduino "
                "export) instead of one file",
                "%s: not a merged image (no bootloader at 0x0 or 0x1000 with a partition table at "
                "0x8000), so its flash offset is unknown",
                p->path);
}

/* Roles the descriptor does not name (ESP Web Tools parts) come from the contents. */
static void assign_role(const struct buildsrc *src, const struct buildsrc_set *set,
                        struct buildsrc_part *p)
{
    if (p->role != BUILDSRC_ROLE_DATA)
        return;
    if (p->offset == PT_OFFSET && p->len >= 2 && p->data[0] == 0xAA && p->data[1] == 0x50)
        p->role = BUILDSRC_ROLE_PARTITION_TABLE;
    else if (src->format != BUILDSRC_WEB_TOOLS)
        return;
    else if (looks_merged(p))
        p->role = BUILDSRC_ROLE_MERGED;
    else if (p->data[0] == 0xE9)
        p->role = set->chip && p->offset == set->chip->bootloader_offset &&
                          set->chip->chip != ESP_CHIP_ESP8266
                      ? BUILDSRC_ROLE_BOOTLOADER
                      : BUILDSRC_ROLE_APP;
}

static int check_set(struct buildsrc *src, struct buildsrc_set *set, struct esp_error *err)
{
    const char *what = src->descriptor ? src->descriptor : "the build";
    struct buildsrc_part *boot = NULL, *hdr_part = NULL, *pt = NULL;
    if (set->chip && !set->chip_from)
        set->chip_from = what;
    for (size_t i = 0; i < set->n_parts; i++) {
        struct buildsrc_part *p = &set->parts[i];
        if (p->encrypted)
            return fail(err, -ENOTSUP,
                        "build without flash encryption in development mode, or flash the "
                        "encrypted images with esptool --encrypt",
                        "%s (0x%x) is marked \"encrypted\": \"true\": the station does not "
                        "encrypt on write",
                        p->path, p->offset);
        if (p->offset % 4)
            return fail(err, -EINVAL, adv_build, "%s: offset 0x%x is not a multiple of 4", p->path,
                        p->offset);
        if ((uint64_t)p->offset + p->len > 0x100000000ULL)
            return fail(err, -EINVAL, adv_build, "%s: %zu bytes at 0x%x run past 4 GiB", p->path,
                        p->len, p->offset);
        assign_role(src, set, p);
    }
    /* Overlaps, with both files and their ranges. */
    for (size_t j = 0; j < set->n_parts; j++)
        for (size_t i = 0; i < j; i++) {
            const struct buildsrc_part *a = &set->parts[i], *b = &set->parts[j];
            uint64_t as = a->offset, ae = as + a->len, bs = b->offset, be = bs + b->len;
            if (as < be && bs < ae)
                return fail(err, -EINVAL,
                            "the offsets in the build description do not fit the files: check "
                            "the partition table and rebuild",
                            "%s (0x%llx-0x%llx) overlaps %s (0x%llx-0x%llx)", b->path,
                            (unsigned long long)bs, (unsigned long long)(be - 1), a->path,
                            (unsigned long long)as, (unsigned long long)(ae - 1));
        }
    /* Bootloader (or merged image) first: it fixes the chip when nothing declared it. */
    int rc;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < set->n_parts; i++) {
            struct buildsrc_part *p = &set->parts[i];
            bool first = p->role == BUILDSRC_ROLE_BOOTLOADER || p->role == BUILDSRC_ROLE_MERGED;
            if ((pass == 0) != first)
                continue;
            switch (p->role) {
            case BUILDSRC_ROLE_BOOTLOADER:
                if (boot)
                    return fail(err, -EINVAL, adv_build,
                                "%s: a second bootloader (the first is %s)", p->path, boot->path);
                boot = hdr_part = p;
                if ((rc = check_image(set, p, 0, "", err)) < 0)
                    return rc;
                break;
            case BUILDSRC_ROLE_MERGED:
                if ((rc = check_merged(set, p, err)) < 0)
                    return rc;
                if (!hdr_part)
                    hdr_part = p;
                break;
            case BUILDSRC_ROLE_APP:
                if ((rc = check_image(set, p, 0, "", err)) < 0)
                    return rc;
                if (!hdr_part)
                    hdr_part = p;
                if (!set->app_name[0] && !set->app_version[0])
                    app_desc(p, 0, set);
                break;
            case BUILDSRC_ROLE_PARTITION_TABLE: {
                struct pt_app apps[1];
                size_t na;
                char why[96];
                if (parse_pt(p->data, p->len, apps, 1, &na, why, sizeof(why)) < 0)
                    return fail(err, -EINVAL, adv_build, "%s (0x%x): not a partition table: %s",
                                p->path, p->offset, why);
                pt = p;
                break;
            }
            default:
                break;
            }
        }
    if (!set->chip)
        return fail(err, -EINVAL, "add the bootloader (or name the chip in the build description)",
                    "%s: none of the files is an ESP image, so the chip family is unknown", what);
    if (boot && boot->offset != set->chip->bootloader_offset)
        return fail(err, -EINVAL, adv_build,
                    "%s: a bootloader for the %s must be at 0x%x, not at 0x%x", boot->path,
                    set->chip->name, set->chip->bootloader_offset, boot->offset);
    /* An app must sit where the partition table puts an app, and fit it. */
    if (pt) {
        struct pt_app apps[16];
        size_t na = 0;
        char why[96];
        parse_pt(pt->data, pt->len, apps, 16, &na, why, sizeof(why));
        for (size_t i = 0; i < set->n_parts && na > 0; i++) {
            const struct buildsrc_part *p = &set->parts[i];
            if (p->role != BUILDSRC_ROLE_APP)
                continue;
            size_t k = 0;
            while (k < na && apps[k].offset != p->offset)
                k++;
            if (k == na)
                return fail(err, -EINVAL,
                            "the app offset does not match the partition table: check the "
                            "build's partition scheme",
                            "%s at 0x%x: %s has no app partition there (first app partition: "
                            "0x%x)",
                            p->path, p->offset, pt->path, apps[0].offset);
            if (p->len > apps[k].size)
                return fail(err, -EINVAL, "choose a partition scheme with a larger app partition",
                            "%s (%zu bytes) does not fit its app partition at 0x%x (%u bytes in "
                            "%s)",
                            p->path, p->len, p->offset, apps[k].size, pt->path);
        }
    }
    if (hdr_part)
        header_settings(set, &hdr_part->image);
    /* Settings the descriptor gives must be encodable for the chip; disagreements are noted. */
    if (set->flash_size && esp_chip_flash_size_code(set->chip, set->flash_size) < 0)
        return fail(err, -EINVAL, adv_build, "%s: flash size %u KiB is not one of the %s's", what,
                    set->flash_size / 1024, set->chip->name);
    if (set->flash_freq_mhz && esp_chip_flash_freq_code(set->chip, set->flash_freq_mhz) < 0)
        return fail(err, -EINVAL, adv_build, "%s: flash frequency %u MHz is not one of the %s's",
                    what, set->flash_freq_mhz, set->chip->name);
    if (hdr_part) {
        const char *hf = hdr_part->path;
        char a[16], b[16];
        if (set->flash_mode >= 0 && set->flash_mode != set->header_mode)
            add_note(src,
                     "%s says flash mode %s, the header of %s says %s: the header is set to "
                     "%s when written",
                     what, mode_str(set->flash_mode), hf, mode_str(set->header_mode),
                     mode_str(set->flash_mode));
        if (set->flash_size && set->header_size && set->flash_size != set->header_size) {
            size_str(set->flash_size, a, sizeof(a));
            size_str(set->header_size, b, sizeof(b));
            add_note(src,
                     "%s says flash size %s, the header of %s says %s: the header is set to "
                     "%s when written",
                     what, a, hf, b, a);
        }
        if (set->flash_freq_mhz && set->header_freq_mhz &&
            set->flash_freq_mhz != set->header_freq_mhz)
            add_note(src,
                     "%s says flash frequency %um, the header of %s says %um: the header is "
                     "set to %um when written",
                     what, set->flash_freq_mhz, hf, set->header_freq_mhz, set->flash_freq_mhz);
    }
    /* Everything must fit the flash the set is built for. */
    uint32_t fsize = set->flash_size ? set->flash_size : set->header_size;
    for (size_t i = 0; i < set->n_parts && fsize && !set->flash_size_detect; i++) {
        const struct buildsrc_part *p = &set->parts[i];
        if ((uint64_t)p->offset + p->len > fsize) {
            char a[16];
            size_str(fsize, a, sizeof(a));
            return fail(err, -EINVAL, "build for the flash size of the boards",
                        "%s: %zu bytes at 0x%x end past the %s flash the build is for", p->path,
                        p->len, p->offset, a);
        }
    }
    return 0;
}

int buildsrc_check(struct buildsrc *src, struct esp_error *err)
{
    for (size_t s = 0; s < src->n_sets; s++) {
        struct buildsrc_set *set = &src->sets[s];
        int rc = check_set(src, set, err);
        if (rc < 0) {
            if (src->n_sets > 1 && err) {
                char m[sizeof(err->message)];
                snprintf(m, sizeof(m), "%s build: %s",
                         set->label  ? set->label
                         : set->chip ? set->chip->name
                                     : "?",
                         err->message);
                memcpy(err->message, m, sizeof(m));
            }
            return rc;
        }
    }
    return 0;
}

/* ---- recognising a directory ------------------------------------------------------------ */

static int load_descriptor(struct buildsrc *src, const char *file,
                           int (*parse)(const char *, size_t, const char *, struct buildsrc *,
                                        struct esp_error *),
                           struct esp_error *err)
{
    char *path = join(src->dir, file);
    if (!path)
        return fail(err, -ENOMEM, NULL, "out of memory");
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = read_all(path, BUILDSRC_MAX_JSON_BYTES, &buf, &len);
    free(path);
    if (rc < 0)
        return fail(err, rc == -EFBIG ? -EINVAL : rc, adv_build, "cannot read %s: %s", file,
                    rc == -EFBIG ? "too large" : strerror(-rc));
    if (!(src->descriptor = strdup(file))) {
        free(buf);
        return fail(err, -ENOMEM, NULL, "out of memory");
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
        if (e->d_name[0] == '.' || !has_suffix(e->d_name, suffix) || strlen(e->d_name) >= 256)
            continue;
        char *p = join(dir, e->d_name);
        bool f = p && is_file(p);
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
    char *p = join(dir, file);
    bool r = p && is_file(p);
    free(p);
    return r;
}

/* Reads a file of dir into memory (small helper for the layout guesses). */
static int peek(const char *dir, const char *file, uint8_t **d, size_t *n)
{
    char *p = join(dir, file);
    if (!p)
        return -ENOMEM;
    int rc = read_all(p, BUILDSRC_MAX_FILE_BYTES, d, n);
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
        identify(d, n, NULL, &info, &chip, NULL);
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
    if (pt_file && peek(dir, pt_file, &d, &n) == 0 && pt_boot_app(d, n, &off))
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
    set_init(set);
    src->n_sets = 1;
    const struct esp_chip_desc *chip = boot ? chip_of(src->dir, boot) : NULL;
    if (!chip && app)
        chip = chip_of(src->dir, app);
    if (!chip && merged) {
        if (!add_part(set, 0, BUILDSRC_ROLE_MERGED, merged, tool, err))
            return err->code;
        add_note(src, "%s: %s is flashed whole at 0x0", tool, merged);
        return 0;
    }
    if (!chip) {
        const char *f = app ? app : boot ? boot : "the build";
        return fail(err, -EINVAL, adv_build, "%s: %s is not a valid ESP image", tool, f);
    }
    if (chip->chip == ESP_CHIP_ESP8266) {
        if (!app)
            return fail(err, -EINVAL, adv_build, "%s: no app image for the ESP8266", tool);
        if (!add_part(set, 0, BUILDSRC_ROLE_APP, app, tool, err))
            return err->code;
        add_note(src, "%s: no offsets given; %s at 0x0 (the ESP8266's single image)", tool, app);
        return 0;
    }
    if (!app && merged) {
        if (!add_part(set, 0, BUILDSRC_ROLE_MERGED, merged, tool, err))
            return err->code;
        return 0;
    }
    if (!app)
        return fail(err, -EINVAL, adv_build, "%s: no application image found", tool);
    bool from_table = false;
    uint32_t app_off = app_offset_from(src->dir, pt, &from_table);
    if ((boot &&
         !add_part(set, chip->bootloader_offset, BUILDSRC_ROLE_BOOTLOADER, boot, tool, err)) ||
        (pt && !add_part(set, PT_OFFSET, BUILDSRC_ROLE_PARTITION_TABLE, pt, tool, err)) ||
        (otadata && !add_part(set, BOOT_APP0_OFFSET, BUILDSRC_ROLE_OTADATA, otadata, tool, err)) ||
        !add_part(set, app_off, BUILDSRC_ROLE_APP, app, tool, err))
        return err->code;
    char n[160] = "";
    size_t used = 0;
    for (size_t i = 0; i < set->n_parts && used < sizeof(n); i++)
        used += (size_t)snprintf(n + used, sizeof(n) - used, "%s%s 0x%x", i ? ", " : "",
                                 set->parts[i].path, set->parts[i].offset);
    add_note(src, "%s: no offsets in the build, the usual %s layout is used: %s%s", tool,
             chip->name, n, from_table ? " (app offset from the partition table)" : "");
    return 0;
}

static int recognise_pio(struct buildsrc *src, struct esp_error *err)
{
    src->format = BUILDSRC_PLATFORMIO;
    if (dir_has(src->dir, "idedata.json"))
        return load_descriptor(src, "idedata.json", buildsrc_parse_idedata, err);
    if (!dir_has(src->dir, "firmware.bin"))
        return fail(err, -EINVAL, adv_build, "PlatformIO build without firmware.bin in %.100s",
                    src->dir);
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
        return fail(err, -ENOMEM, NULL, "out of memory");
    /* The separate files when they are all there (less to write), else the merged image. */
    if (app && (has_boot || !merged))
        return usual_layout(src, has_boot ? boot : NULL, has_pt ? pt : NULL,
                            dir_has(src->dir, "boot_app0.bin") ? "boot_app0.bin" : NULL, app,
                            merged, "Arduino", err);
    struct buildsrc_set *set = &src->sets[0];
    set_init(set);
    src->n_sets = 1;
    return add_part(set, 0, BUILDSRC_ROLE_MERGED, merged, "Arduino", err) ? 0 : err->code;
}

/* A single .bin: a merged image (or the ESP8266's single image). */
static int recognise_merged(struct buildsrc *src, const char *file, struct esp_error *err)
{
    src->format = BUILDSRC_MERGED;
    struct buildsrc_set *set = &src->sets[0];
    set_init(set);
    src->n_sets = 1;
    char tmp[65], stem[256];
    snprintf(stem, sizeof(stem), "%s", file);
    if (has_suffix(stem, ".bin"))
        stem[strlen(stem) - 4] = '\0';
    buildsrc_safe_name(stem, tmp, sizeof(tmp));
    if (tmp[0] && !(src->name = strdup(tmp)))
        return fail(err, -ENOMEM, NULL, "out of memory");
    return add_part(set, 0, BUILDSRC_ROLE_MERGED, file, "merged image", err) ? 0 : err->code;
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
        return fail(err, -ENOTSUP,
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
        return fail(err, -EINVAL, "export one sketch per directory",
                    "%.100s holds %zu sketches (%s, %s, ...): which one to flash is unclear", dir,
                    n_app, names[0], names[1]);
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
    return fail(err, -ENOTSUP,
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
    char *idf = join(*dir, "build");
    if (idf && dir_has(idf, "flasher_args.json") && !dir_has(*dir, "flasher_args.json")) {
        free(*dir);
        *dir = idf;
        return 0;
    }
    free(idf);
    char *pio = join(*dir, ".pio/build");
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
        char *p = join(pio, e->d_name);
        bool ok = p && is_dir(p) && (dir_has(p, "firmware.bin") || dir_has(p, "idedata.json"));
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
        char *p = join(pio, envs[0]);
        if (p) {
            free(*dir);
            *dir = p;
        } else {
            rc = -ENOMEM;
        }
    } else if (n > 1) {
        rc = fail(err, -EINVAL, "name the environment's directory: .pio/build/<env>",
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
        const char *name = get_str(o, "project_name"), *ver = get_str(o, "project_version");
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
            n = base_name(src->dir);
        buildsrc_safe_name(n ? n : "firmware", tmp, sizeof(tmp));
        if (!(src->name = strdup(tmp[0] ? tmp : "firmware")))
            return fail(err, -ENOMEM, NULL, "out of memory");
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
            return fail(err, -ENOMEM, NULL, "out of memory");
    }
    return 0;
}

int buildsrc_load(const char *path, struct buildsrc **out, struct esp_error *err)
{
    *out = NULL;
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return fail(err, -ENOENT, "check the path", "%.120s: %s", path ? path : "(none)",
                    strerror(errno));
    struct buildsrc *src = calloc(1, sizeof(*src));
    if (!src)
        return fail(err, -ENOMEM, NULL, "out of memory");
    int rc;
    if (S_ISDIR(st.st_mode)) {
        if (!(src->dir = strdup(path))) {
            rc = fail(err, -ENOMEM, NULL, "out of memory");
            goto out;
        }
        if ((rc = descend(&src->dir, err)) < 0)
            goto out;
        rc = recognise_dir(src, err);
    } else {
        const char *b = base_name(path);
        if (!(src->dir = dir_of(path))) {
            rc = fail(err, -ENOMEM, NULL, "out of memory");
            goto out;
        }
        if (strcmp(b, "flasher_args.json") == 0) {
            rc = load_descriptor(src, b, buildsrc_parse_flasher_args, err);
        } else if (strcmp(b, "idedata.json") == 0) {
            rc = load_descriptor(src, b, buildsrc_parse_idedata, err);
        } else if (has_suffix(b, ".json")) {
            /* Any other JSON: an ESP Web Tools manifest under another name. */
            rc = load_descriptor(src, b, buildsrc_parse_web_tools, err);
        } else if (has_suffix(b, ".ino.bin") || has_suffix(b, ".ino.merged.bin")) {
            rc = has_suffix(b, ".ino.merged.bin") ? recognise_arduino(src, NULL, b, err)
                                                  : recognise_arduino(src, b, NULL, err);
        } else {
            rc = recognise_merged(src, b, err);
        }
    }
    if (rc == 0)
        sort_parts(src);
    if (rc == 0)
        rc = load_parts(
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
    fail(err, -EINVAL, "connect a board of the family the firmware was built for",
         "the board is an %s but the %s build%s for %s", chip ? chip->name : "unknown chip",
         buildsrc_format_to_string(src->format), src->n_sets == 1 ? " is" : "s are", have);
    return NULL;
}

/* ---- JSON ------------------------------------------------------------------------------ */

json_object *buildsrc_set_to_json(const struct buildsrc_set *set)
{
    json_object *o = json_object_new_object();
    char buf[32];
    json_object_object_add(o, "chip", json_object_new_string(set->chip ? set->chip->name : "?"));
    if (set->label)
        json_object_object_add(o, "chip_family", json_object_new_string(set->label));
    json_object_object_add(o, "flash_mode", json_object_new_string(mode_str(set->flash_mode)));
    if (set->flash_size_detect)
        snprintf(buf, sizeof(buf), "detect");
    else
        size_str(set->flash_size, buf, sizeof(buf));
    json_object_object_add(o, "flash_size", json_object_new_string(buf));
    if (set->flash_freq_mhz)
        snprintf(buf, sizeof(buf), "%um", set->flash_freq_mhz);
    else
        snprintf(buf, sizeof(buf), "keep");
    json_object_object_add(o, "flash_freq", json_object_new_string(buf));
    if (set->header_mode >= 0) {
        json_object *h = json_object_new_object();
        json_object_object_add(h, "flash_mode", json_object_new_string(mode_str(set->header_mode)));
        size_str(set->header_size, buf, sizeof(buf));
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
    return o;
}
