/*
 * catalog_validate: checking a firmware set before it is imported — the problem
 * report (catalog_report), and each region's file against the parsed manifest and
 * the chip: presence and size, place on the flash, overlaps, ESP image headers
 * (esp_image_parse), ESP8266 SDK V2 images and dual-image slots, gzip-compressed
 * ESP8266 apps (inflated, bounded) and filesystem images. Validation never stops at
 * the first problem: a technician fixing a set wants the whole list.
 */
#include "catalog_priv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "esp_error.h"
#include "esp_image.h"
#include "esp_loader.h"

#define REPORT_CAP 200

/* ---- reports ------------------------------------------------------------------------- */

void catalog_report_init(struct catalog_report *rep)
{
    if (rep)
        memset(rep, 0, sizeof(*rep));
}

void catalog_report_free(struct catalog_report *rep)
{
    if (!rep)
        return;
    free(rep->items);
    memset(rep, 0, sizeof(*rep));
}

void cat_rep_add(struct catalog_report *rep, bool warning, int region, const char *fmt, ...)
{
    if (warning)
        rep->n_warnings++;
    else
        rep->n_errors++;
    if (rep->n >= REPORT_CAP) {
        rep->n_dropped++;
        return;
    }
    struct catalog_problem *items = realloc(rep->items, (rep->n + 1) * sizeof(*items));
    if (!items) {
        rep->n_dropped++;
        return;
    }
    rep->items = items;
    struct catalog_problem *p = &items[rep->n++];
    p->warning = warning;
    p->region = region;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof(p->message), fmt, ap);
    va_end(ap);
    /* Names and values come from the manifest: keep the message one printable line. */
    for (char *c = p->message; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

char *catalog_report_format(const struct catalog_report *rep, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    buf[0] = '\0';
    if (!rep)
        return buf;
    size_t used = 0;
    for (size_t i = 0; i < rep->n && used < len; i++)
        used +=
            (size_t)snprintf(buf + used, len - used, "%s: %s\n",
                             rep->items[i].warning ? "warning" : "error", rep->items[i].message);
    if (rep->n_dropped && used < len)
        snprintf(buf + used, len - used, "... and %zu more problems\n", rep->n_dropped);
    return buf;
}

/* ---- validation ---------------------------------------------------------------------- */

static void region_label(const struct catalog_manifest *m, size_t i, char *buf, size_t n)
{
    if (m->regions[i].file)
        snprintf(buf, n, "regions[%zu] %s", i, m->regions[i].file);
    else
        snprintf(buf, n, "regions[%zu]", i);
}

static void check_image(const struct esp_chip_desc *chip, const char *label, int ri,
                        const uint8_t *data, size_t len, struct catalog_report *rep)
{
    bool esp8266 = chip->chip == ESP_CHIP_ESP8266;
    struct esp_image_info info;
    struct esp_error err;
    esp_error_clear(&err);
    int rc = esp_image_parse(data, len, esp8266, &info, &err);
    if (rc != 0 && esp8266) {
        /* Perhaps an image for an ESP32-family chip: say so rather than "bad segment". */
        struct esp_image_info other;
        if (esp_image_parse(data, len, false, &other, NULL) == 0) {
            const struct esp_chip_desc *o = esp_chip_by_image_id(other.chip_id);
            if (o) {
                cat_rep_add(rep, false, ri,
                            "%s: image is for %s (chip id %u) but this firmware set is for %s",
                            label, o->name, other.chip_id, chip->name);
                return;
            }
        }
        if (len > 0 && data[0] == 0xEA) {
            cat_rep_add(rep, false, ri,
                        "%s: an ESP8266 \"V2\" image (first byte 0xea) is an application started "
                        "by the SDK's boot_v1.x, not a bootloader the ROM can start; declare it as "
                        "kind \"app\" (with \"slot\": \"user1\"/\"user2\" for a dual-image set)",
                        label);
            return;
        }
    }
    if (rc == -EBADMSG) {
        cat_rep_add(rep, false, ri, "%s: image is corrupted: %s", label, err.message);
        return;
    }
    if (rc != 0) {
        cat_rep_add(rep, false, ri, "%s: not a valid ESP image: %s", label, err.message);
        return;
    }
    esp_error_clear(&err);
    if (esp_image_check_chip(&info, chip, -1, &err) != 0) {
        if (info.has_extended_header && (int)info.chip_id != chip->image_chip_id) {
            const struct esp_chip_desc *o = esp_chip_by_image_id(info.chip_id);
            cat_rep_add(rep, false, ri,
                        "%s: image is for %s (chip id %u) but this firmware set is for %s", label,
                        o ? o->name : "an unknown chip", info.chip_id, chip->name);
        } else {
            cat_rep_add(rep, false, ri, "%s: %s", label, err.message);
        }
    }
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Slot size of a NONOS flash size map (V2 header byte 3, high nibble); 0: no dual layout. */
static uint32_t size_map_slot(unsigned map)
{
    switch (map) {
    case 0:
        return 256u * 1024;
    case 2:
    case 3:
    case 4:
        return 512u * 1024;
    case 5:
    case 6:
        return 1024u * 1024;
    default:
        return 0;
    }
}

/*
 * An ESP8266 SDK "V2" image (PROTOCOL-ROM.md §7.4): header EA 04 <mode> <map|freq>
 * <entry u32>, the irom0 segment (address 0, length, data), then a complete ESP8266
 * 0xE9 image holding the RAM segments and its checksum, then the SDK's CRC word (not
 * checked here). The header checks are those raw TCP-OTA devices apply (§5).
 */
static void check_v2(const struct cat_parsed *p, size_t i, const char *label, const uint8_t *d,
                     size_t len, struct catalog_report *rep)
{
    const struct catalog_manifest_region *r = &p->m->regions[i];
    int ri = (int)i;
    if (len < 24) {
        cat_rep_add(rep, false, ri, "%s: %zu bytes is too short for an ESP8266 V2 image", label,
                    len);
        return;
    }
    unsigned map = d[3] >> 4;
    uint32_t entry = le32(d + 4), irom_addr = le32(d + 8), irom_len = le32(d + 12);
    if (d[1] != 0x04)
        cat_rep_add(rep, false, ri,
                    "%s: V2 header byte 1 is 0x%02x, not 0x04; not an image from the SDK's "
                    "gen_appbin.py or esptool elf2image --version 2",
                    label, d[1]);
    if (d[2] > 3)
        cat_rep_add(rep, false, ri, "%s: V2 header flash mode %u is not QIO/QOUT/DIO/DOUT (0-3)",
                    label, d[2]);
    if (map > 6)
        cat_rep_add(rep, false, ri, "%s: V2 header flash size map %u is not one of the SDK's (0-6)",
                    label, map);
    if ((entry >> 16) != 0x4010)
        cat_rep_add(rep, false, ri,
                    "%s: entry address 0x%08x is not in IRAM (0x4010xxxx); boot_v1.x and raw "
                    "TCP-OTA devices refuse it",
                    label, entry);
    if (irom_addr != 0)
        cat_rep_add(rep, false, ri, "%s: the irom0 segment's address is 0x%x, not 0", label,
                    irom_addr);
    if (irom_len % 4 != 0 || irom_len > len - 24) {
        cat_rep_add(rep, false, ri,
                    "%s: the irom0 segment (%u bytes) runs past the end of the %zu-byte file: "
                    "the image is truncated",
                    label, irom_len, len);
        return;
    }
    struct esp_image_info info;
    struct esp_error err;
    esp_error_clear(&err);
    if (esp_image_parse(d + 16 + irom_len, len - 16 - irom_len, true, &info, &err) != 0) {
        cat_rep_add(rep, false, ri,
                    "%s: the RAM part after the irom0 segment (at byte %u) is not a valid ESP8266 "
                    "image: %s",
                    label, 16 + irom_len, err.message);
        return;
    }
    if (r->slot == CATALOG_SLOT_NONE || !p->slot_bytes)
        return;
    uint32_t want = size_map_slot(map);
    if (map <= 6 && !want)
        cat_rep_add(rep, false, ri,
                    "%s: built for flash size map %u (256 KB), which has no room for user1 and "
                    "user2; rebuild for a 512 KB or larger map",
                    label, map);
    else if (want && want != p->slot_bytes)
        cat_rep_add(rep, false, ri,
                    "%s: built for flash size map %u (%u KiB slots, user2 at 0x%x) but this set "
                    "puts user2 at 0x%x; build both images for the map of the board's flash",
                    label, map, want / 1024, CATALOG_USER1_OFFSET + want,
                    CATALOG_USER1_OFFSET + p->slot_bytes);
    uint32_t max = p->slot_bytes - 0x5000;
    if (len > max)
        cat_rep_add(rep, false, ri,
                    "%s: %zu bytes is too large for a %u KiB slot (at most %u: the slot less its 4 "
                    "KiB boot sector and 16 KiB of system parameters)",
                    label, len, p->slot_bytes / 1024, max);
}

/* Inflates a gzip stream, at most max bytes out. Trailing bytes after the stream (an
 * ESP8266 signature trailer) are allowed. 0; -EFBIG; -EBADMSG with *why; -ENOMEM. */
static int gunzip_bounded(const uint8_t *in, size_t len, size_t max, uint8_t **out, size_t *out_len,
                          const char **why)
{
    *out = NULL;
    *out_len = 0;
    *why = "";
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return -ENOMEM;
    size_t cap = 64u * 1024, used = 0;
    uint8_t *buf = malloc(cap);
    int rc = buf ? 0 : -ENOMEM;
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    while (rc == 0) {
        if (used == cap) {
            if (cap >= max) {
                rc = -EFBIG;
                break;
            }
            size_t ncap = cap * 2 > max ? max : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        zs.next_out = buf + used;
        zs.avail_out = (uInt)(cap - used);
        int zr = inflate(&zs, Z_NO_FLUSH);
        used = cap - zs.avail_out;
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_OK)
            continue;
        if (zr == Z_BUF_ERROR && zs.avail_out == 0)
            continue;
        *why = zr == Z_BUF_ERROR ? "the stream is truncated" : zs.msg ? zs.msg : "corrupt data";
        rc = zr == Z_MEM_ERROR ? -ENOMEM : -EBADMSG;
    }
    inflateEnd(&zs);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = used;
    return 0;
}

/* A gzip-compressed ESP8266 app (catalog.h): inflated (bounded) and the inner image checked. */
static void check_gzip(const struct cat_parsed *p, size_t i, const struct esp_chip_desc *chip,
                       const char *label, const uint8_t *d, size_t len, struct catalog_report *rep)
{
    const struct catalog_manifest_region *r = &p->m->regions[i];
    int ri = (int)i;
    if (chip->chip != ESP_CHIP_ESP8266) {
        cat_rep_add(rep, false, ri,
                    "%s: a gzip-compressed image (first bytes 1f 8b); only ESP8266 boards (Arduino "
                    "Updater with eboot) take compressed images, the %s's bootloader and OTA "
                    "updaters accept only the plain 0xE9 app image: import the uncompressed .bin",
                    label, chip->name);
        return;
    }
    if (r->kind == CATALOG_KIND_BOOTLOADER) {
        cat_rep_add(rep, false, ri,
                    "%s: a gzip-compressed bootloader; the ROM cannot start a compressed image: "
                    "use the plain bootloader .bin",
                    label);
        return;
    }
    if (r->slot != CATALOG_SLOT_NONE) {
        cat_rep_add(rep, false, ri,
                    "%s: a gzip-compressed image as %s; boot_v1.x and raw TCP-OTA take only plain "
                    "SDK V2 images (first byte 0xea): import the uncompressed user%c.bin",
                    label, catalog_slot_to_string(r->slot),
                    r->slot == CATALOG_SLOT_USER1 ? '1' : '2');
        return;
    }
    uint8_t *img = NULL;
    size_t n = 0;
    const char *why = "";
    int rc = gunzip_bounded(d, len, CATALOG_GZIP_MAX_INFLATED, &img, &n, &why);
    if (rc == -EFBIG) {
        cat_rep_add(rep, false, ri,
                    "%s: the gzip stream inflates to more than %u MiB, larger than any ESP8266 "
                    "flash; not a compressed firmware image",
                    label, CATALOG_GZIP_MAX_INFLATED >> 20);
    } else if (rc == -ENOMEM) {
        cat_rep_add(rep, false, ri, "%s: out of memory while inflating the gzip image", label);
    } else if (rc < 0) {
        cat_rep_add(rep, false, ri,
                    "%s: the gzip stream is corrupt (%s); compress the image again with gzip -9",
                    label, why);
    } else if (n == 0 || img[0] != 0xE9) {
        cat_rep_add(rep, false, ri,
                    "%s: the gzip stream inflates to %zu bytes that are not an ESP8266 app image "
                    "(first byte %s0x%02x, expected 0xe9); compress the sketch's .bin",
                    label, n, n ? "" : "none, ", n ? img[0] : 0);
    } else {
        char inner[160];
        snprintf(inner, sizeof(inner), "%s (inflated)", label);
        check_image(chip, inner, ri, img, n, rep);
    }
    free(img);
}

void cat_free_loaded(struct cat_loaded *l, size_t n)
{
    if (!l)
        return;
    for (size_t i = 0; i < n; i++)
        free(l[i].data);
    free(l);
}

/* A filesystem image (SPIFFS, LittleFS, FAT) is not an ESP image: only its place and size
 * are checked. One per set (network OTA sends "the" filesystem image), on a sector. */
static void check_filesystem(const struct cat_parsed *p, const char *label, size_t i, int *first_fs,
                             const uint8_t *data, size_t len, struct catalog_report *rep)
{
    const struct catalog_manifest_region *r = &p->m->regions[i];
    int ri = (int)i;
    if (*first_fs >= 0)
        cat_rep_add(rep, false, ri,
                    "%s: a second filesystem image (the first is regions[%d]); a set carries at "
                    "most one (declare the others as kind \"data\")",
                    label, *first_fs);
    else
        *first_fs = ri;
    if (p->region_offset_ok[i] && r->offset % CATALOG_SECTOR_BYTES != 0)
        cat_rep_add(
            rep, false, ri,
            "%s: a filesystem image must start on a 4 KiB flash sector, not at 0x%x (use the "
            "offset of the spiffs/littlefs/fat partition in the partition table)",
            label, r->offset);
    if (len % CATALOG_SECTOR_BYTES != 0)
        cat_rep_add(rep, true, ri,
                    "%s: %zu bytes is not a whole number of 4 KiB sectors; filesystem images "
                    "(mkspiffs, mklittlefs, FAT) are usually exactly the partition's size",
                    label, len);
    if (len > 0 && data[0] == 0xE9)
        cat_rep_add(rep, true, ri,
                    "%s: starts like an ESP application image (0xE9); if it is the app, declare it "
                    "as kind \"app\"",
                    label);
}

static void check_files(struct cat_parsed *p, catalog_load_fn load, void *ctx, struct cat_loaded *l,
                        struct catalog_report *rep)
{
    struct catalog_manifest *m = p->m;
    const struct esp_chip_desc *chip = p->chip_ok ? esp_chip_get(m->chip) : NULL;
    char label[128], other[128];
    int first_boot = -1, first_fs = -1;

    for (size_t i = 0; i < m->n_regions; i++) {
        struct catalog_manifest_region *r = &m->regions[i];
        int ri = (int)i;
        region_label(m, i, label, sizeof(label));
        if (!p->region_file_ok[i])
            continue;
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++) {
            if (p->region_file_ok[j] && strcmp(m->regions[j].file, r->file) == 0) {
                cat_rep_add(rep, false, ri, "%s: the same file is already used by regions[%zu]",
                            label, j);
                dup = true;
            }
        }
        if (dup)
            continue;
        int rc = load(ctx, r->file, &l[i].data, &l[i].len);
        if (rc == -ENOENT) {
            cat_rep_add(rep, false, ri, "%s: file not found next to manifest.json", label);
            continue;
        } else if (rc == -EFBIG || (rc == 0 && l[i].len > CATALOG_MAX_FILE_BYTES)) {
            cat_rep_add(rep, false, ri, "%s: file is larger than %u MiB, the largest flash", label,
                        CATALOG_MAX_FILE_BYTES >> 20);
            continue;
        } else if (rc < 0) {
            l[i].data = NULL;
            cat_rep_add(rep, false, ri, "%s: cannot read the file: %s", label, strerror(-rc));
            continue;
        } else if (l[i].len == 0) {
            cat_rep_add(rep, false, ri, "%s: file is empty", label);
            continue;
        }
        l[i].ok = true;

        if (p->region_offset_ok[i]) {
            uint64_t end = (uint64_t)r->offset + l[i].len;
            if (m->flash_size && end > m->flash_size)
                cat_rep_add(rep, false, ri,
                            "%s: does not fit the flash: %zu bytes at 0x%x end at 0x%llx, past the "
                            "end of the %u KiB flash (0x%x)",
                            label, l[i].len, r->offset, (unsigned long long)end,
                            m->flash_size / 1024, m->flash_size);
            else if (end > 0x100000000ULL)
                cat_rep_add(rep, false, ri,
                            "%s: %zu bytes at 0x%x run past the 4 GiB address space", label,
                            l[i].len, r->offset);
        }
        if (!p->region_kind_ok[i] || !chip)
            continue;
        if (r->kind == CATALOG_KIND_BOOTLOADER) {
            if (first_boot >= 0)
                cat_rep_add(rep, false, ri, "%s: a second bootloader (the first is regions[%d])",
                            label, first_boot);
            else
                first_boot = ri;
            if (p->region_offset_ok[i] && r->offset != chip->bootloader_offset)
                cat_rep_add(rep, false, ri,
                            "%s: a bootloader for the %s must be at 0x%x, not at 0x%x", label,
                            chip->name, chip->bootloader_offset, r->offset);
        } else if (r->kind == CATALOG_KIND_APP && chip->chip != ESP_CHIP_ESP8266 &&
                   p->region_offset_ok[i] && r->offset == chip->bootloader_offset) {
            cat_rep_add(rep, true, ri,
                        "%s: an app at the bootloader offset 0x%x; the ROM will start it as the "
                        "second-stage bootloader (declare it as kind \"bootloader\" if it is one)",
                        label, r->offset);
        }
        if (r->kind == CATALOG_KIND_BOOTLOADER || r->kind == CATALOG_KIND_APP) {
            const uint8_t *d = l[i].data;
            size_t n = l[i].len;
            bool esp8266 = chip->chip == ESP_CHIP_ESP8266;
            if (n >= 2 && d[0] == 0x1F && d[1] == 0x8B)
                check_gzip(p, i, chip, label, d, n, rep);
            else if (esp8266 && r->kind == CATALOG_KIND_APP && d[0] == 0xEA)
                check_v2(p, i, label, d, n, rep);
            else if (esp8266 && r->slot != CATALOG_SLOT_NONE)
                cat_rep_add(rep, false, ri,
                            "%s: %s holds an SDK V2 image (first byte 0xea, from gen_appbin.py or "
                            "esptool elf2image --version 2); this file starts with 0x%02x",
                            label, catalog_slot_to_string(r->slot), d[0]);
            else
                check_image(chip, label, ri, d, n, rep);
        }
        if (r->kind == CATALOG_KIND_FILESYSTEM)
            check_filesystem(p, label, i, &first_fs, l[i].data, l[i].len, rep);
    }

    /* Overlaps, with the address ranges so the fix is obvious. */
    for (size_t j = 0; j < m->n_regions; j++) {
        if (!l[j].ok || !p->region_offset_ok[j])
            continue;
        uint64_t js = m->regions[j].offset, je = js + l[j].len;
        for (size_t i = 0; i < j; i++) {
            if (!l[i].ok || !p->region_offset_ok[i])
                continue;
            uint64_t is = m->regions[i].offset, ie = is + l[i].len;
            if (is < je && js < ie) {
                region_label(m, j, label, sizeof(label));
                region_label(m, i, other, sizeof(other));
                cat_rep_add(rep, false, (int)j, "%s (0x%llx-0x%llx) overlaps %s (0x%llx-0x%llx)",
                            label, (unsigned long long)js, (unsigned long long)(je - 1), other,
                            (unsigned long long)is, (unsigned long long)(ie - 1));
            }
        }
    }
}

/*
 * Whole validation. On return *pp holds the parsed manifest (free with
 * catalog_manifest_free) and *lp the loaded files (cat_free_loaded), both also on
 * error. Returns 0 if rep gained no errors, -EINVAL if it did, -ENOMEM.
 */
int cat_validate_core(const char *json, size_t len, catalog_load_fn load, void *ctx,
                      struct catalog_report *rep, struct cat_parsed *p, struct cat_loaded **lp)
{
    size_t errors_before = rep->n_errors;
    *lp = NULL;
    int rc = cat_manifest_parse(json, len, p, rep);
    if (rc == -ENOMEM) {
        cat_rep_add(rep, false, -1, "out of memory while reading the manifest");
        return rc;
    }
    if (rc == 0 && p->m->n_regions > 0) {
        *lp = calloc(p->m->n_regions, sizeof(**lp));
        if (!*lp) {
            cat_rep_add(rep, false, -1, "out of memory while reading the files");
            return -ENOMEM;
        }
        check_files(p, load, ctx, *lp, rep);
    }
    return rep->n_errors != errors_before ? -EINVAL : 0;
}

int catalog_validate_mem(const char *manifest_json, size_t len, catalog_load_fn load, void *ctx,
                         struct catalog_report *rep)
{
    struct catalog_report local;
    if (!rep) {
        catalog_report_init(&local);
        rep = &local;
    }
    if (!manifest_json || !load)
        return -EINVAL;
    struct cat_parsed p;
    struct cat_loaded *l = NULL;
    int rc = cat_validate_core(manifest_json, len, load, ctx, rep, &p, &l);
    cat_free_loaded(l, p.m ? p.m->n_regions : 0);
    catalog_manifest_free(p.m);
    if (rep == &local)
        catalog_report_free(&local);
    return rc;
}

int cat_dir_load(void *ctx, const char *file, uint8_t **data, size_t *len)
{
    char *path = cat_path_join((const char *)ctx, file);
    if (!path)
        return -ENOMEM;
    int rc = cat_read_file(path, CATALOG_MAX_FILE_BYTES, data, len);
    free(path);
    return rc;
}

/* Reads <dir>/manifest.json; problems into rep. */
int cat_read_manifest(const char *dir, char **json, size_t *len, struct catalog_report *rep)
{
    char *path = cat_path_join(dir, MANIFEST_FILE);
    if (!path)
        return -ENOMEM;
    uint8_t *buf = NULL;
    int rc = cat_read_file(path, MANIFEST_MAX_BYTES, &buf, len);
    if (rc == -ENOENT)
        cat_rep_add(rep, false, -1, "manifest.json: not found in %s", dir);
    else if (rc == -EFBIG)
        cat_rep_add(rep, false, -1, "manifest.json: too large (at most %u bytes)",
                    MANIFEST_MAX_BYTES);
    else if (rc < 0)
        cat_rep_add(rep, false, -1, "manifest.json: cannot read %s: %s", path, strerror(-rc));
    free(path);
    *json = (char *)buf;
    return rc;
}

int catalog_validate_dir(const char *dir, struct catalog_report *rep)
{
    struct catalog_report local;
    if (!rep) {
        catalog_report_init(&local);
        rep = &local;
    }
    char *json = NULL;
    size_t len = 0;
    int rc = dir ? cat_read_manifest(dir, &json, &len, rep) : -EINVAL;
    if (rc == 0)
        rc = catalog_validate_mem(json, len, cat_dir_load, (void *)dir, rep);
    else if (rc != -ENOMEM)
        rc = -EINVAL;
    free(json);
    if (rep == &local)
        catalog_report_free(&local);
    return rc;
}
