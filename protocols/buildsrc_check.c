/*
 * buildsrc_check: reading a build's files and checking them: each image's header (chip id,
 * revision, flash settings), the partition table, offsets and overlaps, and the set's flash
 * settings. Every refusal names the file and says what to do.
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

/* ---- reading the files --------------------------------------------------------------- */

/*
 * The file for a descriptor's path, below dir: a relative path without "..", or the base
 * name of an absolute one. Returns an owned path or NULL (err set).
 */
static char *resolve(const char *dir, const char *path, const char *what, struct esp_error *err)
{
    const char *rel = path;
    if (path[0] == '/') {
        rel = bsrc_base_name(path); /* PlatformIO writes the build machine's absolute paths */
    } else if (isalpha((unsigned char)path[0]) && path[1] == ':') {
        const char *bs = strrchr(path, '\\'); /* a Windows build machine's path */
        rel = bs ? bs + 1 : path + 2;
    } else if (strncmp(rel, "./", 2) == 0) {
        rel += 2;
    }
    if (!*rel) {
        bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: \"%.80s\" is not a file name", what, path);
        return NULL;
    }
    for (const char *p = rel; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            bsrc_fail(err, -EINVAL, "keep every file of the build below its directory",
                      "%s: \"%.80s\" leaves the build directory (\"..\"): refused", what, path);
            return NULL;
        }
        p += n;
        while (*p == '/')
            p++;
    }
    for (const char *p = rel; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '\\') {
            bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: \"%.80s\" is not a usable file name", what,
                      path);
            return NULL;
        }
    char *full = bsrc_join(dir, rel);
    if (!full)
        bsrc_fail(err, -ENOMEM, NULL, "out of memory");
    return full;
}

int bsrc_load_parts(struct buildsrc *src, const char *what, struct esp_error *err)
{
    for (size_t s = 0; s < src->n_sets; s++) {
        struct buildsrc_set *set = &src->sets[s];
        for (size_t i = 0; i < set->n_parts; i++) {
            struct buildsrc_part *p = &set->parts[i];
            if (p->data)
                continue;
            if (!(p->resolved = resolve(src->dir, p->path, what, err)))
                return err && err->code ? err->code : -EINVAL;
            int rc = bsrc_read_all(p->resolved, BUILDSRC_MAX_FILE_BYTES, &p->data, &p->len);
            if (rc == -ENOENT || rc == -ENOTDIR) {
                const char *hint = bsrc_adv_build;
                if (strcmp(bsrc_base_name(p->path), "boot_app0.bin") == 0)
                    hint = "copy boot_app0.bin next to the other files (PlatformIO keeps it in "
                           "the Arduino framework package: tools/partitions/boot_app0.bin)";
                return bsrc_fail(err, -EINVAL, hint,
                                 "%s names %s at 0x%x, but that file is missing in %.80s", what,
                                 p->path, p->offset, src->dir);
            }
            if (rc == -EFBIG)
                return bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s (0x%x) is larger than any flash",
                                 p->path, p->offset);
            if (rc == -EISDIR)
                return bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s (0x%x) is not a regular file",
                                 p->path, p->offset);
            if (rc < 0)
                return bsrc_fail(err, rc, bsrc_adv_build, "cannot read %s: %s", p->path,
                                 strerror(-rc));
            if (p->len == 0)
                return bsrc_fail(err, -EINVAL, "an empty file usually means a failed build",
                                 "%s (0x%x) is empty", p->path, p->offset);
            if (p->path[0] == '/' || (isalpha((unsigned char)p->path[0]) && p->path[1] == ':')) {
                /* The build machine's absolute path: name the file that was read. */
                char *rel =
                    strdup(p->resolved + strlen(src->dir) + !bsrc_has_suffix(src->dir, "/"));
                if (!rel)
                    return bsrc_fail(err, -ENOMEM, NULL, "out of memory");
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
int bsrc_identify(const uint8_t *d, size_t n, const struct esp_chip_desc *prefer,
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
bool bsrc_pt_boot_app(const uint8_t *d, size_t n, uint32_t *off)
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

const char *bsrc_mode_str(int m)
{
    return m >= 0 ? esp_flash_mode_to_string((unsigned)m) : "keep";
}

void bsrc_size_str(uint32_t bytes, char *buf, size_t n)
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
    int rc = bsrc_identify(p->data + base, p->len - base, set->chip, &p->image, &chip, &ie);
    if (rc < 0)
        return bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s%s: not a valid ESP image: %s", p->path,
                         where, ie.message);
    p->is_image = true;
    if (!set->chip) {
        set->chip = chip;
        set->chip_from = p->path;
    } else if (chip != set->chip) {
        return bsrc_fail(err, -EINVAL,
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
        if (bsrc_identify(p->data + bo, p->len - bo, set->chip, &info, &chip, &ie) < 0)
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
        if (p->len <= PT_OFFSET || !bsrc_pt_boot_app(p->data + PT_OFFSET, p->len - PT_OFFSET, &app))
            return bsrc_fail(
                err, -EINVAL,
                "export the merged image with its partition table (esptool merge_bin of "
                "bootloader, partition table and app), or use the separate files",
                "%s: a bootloader for %s but no partition table with an app at 0x%x: not "
                "a merged image",
                p->path, chip->name, PT_OFFSET);
        if (app >= p->len)
            return bsrc_fail(
                err, -EINVAL, bsrc_adv_build,
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
        return bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: not a valid merged image: %s", p->path,
                         ie.message);
    return bsrc_fail(
        err, -EINVAL,
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
            return bsrc_fail(err, -ENOTSUP,
                             "build without flash encryption in development mode, or flash the "
                             "encrypted images with esptool --encrypt",
                             "%s (0x%x) is marked \"encrypted\": \"true\": the station does not "
                             "encrypt on write",
                             p->path, p->offset);
        if (p->offset % 4)
            return bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: offset 0x%x is not a multiple of 4",
                             p->path, p->offset);
        if ((uint64_t)p->offset + p->len > 0x100000000ULL)
            return bsrc_fail(err, -EINVAL, bsrc_adv_build, "%s: %zu bytes at 0x%x run past 4 GiB",
                             p->path, p->len, p->offset);
        assign_role(src, set, p);
    }
    /* Overlaps, with both files and their ranges. */
    for (size_t j = 0; j < set->n_parts; j++)
        for (size_t i = 0; i < j; i++) {
            const struct buildsrc_part *a = &set->parts[i], *b = &set->parts[j];
            uint64_t as = a->offset, ae = as + a->len, bs = b->offset, be = bs + b->len;
            if (as < be && bs < ae)
                return bsrc_fail(err, -EINVAL,
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
                    return bsrc_fail(err, -EINVAL, bsrc_adv_build,
                                     "%s: a second bootloader (the first is %s)", p->path,
                                     boot->path);
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
                    return bsrc_fail(err, -EINVAL, bsrc_adv_build,
                                     "%s (0x%x): not a partition table: %s", p->path, p->offset,
                                     why);
                pt = p;
                break;
            }
            default:
                break;
            }
        }
    if (!set->chip)
        return bsrc_fail(
            err, -EINVAL, "add the bootloader (or name the chip in the build description)",
            "%s: none of the files is an ESP image, so the chip family is unknown", what);
    if (boot && boot->offset != set->chip->bootloader_offset)
        return bsrc_fail(err, -EINVAL, bsrc_adv_build,
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
                return bsrc_fail(err, -EINVAL,
                                 "the app offset does not match the partition table: check the "
                                 "build's partition scheme",
                                 "%s at 0x%x: %s has no app partition there (first app partition: "
                                 "0x%x)",
                                 p->path, p->offset, pt->path, apps[0].offset);
            if (p->len > apps[k].size)
                return bsrc_fail(
                    err, -EINVAL, "choose a partition scheme with a larger app partition",
                    "%s (%zu bytes) does not fit its app partition at 0x%x (%u bytes in "
                    "%s)",
                    p->path, p->len, p->offset, apps[k].size, pt->path);
        }
    }
    if (hdr_part)
        header_settings(set, &hdr_part->image);
    /* Settings the descriptor gives must be encodable for the chip; disagreements are noted. */
    if (set->flash_size && esp_chip_flash_size_code(set->chip, set->flash_size) < 0)
        return bsrc_fail(err, -EINVAL, bsrc_adv_build,
                         "%s: flash size %u KiB is not one of the %s's", what,
                         set->flash_size / 1024, set->chip->name);
    if (set->flash_freq_mhz && esp_chip_flash_freq_code(set->chip, set->flash_freq_mhz) < 0)
        return bsrc_fail(err, -EINVAL, bsrc_adv_build,
                         "%s: flash frequency %u MHz is not one of the %s's", what,
                         set->flash_freq_mhz, set->chip->name);
    if (hdr_part) {
        const char *hf = hdr_part->path;
        char a[16], b[16];
        if (set->flash_mode >= 0 && set->flash_mode != set->header_mode)
            bsrc_note(src,
                      "%s says flash mode %s, the header of %s says %s: the header is set to "
                      "%s when written",
                      what, bsrc_mode_str(set->flash_mode), hf, bsrc_mode_str(set->header_mode),
                      bsrc_mode_str(set->flash_mode));
        if (set->flash_size && set->header_size && set->flash_size != set->header_size) {
            bsrc_size_str(set->flash_size, a, sizeof(a));
            bsrc_size_str(set->header_size, b, sizeof(b));
            bsrc_note(src,
                      "%s says flash size %s, the header of %s says %s: the header is set to "
                      "%s when written",
                      what, a, hf, b, a);
        }
        if (set->flash_freq_mhz && set->header_freq_mhz &&
            set->flash_freq_mhz != set->header_freq_mhz)
            bsrc_note(src,
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
            bsrc_size_str(fsize, a, sizeof(a));
            return bsrc_fail(err, -EINVAL, "build for the flash size of the boards",
                             "%s: %zu bytes at 0x%x end past the %s flash the build is for",
                             p->path, p->len, p->offset, a);
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
